"""Input and hyperparameter validation: the right exception, a message saying what was
expected and what came, and a model left as it was."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import assert_same_snapshot, snapshot
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lenet5._params import resolve_n_jobs as _resolve_n_jobs
from lenet5._validation import check_images, check_labels

# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((3, 28, 28), (3, 28, 28)),
        ((3, 32, 32), (3, 32, 32)),
        ((3, 1, 28, 28), (3, 28, 28)),
        ((3, 1, 32, 32), (3, 32, 32)),
        ((3, 28, 28, 1), (3, 28, 28)),
        ((3, 32, 32, 1), (3, 32, 32)),
        ((3, 784), (3, 28, 28)),
        ((3, 1024), (3, 32, 32)),
        ((1, 784), (1, 28, 28)),
    ],
)
def test_accepted_shapes(shape, expected):
    x = np.arange(np.prod(shape)).reshape(shape) % 256
    out = check_images(x.astype(np.uint8))
    assert out.shape == expected
    np.testing.assert_array_equal(out.reshape(-1), x.reshape(-1))


@pytest.mark.parametrize(
    "shape",
    [
        (3, 27, 27),
        (3, 28, 32),
        (3, 2, 28, 28),
        (3, 783),
        (3, 28, 28, 3),
        (784,),
        (3, 1, 1, 28, 28),
    ],
)
def test_rejected_shapes(shape):
    with pytest.raises(ValueError, match=rf"must have shape .*got shape \({shape[0]},"):
        check_images(np.zeros(shape, dtype=np.uint8))


def test_single_image_only_where_allowed():
    image = np.zeros((28, 28), dtype=np.uint8)
    assert check_images(image, allow_single=True).shape == (1, 28, 28)
    with pytest.raises(ValueError, match="single image"):
        check_images(image)


def test_fit_rejects_a_single_image(make_model):
    with pytest.raises(ValueError, match="single image"):
        make_model().fit(np.zeros((28, 28), np.uint8), np.arange(28) % 2)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (None, "got None"),
        ("images.png", "got str"),
        (np.zeros((2, 784), dtype=bool), "dtype bool"),
        (np.zeros((2, 784), dtype=np.complex64), "dtype complex64"),
        (np.full((2, 784), "a"), "dtype <U1"),
        (np.zeros((2, 784), dtype=object), "dtype object"),
        (np.zeros((2, 784), dtype="datetime64[s]"), "dtype datetime64"),
    ],
)
def test_rejected_types(x, message):
    with pytest.raises(TypeError, match=message):
        check_images(x)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((0, 28, 28), np.uint8), "0 images"),
        (np.full((2, 784), np.nan), "NaN or infinity"),
        (np.full((2, 784), np.inf, dtype=np.float32), "NaN or infinity"),
        (
            np.full((2, 784), 255.0),
            r"from 255 to 255; float images must lie in \[0, 1\] "
            r"\(divide 0..255 data by 255\)",
        ),
        (np.full((2, 784), -0.5), r"must lie in \[0, 1\]"),
        (
            np.full((2, 784), 256, dtype=np.int16),
            "from 256 to 256; integer images must hold values in 0..255",
        ),
        (np.full((2, 784), -1, dtype=np.int8), "0..255"),
        ([[1, 2], [3]], "could not convert"),
    ],
)
def test_rejected_values(x, message):
    with pytest.raises(ValueError, match=message):
        check_images(x)


def test_integer_dtypes_are_converted_exactly():
    x = np.arange(2 * 784).reshape(2, 784) % 256
    for dtype in (np.int16, np.uint16, np.int32, ">i8", np.uint64):
        out = check_images(x.astype(dtype))
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out.reshape(2, 784), x)


def test_float_dtypes_become_native_float32_or_float64():
    x = np.linspace(0, 1, 2 * 784).reshape(2, 784)
    assert check_images(x.astype(">f8")).dtype == np.dtype(np.float64)
    assert check_images(x.astype(">f4")).dtype == np.dtype(np.float32)
    assert check_images(x.astype(np.float16)).dtype == np.dtype(np.float32)
    np.testing.assert_array_equal(check_images(x.astype(">f8")).reshape(2, 784), x)


def test_strided_views_are_not_copied():
    x = np.zeros((4, 28, 28), np.uint8)
    view = x[::2]
    assert np.shares_memory(check_images(view), x)
    fortran = np.asfortranarray(x)
    assert np.shares_memory(check_images(fortran), fortran)


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int32, np.float32, np.float64]),
        shape=st.tuples(st.integers(1, 4), st.sampled_from([784, 1024])),
        elements=st.integers(0, 255),
    )
)
def test_valid_arrays_keep_their_values(x):
    if x.dtype.kind == "f":
        x = x / 255
    out = check_images(x)
    assert out.shape[0] == x.shape[0]
    np.testing.assert_array_equal(out.reshape(x.shape), x.astype(out.dtype))


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("y", "n", "exc", "message"),
    [
        (None, 3, TypeError, "got None"),
        (np.zeros((3, 1)), 3, ValueError, r"1-D .*got shape \(3, 1\) \(use y.ravel\(\)\)"),
        (np.zeros(4), 3, ValueError, "3 images but 4 labels"),
        (np.array([0.0, 1.0, np.nan]), 3, ValueError, "NaN"),
        (np.array([0.0, 1.5, 2.0]), 3, ValueError, "non-integer float labels .*1.5"),
        (np.array([1j, 2j, 3j]), 3, TypeError, "dtype complex128"),
        (np.array(["a", None, "b"], dtype=object), 3, ValueError, "missing label"),
        (np.array([1.5, 1, 2], dtype=object), 3, TypeError, "float 1.5"),
    ],
)
def test_rejected_labels(y, n, exc, message):
    with pytest.raises(exc, match=message):
        check_labels(y, n)


def test_fit_needs_two_classes(make_model, small):
    (x, _), _ = small
    with pytest.raises(ValueError, match=r"single class \(7\); at least 2"):
        make_model().fit(x[:20], np.full(20, 7))


def test_fit_rejects_length_mismatch_with_both_lengths(make_model, small):
    (x, y), _ = small
    with pytest.raises(ValueError, match="600 images but 599 labels"):
        make_model().fit(x, y[:599])


# ---------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("epochs", 0, "epochs must be an integer >= 1; got 0"),
        ("epochs", 2.5, "epochs must be an integer"),
        ("batch_size", -1, "batch_size must be an integer >= 1"),
        ("learning_rate", 0.0, r"learning_rate must be a finite number in \(0, inf\)"),
        ("learning_rate", float("nan"), "learning_rate"),
        (
            "optimizer",
            "rmsprop",
            "optimizer must be one of 'sgd', 'adam', 'adamw', 'sdlm'; got 'rmsprop'",
        ),
        ("momentum", 1.0, r"momentum must be a finite number in \[0, 1\)"),
        ("nesterov", "yes", "nesterov must be True or False"),
        ("weight_decay", -0.1, "weight_decay"),
        ("beta_1", 1.5, "beta_1"),
        ("beta_2", -1, "beta_2"),
        ("epsilon", 0, "epsilon"),
        (
            "lr_schedule",
            "step",
            "lr_schedule must be one of 'constant', 'cosine', 'paper' or a callable",
        ),
        ("lr_schedule", lambda epoch, lr: -1.0, "must return a positive finite learning rate"),
        ("activation", "sigmoid", "activation must be one of 'tanh', 'relu'"),
        ("pooling", "min", "pooling must be one of 'sub', 'avg', 'max'"),
        ("c3", "random", "c3 must be one of 'table', 'full'"),
        ("output", "hinge", "output must be one of 'softmax', 'rbf'"),
        ("init", "xavier", "init must be one of 'lecun'"),
        ("label_smoothing", 1.0, r"label_smoothing must be a finite number in \[0, 1\)"),
        ("early_stopping", 1, "early_stopping must be True or False"),
        ("validation_fraction", 1.0, r"validation_fraction must be a finite number in \(0, 1\)"),
        ("patience", 0, "patience must be an integer >= 1"),
        ("min_delta", -1.0, "min_delta"),
        ("callbacks", [print, 3], "callbacks must be None, a callable or a list of callables"),
        ("warm_start", None, "warm_start must be True or False"),
        ("random_state", -3, "random_state must be None, a non-negative integer"),
        ("random_state", "seed", "random_state"),
        ("n_jobs", 0, "n_jobs must be None, a positive integer .* as in joblib .*; got 0"),
        ("n_jobs", -2000, "n_jobs"),
        ("verbose", -1, "verbose must be an integer >= 0"),
    ],
)
def test_bad_hyperparameters_raise_at_fit_and_change_nothing(fitted, small, name, value, message):
    (x, y), _ = small
    fitted.set_params(**{name: value})  # accepted: checks happen at fit
    before = snapshot(fitted)
    with pytest.raises(ValueError, match=message):
        fitted.fit(x, y)
    with pytest.raises(ValueError, match=message):
        fitted.partial_fit(x, y)
    assert_same_snapshot(before, snapshot(fitted))


def test_warm_start_cannot_change_classes_or_architecture(fitted, small):
    (x, y), _ = small
    fitted.set_params(warm_start=True)
    before = snapshot(fitted)
    with pytest.raises(ValueError, match="warm_start=True but y has the classes"):
        fitted.fit(x, y % 5)
    fitted.set_params(pooling="max")
    with pytest.raises(ValueError, match="cannot change pooling from 'sub' to 'max'"):
        fitted.fit(x, y)
    fitted.set_params(pooling=None)
    assert_same_snapshot(before, snapshot(fitted))
    # the initialisation only drew the first weights: changing it does not stop a warm start
    # (the epochs carry on from where they were)
    epochs = fitted.n_iter_
    fitted.set_params(init="glorot", epochs=1)
    fitted.fit(x, y)
    assert fitted.n_iter_ == epochs + 1


def test_partial_fit_classes_checks(make_model, small):
    (x, y), _ = small
    model = make_model()
    with pytest.raises(ValueError, match="not among the classes"):
        model.partial_fit(x, y, classes=[0, 1, 2])
    assert not hasattr(model, "classes_")
    model.partial_fit(x, y, classes=range(10))
    with pytest.raises(ValueError, match="differ from the classes_"):
        model.partial_fit(x, y, classes=range(11))
    with pytest.raises(ValueError, match="repeated"):
        make_model().partial_fit(x, y, classes=[0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9])


def test_n_jobs_none_means_all_available_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _resolve_n_jobs(None) == cores
    assert _resolve_n_jobs(-1) == cores
    assert _resolve_n_jobs(3) == 3


def test_validation_data_must_be_a_pair(make_model, small):
    (x, y), _ = small
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(x_val, y_val\)"):
        make_model().fit(x, y, validation_data=x)
    with pytest.raises(ValueError, match=r"validation_data\[0\] must have shape"):
        make_model().fit(x, y, validation_data=(x[:, :5], y))


def test_predict_rejects_bad_input_with_messages(fitted_small):
    with pytest.raises(ValueError, match=r"got shape \(2, 30, 30\)"):
        fitted_small.predict(np.zeros((2, 30, 30)))
    with pytest.raises(TypeError, match="dtype bool"):
        fitted_small.predict_proba(np.zeros((2, 28, 28), dtype=bool))
    with pytest.raises(ValueError, match="0 images"):
        fitted_small.predict(np.zeros((0, 784)))


# ---------------------------------------------------------------- validate, then commit


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        (lambda epoch, lr: -1.0 if epoch == 1 else lr, r"lr_schedule\(1, 0.05\) returned -1.0"),
        (lambda epoch, lr: 1e-50 if epoch == 2 else lr, "float32 cannot hold .*become 0.0"),
        (lambda epoch, lr: 1e39 if epoch == 1 else lr, "float32 cannot hold .*become inf"),
        (lambda epoch, lr: 1e-40 if epoch == 1 else lr, "float32 cannot hold"),
        (lambda epoch, lr: float("nan") if epoch == 2 else lr, "positive finite learning rate"),
        (lambda epoch, lr: "fast" if epoch == 1 else lr, "positive finite learning rate"),
    ],
)
@pytest.mark.parametrize("fitted_before", [False, True])
def test_a_bad_learning_rate_at_any_epoch_changes_nothing(
    small, make_model, schedule, match, fitted_before
):
    """Every learning rate of the fit is produced and checked before anything changes:
    a callable lr_schedule that goes wrong at a later epoch (before: after the network
    had been replaced and trained) or a rate that float32 would turn into 0 (before:
    silently 0, no training at all) raises ValueError and leaves the model as it was."""
    (x, y), _ = small
    model = make_model(epochs=3)
    if fitted_before:
        model.fit(x[:200], y[:200])
    calls = []

    def recording(epoch, lr):
        calls.append(epoch)
        return schedule(epoch, lr)

    model.set_params(lr_schedule=recording)
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y)
    assert_same_snapshot(before, snapshot(model))
    for warm in (True, False):
        model.set_params(warm_start=warm)
        before = snapshot(model)
        with pytest.raises(ValueError, match=match):
            model.fit(x, y)
        assert_same_snapshot(before, snapshot(model))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"learning_rate": 1e-50}, "float32 cannot hold"),
        ({"learning_rate": 1e-37, "lr_schedule": "cosine", "epochs": 50}, "gives epoch 50 "),
        ({"learning_rate": 1e-37, "lr_schedule": "paper", "epochs": 20}, "gives epoch 9 "),
    ],
)
def test_string_schedules_are_checked_for_every_epoch_too(small, make_model, params, match):
    (x, y), _ = small
    model = make_model(**params)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y)
    assert not hasattr(model, "classes_")


def test_partial_fit_checks_its_learning_rate_before_any_change(small, make_model):
    (x, y), _ = small
    model = make_model().partial_fit(x, y)
    model.set_params(lr_schedule=lambda epoch, lr: 0.0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="positive finite learning rate"):
        model.partial_fit(x, y)
    assert_same_snapshot(before, snapshot(model))
    model.set_params(lr_schedule=lambda epoch, lr: 1e-45)
    before = snapshot(model)
    with pytest.raises(ValueError, match="float32 cannot hold"):
        model.partial_fit(x, y)
    assert_same_snapshot(before, snapshot(model))


def test_a_callback_error_in_a_later_epoch_changes_nothing(small, make_model):
    """Any error that ends a fit (here a callback's) leaves the model as it was before
    the call, also on a warm start, whose network is trained as a copy."""
    (x, y), _ = small
    model = make_model(epochs=1).fit(x, y)

    def failing(epoch, logs):
        if epoch == 3:
            raise RuntimeError("callback failed")

    model.set_params(epochs=3, callbacks=failing)
    for warm in (False, True):
        model.set_params(warm_start=warm)
        before = snapshot(model)
        with pytest.raises(RuntimeError, match="callback failed"):
            model.fit(x, y)
        assert_same_snapshot(before, snapshot(model))


def test_the_native_learning_rate_refuses_what_float32_cannot_hold():
    from lenet5 import _lenet5

    net = _lenet5.Network(10)
    net.reset_optimizer("sgd", learning_rate=0.01)
    for bad in (1e-50, 1e-40, 1e39, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="learning_rate must be a positive number that"):
            net.set_learning_rate(bad)
        with pytest.raises(ValueError, match="learning_rate must be a positive number that"):
            net.reset_optimizer("sgd", learning_rate=bad)
