"""File errors: OSErrors that carry errno and filename, files that are not regular files,
temporary files of saves, and files that are not model files at all.

Every file operation of lenet5 (``LeNet5.load``, ``save``, ``datasets.load_idx``,
``load_mnist``) raises the OSError subclass that Python's own ``open`` would raise, with
``errno`` and ``filename`` set; named pipes and devices are refused before they are
opened (opening a pipe would wait for a writer forever).
"""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from lenet5 import LeNet5
from lenet5.datasets import load_idx, load_mnist

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@pytest.fixture(scope="module")
def model(mnist):
    (x, y), _ = mnist
    return LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1).fit(x[:100], y[:100])


def assert_os_error(info: pytest.ExceptionInfo, kind: type, code: int, path: Path) -> None:
    err = info.value
    assert type(err) is kind, type(err)
    assert err.errno == code, err.errno
    assert err.filename == str(path)
    assert err.strerror
    assert str(path) in str(err)


LOADERS = {
    "LeNet5.load": LeNet5.load,
    "load_idx": load_idx,
}


# ------------------------------------------------------------------ errno and filename


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_missing_file_is_file_not_found_with_errno(loader, tmp_path):
    path = tmp_path / "missing"
    with pytest.raises(OSError, match="No such file") as info:
        LOADERS[loader](path)
    assert_os_error(info, FileNotFoundError, errno.ENOENT, path)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_folder_is_is_a_directory_error(loader, tmp_path):
    with pytest.raises(OSError, match="is a directory") as info:
        LOADERS[loader](tmp_path)
    assert_os_error(info, IsADirectoryError, errno.EISDIR, tmp_path)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_path_through_a_file_is_not_a_directory_error(loader, tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    path = tmp_path / "file" / "inside"
    with pytest.raises(OSError, match="Not a directory") as info:
        LOADERS[loader](path)
    assert_os_error(info, NotADirectoryError, errno.ENOTDIR, path)


@pytest.mark.skipif(ROOT, reason="root reads files whatever their mode")
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_unreadable_file_is_permission_error(loader, tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"\0" * 64)
    path.chmod(0)
    with pytest.raises(OSError, match="Permission denied") as info:
        LOADERS[loader](path)
    assert_os_error(info, PermissionError, errno.EACCES, path)


def test_save_errors_carry_errno_and_filename(model, tmp_path):
    missing = tmp_path / "no" / "such" / "m.safetensors"
    with pytest.raises(OSError, match="cannot save model file") as info:
        model.save(missing)
    assert_os_error(info, FileNotFoundError, errno.ENOENT, missing)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_bytes(b"x")
    with pytest.raises(OSError, match="cannot save model file") as info:
        model.save(tmp_path / "taken")
    assert_os_error(info, IsADirectoryError, errno.EISDIR, tmp_path / "taken")


WRITE_LIMIT_CHILD = textwrap.dedent(
    """
    import errno, os, resource, signal, sys
    from lenet5 import LeNet5

    source, target = sys.argv[1:3]
    model = LeNet5.load(source)
    # Writes past 64 KiB fail with EFBIG (the file-size limit), as they would with
    # ENOSPC on a full disk: the same write path, another errno.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
    try:
        model.save(target)
    except OSError as err:
        print(type(err).__name__, err.errno == errno.EFBIG, err.filename == target, err)
    else:
        print("saved")
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_failed_write_carries_the_os_errno(model, tmp_path):
    """A write that the operating system refuses (here: over the file-size limit) raises
    OSError with that errno and the target's name; nothing is left behind and the
    previous file is kept."""
    source = tmp_path / "source.safetensors"
    model.save(source)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "m.safetensors"
    target.write_bytes(b"previous")
    out = subprocess.run(
        [sys.executable, "-c", WRITE_LIMIT_CHILD, str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    words = out.stdout.split()
    assert words[:3] == ["OSError", "True", "True"], out.stdout
    assert "cannot save model file" in out.stdout
    assert target.read_bytes() == b"previous"
    assert [p.name for p in folder.iterdir()] == ["m.safetensors"]


def test_folder_errors_of_load_mnist_carry_errno(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "nowhere")
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(tmp_path / "nowhere")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as info:
        load_mnist(tmp_path / "file")
    assert info.value.errno == errno.ENOTDIR
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)  # an empty folder: the first standard file is missing
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(tmp_path / "train-images-idx3-ubyte")


# ------------------------------------------------------------------ not regular files

FIFO_CHILD = textwrap.dedent(
    """
    import sys
    from lenet5 import LeNet5
    from lenet5.datasets import load_idx

    for load in (LeNet5.load, load_idx):
        try:
            load(sys.argv[1])
        except OSError as err:
            print(type(err).__name__, err.errno, err.filename == sys.argv[1], err)
        else:
            print("loaded")
    """
)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipes_are_refused_without_blocking(tmp_path):
    """Opening a named pipe for reading waits for a writer: both loaders must refuse it
    before opening it. Run in a child with a timeout, so a regression fails rather than
    hanging the test run."""
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    out = subprocess.run(
        [sys.executable, "-c", FIFO_CHILD, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    for line in lines:
        assert line.startswith(f"OSError {errno.EINVAL} True"), line
        assert "named pipe" in line


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_devices_are_refused(loader):
    """/dev/zero never ends: reading it whole would never finish."""
    with pytest.raises(OSError, match="device") as info:
        LOADERS[loader]("/dev/zero")
    assert info.value.errno == errno.EINVAL
    assert info.value.filename == "/dev/zero"


# ------------------------------------------------------------------ temporary files


def test_save_leaves_no_temporary_file_and_spares_running_saves(model, tmp_path):
    """A temporary file whose lock is held (a save still running, here imitated by this
    process holding the lock) is not removed by another save; once free, it is."""
    target = tmp_path / "m.safetensors"
    running = tmp_path / ".m.safetensors.lenet5-save-4242-0.tmp"
    running.write_bytes(b"half")
    holder = open(running, "rb")  # noqa: SIM115 - held open across the saves
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        model.save(target)
        assert running.exists()
    finally:
        holder.close()
    model.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_stale_temporary_files_of_other_targets_are_kept(model, tmp_path):
    target = tmp_path / "m.safetensors"
    kept = [
        tmp_path / ".other.safetensors.lenet5-save-1-0.tmp",  # another target's
        tmp_path / ".m.safetensors.lenet5-save-x-0.tmp",  # not a save's name
        tmp_path / ".m.safetensors.1.0.tmp",  # not this version's pattern
    ]
    stale = tmp_path / ".m.safetensors.lenet5-save-1-0.tmp"
    for path in [*kept, stale]:
        path.write_bytes(b"half")
    model.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name] + [p.name for p in kept]
    )


# ------------------------------------------------------------------ not a model file


def _png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


def _npy(path: Path) -> None:
    np.save(path, np.arange(5.0))


def _npz(path: Path) -> None:
    np.savez(path, a=np.arange(5.0))


def _pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"x")


KINDS = {
    "five.npy": (_npy, "a NumPy array file"),
    "five.npz": (_npz, "a ZIP archive"),
    "model.pt": (_zip, "a ZIP archive"),
    "model.pkl": (_pickle, "a Python pickle"),
    "notes.txt": (lambda p: p.write_text("weights of my model\n"), "a text file"),
    "model.json": (lambda p: p.write_text('{"c1.weight": [0.1]}'), "a text file"),
    "empty.safetensors": (lambda p: p.write_bytes(b""), "an empty file"),
    "digit.png": (lambda p: p.write_bytes(_png()), "a PNG image"),
    "photo.jpg": (
        lambda p: p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)),
        "a JPEG",
    ),
    "images.gz": (
        lambda p: p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(64)),
        "a gzip-compressed file",
    ),
    "t10k-labels-idx1-ubyte": (
        lambda p: p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])),
        "an IDX array file",
    ),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_files_that_are_not_model_files_say_what_they_look_like(name, tmp_path):
    """``LeNet5.load`` of a NumPy file, a pickle, text, an empty file, an image, ...: a
    ValueError saying that the file is not a lenet5 model file (safetensors), what it
    looks like, and then the exact problem the safetensors reader met."""
    make, looks = KINDS[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match="model file") as info:
        LeNet5.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "is not a lenet5 model file (safetensors) but looks like " + looks in message
    detail = message.split(": ", 1)[1]
    assert "header" in detail or "too short" in detail, message


def test_onnx_file_is_named(model, tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    with pytest.raises(ValueError, match="but looks like an ONNX model: "):
        LeNet5.load(path)


def test_damaged_model_file_keeps_the_plain_message(model, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="model file") as info:
        LeNet5.load(path)
    assert "looks like" not in str(info.value)
    assert "data" in str(info.value)
