"""Subnormal numbers: the native core never makes any, and leaves Python's arithmetic alone.

Arithmetic on subnormal floats (|x| < 1.2e-38 for float32) is 10-100x slower on many x86
CPUs, and weight decay on dead ReLU units used to leave thousands of weights subnormal
after a few epochs, slowing every later epoch. The core does not switch the CPU to
flush-to-zero (Rust code may not change that mode); it keeps subnormals out of the
numbers instead: the optimizer stores no weight or moment so small that a product of the
next step would be subnormal, and ``set_weights`` stores subnormal values as zeros. So
(1) no training leaves a subnormal weight, (2) a model given subnormal weights predicts
exactly as with zeros there, (3) the floating-point mode of the calling thread is never
touched: subnormal arithmetic in Python and NumPy works before, during (in callbacks) and
after every native call, and (4) training stays bit-identical across thread counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import weights_equal
from lenet5 import LeNet5, _lenet5, distort
from lenet5.datasets import load_mnist

TINY = np.finfo(np.float32).tiny  # smallest normal float32, 1.18e-38


def n_subnormal(arrays) -> int:
    return sum(int(((np.abs(a) < TINY) & (a != 0)).sum()) for a in arrays)


def subnormal_arithmetic_works() -> bool:
    """Gradual underflow on this thread, in float32 (NumPy) and float64 (Python floats):
    flush-to-zero would make the products zero, denormals-are-zero the sums."""
    a = np.float32(1e-39) * np.float32(0.5)  # a subnormal result
    b = np.float32(1e-40) + np.float32(0.0)  # a subnormal operand
    c = np.array([3e-41], np.float32) * np.float32(2.0)
    d = 2.2250738585072014e-308 / 2.0  # float64 subnormal result
    e = 5e-324 + 0.0  # smallest float64 subnormal as an operand
    return bool(a != 0 and b != 0 and c[0] != 0 and d != 0 and e != 0)


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = load_mnist()
    return (x[:1500], y[:1500]), (xt[:300], yt[:300])


def test_the_platform_has_gradual_underflow():
    # If this fails, the interpreter itself runs with flush-to-zero and the next test
    # cannot tell anything.
    assert subnormal_arithmetic_works()


def test_native_calls_leave_subnormal_arithmetic_in_python_alone(digits):
    (x, y), (xt, _) = digits
    seen_in_callbacks = []

    def callback(epoch, logs):
        # Runs on the calling thread between native epochs.
        seen_in_callbacks.append(subnormal_arithmetic_works())

    for n_jobs in (1, 2):
        model = LeNet5(
            preset="modern",
            epochs=2,
            random_state=0,
            verbose=0,
            n_jobs=n_jobs,
            callbacks=[callback],
        )
        model.fit(x, y)
        assert subnormal_arithmetic_works(), f"after fit, n_jobs={n_jobs}"
        model.predict(xt)  # wide chunks, on the pool
        assert subnormal_arithmetic_works()
        model.predict(xt[:3])  # single images, on the calling thread
        model.predict(xt[0])
        model.predict_proba(xt)
        assert subnormal_arithmetic_works()
        model.activations(xt[:4])
        assert subnormal_arithmetic_works()
        model.partial_fit(x[:64], y[:64])
        assert subnormal_arithmetic_works()
    distort(xt[:8], random_state=1)
    assert subnormal_arithmetic_works()
    paper = LeNet5(preset="paper", epochs=1, random_state=0, verbose=0, n_jobs=2)
    paper.fit(x[:300], y[:300])  # SDLM: curvature estimates on the pool
    assert subnormal_arithmetic_works()
    net = _lenet5.Network(10, seed=3)
    xs = np.full((9, 32, 32), 0.5, np.float32)
    _lenet5._forward_backward(net, xs, np.arange(9) % 10)
    _lenet5._forward_backward(net, xs, np.arange(9) % 10, curvature=True)
    assert subnormal_arithmetic_works()
    # Inside the progress callback of a native epoch too (Python called from native code).
    progress = []
    data = _lenet5.Dataset(x[:256], y[:256].astype(np.int64))
    net.train_epoch(
        data,
        8,
        1,
        callback=lambda done, loss: progress.append(subnormal_arithmetic_works()),
        interval=0.0,
    )
    assert progress
    assert all(progress)
    assert seen_in_callbacks
    assert all(seen_in_callbacks)


@pytest.mark.parametrize(
    "params",
    [
        # Adam with weight decay on ReLU units: the weights of dead units decay. Before the
        # floors, 3 epochs left about 12,000 of the 61,706 weights subnormal.
        {"preset": "modern", "batch_size": 4},
        {"preset": "paper", "epochs": 2},  # SDLM, with its curvature estimates
    ],
    ids=["modern", "paper"],
)
def test_training_leaves_no_subnormal_weight(params, mnist):
    (x, y), _ = mnist
    params = {"epochs": 3, "random_state": 0, "verbose": 0, **params}
    model = LeNet5(**params).fit(x, y)
    weights = model.get_weights()
    assert n_subnormal(weights.values()) == 0
    if model.hessian_diag_ is not None:
        assert n_subnormal(model.hessian_diag_.values()) == 0
    assert np.isfinite(model.predict_proba(x[:50])).all()


def test_subnormal_weights_are_stored_as_zeros(fitted, mnist):
    _, (xt, _) = mnist
    rng = np.random.default_rng(0)
    weights = fitted.get_weights()
    given, zeroed = {}, {}
    for name, w in weights.items():
        g, z = w.copy(), w.copy()
        if name in ("c5.weight", "f6.weight", "output.weight"):
            mask = rng.random(w.shape) < 0.5
            sign = np.where(rng.random(w.shape) < 0.5, -1.0, 1.0).astype(np.float32)
            g[mask] = (sign * np.float32(1e-39))[mask]
            g.flat[0] = np.float32(-1.4e-45)  # the smallest subnormal, negative
            z[mask] = 0.0
            z.flat[0] = 0.0
        given[name], zeroed[name] = g, z
    assert n_subnormal(given.values()) > 1000
    fitted.set_weights(given)
    got = fitted.get_weights()
    assert n_subnormal(got.values()) == 0
    for name in got:
        np.testing.assert_array_equal(got[name], zeroed[name], err_msg=name)
        # A zero keeps the sign of the value it replaces.
        np.testing.assert_array_equal(np.signbit(got[name]), np.signbit(given[name]))
    p_given = fitted.predict_proba(xt)
    assert np.isfinite(p_given).all()
    fitted.set_weights(zeroed)
    np.testing.assert_array_equal(fitted.predict_proba(xt), p_given)
    # Float64 values that round to float32 subnormals are stored as zeros too.
    as64 = {k: v.astype(np.float64) for k, v in given.items()}
    as64["f6.bias"] = np.full(as64["f6.bias"].shape, 1e-40)
    fitted.set_weights(as64)
    assert n_subnormal(fitted.get_weights().values()) == 0
    assert not fitted.get_weights()["f6.bias"].any()


def test_training_is_bit_identical_across_thread_counts(digits):
    (x, y), (xt, _) = digits
    models = [
        LeNet5(preset="modern", epochs=2, random_state=4, verbose=0, n_jobs=jobs).fit(x, y)
        for jobs in (1, 2)
    ]
    assert weights_equal(models[0].get_weights(), models[1].get_weights())
    np.testing.assert_array_equal(models[0].predict_proba(xt), models[1].predict_proba(xt))
