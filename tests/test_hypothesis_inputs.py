"""Property tests: no input of any shape, dtype, layout or value makes lenet5 panic.

A Rust panic surfaces in Python as ``pyo3_runtime.PanicException``, which derives from
BaseException, not Exception: it escapes ``except Exception`` in users' code. These tests
throw random arrays (shapes, dtypes including big-endian, complex, object, strings and
dates, values including NaN, infinities and extremes, and layouts: Fortran order, reversed
axes, strided slices, broadcast zero strides, read-only) at ``fit``, ``partial_fit``,
``predict``, ``predict_proba``, ``score`` and ``set_weights`` of the estimator, and at the
native ``Network`` and ``Dataset`` directly (the estimator validates first, so only the
direct calls reach every native check). The properties:

* the public API answers with a result of the documented shape or raises TypeError or
  ValueError, and a failed call leaves the model unchanged;
* the native layer answers, or raises TypeError, ValueError or OverflowError (an integer
  argument outside its C type), never PanicException, never anything else.

Each test is bounded by ``max_examples`` and a deadline; the file runs in well under a
minute.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings

import numpy as np
import pytest
from conftest import weights_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lenet5 import InvertedInputWarning, LeNet5, _lenet5

SETTINGS = settings(
    max_examples=120,
    deadline=5000,  # milliseconds per example; generous, a fit here takes a few ms
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# ---------------------------------------------------------------- strategies

NUMERIC_DTYPES = [
    "u1", "i1", "<u2", ">u2", "<i2", ">i4", "<i8", ">u8",
    "<f2", "<f4", ">f4", "<f8", ">f8", "g",
]  # fmt: skip
OTHER_DTYPES = ["?", "<c8", ">c16", "U3", "S2", "M8[s]", "m8[ms]"]

VALID_SHAPES = [
    (28, 28), (32, 32), (784,), (1024,), (1, 28, 28), (1, 32, 32), (28, 28, 1), (32, 32, 1),
]  # fmt: skip
ODD_SIZES = [0, 1, 2, 3, 5, 27, 28, 29, 31, 32, 33]


@st.composite
def shapes(draw):
    """Mostly shapes near the accepted ones, sometimes anything up to 5-D."""
    kind = draw(st.sampled_from(["valid", "valid", "near", "any"]))
    n = draw(st.integers(0, 4))
    if kind == "valid":
        per_sample = draw(st.sampled_from(VALID_SHAPES))
        if per_sample in ((28, 28), (32, 32)) and draw(st.booleans()):
            return per_sample  # a single image
        return (n, *per_sample)
    if kind == "near":
        per_sample = draw(
            st.sampled_from(
                [(783,), (785,), (1023,), (3, 28, 28), (28, 28, 3), (2, 32, 32), (28, 32),
                 (27, 27), (33, 33), (1, 1, 28, 28), (28,), ()]
            )
        )  # fmt: skip
        return (n, *per_sample)
    dims = draw(st.lists(st.sampled_from(ODD_SIZES), min_size=0, max_size=5))
    while math.prod(dims) > 20_000:
        dims = dims[:-1]
    return tuple(dims)


def _elements(dtype: np.dtype, wild: bool):
    if dtype.kind == "f":
        width = min(dtype.itemsize * 8, 64)
        if wild:
            return st.floats(width=width, allow_nan=True, allow_infinity=True) | st.floats(
                0, 1, width=width
            )
        return st.floats(0, 1, width=width)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if wild:
            return st.integers(int(info.min), int(info.max))
        return st.integers(max(0, int(info.min)), min(255, int(info.max)))
    return None  # hypothesis' default elements for the dtype


@st.composite
def layouts(draw, arr):
    """The same values in another memory layout."""
    how = draw(
        st.sampled_from(["c", "fortran", "reverse", "step", "broadcast", "read-only", "padded"])
    )
    if arr.ndim == 0 or arr.size == 0:
        return arr
    if how == "fortran":
        return np.asfortranarray(arr)
    if how == "reverse":
        axis = draw(st.integers(0, arr.ndim - 1))
        return np.flip(arr, axis=axis)
    if how == "step":
        return np.repeat(arr, 2, axis=0)[::2]
    if how == "broadcast":
        return np.broadcast_to(arr[:1], arr.shape)
    if how == "read-only":
        arr = arr.copy()
        arr.setflags(write=False)
        return arr
    if how == "padded":
        big = np.zeros(tuple(s + 2 for s in arr.shape), dtype=arr.dtype)
        inner = tuple(slice(1, s + 1) for s in arr.shape)
        big[inner] = arr
        return big[inner]
    return arr


@st.composite
def image_arrays(draw):
    shape = draw(shapes())
    if draw(st.integers(0, 9)) == 0:
        dtype = np.dtype(draw(st.sampled_from(OTHER_DTYPES)))
        arr = draw(hnp.arrays(dtype, shape))
    else:
        dtype = np.dtype(draw(st.sampled_from(NUMERIC_DTYPES)))
        wild = draw(st.booleans())
        elements = _elements(dtype, wild)
        arr = draw(hnp.arrays(dtype, shape, elements=elements))
        if draw(st.integers(0, 19)) == 0:
            arr = arr.astype(object)
    return draw(layouts(arr))


@st.composite
def label_arrays(draw, n):
    """Labels for n samples: usually valid, sometimes any dtype, shape or value."""
    kind = draw(st.sampled_from(["ints", "ints", "strings", "floats", "any"]))
    if kind == "ints":
        return draw(hnp.arrays(np.int64, n, elements=st.integers(0, 3)))
    if kind == "strings":
        return draw(hnp.arrays("U2", n, elements=st.sampled_from(["a", "b", "cc"])))
    if kind == "floats":
        return draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 1.0, 0.5, math.nan])))
    dtype = np.dtype(draw(st.sampled_from(NUMERIC_DTYPES + OTHER_DTYPES)))
    shape = draw(st.sampled_from([(n,), (n, 1), (n, 2), (), (n + 1,), (max(n - 1, 0),)]))
    return draw(hnp.arrays(dtype, shape))


# ---------------------------------------------------------------- helpers


def _is_panic(err: BaseException) -> bool:
    return type(err).__name__ == "PanicException"


def call_public(fn, *args, **kwargs):
    """Run a public method: returns (result, None) or (None, TypeError/ValueError); any
    other exception (above all a PanicException) fails the test. Arbitrary pixels often
    have a bright border: the InvertedInputWarning they get is right, and ignored here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InvertedInputWarning)
            return fn(*args, **kwargs), None
    except (TypeError, ValueError) as err:
        message = str(err)
        assert message, "an empty error message"
        return None, err
    except BaseException as err:
        if _is_panic(err):
            pytest.fail(f"native panic: {err!r}")
        raise


def call_native(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except (TypeError, ValueError, OverflowError) as err:
        return None, err
    except BaseException as err:
        if _is_panic(err):
            pytest.fail(f"native panic: {err!r}")
        raise


@pytest.fixture(scope="module")
def model(mnist):
    """A small fitted model shared by the read-only properties (never modified)."""
    (x, y), _ = mnist
    return LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=2).fit(x[:256], y[:256])


@pytest.fixture(scope="module")
def frozen_weights(model):
    return model.get_weights()


def _expected_rows(x) -> int | None:
    """Images in x if it is a valid layout (the answer's length), else None."""
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape in ((28, 28), (32, 32)):
        return 1
    return arr.shape[0] if arr.ndim >= 1 else None


# ---------------------------------------------------------------- estimator


@SETTINGS
@given(x=image_arrays())
def test_predict_and_predict_proba_never_panic(model, frozen_weights, x):
    proba, err = call_public(model.predict_proba, x)
    pred, err2 = call_public(model.predict, x)
    assert (err is None) == (err2 is None)
    if err is None:
        n = _expected_rows(x)
        assert proba.shape == (n, 10)
        assert proba.dtype == np.float32
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        assert pred.shape == (n,)
        assert set(pred.tolist()) <= set(range(10))
    assert weights_equal(frozen_weights, model.get_weights())


@SETTINGS
@given(data=st.data())
def test_score_never_panics(model, frozen_weights, data):
    x = data.draw(image_arrays())
    n = _expected_rows(x) or 0
    y = data.draw(label_arrays(n))
    weights = data.draw(
        st.none() | hnp.arrays(np.float64, st.sampled_from([(n,), (n + 1,)]), elements=st.floats())
    )
    result, _ = call_public(model.score, x, y, sample_weight=weights)
    if result is not None:
        assert 0.0 <= result <= 1.0
    assert weights_equal(frozen_weights, model.get_weights())


@SETTINGS
@given(data=st.data())
def test_fit_and_partial_fit_never_panic(data):
    x = data.draw(image_arrays())
    n = _expected_rows(x) or 0
    y = data.draw(label_arrays(n))
    estimator = LeNet5(
        epochs=1,
        batch_size=data.draw(st.integers(1, 5)),
        random_state=0,
        verbose=0,
        n_jobs=1,
        pooling=data.draw(st.sampled_from(["sub", "avg", "max"])),
    )
    method = data.draw(st.sampled_from(["fit", "partial_fit"]))
    result, err = call_public(getattr(estimator, method), x, y)
    if err is not None:
        assert not hasattr(estimator, "classes_")  # a failed first fit leaves it unfitted
        return
    assert result is estimator
    assert estimator.n_iter_ == 1
    assert all(np.isfinite(w).all() for w in estimator.get_weights().values())
    proba, _ = call_public(estimator.predict_proba, x)
    assert proba.shape == (_expected_rows(x), len(estimator.classes_))


HYPERPARAMETER_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            *("sgd", "adam", "adamw", "sdlm", "tanh", "relu", "sub", "max", "rbf", "softmax"),
            *("lecun", "lecun_sqrt", "paper", "modern"),
        ]
    )
    | st.lists(st.integers(0, 3), max_size=2)
    | st.dictionaries(st.sampled_from(["translate", "scale", "x"]), st.floats(), max_size=2)
)
NOT_AN_INT = (
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=4) | st.just([1])
)
# epochs: a valid but large value only makes a fit long (as long as asked: Ctrl-C stops
# it), so only small values, and values beyond int64 (rejected at once), and invalid ones.
# n_jobs: large values are capped.
STRATEGY_FOR = {
    "epochs": st.integers(-3, 2) | st.integers(2**63, 2**70) | NOT_AN_INT,
    "n_jobs": st.integers(-3, 3) | st.integers(1025, 2**70) | NOT_AN_INT,
}


@SETTINGS
@given(data=st.data())
def test_any_hyperparameter_value_never_panics(small, data):
    (x, y), _ = small
    name = data.draw(st.sampled_from(sorted(LeNet5().get_params())))
    value = data.draw(STRATEGY_FOR.get(name, HYPERPARAMETER_VALUES), label=name)
    params = {"epochs": 1, "random_state": 0, "verbose": 0, "n_jobs": 1, "batch_size": 16}
    params[name] = value
    estimator = LeNet5(**params)
    try:
        _, err = call_public(estimator.fit, x[:32], y[:32])
    except FloatingPointError:  # a huge learning rate or weight decay diverges: documented
        assert not hasattr(estimator, "classes_")  # and the failed fit changed nothing
        return
    if err is not None:
        assert name in str(err), (name, value, err)
        assert not hasattr(estimator, "classes_")
    else:
        assert estimator.predict(x[:4]).shape == (4,)


WEIGHT_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["value", "shape", "dtype", "drop", "add", "rename", "layout", "type"]),
        st.integers(0, 20),  # which entry (modulo the number of entries)
        st.integers(0, 10**6),  # which element
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(NUMERIC_DTYPES + OTHER_DTYPES),
        hnp.array_shapes(min_dims=0, max_dims=4, max_side=6),
        st.sampled_from(["fortran", "reverse", "step", "read-only", "list", None, "text"]),
    ),
    max_size=3,
)


def apply_edits(reference, edits):
    """A weight dict derived from a valid one by a few edits (drawn as small tuples, so
    that a failing example prints short)."""
    weights = {k: v.copy() for k, v in reference.items()}
    for action, which, element, value, dtype, shape, other in edits:
        keys = sorted(weights)
        if not keys:
            weights["c1.weight"] = np.zeros(shape, np.float32)
            continue
        key = keys[which % len(keys)]
        arr = weights[key]
        if action == "drop":
            del weights[key]
        elif action == "add":
            weights[f"{key}.extra"] = np.zeros(shape, np.float32)
        elif action == "rename":
            weights[key.upper()] = weights.pop(key)
        elif action == "value" and np.asarray(arr).size:
            with warnings.catch_warnings():
                # an earlier edit may have made it complex: keep the real part
                warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
                arr = np.array(arr, dtype=np.float64)
            arr.reshape(-1)[element % arr.size] = value
            weights[key] = arr
        elif action == "shape":
            weights[key] = np.full(shape, 0.5, np.float32)
        elif action == "dtype":
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
                    weights[key] = np.asarray(arr).astype(dtype)
            except (TypeError, ValueError):
                weights[key] = np.zeros(np.shape(arr), dtype)
        elif action == "layout":
            arr = np.asarray(arr)
            if other == "fortran":
                weights[key] = np.asfortranarray(arr)
            elif other == "reverse" and arr.ndim:
                weights[key] = arr[::-1].copy()[::-1]
            elif other == "step" and arr.ndim:
                weights[key] = np.repeat(arr, 2, axis=0)[::2]
            elif other == "read-only":
                arr = arr.copy()
                arr.setflags(write=False)
                weights[key] = arr
            elif other == "list":
                weights[key] = arr.tolist()
        elif action == "type":
            weights[key] = {"text": "weights", None: None}.get(other, 3.0)
    return weights


@SETTINGS
@given(edits=WEIGHT_EDITS)
def test_set_weights_never_panics_and_is_all_or_nothing(model, frozen_weights, edits):
    weights = apply_edits(frozen_weights, edits)
    twin = copy.deepcopy(model)
    _, err = call_public(twin.set_weights, weights)
    got = twin.get_weights()
    if err is not None:
        assert weights_equal(frozen_weights, got)
    else:
        assert got.keys() == frozen_weights.keys()
        for key, value in got.items():
            np.testing.assert_array_equal(value, np.asarray(weights[key], dtype=np.float32))


# ---------------------------------------------------------------- native layer


@pytest.fixture(scope="module")
def native():
    net = _lenet5.Network(10, seed=0)
    return net, net.get_weights()


@SETTINGS
@given(x=image_arrays(), n_jobs=st.integers(-3, 4))
def test_native_inference_never_panics(native, x, n_jobs):
    net, weights = native
    for method in (net.predict, net.predict_proba, net.activations):
        args = (x,) if method is net.activations else (x, n_jobs)
        result, _ = call_native(method, *args)
        if result is not None and method is net.predict_proba:
            assert result.shape == (x.shape[0], 10)
    assert weights_equal(weights, net.get_weights())


@SETTINGS
@given(
    data=st.data(),
    batch_size=st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 6),
    # (intervals beyond ~1.8e19 s: see the explicit test at the end of this file)
    interval=st.floats(0, 1e6) | st.sampled_from([math.nan, math.inf, -1.0, 0.0]),
)
def test_native_dataset_and_training_never_panic(data, batch_size, interval):
    x = data.draw(image_arrays())
    n = x.shape[0] if x.ndim else 0
    y = data.draw(
        hnp.arrays(np.int64, n, elements=st.integers(-2, 12))
        | hnp.arrays(np.dtype(data.draw(st.sampled_from(NUMERIC_DTYPES))), n)
    )
    dataset, _ = call_native(_lenet5.Dataset, x, y)
    if dataset is None:
        return
    net = _lenet5.Network(
        data.draw(st.integers(2, 12)),
        pooling=data.draw(st.sampled_from(["sub", "avg", "max"])),
        output="softmax",
        seed=data.draw(st.integers(0, 2**64 - 1)),
    )
    optimizer = data.draw(st.sampled_from(["sgd", "adam", "adamw", "sdlm"]))
    net.reset_optimizer(optimizer, learning_rate=0.01, weight_decay=0.01)
    before = net.get_weights()
    stats, err = call_native(net.train_epoch, dataset, batch_size, 1, None, interval)
    if err is not None:
        assert weights_equal(before, net.get_weights())
    else:
        assert stats["samples"] == len(dataset)
    # whatever happened, the model still predicts and trains
    assert net.predict(np.zeros((1, 28, 28), np.uint8)).shape == (1,)
    ok = _lenet5.Dataset(np.zeros((2, 28, 28), np.uint8), np.array([0, 1], np.int64))
    assert net.train_epoch(ok, 2, 1)["samples"] == 2


@SETTINGS
@given(edits=WEIGHT_EDITS)
def test_native_set_weights_never_panics(native, edits):
    net, weights = native
    candidate = apply_edits(weights, edits)
    _, err = call_native(net.set_weights, candidate)
    if err is None:
        net.set_weights(weights)  # put the reference back for the next example
    assert weights_equal(weights, net.get_weights())


@settings(max_examples=60, deadline=5000)
@given(
    content=st.binary(max_size=64),
    header=st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x0d\x02"]),
)
def test_native_idx_reader_never_panics(tmp_path_factory, content, header):
    path = tmp_path_factory.mktemp("idx") / "data.idx"
    path.write_bytes(header + content)
    try:
        _lenet5.load_idx(str(path))
    except (ValueError, OSError):
        pass
    except BaseException as err:
        if _is_panic(err):
            pytest.fail(f"native panic: {err!r}")
        raise


# ---------------------------------------------------------------- found by these tests


def test_native_training_interval_beyond_duration_range_does_not_panic():
    """interval=1e20 s is finite and >= 0, so it passes the native check, but it does not
    fit a Rust Duration: ``Duration::from_secs_f64`` panicked. Any interval (or a
    ValueError for absurd ones) must be answered without a PanicException."""
    net = _lenet5.Network(2)
    net.reset_optimizer()
    data = _lenet5.Dataset(np.zeros((2, 28, 28), np.uint8), np.array([0, 1], np.int64))
    for interval in (1e20, 1e300, 1.7976931348623157e308):
        call_native(net.train_epoch, data, 1, 1, None, interval)


def test_native_model_still_trains_after_a_failed_training_call():
    """A panic inside train_epoch poisoned the model's training lock: every later
    train_epoch raised "this model is being trained in another thread" forever."""
    net = _lenet5.Network(2)
    net.reset_optimizer()
    data = _lenet5.Dataset(np.zeros((2, 28, 28), np.uint8), np.array([0, 1], np.int64))
    with contextlib.suppress(BaseException):  # whatever it raises, the model must recover
        net.train_epoch(data, 1, 1, None, 1e20)
    assert net.train_epoch(data, 1, 1)["samples"] == 2


@pytest.mark.parametrize("map_j", [math.nan, math.inf, 1e300])
def test_native_network_rejects_non_finite_map_j(map_j):
    """A NaN or infinite MAP constant would make every loss NaN; 1e300 is inf in float32.
    (Its sign is the estimator's business: the native layer accepts any finite j.)"""
    with pytest.raises(ValueError, match="map_j"):
        _lenet5.Network(2, output="rbf", map_j=map_j)
