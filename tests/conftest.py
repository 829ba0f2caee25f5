"""Shared fixtures: the embedded MNIST subset and small trained models."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from lenet5 import LeNet5
from lenet5.datasets import load_mnist

# Native training calls have no fixed duration; hypothesis must not time them.
settings.register_profile(
    "lenet5", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("lenet5"),
    derandomize=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "lenet5")


@pytest.fixture(scope="session")
def mnist():
    """The embedded subset: ((x_train, y_train), (x_test, y_test)), read once."""
    return load_mnist()


@pytest.fixture(scope="session")
def small(mnist):
    """600 training and 200 test digits (copies, safe to modify)."""
    (x, y), (xt, yt) = mnist
    return (x[:600].copy(), y[:600].copy()), (xt[:200].copy(), yt[:200].copy())


@pytest.fixture
def make_model():
    """Factory for quiet, seeded models: ``make_model(epochs=1, **overrides)``."""

    def factory(**overrides):
        params = {"epochs": 1, "random_state": 0, "verbose": 0, "n_jobs": 1}
        params.update(overrides)
        return LeNet5(**params)

    return factory


@pytest.fixture(scope="session")
def fitted_small(mnist):
    """A model that has learnt something (Adam, 3 epochs on the 4,000 training digits,
    about 85% test accuracy), so probabilities are far from uniform. Shared: do not
    modify; use ``fitted`` for a private copy."""
    (x, y), _ = mnist
    model = LeNet5(epochs=3, optimizer="adam", learning_rate=1e-3, random_state=0, verbose=0)
    return model.fit(x, y)


@pytest.fixture
def fitted(fitted_small):
    """A private copy of ``fitted_small`` that a test may modify."""
    import copy

    return copy.deepcopy(fitted_small)


def weights_equal(a: dict, b: dict) -> bool:
    """Same names and bit-identical arrays."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def snapshot(model) -> dict:
    """Everything observable about a model, to check that a failed call changed nothing."""
    state = {"params": model.get_params()}
    if hasattr(model, "classes_"):
        state["classes_"] = model.classes_.copy()
        state["n_iter_"] = model.n_iter_
        state["history_"] = {k: list(v) for k, v in model.history_.items()}
        state["weights"] = model.get_weights()
    return state


def child_report(script: str, timeout: float = 300) -> object:
    """Run ``script`` in a child Python process and return what it printed as JSON after
    ``REPORT `` (an assertion error with its stderr if it failed)."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(li for li in done.stdout.splitlines() if li.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def assert_same_snapshot(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    assert before["params"].keys() == after["params"].keys()
    for key, value in before["params"].items():
        assert after["params"][key] is value, key
    if "classes_" in before:
        np.testing.assert_array_equal(before["classes_"], after["classes_"])
        assert before["n_iter_"] == after["n_iter_"]
        assert before["history_"] == after["history_"]
        assert weights_equal(before["weights"], after["weights"])


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, mnist):
    """An MNIST-style folder with 300 training and 100 test digits."""
    from test_datasets import idx_bytes

    (x, y), (xt, yt) = mnist
    folder = tmp_path_factory.mktemp("tiny-mnist")
    arrays = {
        "train-images-idx3-ubyte.gz": x[:300],
        "train-labels-idx1-ubyte.gz": y[:300],
        "t10k-images-idx3-ubyte.gz": xt[:100],
        "t10k-labels-idx1-ubyte.gz": yt[:100],
    }
    for name, array in arrays.items():
        (folder / name).write_bytes(gzip.compress(idx_bytes(array)))
    return folder
