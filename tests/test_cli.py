"""The command line: ``python -m lenet5 train`` and the ``lenet5`` console script."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from importlib import metadata

import numpy as np
import pytest
from lenet5.__main__ import main


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lenet5", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_train_one_epoch_prints_accuracy_and_wall_time():
    result = run("train", "--epochs", "1", "--seed", "3")
    assert result.returncode == 0, result.stderr
    match = re.search(r"^test accuracy: (\d+\.\d\d)% \((\d+)/1000\)$", result.stdout, re.M)
    assert match, result.stdout
    percent, correct = float(match.group(1)), int(match.group(2))
    assert 0 <= correct <= 1000
    assert percent == pytest.approx(correct / 10, abs=0.006)
    wall = re.search(r"^wall time: (\d+\.\d) s \(training (\d+\.\d) s\)$", result.stdout, re.M)
    assert wall, result.stdout
    assert float(wall.group(1)) >= float(wall.group(2))
    assert "Training LeNet-5 on 4,000 images" in result.stdout
    assert "img/s" in result.stderr  # the progress bar
    assert "Epoch 1/1" in result.stderr


def test_quiet_prints_only_results(tiny_folder, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_folder),
                "--epochs",
                "2",
                "--quiet",
                "--batch-size",
                "32",
                "--learning-rate",
                "0.02",
                "--n-jobs",
                "1",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert re.fullmatch(r"test accuracy: \d+\.\d\d% \(\d+/100\)", lines[0])
    assert lines[1].startswith("wall time: ")
    assert err == ""


def test_same_seed_same_accuracy(tiny_folder, capsys):
    args = ["train", "--data", str(tiny_folder), "--epochs", "1", "--quiet", "--seed", "5"]
    main(args)
    first = capsys.readouterr().out.splitlines()[0]
    main([*args, "--n-jobs", "2"])
    second = capsys.readouterr().out.splitlines()[0]
    assert first == second


def test_help_lists_commands_and_options():
    top = run("--help")
    assert top.returncode == 0
    assert "train" in top.stdout
    sub = run("train", "--help")
    assert sub.returncode == 0
    for option in (
        "--data",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--n-jobs",
        "--seed",
        "--quiet",
    ):
        assert option in sub.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "required"),
        (("fly",), "invalid choice"),
        (("train", "--epochs", "0"), "--epochs: expected a positive integer, got '0'"),
        (("train", "--learning-rate", "fast"), "--learning-rate: expected a positive number"),
        (("train", "--n-jobs", "0"), "--n-jobs"),
        (("train", "--bogus"), "unrecognized arguments: --bogus"),
        (("train", "--data", "/nonexistent/mnist", "--quiet"), "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(args, message):
    result = run(*args, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_data_file_is_one_line(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"")
    result = run("train", "--data", str(tmp_path), "--quiet", timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "truncated" in result.stderr


def test_console_script_is_declared():
    entry_points = metadata.entry_points()
    if hasattr(entry_points, "select"):  # Python 3.10+
        scripts = entry_points.select(group="console_scripts")
    else:
        scripts = entry_points.get("console_scripts", [])
    (entry,) = [e for e in scripts if e.name == "lenet5"]
    assert entry.value == "lenet5.__main__:main"


# ---------------------------------------------------------------- saved models


def save_model(model, path) -> None:
    saver = getattr(model, "save", None)
    if saver is not None:
        saver(str(path))
    else:  # before LeNet5.save was hooked to the model-file module
        from lenet5._persist import save

        save(model, str(path))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, fitted_small):
    """fitted_small saved to a file (about 85% accuracy on the embedded test digits)."""
    path = tmp_path_factory.mktemp("model") / "lenet5.safetensors"
    save_model(fitted_small, path)
    return path


def one_line_error(result, message: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lenet5"), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "summary"])
def test_every_command_has_help(command):
    result = run(command, "--help", timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: lenet5 {command}")
    top = run("--help", timeout=60)
    assert command in top.stdout


def test_train_saves_the_model(tiny_folder, tmp_path, mnist):
    from lenet5 import LeNet5

    path = tmp_path / "m.safetensors"
    result = run(
        "train", "--data", str(tiny_folder), "--epochs", "1", "--n-jobs", "1",
        "--optimizer", "adam", "--learning-rate", "0.001", "--pooling", "max",
        "--save", str(path), "--quiet", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # --quiet: only the results
    accuracy = re.search(r"test accuracy: (\d+\.\d\d)% \((\d+)/100\)", result.stdout)
    loaded = LeNet5.load(path) if hasattr(LeNet5, "load") else _persist_load(path)
    assert loaded.pooling == "max"
    assert loaded.optimizer == "adam"
    assert loaded.n_iter_ == 1
    _, (xt, yt) = mnist
    assert round(loaded.score(xt[:100], yt[:100]) * 100) == int(accuracy.group(2))


def _persist_load(path):
    from lenet5._persist import load

    return load(str(path))


def test_train_says_where_it_saved(tiny_folder, tmp_path):
    path = tmp_path / "m.safetensors"
    result = run(
        "train", "--data", str(tiny_folder), "--epochs", "1", "--save", str(path), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"model saved to {path} (" in result.stdout
    assert path.stat().st_size > 200_000  # 60,850 float32 weights and the metadata


def test_train_checks_the_save_folder_before_training(tmp_path):
    start = time.monotonic()
    result = run("train", "--save", str(tmp_path / "no" / "m.safetensors"), timeout=60)
    one_line_error(result, "does not exist")
    assert "Training" not in result.stdout
    assert time.monotonic() - start < 30
    one_line_error(run("train", "--save", str(tmp_path), timeout=60), "is a folder")


def test_data_and_download_exclude_each_other(tmp_path):
    result = run("train", "--data", str(tmp_path), "--download", timeout=60)
    one_line_error(result, "not allowed with argument")


def test_evaluate_prints_accuracy_and_confusion_matrix(model_file, fitted_small, mnist):
    _, (xt, yt) = mnist
    result = run("evaluate", str(model_file), "--n-jobs", "1", timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    correct = int(np.sum(fitted_small.predict(xt) == yt))
    assert f"accuracy: {correct / 10:.2f}% ({correct:,}/1,000)" in out
    assert "the embedded MNIST subset, test split (1,000 images)" in out
    lines = out.splitlines()
    start = lines.index("confusion matrix (rows: true label, columns: predicted label):")
    header = lines[start + 1].split()
    assert header[-11:] == [*(str(d) for d in range(10)), "total"]
    rows = [line.split() for line in lines[start + 2 : start + 12]]
    matrix = np.array([[int(v.replace(",", "")) for v in row[1:11]] for row in rows])
    assert [row[0] for row in rows] == [str(d) for d in range(10)]
    assert [int(row[11]) for row in rows] == [100] * 10
    expected = np.zeros((10, 10), dtype=int)
    np.add.at(expected, (yt, fitted_small.predict(xt)), 1)
    np.testing.assert_array_equal(matrix, expected)
    assert np.trace(matrix) == correct


def test_evaluate_on_a_folder(model_file, tiny_folder):
    result = run("evaluate", str(model_file), "--data", str(tiny_folder), timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^accuracy: \d+\.\d\d% \(\d+/100\)$", result.stdout, re.M)


def test_predict_npy(model_file, fitted_small, mnist, tmp_path):
    _, (xt, _) = mnist
    batch = tmp_path / "batch.npy"
    np.save(batch, xt[:6])
    single = tmp_path / "single.npy"
    np.save(single, xt[6].astype(np.float32) / 255)
    result = run("predict", str(model_file), str(batch), str(single), timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["input", "label", "probability"]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == [f"{batch}[{i}]" for i in range(6)] + [str(single)]
    proba = fitted_small.predict_proba(xt[:7])
    assert [int(r[1]) for r in rows] == proba.argmax(axis=1).tolist()
    np.testing.assert_allclose([float(r[2]) for r in rows], proba.max(axis=1), atol=6e-5)


def test_predict_all_probabilities(model_file, fitted_small, mnist, tmp_path):
    _, (xt, _) = mnist
    path = tmp_path / "flat.npy"
    np.save(path, xt[:3].reshape(3, 784))
    result = run("predict", str(model_file), str(path), "--all", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["input", "label", *(str(d) for d in range(10))]
    values = np.array([[float(v) for v in line.split()[2:]] for line in lines[1:]])
    np.testing.assert_allclose(values, fitted_small.predict_proba(xt[:3]), atol=6e-5)


def confident_digits(model, xt, yt, count=4):
    """Indices of test digits the model gets right with probability > 0.9."""
    proba = model.predict_proba(xt)
    ok = np.flatnonzero((proba.argmax(axis=1) == yt) & (proba.max(axis=1) > 0.9))
    return ok[:count]


def test_predict_image_files(model_file, fitted_small, mnist, tmp_path):
    image = pytest.importorskip("PIL.Image")
    _, (xt, yt) = mnist
    chosen = confident_digits(fitted_small, xt, yt)
    assert len(chosen) == 4
    paths, expected = [], []
    for k, i in enumerate(chosen):
        digit = xt[i]
        big = image.fromarray(digit, mode="L").resize((84, 84), image.Resampling.BICUBIC)
        if k == 0:  # MNIST-like, PNG
            path = tmp_path / "light-on-dark.png"
            big.save(path)
        elif k == 1:  # dark ink on white paper, colour JPEG
            path = tmp_path / "dark-on-light.jpg"
            image.eval(big, lambda v: 255 - v).convert("RGB").save(path, quality=95)
        elif k == 2:  # black ink on a transparent background
            rgba = image.new("RGBA", (84, 84), (0, 0, 0, 0))
            rgba.putalpha(big)
            path = tmp_path / "transparent.png"
            rgba.save(path)
        else:  # exactly 28x28: used as it is
            path = tmp_path / "mnist-sized.PNG"
            image.fromarray(digit, mode="L").save(path, format="PNG")
        paths.append(str(path))
        expected.append(int(yt[i]))
    result = run("predict", str(model_file), *paths, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == paths
    assert [int(r[1]) for r in rows] == expected


def test_load_image_inverts_light_backgrounds(tmp_path, mnist):
    image = pytest.importorskip("PIL.Image")
    from lenet5.__main__ import load_image

    _, (xt, _) = mnist
    digit = xt[0]
    image.fromarray(255 - digit, mode="L").save(tmp_path / "paper.png")
    image.fromarray(digit, mode="L").save(tmp_path / "screen.png")
    # without the preparation (--no-prepare); with it: test_prepare.py
    raw = functools.partial(load_image, prepare=False)
    np.testing.assert_array_equal(raw(tmp_path / "paper.png"), digit)
    np.testing.assert_array_equal(raw(tmp_path / "screen.png"), digit)
    np.testing.assert_array_equal(raw(tmp_path / "screen.png", "yes"), 255 - digit)
    np.testing.assert_array_equal(raw(tmp_path / "paper.png", "no"), 255 - digit)
    # Not square: padded with the background to a square, then resized.
    wide = np.zeros((28, 56), dtype=np.uint8)
    wide[:, 14:42] = digit
    image.fromarray(wide, mode="L").save(tmp_path / "wide.png")
    loaded = raw(tmp_path / "wide.png")
    assert loaded.shape == (28, 28)
    assert loaded[:7].max() <= 10  # the padding
    assert loaded[-7:].max() <= 10
    assert loaded.max() > 200  # the ink


def test_predict_errors(model_file, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    one_line_error(run("predict", str(model_file), str(not_image), timeout=60), "not an image")
    one_line_error(
        run("predict", str(model_file), str(tmp_path / "none.png"), timeout=60), "does not exist"
    )
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(run("predict", str(model_file), str(pickled), timeout=60), "objects.npy")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 5, 5), dtype=np.uint8))  # (2, 5, 5) would be prepared
    one_line_error(run("predict", str(model_file), str(wrong), timeout=60), "wrong.npy")
    out_of_range = tmp_path / "range.npy"
    np.save(out_of_range, np.full((1, 28, 28), 7.0))
    one_line_error(run("predict", str(model_file), str(out_of_range), timeout=60), "range.npy")
    one_line_error(run("predict", str(model_file), timeout=60), "required")


def npy_header_only(path, shape, descr="|u1") -> None:
    """A .npy file whose header declares ``shape`` but which holds no data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": descr, "fortran_order": False, "shape": shape}
        )


def test_predict_refuses_npy_files_declaring_more_than_they_hold(model_file, tmp_path):
    """A 128-byte .npy declaring 10**12 images: one error line, exit code 2, no
    allocation of the declared size."""
    huge = tmp_path / "big.npy"
    npy_header_only(huge, (10**12, 28, 28))
    assert huge.stat().st_size == 128
    result = run("predict", str(model_file), str(huge), timeout=60)
    one_line_error(result, "big.npy: the header declares shape (1000000000000, 28, 28)")
    assert "holds 0 bytes of data" in result.stderr
    assert result.stdout == ""


def test_predict_reads_npy_files_in_chunks(model_file, fitted_small, mnist, tmp_path):
    """Arrays longer than a chunk (C and Fortran order, flat and 2-D images) give the
    same labels and probabilities as one predict_proba call, in order, with names that
    count across chunks."""
    from lenet5.__main__ import PREDICT_CHUNK

    _, (xt, _) = mnist
    n = PREDICT_CHUNK + 7
    x = np.concatenate([xt] * (n // len(xt) + 1))[:n]
    c_order = tmp_path / "c.npy"
    np.save(c_order, x)
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(x.reshape(n, 784).astype(np.float32) / 255))
    result = run("predict", str(model_file), str(c_order), str(fortran), timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == [f"{c_order}[{i}]" for i in range(n)] + [
        f"{fortran}[{i}]" for i in range(n)
    ]
    proba = fitted_small.predict_proba(x)
    expected = np.concatenate([proba.argmax(axis=1)] * 2)
    assert [int(r[1]) for r in rows] == expected.tolist()
    np.testing.assert_allclose(
        [float(r[2]) for r in rows], np.concatenate([proba.max(axis=1)] * 2), atol=6e-5
    )


def test_predict_checks_every_chunk_before_printing(model_file, tmp_path):
    from lenet5.__main__ import PREDICT_CHUNK

    n = PREDICT_CHUNK + 10
    x = np.zeros((n, 28, 28), np.int16)
    x[-1, 0, 0] = 300  # out of range, in the last chunk
    bad = tmp_path / "bad.npy"
    np.save(bad, x)
    result = run("predict", str(model_file), str(bad), timeout=120)
    one_line_error(result, f"bad.npy[{PREDICT_CHUNK}:{n}] has integer pixel values from 0 to 300")
    assert result.stdout == ""
    wrong = tmp_path / "wrong.npy"
    # (n, 28, 29) images would be prepared as digits of another size; four axes are no
    # images at all
    np.save(wrong, np.zeros((n, 2, 28, 29), np.uint8))
    one_line_error(
        run("predict", str(model_file), str(wrong), timeout=120), f"got shape ({n}, 2, 28, 29)"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_predict_refuses_named_pipes(model_file, tmp_path):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    one_line_error(run("predict", str(model_file), str(fifo), timeout=60), "is not a regular file")


PREDICT_MEMORY_CHILD = """
import contextlib, os, resource, sys
from lenet5.__main__ import main

def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

model, small, big = sys.argv[1:4]
with open(os.devnull, "w") as out, contextlib.redirect_stdout(out):
    assert main(["predict", model, small, "--n-jobs", "1"]) == 0  # warm up
    before = rss_mib()
    assert main(["predict", model, big, "--n-jobs", "1"]) == 0
print(rss_mib() - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_predict_memory_does_not_grow_with_the_npy_file(model_file, mnist, tmp_path):
    """120,000 images (a 94 MB sparse .npy of blank images) are predicted while peak RSS
    grows by less than 40 MiB."""
    _, (xt, _) = mnist
    small = tmp_path / "small.npy"
    np.save(small, xt[:10])
    big = tmp_path / "big.npy"
    n = 120_000
    npy_header_only(big, (n, 28, 28))
    with open(big, "r+b") as f:
        f.truncate(128 + n * 784)
    out = subprocess.run(
        [sys.executable, "-c", PREDICT_MEMORY_CHILD, str(model_file), str(small), str(big)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert float(out.stdout) < 40, out.stdout


def test_predict_images_without_pillow(model_file, tmp_path):
    """Without Pillow, image files are a one-line error naming the extra to install."""
    blocker = tmp_path / "blocker" / "PIL"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named PIL')\n")
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    path = os.pathsep.join(p for p in (str(blocker.parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "lenet5", "predict", str(model_file), str(image)],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    one_line_error(result, "pip install 'lenet5-rs[image]'")


def test_summary_of_a_saved_model(model_file):
    result = run("summary", str(model_file), timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"model file: {model_file} (" in out
    assert "classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in out
    assert "epochs trained: 3" in out
    assert "C3" in out
    assert "60,850" in out


@pytest.mark.parametrize("command", ["evaluate", "summary", "predict"])
def test_bad_model_files_are_one_line(command, tmp_path, mnist):
    extra = []
    if command == "predict":
        extra = [str(tmp_path / "x.npy")]
        np.save(extra[0], mnist[1][0][:1])
    one_line_error(
        run(command, str(tmp_path / "missing.safetensors"), *extra, timeout=60), "does not exist"
    )
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    one_line_error(run(command, str(garbage), *extra, timeout=60), "garbage.safetensors")
    one_line_error(run(command, str(tmp_path), *extra, timeout=60), "is a folder")


def test_download_option_uses_the_verified_cache(model_file, tmp_path):
    """--download reads $LENET5_DATA/mnist and checks the published sha256 before any
    download: a cache holding other files (here the embedded subset) is refused in one
    line, without touching the network."""
    import shutil
    from importlib import resources

    cache = tmp_path / "data" / "mnist"
    shutil.copytree(str(resources.files("lenet5") / "data" / "mnist-5k"), cache)
    env = {**os.environ, "LENET5_DATA": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "lenet5", "evaluate", str(model_file), "--download"],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    one_line_error(result, "delete it to download it again")
    assert str(cache) in result.stderr
