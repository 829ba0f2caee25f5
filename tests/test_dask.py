"""The Dask example: prediction on a LocalCluster of worker processes equals a local one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dask.array")
pytest.importorskip("dask.distributed")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dask_predict.py"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="examples/ is not beside the tests")
def test_dask_example_predicts_like_one_local_predict(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--workers",
            "2",
            "--images",
            "3000",
            "--chunk",
            "500",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # Dask's scratch space, if any, stays in the test's folder
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "same labels as one local predict: yes" in out
    assert "3,000 images in 6 chunks of up to 500 on Dask" in out
    # Two worker processes, neither of them the example's own process.
    match = re.search(r"^2 Dask workers in processes \[(\d+), (\d+)\] \(this process: (\d+)\)",
                      out, re.M)  # fmt: skip
    assert match, out
    workers, own = {match.group(1), match.group(2)}, match.group(3)
    assert len(workers) == 2
    assert own not in workers
    counts = re.search(r"^label counts: (.*)$", out, re.M).group(1)
    assert sum(int(part.split(": ")[1]) for part in counts.split(", ")) == 3000


def test_dask_example_in_process_with_threads(mnist, fitted_small):
    """The same function on a thread-based cluster, the model's labels compared directly
    (dask.array input, chunks of uneven size)."""
    import dask.array as da
    import numpy as np
    from dask.distributed import Client, LocalCluster

    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from dask_predict import predict_on_dask
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    _, (xt, _) = mnist
    images = da.from_array(xt, chunks=(333, 28, 28))
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    with cluster, Client(cluster) as client:
        labels = predict_on_dask(fitted_small, images, 333, client, timeout=60)
    np.testing.assert_array_equal(labels, fitted_small.predict(xt))
    assert fitted_small.n_jobs is None  # the caller's model is not changed


GRID_EXAMPLE = EXAMPLE.parent / "dask_grid_search.py"


@pytest.mark.skipif(not GRID_EXAMPLE.exists(), reason="examples/ is not beside the tests")
def test_grid_search_on_dask_finds_the_local_best_parameters(tmp_path):
    pytest.importorskip("sklearn")
    result = subprocess.run(
        [sys.executable, str(GRID_EXAMPLE), "--workers", "2", "--images", "1200"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    match = re.search(r"^2 Dask workers in processes \[(\d+), (\d+)\] \(this process: (\d+)\)",
                      out, re.M)  # fmt: skip
    assert match, out
    assert match.group(3) not in {match.group(1), match.group(2)}
    assert re.search(r"^12 fits on 1,200 digits: .* tasks ran on 2 workers$", out, re.M), out
    here = re.search(r"^best parameters here: +(\{.*\}) \(score (\S+)\)$", out, re.M)
    there = re.search(r"^best parameters on Dask: (\{.*\}) \(score (\S+)\)$", out, re.M)
    assert here, out
    assert there, out
    assert here.groups() == there.groups()
    assert "same best parameters and scores: yes" in out


def test_grid_search_on_dask_in_process(mnist):
    """The example's search on a thread-based cluster against GridSearchCV run here, the
    cross-validation scores compared directly (and they differ between grid points, so the
    best parameters are no tie)."""
    pytest.importorskip("sklearn")
    import numpy as np
    from dask.distributed import Client, LocalCluster

    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from dask_grid_search import make_search, search_on_dask
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    (x, y), _ = mnist
    x, y = x[:900], y[:900]
    local = make_search(n_jobs=None).fit(x, y)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with cluster, Client(cluster) as client:
        remote, workers = search_on_dask(x, y, client)
    assert len(workers) == 2
    assert remote.best_params_ == local.best_params_
    scores = local.cv_results_["mean_test_score"]
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"], scores)
    assert len(set(scores.tolist())) == len(scores)
    assert remote.best_estimator_.score(x, y) == local.best_estimator_.score(x, y)
