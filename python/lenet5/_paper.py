"""Public helpers for the paper's parts: the RBF prototypes and the training distortions."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _lenet5
from ._params import AUGMENT_DEFAULTS, AUGMENT_LIMITS, seed_sequence
from ._validation import check_float, check_images

__all__ = ["distort", "rbf_bitmaps", "rbf_codes"]


def rbf_bitmaps() -> np.ndarray:
    """The prototypes of the RBF output layer: stylised 7x12 bitmaps of the digits 0-9.

    Returns
    -------
    ndarray of shape (10, 84), float32
        Row ``d`` is the bitmap of digit ``d``, read row by row (12 rows of 7 pixels, the
        order of F6's 84 units): +1 where the stroke is, -1 elsewhere.

    Examples
    --------
    >>> from lenet5 import rbf_bitmaps
    >>> b = rbf_bitmaps()
    >>> b.shape
    (10, 84)
    >>> for row in b[1].reshape(12, 7)[1:10]:
    ...     print("".join("#" if v > 0 else "-" for v in row))
    ---#---
    --##---
    -#-#---
    ---#---
    ---#---
    ---#---
    ---#---
    ---#---
    -#####-
    """
    return np.asarray(_lenet5.rbf_bitmaps(), dtype=np.float32)


def rbf_codes() -> np.ndarray:
    """The prototypes of ``rbf_prototypes="codes"``: distributed codes for the RBF output.

    Rows 1 to 10 of the Paley Hadamard matrix of order 84 (from the quadratic residues
    modulo 83): every code has 42 entries at +1 and 42 at -1, and any two codes differ in
    exactly 42 of F6's 84 units. The stylised bitmaps (:func:`rbf_bitmaps`) are far more
    alike: three quarters of every bitmap is background, and the closest two differ in 6.

    Returns
    -------
    ndarray of shape (10, 84), float32
        Row ``i`` is the prototype of class ``classes_[i]``, values -1 and +1.

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5 import rbf_codes
    >>> c = rbf_codes()
    >>> c.shape, int((c > 0).sum(axis=1)[0])
    ((10, 84), 42)
    >>> bool(np.all(c @ c.T == 84 * np.eye(10)))
    True
    """
    return np.asarray(_lenet5.rbf_codes(), dtype=np.float32)


def distort(
    images: Any,
    random_state: Any = None,
    *,
    translate: float = AUGMENT_DEFAULTS["translate"],
    scale: float = AUGMENT_DEFAULTS["scale"],
    squeeze: float = AUGMENT_DEFAULTS["squeeze"],
    shear: float = AUGMENT_DEFAULTS["shear"],
) -> np.ndarray:
    """Randomly distorted copies of images, as ``LeNet5(augment=...)`` trains on them.

    Each image gets its own random planar affine map (the paper's Section III-C): a
    horizontal and a vertical translation, a change of scale, a squeeze (wider and flatter
    or narrower and taller at the same area) and a horizontal shear, each drawn uniformly
    within its strength, applied about the image centre with bilinear resampling. Pixels
    coming from outside the image are background. The same code distorts the training
    images in Rust during ``fit``.

    Parameters
    ----------
    images : array-like
        Images as :meth:`LeNet5.fit` takes them (uint8 0..255 or floats in [0, 1]; 28x28
        images are first padded to 32x32), or one image of shape (28, 28) or (32, 32).
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None
        Seeds the distortions: the same integer gives the same images. None draws a fresh
        seed.
    translate : float, default=2.0
        Largest shift in pixels, horizontally and vertically, in [0, 16).
    scale : float, default=0.1
        Largest relative change of size (the scale is drawn in [1 - scale, 1 + scale]),
        in [0, 0.9).
    squeeze : float, default=0.1
        Largest squeeze ``q``: the width is multiplied by ``1 + q`` and the height divided
        by it, in [0, 0.9).
    shear : float, default=0.2
        Largest horizontal shear (pixels of horizontal shift per pixel of height), in
        [0, 2).

    Returns
    -------
    ndarray of float32, shape (n, 32, 32), or (32, 32) for a single image
        Values in [0, 1] (0 = background), ready to view (e.g. with ``plt.imshow``) or to
        pass back to ``fit``. With every strength 0 the result is the input, padded.

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5 import distort
    >>> from lenet5.datasets import load_mnist
    >>> (x, y), _ = load_mnist()
    >>> out = distort(x[:4], random_state=0)
    >>> out.shape, out.dtype
    ((4, 32, 32), dtype('float32'))
    >>> bool(np.array_equal(out, distort(x[:4], random_state=0)))
    True
    """
    strengths = {"translate": translate, "scale": scale, "squeeze": squeeze, "shear": shear}
    checked = {
        name: check_float(value, name, low=0.0, high=AUGMENT_LIMITS[name], high_open=True)
        for name, value in strengths.items()
    }
    single = np.ndim(images) == 2
    x3 = check_images(
        images, "images", allow_single=True, item_bytes=32 * 32 * 4, output="the distorted images"
    )
    seed = int(seed_sequence(random_state).generate_state(1, dtype=np.uint64)[0])
    out = np.asarray(_lenet5.distort(x3, seed=seed, **checked), dtype=np.float32)
    return out[0] if single else out
