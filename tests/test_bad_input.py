"""Every kind of bad input a user can hand LeNet5, one test case each.

Each rejected case asserts three things: the exception type (TypeError for a wrong kind of
object, ValueError for a wrong shape or value), a message that says both what was expected
and what came, and that the model is exactly as it was (hyperparameters, classes_,
n_iter_, history_ and every weight; see ``conftest.snapshot``). Inputs that look unusual but
are valid (big-endian, Fortran order, negative strides, slices, read-only and memory-mapped
arrays, one sample) must work and give the same answer as a plain C-contiguous array.

The Hypothesis tests in test_hypothesis_inputs.py sweep shapes, dtypes and values at
random; this file names the cases one by one.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest
from conftest import assert_same_snapshot, child_report, snapshot, weights_equal
from lenet5 import LeNet5
from lenet5 import _params as estimator_module

N = 2  # samples in the bad arrays below (where the shape has a sample axis)
Y2 = np.array([0, 1])


def expect_rejected(model, call, exc, *patterns):
    """``call()`` raises ``exc`` whose message matches every regex in ``patterns``, and the
    model is unchanged."""
    before = snapshot(model)
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert_same_snapshot(before, snapshot(model))
    return message


# ---------------------------------------------------------------- images: rejected

_SHAPE_MSG = r"must have shape \(n, 28, 28\).*\(n, 1024\)"


def _shape_case(shape, dtype=np.uint8):
    got = re.escape(f"got shape {shape}")
    return pytest.param(
        lambda: np.zeros(shape, dtype), ValueError, (_SHAPE_MSG, got), id=f"shape{shape}"
    )


def _masked():
    x = np.ma.masked_array(np.zeros((N, 784)), mask=False)
    x[0, 5] = np.ma.masked
    return x


BAD_IMAGES = [
    # not arrays at all
    pytest.param(lambda: None, TypeError, (r"x must be images of shape", "got None"), id="None"),
    pytest.param(lambda: "digits.png", TypeError, ("x must be images", "got str"), id="str"),
    pytest.param(lambda: b"\x00" * 784, TypeError, ("x must be images", "got bytes"), id="bytes"),
    pytest.param(
        lambda: [[0] * 784, [0] * 783],
        ValueError,
        ("x must be images of shape", "could not convert list"),
        id="ragged-list",
    ),
    pytest.param(
        lambda: [[0] * 28] * 27 + [[0] * 27],
        ValueError,
        ("could not convert list",),
        id="ragged-rows",
    ),
    pytest.param(
        lambda: [["0"] * 784] * N,
        TypeError,
        ("x has dtype <U1", "expected uint8 .* float32/float64"),
        id="list-of-strings",
    ),
    # wrong number of dimensions or sizes
    _shape_case(()),
    _shape_case((784,)),
    _shape_case((1024,)),
    _shape_case((N, 1, 1, 28, 28)),
    _shape_case((N, 28, 28, 1, 1)),
    _shape_case((N, 3, 28, 28)),
    _shape_case((N, 28, 28, 3)),
    _shape_case((N, 3, 32, 32)),
    _shape_case((N, 2, 28, 28)),
    _shape_case((N, 27, 27)),
    _shape_case((N, 29, 29)),
    _shape_case((N, 28, 32)),
    _shape_case((N, 64, 64)),
    _shape_case((N, 783)),
    _shape_case((N, 785)),
    _shape_case((N, 1023)),
    _shape_case((N, 4096)),
    _shape_case((N, 28)),
    # no samples
    pytest.param(
        lambda: np.zeros((0, 28, 28), np.uint8),
        ValueError,
        ("x has 0 images", "at least 1"),
        id="zero-samples-3d",
    ),
    pytest.param(
        lambda: np.zeros((0, 784)), ValueError, ("x has 0 images", "at least 1"), id="zero-2d"
    ),
    # non-finite and out-of-range floats
    pytest.param(
        lambda: np.full((N, 784), np.nan),
        ValueError,
        ("x contains NaN or infinity", "must be finite"),
        id="nan-float64",
    ),
    pytest.param(
        lambda: np.where(np.arange(784) == 300, np.float32(np.nan), np.float32(0.5))[None].repeat(
            N, 0
        ),
        ValueError,
        ("NaN or infinity", "must be finite"),
        id="one-nan-float32",
    ),
    pytest.param(lambda: np.full((N, 784), np.inf), ValueError, ("NaN or infinity",), id="+inf"),
    pytest.param(
        lambda: np.full((N, 784), -np.inf, np.float32), ValueError, ("NaN or infinity",), id="-inf"
    ),
    pytest.param(
        lambda: np.full((N, 784), np.inf, np.float16),
        ValueError,
        ("NaN or infinity",),
        id="inf-float16",
    ),
    pytest.param(
        lambda: np.full((N, 784), 1e39),
        ValueError,
        (r"float pixel values from 1e\+39 to 1e\+39", r"must lie in \[0, 1\]"),
        id="float64-overflows-float32",
    ),
    pytest.param(
        lambda: np.full((N, 784), -1e300),
        ValueError,
        (r"from -1e\+300", r"\[0, 1\]"),
        id="float64-huge-negative",
    ),
    pytest.param(
        lambda: np.full((N, 784), 1.5),
        ValueError,
        (r"from 1.5 to 1.5", r"float images must lie in \[0, 1\]"),
        id="float-above-1",
    ),
    pytest.param(
        lambda: np.full((N, 784), -0.01, np.float32),
        ValueError,
        (r"from -0.01", r"\[0, 1\]"),
        id="float-below-0",
    ),
    pytest.param(
        lambda: np.full((N, 784), 255.0),
        ValueError,
        (r"from 255 to 255", r"divide 0..255 data by 255"),
        id="float-0-255-scale",
    ),
    # integers outside 0..255
    pytest.param(
        lambda: np.full((N, 784), 256, np.uint16),
        ValueError,
        ("integer pixel values from 256 to 256", "must hold values in 0..255"),
        id="int-above-255",
    ),
    pytest.param(
        lambda: np.full((N, 784), -1, np.int8),
        ValueError,
        ("from -1 to -1", "0..255"),
        id="int-below-0",
    ),
    pytest.param(
        lambda: np.full((N, 784), 2**64 - 1, np.uint64),
        ValueError,
        ("from 18446744073709551615", "0..255"),
        id="uint64-max",
    ),
    pytest.param(
        lambda: np.full((N, 784), -(2**63), np.int64),
        ValueError,
        ("from -9223372036854775808", "0..255"),
        id="int64-min",
    ),
    pytest.param(
        lambda: [[300] * 784] * N, ValueError, ("from 300 to 300", "0..255"), id="list-int-300"
    ),
    # wrong dtypes
    pytest.param(
        lambda: np.zeros((N, 784), bool),
        TypeError,
        ("x has dtype bool", r"expected uint8 \(0..255\) or float \(0..1\)"),
        id="bool",
    ),
    pytest.param(
        lambda: np.zeros((N, 784), np.complex64),
        TypeError,
        ("x has dtype complex64", "expected uint8"),
        id="complex64",
    ),
    pytest.param(
        lambda: np.full((N, 784), 0.5 + 0j), TypeError, ("dtype complex128",), id="complex128"
    ),
    pytest.param(
        lambda: np.zeros((N, 784)).astype(object),
        TypeError,
        ("x has dtype object", "expected uint8"),
        id="object-of-floats",
    ),
    pytest.param(
        lambda: np.array([None] * (N * 784), dtype=object).reshape(N, 784),
        TypeError,
        ("dtype object",),
        id="object-of-None",
    ),
    pytest.param(
        lambda: np.full((N, 784), "a"), TypeError, ("dtype <U1", "expected uint8"), id="unicode"
    ),
    pytest.param(
        lambda: np.full((N, 784), b"a"),
        TypeError,
        ("dtype \\|S1", "expected uint8"),
        id="bytes-array",
    ),
    pytest.param(
        lambda: np.zeros((N, 784), "datetime64[s]"),
        TypeError,
        ("dtype datetime64", "expected uint8"),
        id="datetime64",
    ),
    pytest.param(
        lambda: np.zeros((N, 784), "timedelta64[s]"),
        TypeError,
        ("dtype timedelta64",),
        id="timedelta64",
    ),
    pytest.param(
        lambda: np.zeros((N, 784), [("v", "u1")]),
        TypeError,
        (r"dtype \[\('v', 'u1'\)\]", "expected uint8"),
        id="structured",
    ),
    pytest.param(lambda: np.zeros((N, 784), "V4"), TypeError, ("dtype \\|V4",), id="void"),
    # a masked array would silently lose its mask
    pytest.param(
        _masked,
        ValueError,
        ("x is a masked array with 1 masked values", r"x.filled\(0\)"),
        id="masked",
    ),
]

IMAGE_METHODS = {
    "fit": lambda m, x: m.fit(x, Y2),
    "partial_fit": lambda m, x: m.partial_fit(x, Y2),
    "predict": lambda m, x: m.predict(x),
    "predict_proba": lambda m, x: m.predict_proba(x),
    "score": lambda m, x: m.score(x, Y2),
    "activations": lambda m, x: m.activations(x),
}


@pytest.mark.parametrize("method", list(IMAGE_METHODS))
@pytest.mark.parametrize(("make_x", "exc", "patterns"), BAD_IMAGES)
def test_bad_images_are_rejected_and_change_nothing(fitted, method, make_x, exc, patterns):
    call = IMAGE_METHODS[method]
    expect_rejected(fitted, lambda: call(fitted, make_x()), exc, *patterns)


@pytest.mark.parametrize(("make_x", "exc", "patterns"), BAD_IMAGES)
def test_bad_images_leave_an_unfitted_model_unfitted(make_model, make_x, exc, patterns):
    model = make_model()
    expect_rejected(model, lambda: model.fit(make_x(), Y2), exc, *patterns)
    assert not hasattr(model, "classes_")


@pytest.mark.parametrize("method", ["fit", "partial_fit", "score"])
@pytest.mark.parametrize("side", [28, 32])
def test_a_single_2d_image_is_not_a_training_batch(fitted, method, side):
    image = np.zeros((side, side), np.uint8)
    call = IMAGE_METHODS[method]
    expect_rejected(
        fitted,
        lambda: call(fitted, image),
        ValueError,
        re.escape(f"x has shape ({side}, {side}), a single image"),
        r"x\[np.newaxis\]",
    )


# ---------------------------------------------------------------- images: accepted layouts


@pytest.fixture(scope="module")
def digits(mnist):
    """Eight test digits, uint8 (8, 28, 28), C-contiguous."""
    _, (xt, _) = mnist
    return np.ascontiguousarray(xt[:8])


def _memmap(tmp_path, x, mode):
    path = tmp_path / "images.u8"
    x.tofile(path)
    return np.memmap(path, dtype=x.dtype, mode=mode, shape=x.shape)


def _read_only(x):
    x = x.copy()
    x.setflags(write=False)
    return x


# (id, transform of the digits, transform of the expected probabilities)
SAME_DIGITS = [
    ("big-endian-u2", lambda x: x.astype(">u2"), None),
    ("big-endian-i8", lambda x: x.astype(">i8"), None),
    ("big-endian-f4", lambda x: (x / 255).astype(">f4"), None),
    ("big-endian-f8", lambda x: (x / 255).astype(">f8"), None),
    ("fortran-order", np.asfortranarray, None),
    ("fortran-flat", lambda x: np.asfortranarray(x.reshape(len(x), 784)), None),
    ("read-only", _read_only, None),
    ("nested-lists", lambda x: x.tolist(), None),
    ("int64", lambda x: x.astype(np.int64), None),
    ("float16", lambda x: (x / 255).astype(np.float16), "float16"),
    ("longdouble", lambda x: (x / 255).astype(np.longdouble), None),
    ("channel-first", lambda x: x[:, None], None),
    ("channel-last", lambda x: x[..., None], None),
    ("every-other-row-of-a-bigger-array", lambda x: np.repeat(x, 2, axis=0)[::2], None),
    ("padded-view-crop", lambda x: np.pad(x, ((0, 0), (3, 1), (2, 2)))[:, 3:31, 2:30], None),
    (
        "interleaved-columns",
        lambda x: np.stack([x, 255 - x], axis=-1)[..., 0],
        None,
    ),
]


@pytest.mark.parametrize(("name", "transform", "tolerance"), SAME_DIGITS)
def test_unusual_layouts_give_the_same_answer(fitted_small, digits, name, transform, tolerance):
    expected = fitted_small.predict_proba(digits)
    got = fitted_small.predict_proba(transform(digits))
    if tolerance is None:
        # uint8 v and float v / 255 map to the same network input up to rounding
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    else:  # float16 rounds the pixels themselves
        np.testing.assert_allclose(got, expected, rtol=0, atol=5e-3)
    np.testing.assert_array_equal(
        fitted_small.predict(transform(digits)), fitted_small.predict(digits)
    )


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_memory_mapped_images_work(fitted_small, digits, tmp_path, mode):
    mapped = _memmap(tmp_path, digits, mode)
    np.testing.assert_array_equal(
        fitted_small.predict_proba(mapped), fitted_small.predict_proba(digits)
    )
    assert fitted_small.score(mapped, fitted_small.predict(digits)) == 1.0


def test_negative_strides_give_the_same_result_as_contiguous(fitted_small, digits):
    expected = fitted_small.predict_proba(digits)
    np.testing.assert_array_equal(fitted_small.predict_proba(digits[::-1]), expected[::-1])
    flipped = digits[:, ::-1, ::-1]
    np.testing.assert_array_equal(
        fitted_small.predict_proba(flipped),
        fitted_small.predict_proba(np.ascontiguousarray(flipped)),
    )
    flat_reversed = digits.reshape(8, 784)[::-2, ::-1]
    np.testing.assert_array_equal(
        fitted_small.predict_proba(flat_reversed),
        fitted_small.predict_proba(np.ascontiguousarray(flat_reversed)),
    )


def test_broadcast_zero_stride_arrays_work(fitted_small, digits):
    repeated = np.broadcast_to(digits[:1], (20, 28, 28))
    assert repeated.strides[0] == 0
    proba = fitted_small.predict_proba(repeated)
    # Full 16- or 8-image lanes and the tail of a batch run different (equally exact)
    # kernels, so copies of one image agree to float32 rounding, not bit for bit.
    np.testing.assert_allclose(proba, np.repeat(proba[:1], 20, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        proba[0], fitted_small.predict_proba(digits[:1])[0], rtol=1e-5, atol=1e-7
    )


def test_one_sample_works_everywhere(make_model, digits):
    one = digits[:1]
    model = make_model().fit(digits, [0, 1] * 4)
    for layout in (one, one.reshape(1, 784), one[:, None], one[0]):
        assert model.predict_proba(layout).shape == (1, 2)
    model = make_model().fit(one.repeat(2, 0), Y2)  # two copies of one image
    assert model.predict(one).shape == (1,)
    model.partial_fit(one, [1])  # one-sample partial_fit on a fitted model
    assert model.n_iter_ == 2
    assert model.score(one, model.predict(one)) == 1.0


def test_float64_below_float32_resolution_is_zero(fitted_small, digits):
    tiny = np.full((2, 28, 28), 1e-300)
    np.testing.assert_array_equal(
        fitted_small.predict_proba(tiny), fitted_small.predict_proba(np.zeros((2, 28, 28)))
    )


@pytest.mark.parametrize(
    "layout",
    [
        np.asfortranarray,
        lambda x: x[::-1].copy()[::-1],
        lambda x: np.repeat(x, 2, axis=0)[::2],
        lambda x: x.astype(">u2"),
        _read_only,
    ],
    ids=["fortran", "negative-stride", "slice", "big-endian", "read-only"],
)
def test_training_on_unusual_layouts_is_identical(make_model, small, layout):
    (x, y), _ = small
    x, y = x[:64], y[:64]
    plain = make_model().fit(x, y)
    other = make_model().fit(layout(x), y)
    assert weights_equal(plain.get_weights(), other.get_weights())


def test_training_on_a_memory_map_is_identical(make_model, small, tmp_path):
    (x, y), _ = small
    x, y = np.ascontiguousarray(x[:64]), y[:64]
    plain = make_model().fit(x, y)
    mapped = make_model().fit(_memmap(tmp_path, x, "r"), y)
    assert weights_equal(plain.get_weights(), mapped.get_weights())


def test_training_copies_the_data(make_model, small):
    """Changing the array after fit has started cannot reach the network: fit copies."""
    (x, y), _ = small
    x = x[:64].copy()
    seen = []
    model = make_model(epochs=2, callbacks=lambda epoch, logs: seen.append(x.fill(255)))
    reference = make_model(epochs=2).fit(x.copy(), y[:64])
    model.fit(x, y[:64])
    assert weights_equal(model.get_weights(), reference.get_weights())


# ---------------------------------------------------------------- labels


def _y_case(make_y, exc, patterns, name, *, fitted_partial_fit=True, score=True):
    """A bad-label case. ``fitted_partial_fit``: also rejected by partial_fit on a fitted
    model (which maps labels to its classes_ instead of counting classes); ``score``:
    also rejected by score (which does not count classes either)."""
    return pytest.param(make_y, exc, patterns, fitted_partial_fit, score, id=name)


Y_BAD = [
    _y_case(lambda n: None, TypeError, ("y must be a 1-D array", "got None"), "None"),
    _y_case(
        lambda n: np.linspace(0, 1, n),
        ValueError,
        ("non-integer float labels", r"for example 0\.0\d+", "integers or strings"),
        "non-integer-floats",
    ),
    _y_case(
        lambda n: np.where(np.arange(n) == 3, np.nan, np.arange(n) % 2),
        ValueError,
        ("y contains NaN or infinity", "labels must be finite"),
        "nan",
    ),
    _y_case(
        lambda n: np.where(np.arange(n) == 3, np.inf, np.arange(n) % 2),
        ValueError,
        ("NaN or infinity",),
        "inf",
    ),
    _y_case(
        lambda n: np.full(n, 7),
        ValueError,
        (r"y has a single class \(7\)", "at least 2 classes"),
        "one-class",
        fitted_partial_fit=False,
        score=False,
    ),
    _y_case(
        lambda n: np.full(n, "seven"),
        ValueError,
        (r"single class \('seven'\)",),
        "one-string-class",
        fitted_partial_fit=False,
        score=False,
    ),
    _y_case(
        lambda n: np.zeros((n, 3)),
        ValueError,
        ("y must be a 1-D array of class labels", r"got shape \(\d+, 3\)"),
        "2d-matrix",
    ),
    _y_case(
        lambda n: (np.arange(n) % 2)[:, None],
        ValueError,
        (r"got shape \(\d+, 1\)", r"use y\.ravel\(\)"),
        "2d-column",
    ),
    _y_case(
        lambda n: np.eye(10)[np.arange(n) % 10],
        ValueError,
        ("1-D", r"got shape \(\d+, 10\)"),
        "one-hot",
    ),
    _y_case(lambda n: 3, ValueError, ("1-D array of class labels", "got a single int 3"), "int"),
    _y_case(lambda n: set(range(n)), ValueError, ("1-D", "got a single set"), "set"),
    _y_case(lambda n: "0101", TypeError, ("1-D array of class labels", "got str '0101'"), "str"),
    _y_case(
        lambda n: np.zeros(n, complex),
        TypeError,
        ("y has dtype complex128", "labels must be integers, strings"),
        "complex",
    ),
    _y_case(lambda n: np.zeros(n, "datetime64[D]"), TypeError, ("dtype datetime64",), "datetime"),
    _y_case(
        lambda n: np.array(["a", None] * (n // 2), dtype=object),
        ValueError,
        (r"y contains a missing label \(None\)",),
        "object-None",
    ),
    _y_case(
        lambda n: np.array([1, np.float32("nan")] * (n // 2), dtype=object),
        ValueError,
        ("missing label",),
        "object-numpy-nan",
    ),
    _y_case(
        lambda n: np.array([1, np.float64(0.5)] * (n // 2), dtype=object),
        TypeError,
        ("y contains float64", "labels must be integers or strings"),
        "object-fraction",
    ),
    _y_case(
        lambda n: np.array([[1], 2] * (n // 2), dtype=object),
        TypeError,
        (r"y contains list \[1\]",),
        "object-list",
    ),
    _y_case(
        lambda n: np.array([1, "a"] * (n // 2), dtype=object),
        TypeError,
        ("cannot be compared",),
        "mixed-str-int",
        score=False,
    ),
    _y_case(
        lambda n: np.ma.masked_array(np.arange(n) % 2, mask=np.arange(n) == 0),
        ValueError,
        ("y is a masked array with 1 masked values",),
        "masked",
    ),
]


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize(("make_y", "exc", "patterns", "fitted_partial_fit", "score"), Y_BAD)
def test_bad_labels_are_rejected_and_change_nothing(
    fitted, make_model, small, method, make_y, exc, patterns, fitted_partial_fit, score
):
    (x, _), _ = small
    x = x[:20]
    models = [make_model()]
    if method == "fit" or fitted_partial_fit:
        models.append(fitted)
    for model in models:
        call = getattr(model, method)
        expect_rejected(model, lambda c=call: c(x, make_y(20)), exc, *patterns)


# score compares labels with predictions: it needs neither two classes nor sortable labels
Y_BAD_SCORE = [case for case in Y_BAD if case.values[4]]


@pytest.mark.parametrize(("make_y", "exc", "patterns", "fitted_partial_fit", "score"), Y_BAD_SCORE)
def test_bad_labels_in_score(
    fitted_small, mnist, make_y, exc, patterns, fitted_partial_fit, score
):
    _, (xt, _) = mnist
    expect_rejected(fitted_small, lambda: fitted_small.score(xt[:20], make_y(20)), exc, *patterns)


@pytest.mark.parametrize(
    ("n_x", "n_y"),
    [(20, 19), (19, 20), (20, 0), (1, 2)],
    ids=["y-short", "y-long", "y-empty", "1-2"],
)
@pytest.mark.parametrize("method", ["fit", "partial_fit", "score"])
def test_x_and_y_of_different_lengths(fitted, small, n_x, n_y, method):
    (x, y), _ = small
    expect_rejected(
        fitted,
        lambda: getattr(fitted, method)(x[:n_x], y[:n_y]),
        ValueError,
        f"x and y have different lengths: {n_x} images but {n_y} labels",
    )


def test_more_classes_than_a_softmax_output_holds(make_model):
    n = 65_537
    x = np.broadcast_to(np.zeros((1, 784), np.uint8), (n, 784))
    model = make_model()
    expect_rejected(
        model,
        lambda: model.fit(x, np.arange(n)),
        ValueError,
        "y has 65537 classes",
        "holds at most 65536",
    )


def test_more_classes_than_an_rbf_output_holds(make_model, small):
    """The paper's RBF output has one fixed bitmap per digit: 10 classes at most."""
    (x, y), _ = small
    labels = np.arange(len(x)) % 11
    if "rbf" in estimator_module.OUTPUTS:
        model = make_model(output="rbf")
        expect_rejected(
            model, lambda: model.fit(x, labels), ValueError, "rbf", "at most 10", "11 classes"
        )
        model.fit(x, y)  # 10 classes fit
        before = snapshot(model)
        expect_rejected(
            model,
            lambda: model.partial_fit(x, labels, classes=range(11)),
            ValueError,
            "11|classes",
        )
        assert_same_snapshot(before, snapshot(model))
    from lenet5 import _lenet5

    with pytest.raises(ValueError, match="at most 10 classes; got 11"):
        _lenet5.Network(11, output="rbf")


def test_unknown_labels_in_partial_fit_and_validation_data(fitted, small):
    (x, y), _ = small
    expect_rejected(
        fitted,
        lambda: fitted.partial_fit(x[:10], np.full(10, 42)),
        ValueError,
        r"y has labels \[42\] that are not among the classes \[0, 1, 2",
    )
    expect_rejected(
        fitted,
        lambda: fitted.fit(x, y, validation_data=(x[:10], np.full(10, "x"))),
        ValueError,
        r"validation_data\[1\] has labels \['x'\] that are not among the classes",
    )


# ---------------------------------------------------------------- sample_weight

BAD_SAMPLE_WEIGHTS = [
    pytest.param(np.ones(19), ValueError, (r"shape \(20,\); got shape \(19,\)",), id="short"),
    pytest.param(np.ones((20, 1)), ValueError, (r"got shape \(20, 1\)",), id="2d"),
    pytest.param(np.full(20, -1.0), ValueError, ("non-negative", "got -1.0 at index 0"), id="neg"),
    pytest.param(
        np.where(np.arange(20) == 4, np.nan, 1.0),
        ValueError,
        ("finite", "got nan at index 4"),
        id="nan",
    ),
    pytest.param(np.full(20, np.inf), ValueError, ("got inf at index 0",), id="inf"),
    pytest.param(np.zeros(20), ValueError, ("must not be all zero",), id="all-zero"),
    pytest.param("heavy", TypeError, ("sample_weight must be 20", "got str"), id="str"),
    pytest.param(np.full(20, "1"), TypeError, ("dtype <U1",), id="str-array"),
    pytest.param(np.ones(20, complex), TypeError, ("dtype complex128",), id="complex"),
    pytest.param([None] * 20, TypeError, ("dtype object",), id="None-list"),
    pytest.param([1.0] * 19 + [[1.0]], ValueError, ("could not convert",), id="ragged"),
]


@pytest.mark.parametrize(("weights", "exc", "patterns"), BAD_SAMPLE_WEIGHTS)
def test_bad_sample_weight_in_score(fitted_small, mnist, weights, exc, patterns):
    _, (xt, yt) = mnist
    expect_rejected(
        fitted_small,
        lambda: fitted_small.score(xt[:20], yt[:20], sample_weight=weights),
        exc,
        "sample_weight",
        *patterns,
    )


def test_sample_weight_weighs(fitted_small, mnist):
    _, (xt, yt) = mnist
    correct = fitted_small.predict(xt[:20]) == yt[:20]
    assert fitted_small.score(xt[:20], yt[:20], sample_weight=correct) == 1.0
    assert fitted_small.score(xt[:20], yt[:20], sample_weight=[1] * 20) == correct.mean()


# ---------------------------------------------------------------- hyperparameters

# Each hyperparameter: values of the wrong type and values out of range. None means "the
# default" for several of them, so it appears only where it is not allowed.
BAD_HYPERPARAMETERS = {
    "preset": ["lenet-6", 3, True],
    "epochs": [0, -1, 2.5, "10", True, np.float64(3.0), 10**30],
    "batch_size": [0, -64, 1.5, "64", False, 2**63],
    "learning_rate": [0.0, -0.1, math.nan, math.inf, "0.1", True, 1j, [0.1]],
    "optimizer": ["rmsprop", "SGD", 3, ("sgd",)],
    "momentum": [-0.1, 1.0, 1.5, math.nan, "0.9", None],
    "nesterov": [1, 0, "yes", None, "True"],
    "weight_decay": [-1e-4, math.inf, math.nan, "0"],
    "beta_1": [1.0, -0.1, math.nan, "0.9", None],
    "beta_2": [1.0, 1.5, -1, None, "x"],
    "epsilon": [0.0, -1e-8, math.inf, "1e-8", None],
    "mu": [0.0, -1.0, math.nan, "0.02", None],
    "curvature_samples": [0, -5, 2.0, "500", None, True],
    "lr_schedule": ["step", "Constant", 3, ["constant"]],
    "activation": ["sigmoid", "TANH", 1, ["tanh"]],
    "pooling": ["min", "", 2, True],
    "c3": ["random", "Table", 0, True],
    "output": ["sigmoid", "euclidean", 0, ["rbf"]],
    "loss": ["mse", "CE", 1, True],
    "map_j": [-0.1, math.inf, math.nan, "0.1", None],
    "label_smoothing": [-0.1, 1.0, 2.0, math.inf, math.nan, "0.1"],
    "rbf_trainable": [1, "yes", None],
    "rbf_prototypes": ["hadamard", "Codes", 1, True],
    "init": ["xavier", "zeros", 0, True],
    "augment": [
        "yes",
        1,
        0.5,
        {"rotate": 1.0},
        {"translate": -1.0},
        {"shear": math.nan},
        {"translate": 1e9},
        ["translate"],
    ],
    "shuffle": ["twice", "", 1, 0.5, ["once"]],
    "early_stopping": [1, "no", None],
    "validation_fraction": [0.0, 1.0, -0.5, 1.5, math.nan, "0.1", True],
    "patience": [0, -1, 1.5, "5", None, True],
    "min_delta": [-1.0, math.nan, math.inf, "0", None],
    "callbacks": [3, "print", [print, 3], (None,), {"epoch": print}],
    "warm_start": [None, 1, "False"],
    "random_state": [-1, -(2**70), "seed", 1.5, True, [1, 2], object()],
    "n_jobs": [0, -2000, -(2**64), 1.5, "2", True, 10**9, 2**64],
    "class_weight": ["balance", 2.0, [1, 2], {3: -1.0}, {0: "x"}, {0: math.nan}],
    "verbose": [-1, 1.5, "1", None, True],
}


def _hyperparameter_cases():
    cases = []
    for name, values in BAD_HYPERPARAMETERS.items():
        for i, value in enumerate(values):
            cases.append(pytest.param(name, value, id=f"{name}-{i}-{value!r:.20}"))
    return cases


def _bad_value_text(value):
    """What a message must show of the value that came (a prefix of its repr)."""
    if isinstance(value, (dict, list, tuple)) or callable(value) or type(value) is object:
        return None  # containers and objects are described, not necessarily shown whole
    return re.escape(repr(value)[:12])


@pytest.mark.parametrize(("name", "value"), _hyperparameter_cases())
def test_bad_hyperparameters_raise_at_fit_naming_the_parameter(fitted, small, name, value):
    if name not in LeNet5().get_params():
        pytest.skip(f"{name} is not a hyperparameter of this version")
    (x, y), _ = small
    fitted.set_params(**{name: value})  # set_params only stores; fit checks
    shown = _bad_value_text(value)
    patterns = [re.escape(name), "must|unknown"]
    if shown is not None:
        patterns.append(shown)
    message = expect_rejected(fitted, lambda: fitted.fit(x, y), (ValueError, TypeError), *patterns)
    assert (
        expect_rejected(
            fitted, lambda: fitted.partial_fit(x, y), (ValueError, TypeError), *patterns
        )
        == message
    )
    fresh = LeNet5(**{name: value})
    expect_rejected(fresh, lambda: fresh.fit(x, y), (ValueError, TypeError), *patterns)
    assert not hasattr(fresh, "classes_")


def test_every_hyperparameter_has_bad_values_listed():
    """A hyperparameter added later gets at least a generic wrong-type probe below; this
    test lists the ones without their own cases so that they get some."""
    missing = sorted(set(LeNet5().get_params()) - set(BAD_HYPERPARAMETERS))
    assert missing == [], f"add bad values for {missing} to BAD_HYPERPARAMETERS"


@pytest.mark.parametrize("name", sorted(LeNet5().get_params()))
def test_any_hyperparameter_set_to_a_foreign_object_raises_naming_it(fitted, small, name):
    (x, y), _ = small

    class Strange:
        def __repr__(self):
            return "<strange value>"

    fitted.set_params(**{name: Strange()})
    expect_rejected(
        fitted, lambda: fitted.fit(x, y), (ValueError, TypeError), re.escape(name), "strange"
    )


def test_huge_batch_size_is_clipped_to_the_number_of_samples(make_model, small):
    """A batch larger than the data is the whole data (as scikit-learn's MLP does)."""
    (x, y), _ = small
    x, y = x[:50], y[:50]
    whole = make_model(batch_size=50).fit(x, y)
    huge = make_model(batch_size=10**12).fit(x, y)
    largest = make_model(batch_size=2**63 - 1).fit(x, y)
    assert weights_equal(whole.get_weights(), huge.get_weights())
    assert weights_equal(whole.get_weights(), largest.get_weights())


def test_learning_rate_below_float32_resolution(fitted, small):
    """5e-324 is a positive float64 but 0 in the float32 core: rejected, naming it."""
    (x, y), _ = small
    fitted.set_params(learning_rate=5e-324)
    expect_rejected(fitted, lambda: fitted.fit(x, y), ValueError, "learning_rate")


# ---------------------------------------------------------------- set_weights


def _modify(weights):
    """A valid change (so that all-or-nothing is tested: it must not land)."""
    weights["c1.bias"] = weights["c1.bias"] + 1.0
    return weights


def _set(weights, name, value):
    weights[name] = value
    return weights


def _rename(weights, old, new):
    weights[new] = weights.pop(old)
    return weights


def _poke(weights, name, index, value):
    array = weights[name].astype(np.float64)
    array[index] = value
    weights[name] = array
    return weights


BAD_WEIGHTS = [
    # the container
    pytest.param(lambda w: None, TypeError, ("weights must be a dict", "got NoneType"), id="None"),
    pytest.param(
        lambda w: list(w.items()), TypeError, ("must be a dict", "got list"), id="list-of-pairs"
    ),
    pytest.param(
        lambda w: w["c1.weight"],
        TypeError,
        ("must be a dict", r"got an array of shape"),
        id="an-array",
    ),
    # keys
    pytest.param(
        lambda w: (w.pop("f6.bias"), w)[1],
        ValueError,
        ("needs exactly the keys", r'missing \["f6.bias"\]'),
        id="missing-key",
    ),
    pytest.param(
        lambda w: {},
        ValueError,
        ("needs exactly the keys", r'missing \["c1.weight"'),
        id="empty",
    ),
    pytest.param(
        lambda w: _set(w, "c7.weight", np.zeros(3, np.float32)),
        ValueError,
        (r'unexpected \["c7.weight"\]',),
        id="extra-key",
    ),
    pytest.param(
        lambda w: _rename(w, "f6.bias", "f6.Bias"),
        ValueError,
        (r'missing \["f6.bias"\], unexpected \["f6.Bias"\]',),
        id="misnamed-key",
    ),
    pytest.param(
        lambda w: _rename(w, "output.weight", "fc.weight"),
        ValueError,
        (r'missing \["output.weight"\]', r'unexpected \["fc.weight"\]'),
        id="foreign-name",
    ),
    pytest.param(
        lambda w: _rename(w, "f6.bias", 6),
        TypeError,
        ("names must be strings", "got int 6"),
        id="int-key",
    ),
    # shapes
    pytest.param(
        lambda w: _set(w, "f6.bias", np.zeros(85, np.float32)),
        ValueError,
        (r"f6.bias must have shape \[84\]; got \[85\]",),
        id="longer",
    ),
    pytest.param(
        lambda w: _set(w, "f6.weight", w["f6.weight"].T),
        ValueError,
        (r"f6.weight must have shape \[84, 120\]; got \[120, 84\]",),
        id="transposed",
    ),
    pytest.param(
        lambda w: _set(w, "c5.weight", w["c5.weight"].reshape(120, 400)),
        ValueError,
        (r"c5.weight must have shape \[120, 16, 5, 5\]; got \[120, 400\]",),
        id="flattened",
    ),
    pytest.param(
        lambda w: _set(w, "c1.weight", w["c1.weight"][None]),
        ValueError,
        (r"got \[1, 6, 1, 5, 5\]",),
        id="extra-axis",
    ),
    pytest.param(
        lambda w: _set(w, "output.bias", np.float32(0.0)),
        ValueError,
        (r"output.bias must have shape \[10\]; got \[\]",),
        id="scalar",
    ),
    pytest.param(
        lambda w: _set(w, "output.weight", np.zeros((11, 84), np.float32)),
        ValueError,
        (r"output.weight must have shape \[10, 84\]; got \[11, 84\]",),
        id="other-class-count",
    ),
    # dtypes
    pytest.param(
        lambda w: _set(w, "f6.bias", np.zeros(84, complex)),
        TypeError,
        (r"weights\['f6.bias'\] must be a float32 array", "dtype complex128"),
        id="complex",
    ),
    pytest.param(
        lambda w: _set(w, "f6.bias", np.zeros(84, bool)), TypeError, ("dtype bool",), id="bool"
    ),
    pytest.param(
        lambda w: _set(w, "f6.bias", np.full(84, "0")), TypeError, ("dtype <U1",), id="strings"
    ),
    pytest.param(
        lambda w: _set(w, "f6.bias", np.zeros(84, object)),
        TypeError,
        ("dtype object",),
        id="object",
    ),
    pytest.param(
        lambda w: _set(w, "f6.bias", None),
        TypeError,
        (r"weights\['f6.bias'\]", "got None"),
        id="None-value",
    ),
    pytest.param(lambda w: _set(w, "f6.bias", "zeros"), TypeError, ("got str",), id="str-value"),
    pytest.param(
        lambda w: _set(w, "f6.bias", [0.0] * 83 + [[0.0]]),
        ValueError,
        (r"weights\['f6.bias'\]", "could not convert"),
        id="ragged-value",
    ),
    # values
    pytest.param(
        lambda w: _poke(w, "f6.weight", (1, 2), np.nan),
        ValueError,
        ("f6.weight must hold finite float32 values", "element 122 is not"),
        id="nan",
    ),
    pytest.param(
        lambda w: _poke(w, "c5.weight", (0, 0, 0, 1), np.inf),
        ValueError,
        ("c5.weight must hold finite", "element 1 is not"),
        id="+inf",
    ),
    pytest.param(
        lambda w: _poke(w, "output.bias", 9, -np.inf),
        ValueError,
        ("output.bias must hold finite", "element 9"),
        id="-inf",
    ),
    pytest.param(
        lambda w: _poke(w, "f6.bias", 0, 1e39),
        ValueError,
        ("f6.bias must hold finite float32 values", "too large for float32"),
        id="float64-overflows-float32",
    ),
    pytest.param(
        lambda w: _poke(w, "c3.weight", (1, 0, 2, 2), 0.5),
        ValueError,
        (r"c3.weight\[1, 0\] must be all zeros", "not connected", "Table I"),
        id="outside-table-I",
    ),
]


@pytest.mark.parametrize(("change", "exc", "patterns"), BAD_WEIGHTS)
def test_bad_set_weights_change_nothing(fitted, change, exc, patterns):
    weights = change(_modify(fitted.get_weights()))
    expect_rejected(fitted, lambda: fitted.set_weights(weights), exc, *patterns)


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(np.float64),
        lambda a: a.astype(">f4"),
        lambda a: a.astype(np.float16),
        np.asfortranarray,
        lambda a: a.tolist(),
        _read_only,
    ],
    ids=["float64", "big-endian", "float16-values", "fortran", "lists", "read-only"],
)
def test_convertible_weights_are_accepted(fitted, convert):
    weights = _modify(fitted.get_weights())
    fitted.set_weights({k: convert(v) for k, v in weights.items()})
    got = fitted.get_weights()
    for key, value in weights.items():
        np.testing.assert_array_equal(got[key], np.asarray(convert(value), dtype=np.float32))


def test_integer_weights_are_converted(fitted):
    weights = {k: np.zeros(v.shape, np.int64) for k, v in fitted.get_weights().items()}
    weights["output.bias"] = np.arange(10)
    fitted.set_weights(weights)
    np.testing.assert_array_equal(fitted.get_weights()["output.bias"], np.arange(10))
    assert fitted.get_weights()["output.bias"].dtype == np.float32


def test_set_weights_on_an_unfitted_model(make_model, fitted_small):
    from lenet5 import NotFittedError

    model = make_model()
    expect_rejected(
        model, lambda: model.set_weights(fitted_small.get_weights()), NotFittedError, "not fitted"
    )


def test_prediction_does_not_depend_on_the_position_in_the_batch(fitted_small, digits):
    """An image's probabilities should not depend on the other images of the call. The
    native forward pass runs full 8/16-image lanes and the remainder of the batch through
    different kernels, whose float32 results differ in the last bits (about 3e-8), so 20
    copies of one image do not all get the same answer; scikit-learn's
    check_methods_sample_order_invariance fails for the same reason."""
    copies = np.repeat(digits[:1], 20, axis=0)
    proba = fitted_small.predict_proba(copies)
    differing = [i for i in range(20) if not np.array_equal(proba[i], proba[0])]
    assert differing == [], f"copies {differing} differ from copy 0"


# ---------------------------------------------------------------- memory

WHOLE_DATA_BATCH = """
import json, resource
import numpy as np
from lenet5 import LeNet5

def vm_size():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))

def weights(model):
    return {k: v.tobytes() for k, v in model.get_weights().items()}

rng = np.random.default_rng(0)
x = rng.integers(0, 256, (30000, 28, 28), dtype=np.uint8)
y = np.arange(30000) % 10
model = LeNet5(epochs=1, batch_size=64, random_state=0, verbose=0, n_jobs=1).fit(x[:300], y[:300])
before = weights(model)
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
# 256 MB more address space: the data and their copy fit; one gradient buffer per chunk of
# a 30,000-image batch (30,000 / 16 * 61,706 * 4 bytes = 460 MB or more) would not
resource.setrlimit(resource.RLIMIT_AS, (vm_size() + 256 * 2**20, hard))
report = {}
for method in ("fit", "partial_fit"):
    model.set_params(batch_size=10**12, warm_start=method == "fit")
    try:
        getattr(model, method)(x, y)
        report[method] = "no error"
    except MemoryError as err:
        report[method] = "MemoryError: " + str(err)
    report[method + "_trained"] = weights(model) != before
    before = weights(model)
fresh = LeNet5(epochs=1, batch_size=10**12, random_state=0, verbose=0, n_jobs=1)
try:
    fresh.fit(x, y)
    report["fresh"] = "no error"
except MemoryError as err:
    report["fresh"] = "MemoryError: " + str(err)
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
print("REPORT " + json.dumps(report))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_AS and /proc")
def test_a_whole_data_batch_trains_in_bounded_memory():
    """The gradient buffers hold one wave of chunks (a small multiple of the threads), not
    one buffer per chunk of the batch: fit, a warm fit and partial_fit with one batch of
    30,000 images train within 256 MB more address space (they used to need 460 MB)."""
    report = child_report(WHOLE_DATA_BATCH)
    for method in ("fit", "partial_fit"):
        assert report[method] == "no error", report[method]
        assert report[method + "_trained"], method
    assert report["fresh"] == "no error", report["fresh"]


# ---------------------------------------------------------------- sizes before allocation

SIZE_BOMBS = """
import json
import numpy as np
import lenet5
from lenet5 import LeNet5, _lenet5
from lenet5.datasets import load_mnist

(x, y), _ = load_mnist()
model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:100], y[:100])
net = model._net
one = x[:1]
calls = {
    "predict": lambda n: model.predict(np.broadcast_to(one, (n, 28, 28))),
    "predict_proba": lambda n: model.predict_proba(np.broadcast_to(one, (n, 28, 28))),
    "score": lambda n: model.score(
        np.broadcast_to(one, (n, 28, 28)), np.broadcast_to(np.int64(0), (n,))),
    "activations": lambda n: model.activations(np.broadcast_to(one, (n, 28, 28))),
    "distort": lambda n: lenet5.distort(np.broadcast_to(one, (n, 28, 28))),
    "int64 predict": lambda n: model.predict(np.broadcast_to(one.astype(np.int64), (n, 28, 28))),
    "float16 predict_proba": lambda n: model.predict_proba(
        np.broadcast_to((one / 255).astype(np.float16), (n, 28, 28))),
    "native predict": lambda n: net.predict(np.broadcast_to(one, (n, 28, 28))),
    "native predict_proba": lambda n: net.predict_proba(np.broadcast_to(one, (n, 28, 28))),
    "native activations": lambda n: net.activations(np.broadcast_to(one, (n, 28, 28))),
    "native distort": lambda n: _lenet5.distort(np.broadcast_to(one, (n, 28, 28))),
    "native Dataset": lambda n: _lenet5.Dataset(
        np.broadcast_to(one, (n, 28, 28)), np.broadcast_to(np.int64(0), (n,))),
    "native _forward_backward": lambda n: _lenet5._forward_backward(
        net, np.broadcast_to(np.zeros((1, 32, 32), np.float32), (n, 32, 32)),
        np.broadcast_to(np.int64(0), (n,))),
}
report = {}
for name, call in calls.items():
    # (7843003432699640 images of more than one byte a pixel: more than numpy can describe)
    big = name.split()[0] in ("int64", "float16") or name.endswith("_forward_backward")
    sizes = (10**15,) if big else (10**15, 7843003432699640)
    for n in sizes:
        try:
            call(n)
            report[f"{name} {n}"] = "no error"
        except Exception as err:
            report[f"{name} {n}"] = f"{type(err).__name__}: {err}"
print("REPORT " + json.dumps(report))
"""


def test_outputs_too_large_for_memory_are_refused_before_allocation():
    """Every native entry point checks the size of what it would allocate (with
    overflow-checked products) against the machine's memory before allocating: a
    ValueError saying how much it would need, never an abort (``memory allocation of
    8000000000000000 bytes failed``), a PanicException (``capacity overflow``) or a
    MemoryError. Run in a child process: the failure mode is the death of the process."""
    report = child_report(SIZE_BOMBS)
    for call, outcome in report.items():
        assert outcome.startswith("ValueError: "), f"{call}: {outcome}"
        assert re.search(
            r"would need [\d.]+ [PEZY]iB .* of memory, more than this machine's", outcome
        ), f"{call}: {outcome}"


def test_the_size_message_names_the_output_and_the_sizes(fitted_small):
    with pytest.raises(
        ValueError,
        match=r"the probabilities for 1000000000000000 images would "
        r"need 35\.5 PiB \(40000000000000000 bytes\) of memory",
    ):
        fitted_small.predict_proba(
            np.broadcast_to(np.zeros((1, 28, 28), np.uint8), (10**15, 28, 28))
        )


# ---------------------------------------------------------------- conversion chunk by chunk


@pytest.mark.parametrize(
    ("dtype", "scale", "whole"),
    [(np.int64, 1, 1), (np.int32, 1, 1), (np.uint16, 1, 1), (np.float16, 1 / 255, 4)],
    ids=["int64", "int32", "uint16", "float16"],
)
def test_other_dtypes_are_converted_chunk_by_chunk(fitted_small, small, dtype, scale, whole):
    """An input of a dtype the native layer does not read (int64, float16, ...) is
    converted a chunk of images at a time, never as a whole copy: the largest allocation
    seen by tracemalloc (numpy reports its buffers there) while predicting on 20,000
    images stays far below one converted copy, and the results are those of the uint8
    images."""
    import tracemalloc

    (x, y), (xt, _) = small
    n = 20000
    images = np.broadcast_to((xt[:1] * scale).astype(dtype), (n, 28, 28))
    reference = fitted_small.predict_proba(np.broadcast_to(xt[:1], (n, 28, 28))[:5])
    copy_bytes = n * 28 * 28 * whole  # one converted copy (uint8, or float32 for float16)
    for call in ("predict", "predict_proba", "score"):
        tracemalloc.start()
        try:
            if call == "score":
                fitted_small.score(images, np.zeros(n, np.int64))
            else:
                out = getattr(fitted_small, call)(images)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < copy_bytes / 3, f"{call}: {peak} bytes allocated at once"
    np.testing.assert_allclose(fitted_small.predict_proba(images[:5]), reference, atol=1e-6)
    assert out.shape == (n, 10)
    # fit: the Dataset is built from the converted chunks as they come
    train = np.concatenate([x] * 27)[:16000]
    labels = np.concatenate([y] * 27)[:16000]
    converted = (train * scale).astype(dtype)
    model = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1)
    tracemalloc.start()
    try:
        model.fit(converted, labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(train) * 28 * 28 * whole / 2, f"fit: {peak} bytes allocated at once"
    if dtype is not np.float16:
        expected = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1).fit(train, labels)
        assert weights_equal(model.get_weights(), expected.get_weights())


def test_validation_fraction_splits_without_copying_the_training_part(small, make_model):
    """validation_fraction picks the training images chunk by chunk into the native data
    set; the same split and weights as before."""
    (x, y), _ = small
    a = make_model(validation_fraction=0.2).fit(x, y)
    b = make_model(validation_fraction=0.2).fit(x.astype(np.int64), y)
    assert weights_equal(a.get_weights(), b.get_weights())
    assert a.history_["val_loss"] == b.history_["val_loss"]
