"""Data loading: the embedded MNIST subset, IDX folders and files, Fashion-MNIST."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lenet5 import datasets
from lenet5.datasets import load_fashion_mnist, load_idx, load_mnist

# From the data's README (shared/data/README.md), copied here as independent facts.
SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "e7bcc8a1d4d4db81ebeb8526549d094d27589bf3501927992031c51657a1cc9e"
    ),
    "train-labels-idx1-ubyte.gz": (
        "edd67610a3b9af13ff43d287cf7a3052f4a624094579242e407e8778aa562ee7"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "75190c987f53d96664c2d7c6cd7bbce79dea14fd2934726b4335042bf6bb8886"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "5336377292528ce6c413cb99fde2b01890ead9da2754c6eb29ee2ecc4a7c5c26"
    ),
}

TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written from the format description: magic 0 0 type ndim, big-endian
    u32 sizes, big-endian row-major data."""
    code = TYPE_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes(order="C")


def write_folder(folder: Path, train, test, *, compress: bool, dotted: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": train[0],
        "train-labels-idx1-ubyte": train[1],
        "t10k-images-idx3-ubyte": test[0],
        "t10k-labels-idx1-ubyte": test[1],
    }
    for name, array in arrays.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        data = idx_bytes(array)
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def embedded_folder() -> Path:
    return Path(str(resources.files("lenet5") / "data" / "mnist-5k"))


# ---------------------------------------------------------------- embedded subset


def test_embedded_subset_shapes_and_dtypes(mnist):
    (x, y), (xt, yt) = mnist
    assert x.shape == (4000, 28, 28)
    assert y.shape == (4000,)
    assert xt.shape == (1000, 28, 28)
    assert yt.shape == (1000,)
    assert {a.dtype for a in (x, y, xt, yt)} == {np.dtype(np.uint8)}


def test_embedded_subset_is_stratified_as_documented(mnist):
    (_, y), (_, yt) = mnist
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 100))


def test_embedded_images_look_like_mnist(mnist):
    (x, _), _ = mnist
    assert x.min() == 0
    assert x.max() == 255
    # MNIST digits are white on black: mean intensity about 33, borders empty.
    assert 25 < x.mean() < 45
    assert x[:, 0, :].mean() < 1
    assert x[:, :, 0].mean() < 1


def test_shipped_files_match_documented_sha256():
    folder = embedded_folder()
    for name, digest in SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    attribution = (folder / "README.md").read_text()
    assert "CC BY-SA 3.0" in attribution
    assert "LeCun" in attribution
    for name, digest in SHA256.items():
        assert f"{digest}  {name}" in attribution


def test_load_mnist_returns_fresh_arrays(mnist):
    (x, _), _ = load_mnist()
    x[0, 0, 0] = 77
    (again, _), _ = load_mnist()
    assert again[0, 0, 0] == mnist[0][0][0, 0, 0] == 0


# ---------------------------------------------------------------- folders


@pytest.mark.parametrize(("compress", "dotted"), [(True, False), (False, False), (True, True)])
def test_load_mnist_from_folder(tmp_path, mnist, compress, dotted):
    (x, y), (xt, yt) = mnist
    write_folder(tmp_path, (x[:50], y[:50]), (xt[:20], yt[:20]), compress=compress, dotted=dotted)
    (a, b), (c, d) = load_mnist(tmp_path)
    np.testing.assert_array_equal(a, x[:50])
    np.testing.assert_array_equal(b, y[:50])
    np.testing.assert_array_equal(c, xt[:20])
    np.testing.assert_array_equal(d, yt[:20])
    (a2, _), _ = load_mnist(str(tmp_path))
    np.testing.assert_array_equal(a2, a)


def test_load_mnist_folder_errors(tmp_path, mnist):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        load_mnist(a_file)
    (x, y), (xt, yt) = mnist
    write_folder(tmp_path / "d", (x[:5], y[:5]), (xt[:5], yt[:5]), compress=True)
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path / "d")


def test_load_mnist_rejects_mismatched_counts(tmp_path, mnist):
    (x, y), (xt, yt) = mnist
    write_folder(tmp_path, (x[:5], y[:6]), (xt[:5], yt[:5]), compress=False)
    with pytest.raises(ValueError, match="5 images but 6 labels"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_non_image_files(tmp_path, mnist):
    (x, y), (xt, yt) = mnist
    write_folder(tmp_path, (x[:5].astype(np.float32), y[:5]), (xt[:5], yt[:5]), compress=False)
    with pytest.raises(ValueError, match="expected uint8 images"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------- IDX files


@given(
    hnp.arrays(
        dtype=st.sampled_from(sorted(TYPE_CODES, key=str)),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    ),
    st.booleans(),
)
def test_load_idx_round_trips_every_type(tmp_path_factory, array, compress):
    data = idx_bytes(array)
    path = tmp_path_factory.mktemp("idx") / "array.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    loaded = load_idx(path)
    assert loaded.dtype == array.dtype
    assert loaded.dtype.isnative
    assert loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)  # NaN-aware, bit patterns aside


def test_load_idx_reads_the_shipped_files():
    labels = load_idx(embedded_folder() / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (1000,)
    images = load_idx(embedded_folder() / "train-images-idx3-ubyte.gz")
    assert images.shape == (4000, 28, 28)


GOOD = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated"),
        (GOOD[:3], "truncated"),
        (GOOD[:10], "truncated"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "longer than its header"),
        (b"\x01" + GOOD[1:], "magic"),
        (bytes([0, 0, 0x0A]) + GOOD[3:], "type code"),
        (bytes([0, 0, 0x08, 0]), "0 dimensions"),
        (bytes([0, 0, 0x0E, 4]) + b"\xff" * 16, "limit"),
        (b"PK\x03\x04 not idx at all", "magic"),
        (gzip.compress(GOOD)[:-12], "corrupt"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt"),
    ],
)
def test_load_idx_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_idx(path)
    assert "bad.idx" in str(info.value)


@given(st.binary(max_size=64))
def test_load_idx_never_crashes_on_random_bytes(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "random.idx"
    path.write_bytes(content)
    try:
        array = load_idx(path)
    except ValueError:
        return
    # Accepted only if it really is a complete IDX encoding of the result.
    assert idx_bytes(array) == content


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "missing-idx1-ubyte")
    with pytest.raises(OSError, match="director"):
        load_idx(tmp_path)


# ---------------------------------------------------------------- Fashion-MNIST


def test_load_fashion_mnist_from_folder(tmp_path, mnist):
    (x, y), (xt, yt) = mnist
    write_folder(tmp_path, (x[:8], y[:8]), (xt[:4], yt[:4]), compress=True)
    (a, _), (c, _) = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(a, x[:8])
    np.testing.assert_array_equal(c, xt[:4])


def test_load_fashion_mnist_searches_known_locations(tmp_path, mnist, monkeypatch):
    (x, y), (xt, yt) = mnist
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    write_folder(full, (x[:3], y[:3]), (xt[:2], yt[:2]), compress=False)
    monkeypatch.setattr(datasets, "FASHION_MNIST_LOCATIONS", (tmp_path / "none", empty, full))
    (a, _), _ = load_fashion_mnist()
    np.testing.assert_array_equal(a, x[:3])
    monkeypatch.setattr(datasets, "FASHION_MNIST_LOCATIONS", (empty,))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_load_fashion_mnist_debian_package():
    (x, y), (xt, yt) = load_fashion_mnist()
    assert x.shape == (60000, 28, 28)
    assert xt.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(yt), np.full(10, 1000))
    assert len(datasets.FASHION_MNIST_CLASSES) == 10


def test_embedded_folder_can_be_copied_and_loaded(tmp_path, mnist):
    shutil.copytree(embedded_folder(), tmp_path / "copy")
    (x, _), (_, yt) = load_mnist(tmp_path / "copy")
    np.testing.assert_array_equal(x, mnist[0][0])
    np.testing.assert_array_equal(yt, mnist[1][1])


# ---------------------------------------------------------------- hostile files and folders


def idx_header(code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def write_zeros_gz(path: Path, header: bytes, n_bytes: int) -> None:
    """A gzip file of ``header`` followed by ``n_bytes`` zero bytes, written in pieces."""
    block = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        for start in range(0, n_bytes, len(block)):
            f.write(block[: min(len(block), n_bytes - start)])


def test_load_mnist_compares_headers_before_reading_any_file(tmp_path, mnist):
    """Images and labels that disagree are refused from their headers: here the images
    file would be truncated, but the count mismatch is what is reported, so no body was
    read first."""
    (x, y), (xt, yt) = mnist
    write_folder(tmp_path, (x[:5], y[:5]), (xt[:5], yt[:5]), compress=True)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    # 3 million images declared; 2.5 MB of incompressible bytes: as large as a gzip file
    # would need to be to hold them, but not the images.
    body = np.random.default_rng(0).integers(0, 256, 2_500_000, dtype=np.uint8).tobytes()
    images.write_bytes(gzip.compress(idx_header(0x08, (3_000_000, 28, 28)) + body, 1))
    with pytest.raises(ValueError, match="3000000 images but 5 labels"):
        load_mnist(tmp_path)
    # Labels of the wrong type or shape are refused from the header too.
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((5, 2), np.int16)))
    )
    with pytest.raises(ValueError, match="expected uint8 labels"):
        load_mnist(tmp_path)


def test_declared_sizes_are_checked_against_the_file_size(tmp_path):
    plain = tmp_path / "plain-idx3-ubyte"
    plain.write_bytes(idx_header(0x08, (3_000_000, 28, 28)) + bytes(10))
    with pytest.raises(ValueError, match="needs 2352000000 bytes of data, found 10"):
        load_idx(plain)
    small_gz = tmp_path / "small.gz"
    small_gz.write_bytes(gzip.compress(idx_header(0x08, (3_000_000, 28, 28)) + bytes(1000)))
    with pytest.raises(ValueError, match="more than a gzip file of"):
        load_idx(small_gz)


MEMORY_CHILD = """
import resource, sys
from lenet5.datasets import load_idx, load_mnist

def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

load_mnist()  # warm up
before = rss_mib()
for path in sys.argv[2:]:
    try:
        load_idx(path)
    except ValueError as err:
        print(path, err, file=sys.stderr)
    else:
        raise SystemExit(f"{path} loaded")
try:
    load_mnist(sys.argv[1])
except ValueError as err:
    print(err, file=sys.stderr)
else:
    raise SystemExit("the folder loaded")
print(rss_mib() - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_hostile_idx_files_are_refused_without_inflating_them(tmp_path, mnist):
    """A folder whose images declare 300,000 images (235 MB, a real 230 KB gzip of zeros)
    beside 5 labels; a gzip file declaring 10 images that inflates to 200 MB; a plain file
    declaring 2.3 GB: all refused while peak RSS grows by less than 32 MiB."""
    (x, y), (xt, yt) = mnist
    folder = tmp_path / "folder"
    write_folder(folder, (x[:5], y[:5]), (xt[:5], yt[:5]), compress=True)
    write_zeros_gz(
        folder / "train-images-idx3-ubyte.gz", idx_header(0x08, (300_000, 28, 28)), 235_200_000
    )
    bomb = tmp_path / "bomb.gz"
    write_zeros_gz(bomb, idx_header(0x08, (10, 28, 28)), 200_000_000)
    plain = tmp_path / "plain"
    plain.write_bytes(idx_header(0x08, (3_000_000, 28, 28)) + bytes(1 << 20))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(folder), str(bomb), str(plain)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "300000 images but 5 labels" in out.stderr
    assert "longer than its header" in out.stderr
    assert float(out.stdout) < 32, out.stdout


FUZZ_CHILD = """
import gzip, os, random, resource, struct, sys, tempfile
import numpy as np
from lenet5.datasets import load_idx, load_mnist

load_mnist()  # warm up: the embedded digits, the thread pool, the allocator's arenas
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
limit = vm + (512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # any large allocation now fails
rng = random.Random(int(sys.argv[1]))
tmp = tempfile.mkdtemp()
SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}

def declared(ndim):
    # Mostly huge claims (up to 2**32 - 1 per dimension), some small enough to be real.
    return [rng.choice([rng.randrange(1 << 32), rng.randrange(1 << 16), rng.randrange(40)])
            for _ in range(ndim)]

def idx(code, dims, body):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body

refused = loaded = 0
for case in range(int(sys.argv[2])):
    code = rng.choice(list(SIZES))
    dims = declared(rng.randint(1, 4))
    body = os.urandom(rng.choice([0, 1, 7, 100, 4096, 70_000]))
    data = idx(code, dims, body)
    if rng.random() < 0.5:
        data = gzip.compress(data)
    path = os.path.join(tmp, f"case{case}.gz")
    with open(path, "wb") as f:
        f.write(data)
    try:
        a = load_idx(path)
    except ValueError:
        refused += 1
    else:  # accepted only when the body is exactly what the header declares
        assert list(a.shape) == dims and a.nbytes == len(body), (dims, len(body))
        loaded += 1
    os.remove(path)

# Folders whose four headers disagree (or claim more than their bodies hold).
names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
for case in range(int(sys.argv[3])):
    folder = os.path.join(tmp, f"folder{case}")
    os.mkdir(folder)
    counts = [rng.choice([rng.randrange(1 << 32), rng.randrange(1, 6)]) for _ in range(4)]
    for name, n in zip(names, counts):
        images = "images" in name
        real = min(n, 5)
        dims = [n, 28, 28] if images else [n]
        body = bytes(real * (784 if images else 1))
        with open(os.path.join(folder, name + ".gz"), "wb") as f:
            f.write(gzip.compress(idx(0x08, dims, body)))
    try:
        load_mnist(folder)
    except ValueError:
        refused += 1
    else:
        assert counts[0] == counts[1] <= 5 and counts[2] == counts[3] <= 5, counts
        loaded += 1
print(refused, loaded)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")
@pytest.mark.parametrize("seed", [0, 1])
def test_hostile_idx_headers_never_allocate_what_they_claim(seed):
    """Fuzzer: random IDX headers (any type, 1-4 dimensions up to 2**32 - 1 each, plain or
    gzip, bodies of 0 to 70,000 random bytes) and MNIST folders whose four headers claim
    counts up to 2**32 - 1, loaded in a child whose address space is capped 512 MiB above
    its size after warm-up: every claim larger than the file can hold is refused with a
    ValueError before anything that size is allocated (an allocation over the cap would
    abort the child), and whatever loads is exactly the declared array."""
    out = subprocess.run(
        [sys.executable, "-c", FUZZ_CHILD, str(seed), "400", "60"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    refused, loaded = map(int, out.stdout.split())
    assert refused + loaded == 460
    assert refused > 300  # most claims are lies
