"""Divergence: a learning rate (or weight decay) that blows up the loss.

Training stops with FloatingPointError naming the epoch and the mini-batch. The model is
then consistent and usable: its weights are those it had before the diverging epoch
(finite, and ``n_iter_`` / ``history_`` describe them), so ``predict_proba`` gives finite
probabilities. The native layer alone keeps the weights of the last batch whose loss was
finite; those can be finite yet so large that a forward pass on other images overflows,
which is why the estimator goes back to the start of the epoch.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import weights_equal
from lenet5 import _lenet5

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


def assert_usable(model, xt):
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights.values()), "non-finite weights"
    proba = model.predict_proba(xt)
    assert np.isfinite(proba).all(), "predict_proba gives NaN after divergence"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert model.predict(xt).shape == (len(xt),)
    assert len(model.history_["loss"]) == model.n_iter_
    assert all(math.isfinite(v) for v in model.history_["loss"])


@pytest.mark.parametrize("params", DIVERGING)
def test_divergence_in_the_first_epoch(small, make_model, params):
    (x, y), (xt, _) = small
    model = make_model(epochs=3, **params)
    with pytest.raises(FloatingPointError) as info:
        model.fit(x, y)
    message = str(info.value)
    assert "training diverged in epoch 1" in message
    assert re.search(r"at batch \d+ of this epoch", message)
    assert "before epoch 1" in message
    assert model.n_iter_ == 0
    assert_usable(model, xt)
    # the weights are the initial ones: a network built from the same configuration
    initial = _lenet5.Network(**model._net.config()).get_weights()
    assert weights_equal(model.get_weights(), initial)


def test_divergence_in_a_later_epoch_keeps_the_last_good_epoch(small, make_model):
    (x, y), (xt, _) = small
    recorded = []

    def schedule(epoch, lr):
        return 0.05 if epoch < 2 else 1e7

    model = make_model(
        epochs=5,
        lr_schedule=schedule,
        activation="relu",
        pooling="max",
        momentum=0.0,
        callbacks=lambda epoch, logs: recorded.append(model.get_weights()),
    )
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 3 .*at batch \d+"):
        model.fit(x, y)
    assert model.n_iter_ == 2
    assert len(recorded) == 2
    assert weights_equal(model.get_weights(), recorded[-1])
    assert_usable(model, xt)
    assert model.score(xt, model.predict(xt)) == 1.0


def test_divergence_with_early_stopping_keeps_the_best_epoch(small, make_model):
    (x, y), (xt, _) = small
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
    assert model.best_epoch_ in (1, 2)
    assert_usable(model, xt)


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
