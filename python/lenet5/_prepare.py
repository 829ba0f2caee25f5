"""Real-world digit images in MNIST's form, and the check for inverted input.

MNIST's own preparation (LeCun, Cortes and Burges, *The MNIST database*): the digit's
bounding box is scaled to fit a 20x20 box keeping its aspect ratio, with anti-aliasing,
then placed in a 28x28 field so that its centre of mass is at the field's centre.
:func:`prepare_digit` does that for one image of any size and polarity, :func:`prepare_digits`
for many; both take and return NumPy arrays (reading files is the caller's business).

The resampling is separable: each output pixel is a weighted mean of the input pixels
under a triangle filter as wide as one output pixel (two for enlarging, where it is
plain bilinear interpolation), so shrinking averages every input pixel instead of
skipping most of them (no aliasing of thin strokes).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _lenet5

__all__ = [
    "InvertedInputWarning",
    "looks_inverted",
    "prepare_digit",
    "prepare_digits",
    "warn_if_inverted",
]

#: Side of the box the digit's bounding box is scaled to fit, and of the field (MNIST).
BOX = 20
FIELD = 28

#: After the polarity and the background are taken out, pixels below this share of the
#: ink's peak are background (paper texture, sensor noise, JPEG ringing).
NOISE_FLOOR = 0.1


class InvertedInputWarning(UserWarning):
    """Images look like dark ink on a light background, the opposite of MNIST's.

    Issued by ``fit``, ``predict`` and the other methods that take images when most
    images of a batch have a mostly bright border. A subclass of :class:`UserWarning`.

    Examples
    --------
    >>> import warnings
    >>> from lenet5 import InvertedInputWarning, LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> (x, y), _ = load_mnist()
    >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     labels = model.predict(255 - x[:10])  # dark ink on white
    >>> [w.category.__name__ for w in caught]
    ['InvertedInputWarning']
    """


def _border(x3: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels of every image of ``(n, h, w)``, as ``(n, ring)``."""
    return np.concatenate([x3[:, 0, :], x3[:, -1, :], x3[:, 1:-1, 0], x3[:, 1:-1, -1]], axis=1)


def _ring_positions(side: int) -> np.ndarray:
    """Flat positions of the outermost ring of a ``side`` x ``side`` image: the first and
    last rows, then the first and last pixels of the rows between."""
    inner = np.arange(1, side - 1)
    return np.concatenate(
        [
            np.arange(side),
            (side - 1) * side + np.arange(side),
            inner * side,
            inner * side + side - 1,
        ]
    )


# The pixel types the native border count reads (native byte order).
_NATIVE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))

# The ring of each image size the estimator takes (one image's check is one gather).
_RINGS = {side: _ring_positions(side) for side in (28, 32)}


def _bright_half(x3: np.ndarray) -> float:
    """Half the full intensity: 128 for integer pixels, 0.5 for floats."""
    return 128 if x3.dtype.kind in "ui" else 0.5


def looks_inverted(x3: np.ndarray) -> np.ndarray:
    """For each image of ``(n, h, w)`` (uint8 0..255 or floats in [0, 1]), whether more
    than half of its border pixels are bright (at least half the full intensity).

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5._prepare import looks_inverted
    >>> looks_inverted(np.stack([np.zeros((28, 28)), np.ones((28, 28))])).tolist()
    [False, True]
    """
    half = _bright_half(x3)
    h, w = x3.shape[1], x3.shape[2]
    ring = 2 * (h + w) - 4
    if x3.shape[0] == 1:
        return np.array([_one_looks_inverted(x3[0], half)])
    bright = np.count_nonzero(x3[:, :: h - 1] >= half, axis=(1, 2))
    bright += np.count_nonzero(x3[:, 1:-1, :: w - 1] >= half, axis=(1, 2))
    return bright * 2 > ring


def _one_looks_inverted(image: np.ndarray, half: float) -> bool:
    """:func:`looks_inverted` of one image ``(h, w)``, in a few calls (``predict`` of one
    image is fast, and this check is part of it)."""
    h, w = image.shape
    positions = _RINGS.get(h) if h == w else None
    if positions is None:  # another size: the rows and columns of the ring by slicing
        bright = np.count_nonzero(image[:: h - 1] >= half)
        bright += np.count_nonzero(image[1:-1, :: w - 1] >= half)
    else:
        bright = np.count_nonzero(image.reshape(-1)[positions] >= half)
    return bright * 2 > 2 * (h + w) - 4


def warn_if_inverted(x3: np.ndarray, name: str = "x", stacklevel: int = 3) -> None:
    """Warn (:class:`InvertedInputWarning`) when most images of ``x3`` look inverted."""
    n = x3.shape[0]
    if x3.dtype in _NATIVE_DTYPES:
        count = _lenet5.bright_borders(x3)  # one pass over the borders, no temporaries
    elif n == 1:
        count = int(_one_looks_inverted(x3[0], _bright_half(x3)))
    else:
        count = int(np.count_nonzero(looks_inverted(x3)))
    if count * 2 <= n:
        return
    flip = "255 - x" if x3.dtype.kind in "ui" else "1 - x"
    warnings.warn(
        f"{name} looks inverted: in {count} of {n} images most border pixels "
        "are bright, but LeNet5 expects light ink on a dark background, as in MNIST. Invert "
        f"the images ({flip}) or pass them through lenet5.datasets.prepare_digits, which "
        "detects the polarity; silence this with "
        "warnings.simplefilter('ignore', lenet5.InvertedInputWarning).",
        InvertedInputWarning,
        stacklevel=stacklevel,
    )


def _gray(image: Any, name: str) -> np.ndarray:
    """One image as float64 grayscale in [0, 1]: 2-D, or RGB / RGBA in the last axis
    (transparent parts count as white, as on paper)."""
    if isinstance(image, (str, bytes)) or image is None:
        raise TypeError(
            f"{name} must be an image array (height, width), (height, width, 3) or "
            f"(height, width, 4); got {type(image).__name__}"
        )
    arr = np.asarray(image)
    kind = arr.dtype.kind
    if kind not in "uif" or arr.dtype == np.bool_:
        raise TypeError(
            f"{name} must hold integer pixels in 0..255 or floats in [0, 1]; got dtype {arr.dtype}"
        )
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(
            f"{name} must be one image of shape (height, width), (height, width, 3) or "
            f"(height, width, 4); got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    values = arr.astype(np.float64)
    if kind in "ui":
        if values.min() < 0 or values.max() > 255:
            raise ValueError(
                f"{name} has integer pixels outside 0..255 (from {values.min():g} to "
                f"{values.max():g})"
            )
        values /= 255.0
    elif not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{name} must hold finite float pixels in [0, 1]")
    if values.ndim == 3:
        rgb = values[..., :3] @ np.array([0.299, 0.587, 0.114])
        if values.shape[2] == 4:
            alpha = values[..., 3]
            rgb = rgb * alpha + (1.0 - alpha)
        values = rgb
    return values


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` resampling matrix of one axis (rows sum to 1)."""
    scale = n_out / n_in
    support = max(1.0, 1.0 / scale)  # in input pixels, each side of the centre
    centres = (np.arange(n_out) + 0.5) / scale  # output pixel centres in input coordinates
    positions = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(positions[None, :] - centres[:, None]) / support)
    return w / w.sum(axis=1, keepdims=True)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` resampled to ``(height, width)`` (see the module docstring)."""
    return _weights(image.shape[0], height) @ image @ _weights(image.shape[1], width).T


def prepare_digit(image: Any, *, invert: bool | None = None) -> np.ndarray:
    """One digit image of any size as MNIST prepared its digits.

    The image's polarity is made MNIST's (light ink on black): with ``invert=None`` it is
    inverted when the median of its border pixels is light. The background level (that
    median) is then subtracted and the ink stretched to full intensity, pixels below a
    tenth of it dropped as noise. The bounding box of the ink is scaled, keeping its
    aspect ratio and anti-aliased, so that its longer side is 20 pixels, and placed in a
    28x28 field with its centre of mass at the field's centre (moved only as far as the
    digit stays inside the field).

    Parameters
    ----------
    image : array-like
        One image, ``(height, width)`` grayscale or ``(height, width, 3)`` RGB or
        ``(height, width, 4)`` RGBA (transparent parts count as white): integers in
        0..255 or floats in [0, 1], any polarity.
    invert : bool or None, default=None
        True: the image has dark ink on a light background; False: light ink on dark;
        None: decide from the border.

    Returns
    -------
    ndarray of shape (28, 28), uint8
        Light ink on black, as :func:`lenet5.datasets.load_mnist`'s images. An image with
        no ink (a uniform one) gives zeros.

    Raises
    ------
    TypeError
        For something that is not an array of numbers.
    ValueError
        For a wrong shape, an empty image or pixels outside the range.

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5.datasets import prepare_digit
    >>> page = np.full((120, 200), 255, dtype=np.uint8)  # white paper
    >>> page[10:70, 150:174] = 0                          # a black bar in a corner
    >>> digit = prepare_digit(page)
    >>> digit.shape, digit.dtype, int(digit.max())
    ((28, 28), dtype('uint8'), 255)
    >>> rows, cols = np.nonzero(digit)                    # 60x24 scaled to 20x8, centred
    >>> int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1, float(cols.mean()), float(rows.mean())
    (20, 8, 13.5, 13.5)
    """
    if invert is not None and not isinstance(invert, (bool, np.bool_)):
        raise TypeError(f"invert must be True, False or None; got {invert!r:.40}")
    gray = _gray(image, "image")
    ring = _border(gray[None])[0]
    if invert is None:
        invert = bool(np.median(ring) > 0.5)
    if invert:
        gray = 1.0 - gray
        ring = 1.0 - ring
    background = float(np.median(ring))
    peak = float(gray.max())
    out = np.zeros((FIELD, FIELD), dtype=np.uint8)
    if peak - background <= 1e-6:
        return out
    ink = np.clip((gray - background) / (peak - background), 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    box = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = BOX / max(box.shape)
    height = min(BOX, max(1, round(box.shape[0] * scale)))
    width = min(BOX, max(1, round(box.shape[1] * scale)))
    small = np.clip(_resize(box, height, width), 0.0, 1.0)
    mass = small.sum()
    # Centre of mass in pixel-centre coordinates; the field's centre is at 14 - 0.5.
    cy = float((small.sum(axis=1) * np.arange(height)).sum() / mass)
    cx = float((small.sum(axis=0) * np.arange(width)).sum() / mass)
    top = int(np.clip(round(FIELD / 2 - 0.5 - cy), 0, FIELD - height))
    left = int(np.clip(round(FIELD / 2 - 0.5 - cx), 0, FIELD - width))
    out[top : top + height, left : left + width] = np.round(small * 255).astype(np.uint8)
    return out


def prepare_digits(images: Any, *, invert: bool | None = None) -> np.ndarray:
    """Many digit images, each as :func:`prepare_digit` prepares one.

    Parameters
    ----------
    images : array-like or sequence of array-likes
        An array ``(n, height, width)`` (or ``(n, height, width, 3|4)``), or a sequence of
        images of any sizes, each as for :func:`prepare_digit`.
    invert : bool or None, default=None
        As for :func:`prepare_digit`; None decides for each image on its own.

    Returns
    -------
    ndarray of shape (n, 28, 28), uint8

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5.datasets import load_mnist, prepare_digits
    >>> _, (x_test, y_test) = load_mnist()
    >>> paper = 255 - np.pad(x_test[:3], ((0, 0), (10, 30), (40, 5)))  # dark ink, off-centre
    >>> prepare_digits(paper).shape
    (3, 28, 28)
    """
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(
                "images must be an array (n, height, width) or (n, height, width, 3|4), or "
                f"a sequence of images; got an array of shape {images.shape} (use "
                "prepare_digit for one image)"
            )
        items: Sequence[Any] = list(images)
    elif isinstance(images, (list, tuple)):
        items = images
    else:
        raise TypeError(
            "images must be an array (n, height, width) or a list of images; got "
            f"{type(images).__name__}"
        )
    if len(items) == 0:
        raise ValueError("images is empty; at least one image is required")
    out = np.empty((len(items), FIELD, FIELD), dtype=np.uint8)
    for i, image in enumerate(items):
        try:
            out[i] = prepare_digit(image, invert=invert)
        except (TypeError, ValueError) as err:
            raise type(err)(f"images[{i}]: {err}") from err
    return out
