"""Data sets in the IDX format of MNIST: the embedded subset, MNIST folders, Fashion-MNIST.

The IDX files are parsed by the native core (gzip or not, detected from the first bytes),
which rejects malformed files with :class:`ValueError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np

from . import _lenet5

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist", "load_idx", "load_mnist"]

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
        When the file cannot be read (FileNotFoundError if it does not exist).
    ValueError
        When the content is not a well-formed IDX array (bad magic number, unknown
        type, size not matching the header, corrupt compression).

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
    path = os.fspath(file)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such IDX file", path)
    return _lenet5.load_idx(path)


def _find(folder: Path, stem: str) -> Path:
    """The file for ``stem`` in ``folder``: plain or ``.gz``, with ``-idx`` or ``.idx``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{folder} has no {stem} or {stem}.gz (an MNIST-style folder holds "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte, each optionally gzipped)"
    )


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> Split:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{where}: expected uint8 images of shape (n, rows, cols); got shape "
            f"{images.shape} and dtype {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"{where}: expected uint8 labels of shape (n,); got shape {labels.shape} and "
            f"dtype {labels.dtype}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def _load_folder(folder: Path) -> tuple[Split, Split]:
    loaded = {key: load_idx(_find(folder, stem)) for key, stem in _STEMS.items()}
    train = _check_pair(loaded["train", "images"], loaded["train", "labels"], f"{folder} (train)")
    test = _check_pair(loaded["test", "images"], loaded["test", "labels"], f"{folder} (t10k)")
    return train, test


def _checked_folder(path: PathLike) -> Path:
    folder = Path(os.fspath(path)).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"data path {folder} is not a folder of IDX files")
    return folder


@contextlib.contextmanager
def _embedded_folder() -> Iterator[Path]:
    """The embedded mnist-5k folder as a real path (extracted if the package is zipped)."""
    with resources.as_file(resources.files("lenet5") / "data" / "mnist-5k") as folder:
        yield Path(folder)


def load_mnist(path: PathLike | None = None) -> tuple[Split, Split]:
    """Load MNIST-style digits: the embedded subset, or a folder of IDX files.

    Parameters
    ----------
    path : str or path-like, optional
        A folder with the four standard files ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``), for example the full
        MNIST. By default, the subset embedded in the package: 4,000 training digits (400
        per class) and 1,000 test digits (100 per class) from MNIST (Y. LeCun, C. Cortes,
        C. J. C. Burges; CC BY-SA 3.0; see ``lenet5/data/mnist-5k/README.md``).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of ndarray
        Images of shape (n, 28, 28) and labels of shape (n,), both uint8.

    Raises
    ------
    FileNotFoundError
        When the folder or one of its files is missing.
    ValueError
        When a file is malformed or images and labels do not match.

    Examples
    --------
    >>> from lenet5.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_test.shape, y_test.dtype
    ((4000, 28, 28), (1000, 28, 28), dtype('uint8'))
    """
    if path is None:
        with _embedded_folder() as folder:
            return _load_folder(folder)
    return _load_folder(_checked_folder(path))


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
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {searched}; on Debian or Ubuntu install it with "
        "`apt-get install dataset-fashion-mnist`, or pass path= a folder of its IDX files"
    )
