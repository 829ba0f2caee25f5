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
