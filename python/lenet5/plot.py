"""Plots of a :class:`~lenet5.LeNet5`: training curves, kernels, feature maps, errors.

matplotlib is an optional dependency, installed with ``pip install 'lenet5-rs[plot]'``; it is
imported when a function of this module is first called, so ``import lenet5.plot`` works
without it.

Every function returns the matplotlib :class:`~matplotlib.figure.Figure` it drew on and
takes an optional ``ax`` (or ``axes`` for the plots made of several panels) to draw into
existing axes; without one it creates a new figure with :mod:`matplotlib.pyplot` (so
``plt.show()`` shows it and Jupyter displays it by itself: end the cell with ``;`` or assign
the result, else Jupyter shows the returned figure a second time).

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from lenet5 import LeNet5, plot
>>> from lenet5.datasets import load_mnist
>>> (x, y), (x_test, y_test) = load_mnist()
>>> model = LeNet5(epochs=2, random_state=0, verbose=0)
>>> model = model.fit(x[:1000], y[:1000], validation_data=(x_test, y_test))
>>> fig = plot.plot_history(model)
>>> fig.savefig("curves.png")  # doctest: +SKIP
>>> plt.close("all")
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._validation import NotFittedError, check_images, check_labels, labels_to_indices

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_confusion_matrix",
    "plot_error_curves",
    "plot_feature_maps",
    "plot_history",
    "plot_kernels",
    "plot_misclassified",
]

#: Panels of :func:`plot_feature_maps`, in the order of its ``axes``.
FEATURE_PANELS = ("input", "c1", "s2", "c3", "s4", "c5", "f6", "output")

# How the 1-D layers are folded into images: C5's 120 units as 8 x 15, F6's 84 as 12 x 7
# (the layout of the paper's RBF prototype bitmaps: 7 wide, 12 tall, row-major).
_FOLD = {"c5": (8, 15), "f6": (12, 7)}

# Tiles per row in the mosaics of feature maps.
_MOSAIC_COLUMNS = {"c1": 6, "s2": 6, "c3": 8, "s4": 8}


def _pyplot() -> Any:
    """matplotlib.pyplot, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "lenet5.plot needs matplotlib, which is not installed; install it with "
            "pip install 'lenet5-rs[plot]' (or pip install matplotlib)"
        ) from err
    return plt


def _colormap(name: str, bad: str = "white") -> Any:
    """The named colormap with NaN (the gaps of a mosaic) drawn in ``bad``."""
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=bad)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    return cast("Figure", _pyplot().figure(figsize=figsize, layout="constrained"))


def _figure_of(ax: Axes) -> Figure:
    """The figure an Axes given by the caller belongs to (returned to the caller)."""
    return cast("Figure", ax.figure)


def _check_fitted(model: Any) -> Any:
    net = getattr(model, "__dict__", {}).get("_net")
    if net is None:
        raise NotFittedError(
            f"This {type(model).__name__} instance is not fitted yet; call fit (or "
            "partial_fit) with training data first."
        )
    return net


def _mosaic(maps: np.ndarray, ncols: int, gap: int = 1) -> np.ndarray:
    """Tiles ``maps`` (m, h, w) in rows of ``ncols``, NaN between and after the tiles."""
    m, h, w = maps.shape
    nrows = math.ceil(m / ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), np.nan)
    for i in range(m):
        r, c = divmod(i, ncols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = maps[i]
    return out


def _tile_ticks(ax: Axes, count: int, size: int, axis: str, gap: int = 1) -> None:
    """Label the centres of ``count`` tiles of ``size`` pixels along ``axis``."""
    centres = [i * (size + gap) + (size - 1) / 2 for i in range(count)]
    if axis == "x":
        ax.set_xticks(centres, [str(i) for i in range(count)])
    else:
        ax.set_yticks(centres, [str(i) for i in range(count)])


def _to_unit(images: np.ndarray) -> np.ndarray:
    """Images as floats in [0, 1] (uint8 divided by 255)."""
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    return images.astype(np.float64)


def _label_text(label: Any) -> str:
    return str(label.item() if isinstance(label, np.generic) else label)


# ---------------------------------------------------------------------- training curves


def plot_history(model: Any, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Training curves: loss and accuracy per epoch, on the training and validation data.

    Parameters
    ----------
    model : LeNet5 or dict
        A fitted model (its ``history_`` is drawn) or a ``history_`` dict itself.
    axes : sequence of two matplotlib Axes, optional
        Where to draw the loss and the accuracy. By default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Validation curves are drawn when the history has validation figures. With early
    stopping, a dotted vertical line marks ``best_epoch_``, the epoch whose weights the
    model kept.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> from lenet5.plot import plot_history
    >>> (x, y), (x_test, y_test) = load_mnist()
    >>> model = LeNet5(epochs=2, random_state=0, verbose=0)
    >>> model = model.fit(x[:500], y[:500], validation_data=(x_test[:200], y_test[:200]))
    >>> fig = plot_history(model)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['loss', 'accuracy']
    >>> plt.close(fig)
    """
    best = None
    if isinstance(model, dict):
        history = model
    else:
        _check_fitted(model)
        history = model.history_
        best = getattr(model, "best_epoch_", None)
    epochs = list(history.get("epoch", []))
    if not epochs:
        raise ValueError("the history has no epochs to plot; fit the model first")
    if axes is None:
        fig = _new_figure((10.0, 4.0))
        loss_ax, acc_ax = fig.subplots(1, 2)
    else:
        if len(axes) != 2:
            raise ValueError(f"axes must be two Axes (loss, accuracy); got {len(axes)}")
        loss_ax, acc_ax = axes
        fig = _figure_of(loss_ax)
    for ax, key, name in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        ax.plot(epochs, history[key], marker="o", label="training")
        val = np.asarray(history.get("val_" + key, []), dtype=np.float64)
        if val.size and not np.isnan(val).all():
            ax.plot(epochs, val, marker="o", label="validation")
        if best is not None:
            ax.axvline(best, color="gray", linestyle=":", label=f"best epoch ({best})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    loss_ax.set_title("Loss (cross-entropy)")
    acc_ax.set_title("Accuracy")
    return fig


def _histories(models: Any) -> list[dict[str, Any]]:
    """The ``history_`` dicts of a model, a history dict, or a list or tuple of either."""
    items = list(models) if isinstance(models, (list, tuple)) else [models]
    if not items:
        raise ValueError("no histories to plot: pass a fitted model, a history_ dict or a list")
    histories = []
    for item in items:
        if isinstance(item, dict):
            histories.append(item)
        else:
            _check_fitted(item)
            histories.append(item.history_)
    for history in histories:
        if not list(history.get("epoch", [])):
            raise ValueError("a history has no epochs to plot; fit the model first")
    return histories


def _error_table(histories: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The epochs of all histories and their error in % (fits x epochs, NaN where missing)."""
    epochs = np.array(sorted({int(e) for h in histories for e in h["epoch"]}))
    column = {e: i for i, e in enumerate(epochs)}
    table = np.full((len(histories), epochs.size), np.nan)
    for row, history in enumerate(histories):
        for epoch, accuracy in zip(history["epoch"], history.get(key, [])):
            table[row, column[int(epoch)]] = 100.0 * (1.0 - float(accuracy))
    return epochs, table


def plot_error_curves(
    models: Any,
    *,
    spread: str = "band",
    marks: Sequence[tuple[str, float, Any]] | None = None,
    validation_label: str = "validation",
    ax: Axes | None = None,
) -> Figure:
    """Training and validation error (%) per epoch of one or several fits, with reference marks.

    Parameters
    ----------
    models : LeNet5, dict, or list of them
        Fitted models or ``history_`` dicts (each with ``"epoch"``, ``"accuracy"`` and,
        for the validation curve, ``"val_accuracy"``), for example one per seed. The
        error is ``100 * (1 - accuracy)``; the training figure is the one measured during
        each epoch.
    spread : {"band", "each"}, default="band"
        How several fits are drawn: ``"band"``, the mean error of every epoch with the
        range of the fits (minimum to maximum) shaded; ``"each"``, one thin line per fit.
    marks : sequence of (label, error, where), optional
        Reference errors in % drawn in black and listed in the legend under ``label``,
        for example published figures. ``where`` is an epoch (a star at that epoch), a
        pair ``(first, last)`` (a dashed segment over those epochs) or None (a dashed
        line across the axes).
    validation_label : str, default="validation"
        Name of the validation curve in the legend (``"test"`` when the validation data
        is a test set).
    ax : matplotlib Axes, optional
        Where to draw. By default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The curves are the Axes' lines labelled ``"training..."`` and
        ``validation_label + "..."`` (the label says how many fits a mean is over); the
        marks follow them, in order.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> from lenet5.plot import plot_error_curves
    >>> (x, y), (x_test, y_test) = load_mnist()
    >>> fits = [
    ...     LeNet5(epochs=2, random_state=seed, verbose=0).fit(
    ...         x[:500], y[:500], validation_data=(x_test[:200], y_test[:200])
    ...     )
    ...     for seed in (0, 1)
    ... ]
    >>> fig = plot_error_curves(
    ...     fits, validation_label="test", marks=[("published test error", 0.95, None)]
    ... )
    >>> [line.get_label() for line in fig.axes[0].get_lines()][1:]
    ['test (mean of 2, range shaded)', 'published test error']
    >>> plt.close(fig)
    """
    if spread not in ("band", "each"):
        raise ValueError(f"spread must be one of 'band', 'each'; got {spread!r}")
    histories = _histories(models)
    checked_marks: list[tuple[str, float, Any]] = []
    for mark in marks or ():
        if not (isinstance(mark, (list, tuple)) and len(mark) == 3):
            raise ValueError(f"a mark must be (label, error, where); got {mark!r}")
        label, error, where = mark
        if where is not None and not (
            isinstance(where, numbers.Real)
            or (isinstance(where, (list, tuple)) and len(where) == 2)
        ):
            raise ValueError(
                f"where of mark {label!r} must be an epoch, (first, last) or None; got {where!r}"
            )
        if not (isinstance(error, numbers.Real) and math.isfinite(error)):
            raise ValueError(f"the error of mark {label!r} must be a finite number; got {error!r}")
        checked_marks.append((str(label), float(error), where))
    if ax is None:
        fig = _new_figure((7.0, 4.5))
        ax = fig.add_subplot()
    else:
        fig = _figure_of(ax)
    n = len(histories)
    drawn: list[Any] = []  # the artists of this call
    for key, name, color in (
        ("accuracy", "training", "C0"),
        ("val_accuracy", validation_label, "C1"),
    ):
        epochs, table = _error_table(histories, key)
        present = ~np.isnan(table)
        if not present.any():
            continue
        if spread == "each" or n == 1:
            label = name if n == 1 else f"{name} ({n} fits)"
            for row, values in zip(present, table):
                drawn += ax.plot(
                    epochs[row],
                    values[row],
                    color=color,
                    linewidth=1.0,
                    alpha=0.8,
                    marker="o",
                    markersize=2.5,
                    label=label,
                )
                label = "_nolegend_"
            continue
        count = present.sum(axis=0)
        shown = count > 0
        mean = np.where(present, table, 0.0).sum(axis=0)[shown] / count[shown]
        low = np.where(present, table, np.inf).min(axis=0)[shown]
        high = np.where(present, table, -np.inf).max(axis=0)[shown]
        drawn.append(
            ax.fill_between(epochs[shown], low, high, color=color, alpha=0.2, linewidth=0)
        )
        drawn += ax.plot(
            epochs[shown],
            mean,
            color=color,
            marker="o",
            markersize=3,
            label=f"{name} (mean of {n}, range shaded)",
        )
    styles = iter(("--", ":", "-.", (0, (5, 2, 1, 2))) * len(checked_marks))
    for label, error, where in checked_marks:
        if where is None:
            drawn.append(
                ax.axhline(
                    error, color="black", linestyle=next(styles), linewidth=1.2, label=label
                )
            )
        elif isinstance(where, numbers.Real):
            drawn += ax.plot(
                [float(where)],
                [error],
                color="black",
                marker="*",
                markersize=12,
                linestyle="none",
                label=label,
            )
        else:
            first, last = where
            drawn += ax.plot(
                [first, last],
                [error, error],
                color="black",
                linestyle=next(styles),
                linewidth=1.5,
                label=label,
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # The error axis starts at 0 and stays autoscaled (for what is drawn later, and for
    # shared axes): 0 joins the data limits, and no margin goes below it.
    if drawn:
        ax.update_datalim([(float(histories[0]["epoch"][0]), 0.0)])
    for artist in drawn:
        artist.sticky_edges.y.append(0.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_title("Error")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


# ---------------------------------------------------------------------- kernels


def plot_kernels(
    model: Any, layer: str = "c1", *, ax: Axes | None = None, cmap: str = "RdBu_r"
) -> Figure:
    """The learnt convolution kernels as images.

    Parameters
    ----------
    model : LeNet5
        A fitted model.
    layer : {"c1", "c3"}, default="c1"
        ``"c1"``: the 6 kernels of C1 side by side. ``"c3"``: the 16 x 6 kernels of C3,
        one column per C3 map and one row per S2 map; the pairs that Table I leaves
        unconnected are blank.
    ax : matplotlib Axes, optional
        Where to draw. By default a new figure.
    cmap : str, default="RdBu_r"
        A diverging colormap; the colour scale is symmetric around 0.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> from lenet5.plot import plot_kernels
    >>> (x, y), _ = load_mnist()
    >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], y[:500])
    >>> fig = plot_kernels(model)
    >>> fig.axes[0].images[0].get_array().shape  # 6 kernels of 5x5, 1 pixel apart
    (5, 35)
    >>> plt.close(fig)
    """
    net = _check_fitted(model)
    if layer not in ("c1", "c3"):
        raise ValueError(f"layer must be one of 'c1', 'c3'; got {layer!r}")
    weights = net.get_weights()[f"{layer}.weight"].astype(np.float64)  # (out, in, 5, 5)
    n_out, n_in = weights.shape[:2]
    if layer == "c1":
        image = _mosaic(weights[:, 0], ncols=n_out)
    else:
        # rows: S2 maps (inputs), columns: C3 maps; unconnected kernels are exactly zero
        tiles = np.transpose(weights, (1, 0, 2, 3)).reshape(n_in * n_out, 5, 5)
        tiles = tiles.copy()
        tiles[~np.any(tiles != 0, axis=(1, 2))] = np.nan
        image = _mosaic(tiles, ncols=n_out)
    if ax is None:
        fig = _new_figure((8.0, 2.2) if layer == "c1" else (9.0, 4.5))
        ax = fig.add_subplot()
    else:
        fig = _figure_of(ax)
    limit = float(np.nanmax(np.abs(image))) or 1.0
    shown = ax.imshow(image, cmap=_colormap(cmap), vmin=-limit, vmax=limit)
    _tile_ticks(ax, n_out, 5, "x")
    if layer == "c1":
        ax.set_yticks([])
        ax.set_xlabel("C1 map")
        ax.set_title("C1 kernels (5 x 5)")
    else:
        _tile_ticks(ax, n_in, 5, "y")
        ax.set_xlabel("C3 map")
        ax.set_ylabel("S2 map")
        ax.set_title("C3 kernels (5 x 5; blank: not connected)")
    ax.tick_params(length=0)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="weight")
    return fig


# ---------------------------------------------------------------------- feature maps


def _one_image(image: Any) -> np.ndarray:
    batch = check_images(image, "image", allow_single=True)
    if batch.shape[0] != 1:
        raise ValueError(
            f"image must be one image; got a batch of {batch.shape[0]} (pass x[i], not x)"
        )
    return batch


def plot_feature_maps(
    model: Any, image: Any, *, axes: Sequence[Axes] | None = None, cmap: str = "RdBu_r"
) -> Figure:
    """The outputs of every layer for one image, from the input to the class probabilities.

    Parameters
    ----------
    model : LeNet5
        A fitted model.
    image : array-like
        One image, in any layout :meth:`~lenet5.LeNet5.predict` accepts (``(28, 28)``,
        ``(784,)`` as a batch of one, ...).
    axes : sequence of 8 matplotlib Axes, optional
        For the panels ``FEATURE_PANELS``: the input, C1, S2, C3, S4, C5 (120 units shown
        as 8 x 15), F6 (84 units shown as 12 x 7, the layout of the RBF prototypes) and
        the class probabilities. By default a new figure.
    cmap : str, default="RdBu_r"
        Colormap of the layer outputs, symmetric around 0 for each layer.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> from lenet5.plot import plot_feature_maps
    >>> (x, y), _ = load_mnist()
    >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], y[:500])
    >>> fig = plot_feature_maps(model, x[0])
    >>> [ax.get_title().split()[0] for ax in fig.axes]
    ['input', 'C1', 'S2', 'C3', 'S4', 'C5', 'F6', 'output']
    >>> plt.close(fig)
    """
    _check_fitted(model)
    batch = _one_image(image)
    acts = {k: np.asarray(v)[0] for k, v in model.activations(batch).items()}
    proba = np.asarray(model.predict_proba(batch))[0]
    if axes is None:
        fig = _new_figure((11.0, 11.0))
        grid = fig.add_gridspec(5, 2, height_ratios=[1.2, 1.0, 0.7, 1.1, 1.0])
        where = {
            "input": grid[0, 0],
            "c1": grid[1, :],
            "s2": grid[2, :],
            "c3": grid[3, 0],
            "s4": grid[3, 1],
            "c5": grid[4, 0],
            "f6": grid[4, 1],
            "output": grid[0, 1],
        }
        # created in panel order, so that fig.axes follows FEATURE_PANELS
        panels = [fig.add_subplot(where[name]) for name in FEATURE_PANELS]
    else:
        if len(axes) != len(FEATURE_PANELS):
            raise ValueError(
                f"axes must be {len(FEATURE_PANELS)} Axes, for {', '.join(FEATURE_PANELS)}; "
                f"got {len(axes)}"
            )
        panels = list(axes)
        fig = _figure_of(panels[0])
    cm = _colormap(cmap)
    for name, ax in zip(FEATURE_PANELS, panels):
        if name == "input":
            ax.imshow(_to_unit(batch[0]), cmap="gray", vmin=0, vmax=1)
            side = batch.shape[1]
            ax.set_title(f"input ({side} x {side})")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if name == "output":
            labels = [_label_text(c) for c in model.classes_]
            colors = ["C1" if i == int(np.argmax(proba)) else "C0" for i in range(len(proba))]
            ax.bar(range(len(proba)), proba, color=colors)
            ax.set_xticks(range(len(proba)), labels, rotation=90 if len(labels) > 12 else 0)
            ax.set_ylim(0, 1)
            ax.set_ylabel("probability")
            predicted = labels[int(np.argmax(proba))]
            ax.set_title(f"output (class probabilities; predicted {predicted})")
            continue
        values = acts[name].astype(np.float64)
        if name in _FOLD:
            image2d = values.reshape(_FOLD[name])
            shape_text = f"{values.shape[0]} units as {_FOLD[name][0]} x {_FOLD[name][1]}"
        else:
            image2d = _mosaic(values, ncols=_MOSAIC_COLUMNS[name])
            maps, h, w = values.shape
            shape_text = f"{maps} maps of {h} x {w}"
        limit = float(np.max(np.abs(values))) or 1.0
        ax.imshow(image2d, cmap=cm, vmin=-limit, vmax=limit)
        ax.set_title(f"{name.upper()} ({shape_text}; |max| {limit:.2f})")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# ---------------------------------------------------------------------- confusion matrix


def _true_and_predicted(model: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (3-D), true class indices and predicted class indices."""
    _check_fitted(model)
    x3 = check_images(x, "x")
    y_arr = check_labels(y, x3.shape[0], "y")
    true = labels_to_indices(y_arr, model.classes_, "y")
    predicted = labels_to_indices(np.asarray(model.predict(x3)), model.classes_, "predictions")
    return x3, true, predicted


def plot_confusion_matrix(
    model: Any,
    x: Any,
    y: Any,
    *,
    normalize: bool = False,
    ax: Axes | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Confusion matrix of the model's predictions on ``x`` against the true labels ``y``.

    Parameters
    ----------
    model : LeNet5
        A fitted model.
    x : array-like
        Images, as for :meth:`~lenet5.LeNet5.predict`.
    y : array-like of shape (n,)
        True labels, among ``model.classes_``.
    normalize : bool, default=False
        Show the fraction of each true class (rows sum to 1) instead of counts.
    ax : matplotlib Axes, optional
        Where to draw. By default a new figure.
    cmap : str, default="Blues"

    Returns
    -------
    matplotlib.figure.Figure
        Rows are the true classes, columns the predicted ones, in the order of
        ``model.classes_``; each cell shows its count (or fraction). The matrix itself is
        the image's data: ``fig.axes[0].images[0].get_array()``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> from lenet5.plot import plot_confusion_matrix
    >>> (x, y), (x_test, y_test) = load_mnist()
    >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], y[:500])
    >>> fig = plot_confusion_matrix(model, x_test[:300], y_test[:300])
    >>> int(fig.axes[0].images[0].get_array().sum())
    300
    >>> plt.close(fig)
    """
    _, true, predicted = _true_and_predicted(model, x, y)
    k = len(model.classes_)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        matrix = counts / np.maximum(rows, 1)
    else:
        matrix = counts.astype(np.float64)
    if ax is None:
        side = min(3.0 + 0.4 * k, 12.0)
        fig = _new_figure((side + 1.0, side))
        ax = fig.add_subplot()
    else:
        fig = _figure_of(ax)
    shown = ax.imshow(matrix, cmap=cmap, vmin=0, vmax=1 if normalize else None)
    labels = [_label_text(c) for c in model.classes_]
    ax.set_xticks(range(k), labels, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.trace(counts)) / max(int(counts.sum()), 1)
    ax.set_title(f"Confusion matrix ({counts.sum():,} images, accuracy {accuracy:.1%})")
    if k <= 30:  # write the values in the cells while they fit
        high = float(matrix.max()) or 1.0
        for i in range(k):
            for j in range(k):
                if counts[i, j] == 0:
                    continue
                text = f"{matrix[i, j]:.2f}" if normalize else str(counts[i, j])
                color = "white" if matrix[i, j] > 0.5 * high else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="fraction" if normalize else "images")
    return fig


# ---------------------------------------------------------------------- misclassified


def plot_misclassified(
    model: Any,
    x: Any,
    y: Any,
    *,
    max_images: int = 20,
    ncols: int = 10,
    axes: Sequence[Axes] | np.ndarray | None = None,
) -> Figure:
    """A grid of the images the model gets wrong, with their true and predicted labels.

    Parameters
    ----------
    model : LeNet5
        A fitted model.
    x : array-like
        Images, as for :meth:`~lenet5.LeNet5.predict`.
    y : array-like of shape (n,)
        True labels, among ``model.classes_``.
    max_images : int, default=20
        At most this many images are shown: the first misclassified ones in the order
        of ``x``.
    ncols : int, default=10
        Images per row of a new figure.
    axes : array of matplotlib Axes, optional
        Where to draw, one image per Axes (the shown count is also limited by their
        number; Axes left over are switched off). By default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Each image has the title ``"true -> predicted"``. When nothing is misclassified,
        the figure says so.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> from lenet5.plot import plot_misclassified
    >>> (x, y), (x_test, y_test) = load_mnist()
    >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], y[:500])
    >>> fig = plot_misclassified(model, x_test, y_test, max_images=8, ncols=4)
    >>> len(fig.axes), "->" in fig.axes[0].get_title()
    (8, True)
    >>> plt.close(fig)
    """
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be a positive integer; got {max_images!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer; got {ncols!r}")
    x3, true, predicted = _true_and_predicted(model, x, y)
    wrong = np.flatnonzero(true != predicted)
    total_wrong = wrong.size
    wrong = wrong[:max_images]
    if axes is None:
        if wrong.size == 0:
            fig = _new_figure((4.0, 1.5))
            ax = fig.add_subplot()
            ax.text(
                0.5,
                0.5,
                f"no misclassified images among {x3.shape[0]:,}",
                ha="center",
                va="center",
            )
            ax.set_axis_off()
            return fig
        cols = min(ncols, wrong.size)
        rows = math.ceil(wrong.size / cols)
        fig = _new_figure((1.2 * cols + 0.4, 1.45 * rows + 0.5))
        grid = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
        panels = list(grid)
    else:
        panels = list(np.ravel(np.asarray(axes, dtype=object)))
        if not panels:
            raise ValueError("axes must hold at least one Axes")
        fig = _figure_of(panels[0])
        wrong = wrong[: len(panels)]
    labels = [_label_text(c) for c in model.classes_]
    for i, ax in enumerate(panels):
        if i >= wrong.size:
            ax.set_axis_off()
            continue
        k = wrong[i]
        ax.imshow(_to_unit(x3[k]), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{labels[true[k]]} -> {labels[predicted[k]]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"Misclassified: {total_wrong:,} of {x3.shape[0]:,} (true -> predicted); "
        f"showing {wrong.size}"
    )
    return fig
