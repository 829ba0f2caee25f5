"""lenet5.plot: every plot rendered to PNG with Agg and checked for content."""

from __future__ import annotations

import io
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg", force=True)

import matplotlib.image
import matplotlib.pyplot as plt
from lenet5 import LeNet5, NotFittedError, plot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data(mnist):
    (x, y), (xt, yt) = mnist
    return (x[:1000], y[:1000]), (xt[:300], yt[:300])


@pytest.fixture(scope="module")
def model(data):
    """Quickly fitted (2 epochs on 1,000 digits, about 60% accuracy: plenty of errors),
    with validation data and early stopping so that history_ has every curve."""
    (x, y), (xt, yt) = data
    return LeNet5(
        epochs=2,
        optimizer="adam",
        learning_rate=2e-3,
        early_stopping=True,
        random_state=0,
        verbose=0,
        n_jobs=1,
    ).fit(x, y, validation_data=(xt, yt))


def render(fig) -> np.ndarray:
    """The figure as an RGB array in [0, 1], through a PNG file written by Agg."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    buffer.seek(0)
    return matplotlib.image.imread(buffer, format="png")[..., :3]


def assert_not_blank(fig) -> None:
    pixels = render(fig)
    assert pixels.shape[0] > 50
    assert pixels.shape[1] > 50
    assert pixels.var() > 1e-3, "the rendered figure is (almost) uniform"


def test_the_blank_check_detects_a_blank_figure():
    fig = plt.figure()
    assert render(fig).var() < 1e-8
    fig.add_subplot().set_axis_off()
    assert render(fig).var() < 1e-8


# ---------------------------------------------------------------- training curves


def test_plot_history(model):
    fig = plot.plot_history(model)
    assert_not_blank(fig)
    loss_ax, acc_ax = fig.axes
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        np.testing.assert_allclose(lines["training"].get_ydata(), model.history_[key])
        np.testing.assert_allclose(lines["validation"].get_ydata(), model.history_["val_" + key])
        np.testing.assert_array_equal(lines["training"].get_xdata(), model.history_["epoch"])
        assert f"best epoch ({model.best_epoch_})" in lines


def test_plot_history_without_validation_and_from_a_dict(data, model):
    (x, y), _ = data
    plain = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1).fit(x[:200], y[:200])
    fig = plot.plot_history(plain)
    assert_not_blank(fig)
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["training"]
    fig2 = plot.plot_history(model.history_)
    assert len(fig2.axes[0].get_lines()) == 2


def test_plot_history_into_given_axes(model):
    fig, axes = plt.subplots(2, 1)
    assert plot.plot_history(model, axes=axes) is fig
    assert axes[1].get_ylabel() == "accuracy"
    with pytest.raises(ValueError, match="two Axes"):
        plot.plot_history(model, axes=[axes[0]])
    with pytest.raises(ValueError, match="no epochs"):
        plot.plot_history({"epoch": []})


def history(train_errors, test_errors=None, first=1):
    """A history_-like dict from errors in %."""
    epochs = list(range(first, first + len(train_errors)))
    acc = [1 - e / 100 for e in train_errors]
    val = [np.nan] * len(epochs) if test_errors is None else [1 - e / 100 for e in test_errors]
    return {"epoch": epochs, "accuracy": acc, "val_accuracy": val}


def test_plot_error_curves_of_one_model(model):
    fig = plot.plot_error_curves(model)
    assert_not_blank(fig)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines) == ["training", "validation"]
    for key, name in (("accuracy", "training"), ("val_accuracy", "validation")):
        np.testing.assert_allclose(
            lines[name].get_ydata(), 100 * (1 - np.array(model.history_[key]))
        )
        np.testing.assert_array_equal(lines[name].get_xdata(), model.history_["epoch"])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "error (%)")
    assert ax.get_ylim()[0] == 0


def test_plot_error_curves_mean_and_range_of_several_fits():
    fits = [history([10, 5, 4], [8, 6, 5]), history([20, 7, 2], [12, 4, 3])]
    fits.append(history([30, 9], [10, 5]))  # a shorter fit: the third epoch has two
    fig = plot.plot_error_curves(fits, validation_label="test")
    ax = fig.axes[0]
    train, test = ax.get_lines()
    assert train.get_label() == "training (mean of 3, range shaded)"
    assert test.get_label() == "test (mean of 3, range shaded)"
    np.testing.assert_allclose(train.get_ydata(), [20, 7, 3])
    np.testing.assert_allclose(test.get_ydata(), [10, 5, 4])
    bands = ax.collections
    assert len(bands) == 2
    low, high = bands[0].get_paths()[0].get_extents().intervaly
    assert (low, high) == pytest.approx((2, 30))


def test_plot_error_curves_each_fit_and_without_validation():
    fits = [history([10, 5]), history([20, 7]), history([30, 9])]
    fig, ax = plt.subplots()
    assert plot.plot_error_curves(fits, spread="each", ax=ax) is fig
    assert_not_blank(fig)
    lines = ax.get_lines()
    assert len(lines) == 3  # training only: no validation figures
    assert lines[0].get_label() == "training (3 fits)"
    assert {ln.get_label() for ln in lines[1:]} == {"_nolegend_"}
    np.testing.assert_allclose(lines[2].get_ydata(), [30, 9])
    assert not ax.collections


def test_plot_error_curves_marks():
    marks = [
        ("test error 0.95%", 0.95, (10, 20)),
        ("training error 0.35% after 19", 0.35, 19),
        ("with distortions 0.8%", 0.8, None),
    ]
    fig = plot.plot_error_curves(history([3, 2], [2, 1.5]), marks=marks)
    assert_not_blank(fig)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    segment, point, across = (lines[label] for label, _, _ in marks)
    np.testing.assert_allclose(segment.get_xdata(), [10, 20])
    np.testing.assert_allclose(segment.get_ydata(), [0.95, 0.95])
    assert (list(point.get_xdata()), list(point.get_ydata())) == ([19], [0.35])
    assert point.get_marker() == "*"
    np.testing.assert_allclose(across.get_ydata(), [0.8, 0.8])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-3:] == [label for label, _, _ in marks]


def test_plot_error_curves_errors(model):
    with pytest.raises(ValueError, match="spread"):
        plot.plot_error_curves(model, spread="median")
    with pytest.raises(ValueError, match="no histories"):
        plot.plot_error_curves([])
    with pytest.raises(ValueError, match="no epochs"):
        plot.plot_error_curves([model, {"epoch": []}])
    with pytest.raises(ValueError, match="mark must be"):
        plot.plot_error_curves(model, marks=[("paper", 0.95)])
    with pytest.raises(ValueError, match="where of mark"):
        plot.plot_error_curves(model, marks=[("paper", 0.95, "end")])
    with pytest.raises(ValueError, match="finite number"):
        plot.plot_error_curves(model, marks=[("paper", float("nan"), None)])
    with pytest.raises(NotFittedError):
        plot.plot_error_curves([model, LeNet5()])


# ---------------------------------------------------------------- kernels


def test_plot_kernels_c1(model):
    fig = plot.plot_kernels(model)
    assert_not_blank(fig)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (5, 6 * 5 + 5)  # 6 kernels, 1-pixel gaps
    kernels = model.get_weights()["c1.weight"][:, 0]
    for i in range(6):
        np.testing.assert_allclose(image[:, i * 6 : i * 6 + 5], kernels[i], rtol=1e-6)
    gaps = np.asarray(np.ma.getdata(image))[:, 5::6]
    assert np.isnan(gaps).all()
    assert fig.axes[0].get_title().startswith("C1 kernels")


def test_plot_kernels_c3_blanks_the_pairs_table_i_leaves_out(model):
    fig = plot.plot_kernels(model, "c3")
    assert_not_blank(fig)
    image = np.asarray(np.ma.getdata(fig.axes[0].images[0].get_array()))
    assert image.shape == (6 * 6 - 1, 16 * 6 - 1)
    tiles = image.reshape(6 * 6 - 1, 16 * 6 - 1)
    blank = sum(
        np.isnan(tiles[r * 6 : r * 6 + 5, c * 6 : c * 6 + 5]).all()
        for r in range(6)
        for c in range(16)
    )
    assert blank == 96 - 60


def test_plot_kernels_into_an_axes_and_errors(model):
    fig, (a, b) = plt.subplots(1, 2)
    assert plot.plot_kernels(model, ax=b) is fig
    assert b.images
    assert not a.images
    with pytest.raises(ValueError, match="layer"):
        plot.plot_kernels(model, "c5")


# ---------------------------------------------------------------- feature maps


def test_plot_feature_maps(model, data):
    _, (xt, _) = data
    fig = plot.plot_feature_maps(model, xt[0])
    assert_not_blank(fig)
    titles = [ax.get_title().split()[0] for ax in fig.axes]
    assert titles == ["input", "C1", "S2", "C3", "S4", "C5", "F6", "output"]
    acts = model.activations(xt[:1])
    by_name = dict(zip(plot.FEATURE_PANELS, fig.axes))
    c5 = by_name["c5"].images[0].get_array()
    np.testing.assert_allclose(np.ravel(c5), acts["c5"][0], rtol=1e-6)
    f6 = by_name["f6"].images[0].get_array()
    assert f6.shape == (12, 7)
    c1 = np.asarray(np.ma.getdata(by_name["c1"].images[0].get_array()))
    np.testing.assert_allclose(c1[:, :28], acts["c1"][0, 0], rtol=1e-6)
    heights = [p.get_height() for p in by_name["output"].patches]
    np.testing.assert_allclose(heights, model.predict_proba(xt[:1])[0], rtol=1e-6)


def test_plot_feature_maps_accepts_layouts_and_axes(model, data):
    _, (xt, _) = data
    flat = xt[:1].reshape(1, 784).astype(np.float64) / 255
    fig = plt.figure()
    axes = fig.subplots(2, 4).ravel()
    assert plot.plot_feature_maps(model, flat, axes=axes) is fig
    assert_not_blank(fig)
    with pytest.raises(ValueError, match="one image"):
        plot.plot_feature_maps(model, xt[:2])
    with pytest.raises(ValueError, match="8 Axes"):
        plot.plot_feature_maps(model, xt[0], axes=axes[:3])


# ---------------------------------------------------------------- confusion matrix


def test_plot_confusion_matrix(model, data):
    _, (xt, yt) = data
    fig = plot.plot_confusion_matrix(model, xt, yt)
    assert_not_blank(fig)
    ax = fig.axes[0]
    matrix = np.asarray(ax.images[0].get_array())
    assert matrix.shape == (10, 10)
    assert matrix.sum() == len(yt)
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(yt, minlength=10))
    predicted = model.predict(xt)
    np.testing.assert_array_equal(matrix.sum(axis=0), np.bincount(predicted, minlength=10))
    assert np.trace(matrix) == round(model.score(xt, yt) * len(yt))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    cell_texts = {t.get_text() for t in ax.texts}
    assert str(int(matrix.max())) in cell_texts


def test_plot_confusion_matrix_normalized_and_string_labels(data):
    (x, y), (xt, yt) = data
    names = np.array(["zero", "one", "two"])
    keep, keep_t = y < 3, yt < 3
    labelled = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1)
    labelled.fit(x[keep], names[y[keep]])
    fig, ax = plt.subplots()
    assert (
        plot.plot_confusion_matrix(labelled, xt[keep_t], names[yt[keep_t]], normalize=True, ax=ax)
        is fig
    )
    assert_not_blank(fig)
    matrix = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["one", "two", "zero"]
    with pytest.raises(ValueError, match="not among the classes"):
        plot.plot_confusion_matrix(labelled, xt[:5], ["three"] * 5)


# ---------------------------------------------------------------- misclassified


def test_plot_misclassified(model, data):
    _, (xt, yt) = data
    fig = plot.plot_misclassified(model, xt, yt, max_images=12, ncols=6)
    assert_not_blank(fig)
    predicted = model.predict(xt)
    wrong = np.flatnonzero(predicted != yt)
    assert wrong.size >= 12  # the fixture model is far from perfect
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 12
    for ax, i in zip(shown, wrong):
        assert ax.get_title() == f"{yt[i]} -> {predicted[i]}"
        np.testing.assert_allclose(ax.images[0].get_array(), xt[i] / 255.0)
    assert f"{wrong.size} of {len(yt)}" in fig.get_suptitle()


def test_plot_misclassified_into_axes_and_when_all_correct(model, data):
    _, (xt, yt) = data
    fig, axes = plt.subplots(2, 3)
    assert plot.plot_misclassified(model, xt, yt, axes=axes) is fig
    assert sum(bool(ax.images) for ax in axes.ravel()) == 6
    right = model.predict(xt) == yt
    fig2 = plot.plot_misclassified(model, xt[right], yt[right])
    assert_not_blank(fig2)
    assert "no misclassified images" in fig2.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="max_images"):
        plot.plot_misclassified(model, xt, yt, max_images=0)


# ---------------------------------------------------------------- shared behaviour

CALLS = {
    "plot_history": lambda m, x, y: plot.plot_history(m),
    "plot_error_curves": lambda m, x, y: plot.plot_error_curves(m),
    "plot_kernels": lambda m, x, y: plot.plot_kernels(m),
    "plot_feature_maps": lambda m, x, y: plot.plot_feature_maps(m, x[0]),
    "plot_confusion_matrix": lambda m, x, y: plot.plot_confusion_matrix(m, x, y),
    "plot_misclassified": lambda m, x, y: plot.plot_misclassified(m, x, y),
}


def test_every_public_function_is_covered():
    assert sorted(CALLS) == sorted(plot.__all__)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_unfitted_model_raises(name, data):
    _, (xt, yt) = data
    with pytest.raises(NotFittedError):
        CALLS[name](LeNet5(), xt, yt)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_returns_a_pyplot_figure(name, model, data):
    _, (xt, yt) = data
    before = set(plt.get_fignums())
    fig = CALLS[name](model, xt, yt)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert set(plt.get_fignums()) - before == {fig.number}  # shown by plt.show()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_missing_matplotlib_gives_a_clear_import_error(name, model, data, monkeypatch):
    _, (xt, yt) = data
    for module in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"lenet5-rs\[plot\]"):
        CALLS[name](model, xt, yt)


def test_importing_the_module_does_not_need_matplotlib():
    import subprocess

    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "import lenet5.plot; print(sorted(lenet5.plot.__all__)[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "plot_confusion_matrix"
