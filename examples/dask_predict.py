"""Batch inference on Dask: predict a dask.array of digits chunk by chunk on worker processes.

The images are a ``dask.array`` split into chunks of ``--chunk`` images along the first
axis. ``map_blocks(model.predict)`` turns every chunk into a task whose function is the
bound method ``model.predict``: Dask pickles it, and with it the fitted model (weights and
hyperparameters only, see ``LeNet5.__getstate__``), and sends it to the worker processes,
which rebuild the network and label their chunks. The labels are gathered and compared
with one local ``model.predict`` over all the images: they must be the same.

Run it here (a ``LocalCluster`` of worker processes on 127.0.0.1)::

    python examples/dask_predict.py --workers 2 --images 4000 --chunk 500

or on a running Dask cluster, whose workers have lenet5 installed (``pip install lenet5-rs``,
the same version)::

    python examples/dask_predict.py --scheduler tcp://scheduler:8786 --images 100000

``--model PATH`` predicts with a saved model (``lenet5 train --save PATH``); without it
the example trains a small one on the embedded MNIST subset first (a few seconds).
Exit code 0 when the labels from Dask equal the local ones, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time
from collections.abc import Iterator

import numpy as np


def image_batch(n_images: int) -> np.ndarray:
    """``n_images`` digits (uint8, (n, 28, 28)): the embedded subset, repeated if needed."""
    from lenet5.datasets import load_mnist

    (x_train, _), (x_test, _) = load_mnist()
    pool = np.concatenate([x_test, x_train])
    repeats = -(-n_images // pool.shape[0])
    return np.ascontiguousarray(np.tile(pool, (repeats, 1, 1))[:n_images])


def get_model(path: str | None):
    """A fitted LeNet5: loaded from ``path``, or trained on the embedded subset."""
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    if path is not None:
        return LeNet5.load(path)
    (x, y), _ = load_mnist()
    model = LeNet5(epochs=2, optimizer="adam", learning_rate=1e-3, random_state=0, verbose=0)
    return model.fit(x, y)


def predict_on_dask(model, images, chunk: int, client, timeout: float) -> np.ndarray:
    """Labels of ``images`` (a numpy or dask array) computed on the client's workers.

    Every task gets a copy of the model (pickled into the task graph) set to one thread,
    so that the tasks running side by side on a worker do not compete for its cores.
    """
    import dask.array as da

    worker_model = copy.deepcopy(model).set_params(n_jobs=1)
    if not isinstance(images, da.Array):
        images = da.from_array(images, chunks=(chunk, *images.shape[1:]))
    labels = images.map_blocks(
        worker_model.predict,
        drop_axis=list(range(1, images.ndim)),
        dtype=model.classes_.dtype,
        meta=np.empty((0,), dtype=model.classes_.dtype),  # predict is not called on meta
    )
    return client.compute(labels).result(timeout=timeout)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--scheduler ADDRESS`` and ``--workers N``, as :func:`dask_client` takes them."""
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running Dask scheduler (e.g. tcp://scheduler:8786); default: "
        "start a LocalCluster of worker processes on this machine",
    )
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator:
    """A Client of the scheduler at ``scheduler`` or, when it is None, of a LocalCluster of
    ``workers`` worker processes on this machine (closed afterwards). Prints the process
    ids of the workers."""
    from dask.distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    else:
        cluster = None
    try:
        with Client(cluster if cluster is not None else scheduler, timeout=60) as client:
            pids = client.run(os.getpid)
            print(
                f"{len(pids)} Dask workers in processes {sorted(pids.values())} "
                f"(this process: {os.getpid()})",
                flush=True,
            )
            yield client
    finally:
        if cluster is not None:
            cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cluster_options(parser)
    parser.add_argument("--images", type=int, default=4000, help="number of images")
    parser.add_argument("--chunk", type=int, default=500, help="images per chunk (task)")
    parser.add_argument("--model", metavar="PATH", help="a saved model (lenet5 train --save)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed for the computation"
    )
    args = parser.parse_args(argv)

    model = get_model(args.model)
    images = image_batch(args.images)

    start = time.perf_counter()
    with dask_client(args.scheduler, args.workers) as client:
        distributed = predict_on_dask(model, images, args.chunk, client, args.timeout)
    elapsed = time.perf_counter() - start

    local = model.predict(images)
    same = distributed.shape == local.shape and bool(np.array_equal(distributed, local))
    n_chunks = -(-args.images // args.chunk)
    print(f"{args.images:,} images in {n_chunks} chunks of up to {args.chunk} on Dask: "
          f"{elapsed:.1f} s (cluster start-up included)")  # fmt: skip
    values, counts = np.unique(distributed, return_counts=True)
    print("label counts: " + ", ".join(f"{v}: {c}" for v, c in zip(values.tolist(), counts)))
    print(f"same labels as one local predict: {'yes' if same else 'NO'}", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
