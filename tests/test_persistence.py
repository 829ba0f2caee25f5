"""Model files (save/load), pickle and deepcopy: round trips, atomic saves, refusals."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_snapshot, snapshot, weights_equal
from lenet5 import LeNet5, NotFittedError, _lenet5
from lenet5._persist import FORMAT_VERSION

DATA = Path(__file__).resolve().parent / "data"


def _regression_module():
    spec = importlib.util.spec_from_file_location(
        "make_regression_files", DATA / "make_regression_files.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REGRESSION = _regression_module()


def same_history(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k], float), np.asarray(b[k], float), equal_nan=True) for k in a
    )


def assert_same_model(a: LeNet5, b: LeNet5, x: np.ndarray) -> None:
    assert type(a) is type(b)
    assert np.array_equal(a.predict_proba(x), b.predict_proba(x))
    assert weights_equal(a.get_weights(), b.get_weights())
    assert a.classes_.dtype == b.classes_.dtype
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert a.n_iter_ == b.n_iter_
    assert same_history(a.history_, b.history_)
    assert a.best_epoch_ == b.best_epoch_
    assert a.n_params_ == b.n_params_
    assert a.get_params() == b.get_params()
    fitted_names = {k for k in vars(a) if k.endswith("_") and not k.startswith("_")}
    assert fitted_names == {k for k in vars(b) if k.endswith("_") and not k.startswith("_")}


def read_raw(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def write_with_metadata(src: Path, dst: Path, **changes: str | None) -> Path:
    """Copy a model file, changing metadata entries (None removes one)."""
    weights, metadata = _lenet5.load_safetensors(str(src))
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    _lenet5.save_safetensors(str(dst), weights, metadata)
    return dst


@pytest.fixture
def saved(fitted_small, tmp_path):
    path = tmp_path / "model.safetensors"
    fitted_small.save(path)
    return path


# ------------------------------------------------------------------ round trips


def test_save_load_round_trip_is_bit_identical(fitted_small, saved, mnist):
    _, (x_test, _) = mnist
    loaded = LeNet5.load(saved)
    assert_same_model(fitted_small, loaded, x_test)
    assert (loaded.predict(x_test) == fitted_small.predict(x_test)).all()
    # str paths work as well as Path objects.
    assert_same_model(fitted_small, LeNet5.load(str(saved)), x_test[:10])


def test_file_layout_and_size(fitted_small, tmp_path):
    saved = tmp_path / "weights-only.safetensors"
    fitted_small.save(saved, include_optimizer=False)
    header, buffer = read_raw(saved)
    metadata = header.pop("__metadata__")
    weights = fitted_small.get_weights()
    assert list(header) == list(weights)  # get_weights order, contiguous
    at = 0
    for name, entry in header.items():
        assert entry["dtype"] == "F32"
        assert tuple(entry["shape"]) == weights[name].shape
        assert entry["data_offsets"][0] == at
        at = entry["data_offsets"][1]
    assert at == len(buffer)
    assert metadata["format"] == "lenet5"
    assert metadata["format_version"] == "1"  # what lenet5 wrote before the optimizer state
    assert "optimizer" not in metadata
    assert metadata["library_version"] == _lenet5.__version__
    assert json.loads(metadata["hyperparameters"]) == fitted_small.get_params()
    assert json.loads(metadata["classes"]) == {"dtype": "|u1", "values": list(range(10))}
    assert metadata["n_iter"] == "3"
    assert json.loads(metadata["architecture"])["n_classes"] == 10
    # 61,750 float32 values (60,850 parameters and C3's 900 zeros outside Table I)
    # plus a header of about 2 KB.
    size = saved.stat().st_size
    assert 247_000 < size < 247_000 + 4096
    assert (8 + struct.unpack("<Q", saved.read_bytes()[:8])[0]) % 8 == 0


def test_loaded_model_continues_training(fitted_small, saved, mnist):
    (x, y), (x_test, _) = mnist
    loaded = LeNet5.load(saved)
    unpickled = pickle.loads(pickle.dumps(fitted_small))
    # Both carry on with the saved optimizer state and random stream: identical results.
    loaded.partial_fit(x[:300], y[:300])
    unpickled.partial_fit(x[:300], y[:300])
    assert loaded.n_iter_ == 4
    assert len(loaded.history_["loss"]) == 4
    assert weights_equal(loaded.get_weights(), unpickled.get_weights())
    assert not weights_equal(loaded.get_weights(), fitted_small.get_weights())
    # warm_start continues from the loaded weights.
    warm = LeNet5.load(saved).set_params(warm_start=True, epochs=1)
    warm.fit(x[:300], y[:300])
    assert warm.n_iter_ == 4
    assert warm.score(x_test, mnist[1][1]) > 0.5


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(lambda y: y.astype(np.int64) - 3, id="int64-negative"),
        pytest.param(lambda y: y.astype(np.uint16) * 1000, id="uint16"),
        pytest.param(lambda y: y.astype(np.float64) + 0.0, id="float64"),
        pytest.param(lambda y: y % 2 == 0, id="bool"),
        pytest.param(lambda y: np.array(["zero", "one", "two"])[y % 3], id="str"),
        pytest.param(lambda y: np.array(["é", "ß😀", "x"])[y % 3], id="unicode"),
        pytest.param(lambda y: np.array([b"a", b"bb", b"\xff"])[y % 3], id="bytes"),
        pytest.param(lambda y: np.array(["cat", "dog"], dtype=object)[y % 2], id="object-str"),
        pytest.param(lambda y: np.array([7, 2**40], dtype=object)[y % 2], id="object-int"),
    ],
)
def test_class_labels_round_trip(labels, make_model, mnist, tmp_path):
    (x, y), (x_test, _) = mnist
    model = make_model(epochs=1).fit(x[:200], labels(y[:200]))
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = LeNet5.load(path)
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.classes_.tolist() == model.classes_.tolist()
    assert [type(v) for v in loaded.classes_.tolist()] == [
        type(v) for v in model.classes_.tolist()
    ]
    predicted = loaded.predict(x_test[:50])
    assert predicted.dtype == model.predict(x_test[:50]).dtype
    assert (predicted == model.predict(x_test[:50])).all()


@pytest.mark.parametrize(
    "params",
    [
        {"pooling": "avg", "activation": "relu"},
        {"pooling": "max", "c3": "full"},
        {"early_stopping": True, "patience": 1, "epochs": 2},
    ],
)
def test_architectures_round_trip(params, make_model, mnist, tmp_path):
    (x, y), (x_test, _) = mnist
    model = make_model(**params).fit(x[:300], y[:300])
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert_same_model(model, LeNet5.load(path), x_test[:100])


def test_subclass_loads_as_itself(fitted_small, saved, mnist):
    class Mine(LeNet5):
        pass

    loaded = Mine.load(saved)
    assert type(loaded) is Mine
    assert np.array_equal(
        loaded.predict_proba(mnist[1][0][:20]), fitted_small.predict_proba(mnist[1][0][:20])
    )


def test_file_readable_by_safetensors_package(fitted_small, saved):
    st_numpy = pytest.importorskip("safetensors.numpy")
    safetensors = pytest.importorskip("safetensors")
    tensors = st_numpy.load_file(str(saved))
    weights = fitted_small.get_weights()
    # The weights under their names, and Adam's two moments (the optimizer's state).
    state = {"optimizer.m", "optimizer.v"}
    assert weights_equal({k: v for k, v in tensors.items() if k not in state}, weights)
    assert all(t.dtype == np.float32 for t in tensors.values())
    with safetensors.safe_open(str(saved), framework="np") as f:
        assert f.metadata()["format"] == "lenet5"
        assert sorted(f.keys()) == sorted([*weights, *state])


def test_file_written_by_safetensors_package_loads(fitted_small, saved, tmp_path, mnist):
    st_numpy = pytest.importorskip("safetensors.numpy")
    _, metadata = _lenet5.load_safetensors(str(saved))
    other = tmp_path / "other.safetensors"
    st_numpy.save_file(st_numpy.load_file(str(saved)), str(other), metadata=metadata)
    assert_same_model(fitted_small, LeNet5.load(other), mnist[1][0][:50])
    # The weights alone, with the optimizer's metadata entry: refused, as inconsistent.
    st_numpy.save_file(fitted_small.get_weights(), str(other), metadata=metadata)
    with pytest.raises(ValueError, match="optimizer state m must hold 60850 values"):
        LeNet5.load(other)
    # ... and loaded without that entry (a model for prediction).
    del metadata["optimizer"]
    st_numpy.save_file(fitted_small.get_weights(), str(other), metadata=metadata)
    assert_same_model(fitted_small, LeNet5.load(other), mnist[1][0][:50])


def test_golden_model_file_of_format_version_1(mnist):
    """A file written by the first format version must load in every later version."""
    _, (x_test, _) = mnist
    with warnings.catch_warnings():
        # Hyperparameters renamed or removed since then are ignored with a warning.
        warnings.simplefilter("ignore", UserWarning)
        model = LeNet5.load(DATA / "model_v1.safetensors")
    assert model.n_iter_ == 1
    assert model.classes_.tolist() == list(range(10))
    expected = np.load(DATA / "model_v1_proba.npy")
    np.testing.assert_allclose(model.predict_proba(x_test[:32]), expected, atol=1e-5)


# ------------------------------------------------------------------ pickle / deepcopy


def schedule(epoch: int, lr: float) -> float:
    return lr / (1 + epoch)


def test_pickle_round_trip(fitted_small, mnist):
    _, (x_test, _) = mnist
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        blob = pickle.dumps(fitted_small, protocol=protocol)
        assert_same_model(fitted_small, pickle.loads(blob), x_test)


def test_pickle_state_is_plain(fitted_small):
    state = fitted_small.__getstate__()
    allowed = (type(None), bool, int, float, str, list, dict, tuple, np.ndarray)

    def walk(value):
        assert isinstance(value, allowed), type(value)
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(state)
    assert "_net" not in state


def test_deepcopy_is_independent(fitted_small, mnist):
    (x, y), (x_test, _) = mnist
    twin = copy.deepcopy(fitted_small)
    assert_same_model(fitted_small, twin, x_test)
    before = fitted_small.get_weights()
    twin.partial_fit(x[:200], y[:200])
    assert weights_equal(fitted_small.get_weights(), before)
    assert twin.n_iter_ == fitted_small.n_iter_ + 1


def test_pickle_keeps_callable_hyperparameters(make_model, mnist):
    (x, y), _ = mnist
    model = make_model(lr_schedule=schedule).fit(x[:200], y[:200])
    again = pickle.loads(pickle.dumps(model))
    assert again.lr_schedule is schedule
    assert copy.deepcopy(model).lr_schedule is schedule


def test_pickle_unfitted(make_model):
    model = make_model(epochs=7)
    again = pickle.loads(pickle.dumps(model))
    assert again.get_params() == model.get_params()
    assert not hasattr(again, "classes_")
    with pytest.raises(NotFittedError):
        again.predict(np.zeros((1, 28, 28), np.uint8))


def test_setstate_validates(fitted_small):
    state = fitted_small.__getstate__()
    model = LeNet5()
    bad_weights = copy.deepcopy(state)
    bad_weights["fitted"]["weights"]["c1.weight"] = np.zeros((6, 1, 5, 4), np.float32)
    with pytest.raises(ValueError, match=r"c1\.weight must have shape"):
        model.__setstate__(bad_weights)
    nan = copy.deepcopy(state)
    nan["fitted"]["weights"]["f6.bias"][3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.__setstate__(nan)
    classes = copy.deepcopy(state)
    classes["fitted"]["classes"] = np.arange(9)
    with pytest.raises(ValueError, match="9 classes but the network has 10"):
        model.__setstate__(classes)
    newer = dict(state, lenet5_state=99)
    with pytest.raises(ValueError, match="newer"):
        model.__setstate__(newer)
    with pytest.raises(ValueError, match="not a LeNet5 state"):
        model.__setstate__({"_weights": {}})
    # Nothing changed on failure.
    assert "_net" not in model.__dict__


def test_setstate_accepts_only_the_attributes_fit_creates(fitted_small, mnist):
    """The pickled attributes are checked by name and type: a state cannot replace a
    method, add an attribute, or put a wrong type where fit puts arrays; the model it
    was applied to is unchanged."""
    _, (x_test, _) = mnist
    state = fitted_small.__getstate__()
    target = copy.deepcopy(fitted_small)
    before = snapshot(target)
    weights = fitted_small.get_weights()
    bad = {
        "predict": len,
        "classes_": np.arange(10),
        "_net": None,
        "my_note": "hello",
        "hessian_diag_": "not a dict",
        "step_sizes_": {"c1.weight": np.zeros(3, np.float32)},
    }
    bad_pixels = [("n_features_in_", v) for v in (5, True, 784.0, "784")]
    for name, value in [*bad.items(), *bad_pixels]:
        hostile = copy.deepcopy(state)
        hostile["attributes"] = {name: value}
        with pytest.raises(ValueError, match="bad LeNet5 state") as info:
            target.__setstate__(hostile)
        assert name in str(info.value)
        assert_same_snapshot(before, snapshot(target))
        assert "predict" not in target.__dict__
        with pytest.raises(ValueError, match="bad LeNet5 state"):
            pickle.loads(pickle.dumps(hostile)) and LeNet5().__setstate__(hostile)
    # Unknown keys of the per-tensor dicts, and arrays of another dtype.
    for value in (
        {"nope": np.zeros(3, np.float32)},
        {"c1.weight": weights["c1.weight"].astype(np.float64)},
    ):
        hostile = copy.deepcopy(state)
        hostile["attributes"] = {"hessian_diag_": value}
        with pytest.raises(ValueError, match="hessian_diag_"):
            LeNet5().__setstate__(hostile)
    # What fit creates is accepted: None, or arrays with the weights' names and shapes.
    good = copy.deepcopy(state)
    good["attributes"] = {
        "hessian_diag_": {k: np.ones_like(v) for k, v in weights.items()},
        "step_sizes_": None,
        "n_features_in_": 784,
    }
    model = LeNet5()
    model.__setstate__(good)
    assert_same_model(fitted_small, model, x_test[:20])
    assert model.hessian_diag_.keys() == weights.keys()
    assert model.step_sizes_ is None
    # An unfitted state may not carry arrays.
    unfitted = LeNet5().__getstate__()
    unfitted["attributes"] = {"hessian_diag_": {"c1.weight": weights["c1.weight"]}}
    with pytest.raises(ValueError, match="hessian_diag_"):
        LeNet5().__setstate__(unfitted)


class _Scaled(LeNet5):
    """A subclass whose fit adds a fitted attribute of its own."""

    def fit(self, x, y):
        self.pixel_max_ = float(np.max(x))
        return super().fit(x, y)


def test_subclass_fitted_attributes_are_carried_and_methods_are_not(mnist):
    (x, y), (x_test, _) = mnist
    model = _Scaled(epochs=1, random_state=0, verbose=0).fit(x[:100], y[:100])
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is _Scaled
    assert again.pixel_max_ == 255.0
    assert_same_model(model, again, x_test[:10])
    state = model.__getstate__()
    for name in ("predict", "fit", "_private_", "classes_", "epochs", "not an identifier_"):
        hostile = copy.deepcopy(state)
        hostile["attributes"] = {name: len}
        with pytest.raises(ValueError, match="is not one that fit creates"):
            _Scaled().__setstate__(hostile)


def test_pickle_carries_only_what_fit_creates(make_model, mnist):
    (x, y), (x_test, _) = mnist
    model = make_model(optimizer="sdlm").fit(x[:100], y[:100])
    model.my_note = "not carried"
    state = model.__getstate__()
    assert sorted(state["attributes"]) == ["hessian_diag_", "n_features_in_", "step_sizes_"]
    again = pickle.loads(pickle.dumps(model))
    assert not hasattr(again, "my_note")
    assert weights_equal(again.hessian_diag_, model.hessian_diag_)
    assert weights_equal(again.step_sizes_, model.step_sizes_)
    np.testing.assert_array_equal(
        again.predict_proba(x_test[:10]), model.predict_proba(x_test[:10])
    )


class _Unordered(int):
    """An integer label whose ordering fails with something other than TypeError."""

    def __lt__(self, other):
        raise RuntimeError("labels of this kind have no order")

    __gt__ = __le__ = __ge__ = __lt__
    __hash__ = int.__hash__


class _Unequal(str):
    """A string label whose equality fails with something other than TypeError."""

    def __eq__(self, other):
        raise ZeroDivisionError("no equality here")

    __ne__ = __eq__
    __hash__ = str.__hash__


@pytest.mark.parametrize("label", [_Unordered, _Unequal])
def test_labels_whose_comparison_fails_give_a_clear_error(label, make_model, mnist):
    (x, y), _ = mnist
    labels = np.empty(40, dtype=object)
    labels[:] = [label(v) for v in y[:40]]
    model = make_model()
    for fit in (model.fit, model.partial_fit):
        with pytest.raises(TypeError, match="y holds labels whose comparison fails"):
            fit(x[:40], labels)
        assert not hasattr(model, "classes_")
    # partial_fit on a fitted model maps the labels onto its classes_.
    plain = np.array([label.__mro__[1](v) for v in y[:40]])  # the same labels as int or str
    fitted = make_model().fit(x[:40], plain)
    before = snapshot(fitted)
    with pytest.raises(TypeError, match="y holds labels whose comparison fails"):
        fitted.partial_fit(x[:40], labels)
    assert_same_snapshot(before, snapshot(fitted))
    if label is _Unequal:  # score needs only equality (an order-less label is fine there)
        with pytest.raises(TypeError, match="y holds labels whose comparison fails"):
            fitted.score(x[:40], labels)
    else:
        expected = np.mean(fitted.predict(x[:40]) == plain)
        assert fitted.score(x[:40], labels) == pytest.approx(expected)
    assert_same_snapshot(before, snapshot(fitted))


def test_pickled_classes_whose_comparison_fails_are_refused(fitted_small):
    state = fitted_small.__getstate__()
    classes = np.empty(10, dtype=object)
    classes[:] = [_Unordered(i) for i in range(10)]
    state["fitted"]["classes"] = classes
    with pytest.raises(ValueError, match="cannot be compared"):
        LeNet5().__setstate__(state)


# ------------------------------------------------------------------ refusals


def test_class_labels_too_large_to_store_are_refused_on_save(make_model, mnist, tmp_path):
    """A model file holds at most 16 MiB of class labels (the loader checks the declared
    dtype against that before building the array), so save refuses more."""
    (x, _), _ = mnist
    wide = np.array(["a", "b"], dtype="<U2100000")  # 2 x 8.4 MB
    model = make_model().partial_fit(x[:2], wide, classes=wide)
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="cannot save classes_: 2 classes of dtype <U2100000"):
        model.save(path)
    assert not path.exists()
    narrow = make_model().partial_fit(x[:2], wide.astype("<U1"))
    narrow.save(path)
    assert LeNet5.load(path).classes_.dtype == np.dtype("<U1")


def test_unfitted_model_cannot_be_saved(make_model, tmp_path):
    with pytest.raises(NotFittedError):
        make_model().save(tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


def test_non_json_hyperparameters_are_dropped_with_a_warning(make_model, mnist, tmp_path):
    (x, y), (x_test, _) = mnist
    model = make_model(lr_schedule=schedule, callbacks=[lambda e, logs: None]).fit(
        x[:200], y[:200]
    )
    model.set_params(random_state=np.random.RandomState(0))
    path = tmp_path / "m.safetensors"
    with pytest.warns(UserWarning, match="lr_schedule, callbacks, random_state"):
        model.save(path)
    loaded = LeNet5.load(path)
    defaults = LeNet5().get_params()
    for name in ("lr_schedule", "callbacks", "random_state"):
        assert getattr(loaded, name) == defaults[name]
    assert np.array_equal(loaded.predict_proba(x_test[:20]), model.predict_proba(x_test[:20]))


def test_invalid_hyperparameters_are_not_saved(fitted, tmp_path):
    fitted.set_params(epochs=0)
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="epochs"):
        fitted.save(path)
    assert not path.exists()


def test_newer_format_version_is_refused(saved, tmp_path):
    version = str(FORMAT_VERSION + 1)
    newer = write_with_metadata(saved, tmp_path / "newer.safetensors", format_version=version)
    with pytest.raises(ValueError, match=f"format_version {version}, newer than this lenet5"):
        LeNet5.load(newer)
    for bad in ("0", "1.0", "", "01", "one", "99999999999999999999"):
        path = write_with_metadata(saved, tmp_path / "bad.safetensors", format_version=bad)
        with pytest.raises(ValueError, match="format_version"):
            LeNet5.load(path)


def test_not_a_lenet5_file(saved, tmp_path, fitted_small):
    bare = tmp_path / "bare.safetensors"
    _lenet5.save_safetensors(str(bare), fitted_small.get_weights(), {})
    with pytest.raises(ValueError, match="no 'format' entry"):
        LeNet5.load(bare)
    other = write_with_metadata(saved, tmp_path / "o.safetensors", format="pt")
    with pytest.raises(ValueError, match="its format is 'pt'"):
        LeNet5.load(other)
    for key in ("architecture", "hyperparameters", "classes", "n_iter"):
        path = write_with_metadata(saved, tmp_path / f"no-{key}.safetensors", **{key: None})
        with pytest.raises(ValueError, match=f"lacks {key}"):
            LeNet5.load(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"c9.weight": "c1.weight"}, "set_weights needs exactly the keys"),
        ({"extra": None}, "unexpected"),
        ({"c1.bias": "drop"}, "missing"),
        ({"f6.weight": "shape"}, r"f6\.weight must have shape \[84, 120\]"),
        ({"output.weight": "shape"}, "output.weight must have shape"),
    ],
)
def test_wrong_tensor_names_and_shapes_are_refused(change, message, saved, tmp_path):
    weights, metadata = _lenet5.load_safetensors(str(saved))
    for name, what in change.items():
        if what is None:
            weights[name] = np.zeros(3, np.float32)
        elif what == "drop":
            del weights[name]
        elif what == "shape":
            weights[name] = np.zeros(weights[name].shape[0] - 1, np.float32)
        else:
            weights[name] = weights.pop(what)
    path = tmp_path / "bad.safetensors"
    _lenet5.save_safetensors(str(path), weights, metadata)
    with pytest.raises(ValueError, match=message):
        LeNet5.load(path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad_header_length_huge", "header length field says 18446744073709551615 bytes"),
        ("bad_header_length_past_end", "header length field says"),
        ("bad_truncated", "outside the data buffer"),
        ("bad_empty", "too short"),
        ("bad_duplicate_tensor", "the header has the key 'c1.bias' twice"),
        ("bad_duplicate_metadata_key", "__metadata__ has the key 'format' twice"),
        ("bad_overlapping_offsets", "overlap"),
        ("bad_huge_shape", "too many elements"),
        ("bad_huge_offsets", "outside the data buffer"),
        ("bad_number_too_big", "too large"),
        ("bad_dtype_f64", "dtype 'F64'"),
        ("bad_nan_weight", r"tensor 'c1\.weight' has a non-finite value \(NaN\) at element 1"),
        ("bad_header_utf8", "not valid UTF-8"),
        ("bad_tensor_name", "set_weights needs exactly the keys"),
        ("bad_not_lenet5", "not a lenet5 model file"),
        ("bad_format_version_3", "newer"),
        ("bad_classes_count", "3 classes but the network has 10"),
        ("bad_hyperparameter", "epochs"),
        ("bad_metadata_json", "not valid JSON"),
        ("bad_architecture", "pooling must be one of"),
    ],
)
def test_hostile_files_are_refused_with_value_error(name, message, tmp_path):
    good = (DATA / "model_v1.safetensors").read_bytes()
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(REGRESSION.bad_files(good)[name])
    with pytest.raises(ValueError, match=message) as info:
        LeNet5.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("classes", '{"dtype":"<i8","values":[3,1,2,4,5,6,7,8,9,10]}', "sorted"),
        ("classes", '{"dtype":"<i8","values":[1,1,2,3,4,5,6,7,8,9]}', "each label once"),
        ("classes", '{"dtype":"O","values":[0,1,2,3,4,5,6,7,8,9]}', "unsupported dtype"),
        ("classes", '{"dtype":"<U1","values":["a","bb","c","d","e","f","g","h","i","j"]}', "fit"),
        ("classes", '{"dtype":"|u1","values":[0,1,2,3,4,5,6,7,8,256]}', "fit"),
        ("classes", '{"dtype":"<i8","values":[0,1,2,3,4,5,6,7,8,true]}', "fit"),
        ("classes", '{"dtype":"<i8"}', "classes must be"),
        ("classes", "[0,1]", "classes must be"),
        ("hyperparameters", '{"epochs": 1, "epochs": 2}', "appears twice"),
        ("hyperparameters", "[1]", "must be a JSON object"),
        ("hyperparameters", '{"learning_rate": "fast"}', "learning_rate"),
        ("hyperparameters", '{"learning_rate": 1e999}', "does not fit a float"),
        ("history", '{"loss": [1, 2], "epoch": [1]}', "different lengths"),
        ("history", '{"loss": ["x"]}', "numbers only"),
        ("best_epoch", "0", "best_epoch"),
        ("n_iter", "-1", "n_iter"),
        ("n_iter", "1e3", "n_iter"),
        ("architecture", '{"n_classes": 9}', "9 classes|10 outputs|output"),
        ("architecture", '{"n_classes": 10, "colour": "red"}', "not supported"),
        ("architecture", '{"n_classes": 10, "pooling": ["sub"]}', "plain value"),
        ("architecture", '{"pooling": "sub"}', "n_classes"),
        ("architecture", "[" * 100_000, "not valid JSON"),
    ],
)
def test_bad_metadata_is_refused(key, value, message, saved, tmp_path):
    path = write_with_metadata(saved, tmp_path / "bad.safetensors", **{key: value})
    with pytest.raises(ValueError, match=message):
        LeNet5.load(path)


def test_unknown_hyperparameters_are_ignored_with_a_warning(saved, tmp_path, fitted_small):
    params = dict(fitted_small.get_params(), colour="red")
    path = write_with_metadata(
        saved, tmp_path / "m.safetensors", hyperparameters=json.dumps(params)
    )
    with pytest.warns(UserWarning, match="colour"):
        loaded = LeNet5.load(path)
    assert loaded.get_params() == fitted_small.get_params()


def test_load_errors_for_paths(tmp_path):
    with pytest.raises(OSError, match="cannot read model file"):
        LeNet5.load(tmp_path / "missing.safetensors")
    with pytest.raises(OSError, match="not a regular file"):
        LeNet5.load(tmp_path)
    with pytest.raises(TypeError):
        LeNet5.load(42)


# ------------------------------------------------------------------ atomic saves


def test_failed_save_keeps_the_previous_file(fitted_small, saved, tmp_path, mnist):
    before = saved.read_bytes()
    with pytest.raises(OSError, match="cannot save model file"):
        fitted_small.save(tmp_path / "no" / "such" / "folder" / "m.safetensors")
    # A folder in the way of the rename: the temporary file is removed.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_bytes(b"x")
    with pytest.raises(OSError, match="cannot save model file"):
        fitted_small.save(tmp_path / "taken")
    assert saved.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "taken"]


def test_save_replaces_an_existing_file(fitted_small, make_model, saved, mnist):
    (x, y), (x_test, _) = mnist
    other = make_model(epochs=1, random_state=5).fit(x[:200], y[:200])
    other.save(saved)
    assert_same_model(other, LeNet5.load(saved), x_test[:20])
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


CHILD = textwrap.dedent(
    """
    import sys
    from lenet5 import LeNet5

    a, b, target = sys.argv[1:4]
    models = [LeNet5.load(a), LeNet5.load(b)]
    print("ready", flush=True)
    i = 0
    while True:
        models[i % 2].save(target)
        i += 1
    """
)


def _wait_for_temporary_file(folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(name.endswith(".tmp") for name in os.listdir(folder)):
            return
    raise AssertionError("the child never started a save")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_save_killed_midway_leaves_the_previous_file(make_model, mnist, tmp_path):
    """A child saves two big models in turn, over and over, and is killed with SIGKILL,
    at random moments or as soon as a save has created its temporary file: the target
    always holds one whole model, never a mix or a partial file, and the temporary file
    a killed save leaves behind is named after the target and removed by the next save
    to that target."""
    (x, y), (x_test, _) = mnist
    # 40,000 classes: a 13 MB file, so a write takes a while.
    classes = np.arange(40_000)
    a = make_model().partial_fit(x[:8], y[:8], classes=classes)
    b = copy.deepcopy(a)
    weights = b.get_weights()
    weights["output.bias"] = weights["output.bias"] + 1.0
    b.set_weights(weights)
    folder = tmp_path / "models"
    folder.mkdir()
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    a.save(paths[0])
    b.save(paths[1])
    expected = [m.get_weights()["output.bias"] for m in (a, b)]
    target = folder / "target.safetensors"
    a.save(target)
    rng = np.random.default_rng(0)
    caught_mid_write = 0
    for trial in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(paths[0]), str(paths[1]), str(target)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            if trial % 2 == 0:
                _wait_for_temporary_file(folder, timeout=30)
                time.sleep(rng.uniform(0, 0.005))
            else:
                time.sleep(rng.uniform(0.01, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
        leftovers = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        if leftovers:
            caught_mid_write += 1
            # Recognisable: named after the target and the killed process.
            pattern = rf"\.target\.safetensors\.lenet5-save-{child.pid}-\d+\.tmp"
            assert all(re.fullmatch(pattern, p.name) for p in leftovers), leftovers
            # The next save to the same target removes them.
            a.save(target)
        assert [p.name for p in folder.iterdir()] == [target.name]
        loaded = LeNet5.load(target)  # never a torn file
        bias = loaded.get_weights()["output.bias"]
        assert any(np.array_equal(bias, e) for e in expected), trial
        if caught_mid_write >= 3 and trial >= 3:
            break
    # The kills did land inside writes (a temporary file was left behind).
    assert caught_mid_write >= 1
    assert LeNet5.load(target).predict_proba(x_test[:5]).shape == (5, 40_000)
    assert os.path.getsize(target) > 13_000_000


# ------------------------------------------------------------------ resuming training exactly

RESUME_CONFIGS = {
    "sgd-cosine": {"optimizer": "sgd"},
    "sgd-nesterov-constant": {"optimizer": "sgd", "nesterov": True, "lr_schedule": "constant"},
    "adam": {"optimizer": "adam", "learning_rate": 1e-3},
    "adamw": {"optimizer": "adamw", "learning_rate": 1e-3},
    "sdlm-paper-schedule": {
        "optimizer": "sdlm",
        "learning_rate": 5e-4,
        "lr_schedule": "paper",
        "batch_size": 16,
    },
    "augment": {"augment": True},
}


def resume_data(mnist):
    (x, y), _ = mnist
    return x[:300], y[:300]


def stop_after(epoch):
    return lambda e, logs: e < epoch


def first_half(params, x, y):
    """Four epochs of the schedule, stopped after the second by a callback."""
    model = LeNet5(epochs=4, random_state=0, verbose=0, callbacks=[stop_after(2)], **params)
    model.fit(x, y)
    assert model.n_iter_ == 2
    return model.set_params(callbacks=None)


def via_file(model, tmp_path, **options):
    path = tmp_path / "half.safetensors"
    model.save(path, **options)
    return LeNet5.load(path)


def second_half(model, x, y):
    return model.set_params(warm_start=True).fit(x, y, initial_epoch=model.n_iter_)


@pytest.mark.parametrize("config", sorted(RESUME_CONFIGS))
def test_resume_after_save_and_load_is_bit_identical(config, mnist, tmp_path):
    x, y = resume_data(mnist)
    params = RESUME_CONFIGS[config]
    full = LeNet5(epochs=4, random_state=0, verbose=0, **params).fit(x, y)
    half = first_half(params, x, y)
    resumed = second_half(via_file(half, tmp_path), x, y)
    assert resumed.n_iter_ == 4
    assert weights_equal(resumed.get_weights(), full.get_weights())
    assert resumed.history_["loss"] == full.history_["loss"]
    assert resumed.history_["learning_rate"] == full.history_["learning_rate"]
    # The same through a pickle, and in memory.
    unpickled = pickle.loads(pickle.dumps(first_half(params, x, y)))
    assert weights_equal(second_half(unpickled, x, y).get_weights(), full.get_weights())
    in_memory = second_half(first_half(params, x, y), x, y)
    assert weights_equal(in_memory.get_weights(), full.get_weights())
    # The test has teeth: without the saved state (a fresh optimizer and random stream)
    # the resumed run differs.
    fresh = second_half(
        via_file(first_half(params, x, y), tmp_path, include_optimizer=False), x, y
    )
    assert fresh.n_iter_ == 4
    assert not weights_equal(fresh.get_weights(), full.get_weights())


def test_warm_start_without_initial_epoch_trains_epochs_more(mnist, tmp_path):
    """With a constant schedule, 2 epochs, save, load and 2 more with warm_start equal
    4 epochs at once; on the cosine schedule the second fit starts a new cosine cycle."""
    x, y = resume_data(mnist)
    params = {"optimizer": "adam", "learning_rate": 1e-3, "random_state": 0, "verbose": 0}
    full = LeNet5(epochs=4, lr_schedule="constant", **params).fit(x, y)
    half = LeNet5(epochs=2, lr_schedule="constant", **params).fit(x, y)
    resumed = via_file(half, tmp_path).set_params(warm_start=True).fit(x, y)
    assert resumed.n_iter_ == 4
    assert weights_equal(resumed.get_weights(), full.get_weights())
    cosine = LeNet5(epochs=4, **params).fit(x, y)
    restarted = first_half({"optimizer": "adam", "learning_rate": 1e-3}, x, y)
    restarted.set_params(warm_start=True).fit(x, y)  # epochs 3-6 at positions 0-3
    assert restarted.n_iter_ == 6
    assert restarted.history_["learning_rate"][2] == cosine.history_["learning_rate"][0]


def test_warm_start_with_other_optimizer_settings_starts_a_fresh_state(mnist, tmp_path):
    x, y = resume_data(mnist)
    half = first_half({"optimizer": "adam", "learning_rate": 1e-3}, x, y)
    loaded = via_file(half, tmp_path)
    changed = copy.deepcopy(loaded).set_params(beta_2=0.99, warm_start=True)
    changed.fit(x, y, initial_epoch=2)
    fresh = via_file(half, tmp_path, include_optimizer=False)
    fresh.set_params(beta_2=0.99, warm_start=True).fit(x, y, initial_epoch=2)
    assert weights_equal(changed.get_weights(), fresh.get_weights())


def test_optimizer_state_in_the_file(fitted_small, saved):
    header, _ = read_raw(saved)
    metadata = header["__metadata__"]
    assert metadata["format_version"] == "2"
    state = json.loads(metadata["optimizer"])
    assert sorted(state) == ["learning_rate", "rng", "settings", "step"]
    assert state["settings"] == ["adam", 0.9, 0.002, False, 0.9, 0.999, 1e-08, 0.02]
    assert state["settings"] == list(fitted_small._optimizer_key)
    assert state["step"] == 3 * -(-4000 // 64)  # three epochs of 63 batches
    assert len(state["rng"]) == 4
    assert all(0 <= w < 2**64 for w in state["rng"])
    n = fitted_small._net.train_state()["m"].shape[0]
    assert header["optimizer.m"]["shape"] == header["optimizer.v"]["shape"] == [n]
    assert "optimizer.h" not in header  # SDLM's only


def test_loaded_model_with_optimizer_state_predicts_as_before(
    fitted_small, saved, mnist, tmp_path
):
    _, (x_test, _) = mnist
    loaded = LeNet5.load(saved)
    weights_only = via_file(fitted_small, tmp_path, include_optimizer=False)
    assert np.array_equal(loaded.predict_proba(x_test), fitted_small.predict_proba(x_test))
    assert np.array_equal(loaded.predict(x_test), weights_only.predict(x_test))
    assert loaded.score(x_test, mnist[1][1]) == fitted_small.score(x_test, mnist[1][1])
    assert loaded.get_params() == fitted_small.get_params() == weights_only.get_params()


def test_sdlm_curvature_comes_back(mnist, tmp_path):
    x, y = resume_data(mnist)
    model = first_half(RESUME_CONFIGS["sdlm-paper-schedule"], x, y)
    for again in (via_file(model, tmp_path), pickle.loads(pickle.dumps(model))):
        assert weights_equal(again.hessian_diag_, model.hessian_diag_)
        assert weights_equal(again.step_sizes_, model.step_sizes_)


def test_get_params_has_no_training_state(fitted_small, saved):
    loaded = LeNet5.load(saved)
    # The same keys and values as the saved model's: the state is fitted, not a parameter.
    assert set(loaded.get_params()) == set(LeNet5().get_params())
    assert loaded.get_params() == fitted_small.get_params()


@pytest.mark.parametrize("bad", [-1, 4, 2.0, True, "2", 10**30])
def test_bad_initial_epoch_is_refused_and_changes_nothing(bad, mnist, fitted):
    x, y = resume_data(mnist)
    fitted.set_params(warm_start=True, epochs=4)
    before = snapshot(fitted)
    state = fitted._net.train_state()
    with pytest.raises(
        ValueError, match=r"initial_epoch must be None or an integer in \[0, epochs\) = \[0, 4\)"
    ):
        fitted.fit(x, y, initial_epoch=bad)
    assert_same_snapshot(before, snapshot(fitted))
    after = fitted._net.train_state()
    assert all(np.array_equal(after[k], state[k]) for k in state)


def state_file(saved, tmp_path, optimizer=None, tensors=None, **metadata):
    """A copy of ``saved`` with its optimizer entry's members changed (None removes one)
    and tensors replaced (None removes one)."""
    weights, meta = _lenet5.load_safetensors(str(saved))
    entry = json.loads(meta["optimizer"])
    for key, value in (optimizer or {}).items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    meta["optimizer"] = json.dumps(entry)
    for name, value in (tensors or {}).items():
        if value is None:
            weights.pop(name, None)
        else:
            weights[name] = value
    for key, value in metadata.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path = tmp_path / "state.safetensors"
    _lenet5.save_safetensors(str(path), weights, meta)
    return path


N_STATE = 60_850


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": {"step": -1}}, "optimizer step must be an integer >= 0"),
        ({"optimizer": {"step": 1.5}}, "optimizer step must be an integer"),
        ({"optimizer": {"step": 2**62}}, "step must be below 2\\*\\*62"),
        ({"optimizer": {"rng": [1, 2, 3]}}, "rng must be four integers"),
        ({"optimizer": {"rng": [0, 0, 0, 2**64]}}, "rng must be four integers"),
        ({"optimizer": {"rng": [0, 0, 0, 0]}}, "must not be all zeros"),
        ({"optimizer": {"rng": [1, 2, 3, True]}}, "rng must be four integers"),
        ({"optimizer": {"learning_rate": 0}}, "learning_rate must be a positive number"),
        (
            {"optimizer": {"learning_rate": 1e300}},
            "learning_rate must be a positive number that float32 holds.*; got 1e300",
        ),
        ({"optimizer": {"learning_rate": "0.1"}}, "learning_rate must be a finite number"),
        (
            {"optimizer": {"settings": ["rmsprop", 0.9, 0, False, 0.9, 0.999, 1e-8, 0.02]}},
            "optimizer must be one of sgd, adam, adamw, sdlm",
        ),
        (
            {"optimizer": {"settings": ["adam", 0.9, 0, 0, 0.9, 0.999, 1e-8, 0.02]}},
            "nesterov must be true or false",
        ),
        (
            {"optimizer": {"settings": ["adam", 0.9, 0, False, 1.5, 0.999, 1e-8, 0.02]}},
            "beta1 must be in \\[0, 1\\)",
        ),
        (
            {"optimizer": {"settings": ["adam", 0.9, 0, False, 0.9, 0.999, None, 0.02]}},
            "epsilon must be a finite number",
        ),
        ({"optimizer": {"settings": ["adam"]}}, "optimizer settings must be"),
        ({"optimizer": {"step": None}}, "exactly the keys settings, step, rng"),
        ({"optimizer": {"extra": 1}}, "exactly the keys settings, step, rng"),
        (
            {"optimizer": {"settings": ["sgd", 0.9, 0, False, 0.9, 0.999, 1e-8, 0.02]}},
            "optimizer state v must hold 0 values for this optimizer and network; got 60850",
        ),
        (
            {"optimizer": {"settings": ["sdlm", 0.9, 0, False, 0.9, 0.999, 1e-8, 0.02]}},
            "optimizer state m must hold 0 values",
        ),
        ({"tensors": {"optimizer.v": None}}, "state v must hold 60850 values .* got 0"),
        ({"tensors": {"optimizer.m": np.zeros(10, np.float32)}}, "m must hold 60850"),
        (
            {"tensors": {"optimizer.m": np.zeros((2, N_STATE // 2), np.float32)}},
            "m must be a 1-D float32 array",
        ),
        (
            {"tensors": {"optimizer.v": -np.ones(N_STATE, np.float32)}},
            "v must hold finite and >= 0 values; element 0 is -1",
        ),
        (
            {"tensors": {"optimizer.h": np.zeros(N_STATE, np.float32)}},
            "optimizer state h must hold 0 values",
        ),
        (
            {"tensors": {"optimizer.x": np.zeros(3, np.float32)}},
            "unknown optimizer state tensors \\['optimizer.x'\\]",
        ),
        ({"format_version": "1"}, "an optimizer entry needs format_version 2"),
    ],
)
def test_hostile_optimizer_state_is_refused(change, message, saved, tmp_path):
    path = state_file(saved, tmp_path, **change)
    with pytest.raises(ValueError, match=message):
        LeNet5.load(path)


def test_optimizer_tensors_without_their_entry_are_refused(saved, tmp_path):
    path = state_file(saved, tmp_path)
    weights, meta = _lenet5.load_safetensors(str(path))
    del meta["optimizer"]
    _lenet5.save_safetensors(str(path), weights, meta)
    with pytest.raises(ValueError, match=r"optimizer state tensors .* but no optimizer metadata"):
        LeNet5.load(path)


def test_optimizer_metadata_json_is_strict(saved, tmp_path):
    for text in ("[", "[1, 2]", '{"step": NaN}', "null"):
        path = write_with_metadata(saved, tmp_path / "j.safetensors", optimizer=text)
        with pytest.raises(ValueError, match="optimizer"):
            LeNet5.load(path)


def test_hostile_pickled_train_state_is_refused_and_changes_nothing(fitted_small, mnist):
    _, (x_test, _) = mnist
    good = fitted_small.__getstate__()
    bad_states = []
    for key, value, message in [
        ("step", -3, "step must be an integer >= 0"),
        ("rng", [0, 0, 0, 0], "all zeros"),
        ("m", np.zeros(5, np.float32), "m must hold 60850 values"),
        ("v", np.full(N_STATE, np.nan, np.float32), "v must hold finite and >= 0 values"),
        ("m", np.zeros(N_STATE, np.float64), "m must be a 1-D float32 array"),
        ("settings", ("adam",), "optimizer settings must be"),
    ]:
        state = copy.deepcopy(good)
        state["fitted"]["train_state"][key] = value
        bad_states.append((state, message))
    for state, message in bad_states:
        model = copy.deepcopy(fitted_small)
        before = snapshot(model)
        with pytest.raises(ValueError, match=message):
            model.__setstate__(state)
        assert_same_snapshot(before, snapshot(model))
    # A pickle without the state (an older lenet5's) loads and predicts.
    state = copy.deepcopy(good)
    del state["fitted"]["train_state"]
    model = LeNet5.__new__(LeNet5)
    model.__setstate__(state)
    assert np.array_equal(model.predict(x_test), fitted_small.predict(x_test))
    assert model._net.train_state() is None


def test_include_optimizer_must_be_a_bool(fitted_small, tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="include_optimizer must be True or False"):
        fitted_small.save(path, include_optimizer="yes")
    assert not path.exists()


@pytest.mark.parametrize(
    ("class_weight", "parity"),
    [({0: 2.0, 3: 0.5}, False), ({"even": 1.5}, True), ({np.int64(1): 3.0}, False)],
)
def test_a_class_weight_dict_is_saved_and_loaded(
    make_model, mnist, tmp_path, class_weight, parity
):
    (x, y), (x_test, _) = mnist
    y = np.where(y[:200] % 2 == 0, "even", "odd") if parity else y[:200]
    model = make_model(class_weight=class_weight).fit(x[:200], y)
    path = tmp_path / "m.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped
        model.save(path)
    loaded = LeNet5.load(path)
    assert loaded.class_weight == class_weight
    assert loaded.get_params() == model.get_params()
    # the loaded model trains on with the same weights of the classes
    model.set_params(warm_start=True)
    loaded.set_params(warm_start=True)
    model.fit(x[:200], y)
    loaded.fit(x[:200], y)
    assert np.array_equal(loaded.predict_proba(x_test[:20]), model.predict_proba(x_test[:20]))


def test_a_malformed_stored_class_weight_is_refused(saved, tmp_path):
    for bad in ([[0]], [[0, 1.0], [0, 2.0]], [[None, 1.0]], [{"0": 1.0}], [[0, "heavy"]]):
        params = json.loads(_lenet5.load_safetensors(str(saved))[1]["hyperparameters"])
        params["class_weight"] = bad
        text = json.dumps(params)
        path = write_with_metadata(saved, tmp_path / "bad.safetensors", hyperparameters=text)
        with pytest.raises(ValueError, match="class_weight"):
            LeNet5.load(path)
