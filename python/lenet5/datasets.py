"""Data sets in the IDX format of MNIST: the embedded subset, MNIST folders, Fashion-MNIST,
and the full MNIST downloaded on request.

The IDX files are parsed by the native core (gzip or not, detected from the first bytes),
which rejects malformed files with :class:`ValueError`.

Downloads (``load_mnist(download=True)`` or :func:`download_mnist`) go to a cache folder,
:func:`data_home` (the ``LENET5_DATA`` environment variable, else the user's cache
folder), are checked against the published sha256 of each file before they are used,
and are written atomically once verified (by the native writer of model files: a
temporary file in the same folder, fsynced, then renamed), so an interrupted or corrupted
download never leaves a file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np

from . import _lenet5
from ._prepare import prepare_digit, prepare_digits

__all__ = [
    "FASHION_MNIST_CLASSES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "data_home",
    "download_mnist",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "prepare_digit",
    "prepare_digits",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Labels 0-9 of Fashion-MNIST.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where Fashion-MNIST is looked for when no path is given (first match wins):
#: Debian's ``dataset-fashion-mnist`` package, then Keras' download cache.
FASHION_MNIST_LOCATIONS = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path("~/.keras/datasets/fashion-mnist"),
)

# The four standard files: (split, kind) -> file stem.
_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

Split = tuple[np.ndarray, np.ndarray]

#: Public mirrors of the full MNIST, tried in this order for each file: the copies kept
#: for PyTorch's and TensorFlow's data set loaders, then the original site.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)

#: Published sha256 of the four gzipped MNIST files (the same on every mirror).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}

#: Sizes in bytes of the MNIST files (for the progress bar when a server sends none).
MNIST_SIZES = {
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
}

#: A download larger than this is cut off and rejected (the largest MNIST file is 10 MB).
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024

_CHUNK = 64 * 1024


def load_idx(file: PathLike) -> np.ndarray:
    """Read one IDX file, gzip-compressed or not.

    Parameters
    ----------
    file : str or path-like
        The file. Compression is recognised from the content, not the name.

    Returns
    -------
    ndarray
        The array with the shape and element type the file declares (uint8, int8, int16,
        int32, float32 or float64), in native byte order.

    Raises
    ------
    OSError
        When the file cannot be read, with ``errno`` and ``filename`` set as by Python's
        own file functions (:class:`FileNotFoundError` if it does not exist,
        :class:`IsADirectoryError` for a folder, :class:`PermissionError`, ...). Anything
        that is not a regular file (a named pipe, a device) is refused before it is
        opened (``errno.EINVAL``).
    ValueError
        When the content is not a well-formed IDX array (bad magic number, unknown
        type, size not matching the header, corrupt compression). The declared size is
        checked against the file's size before anything is read or allocated.

    Examples
    --------
    >>> from importlib import resources
    >>> from lenet5.datasets import load_idx
    >>> folder = resources.files("lenet5") / "data" / "mnist-5k"
    >>> with resources.as_file(folder / "t10k-labels-idx1-ubyte.gz") as path:
    ...     labels = load_idx(path)
    >>> labels.shape, labels.dtype
    ((1000,), dtype('uint8'))
    """
    return _lenet5.load_idx(_fspath(file))


def _fspath(file: PathLike) -> str:
    path = os.fspath(file)
    return path if isinstance(path, str) else os.fsdecode(path)


def _not_found(message: str, path: PathLike) -> FileNotFoundError:
    """FileNotFoundError with errno and filename set, as Python's file functions raise."""
    return FileNotFoundError(errno.ENOENT, message, _fspath(path))


def _find(folder: Path, stem: str) -> Path:
    """The file for ``stem`` in ``folder``: plain or ``.gz``, with ``-idx`` or ``.idx``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise _not_found(
        f"{folder} has no {stem} or {stem}.gz (an MNIST-style folder holds "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte, each optionally gzipped)",
        folder / stem,
    )


def _check_pair(
    images: tuple[str, tuple[int, ...]], labels: tuple[str, tuple[int, ...]], where: str
) -> None:
    """Checks the (dtype, shape) of an images file and a labels file against each other."""
    (image_dtype, image_shape), (label_dtype, label_shape) = images, labels
    if len(image_shape) != 3 or image_dtype != "uint8":
        raise ValueError(
            f"{where}: expected uint8 images of shape (n, rows, cols); got shape "
            f"{image_shape} and dtype {image_dtype}"
        )
    if len(label_shape) != 1 or label_dtype != "uint8":
        raise ValueError(
            f"{where}: expected uint8 labels of shape (n,); got shape {label_shape} and "
            f"dtype {label_dtype}"
        )
    if image_shape[0] != label_shape[0]:
        raise ValueError(f"{where}: {image_shape[0]} images but {label_shape[0]} labels")


def _load_folder(folder: Path) -> tuple[Split, Split]:
    return _load_files({key: _find(folder, stem) for key, stem in _STEMS.items()}, folder)


def _load_files(files: dict[tuple[str, str], Path], folder: Path) -> tuple[Split, Split]:
    # The four headers first (a gzip file is inflated only as far as its header, and
    # every declared size is checked against its file's size): the files must agree
    # before any of them is read whole.
    headers = {}
    for key, file in files.items():
        dtype, shape = _lenet5.idx_header(_fspath(file))
        headers[key] = (dtype, tuple(shape))
    for split, name in (("train", "train"), ("test", "t10k")):
        _check_pair(headers[split, "images"], headers[split, "labels"], f"{folder} ({name})")
    loaded = {key: load_idx(file) for key, file in files.items()}
    # Checked again on the arrays: a file may have changed since its header was read.
    for split, name in (("train", "train"), ("test", "t10k")):
        images, labels = loaded[split, "images"], loaded[split, "labels"]
        _check_pair(
            (str(images.dtype), images.shape),
            (str(labels.dtype), labels.shape),
            f"{folder} ({name})",
        )
    return (
        (loaded["train", "images"], loaded["train", "labels"]),
        (loaded["test", "images"], loaded["test", "labels"]),
    )


def _checked_folder(path: PathLike) -> Path:
    folder = Path(os.fspath(path)).expanduser()
    if not folder.exists():
        raise _not_found(f"data folder {folder} does not exist", folder)
    if not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"data path {folder} is not a folder of IDX files", str(folder)
        )
    return folder


@contextlib.contextmanager
def _embedded_folder() -> Iterator[Path]:
    """The embedded mnist-5k folder as a real path (extracted if the package is zipped)."""
    with resources.as_file(resources.files("lenet5") / "data" / "mnist-5k") as folder:
        yield Path(folder)


def load_mnist(
    path: PathLike | None = None,
    download: bool = False,
    *,
    mirrors: Sequence[str] | None = None,
    sha256: Mapping[str, str] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> tuple[Split, Split]:
    """Load MNIST-style digits: the embedded subset, a folder of IDX files, or the full
    MNIST (downloaded once into a cache folder).

    Parameters
    ----------
    path : str or path-like, optional
        A folder with the four standard files ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``), for example the full
        MNIST. By default, the subset embedded in the package: 4,000 training digits (400
        per class) and 1,000 test digits (100 per class) from MNIST (Y. LeCun, C. Cortes,
        C. J. C. Burges; CC BY-SA 3.0; see ``lenet5/data/mnist-5k/README.md``). With
        ``download=True``: the folder to download into (default ``data_home() / "mnist"``).
    download : bool, default=False
        Load the full MNIST (60,000 training and 10,000 test digits): the gzipped files
        missing from the folder are fetched from ``mirrors``; every file, fetched or
        already there, must have its published sha256 (see :func:`download_mnist`).
    mirrors : sequence of str, optional
        Base URLs (http or https) tried in order for each file; default ``MNIST_MIRRORS``.
    sha256 : mapping, optional
        File name -> expected sha256 (hex) of the four ``.gz`` files; default
        ``MNIST_SHA256``, the published ones.
    progress : bool, default=True
        Show a progress bar (tqdm, on stderr) per downloaded file.
    timeout : float, default=60.0
        Seconds a connection may stay silent before the mirror counts as failed.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of ndarray
        Images of shape (n, 28, 28) and labels of shape (n,), both uint8.

    Raises
    ------
    FileNotFoundError
        When the folder or one of its files is missing (without ``download``).
    ValueError
        When a file is malformed, images and labels do not match, or (``download``) a file
        does not have the expected sha256.
    OSError
        When (``download``) no mirror could deliver a file.

    Examples
    --------
    >>> from lenet5.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_test.shape, y_test.dtype
    ((4000, 28, 28), (1000, 28, 28), dtype('uint8'))
    >>> (x_train, _), (x_test, _) = load_mnist(download=True)  # doctest: +SKIP
    >>> x_train.shape, x_test.shape  # doctest: +SKIP
    ((60000, 28, 28), (10000, 28, 28))
    """
    if not download and (mirrors is not None or sha256 is not None):
        raise ValueError("mirrors and sha256 apply only with download=True")
    if download:
        folder = download_mnist(
            path, mirrors=mirrors, sha256=sha256, progress=progress, timeout=timeout
        )
        files = {key: folder / (stem + ".gz") for key, stem in _STEMS.items()}
        return _load_files(files, folder)
    if path is None:
        with _embedded_folder() as folder:
            return _load_folder(folder)
    return _load_folder(_checked_folder(path))


def data_home() -> Path:
    """The folder where downloaded data sets are kept.

    ``LENET5_DATA`` if that environment variable is set (and not empty); otherwise
    ``lenet5`` in the user's cache folder: ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux,
    ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows. MNIST goes to its
    ``mnist`` subfolder. The folder is not created here.

    Examples
    --------
    >>> from lenet5.datasets import data_home
    >>> data_home()  # doctest: +SKIP
    PosixPath('/home/me/.cache/lenet5')
    """
    explicit = os.environ.get("LENET5_DATA")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "lenet5" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lenet5"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lenet5"
    return Path.home() / ".cache" / "lenet5"


def download_mnist(
    path: PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    sha256: Mapping[str, str] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Make sure a folder holds the four gzipped MNIST files, each with its sha256.

    A file already in the folder is checked and kept (nothing is downloaded for it); a
    file there with the wrong sha256 is an error (it is not overwritten: delete it to
    download it again). A missing file is fetched from the first mirror that delivers it
    with the expected sha256: it is received into memory while hashing (at most
    ``MAX_DOWNLOAD_BYTES``) and written only once the whole file has the right sha256,
    atomically (a temporary file in the same folder, fsynced, then renamed), so the folder
    never holds a partial or corrupted file; temporary files that a killed download left
    there are removed by the next download of the same file.

    Parameters
    ----------
    path : str or path-like, optional
        The folder (created if needed); default ``data_home() / "mnist"``.
    mirrors, sha256, progress, timeout
        As for :func:`load_mnist`.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    ValueError
        When a file in the folder, or every copy delivered, has the wrong sha256 (also
        for bad ``mirrors`` or ``sha256`` arguments).
    OSError
        When no mirror could deliver a file, or the folder cannot be written.

    Examples
    --------
    >>> from lenet5.datasets import download_mnist, load_mnist
    >>> folder = download_mnist()  # doctest: +SKIP
    >>> (x_train, y_train), _ = load_mnist(folder)  # doctest: +SKIP
    """
    bases = _check_mirrors(MNIST_MIRRORS if mirrors is None else mirrors)
    digests = _check_digests(MNIST_SHA256 if sha256 is None else sha256)
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    folder = data_home() / "mnist" if path is None else Path(os.fspath(path)).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"download folder {folder} is not a folder", str(folder)
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, digest in digests.items():
        target = folder / name
        if target.is_file():
            found = _sha256_of(target)
            if found != digest:
                raise ValueError(
                    f"{target} has sha256 {found}, expected {digest}: it is not the published "
                    "file; delete it to download it again"
                )
            continue
        _fetch(name, digest, bases, target, progress=progress, timeout=float(timeout))
    return folder


def _check_mirrors(mirrors: Sequence[str]) -> list[str]:
    if isinstance(mirrors, (str, bytes)):
        mirrors = [mirrors]  # type: ignore[list-item]
    bases = []
    for base in mirrors:
        if not isinstance(base, str):
            raise ValueError(f"mirrors must be URLs (str); got {base!r}")
        scheme = urllib.parse.urlsplit(base).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"mirror {base!r} is not an http or https URL")
        bases.append(base if base.endswith("/") else base + "/")
    if not bases:
        raise ValueError("mirrors must name at least one URL")
    return bases


def _check_digests(sha256: Mapping[str, str]) -> dict[str, str]:
    names = [stem + ".gz" for stem in _STEMS.values()]
    if not isinstance(sha256, Mapping) or sorted(sha256) != sorted(names):
        raise ValueError(f"sha256 must map exactly the file names {', '.join(names)} to digests")
    digests = {}
    for name in names:
        digest = sha256[name]
        if not isinstance(digest, str) or len(digest) != 64:
            raise ValueError(f"sha256 of {name} must be 64 hexadecimal digits; got {digest!r}")
        try:
            int(digest, 16)
        except ValueError:
            raise ValueError(
                f"sha256 of {name} must be 64 hexadecimal digits; got {digest!r}"
            ) from None
        digests[name] = digest.lower()
    return digests


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(
    name: str, digest: str, bases: list[str], target: Path, *, progress: bool, timeout: float
) -> None:
    """Download ``name`` from the first mirror that has it with ``digest`` into ``target``.

    The file is received into memory (at most ``MAX_DOWNLOAD_BYTES``) and checked, then
    written by the native atomic writer, the one that writes model files: so nothing is on
    disk before the file is verified, a failed write removes its temporary file, and
    one left by a killed process is removed by the next write to ``target``. A failed
    write is the folder's error (OSError with errno and filename), not the mirror's.
    """
    _remove_legacy_parts(target)
    failures: list[str] = []
    corrupted = False
    for base in bases:
        url = base + name
        try:
            data = _download_verified(url, name, digest, progress=progress, timeout=timeout)
        except _ChecksumMismatch as err:
            corrupted = True
            failures.append(f"{url}: {err}")
        # URLError, HTTPError and timeouts are OSErrors; a cut connection may raise
        # http.client.IncompleteRead; a malformed URL ValueError.
        except (OSError, ValueError, http.client.HTTPException) as err:
            failures.append(f"{url}: {' '.join(str(err).split()) or type(err).__name__}")
        else:
            _lenet5.write_atomic(_fspath(target), data, "downloaded file")
            return
    summary = "; ".join(failures)
    if corrupted:
        raise ValueError(f"no mirror delivered {name} with the published sha256 ({summary})")
    raise OSError(f"could not download {name} from any mirror ({summary})")


class _ChecksumMismatch(ValueError):
    pass


def _download_verified(
    url: str, name: str, digest: str, *, progress: bool, timeout: float
) -> bytes:
    """The bytes at ``url``, if they have the sha256 ``digest``."""
    from tqdm.auto import tqdm

    agent = f"lenet5/{_lenet5.__version__}"
    request = urllib.request.Request(url, headers={"User-Agent": agent})
    h = hashlib.sha256()
    chunks: list[bytes] = []
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else MNIST_SIZES.get(name)
        with tqdm(
            total=total,
            desc=name,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            leave=False,
            file=sys.stderr,
        ) as bar:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise _ChecksumMismatch(
                        f"more than {MAX_DOWNLOAD_BYTES} bytes: not the published file"
                    )
                h.update(chunk)
                chunks.append(chunk)
                bar.update(len(chunk))
    found = h.hexdigest()
    if found != digest:
        raise _ChecksumMismatch(
            f"the {received} bytes received have sha256 {found}, expected {digest}"
        )
    return b"".join(chunks)


def _remove_legacy_parts(target: Path) -> None:
    """Removes ``.<name>.<12 hex digits>.part`` files beside ``target``: the temporary
    files that earlier versions of lenet5 streamed downloads into, left behind when their
    process was killed. Downloads are no longer written that way: only an earlier lenet5
    downloading into this folder at this very moment could still use one, and it would then
    fail with an OSError, never keep a bad file."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{12}}\.part")
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def load_fashion_mnist(path: PathLike | None = None) -> tuple[Split, Split]:
    """Load Fashion-MNIST (60,000 training and 10,000 test images of clothing).

    Parameters
    ----------
    path : str or path-like, optional
        A folder with the four IDX files under the MNIST file names. By default the first
        of ``FASHION_MNIST_LOCATIONS`` that holds them: where Debian's package
        ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist``),
        then Keras' cache (``~/.keras/datasets/fashion-mnist``).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of ndarray
        uint8 images (n, 28, 28) and labels (n,); label names in ``FASHION_MNIST_CLASSES``.

    Raises
    ------
    FileNotFoundError
        When no path is given and none of the known locations holds the files.

    Examples
    --------
    >>> from lenet5.datasets import load_fashion_mnist, FASHION_MNIST_CLASSES
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()  # doctest: +SKIP
    >>> FASHION_MNIST_CLASSES[9]
    'Ankle boot'
    """
    if path is not None:
        return _load_folder(_checked_folder(path))
    for location in FASHION_MNIST_LOCATIONS:
        folder = location.expanduser()
        if folder.is_dir():
            try:
                _find(folder, _STEMS["train", "images"])
            except FileNotFoundError:
                continue
            return _load_folder(folder)
    searched = ", ".join(str(p) for p in FASHION_MNIST_LOCATIONS)
    raise _not_found(
        f"Fashion-MNIST not found in {searched}; on Debian or Ubuntu install it with "
        "`apt-get install dataset-fashion-mnist`, or pass path= a folder of its IDX files",
        FASHION_MNIST_LOCATIONS[0],
    )
