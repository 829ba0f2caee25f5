"""Checks of the float64 NumPy reference itself (tests/reference.py); no native module needed.

Gradients are checked against central finite differences in float64, the Gauss-Newton diagonal
against an explicit diag(J^T H J) on small networks where the estimate is exact, and the
building blocks against the paper's numbers and hand-written loops.
"""

import itertools

import numpy as np
import pytest
import reference as ref

try:  # tiny float64 products: BLAS threads only contend (3x slower on a busy 2-core box)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    if threadpool_limits is None:
        yield
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            yield


CONFIGS = list(itertools.product(ref.ACTIVATIONS, ref.POOLINGS, ref.C3_MODES))
CONFIG_IDS = ["-".join(config) for config in CONFIGS]


def random_case(activation, pooling, c3, n=3, seed=0, n_classes=10):
    """Random weights (scaled so that the gradients of every layer are well above rounding) and
    random inputs in network units."""
    rng = np.random.default_rng(seed)
    weights = ref.init_weights(rng, n_classes, pooling, c3)
    gain = 1.5 if activation == "tanh" else 3.0
    weights = {name: gain * value for name, value in weights.items()}
    x = rng.uniform(ref.BACKGROUND, ref.INK, size=(n, 32, 32))
    y = rng.integers(0, n_classes, size=n)
    return weights, x, y


def loss_and_branches(weights, x, y, config):
    stages = ref.build_stages(*config)
    outputs, _, taken, _ = ref.run_forward(stages, weights, x[:, None])
    log_p = ref.log_softmax(outputs["output"])
    return -log_p[np.arange(len(y)), y].mean(), taken


def same_branches(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[tag], b[tag]) for tag in a)


def loop_conv2d(x, w, b):
    """Cross-correlation written with plain loops, for the known-value check."""
    n, _, height, width = x.shape
    o, _, kh, kw = w.shape
    y = np.zeros((n, o, height - kh + 1, width - kw + 1))
    for s, m, i, j in itertools.product(range(n), range(o), range(y.shape[2]), range(y.shape[3])):
        y[s, m, i, j] = (w[m] * x[s, :, i : i + kh, j : j + kw]).sum() + b[m]
    return y


# ---------------------------------------------------------------------------------------------
# Paper constants: Table I, parameter counts, activation, pixels, initialisation
# ---------------------------------------------------------------------------------------------


def test_table_i_has_the_papers_pattern():
    table = ref.TABLE_I
    assert table.shape == (6, 16)
    assert table.dtype == bool
    assert table.sum() == 60
    assert table.sum(axis=0).tolist() == [3] * 6 + [4] * 9 + [6]
    # Columns 0-5: three contiguous S2 maps, 6-11: four contiguous (cyclically), 12-14: four
    # non-contiguous ones, 15: all six.
    expected = np.zeros((6, 16), dtype=bool)
    for j in range(6):
        expected[[(j + k) % 6 for k in range(3)], j] = True
        expected[[(j + k) % 6 for k in range(4)], 6 + j] = True
    for j, rows in zip((12, 13, 14), ([0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5])):
        expected[rows, j] = True
    expected[:, 15] = True
    np.testing.assert_array_equal(table, expected)
    np.testing.assert_array_equal(ref.c3_mask("table"), table.T)
    np.testing.assert_array_equal(ref.c3_mask("full"), np.ones((16, 6), dtype=bool))


def test_parameter_counts_match_the_paper():
    counts = ref.param_counts()
    assert counts == {
        "c1": 156,
        "s2": 12,
        "c3": 1516,
        "s4": 32,
        "c5": 48120,
        "f6": 10164,
        "output": 850,
    }
    assert ref.param_count() == 60850
    assert ref.param_count(c3="full") == 60850 - 1516 + 6 * 16 * 25 + 16
    assert ref.param_count(pooling="avg") == ref.param_count(pooling="max") == 60850 - 12 - 32
    assert ref.param_count(n_classes=3) == 60850 - 850 + 3 * 85


@pytest.mark.parametrize("pooling", ref.POOLINGS)
@pytest.mark.parametrize("c3", ref.C3_MODES)
def test_parameter_count_agrees_with_the_tensors(pooling, c3):
    weights = ref.init_weights(np.random.default_rng(1), 7, pooling, c3)
    masked = 25 * int((~ref.c3_mask(c3)).sum())
    assert sum(v.size for v in weights.values()) - masked == ref.param_count(7, pooling, c3)
    assert ("s2.weight" in weights) == (pooling == "sub")


def test_init_follows_the_lecun_rule():
    weights = ref.init_weights(np.random.default_rng(2))
    bounds = ref.init_bounds()
    assert bounds["c1.weight"] == pytest.approx(2.4 / 25)
    assert bounds["s2.weight"] == pytest.approx(2.4 / 4)
    np.testing.assert_allclose(bounds["c3.bias"], 2.4 / (25 * ref.TABLE_I.sum(axis=0)))
    assert bounds["c5.weight"] == pytest.approx(2.4 / 400)
    assert bounds["output.bias"] == pytest.approx(2.4 / 84)
    for name, value in weights.items():
        assert value.dtype == np.float64
        assert value.shape == ref.weight_shapes()[name]
        assert np.all(np.abs(value) <= bounds[name]), name
    assert np.all(weights["c3.weight"][~ref.c3_mask()] == 0)
    assert np.all(weights["c3.weight"][ref.c3_mask()] != 0)
    assert np.abs(weights["c5.weight"]).max() > 0.99 * 2.4 / 400


def test_scaled_tanh_values():
    f = lambda a: ref.activate(np.asarray(a, dtype=np.float64), "tanh")  # noqa: E731
    assert f(1.0) == pytest.approx(1.0, abs=3e-6)  # 0.9999973
    assert f(1.0) == pytest.approx(1.7159 * np.tanh(2.0 / 3.0), rel=1e-15)
    assert f(-1.0) == -f(1.0)
    assert f(0.0) == 0.0
    assert f(50.0) == pytest.approx(1.7159)
    a = np.linspace(-4, 4, 81)
    h = 1e-6
    for activation in ("tanh", "relu"):
        fd = (ref.activate(a + h, activation) - ref.activate(a - h, activation)) / (2 * h)
        slope = ref.activation_slope(a, activation)
        keep = np.abs(a) > 10 * h
        np.testing.assert_allclose(slope[keep], fd[keep], rtol=1e-8, atol=1e-9)
    assert ref.activation_slope(np.array(0.0), "tanh") == pytest.approx(1.7159 * 2 / 3)
    np.testing.assert_array_equal(ref.activate(np.array([-2.0, 0.0, 3.0]), "relu"), [0, 0, 3])


def test_pixel_mapping_and_padding():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[1, 27, 27] = 128
    units = ref.map_pixels(images)
    assert units.shape == (2, 32, 32)
    assert units.dtype == np.float64
    assert units[0, 2, 2] == pytest.approx(1.175)
    assert units[1, 29, 29] == pytest.approx(-0.1 + 1.275 * 128 / 255)
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert np.all(units[:, border] == -0.1)
    inner = units[:, 2:30, 2:30].copy()
    inner[0, 0, 0] = inner[1, 27, 27] = -0.1
    assert np.all(inner == -0.1)

    floats = np.array([[[0.0, 1.0, 0.5] + [0.0] * 29] * 32], dtype=np.float32)
    mapped = ref.map_pixels(floats)
    assert mapped.shape == (1, 32, 32)
    np.testing.assert_allclose(mapped[0, 0, :3], [-0.1, 1.175, -0.1 + 0.6375])
    with pytest.raises(ValueError, match="expected"):
        ref.map_pixels(np.zeros((2, 30, 30)))


# ---------------------------------------------------------------------------------------------
# Building blocks against loops and known values
# ---------------------------------------------------------------------------------------------


def test_conv2d_is_a_valid_cross_correlation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 9, 8))
    w = rng.normal(size=(4, 3, 5, 5))
    b = rng.normal(size=4)
    np.testing.assert_allclose(ref.conv2d(x, w, b), loop_conv2d(x, w, b), rtol=1e-12, atol=1e-12)
    # An asymmetric kernel on a one-hot image: cross-correlation reads the kernel flipped.
    image = np.zeros((1, 1, 5, 5))
    image[0, 0, 2, 2] = 1.0
    kernel = np.arange(9.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(
        ref.conv2d(image, kernel, np.zeros(1))[0, 0], kernel[0, 0, ::-1, ::-1]
    )


def test_conv2d_backward_is_the_adjoint():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 9, 8))
    w = rng.normal(size=(4, 3, 5, 5))
    g = rng.normal(size=(2, 4, 5, 4))
    dx, dw, db = ref.conv2d_backward(g, x, w)
    # <g, conv(x, w)> is bilinear: its gradient wrt x and w is exact with loops.
    dx_loop = np.zeros_like(x)
    dw_loop = np.zeros_like(w)
    for s, m, i, j in itertools.product(range(2), range(4), range(5), range(4)):
        dx_loop[s, :, i : i + 5, j : j + 5] += g[s, m, i, j] * w[m]
        dw_loop[m] += g[s, m, i, j] * x[s, :, i : i + 5, j : j + 5]
    np.testing.assert_allclose(dx, dx_loop, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dw_loop, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_pooling_known_values():
    x = np.array(
        [
            [1.0, 2.0, 5.0, 5.0],
            [3.0, -4.0, 5.0, 1.0],
            [0.0, 0.0, -1.0, -2.0],
            [0.0, 0.0, -3.0, -1.0],
        ]
    )
    x = x[None, None]
    blocks = ref.to_blocks(x)
    np.testing.assert_array_equal(blocks[0, 0, 0, 0], [1, 2, 3, -4])
    np.testing.assert_array_equal(ref.from_blocks(blocks), x)
    avg, _, _ = ref.AvgPool("p").forward({}, x)
    np.testing.assert_array_equal(avg[0, 0], [[0.5, 4.0], [0.0, -1.75]])
    pooled, winner, _ = ref.MaxPool("p").forward({}, x)
    np.testing.assert_array_equal(pooled[0, 0], [[3, 5], [0, -1]])
    np.testing.assert_array_equal(winner[0, 0], [[2, 0], [0, 0]])  # ties: first in row-major order
    dx, _ = ref.MaxPool("p").backward({}, np.ones((1, 1, 2, 2)), winner)
    expected_dx = np.zeros((4, 4))
    expected_dx[[1, 0, 2, 2], [0, 2, 0, 2]] = 1.0
    np.testing.assert_array_equal(dx[0, 0], expected_dx)
    weights = {"p.weight": np.array([0.5]), "p.bias": np.array([0.25])}
    sub, _, _ = ref.SubPool("p").forward(weights, x)
    np.testing.assert_array_equal(sub[0, 0], 0.5 * np.array([[2.0, 16.0], [0.0, -7.0]]) + 0.25)


def test_forward_shapes_probabilities_and_stability():
    weights, x, y = random_case("tanh", "sub", "table", n=4, seed=5)
    out = ref.forward(weights, x, y)
    shapes = {"c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10), "s4": (16, 5, 5)}
    shapes.update({"c5": (120,), "f6": (84,), "output": (10,), "proba": (10,)})
    assert {k: v.shape[1:] for k, v in out.items() if k != "loss"} == shapes
    np.testing.assert_allclose(out["proba"].sum(axis=1), 1.0, rtol=1e-14)
    logits = out["output"]
    naive = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(4), y]
    assert out["loss"] == pytest.approx(naive.mean(), rel=1e-13)
    # Huge logits: still finite, and the loss is the logit gap.
    weights["output.bias"] = np.where(np.arange(10) == 3, 1e4, 0.0)
    out = ref.forward(weights, x, np.full(4, 7))
    assert np.all(np.isfinite(out["proba"]))
    gap = np.mean(out["output"][:, 3] - out["output"][:, 7])
    assert out["loss"] == pytest.approx(gap, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Gradients against central finite differences
# ---------------------------------------------------------------------------------------------


def kink_free_difference(weights, name, index, x, y, config, base_branches):
    """Central difference of the loss in one coordinate with the largest step (1e-5, 1e-6, 1e-7)
    whose two evaluations take the same branches as the base point; (None, None) if none does."""
    for step in (1e-5, 1e-6, 1e-7):
        losses = []
        for sign in (1.0, -1.0):
            moved = dict(weights)
            moved[name] = weights[name].copy()
            moved[name].flat[index] += sign * step
            loss, taken = loss_and_branches(moved, x, y, config)
            if not same_branches(taken, base_branches):
                break
            losses.append(loss)
        else:
            return (losses[0] - losses[1]) / (2 * step), step
    return None, None


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_gradients_match_finite_differences(config):
    activation, pooling, c3 = config
    weights, x, y = random_case(activation, pooling, c3, n=3, seed=6)
    grads = ref.gradients(weights, x, y, activation, pooling, c3)
    assert grads.keys() == weights.keys()
    _, base_branches = loss_and_branches(weights, x, y, config)
    rng = np.random.default_rng(7)
    mask = ref.c3_mask(c3)[:, :, None, None] & np.ones((16, 6, 5, 5), dtype=bool)
    for name, value in weights.items():
        assert grads[name].shape == value.shape
        allowed = mask.ravel() if name == "c3.weight" else np.ones(value.size, dtype=bool)
        scale = np.abs(grads[name]).max()
        assert scale > 1e-5, f"{name}: gradient too small to be checked meaningfully"
        checked = 0
        for index in rng.permutation(np.flatnonzero(allowed))[:32]:
            fd, step = kink_free_difference(weights, name, index, x, y, config, base_branches)
            if fd is None:
                continue
            # Tolerance: truncation (relative to the tensor's scale) + loss rounding / step.
            tolerance = 2e-6 * scale + 2e-15 / step
            error = abs(fd - grads[name].flat[index])
            assert error <= tolerance, (
                name,
                np.unravel_index(index, value.shape),
                fd,
                grads[name].flat[index],
            )
            checked += 1
        assert checked >= min(30, allowed.sum()), (name, checked)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_gradient_along_a_random_direction(config):
    """All coordinates at once: (L(w + h d) - L(w - h d)) / 2h against <grad, d>."""
    activation, pooling, c3 = config
    weights, x, y = random_case(activation, pooling, c3, n=2, seed=8)
    grads = ref.gradients(weights, x, y, activation, pooling, c3)
    rng = np.random.default_rng(9)
    direction = {name: rng.normal(size=value.shape) for name, value in weights.items()}
    direction["c3.weight"] *= ref.c3_mask(c3)[:, :, None, None]
    expected = sum((grads[name] * direction[name]).sum() for name in weights)
    _, base = loss_and_branches(weights, x, y, config)
    for step in (1e-5, 1e-6, 1e-7):
        plus = {name: weights[name] + step * direction[name] for name in weights}
        minus = {name: weights[name] - step * direction[name] for name in weights}
        (loss_plus, br_plus), (loss_minus, br_minus) = (
            loss_and_branches(plus, x, y, config),
            loss_and_branches(minus, x, y, config),
        )
        if same_branches(br_plus, base) and same_branches(br_minus, base):
            break
    else:
        pytest.fail("every step crosses a kink")
    fd = (loss_plus - loss_minus) / (2 * step)
    assert fd == pytest.approx(expected, rel=1e-6, abs=1e-10)


@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_masked_c3_weights_do_not_exist(activation):
    weights, x, y = random_case(activation, "sub", "table", n=2, seed=10)
    absent = ~ref.c3_mask("table")
    grads = ref.gradients(weights, x, y, activation)
    assert np.all(grads["c3.weight"][absent] == 0.0)
    assert np.any(grads["c3.weight"][~absent] != 0.0)
    gn = ref.gauss_newton_diag(weights, x, y, activation)
    assert np.all(gn["c3.weight"][absent] == 0.0)
    # Values stored at absent connections change nothing.
    polluted = dict(weights)
    polluted["c3.weight"] = weights["c3.weight"] + 5.0 * absent[:, :, None, None]
    for key, value in ref.forward(weights, x, y, activation).items():
        np.testing.assert_array_equal(ref.forward(polluted, x, y, activation)[key], value)


# ---------------------------------------------------------------------------------------------
# RBF output, MAP and MLE losses
# ---------------------------------------------------------------------------------------------


def central_difference(function, array, index, step=1e-6):
    plus, minus = array.copy(), array.copy()
    plus.flat[index] += step
    minus.flat[index] -= step
    return (function(plus) - function(minus)) / (2 * step)


def test_rbf_values_and_gradients():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 84))
    prototypes = np.sign(rng.normal(size=(10, 84)))
    penalties = ref.rbf_forward(x, prototypes)
    assert penalties.shape == (3, 10)
    assert penalties[1, 4] == pytest.approx(((x[1] - prototypes[4]) ** 2).sum(), rel=1e-14)
    upstream = rng.normal(size=(3, 10))
    dx, dw = ref.rbf_backward(upstream, x, prototypes)
    for index in rng.choice(x.size, 20, replace=False):
        fd = central_difference(
            lambda v: (upstream * ref.rbf_forward(v, prototypes)).sum(), x, index, 1e-2
        )
        assert fd == pytest.approx(dx.flat[index], rel=1e-7, abs=1e-8)
    for index in rng.choice(prototypes.size, 20, replace=False):
        fd = central_difference(
            lambda v: (upstream * ref.rbf_forward(x, v)).sum(), prototypes, index, 1e-2
        )
        assert fd == pytest.approx(dw.flat[index], rel=1e-7, abs=1e-8)


def test_map_and_mle_losses():
    rng = np.random.default_rng(12)
    penalties = rng.uniform(0, 5, size=(4, 10))
    labels = np.array([0, 3, 9, 3])
    naive = penalties[np.arange(4), labels] + np.log(np.exp(-0.1) + np.exp(-penalties).sum(axis=1))
    assert ref.map_loss(penalties, labels) == pytest.approx(naive.mean(), rel=1e-14)
    assert ref.map_loss(np.zeros((1, 10)), [0], j=0.5) == pytest.approx(np.log(np.exp(-0.5) + 10))
    assert ref.mle_loss(penalties, labels) == pytest.approx(penalties[np.arange(4), labels].mean())
    # Huge penalties: only exp(-j) survives in the competition term.
    expected = (penalties[np.arange(4), labels] + 1e4).mean() - 0.1
    assert ref.map_loss(penalties + 1e4, labels) == pytest.approx(expected, rel=1e-14)
    grad_map = ref.map_loss_grad(penalties, labels)
    grad_mle = ref.mle_loss_grad(penalties, labels)
    for index in range(penalties.size):
        fd = central_difference(lambda p: ref.map_loss(p, labels), penalties, index, 1e-4)
        assert fd == pytest.approx(grad_map.flat[index], rel=1e-6, abs=1e-10)
        fd = central_difference(lambda p: ref.mle_loss(p, labels), penalties, index, 1e-2)
        assert fd == pytest.approx(grad_mle.flat[index], rel=1e-10, abs=1e-12)
    assert np.all(np.isfinite(ref.map_loss_grad(penalties + 1e4, labels)))


# ---------------------------------------------------------------------------------------------
# Diagonal Gauss-Newton
# ---------------------------------------------------------------------------------------------


def explicit_diagonals(stages, weights, x, names, step=1e-6):
    """Per-parameter mean over samples of diag(J^T H J) (full softmax Hessian H) and of
    diag(J^T D J) (D = diag(p (1 - p))), J = d logits / d parameter by central differences."""

    def logits(w):
        return ref.run_forward(stages, w, x)[0][stages[-1].tag]

    z = logits(weights)
    p = np.exp(ref.log_softmax(z))
    full_h = np.einsum("nk,kl->nkl", p, np.eye(p.shape[1])) - np.einsum("nk,nl->nkl", p, p)
    diag_h = p * (1 - p)
    full, diag = {}, {}
    for name in names:
        value = weights[name]
        full[name] = np.zeros(value.shape)
        diag[name] = np.zeros(value.shape)
        for index in range(value.size):
            plus, minus = dict(weights), dict(weights)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name].flat[index] += step
            minus[name].flat[index] -= step
            jac = (logits(plus) - logits(minus)) / (2 * step)  # (n, K)
            full[name].flat[index] = np.einsum("nk,nkl,nl->n", jac, full_h, jac).mean()
            diag[name].flat[index] = (jac * jac * diag_h).sum(axis=1).mean()
    return full, diag


def gauss_newton(stages, weights, x):
    outputs, caches, _, _ = ref.run_forward(stages, weights, x)
    proba = np.exp(ref.log_softmax(outputs[stages[-1].tag]))
    return ref.backprop(stages, weights, caches, ref.softmax_curvature(proba), square=True)


def test_gauss_newton_is_exact_on_a_dense_head():
    """Two dense layers: the output layer's estimate equals diag(J^T H J) with the full softmax
    Hessian (each output weight moves one logit); the hidden layer's equals diag(J^T D J), D the
    diagonal of H (each hidden weight feeds one unit; only H's off-diagonal terms are dropped)."""
    rng = np.random.default_rng(13)
    stages = [ref.Dense("hidden"), ref.Activation("hidden", "tanh"), ref.Dense("out")]
    weights = {
        "hidden.weight": rng.normal(size=(5, 6)),
        "hidden.bias": rng.normal(size=5),
        "out.weight": rng.normal(size=(4, 5)),
        "out.bias": rng.normal(size=4),
    }
    x = rng.normal(size=(3, 6))
    gn = gauss_newton(stages, weights, x)
    full, diag = explicit_diagonals(stages, weights, x, list(weights))
    for name in ("out.weight", "out.bias"):
        np.testing.assert_allclose(gn[name], full[name], rtol=1e-6, atol=1e-12)
    for name in ("hidden.weight", "hidden.bias"):
        np.testing.assert_allclose(gn[name], diag[name], rtol=1e-6, atol=1e-12)
        assert not np.allclose(gn[name], full[name], rtol=1e-3)  # cross terms really are dropped


def test_gauss_newton_is_exact_for_a_convolution_covering_its_input():
    """A 5x5 convolution on a 5x5 input is a dense layer: exact with the full Hessian."""
    rng = np.random.default_rng(14)
    stages = [ref.Conv("k"), ref.Flatten(), ref.Dense("out")]
    weights = {
        "k.weight": rng.normal(size=(3, 2, 5, 5)) * 0.3,
        "k.bias": rng.normal(size=3),
        "out.weight": rng.normal(size=(4, 3)),
        "out.bias": rng.normal(size=4),
    }
    x = rng.normal(size=(3, 2, 5, 5))
    gn = gauss_newton(stages, weights, x)
    full, diag = explicit_diagonals(stages, weights, x, list(weights))
    np.testing.assert_allclose(gn["out.weight"], full["out.weight"], rtol=1e-6, atol=1e-12)
    for name in ("k.weight", "k.bias"):
        np.testing.assert_allclose(gn[name], diag[name], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("pooling", ref.POOLINGS)
def test_gauss_newton_is_exact_through_pooling(pooling):
    """1x1 convolution, pooling, dense output, on 2x2 images with a single non-zero pixel: each
    convolution weight then acts through one position only, so the estimate is exact for it, for
    the pooling coefficients and for the output layer."""
    rng = np.random.default_rng(15)
    pool = {"sub": [ref.SubPool("s"), ref.Activation("s", "tanh")], "avg": [ref.AvgPool("s")]}
    pool["max"] = [ref.MaxPool("s")]
    stages = [ref.Conv("k"), *pool[pooling], ref.Flatten(), ref.Dense("out")]
    weights = {
        "k.weight": rng.normal(size=(2, 1, 1, 1)),
        "k.bias": rng.normal(size=2),
        "out.weight": rng.normal(size=(3, 2)),
        "out.bias": rng.normal(size=3),
    }
    if pooling == "sub":
        weights.update({"s.weight": rng.normal(size=2), "s.bias": rng.normal(size=2)})
    x = np.zeros((4, 1, 2, 2))
    x.reshape(4, 4)[np.arange(4), [0, 3, 1, 2]] = rng.uniform(0.5, 2.0, size=4) * [1, -1, 1, -1]
    gn = gauss_newton(stages, weights, x)
    full, diag = explicit_diagonals(stages, weights, x, list(weights))
    np.testing.assert_allclose(gn["out.weight"], full["out.weight"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(gn["k.weight"], diag["k.weight"], rtol=1e-6, atol=1e-12)
    assert np.all(gn["k.weight"] > 0)
    if pooling == "sub":
        np.testing.assert_allclose(gn["s.bias"], diag["s.bias"], rtol=1e-6, atol=1e-12)
        # The coefficient is shared by the 4 connections of its unit. The paper's rule (Appendix
        # C, Eq. 23) sums the exact curvature of each connection's weight, dropping the cross
        # terms between them: give each connection a weight of its own, take the exact diagonal
        # for each, and add them up.
        split = [SplitSubPool("s"), *stages[2:]]
        split_weights = dict(weights)
        split_weights["s.weight"] = np.repeat(weights["s.weight"][:, None], 4, axis=1)
        split_weights.pop("s.bias")
        split_weights["s.offset"] = weights["s.bias"]
        split_stages = [stages[0], *split]
        _, per_connection = explicit_diagonals(split_stages, split_weights, x, ["s.weight"])
        expected = per_connection["s.weight"].sum(axis=1)
        np.testing.assert_allclose(gn["s.weight"], expected, rtol=1e-6, atol=1e-12)
        # ... which is not the exact diagonal of the shared coefficient (the biases make all
        # four block inputs non-zero, so the cross terms are not zero).
        assert not np.allclose(gn["s.weight"], diag["s.weight"], rtol=1e-3)


class SplitSubPool:
    """Trainable subsampling with one weight per connection: a = sum_j u[c, j] x_j + offset."""

    def __init__(self, tag: str):
        self.tag = tag

    def forward(self, weights, x, branch=None):
        u, offset = weights[f"{self.tag}.weight"], weights[f"{self.tag}.offset"]
        out = (ref.to_blocks(x) * u[None, :, None, None, :]).sum(axis=-1)
        return out + offset[None, :, None, None], None, None


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_gauss_newton_on_lenet(config):
    activation, pooling, c3 = config
    weights, x, y = random_case(activation, pooling, c3, n=3, seed=16)
    gn = ref.gauss_newton_diag(weights, x, y, activation, pooling, c3)
    out = ref.forward(weights, x, y, activation, pooling, c3)
    assert gn.keys() == weights.keys()
    for name, value in gn.items():
        assert value.shape == weights[name].shape
        assert np.all(value >= 0), name
        assert np.any(value > 0), name
    curvature = out["proba"] * (1 - out["proba"])
    np.testing.assert_allclose(gn["output.weight"], curvature.T @ out["f6"] ** 2 / 3, rtol=1e-12)
    np.testing.assert_allclose(gn["output.bias"], curvature.mean(axis=0), rtol=1e-12)
    # One layer further down, written out: h(a_f6) = f'(a)^2 sum_k W_kj^2 h(z_k).
    pre_f6 = out["c5"] @ weights["f6.weight"].T + weights["f6.bias"]
    h_f6 = (curvature @ weights["output.weight"] ** 2) * ref.activation_slope(
        pre_f6, activation
    ) ** 2
    np.testing.assert_allclose(
        gn["f6.weight"], h_f6.T @ out["c5"] ** 2 / 3, rtol=1e-12, atol=1e-300
    )
    assert np.all(gn["c3.weight"][~ref.c3_mask(c3)] == 0)
