"""lenet5.datasets.prepare_digit(s): MNIST's preparation of real-world digit images, the
warning for inverted input, and the command line's use of both."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from lenet5 import InvertedInputWarning, LeNet5
from lenet5.datasets import prepare_digit, prepare_digits

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def trained(mnist):
    """The default LeNet5 trained on the 4,000 embedded digits (about 96% test accuracy)."""
    (x, y), _ = mnist
    return LeNet5(random_state=0, verbose=0).fit(x, y)


def render(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A test digit as a photo or a drawing might hold it: enlarged 1.5 to 6 times (by
    Pillow's bicubic filter, not lenet5's), at a random place on a larger canvas of a
    random shape, in either polarity, on paper or screen of any shade, with a little noise."""
    side = round(28 * rng.uniform(1.5, 6.0))
    big = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.clip(np.asarray(big, dtype=np.float64) / 255, 0, 1)
    height, width = side + rng.integers(0, 2 * side, size=2)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    canvas = np.zeros((height, width))
    canvas[top : top + side, left : left + side] = ink
    if rng.random() < 0.5:  # dark ink on light paper
        paper, pen = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25)
    else:
        paper, pen = rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)
    picture = paper + (pen - paper) * canvas + rng.normal(0, 0.01, canvas.shape)
    return np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_rendered_digits_score_as_the_originals(trained, mnist, seed):
    _, (xt, yt) = mnist
    rng = np.random.default_rng(seed)
    canvases = [render(d, rng) for d in xt]
    assert len({c.shape for c in canvases}) > 900  # sizes of every kind
    original = trained.score(xt, yt)
    prepared = trained.score(prepare_digits(canvases), yt)
    # within 1.5 points: at most 15 of the 1,000 test digits (counted, not compared as
    # floats, so that exactly 1.5 points passes)
    assert round(abs(prepared - original) * len(yt)) <= 0.015 * len(yt), (original, prepared)
    # the test can fail: the same canvases merely resized to 28x28 are mostly misread
    resized = np.stack([np.asarray(Image.fromarray(c).resize((28, 28))) for c in canvases])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InvertedInputWarning)
        assert trained.score(resized, yt) < 0.5


# ---------------------------------------------------------------- geometry


def _box(image):
    rows, cols = np.nonzero(image)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def _centre_of_mass(image):
    w = image.astype(np.float64)
    ys, xs = np.indices(image.shape)
    return float((w * ys).sum() / w.sum()), float((w * xs).sum() / w.sum())


@pytest.mark.parametrize(
    ("height", "width", "box"),
    [(60, 24, (20, 8)), (24, 60, (8, 20)), (100, 100, (20, 20)), (7, 3, (20, 9))],
)
def test_bounding_box_fits_20x20_keeping_the_aspect_ratio(height, width, box):
    page = np.zeros((150, 240), dtype=np.uint8)
    page[13 : 13 + height, 101 : 101 + width] = 255  # light ink, off-centre
    digit = prepare_digit(page)
    top, bottom, left, right = _box(digit)
    assert (bottom - top, right - left) == box
    # a uniform rectangle stays uniform inside (only its edge pixels are blended)
    assert (digit[top + 1 : bottom - 1, left + 1 : right - 1] == 255).all()
    cy, cx = _centre_of_mass(digit)
    assert abs(cy - 13.5) <= 0.5
    assert abs(cx - 13.5) <= 0.5


def test_centre_of_mass_not_box_centre_is_centred():
    page = np.zeros((100, 100), dtype=np.uint8)
    page[10:90, 10:20] = 255  # a heavy left bar
    page[10:20, 10:90] = 255  # and a light top bar: the mass sits top left
    digit = prepare_digit(page)
    cy, cx = _centre_of_mass(digit)
    assert abs(cy - 13.5) <= 0.5
    assert abs(cx - 13.5) <= 0.5
    top, _, left, _ = _box(digit)
    assert top > 4
    assert left > 4


def test_the_digit_stays_inside_the_field():
    page = np.zeros((100, 100), dtype=np.uint8)
    page[10:90, 10:13] = 255  # nearly all the mass at the left edge of a wide box
    page[88:90, 10:90] = 255
    digit = prepare_digit(page)
    top, bottom, left, right = _box(digit)
    assert (bottom - top, right - left) == (20, 20)
    assert left >= 0
    assert right <= 28


def test_shrinking_averages_instead_of_aliasing():
    """One-pixel stripes shrunk five times are grey everywhere; picking pixels would give
    black and white stripes."""
    stripes = np.zeros((200, 200), dtype=np.uint8)
    stripes[:, ::2] = 255
    frame = np.zeros((260, 260), dtype=np.uint8)
    frame[30:230, 30:230] = stripes
    digit = prepare_digit(frame)
    inside = digit[6:22, 6:22].astype(np.float64)
    assert abs(inside.mean() - 127.5) < 3
    assert inside.std() < 3


def test_polarity_is_detected_or_forced(mnist):
    _, (xt, _) = mnist
    canvas = np.zeros((90, 120), dtype=np.uint8)
    canvas[20:76, 30:86] = np.asarray(Image.fromarray(xt[3]).resize((56, 56)))
    light_on_dark = prepare_digit(canvas)
    dark_on_light = prepare_digit(255 - canvas)
    np.testing.assert_array_equal(light_on_dark, dark_on_light)
    np.testing.assert_array_equal(prepare_digit(255 - canvas, invert=True), light_on_dark)
    np.testing.assert_array_equal(prepare_digit(canvas, invert=False), light_on_dark)
    assert light_on_dark.max() == 255


def test_colour_transparency_and_floats(mnist):
    _, (xt, _) = mnist
    gray = np.pad(255 - xt[5], 20, constant_values=255)  # dark ink on white
    want = prepare_digit(gray)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(prepare_digit(rgb), want)
    rgba = np.zeros((*gray.shape, 4), dtype=np.uint8)  # black ink on transparent
    rgba[..., 3] = 255 - gray
    np.testing.assert_array_equal(prepare_digit(rgba), want)
    np.testing.assert_array_equal(prepare_digit(gray / 255.0), want)


def test_blank_images_give_zeros():
    assert (prepare_digit(np.full((40, 50), 200, dtype=np.uint8)) == 0).all()
    assert prepare_digits([np.zeros((5, 5)), np.ones((9, 3))]).shape == (2, 28, 28)


def test_prepare_digits_takes_arrays_and_lists_of_any_sizes(mnist):
    _, (xt, _) = mnist
    sizes = [np.pad(d, (i, 2 * i)) for i, d in enumerate(xt[:4])]
    out = prepare_digits(sizes)
    assert out.shape == (4, 28, 28)
    assert out.dtype == np.uint8
    for i, image in enumerate(sizes):
        np.testing.assert_array_equal(out[i], prepare_digit(image))
    np.testing.assert_array_equal(prepare_digits(np.stack([sizes[0]] * 2))[1], out[0])


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (lambda: prepare_digit("digit.png"), TypeError, "image array"),
        (lambda: prepare_digit(np.zeros((4, 4), dtype=bool)), TypeError, "dtype bool"),
        (lambda: prepare_digit(np.zeros((4, 4, 2))), ValueError, r"got shape \(4, 4, 2\)"),
        (lambda: prepare_digit(np.zeros((0, 4))), ValueError, "empty"),
        (lambda: prepare_digit(np.full((4, 4), 300)), ValueError, "outside 0..255"),
        (lambda: prepare_digit(np.full((4, 4), 1.5)), ValueError, r"\[0, 1\]"),
        (lambda: prepare_digit(np.zeros((4, 4)), invert="yes"), TypeError, "invert"),
        (lambda: prepare_digits([np.zeros((4, 4)), "x"]), TypeError, r"images\[1\]"),
        (lambda: prepare_digits(np.zeros((4, 4))), ValueError, "prepare_digit for one"),
        (lambda: prepare_digits([]), ValueError, "empty"),
        (lambda: prepare_digits(7), TypeError, "got int"),
    ],
)
def test_bad_input(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


# ---------------------------------------------------------------- inverted input


def test_inverted_input_warns_in_predict_and_fit(fitted_small, mnist, make_model):
    (x, y), (xt, _) = mnist
    for call in (
        lambda: fitted_small.predict(255 - xt[:50]),
        lambda: fitted_small.predict_proba(1 - xt[:50] / 255.0),
        lambda: fitted_small.score(255 - xt[:50], np.zeros(50)),
        lambda: fitted_small.predict_log_proba(iter([255 - xt[:50]])),
        lambda: make_model().fit(255 - x[:100], y[:100]),
    ):
        with pytest.warns(InvertedInputWarning, match="looks inverted: in 50 of 50|100 of 100"):
            call()
    with pytest.warns(InvertedInputWarning, match=r"\(255 - x\).*prepare_digits"):
        fitted_small.predict(255 - xt[:5])
    with pytest.warns(InvertedInputWarning, match=r"\(1 - x\)"):
        fitted_small.predict(1 - xt[:5] / 255.0)


def test_light_ink_on_dark_and_a_minority_of_inverted_images_do_not_warn(fitted_small, mnist):
    _, (xt, _) = mnist
    mixed = xt[:10].copy()
    mixed[:5] = 255 - mixed[:5]
    with warnings.catch_warnings():
        warnings.simplefilter("error", InvertedInputWarning)
        fitted_small.predict(xt)
        fitted_small.predict(mixed)  # 5 of 10: not most
        fitted_small.predict(np.full((3, 28, 28), 127, dtype=np.uint8))  # grey, not bright


def test_looks_inverted_counts_the_border_pixels():
    from lenet5._prepare import looks_inverted

    rng = np.random.default_rng(4)
    for images, half in (
        (rng.integers(0, 256, (40, 28, 28)).astype(np.uint8), 128),
        ((rng.random((40, 32, 32)) < rng.random((40, 1, 1))).astype(np.float32), 0.5),
    ):
        for one in (images, images[:1]):
            want = []
            for image in one:
                h, w = image.shape
                ring = [image[i, j] for i in range(h) for j in range(w) if i in (0, h - 1)
                        or j in (0, w - 1)]  # fmt: skip
                want.append(sum(v >= half for v in ring) > len(ring) / 2)
            assert looks_inverted(one).tolist() == want


def test_the_native_border_count_counts_as_the_definition():
    from lenet5 import _lenet5

    rng = np.random.default_rng(5)

    def want(images, half):
        count = 0
        for image in images:
            h, w = image.shape
            ring = [image[i, j] for i in range(h) for j in range(w) if i in (0, h - 1)
                    or j in (0, w - 1)]  # fmt: skip
            count += sum(bool(v >= half) for v in ring) * 2 > len(ring)
        return count

    grey = rng.integers(0, 256, (30, 32, 32)).astype(np.uint8)
    fraction = rng.random((30, 1, 1))
    for images, half in (
        (grey, 128),
        (grey[:, 2:30, 2:30], 128),  # a strided view
        ((rng.random((30, 28, 28)) < fraction).astype(np.float32), 0.5),
        ((rng.random((30, 32, 32)) < fraction).astype(np.float64)[:, ::-1], 0.5),
        (np.full((4, 28, 28), 0.5, dtype=np.float32), 0.5),  # exactly half is bright
        (np.full((4, 28, 28), np.nan, dtype=np.float32), 0.5),  # NaN is not bright
        (rng.integers(0, 256, (6, 1, 5)).astype(np.uint8), 128),
        (rng.integers(0, 256, (6, 2, 2)).astype(np.uint8), 128),
    ):
        assert _lenet5.bright_borders(images) == want(images, half)


def test_one_image_takes_the_quick_lane_and_still_checks_its_pixels(fitted_small, mnist):
    _, (xt, _) = mnist
    ones = xt[:20].astype(np.float32) / 255
    expected = fitted_small.predict(list(ones))  # a list: the full checks
    assert [fitted_small.predict(one)[0] for one in ones] == expected.tolist()
    assert np.array_equal(
        fitted_small.predict_proba(ones[:3]), fitted_small.predict_proba(list(ones[:3]))
    )
    bad = ones[0].copy()
    bad[3, 4] = 1.5
    for call in (fitted_small.predict, fitted_small.predict_proba):
        with pytest.raises(ValueError, match=r"^x has float pixel values from 0 to 1.5"):
            call(bad)
    with pytest.warns(InvertedInputWarning, match="in 1 of 1"):
        fitted_small.predict(1 - ones[0])


def test_inverted_input_warning_is_a_user_warning():
    assert issubclass(InvertedInputWarning, UserWarning)


# ---------------------------------------------------------------- command line


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lenet5", "predict", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def trained_file(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("prepared") / "model.safetensors"
    trained.save(path)
    return path


def _labels(result) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [int(line.split()[1]) for line in result.stdout.splitlines()[1:]]


def test_command_line_prepares_image_files(trained, trained_file, mnist, tmp_path):
    _, (xt, yt) = mnist
    rng = np.random.default_rng(5)
    good = np.flatnonzero(trained.predict(xt) == yt)[:12]
    paths = []
    for i in good:
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(render(xt[i], rng)).save(path)
        paths.append(str(path))
    prepared = _labels(_predict(str(trained_file), *paths))
    assert np.mean(np.array(prepared) == yt[good]) >= 11 / 12
    # --no-prepare only pads and resizes: the same files read far worse
    raw = _labels(_predict(str(trained_file), "--no-prepare", *paths))
    assert np.mean(np.array(raw) == yt[good]) < np.mean(np.array(prepared) == yt[good])


def test_command_line_honours_invert_for_npy(trained, trained_file, mnist, tmp_path):
    _, (xt, _) = mnist
    expected = trained.predict(xt[:8]).tolist()
    inverted = tmp_path / "inverted.npy"
    np.save(inverted, 255 - xt[:8])
    assert _labels(_predict(str(trained_file), "--invert", "yes", str(inverted))) == expected
    floats = tmp_path / "floats.npy"
    np.save(floats, 1 - xt[:8] / 255.0)
    assert _labels(_predict(str(trained_file), "--invert", "yes", str(floats))) == expected
    auto = _predict(str(trained_file), str(inverted))
    assert auto.returncode == 0
    assert auto.stderr.strip().splitlines() == [
        "lenet5: warning: the images look inverted (most border pixels are bright), but "
        "MNIST digits are light ink on a dark background; pass --invert yes"
    ]


def test_command_line_prepares_arrays_of_other_sizes(trained, trained_file, mnist, tmp_path):
    _, (xt, _) = mnist
    pages = 255 - np.pad(xt[:6], ((0, 0), (30, 10), (5, 40)))  # (6, 68, 73), dark on light
    path = tmp_path / "pages.npy"
    np.save(path, pages)
    expected = trained.predict(prepare_digits(pages)).tolist()
    assert _labels(_predict(str(trained_file), str(path))) == expected
    one = tmp_path / "one.npy"
    np.save(one, pages[0])
    assert _labels(_predict(str(trained_file), str(one))) == expected[:1]
    refused = _predict(str(trained_file), "--no-prepare", str(path))
    assert refused.returncode == 2
    assert "shape" in refused.stderr
