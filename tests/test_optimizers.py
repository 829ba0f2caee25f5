"""SGD, Adam and AdamW steps of the native core against update rules written out in NumPy.

Three full-batch steps on a few images: the gradients come from the independent float64
reference (``tests/reference.py``) at the weights the native network holds before each
step, and the optimizer state (momentum, moments, step count) is carried by the reference
itself, so a wrong momentum, bias correction or weight decay shows at the second step.
(SDLM's step is checked in ``tests/test_paper.py``.)
"""

from __future__ import annotations

import lenet5._lenet5 as native
import numpy as np
import pytest
import reference as ref
from lenet5 import LeNet5

N = 12
STEPS = 3


def reference_step(kind, w, g, state, t, lr, wd, momentum, nesterov, b1, b2, eps):
    """One step of the documented rule; updates ``state`` (a dict) in place."""
    if kind == "sgd":
        g = g + wd * w
        m = momentum * state.get("m", 0.0) + g
        state["m"] = m
        return w - lr * (g + momentum * m if nesterov else m)
    if kind == "adam":
        g = g + wd * w
    m = b1 * state.get("m", 0.0) + (1 - b1) * g
    v = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    state["m"], state["v"] = m, v
    adam = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    decay = lr * wd * w if kind == "adamw" else 0.0
    return w - decay - lr * adam


CASES = [  # optimizer, learning rate, weight decay, momentum, nesterov
    ("sgd", 0.05, 0.0, 0.9, False),
    ("sgd", 0.05, 0.01, 0.9, True),
    ("sgd", 0.1, 0.0, 0.0, False),
    ("adam", 0.002, 0.0, 0.9, False),
    ("adam", 0.002, 0.05, 0.9, False),
    ("adamw", 0.002, 0.05, 0.9, False),
]


@pytest.mark.parametrize(("kind", "lr", "wd", "momentum", "nesterov"), CASES)
def test_steps_match_the_reference_rule(kind, lr, wd, momentum, nesterov):
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (N, 28, 28)).astype(np.uint8)
    y = rng.integers(0, 10, N).astype(np.int64)
    x = ref.map_pixels(pixels)
    # epsilon well above the float32 error of small gradients: with a small epsilon Adam's
    # first steps are about lr * sign(g), which amplifies that error by lr / epsilon near g = 0
    b1, b2, eps = 0.8, 0.95, 1e-2
    net = native.Network(10, seed=4, init="lecun_sqrt")  # gradients of unit order in every layer
    net.reset_optimizer(
        kind, lr, momentum=momentum, weight_decay=wd, nesterov=nesterov, beta1=b1, beta2=b2,
        epsilon=eps, seed=1,
    )  # fmt: skip
    data = native.Dataset(pixels, y)
    states = {}
    for t in range(1, STEPS + 1):
        w = {k: v.astype(np.float64) for k, v in net.get_weights().items()}
        grads = ref.gradients(w, x, y)
        stats = net.train_epoch(data, batch_size=N)
        assert stats["batches"] == 1
        after = net.get_weights()
        for name in w:
            state = states.setdefault(name, {})
            expected = reference_step(
                kind, w[name], grads[name], state, t, lr, wd, momentum, nesterov, b1, b2, eps
            )
            step = expected - w[name]
            if name == "c3.weight":  # entries outside Table I stay 0
                assert np.all(after[name][~ref.c3_mask()] == 0)
            assert np.abs(step).max() > 1e-5 * np.abs(w[name]).max(), (t, name)
            # The step is what is under test. Allowed: 1e-4 of the largest step (float32
            # gradients and state) plus the float32 rounding of the new weights.
            ulp = float(np.spacing(np.float32(np.abs(expected).max())))
            error = np.abs(after[name] - expected).max()
            assert error <= 1e-4 * np.abs(step).max() + 2 * ulp, (t, name, error)


def test_adamw_differs_from_adam_only_through_the_decay(mnist):
    (x, y), _ = mnist
    common = {"epochs": 2, "batch_size": 32, "random_state": 0, "verbose": 0}
    plain = (
        LeNet5(optimizer="adam", weight_decay=0.0, **common).fit(x[:128], y[:128]).get_weights()
    )
    no_decay = (
        LeNet5(optimizer="adamw", weight_decay=0.0, **common).fit(x[:128], y[:128]).get_weights()
    )
    decayed = LeNet5(optimizer="adamw", weight_decay=0.1, **common).fit(x[:128], y[:128])
    for name, value in plain.items():
        np.testing.assert_array_equal(no_decay[name], value, err_msg=name)
    # decoupled decay pulls the weights towards 0
    norm = sum(float(np.square(v).sum()) for v in plain.values())
    assert sum(float(np.square(v).sum()) for v in decayed.get_weights().values()) < norm
    assert decayed.resolved_params()["learning_rate"] == 0.001
