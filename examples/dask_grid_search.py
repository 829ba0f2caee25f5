"""Hyperparameter search on Dask: scikit-learn's GridSearchCV over LeNet5, its fits run by
the workers of a Dask cluster through joblib's ``dask`` backend.

The search is run twice on the same digits: once here, one fit after another, and once with
``joblib.parallel_config(backend="dask")``, which sends every (parameters, fold) fit to
the cluster as a task (the estimator, pickled: hyperparameters only before ``fit``). Each
LeNet5 has a fixed ``random_state`` and ``n_jobs=1``, so a fit gives bit-identical weights
wherever it runs: the two searches must find the same best parameters with the same
cross-validation scores.

Run it here (a ``LocalCluster`` of worker processes on 127.0.0.1)::

    python examples/dask_grid_search.py --workers 2

or on a running Dask cluster, whose workers have lenet5 and scikit-learn installed (the
same versions as here)::

    python examples/dask_grid_search.py --scheduler tcp://scheduler:8786 --images 4000

Exit code 0 when both searches agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from dask_predict import add_cluster_options, dask_client  # the example beside this one

#: The grid searched: 2 x 2 combinations, each fitted on every fold.
PARAM_GRID = {"learning_rate": [3e-4, 3e-3], "batch_size": [32, 128]}


def make_search(n_jobs: int | None):
    """A GridSearchCV over a small LeNet5 (Adam, 2 epochs), 3 folds."""
    from lenet5 import LeNet5
    from sklearn.model_selection import GridSearchCV

    model = LeNet5(epochs=2, optimizer="adam", random_state=0, verbose=0, n_jobs=1)
    return GridSearchCV(model, PARAM_GRID, cv=3, n_jobs=n_jobs)


def search_on_dask(x: np.ndarray, y: np.ndarray, client):
    """The fitted search, its fits run as tasks on the client's workers; also returns the
    workers that ran them."""
    import joblib
    from dask.distributed import get_task_stream

    search = make_search(n_jobs=-1)
    with get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        search.fit(x, y)
    workers = {task["worker"] for task in stream.data}
    return search, workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cluster_options(parser)
    parser.add_argument(
        "--images", type=int, default=1500, help="training digits searched on (at most 4000)"
    )
    args = parser.parse_args(argv)

    from lenet5.datasets import load_mnist

    (x, y), _ = load_mnist()
    x, y = x[: args.images], y[: args.images]

    start = time.perf_counter()
    local = make_search(n_jobs=None).fit(x, y)
    local_seconds = time.perf_counter() - start

    start = time.perf_counter()
    with dask_client(args.scheduler, args.workers) as client:
        remote, workers = search_on_dask(x, y, client)
    dask_seconds = time.perf_counter() - start

    n_fits = len(remote.cv_results_["params"]) * remote.n_splits_
    print(f"{n_fits} fits on {x.shape[0]:,} digits: {local_seconds:.1f} s here, "
          f"{dask_seconds:.1f} s on Dask (cluster start-up included), tasks ran on "
          f"{len(workers)} workers")  # fmt: skip
    print(f"best parameters here:    {local.best_params_} (score {local.best_score_:.4f})")
    print(f"best parameters on Dask: {remote.best_params_} (score {remote.best_score_:.4f})")
    same = local.best_params_ == remote.best_params_ and np.array_equal(
        local.cv_results_["mean_test_score"], remote.cv_results_["mean_test_score"]
    )
    print(f"same best parameters and scores: {'yes' if same else 'NO'}", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
