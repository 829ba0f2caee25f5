"""Input checks and conversions shared by the estimator and the data loaders.

Everything here runs before the native layer sees an array, so that a wrong input gets a
message saying what was expected and what came, and so that the native layer only ever
receives the three layouts it accepts: ``(n, 28, 28)`` or ``(n, 32, 32)`` images of dtype
uint8, float32 or float64 in native byte order.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from . import _lenet5

__all__ = ["NotFittedError", "check_images", "check_labels", "encode_labels"]

#: Image shapes accepted per sample (besides the flat forms 784 and 1024).
IMAGE_SIDES = (28, 32)

#: Most classes a softmax output layer holds (the native network's limit).
MAX_CLASSES: int = _lenet5.MAX_CLASSES

#: Images converted at a time from a dtype the native layer does not read (int64,
#: float16, a non-native byte order, ...): never a whole converted copy.
CONVERT_CHUNK = 4096

#: Outputs up to this many bytes are not checked against the machine's memory here (the
#: native layer checks every output anyway).
_SMALL_OUTPUT = 1 << 26

#: Largest value of an integer hyperparameter (the native layer takes signed 64-bit
#: integers).
MAX_INT = 2**63 - 1

_SHAPES_TEXT = (
    "(n, 28, 28), (n, 32, 32), (n, 1, 28, 28), (n, 1, 32, 32), (n, 28, 28, 1), "
    "(n, 32, 32, 1), (n, 784) or (n, 1024)"
)


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before it has been fitted.

    It derives from both :class:`ValueError` and :class:`AttributeError`, as
    scikit-learn's exception of the same name, so ``hasattr(model, "classes_")``
    is False on an unfitted model and code written for scikit-learn catches it.

    Examples
    --------
    >>> from lenet5 import LeNet5, NotFittedError
    >>> try:
    ...     LeNet5().predict([[0.0] * 784])
    ... except NotFittedError as err:
    ...     print(type(err).__name__)
    NotFittedError
    """


def _describe(obj: Any) -> str:
    """A short description of an object for error messages."""
    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape} and dtype {obj.dtype}"
    return f"{type(obj).__name__}"


def _as_array(obj: Any, name: str, what: str) -> np.ndarray:
    """``np.asarray`` with messages that name the argument."""
    if obj is None:
        raise TypeError(f"{name} must be {what}; got None")
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{name} must be {what}; got {type(obj).__name__} {obj!r:.40}")
    try:
        return np.asarray(obj)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{name} must be {what}; could not convert {_describe(obj)} to an array ({err})"
        ) from None


def check_images(
    x: Any,
    name: str = "x",
    *,
    allow_single: bool = False,
    convert: bool = True,
    item_bytes: int = 0,
    output: str = "the output",
) -> np.ndarray:
    """Check an image batch and return it as ``(n, 28, 28)`` or ``(n, 32, 32)``.

    Parameters
    ----------
    x : array-like
        Images in one of the shapes ``(n, 28, 28)``, ``(n, 32, 32)``, ``(n, 1, 28, 28)``,
        ``(n, 1, 32, 32)``, ``(n, 28, 28, 1)``, ``(n, 32, 32, 1)``, ``(n, 784)`` or
        ``(n, 1024)``; with ``allow_single=True`` also one image ``(28, 28)`` or
        ``(32, 32)``, returned as a batch of one. Integer dtypes must hold values in
        0..255, float dtypes finite values in [0, 1].
    name : str
        Name of the argument, used in error messages.
    allow_single : bool
        Whether a single 2-D image is accepted.
    convert : bool
        Whether to return a converted copy when the dtype is not one the native layer
        reads; with False the checked view is returned as it is, for
        :func:`native_chunks` or :func:`run_in_chunks` to convert a chunk at a time.
    item_bytes : int
        Bytes per image of the output the caller will allocate; when given, its size is
        checked against the machine's memory right after the shape, before any pass
        over the pixels (ValueError saying how much it would need).
    output : str
        What that output is, for the message.

    Returns
    -------
    ndarray
        A 3-D view or copy of dtype uint8, float32 or float64 in native byte order (strides
        are kept where no copy is needed); with ``convert=False`` a 3-D view of any
        integer or float dtype.

    Raises
    ------
    TypeError
        For None, strings, and arrays of bool, complex, object, string, or date dtype.
    ValueError
        For a wrong shape, no samples, NaN or infinity, or values outside the range.

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5._validation import check_images
    >>> check_images(np.zeros((5, 784), dtype=np.uint8)).shape
    (5, 28, 28)
    """
    what = f"images of shape {_SHAPES_TEXT}"
    _reject_masked(x, name)
    arr = _as_array(x, name, what)
    _native_dtype(arr, name)  # TypeError for a dtype that holds no pixels
    arr = _to_3d(arr, name, allow_single=allow_single)
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has 0 images; at least 1 is required")
    if item_bytes and arr.shape[0] * item_bytes > _SMALL_OUTPUT:
        _lenet5.check_output_size(arr.shape[0], item_bytes, output)
    _check_pixel_range(arr, name)
    if convert:
        arr = to_native(arr)
    return arr


#: Most images :func:`quick_images` passes on: the lane for small batches only.
QUICK_IMAGES = 256
_U8 = np.dtype(np.uint8)
_F32 = np.dtype(np.float32)


def quick_images(x: Any) -> np.ndarray | None:
    """``x`` as ``(n, side, side)`` when it is one image or a small batch that needs no
    check in Python: a numpy array of uint8 or native float32 pixels, of shape
    ``(28, 28)``, ``(32, 32)``, ``(n, 28, 28)`` or ``(n, 32, 32)`` with
    ``1 <= n <= QUICK_IMAGES``; else None. The native layer still checks that float
    pixels are finite and in [0, 1] (a ValueError then sends the caller to the full
    checks of :func:`check_images`, which say what is wrong)."""
    if type(x) is not np.ndarray:
        return None
    dt = x.dtype
    if dt is not _U8 and dt is not _F32:  # builtin dtypes are singletons
        return None
    shape = x.shape
    if len(shape) == 2:
        return x[None] if shape[0] == shape[1] and shape[0] in IMAGE_SIDES else None
    if (
        len(shape) == 3
        and 0 < shape[0] <= QUICK_IMAGES
        and shape[1] == shape[2]
        and shape[1] in IMAGE_SIDES
    ):
        return x
    return None


def native_chunks(arr: np.ndarray, index: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The images ``arr`` (or ``arr[index]``), checked by :func:`check_images`, in the
    dtype the native layer reads: ``arr`` itself when it has that dtype and no index is
    given, else converted copies of :data:`CONVERT_CHUNK` images at a time."""
    target = _native_dtype(arr, "x")
    if index is None and arr.dtype == target:
        yield arr
        return
    n = arr.shape[0] if index is None else index.shape[0]
    for start in range(0, n, CONVERT_CHUNK):
        part = (
            arr[start : start + CONVERT_CHUNK]
            if index is None
            else arr[index[start : start + CONVERT_CHUNK]]
        )
        yield part.astype(target)


def to_native(arr: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """:func:`native_chunks` gathered into one array, converted a chunk at a time."""
    target = _native_dtype(arr, "x")
    if index is None and arr.dtype == target:
        return arr
    n = arr.shape[0] if index is None else index.shape[0]
    out = np.empty((n, *arr.shape[1:]), dtype=target)
    start = 0
    for part in native_chunks(arr, index):
        out[start : start + part.shape[0]] = part
        start += part.shape[0]
    return out


def run_in_chunks(fn: Callable[[np.ndarray], Any], arr: np.ndarray, what: str) -> Any:
    """``fn(arr)`` for images of a native dtype; else ``fn`` on each chunk of
    :func:`native_chunks`, the results (an array, or a dict of arrays, one row per image)
    written into outputs allocated once, after checking that they fit in memory."""
    target = _native_dtype(arr, "x")
    if arr.dtype == target:
        return fn(arr)
    n = arr.shape[0]
    out: Any = None
    start = 0
    single = True
    for part in native_chunks(arr):
        result = fn(part)
        del part  # one converted chunk alive at a time
        single = not isinstance(result, dict)
        parts = {"": result} if single else result
        if out is None:
            per_image = sum(v[:1].nbytes for v in parts.values())
            _lenet5.check_output_size(n, per_image, what)
            out = {k: np.empty((n, *v.shape[1:]), dtype=v.dtype) for k, v in parts.items()}
        rows = 0
        for k, v in parts.items():
            out[k][start : start + v.shape[0]] = v
            rows = v.shape[0]
        start += rows
    return out[""] if single else out


def _reject_masked(x: Any, name: str) -> None:
    """A masked array with masked entries would lose its mask in ``np.asarray``."""
    if isinstance(x, np.ma.MaskedArray) and np.ma.count_masked(x):
        raise ValueError(
            f"{name} is a masked array with {np.ma.count_masked(x)} masked values; lenet5 "
            f"has no notion of missing pixels (fill them first, e.g. {name}.filled(0))"
        )


def _native_dtype(arr: np.ndarray, name: str) -> np.dtype[Any]:
    """The dtype the native layer reads ``arr``'s pixels in (uint8 for integers,
    float32 or float64 in native byte order for floats), or TypeError."""
    kind = arr.dtype.kind
    if kind == "u" or kind == "i":
        return np.dtype(np.uint8)
    if kind == "f":
        # float16 and float32 as float32; float64 and long double as float64
        return np.dtype(np.float32 if arr.dtype.itemsize <= 4 else np.float64)
    if kind == "b":
        raise TypeError(
            f"{name} has dtype bool; expected uint8 (0..255) or float (0..1) pixel values "
            f"(convert with {name}.astype(np.uint8) * 255 if True means ink)"
        )
    raise TypeError(
        f"{name} has dtype {arr.dtype}; expected uint8 or another integer dtype (0..255) or "
        "float32/float64 (0..1) pixel values"
    )


def _to_3d(arr: np.ndarray, name: str, *, allow_single: bool) -> np.ndarray:
    shape = arr.shape
    if arr.ndim == 3 and shape[1] == shape[2] and shape[1] in IMAGE_SIDES:
        return arr
    if arr.ndim == 2:
        if shape[1] in (784, 1024):
            side = 28 if shape[1] == 784 else 32
            return arr.reshape(shape[0], side, side)
        if shape[0] == shape[1] and shape[0] in IMAGE_SIDES:
            if allow_single:
                return arr[np.newaxis]
            raise ValueError(
                f"{name} has shape {shape}, a single image; fit needs a batch of images of "
                f"shape {_SHAPES_TEXT} (use {name}[np.newaxis] for a batch of one)"
            )
    if arr.ndim == 4:
        if shape[1] == 1 and shape[2] == shape[3] and shape[2] in IMAGE_SIDES:
            return arr[:, 0]
        if shape[3] == 1 and shape[1] == shape[2] and shape[1] in IMAGE_SIDES:
            return arr[..., 0]
    single = " or a single image (28, 28) or (32, 32)" if allow_single else ""
    raise ValueError(f"{name} must have shape {_SHAPES_TEXT}{single}; got shape {shape}")


def _check_pixel_range(arr: np.ndarray, name: str) -> None:
    if arr.dtype == np.uint8:
        return
    lo, hi = arr.min(), arr.max()
    if arr.dtype.kind in "iu":
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{name} has integer pixel values from {lo} to {hi}; integer images "
                "must hold values in 0..255"
            )
        return
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinity; pixel values must be finite")
    if lo < 0.0 or hi > 1.0:
        hint = " (divide 0..255 data by 255)" if hi <= 255.0 and lo >= 0.0 else ""
        raise ValueError(
            f"{name} has float pixel values from {lo:g} to {hi:g}; float images must lie "
            f"in [0, 1]{hint}"
        )


def check_labels(y: Any, n_samples: int | None = None, name: str = "y") -> np.ndarray:
    """Check class labels and return them as a 1-D array.

    Parameters
    ----------
    y : array-like of shape (n,)
        Integer, string, bool, or integral float labels. Object arrays of such values
        (for example from pandas) are accepted.
    n_samples : int, optional
        The number of images the labels belong to; a different length raises.
    name : str
        Name of the argument, used in error messages.

    Returns
    -------
    ndarray of shape (n,)

    Examples
    --------
    >>> from lenet5._validation import check_labels
    >>> check_labels(["cat", "dog"], 2)
    array(['cat', 'dog'], dtype='<U3')
    """
    what = "a 1-D array of class labels"
    _reject_masked(y, name)
    arr = _as_array(y, name, what)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be {what}; got a single {type(y).__name__} {y!r:.40}")
    if arr.ndim != 1:
        hint = f" (use {name}.ravel())" if arr.ndim == 2 and 1 in arr.shape else ""
        raise ValueError(f"{name} must be {what}; got shape {arr.shape}{hint}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(
            f"x and {name} have different lengths: {n_samples} images but {arr.shape[0]} labels"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has 0 labels; at least 1 is required")
    kind = arr.dtype.kind
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity; labels must be finite")
        if not np.array_equal(arr, np.round(arr)):
            bad = arr[arr != np.round(arr)][0].item()
            raise ValueError(
                f"{name} has non-integer float labels (for example {bad!r}), a continuous "
                "target; LeNet5 is a classifier, labels must be integers or strings"
            )
    elif kind == "O":
        for value in arr:
            if value is None or (
                isinstance(value, (float, np.floating)) and not np.isfinite(value)
            ):
                raise ValueError(f"{name} contains a missing label ({value!r})")
            if not isinstance(value, (str, bytes, numbers.Integral, np.bool_, bool)):
                if isinstance(value, numbers.Real) and float(value).is_integer():
                    continue
                raise TypeError(
                    f"{name} contains {type(value).__name__} {value!r:.40}; labels must be "
                    "integers or strings"
                )
    elif kind not in "iubUS":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; labels must be integers, strings, bools or "
            "integral floats"
        )
    return arr


def encode_labels(y: np.ndarray, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, indices)`` with ``classes[indices] == y`` and at least 2 classes.

    Examples
    --------
    >>> from lenet5._validation import encode_labels
    >>> classes, idx = encode_labels(np.array(["b", "a", "b"]))
    >>> classes.tolist(), idx.tolist()
    (['a', 'b'], [1, 0, 1])
    """
    try:
        classes, indices = np.unique(y, return_inverse=True)
    except TypeError as err:
        raise TypeError(f"{name} mixes labels that cannot be compared ({err})") from None
    except Exception as err:  # a label type whose comparison itself fails
        raise comparison_failed(name, err) from err
    if classes.shape[0] < 2:
        raise ValueError(
            f"{name} has a single class ({classes.tolist()[0]!r}); at least 2 classes are "
            "required (a classifier cannot learn from one class)"
        )
    if classes.shape[0] > MAX_CLASSES:
        raise ValueError(
            f"{name} has {classes.shape[0]} classes; the output layer holds at most "
            f"{MAX_CLASSES} (are these labels continuous values rather than classes?)"
        )
    return classes, np.ascontiguousarray(indices.reshape(-1), dtype=np.int64)


def comparison_failed(name: str, err: Exception) -> TypeError:
    return TypeError(
        f"{name} holds labels whose comparison fails ({type(err).__name__}: {err}); labels "
        "must be integers, strings or bools that compare with each other"
    )


def labels_to_indices(y: np.ndarray, classes: np.ndarray, name: str = "y") -> np.ndarray:
    """Map labels to indices into the sorted ``classes``; unknown labels raise ValueError.

    Examples
    --------
    >>> from lenet5._validation import labels_to_indices
    >>> labels_to_indices(np.array([3, 1]), np.array([1, 2, 3])).tolist()
    [2, 0]
    """
    unknown: np.ndarray | None = None
    try:
        pos = np.searchsorted(classes, y)
        pos = np.clip(pos, 0, len(classes) - 1)
        found = np.asarray(classes[pos] == y, dtype=bool)
        if found.shape != y.shape or not found.all():
            if found.shape == y.shape:
                unknown = np.unique(y[~found])
            else:  # elementwise comparison impossible (e.g. strings against numbers)
                unknown = np.unique(y)
    except TypeError as err:
        raise TypeError(
            f"{name} has labels that cannot be compared with the classes "
            f"{classes.tolist()!r:.80} ({err})"
        ) from None
    except Exception as err:  # a label type whose comparison itself fails
        raise comparison_failed(name, err) from err
    if unknown is not None:
        raise ValueError(
            f"{name} has labels {unknown.tolist()!r:.80} that are not among the classes "
            f"{classes.tolist()!r:.120}"
        )
    return np.ascontiguousarray(pos, dtype=np.int64)


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """Check sample weights: ``n_samples`` finite non-negative numbers, not all zero.

    Examples
    --------
    >>> from lenet5._validation import check_sample_weight
    >>> check_sample_weight([1, 2, 0], 3).tolist()
    [1.0, 2.0, 0.0]
    """
    if sample_weight is None:
        return None
    name = "sample_weight"
    what = f"{n_samples} finite non-negative numbers"
    _reject_masked(sample_weight, name)
    arr = _as_array(sample_weight, name, what)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be {what}; got {_describe(arr)}")
    if arr.shape != (n_samples,):
        raise ValueError(f"{name} must be {what}, shape ({n_samples},); got shape {arr.shape}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ValueError(
            f"{name} must be {what}; got {arr[bad][0].item()!r} at index "
            f"{int(np.flatnonzero(bad)[0])}"
        )
    if not arr.sum() > 0:
        raise ValueError(f"{name} must not be all zero (the weighted mean is undefined)")
    return arr


def check_weights(weights: Any, name: str = "weights") -> dict[str, np.ndarray]:
    """Check the container and dtypes of a ``set_weights`` argument.

    Returns a new dict whose values are float32 or float64 arrays in native byte order
    (integer and other real dtypes are converted); the names, shapes and finiteness are
    checked by the native layer, which changes nothing unless every entry is right.

    Examples
    --------
    >>> from lenet5._validation import check_weights
    >>> check_weights({"b": [1, 2]})["b"].dtype
    dtype('float64')
    """
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"{name} must be a dict of name -> array, as returned by get_weights(); got "
            f"{_describe(weights)}"
        )
    checked: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        if not isinstance(key, str):
            raise TypeError(f"{name} names must be strings; got {type(key).__name__} {key!r:.40}")
        entry = f"{name}[{key!r}]"
        _reject_masked(value, entry)
        what = "a float32 array (or of another real dtype)"
        arr = _as_array(value, entry, what)
        kind = arr.dtype.kind
        if kind not in "iuf":
            raise TypeError(f"{entry} must be {what}; got {_describe(arr)}")
        if arr.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            with np.errstate(over="ignore"):  # out-of-range values are reported natively
                arr = arr.astype(np.float64)
        checked[key] = arr
    return checked


def check_bool(value: Any, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False; got {value!r:.80}")


def check_int(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r:.80}")
    value = int(value)
    if value < low or value > (MAX_INT if high is None else high):
        limit = f"in {low}..{high}" if high is not None else f">= {low}"
        if high is None and value > MAX_INT:
            limit = f"in {low}..2**63-1"
        raise ValueError(f"{name} must be an integer {limit}; got {value!r:.80}")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {value!r:.80}")
    value = float(value)
    ok = np.isfinite(value) and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        upper = "inf)" if high is None else f"{high:g}{right}"
        raise ValueError(
            f"{name} must be a finite number in {left}{low:g}, {upper}; got {value!r}"
        )
    return value


def check_choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}; got {value!r:.80}")
    return value
