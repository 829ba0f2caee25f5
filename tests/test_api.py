"""The public API of LeNet5: shapes, dtypes, labels, parameters, weights, pickling."""

from __future__ import annotations

import copy
import doctest
import inspect
import pickle
import re
from pathlib import Path

import lenet5
import numpy as np
import pytest
from conftest import assert_same_snapshot, snapshot, weights_equal
from lenet5 import LeNet5, NotFittedError

WEIGHT_SHAPES = {
    "c1.weight": (6, 1, 5, 5),
    "c1.bias": (6,),
    "s2.weight": (6,),
    "s2.bias": (6,),
    "c3.weight": (16, 6, 5, 5),
    "c3.bias": (16,),
    "s4.weight": (16,),
    "s4.bias": (16,),
    "c5.weight": (120, 16, 5, 5),
    "c5.bias": (120,),
    "f6.weight": (84, 120),
    "f6.bias": (84,),
    "output.weight": (10, 84),
    "output.bias": (10,),
}

# Table I of the paper: rows S2 maps 0-5, columns C3 maps 0-15.
TABLE_I = """
X . . . X X X . . X X X X . X X
X X . . . X X X . . X X X X . X
X X X . . . X X X . . X . X X X
. X X X . . X X X X . . X . X X
. . X X X . . X X X X . X X . X
. . . X X X . . X X X X . X X X
"""


def table_i() -> np.ndarray:
    rows = [line.split() for line in TABLE_I.strip().splitlines()]
    return np.array([[c == "X" for c in row] for row in rows])  # (6 inputs, 16 maps)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- basic contract


def test_fit_returns_self_and_sets_fitted_attributes(small, make_model):
    (x, y), _ = small
    model = make_model()
    assert not hasattr(model, "classes_")
    assert model.fit(x, y) is model
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    assert model.n_iter_ == 1
    assert model.n_params_ == 60_850
    assert model.loss_curve_ == model.history_["loss"]
    assert model.validation_scores_ is None
    assert model.best_epoch_ is None


def test_predict_shapes_and_dtypes(fitted_small, mnist):
    _, (xt, _) = mnist
    proba = fitted_small.predict_proba(xt[:37])
    assert proba.shape == (37, 10)
    assert proba.dtype == np.float32
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    pred = fitted_small.predict(xt[:37])
    assert pred.shape == (37,)
    assert pred.dtype == fitted_small.classes_.dtype
    np.testing.assert_array_equal(pred, fitted_small.classes_[proba.argmax(axis=1)])


def test_score_is_accuracy_of_predict(fitted_small, mnist):
    _, (xt, yt) = mnist
    expected = float(np.mean(fitted_small.predict(xt) == yt))
    assert fitted_small.score(xt, yt) == pytest.approx(expected)
    # weighted: only the first half counts
    weights = np.r_[np.ones(500), np.zeros(500)]
    half = float(np.mean(fitted_small.predict(xt[:500]) == yt[:500]))
    assert fitted_small.score(xt, yt, sample_weight=weights) == pytest.approx(half)


def test_score_counts_unknown_labels_as_errors(fitted_small, mnist):
    _, (xt, _) = mnist
    assert fitted_small.score(xt[:20], np.full(20, 42)) == 0.0
    assert fitted_small.score(xt[:20], np.array(["a"] * 20)) == 0.0


def test_single_image_is_a_batch_of_one(fitted_small, mnist):
    _, (xt, _) = mnist
    np.testing.assert_array_equal(fitted_small.predict(xt[0]), fitted_small.predict(xt[:1]))
    np.testing.assert_array_equal(
        fitted_small.predict_proba(xt[0]), fitted_small.predict_proba(xt[:1])
    )


def test_activations_shapes(fitted_small, mnist):
    _, (xt, _) = mnist
    acts = fitted_small.activations(xt[:3])
    shapes = {k: v.shape for k, v in acts.items()}
    assert shapes == {
        "c1": (3, 6, 28, 28),
        "s2": (3, 6, 14, 14),
        "c3": (3, 16, 10, 10),
        "s4": (3, 16, 5, 5),
        "c5": (3, 120),
        "f6": (3, 84),
        "output": (3, 10),
    }
    np.testing.assert_allclose(
        softmax(acts["output"].astype(np.float64)),
        fitted_small.predict_proba(xt[:3]),
        atol=1e-5,
    )


# ---------------------------------------------------------------- input layouts


def test_all_input_layouts_give_the_same_probabilities(fitted_small, mnist):
    _, (xt, _) = mnist
    x = xt[:16]
    reference = fitted_small.predict_proba(x)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))  # background 0, as the network pads
    forms = {
        "flat": x.reshape(16, 784),
        "nchw": x[:, None],
        "nhwc": x[..., None],
        "padded": padded,
        "padded flat": padded.reshape(16, 1024),
        "padded nchw": padded[:, None],
        "fortran": np.asfortranarray(x),
        "strided": np.repeat(x, 2, axis=0)[::2],
        "int64": x.astype(np.int64),
        "big-endian int": x.astype(">i4"),
        "list": x.tolist(),
    }
    for name, form in forms.items():
        np.testing.assert_array_equal(fitted_small.predict_proba(form), reference, err_msg=name)
    floats = {
        "float64": x / 255.0,
        "float32": (x / 255.0).astype(np.float32),
        "big-endian float64": (x / 255.0).astype(">f8"),
        "float16": (x / 255.0).astype(np.float16),
    }
    for name, form in floats.items():
        tol = 2e-3 if name == "float16" else 1e-5
        np.testing.assert_allclose(
            fitted_small.predict_proba(form), reference, atol=tol, err_msg=name
        )


# ---------------------------------------------------------------- labels


def test_string_labels_map_to_classes(small, make_model):
    (x, y), (xt, _) = small
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    model = make_model().fit(x, names[y])
    np.testing.assert_array_equal(model.classes_, np.sort(names))
    pred = model.predict(xt)
    assert set(pred) <= set(names)
    proba = model.predict_proba(xt)
    np.testing.assert_array_equal(pred, model.classes_[proba.argmax(axis=1)])


def test_order_preserving_relabelling_trains_identically(small, make_model):
    """Labels only matter through their sorted order: 0-9, 100-109 and 'd0'-'d9' are the
    same problem, so the same seed must give bit-identical weights."""
    (x, y), (xt, _) = small
    a = make_model().fit(x, y)
    b = make_model().fit(x, y + 100)
    c = make_model().fit(x, np.char.add("d", y.astype(str)))
    d = make_model().fit(x, y.astype(np.float64))
    assert weights_equal(a.get_weights(), b.get_weights())
    assert weights_equal(a.get_weights(), c.get_weights())
    assert weights_equal(a.get_weights(), d.get_weights())
    np.testing.assert_array_equal(a.predict(xt) + 100, b.predict(xt))
    np.testing.assert_array_equal(np.char.add("d", a.predict(xt).astype(str)), c.predict(xt))


def test_two_classes_have_a_smaller_output_layer(small, make_model):
    (x, y), (xt, _) = small
    model = make_model().fit(x, y % 2 == 1)
    np.testing.assert_array_equal(model.classes_, [False, True])
    assert model.get_weights()["output.weight"].shape == (2, 84)
    assert model.n_params_ == 60_850 - 8 * 85
    assert model.predict_proba(xt).shape == (200, 2)


def test_object_labels_from_pandas_style_arrays(small, make_model):
    (x, y), _ = small
    labels = np.array([f"c{v % 3}" for v in y], dtype=object)
    model = make_model().fit(x, labels)
    assert model.classes_.tolist() == ["c0", "c1", "c2"]


# ---------------------------------------------------------------- parameters


def test_get_params_lists_every_init_keyword():
    model = LeNet5(epochs=3, learning_rate=0.05)
    params = model.get_params()
    assert params["epochs"] == 3
    assert params["learning_rate"] == 0.05
    # every keyword of __init__, and nothing else (scikit-learn's contract)
    keywords = set(inspect.signature(LeNet5.__init__).parameters) - {"self"}
    assert set(params) == keywords
    assert {"epochs", "batch_size", "learning_rate", "optimizer", "random_state"} <= keywords
    rebuilt = LeNet5(**params)
    assert rebuilt.get_params() == params


def test_set_params_returns_self_and_rejects_unknown_names():
    model = LeNet5()
    assert model.set_params(epochs=7, verbose=0) is model
    assert model.epochs == 7
    with pytest.raises(ValueError, match="Invalid parameter 'epoch'"):
        model.set_params(verbose=2, epoch=3)
    assert model.verbose == 0  # nothing changed


def test_init_only_stores_parameters():
    model = LeNet5(epochs="not checked yet")
    assert model.epochs == "not checked yet"
    assert all(not k.endswith("_") for k in vars(model))


def test_repr_shows_non_default_parameters():
    assert repr(LeNet5()) == "LeNet5()"
    assert repr(LeNet5(epochs=5, optimizer="adam")) == "LeNet5(epochs=5, optimizer='adam')"
    # preset-able options default to None ("the preset's or the library's value")
    assert repr(LeNet5(epochs=None)) == "LeNet5()"
    assert repr(LeNet5(epochs=20)) == "LeNet5(epochs=20)"


def test_clone_like_round_trip(fitted):
    copy_ = type(fitted)(**fitted.get_params())
    assert copy_.get_params() == fitted.get_params()
    assert not hasattr(copy_, "classes_")


# ---------------------------------------------------------------- not fitted


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: m.predict(x),
        lambda m, x: m.predict_proba(x),
        lambda m, x: m.score(x, np.zeros(len(x))),
        lambda m, x: m.activations(x),
        lambda m, x: m.get_weights(),
        lambda m, x: m.set_weights({}),
        lambda m, x: m.loss_curve_,
    ],
)
def test_not_fitted_error(call, mnist):
    _, (xt, _) = mnist
    model = LeNet5()
    with pytest.raises(NotFittedError, match="not fitted"):
        call(model, xt[:2])
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)
    assert not hasattr(model, "classes_")
    assert not hasattr(model, "loss_curve_")


# ---------------------------------------------------------------- weights


def test_weight_names_shapes_and_table_i(fitted_small):
    weights = fitted_small.get_weights()
    assert {k: v.shape for k, v in weights.items()} == WEIGHT_SHAPES
    assert all(v.dtype == np.float32 for v in weights.values())
    connected = np.abs(weights["c3.weight"]).sum(axis=(2, 3)) != 0  # (16 maps, 6 inputs)
    np.testing.assert_array_equal(connected, table_i().T)
    # Trainable = all entries minus the 36 absent 5x5 kernels of Table I.
    total = sum(v.size for v in weights.values())
    assert total - (96 - 60) * 25 == fitted_small.n_params_ == 60_850


def test_get_weights_returns_copies(fitted):
    weights = fitted.get_weights()
    weights["c1.weight"][...] = 123.0
    assert not np.any(fitted.get_weights()["c1.weight"] == 123.0)


def test_set_weights_zero_network_outputs_softmax_of_bias(fitted, mnist):
    """With every weight and bias 0, each hidden unit outputs f(0) = 0 (scaled tanh), so the
    logits equal the output bias for every image."""
    _, (xt, _) = mnist
    weights = {k: np.zeros_like(v) for k, v in fitted.get_weights().items()}
    bias = np.linspace(-2.0, 3.0, 10).astype(np.float32)
    weights["output.bias"] = bias
    fitted.set_weights(weights)
    proba = fitted.predict_proba(xt[:5])
    np.testing.assert_allclose(proba, np.tile(softmax(bias.astype(np.float64)), (5, 1)), rtol=1e-5)
    assert (fitted.predict(xt[:5]) == 9).all()


@pytest.mark.parametrize(
    ("change", "exc"),
    [
        (lambda w: w.update({"c1.weight": np.zeros((6, 1, 5, 4))}), ValueError),
        (lambda w: w.pop("f6.bias"), ValueError),
        (lambda w: w.update({"extra": np.zeros(3)}), ValueError),
        (lambda w: w["f6.weight"].__setitem__((0, 0), np.nan), ValueError),
    ],
)
def test_set_weights_is_all_or_nothing(fitted, change, exc):
    before = fitted.get_weights()
    weights = fitted.get_weights()
    weights["c1.bias"] = weights["c1.bias"] + 1.0  # a valid change that must not land
    change(weights)
    with pytest.raises(exc):
        fitted.set_weights(weights)
    assert weights_equal(before, fitted.get_weights())


# ---------------------------------------------------------------- pickling


def test_pickle_round_trip_predicts_identically(fitted_small, mnist):
    _, (xt, _) = mnist
    restored = pickle.loads(pickle.dumps(fitted_small))
    assert type(restored) is LeNet5
    assert restored.get_params() == fitted_small.get_params()
    np.testing.assert_array_equal(restored.classes_, fitted_small.classes_)
    assert restored.n_iter_ == fitted_small.n_iter_
    np.testing.assert_equal(restored.history_, fitted_small.history_)  # NaN-aware
    assert weights_equal(restored.get_weights(), fitted_small.get_weights())
    np.testing.assert_array_equal(restored.predict_proba(xt), fitted_small.predict_proba(xt))


def test_pickle_holds_only_plain_data(fitted_small):
    state = fitted_small.__getstate__()
    assert "_net" not in state
    for value in state["fitted"]["weights"].values():
        assert type(value) is np.ndarray


def test_pickled_model_keeps_training(fitted_small, small):
    (x, y), _ = small
    restored = pickle.loads(pickle.dumps(fitted_small))
    restored.partial_fit(x, y)
    assert restored.n_iter_ == fitted_small.n_iter_ + 1
    assert not weights_equal(restored.get_weights(), fitted_small.get_weights())


def test_pickle_unfitted_model():
    model = pickle.loads(pickle.dumps(LeNet5(epochs=3)))
    assert model.epochs == 3
    assert not hasattr(model, "classes_")


def test_deepcopy_is_independent(fitted, small):
    (x, y), _ = small
    before = fitted.get_weights()
    twin = copy.deepcopy(fitted)
    twin.partial_fit(x, y)
    assert weights_equal(before, fitted.get_weights())
    assert fitted.n_iter_ + 1 == twin.n_iter_


# ---------------------------------------------------------------- failed calls


def test_failed_fit_leaves_model_unchanged(fitted, small):
    (x, y), _ = small
    before = snapshot(fitted)
    bad = x.astype(np.float64) / 255
    bad[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.fit(bad, y)
    with pytest.raises(ValueError, match="different lengths"):
        fitted.fit(x, y[:-1])
    with pytest.raises(ValueError, match="validation_data"):
        fitted.fit(x, y, validation_data=(x[:10], np.full(10, 99)))
    fitted.set_params(activation="sigmoid")
    with pytest.raises(ValueError, match="activation must be one of 'tanh', 'relu'"):
        fitted.fit(x, y)
    fitted.set_params(activation=None)
    with pytest.raises(ValueError, match="not among the classes"):
        fitted.partial_fit(x[:10], np.full(10, 11))
    assert_same_snapshot(before, snapshot(fitted))


# ---------------------------------------------------------------- docs


def test_public_names_have_numpydoc_examples():
    names = [
        LeNet5,
        LeNet5.fit,
        LeNet5.partial_fit,
        LeNet5.predict,
        LeNet5.predict_proba,
        LeNet5.score,
        LeNet5.get_params,
        LeNet5.set_params,
        LeNet5.get_weights,
        LeNet5.set_weights,
        LeNet5.activations,
        NotFittedError,
        lenet5.datasets.load_mnist,
        lenet5.datasets.load_fashion_mnist,
        lenet5.datasets.load_idx,
    ]
    for obj in names:
        assert obj.__doc__, obj
        assert "Examples\n" in obj.__doc__, obj


@pytest.mark.parametrize(
    "module",
    [
        "lenet5",
        "lenet5._estimator",
        "lenet5._params",
        "lenet5._training",
        "lenet5._validation",
        "lenet5.datasets",
        "lenet5._progress",
        "lenet5.__main__",
    ],
)
def test_doctests(module, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)  # examples that save files write them here

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests")
def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert float(out[0]) >= 0.9  # the accuracy line


def test_one_image_predictions_follow_every_weight_change():
    # A batch of fewer than one chunk runs image by image from a transposed copy of
    # C5's and F6's weights, kept per parameter snapshot. After training and after
    # set_weights, one image must get what a batch gives it (the batch path never
    # uses that copy), not what the old weights gave.
    (x, y), _ = lenet5.datasets.load_mnist()
    model = lenet5.LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])

    def check() -> np.ndarray:
        one = model.predict_proba(x[:1])[0]
        np.testing.assert_allclose(one, model.predict_proba(x[:64])[0], rtol=0, atol=2e-5)
        return one

    first = check()
    model.partial_fit(x[300:600], y[300:600])
    second = check()
    assert np.abs(second - first).max() > 1e-4
    w = model.get_weights()
    w["c5.weight"] = w["c5.weight"] * 0.5
    w["f6.bias"] = w["f6.bias"] + 0.25
    model.set_weights(w)
    third = check()
    assert np.abs(third - second).max() > 1e-4
    assert (model.predict(x[:1]) == model.predict(x[:64])[:1]).all()
