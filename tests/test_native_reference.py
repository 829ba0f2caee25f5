"""The native module against the independent float64 NumPy reference (tests/reference.py).

Weights are drawn by the reference (float32-representable) and loaded with ``set_weights``; inputs
are random values in network units. Every layer, the probabilities, the loss and every gradient
are compared.

ReLU and max pooling make the network piecewise smooth. The native float32 pass and the float64
reference may legitimately take different branches where a pre-activation or a max-pooling gap
is within rounding of its kink. Such points are detected from the native layer outputs: each
disagreement must lie within ``KINK_TOLERANCE`` (relative to the layer's scale) of the kink,
otherwise the test fails; the reference is then evaluated on the native branches.
"""

import itertools

import lenet5._lenet5 as native
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

FORWARD_RTOL = 1e-5  # activations, probabilities, loss: max|a - b| / max(max|b|, 1e-3)
GRADIENT_RTOL = 1e-4  # gradients: max|a - b| / max|b| per tensor
KINK_TOLERANCE = 1e-5  # branch disagreements allowed only this close to the kink (relative)
POOL_SOURCES = {"s2": "c1", "s4": "c3"}


def relative_error(actual, expected, floor):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    return np.abs(actual - expected).max() / max(np.abs(expected).max(), floor)


def make_case(config, n, seed, n_classes=10):
    """Reference weights (rounded to float32), inputs in network units, labels."""
    activation, pooling, c3 = config
    rng = np.random.default_rng(seed)
    gain = 1.5 if activation == "tanh" else 3.0  # keep every layer's gradient well above noise
    weights = {
        name: (gain * value).astype(np.float32).astype(np.float64)
        for name, value in ref.init_weights(rng, n_classes, pooling, c3).items()
    }
    x = rng.uniform(ref.BACKGROUND, ref.INK, size=(n, 32, 32)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    return weights, x, y


def make_network(config, weights, n_classes=10):
    activation, pooling, c3 = config
    network = native.Network(n_classes, activation=activation, pooling=pooling, c3=c3, seed=99)
    network.set_weights({name: value.astype(np.float32) for name, value in weights.items()})
    return network


def winner_value(blocks, winner):
    return np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]


def native_branches(weights, x, native_out, config):
    """The native pass's discrete decisions, after checking each disagreement with the
    reference's own decisions is within rounding of a kink. Returns (branches, disagreements)."""
    activation, pooling, c3 = config
    ours = ref.forward_branches(weights, x, activation, pooling, c3)
    theirs = ref.branches_from_activations(native_out, activation, pooling)
    assert theirs.keys() == ours.keys()
    margins = (
        ref.branch_margins(weights, x, activation, pooling, c3) if activation == "relu" else {}
    )
    reference_out = ref.forward(weights, x, None, activation, pooling, c3)
    disagreements = {}
    for tag, branch in ours.items():
        differ = branch != theirs[tag]
        if not differ.any():
            continue
        if tag in POOL_SOURCES and pooling == "max":
            # How much smaller (in the reference) the native winner is than the reference one.
            source = reference_out[POOL_SOURCES[tag]]
            blocks = ref.to_blocks(source)
            distance = winner_value(blocks, branch) - winner_value(blocks, theirs[tag])
            scale = np.abs(source).max()
        else:
            distance = margins[tag]  # |pre-activation|
            scale = distance.max()
        worst = distance[differ].max()
        assert worst <= KINK_TOLERANCE * scale, (
            f"{tag}: the native pass takes another branch at {differ.sum()} places, "
            f"up to {worst:.3g} from the kink (layer scale {scale:.3g})"
        )
        disagreements[tag] = int(differ.sum())
    return theirs, disagreements


def compare_forward_backward(config, n, seed, n_classes=10, smoothing=0.0):
    weights, x, y = make_case(config, n, seed, n_classes)
    network = make_network(config, weights, n_classes)
    out = native._forward_backward(network, x, y, label_smoothing=smoothing)
    activation, pooling, c3 = config
    x64 = x.astype(np.float64)
    branches, _ = native_branches(weights, x64, out, config)
    expected = ref.forward(
        weights, x64, y, activation, pooling, c3, branches=branches, smoothing=smoothing
    )
    grads = ref.gradients(
        weights, x64, y, activation, pooling, c3, branches=branches, smoothing=smoothing
    )

    problems = []
    for key in (*ref.LAYERS, "proba"):
        assert out[key].shape == expected[key].shape, key
        error = relative_error(out[key], expected[key], floor=1e-3)
        if not error <= FORWARD_RTOL:
            problems.append(f"{key}: relative error {error:.3g}")
    loss_error = abs(out["loss"] - expected["loss"]) / max(abs(expected["loss"]), 1e-3)
    if not loss_error <= FORWARD_RTOL:
        problems.append(f"loss: {out['loss']!r} vs {expected['loss']!r}")
    assert set(out["grads"]) == set(grads)
    for name, value in grads.items():
        assert out["grads"][name].shape == value.shape, name
        error = relative_error(out["grads"][name], value, floor=1e-8)
        if not error <= GRADIENT_RTOL:
            scale = np.abs(value).max()
            problems.append(f"grad {name}: relative error {error:.3g} (max |grad| {scale:.3g})")
    absent = ~ref.c3_mask(c3)
    if np.any(out["grads"]["c3.weight"][absent] != 0):
        problems.append("grad c3.weight: non-zero outside the connection mask")
    assert not problems, f"{'-'.join(config)} n={n}: " + "; ".join(problems)


@pytest.mark.parametrize("n", [7, 16])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_forward_backward_matches_reference(config, n):
    compare_forward_backward(config, n, seed=1000 + n)


@pytest.mark.parametrize("config", [("tanh", "sub", "table"), ("relu", "max", "full")])
def test_forward_backward_with_three_classes(config):
    compare_forward_backward(config, 5, seed=3, n_classes=3)


@pytest.mark.parametrize("n", [1, 7, 16])
@pytest.mark.parametrize("smoothing", [0.1, 0.9])
def test_label_smoothing_matches_reference(smoothing, n):
    # single images (1, 7) and a wide chunk (16); the loss and every gradient change
    compare_forward_backward(("tanh", "sub", "table"), n, seed=70 + n, smoothing=smoothing)
    compare_forward_backward(("relu", "max", "full"), n, seed=80 + n, smoothing=smoothing)


def test_label_smoothing_is_rejected_where_it_has_no_meaning():
    x = np.zeros((2, 32, 32), np.float32)
    y = np.array([0, 1], np.int64)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(
            ValueError, match=r"label_smoothing must be a finite number in \[0, 1\)"
        ):
            native._forward_backward(native.Network(10), x, y, label_smoothing=bad)
    with pytest.raises(ValueError, match="output='rbf'"):
        native._forward_backward(native.Network(10, output="rbf"), x, y, label_smoothing=0.1)


def test_one_sample_and_a_larger_batch():
    compare_forward_backward(("tanh", "sub", "table"), 1, seed=4)
    compare_forward_backward(("tanh", "sub", "table"), 53, seed=5)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_predict_proba_and_activations_on_pixels(config):
    activation, pooling, c3 = config
    weights, _, _ = make_case(config, 1, seed=7)
    network = make_network(config, weights)
    rng = np.random.default_rng(8)
    images = {
        "uint8-28": rng.integers(0, 256, size=(7, 28, 28)).astype(np.uint8),
        "float32-32": rng.uniform(0, 1, size=(7, 32, 32)).astype(np.float32),
        "float64-28": rng.uniform(0, 1, size=(7, 28, 28)),
    }
    images["uint8-28"][0] = 0
    images["uint8-28"][1] = 255
    for kind, pixels in images.items():
        expected = ref.forward(weights, ref.map_pixels(pixels), None, activation, pooling, c3)
        proba = network.predict_proba(pixels)
        assert proba.dtype == np.float32
        assert proba.shape == (7, 10)
        error = relative_error(proba, expected["proba"], floor=1e-3)
        assert error <= FORWARD_RTOL, (kind, "proba", error)
        acts = network.activations(pixels)
        for key in ref.LAYERS:
            error = relative_error(acts[key], expected[key], floor=1e-3)
            assert error <= FORWARD_RTOL, (kind, key, error)
        top = np.sort(expected["proba"], axis=1)
        clear = top[:, -1] - top[:, -2] > 1e-4
        predicted = network.predict(pixels)
        np.testing.assert_array_equal(predicted[clear], expected["proba"].argmax(axis=1)[clear])


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_set_weights_then_get_weights_round_trips(config):
    weights, _, _ = make_case(config, 1, seed=9)
    network = make_network(config, weights)
    got = network.get_weights()
    assert list(got) == list(ref.weight_shapes(10, config[1], config[2]))
    for name, value in weights.items():
        assert got[name].dtype == np.float32, name
        np.testing.assert_array_equal(got[name], value.astype(np.float32), err_msg=name)


@pytest.mark.parametrize("n_classes", [10, 3])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_parameter_count(config, n_classes):
    activation, pooling, c3 = config
    network = native.Network(n_classes, activation=activation, pooling=pooling, c3=c3)
    assert network.n_params == ref.param_count(n_classes, pooling, c3)


def test_paper_network_has_60850_parameters():
    assert native.Network(10).n_params == 60850 == ref.param_count()


@pytest.mark.parametrize("rule", ["lecun", "lecun_sqrt"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pooling", ref.POOLINGS)
def test_initial_weights_follow_the_lecun_rule(pooling, seed, rule):
    network = native.Network(10, pooling=pooling, seed=seed, init=rule)
    weights = network.get_weights()
    bounds = ref.init_bounds(10, pooling, "table", rule)
    assert weights.keys() == bounds.keys()
    for name, value in weights.items():
        assert value.shape == ref.weight_shapes(10, pooling)[name], name
        bound = np.broadcast_to(bounds[name], value.shape)
        assert np.all(np.abs(value) <= bound * (1 + 1e-6)), name
    absent = ~ref.c3_mask("table")
    assert np.all(weights["c3.weight"][absent] == 0)
    assert np.all(weights["c3.weight"][~absent] != 0)
    # Large tensors fill their range: a wrong fan-in would show here.
    for name in ("c1.weight", "c5.weight", "f6.weight", "output.weight"):
        bound = float(bounds[name])
        assert np.abs(weights[name]).max() > 0.95 * bound, name
        assert np.abs(weights[name]).mean() == pytest.approx(bound / 2, rel=0.15), name
    present = np.broadcast_to(~absent[:, :, None, None], (16, 6, 5, 5))
    c3_bounds = np.broadcast_to(bounds["c3.weight"], (16, 6, 5, 5))[present]
    c3_values = weights["c3.weight"][present]
    for bound in np.unique(bounds["c3.weight"]):
        group = np.abs(c3_values[c3_bounds == bound])
        assert group.max() > 0.95 * bound


def test_masked_c3_gradients_are_exactly_zero_after_native_init():
    network = native.Network(10, seed=5)
    rng = np.random.default_rng(6)
    x = rng.uniform(ref.BACKGROUND, ref.INK, size=(4, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    out = native._forward_backward(network, x, y)
    absent = ~ref.c3_mask("table")
    assert np.all(out["grads"]["c3.weight"][absent] == 0)
    assert np.any(out["grads"]["c3.weight"][~absent] != 0)
    # The native init also agrees with the reference on these weights.
    weights = {name: value.astype(np.float64) for name, value in network.get_weights().items()}
    expected = ref.forward(weights, x.astype(np.float64), y)
    assert abs(out["loss"] - expected["loss"]) <= FORWARD_RTOL * expected["loss"]
    grads = ref.gradients(weights, x.astype(np.float64), y)
    for name, value in grads.items():
        assert relative_error(out["grads"][name], value, floor=1e-8) <= GRADIENT_RTOL, name
