"""``lenet5.distort``: the random planar affine distortions that ``augment`` trains on.

Geometry checks are independent of the implementation: the identity must return the padded
input; a pure translation must equal the input shifted (by whole pixels it is the shifted array;
by a fraction, the bilinear blend of the four neighbouring whole-pixel shifts, computed here).
The translation drawn for an image is read off a one-pixel impulse distorted with the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from lenet5 import distort
from lenet5.datasets import load_mnist

ZERO = {"translate": 0.0, "scale": 0.0, "squeeze": 0.0, "shear": 0.0}


@pytest.fixture(scope="module")
def digits():
    (x, _), _ = load_mnist()
    return x[:16]


def padded(x_uint8):
    return np.pad(x_uint8.astype(np.float64) / 255.0, ((0, 0), (2, 2), (2, 2)))


def shift_whole(img, dx, dy):
    """out[y, x] = img[y - dy, x - dx], background (0) where that falls outside."""
    out = np.zeros_like(img)
    h, w = img.shape
    ys, xs = slice(max(dy, 0), min(h + dy, h)), slice(max(dx, 0), min(w + dx, w))
    yt, xt = slice(max(-dy, 0), min(h - dy, h)), slice(max(-dx, 0), min(w - dx, w))
    out[ys, xs] = img[yt, xt]
    return out


def shift_bilinear(img, tx, ty):
    """The image translated by (tx, ty) pixels with bilinear resampling: a blend of the four
    whole-pixel shifts around (tx, ty)."""
    x0, y0 = int(np.floor(tx)), int(np.floor(ty))
    fx, fy = tx - x0, ty - y0
    return (
        (1 - fx) * (1 - fy) * shift_whole(img, x0, y0)
        + fx * (1 - fy) * shift_whole(img, x0 + 1, y0)
        + (1 - fx) * fy * shift_whole(img, x0, y0 + 1)
        + fx * fy * shift_whole(img, x0 + 1, y0 + 1)
    )


def drawn_translation(seed, translate):
    """The (tx, ty) that ``distort`` draws for image 0 with this seed: the centre of mass of
    a distorted impulse minus its position."""
    impulse = np.zeros((1, 32, 32), dtype=np.float64)
    impulse[0, 14, 17] = 1.0
    out = distort(impulse, random_state=seed, **{**ZERO, "translate": translate})[0]
    out = out.astype(np.float64)
    ys, xs = np.mgrid[0:32, 0:32]
    total = out.sum()
    assert total == pytest.approx(1.0, abs=1e-5)  # nothing left the image
    return (xs * out).sum() / total - 17, (ys * out).sum() / total - 14


def test_identity_returns_the_padded_input(digits):
    out = distort(digits, random_state=0, **ZERO)
    assert out.shape == (16, 32, 32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, padded(digits), atol=1e-6)
    floats = digits.astype(np.float32) / 255
    np.testing.assert_allclose(distort(floats, random_state=3, **ZERO), padded(digits), atol=1e-6)
    single = distort(digits[0], random_state=1, **ZERO)
    assert single.shape == (32, 32)
    np.testing.assert_allclose(single, padded(digits[:1])[0], atol=1e-6)


def test_whole_pixel_shifts_are_shifted_arrays():
    # The helper that the translation test relies on, checked on its own.
    img = np.arange(32 * 32, dtype=np.float64).reshape(32, 32)
    assert shift_whole(img, 2, -1)[5, 7] == img[6, 5]
    assert shift_whole(img, 2, -1)[31, 0] == 0
    np.testing.assert_array_equal(shift_bilinear(img, 3.0, -2.0), shift_whole(img, 3, -2))


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_pure_translation_equals_the_shifted_image(digits, seed):
    tx, ty = drawn_translation(seed, translate=3.0)
    assert abs(tx) <= 3
    assert abs(ty) <= 3
    assert (tx, ty) != (0.0, 0.0)
    out = distort(digits[5:6], random_state=seed, **{**ZERO, "translate": 3.0})[0]
    expected = shift_bilinear(padded(digits[5:6])[0], tx, ty)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    # the nearest whole-pixel shift is a different image (the test sees sub-pixel errors)
    nearest = shift_whole(padded(digits[5:6])[0], round(tx), round(ty))
    assert np.abs(out - nearest).max() > 1e-3


def test_same_seed_same_images_and_different_seeds_differ(digits):
    a = distort(digits, random_state=42)
    b = distort(digits, random_state=42)
    np.testing.assert_array_equal(a, b)
    c = distort(digits, random_state=43)
    assert np.abs(a - c).max() > 0.1
    assert np.all((a >= 0) & (a <= 1))
    # every image gets its own distortion, not one shared by the batch
    twice = distort(np.repeat(digits[:1], 2, axis=0), random_state=42)
    assert np.abs(twice[0] - twice[1]).max() > 0.1
    rng_a = distort(digits, random_state=np.random.default_rng(5))
    rng_b = distort(digits, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(rng_a, rng_b)
    assert distort(digits, random_state=None).shape == (16, 32, 32)


def test_distortions_stay_within_their_strengths(digits):
    # Only a translation of at most 1 px: the ink's centre of mass moves by at most ~1 px.
    out = distort(digits, random_state=9, **{**ZERO, "translate": 1.0}).astype(np.float64)
    ys, xs = np.mgrid[0:32, 0:32]
    before = padded(digits)
    for a, b in zip(before, out):
        moved = np.hypot(
            (xs * b).sum() / b.sum() - (xs * a).sum() / a.sum(),
            (ys * b).sum() / b.sum() - (ys * a).sum() / a.sum(),
        )
        assert moved <= np.sqrt(2) + 0.05
    # Scaling alone keeps the ink's centre near the image centre's mapping and changes its
    # spread by at most the strength.
    out = distort(digits, random_state=9, **{**ZERO, "scale": 0.1}).astype(np.float64)
    for a, b in zip(before, out):
        spread_a = np.sqrt(((xs - 15.5) ** 2 * a).sum() / a.sum())
        spread_b = np.sqrt(((xs - 15.5) ** 2 * b).sum() / b.sum())
        assert 0.85 <= spread_b / spread_a <= 1.15


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"translate": -1.0}, r"translate must be a finite number in \[0, 16\)"),
        ({"translate": 16.0}, "translate"),
        ({"scale": 0.95}, r"scale must be a finite number in \[0, 0.9\)"),
        ({"squeeze": float("nan")}, "squeeze"),
        ({"shear": 2.5}, r"shear must be a finite number in \[0, 2\)"),
        ({"shear": "a lot"}, "shear must be a real number"),
        ({"random_state": -1}, "random_state must be"),
    ],
)
def test_bad_strengths_raise_value_error(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        distort(digits, **kwargs)


def test_bad_images_raise(digits):
    with pytest.raises(ValueError, match="images"):
        distort(np.zeros((3, 27, 27)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distort(np.full((1, 28, 28), 2.0))
