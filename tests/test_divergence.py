"""Divergence: a learning rate (or weight decay) that blows up the loss.

Training stops with FloatingPointError naming the epoch (and the mini-batch when a loss or
gradient was not finite). A failed call changes nothing: the model is left exactly as it
was before the ``fit`` or ``partial_fit`` (unfitted if it was; the weights, ``n_iter_``
and ``history_`` of its earlier fit otherwise). The native layer alone keeps the weights
of the last batch whose loss was finite; those can be finite yet so large that a forward
pass on other images overflows, and the last update of a fit has no loss after it at all,
so after every epoch the estimator also bounds, from the weights, every value a forward
pass can compute for any valid image: a fit never returns a model whose outputs are not
finite.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import assert_same_snapshot, snapshot, weights_equal
from lenet5 import NotFittedError, _lenet5

DIVERGING = [
    pytest.param(
        {"learning_rate": 1e6, "activation": "relu", "pooling": "max", "momentum": 0.0},
        id="lr-1e6-relu-max",
    ),
    pytest.param({"learning_rate": 1e3, "activation": "relu", "pooling": "avg"}, id="lr-1e3"),
    pytest.param({"learning_rate": 1e30, "activation": "relu"}, id="lr-1e30"),
    pytest.param({"learning_rate": 1e38}, id="lr-1e38-tanh"),
    pytest.param({"weight_decay": 1e30}, id="weight-decay-1e30"),
    pytest.param({"weight_decay": 1e30, "optimizer": "sdlm"}, id="sdlm-weight-decay"),
]

#: Settings whose very last update explodes (one epoch of one batch, or full-batch SGD):
#: every loss the native loop sees is finite, the weights after it are not usable.
LAST_STEP = [
    pytest.param({"preset": "modern", "learning_rate": 1e10}, 20, id="modern-adam-1e10"),
    pytest.param(
        {"learning_rate": 1e8, "activation": "relu", "batch_size": 600, "momentum": 0.0},
        600,
        id="full-batch-relu-1e8",
    ),
]


def assert_usable(model, xt):
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights.values()), "non-finite weights"
    extremes = np.stack([np.zeros((28, 28)), np.ones((28, 28))]).astype(np.float32)
    for images in (xt, extremes):
        proba = model.predict_proba(images)
        assert np.isfinite(proba).all(), "predict_proba gives NaN"
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        assert model.predict(images).shape == (len(images),)
    assert len(model.history_["loss"]) == model.n_iter_
    assert all(math.isfinite(v) for v in model.history_["loss"])


def assert_unfitted(model):
    assert not hasattr(model, "classes_")
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((1, 28, 28), np.uint8))


@pytest.mark.parametrize("params", DIVERGING)
def test_divergence_in_the_first_epoch(small, make_model, params):
    (x, y), _ = small
    model = make_model(epochs=3, **params)
    with pytest.raises(FloatingPointError) as info:
        model.fit(x, y)
    message = str(info.value)
    assert "training diverged in epoch 1" in message
    assert "left as it was before this call" in message
    assert_unfitted(model)


@pytest.mark.parametrize(("params", "n"), LAST_STEP)
def test_divergence_on_the_last_update_is_detected(small, make_model, params, n):
    """The issue's case: the exploding step is the last one, so no loss after it shows
    it; before the fix, fit returned a model with NaN probabilities."""
    (x, y), _ = small
    model = make_model(epochs=1, **params)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1") as info:
        model.fit(x[:n], y[:n] % 2)
    assert "left as it was before this call" in str(info.value)
    assert_unfitted(model)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"preset": "modern"},
        {"preset": "paper", "batch_size": 8},
        {"learning_rate": 10.0},
        {"learning_rate": 1e3, "optimizer": "adam"},
        {"learning_rate": 1e5, "activation": "relu", "pooling": "avg", "momentum": 0.0},
        {"learning_rate": 1e4, "output": "rbf", "activation": "relu"},
        {"learning_rate": 1e9, "optimizer": "sdlm", "batch_size": 600},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults",
)
def test_no_fit_returns_a_model_with_non_finite_outputs(small, make_model, params):
    """Whatever the settings, fit either raises FloatingPointError and leaves the model
    unfitted, or returns a model with finite probabilities, also on the extreme images."""
    (x, y), (xt, _) = small
    model = make_model(epochs=2, **params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a TrainingWarning for the hopeless ones
            model.fit(x, y)
    except FloatingPointError:
        assert_unfitted(model)
    else:
        assert_usable(model, xt)


def test_divergence_in_a_later_epoch_leaves_the_previous_fit(small, make_model):
    (x, y), (xt, _) = small
    recorded = []

    def schedule(epoch, lr):
        return 0.05 if epoch < 2 else 1e7

    model = make_model(epochs=2).fit(x, y)
    model.set_params(
        epochs=5,
        lr_schedule=schedule,
        activation="relu",
        pooling="max",
        momentum=0.0,
        callbacks=lambda epoch, logs: recorded.append(model.get_weights()),
    )
    before = snapshot(model)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 3 .*at batch \d+"):
        model.fit(x, y)
    assert len(recorded) == 2  # the callbacks saw the two good epochs
    assert_same_snapshot(before, snapshot(model))
    assert_usable(model, xt)


def test_divergence_with_early_stopping_leaves_the_model_unfitted(small, make_model):
    (x, y), _ = small
    model = make_model(
        epochs=5,
        lr_schedule=lambda epoch, lr: 0.05 if epoch < 2 else 1e7,
        activation="relu",
        pooling="max",
        momentum=0.0,
        early_stopping=True,
        patience=10,
    )
    with pytest.raises(FloatingPointError, match="diverged in epoch 3"):
        model.fit(x, y)
    assert_unfitted(model)


def test_divergence_in_a_warm_fit_changes_nothing(fitted, small):
    (x, y), (xt, _) = small
    fitted.set_params(
        warm_start=True, epochs=2, lr_schedule=lambda e, lr: 1e-3 if e == 0 else 1e38
    )
    before = snapshot(fitted)
    with pytest.raises(FloatingPointError):
        fitted.fit(x, y)
    assert_same_snapshot(before, snapshot(fitted))
    assert_usable(fitted, xt)


def test_divergence_in_partial_fit_changes_nothing_of_the_fitted_model(fitted, small):
    (x, y), (xt, _) = small
    before = fitted.get_weights()
    n_iter = fitted.n_iter_
    history = {k: list(v) for k, v in fitted.history_.items()}
    fitted.set_params(optimizer="sgd", learning_rate=0.05, weight_decay=1e30)
    with pytest.raises(FloatingPointError, match=f"diverged in epoch {n_iter + 1}"):
        fitted.partial_fit(x, y)
    assert fitted.n_iter_ == n_iter
    assert fitted.history_ == history
    assert weights_equal(before, fitted.get_weights())
    assert_usable(fitted, xt)


def test_model_trains_normally_after_divergence(small, make_model):
    (x, y), (xt, _) = small
    model = make_model(epochs=2, learning_rate=1e6, activation="relu", pooling="max")
    with pytest.raises(FloatingPointError):
        model.fit(x, y)
    model.set_params(learning_rate=0.05)
    model.fit(x, y)
    assert model.n_iter_ == 2
    assert_usable(model, xt)


def test_a_healthy_fit_is_far_from_the_output_bound(fitted_small):
    """The bound that decides divergence is loose, but not so loose that it could refuse
    a network that learnt something: the trained one is orders of magnitude below it."""
    from lenet5._training import OUTPUT_BOUND_LIMIT, _output_bound

    bound = _output_bound(fitted_small._net)
    assert 1.0 < bound < OUTPUT_BOUND_LIMIT * 1e-25


def test_the_output_bound_holds(fitted_small, mnist):
    """Every activation and output value is within the bound."""
    from lenet5._training import _output_bound

    (_, _), (xt, _) = mnist
    bound = _output_bound(fitted_small._net)
    extremes = np.stack([np.zeros((28, 28)), np.ones((28, 28))]).astype(np.float32)
    for images in (xt[:200], extremes):
        for name, values in fitted_small.activations(images).items():
            assert np.abs(values).max() <= bound, name


# ---------------------------------------------------------------- native layer


def test_native_divergence_leaves_finite_weights():
    """The native train_epoch documents that on divergence "the weights are kept from the
    last finite batch". With a huge weight decay, the update itself overflows (the check
    in Optimizer::step looks at the summed gradient only, not at g + weight_decay * p nor
    at the new weights), so the weights become infinite and the next batch's NaN loss is
    reported while the infinite weights stay."""
    rng = np.random.default_rng(0)
    data = _lenet5.Dataset(
        rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), np.arange(256, dtype=np.int64) % 10
    )
    for optimizer in ("sgd", "sdlm"):
        net = _lenet5.Network(10, seed=0)
        net.reset_optimizer(optimizer, learning_rate=0.05, weight_decay=1e30)
        with pytest.raises(FloatingPointError, match="diverged at batch"):
            net.train_epoch(data, 32, 1)
        weights = net.get_weights()
        bad = {k: int((~np.isfinite(v)).sum()) for k, v in weights.items()}
        assert sum(bad.values()) == 0, f"{optimizer}: non-finite weights kept: {bad}"
