"""The command line: ``python -m lenet5 train`` and the ``lenet5`` console script."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from importlib import metadata

import pytest
from lenet5.__main__ import main
from test_datasets import idx_bytes


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lenet5", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, mnist):
    """An MNIST-style folder with 300 training and 100 test digits."""
    (x, y), (xt, yt) = mnist
    folder = tmp_path_factory.mktemp("tiny-mnist")
    arrays = {
        "train-images-idx3-ubyte.gz": x[:300],
        "train-labels-idx1-ubyte.gz": y[:300],
        "t10k-images-idx3-ubyte.gz": xt[:100],
        "t10k-labels-idx1-ubyte.gz": yt[:100],
    }
    for name, array in arrays.items():
        (folder / name).write_bytes(gzip.compress(idx_bytes(array)))
    return folder


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
