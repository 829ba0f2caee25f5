"""Model files and pickling for :class:`~lenet5.LeNet5`: plain values and arrays only.

A model file is one safetensors file (readable by the ``safetensors`` package, so
PyTorch users get the weights under the names of ``get_weights``). Its tensors are the
fitted weights, float32; its ``__metadata__`` maps these keys to strings:

``format``
    ``"lenet5"``.
``format_version``
    ``"2"`` for a file with the optimizer's state (``optimizer``), else ``"1"`` (as
    before that state was saved, so older lenet5 versions still read such files).
    :func:`load` refuses a newer version than it knows.
``library_version``
    The lenet5 version that wrote the file (information only).
``architecture``
    JSON object: the native network's constructor values (``n_classes``,
    ``activation``, ``pooling``, ``c3``, ``output``, ``init``, ...), the ones the
    weights were fitted with.
``hyperparameters``
    JSON object: ``get_params()``, restricted to JSON values (None, bool, int, finite
    float, str and lists of them). Other values (a callable ``lr_schedule``, callbacks,
    a ``RandomState``) cannot be stored: :func:`save` leaves them out with a
    :class:`UserWarning`, and the loaded model has the defaults for them.
``classes``
    JSON object ``{"dtype": ..., "values": [...]}``: ``classes_`` with its numpy dtype,
    so integer, bool, float and string labels come back with the same type and values.
    One value per network output, and at most :data:`MAX_CLASSES_BYTES` as an array
    (both checked before the array is built).
``n_iter``
    Decimal integer: ``n_iter_``.
``history``
    JSON object: ``history_`` (NaN as null).
``best_epoch``
    JSON: ``best_epoch_`` (an integer or null).
``n_features_in`` (optional)
    Decimal integer: ``n_features_in_``, the pixels per training image (784 or 1024).
``optimizer`` (optional, format version 2)
    JSON object: the training state that lets ``fit(..., warm_start=True)`` and
    ``partial_fit`` carry on exactly where training stopped. ``settings``: the
    optimizer's name and settings ``[optimizer, momentum, weight_decay, nesterov,
    beta_1, beta_2, epsilon, mu]`` it was made with; ``step``: the updates taken (Adam's
    bias corrections); ``rng``: the four 64-bit words of the random stream that shuffles
    the epochs, draws the distortions and the curvature samples; ``learning_rate``: the
    last epoch's. Its buffers are the tensors ``optimizer.m`` (momentum, or Adam's first
    moment), ``optimizer.v`` (Adam's second moment) and ``optimizer.h`` (SDLM's
    curvature), float32 vectors over every parameter in the network's internal order,
    present when the optimizer keeps them. Their lengths are checked against the
    optimizer and the network, their values as the weights (finite; ``v`` and ``h`` not
    negative).

The file is parsed in Rust (``lenet5._lenet5.load_safetensors``), which checks every
byte of it; this module then checks the metadata and rebuilds the estimator through
``set_weights``, which checks names, shapes and values again. Nothing in a file can run
code: there is no pickle inside. Every problem is a :class:`ValueError` naming the file
and the problem (:class:`OSError` with ``errno`` and ``filename`` for a file that cannot
be read).

``getstate`` / ``setstate`` serve ``pickle`` and ``copy.deepcopy``: the state holds the
hyperparameters as they are (pickle carries callables like any other object), the
weights as numpy arrays and the fitted attributes as plain values, never a native
handle, and ``setstate`` rebuilds the network through the same checks as :func:`load`.
Both keep the optimizer's state (the ``optimizer`` entry above), so training that
continues after a load or an unpickle goes on as it would have without them; a file or
pickle without that state (from an older lenet5) loads, and its training continues with a
fresh optimizer state.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from typing import Any

import numpy as np

from . import _lenet5
from ._params import OPTIMIZERS, resolve
from ._training import commit_new_network

__all__ = ["FORMAT", "FORMAT_VERSION", "getstate", "load", "save", "setstate"]

#: Value of the ``format`` metadata entry.
FORMAT = "lenet5"
#: The model file format this version writes, and the newest it reads.
FORMAT_VERSION = 2
#: Version of the pickle state of :func:`getstate`.
STATE_VERSION = 1

# Metadata entries every lenet5 model file has.
_REQUIRED = ("architecture", "hyperparameters", "classes", "n_iter")

# numpy dtypes that classes_ may have in a file (object arrays hold str, bool, int,
# float values).
_CLASS_DTYPE = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|U[0-9]{1,6}|S[0-9]{1,6})$")
_OBJECT = "object"

_INT = re.compile(r"^(0|[1-9][0-9]{0,17})$")

#: Most bytes ``classes_`` may take in a model file's metadata dtype (item size times the
#: number of classes): checked before the array is built, on save and on load.
MAX_CLASSES_BYTES = 16 * 1024 * 1024


class _NotPlain(Exception):
    """A value that JSON cannot carry exactly."""


# ---------------------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    """``value`` as a JSON value, or raise _NotPlain."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isfinite(f):
            return f
        raise _NotPlain
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise _NotPlain


def _plain_param(name: str, value: Any) -> Any:
    """A hyperparameter as a JSON value, or raise _NotPlain. A ``class_weight`` dict,
    whose labels JSON could not hold as object keys, becomes a list of [label, weight]
    pairs (see :func:`_decoded_params`)."""
    if name == "class_weight" and isinstance(value, dict):
        return [[_plain(label), _plain(weight)] for label, weight in value.items()]
    return _plain(value)


def _decoded_params(params: dict[str, Any]) -> dict[str, Any]:
    """The stored hyperparameters as keyword arguments: a ``class_weight`` list of
    [label, weight] pairs (as :func:`_plain_param` writes it) back as a dict."""
    pairs = params.get("class_weight")
    if not isinstance(pairs, list):
        return params
    labels = (str, bool, int, float)
    if not all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], labels) for pair in pairs
    ):
        raise ValueError(
            "class_weight must be stored as a list of [label, weight] pairs, each label a "
            f"string or a number; got {pairs!r:.80}"
        )
    weights = dict(pairs)
    if len(weights) != len(pairs):
        raise ValueError(f"class_weight lists a label twice; got {pairs!r:.80}")
    return {**params, "class_weight": weights}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _duplicates_refused(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text:.40} does not fit a float")
    return value


def _loads(text: str, key: str) -> Any:
    """Strict JSON (no NaN/Infinity, no overflowing numbers, no duplicate keys) of
    metadata entry ``key``."""
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_duplicates_refused,
        )
    except (ValueError, RecursionError) as err:
        raise ValueError(f"metadata entry {key!r} is not valid JSON ({err})") from None


def _check_int(value: Any, what: str, low: int = 0) -> int:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Integral)
        or value < low
    ):
        raise ValueError(f"{what} must be an integer >= {low}; got {value!r:.80}")
    return int(value)


# ---------------------------------------------------------------------------- pieces


def _check_classes_size(dtype: np.dtype[Any], n: int, what: str) -> None:
    size = dtype.itemsize * n
    if size > MAX_CLASSES_BYTES:
        raise ValueError(
            f"{what} {n} classes of dtype {dtype.str} would take {size:,} bytes; at most "
            f"{MAX_CLASSES_BYTES:,} bytes are allowed (labels of {dtype.itemsize:,} bytes "
            "each)"
        )


def _encode_classes(classes: np.ndarray) -> dict[str, Any]:
    kind = classes.dtype.kind
    _check_classes_size(classes.dtype, classes.shape[0], "cannot save classes_:")
    if kind in "biufU":
        return {"dtype": classes.dtype.str, "values": _plain(classes.tolist())}
    if kind == "S":
        return {"dtype": classes.dtype.str, "values": [v.decode("latin-1") for v in classes]}
    if kind == "O":
        values = []
        for v in classes:
            try:
                if not isinstance(v, (str, bool, np.bool_, numbers.Real)):
                    raise _NotPlain
                values.append(_plain(v))
            except _NotPlain:
                raise ValueError(
                    f"cannot save classes_ holding {type(v).__name__} {v!r:.40}; model "
                    "files hold str, bool, int and float labels"
                ) from None
        return {"dtype": _OBJECT, "values": values}
    raise ValueError(f"cannot save classes_ of dtype {classes.dtype}")


def _decode_classes(obj: Any, n_classes: int) -> np.ndarray:
    """classes_ from its JSON form; the number of values and the bytes the array takes
    are checked (against the network's ``n_classes`` and :data:`MAX_CLASSES_BYTES`)
    before it is built."""
    if not isinstance(obj, dict) or set(obj) != {"dtype", "values"}:
        raise ValueError('classes must be a JSON object {"dtype": ..., "values": [...]}')
    dtype, values = obj["dtype"], obj["values"]
    if not isinstance(values, list):
        raise ValueError("classes.values must be a list")
    if len(values) != n_classes:
        raise ValueError(
            f"there are {len(values)} classes but the network has {n_classes} outputs"
        )
    if not isinstance(dtype, str) or not (dtype == _OBJECT or _CLASS_DTYPE.match(dtype)):
        raise ValueError(f"classes has the unsupported dtype {dtype!r:.40}")
    try:
        numpy_dtype = np.dtype(object if dtype == _OBJECT else dtype)
    except TypeError:
        raise ValueError(f"classes has the unsupported dtype {dtype!r:.40}") from None
    kind = numpy_dtype.kind
    _check_classes_size(numpy_dtype, n_classes, "classes:")

    def all_of(types: tuple[type, ...], exclude_bool: bool = True) -> bool:
        return all(
            isinstance(v, types) and not (exclude_bool and isinstance(v, bool)) for v in values
        )

    ok = {
        "b": lambda: all(isinstance(v, bool) for v in values),
        "i": lambda: all_of((int,)),
        "u": lambda: all_of((int,)),
        "f": lambda: all_of((int, float)),
        "U": lambda: all_of((str,)),
        "S": lambda: all_of((str,)),
        "O": lambda: all_of((str, bool, int, float), exclude_bool=False),
    }[kind]()
    if not ok:
        raise ValueError(f"classes.values do not all fit the dtype {dtype}")
    try:
        if kind == "S":
            arr = np.array([v.encode("latin-1") for v in values], dtype=dtype)
        elif kind == "O":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
        else:
            arr = np.array(values, dtype=dtype)
    except (ValueError, OverflowError, UnicodeError) as err:
        raise ValueError(f"classes.values do not fit the dtype {dtype} ({err})") from None
    if kind == "S":
        values = [v.encode("latin-1") for v in values]
    if kind in "US" and arr.tolist() != values:
        # Longer strings than the dtype holds would be cut silently.
        raise ValueError(f"classes.values do not fit the dtype {dtype}")
    return arr


def _check_classes(classes: Any, n_classes: int) -> np.ndarray:
    """classes_ as fit leaves it: 1-D, sorted, unique, one per network output."""
    if not isinstance(classes, np.ndarray) or classes.ndim != 1:
        raise ValueError("classes_ must be a 1-D numpy array")
    if classes.shape[0] != n_classes:
        raise ValueError(
            f"there are {classes.shape[0]} classes but the network has {n_classes} outputs"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unique = np.unique(classes)
            same = unique.shape == classes.shape and bool(np.all(unique == classes))
    except TypeError:
        same = False
    except Exception as err:  # a label object whose comparison fails otherwise
        raise ValueError(
            f"classes_ holds labels that cannot be compared ({type(err).__name__}: {err})"
        ) from err
    if not same:
        raise ValueError("classes_ must be sorted and hold each label once")
    return classes


def _check_architecture(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError("architecture must be a JSON object")
    for key, value in obj.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"architecture {key} is not finite")
        if not (value is None or isinstance(value, (str, bool, int, float))):
            raise ValueError(f"architecture {key} must be a plain value; got {value!r:.40}")
    _check_int(obj.get("n_classes"), "architecture n_classes", low=2)
    return obj


def _build_network(architecture: dict[str, Any], weights: dict[str, Any]) -> Any:
    """A native network of this architecture holding these weights, all checked."""
    options = dict(architecture)
    n_classes = options.pop("n_classes")
    try:
        net = _lenet5.Network(n_classes, **options)
    except (TypeError, ValueError, OverflowError) as err:  # e.g. an unknown option
        raise ValueError(f"architecture {architecture!r:.200} is not supported ({err})") from None
    if not isinstance(weights, dict):
        raise ValueError("the weights must be a dict name -> array")
    try:
        net.set_weights(weights)
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad weights: {err}") from None
    return net


def _encode_history(history: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out = {}
    for key, values in history.items():
        row = []
        for v in values:
            try:
                row.append(_plain(v))
            except _NotPlain:
                row.append(None)  # NaN (no validation data)
        out[str(key)] = row
    return out


def _check_history(obj: Any) -> dict[str, list[Any]]:
    if not isinstance(obj, dict):
        raise ValueError("history must be a JSON object of lists")
    out: dict[str, list[Any]] = {}
    lengths = set()
    for key, values in obj.items():
        if not isinstance(key, str) or not isinstance(values, list):
            raise ValueError("history must map names to lists")
        row: list[Any] = []
        for v in values:
            if v is None:
                row.append(math.nan)
            elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
                row.append(v)
            else:
                raise ValueError(f"history[{key!r}] holds {v!r:.40}; numbers only")
        out[key] = row
        lengths.add(len(row))
    if len(lengths) > 1:
        raise ValueError("history lists have different lengths")
    return out


def _check_best_epoch(value: Any) -> int | None:
    if value is None:
        return None
    return _check_int(value, "best_epoch", low=1)


class _Fitted:
    """A checked fitted state, ready to install on an estimator."""

    def __init__(
        self,
        architecture: Any,
        weights: Any,
        classes: Any,
        n_iter: Any,
        history: Any,
        best_epoch: Any,
    ) -> None:
        self.net = _build_network(_check_architecture(architecture), weights)
        self.classes = _check_classes(classes, int(self.net.n_classes))
        self.attributes = {
            "n_iter_": _check_int(n_iter, "n_iter"),
            "history_": _check_history(history),
            "best_epoch_": _check_best_epoch(best_epoch),
        }

    def install(self, model: Any, extra: dict[str, Any]) -> None:
        """Installs the network the way ``fit`` does (every fitted attribute reset), then
        the extra attributes and the saved ones."""
        commit_new_network(model, self.net, self.classes)
        model.__dict__.update(extra)
        model.__dict__.update(self.attributes)


def _split_params(cls: Any, params: dict[str, Any], where: str) -> dict[str, Any]:
    """The entries of ``params`` that are hyperparameters of ``cls``; warns about others."""
    names = cls._param_names()
    unknown = sorted(str(k) for k in params if k not in names)
    if unknown:
        warnings.warn(
            f"{where} has hyperparameters that {cls.__name__} does not have: "
            f"{', '.join(unknown)}; they are ignored",
            UserWarning,
            stacklevel=4,
        )
    return {k: v for k, v in params.items() if k in names}


def _check_params(model: Any) -> None:
    try:
        resolve(model)
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad hyperparameters: {err}") from None


# ---------------------------------------------------------------------------- files


def save(model: Any, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
    """Write the fitted ``model`` to ``path`` (one safetensors file), atomically.

    The file holds the weights (float32, the names of ``get_weights``) and, as
    metadata, the format and library versions, the architecture, the hyperparameters,
    the classes, ``n_iter_``, ``history_`` and ``best_epoch_``. It is written to a
    temporary file in the same folder (``.<name>.lenet5-save-<pid>-<n>.tmp``, locked
    while it is written), flushed to disk and renamed over ``path``, so ``path`` holds
    the old or the new model, never a mix, whatever happens meanwhile. Temporary files
    of the same ``path`` left by killed saves (their lock free) are removed first.

    Hyperparameters that are not JSON values (a callable ``lr_schedule``, callbacks, a
    ``RandomState`` or ``Generator`` as ``random_state``) are left out with a
    :class:`UserWarning`; the loaded model has their defaults.

    Raises
    ------
    NotFittedError
        When the model has not been fitted.
    ValueError
        When a stored hyperparameter is invalid, or ``classes_`` would take more than
        :data:`MAX_CLASSES_BYTES` (the file could not be loaded).
    OSError
        When the file cannot be written (the previous file, if any, is kept), with
        ``errno`` and ``filename`` set.
    """
    net = model._fitted_net()
    target = os.fspath(path)
    if not isinstance(target, str):
        target = os.fsdecode(target)
    stored: dict[str, Any] = {}
    dropped = []
    for name, value in model.get_params().items():
        try:
            stored[name] = _plain_param(name, value)
        except _NotPlain:
            dropped.append(name)
    if dropped:
        warnings.warn(
            f"{type(model).__name__}.save: the hyperparameters {', '.join(dropped)} are not "
            "JSON values (None, bool, int, float, str or lists of them) and are not saved; "
            "the loaded model will have their default values",
            UserWarning,
            stacklevel=3,
        )
    # What is stored must load: check it as load will.
    _check_params(type(model)(**_decoded_params(stored)))
    config = dict(net.config())
    weights = net.get_weights()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "library_version": _lenet5.__version__,
        "architecture": _dumps(_plain_dict(config)),
        "hyperparameters": _dumps(stored),
        "classes": _dumps(_encode_classes(np.asarray(model.classes_))),
        "n_iter": str(int(model.n_iter_)),
        "history": _dumps(_encode_history(model.history_)),
        "best_epoch": _dumps(model.best_epoch_),
    }
    if "n_features_in_" in model.__dict__:
        metadata["n_features_in"] = str(int(model.n_features_in_))
    if not isinstance(include_optimizer, (bool, np.bool_)):
        raise ValueError(f"include_optimizer must be True or False; got {include_optimizer!r:.80}")
    train_state = _train_state(model) if include_optimizer else None
    if train_state is None:
        metadata["format_version"] = "1"
    else:
        metadata["optimizer"] = _dumps(
            {k: train_state[k] for k in ("settings", "step", "rng", "learning_rate")}
        )
        for name, key in _STATE_TENSORS.items():
            if train_state[key].size:
                weights[name] = train_state[key]
    _lenet5.save_safetensors(target, weights, metadata)


def _plain_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in d.items()}


def load(path: str | os.PathLike[str], cls: type | None = None) -> Any:
    """Read a model written by :func:`save`; returns a fitted ``cls`` (``LeNet5``).

    The loaded model predicts exactly as the saved one did and can continue training
    (``partial_fit``, or ``fit`` with ``warm_start=True``) from the saved optimizer state
    and random stream (a fresh optimizer state for a file without them).

    Raises
    ------
    ValueError
        For anything wrong in the file: not a safetensors file, malformed header,
        wrong tensor names, shapes or values, missing or malformed metadata, not a
        lenet5 model, or a ``format_version`` newer than this lenet5 reads. A file
        that is not safetensors at all is named by what it looks like (a NumPy file, a
        pickle, text, an image, empty, ...), followed by the exact problem.
    OSError
        When the file cannot be read or is not a regular file, with ``errno`` and
        ``filename`` set.
    """
    if cls is None:
        from ._estimator import LeNet5

        cls = LeNet5
    source = os.fspath(path)
    if not isinstance(source, str):
        source = os.fsdecode(source)
    tensors, metadata = _lenet5.load_safetensors(source)
    try:
        return _from_file(cls, tensors, metadata)
    except ValueError as err:
        raise ValueError(f"model file {source!r}: {err}") from None


def _from_file(cls: type, tensors: dict[str, Any], metadata: dict[str, str]) -> Any:
    fmt = metadata.get("format")
    if fmt is None:
        raise ValueError(
            "not a lenet5 model file: its metadata has no 'format' entry (bare weights "
            "can be given to LeNet5.set_weights after reading them with the safetensors "
            "package)"
        )
    if fmt != FORMAT:
        raise ValueError(f"not a lenet5 model file: its format is {fmt!r:.80}")
    version_text = metadata.get("format_version", "")
    if not _INT.match(version_text) or int(version_text) < 1:
        raise ValueError(f"format_version must be a positive integer; got {version_text!r:.40}")
    version = int(version_text)
    if version > FORMAT_VERSION:
        raise ValueError(
            f"the file has format_version {version}, newer than this lenet5 "
            f"({_lenet5.__version__}) reads (up to {FORMAT_VERSION}); upgrade lenet5 to "
            "load it"
        )
    missing = [k for k in _REQUIRED if k not in metadata]
    if missing:
        raise ValueError(f"the metadata lacks {', '.join(missing)}")
    n_iter_text = metadata["n_iter"]
    if not _INT.match(n_iter_text):
        raise ValueError(f"n_iter must be a non-negative integer; got {n_iter_text!r:.40}")
    params = _loads(metadata["hyperparameters"], "hyperparameters")
    if not isinstance(params, dict):
        raise ValueError("hyperparameters must be a JSON object")
    history = _loads(metadata["history"], "history") if "history" in metadata else {}
    best_epoch = _loads(metadata["best_epoch"], "best_epoch") if "best_epoch" in metadata else None
    architecture = _check_architecture(_loads(metadata["architecture"], "architecture"))
    tensors = dict(tensors)
    buffers = {key: tensors.pop(name) for name, key in _STATE_TENSORS.items() if name in tensors}
    unknown = sorted(name for name in tensors if name.startswith("optimizer."))
    if unknown:
        raise ValueError(
            f"unknown optimizer state tensors {unknown!r:.120}; a model file may hold "
            f"{', '.join(_STATE_TENSORS)}"
        )
    train_state = None
    if "optimizer" in metadata:
        if version < 2:
            raise ValueError("an optimizer entry needs format_version 2")
        train_state = _loads(metadata["optimizer"], "optimizer")
        if not isinstance(train_state, dict) or set(train_state) != {
            "settings",
            "step",
            "rng",
            "learning_rate",
        }:
            raise ValueError(
                "optimizer must be a JSON object with exactly the keys settings, step, rng "
                "and learning_rate"
            )
        empty = np.zeros(0, dtype=np.float32)
        train_state.update({key: buffers.get(key, empty) for key in _STATE_TENSORS.values()})
    elif buffers:
        raise ValueError(
            f"the file has optimizer state tensors ({', '.join(sorted(buffers))}) but no "
            "optimizer metadata entry"
        )
    fitted = _Fitted(
        architecture,
        tensors,
        _decode_classes(_loads(metadata["classes"], "classes"), architecture["n_classes"]),
        int(n_iter_text),
        history,
        best_epoch,
    )
    extra = {}
    if "n_features_in" in metadata:
        text = metadata["n_features_in"]
        if text not in ("784", "1024"):
            raise ValueError(f"n_features_in must be 784 or 1024; got {text!r:.40}")
        extra["n_features_in_"] = int(text)
    model = cls(**_decoded_params(_split_params(cls, params, "the model file")))
    _check_params(model)
    key = None if train_state is None else _restore_train_state(fitted.net, train_state)
    if key is not None and key[0] == "sdlm":
        extra["hessian_diag_"] = fitted.net.curvature()
        extra["step_sizes_"] = fitted.net.step_sizes()
    fitted.install(model, extra)
    if key is not None:
        model.__dict__["_optimizer_key"] = key
    return model


# ---------------------------------------------------------------------------- training state

# The tensors of a model file holding the optimizer's buffers, and their train_state keys.
_STATE_TENSORS = {"optimizer.m": "m", "optimizer.v": "v", "optimizer.h": "h"}
_STATE_KEYS = ("settings", "step", "rng", "learning_rate", "m", "v", "h")


def _train_state(model: Any) -> dict[str, Any] | None:
    """The optimizer's state and the random stream's position, or None when the model has
    none (fitted before the state was kept, or not fitted)."""
    key = model.__dict__.get("_optimizer_key")
    net = model.__dict__.get("_net")
    if key is None or net is None:
        return None
    state = net.train_state()
    if state is None:
        return None
    return {
        "settings": _plain(list(key)),
        "step": int(state["step"]),
        "rng": [int(w) for w in state["rng"]],
        "learning_rate": float(state["learning_rate"]),
        "m": state["m"],
        "v": state["v"],
        "h": state["h"],
    }


def _restore_train_state(net: Any, state: Any) -> tuple[Any, ...]:
    """Checks ``state`` (made by :func:`_train_state`, from a file or a pickle), installs
    it in ``net`` and returns the optimizer key (``_estimator._optimizer_key``'s form).
    ``net`` keeps no optimizer state when a check fails (ValueError)."""
    if not isinstance(state, dict) or set(state) != set(_STATE_KEYS):
        raise ValueError(f"the optimizer state must be a dict of {', '.join(_STATE_KEYS)}")
    settings = state["settings"]
    if not isinstance(settings, (list, tuple)) or len(settings) != 8:
        raise ValueError(
            "optimizer settings must be [optimizer, momentum, weight_decay, nesterov, "
            f"beta_1, beta_2, epsilon, mu]; got {settings!r:.120}"
        )
    name, momentum, weight_decay, nesterov, beta_1, beta_2, epsilon, mu = settings
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r:.40}")
    if not isinstance(nesterov, bool):
        raise ValueError(f"optimizer nesterov must be true or false; got {nesterov!r:.40}")
    numbers_ = {
        "momentum": momentum,
        "weight_decay": weight_decay,
        "beta_1": beta_1,
        "beta_2": beta_2,
        "epsilon": epsilon,
        "mu": mu,
        "learning_rate": state["learning_rate"],
    }
    for what, value in numbers_.items():
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            raise ValueError(f"optimizer {what} must be a finite number; got {value!r:.40}")
    step = _check_int(state["step"], "optimizer step")
    rng = state["rng"]
    if (
        not isinstance(rng, (list, tuple))
        or len(rng) != 4
        or not all(
            isinstance(w, numbers.Integral) and not isinstance(w, (bool, np.bool_)) for w in rng
        )
        or not all(0 <= w < 2**64 for w in rng)
    ):
        raise ValueError(f"optimizer rng must be four integers in [0, 2**64); got {rng!r:.120}")
    if step >= 2**62:
        raise ValueError(f"optimizer step must be below 2**62; got {step}")
    buffers = {}
    for key in ("m", "v", "h"):
        value = state[key]
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.ndim != 1:
            raise ValueError(f"optimizer state {key} must be a 1-D float32 array")
        buffers[key] = value
    try:
        net.reset_optimizer(
            optimizer=name,
            learning_rate=float(state["learning_rate"]),
            momentum=float(momentum),
            weight_decay=float(weight_decay),
            nesterov=nesterov,
            beta1=float(beta_1),
            beta2=float(beta_2),
            epsilon=float(epsilon),
            seed=0,
            mu=float(mu),
        )
        net.set_train_state(step, [int(w) for w in rng], float(state["learning_rate"]), **buffers)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"bad optimizer state: {err}") from None
    return (
        name,
        float(momentum),
        float(weight_decay),
        nesterov,
        float(beta_1),
        float(beta_2),
        float(epsilon),
        float(mu),
    )


# ---------------------------------------------------------------------------- pickle

# Fitted attributes carried in the "fitted" part of the state.
_FITTED = ("classes_", "n_iter_", "history_", "best_epoch_", "n_params_")
# Attributes never carried: the native network, the fit lock, the optimizer's key.
_TRANSIENT = ("_net", "_lock", "_optimizer_key")
# The other attributes LeNet5.fit creates, carried in "attributes": per-tensor arrays
# (the names and shapes of get_weights) or None.
# n_features_in_ (784 or 1024) too.
_EXTRA = ("hessian_diag_", "step_sizes_", "n_features_in_")


def _subclass_attribute(cls: type, name: Any) -> bool:
    """Whether ``name`` may be a fitted attribute that a subclass's ``fit`` adds (as
    scikit-learn's ``validate_data`` adds ``n_features_in_``): a public name ending in
    ``_`` that is not an attribute of the class (so never a method or a property) nor one
    of LeNet5's own. LeNet5 itself has no such attributes."""
    from ._estimator import LeNet5

    return (
        cls is not LeNet5
        and isinstance(name, str)
        and name.isidentifier()
        and name.endswith("_")
        and not name.startswith("_")
        and not hasattr(cls, name)
        and name not in cls._param_names()
        and name not in _FITTED + _EXTRA
    )


def getstate(model: Any) -> dict[str, Any]:
    """The state pickled for ``model``: plain values and numpy arrays, no native handle.

    ``{"lenet5_state": 1, "library_version": str, "params": {hyperparameters},
    "fitted": None or {"architecture", "weights", "classes", "n_iter", "history",
    "best_epoch", and "train_state" when there is one}, "attributes": {"hessian_diag_",
    "step_sizes_", "n_features_in_" where present, and a subclass's own fitted
    attributes}}``. Other instance attributes are not carried:
    :func:`setstate` accepts only what ``fit`` creates, so no state can replace a method
    or add another attribute."""
    d = model.__dict__
    names = type(model)._param_names()
    state: dict[str, Any] = {
        "lenet5_state": STATE_VERSION,
        "library_version": _lenet5.__version__,
        "params": {name: d[name] for name in names if name in d},
        "fitted": None,
    }
    net = d.get("_net")
    if net is not None:
        state["fitted"] = {
            "architecture": dict(net.config()),
            "weights": net.get_weights(),
            "classes": d.get("classes_"),
            "n_iter": d.get("n_iter_", 0),
            "history": {k: list(v) for k, v in d.get("history_", {}).items()},
            "best_epoch": d.get("best_epoch_"),
        }
        train_state = _train_state(model)
        if train_state is not None:
            state["fitted"]["train_state"] = train_state
    cls = type(model)
    state["attributes"] = {
        k: v for k, v in d.items() if k in _EXTRA or _subclass_attribute(cls, k)
    }
    return state


def _check_extra(
    cls: type, attributes: dict[str, Any], weights: dict[str, np.ndarray] | None
) -> None:
    """The pickled attributes besides the fitted ones must be those fit creates, with the
    types fit gives them: a dict tensor name -> float32 array of that tensor's shape, or
    None (and only None for an unfitted model, whose ``weights`` are None). A subclass's
    own fitted attributes (see :func:`_subclass_attribute`) are its ``fit``'s business."""
    from ._estimator import LeNet5

    # LeNet5's n_features_in_ is 784 or 1024; a subclass may count its own features (as
    # one that puts tabular data on a canvas)
    own = cls is LeNet5
    sizes = "784 or 1024" if own else "a positive int"
    for key, value in attributes.items():
        if _subclass_attribute(cls, key):
            continue
        if key not in _EXTRA:
            raise ValueError(
                f"bad LeNet5 state: the attribute {key!r:.40} is not one that fit creates "
                f"(the state may hold {', '.join(_EXTRA)})"
            )
        if key == "n_features_in_":
            ok = type(value) is int and (value in (784, 1024) or (not own and value > 0))
            if not ok:
                raise ValueError(
                    f"bad LeNet5 state: n_features_in_ must be {sizes}; got {value!r:.40}"
                )
            continue
        if value is None:
            continue
        ok = (
            weights is not None
            and isinstance(value, dict)
            and all(
                isinstance(name, str)
                and name in weights
                and isinstance(array, np.ndarray)
                and array.dtype == np.float32
                and array.shape == weights[name].shape
                for name, array in value.items()
            )
        )
        if not ok:
            raise ValueError(
                f"bad LeNet5 state: {key} must be None or a dict of float32 arrays with the "
                f"names and shapes of the weights; got {type(value).__name__}"
            )


def setstate(model: Any, state: Any) -> None:
    """Restore ``model`` from :func:`getstate`'s dict, checking the weights and the
    fitted attributes as :func:`load` does. Nothing changes when a check fails."""
    if not isinstance(state, dict) or "lenet5_state" not in state:
        raise ValueError("not a LeNet5 state: expected the dict made by LeNet5.__getstate__")
    version = state["lenet5_state"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"bad LeNet5 state version {version!r:.40}")
    if version > STATE_VERSION:
        raise ValueError(
            f"this LeNet5 was pickled by a newer lenet5 ({state.get('library_version')!r:.40}, "
            f"state version {version}); this lenet5 ({_lenet5.__version__}) reads up to "
            f"{STATE_VERSION}"
        )
    cls = type(model)
    optimizer_key = None
    params = state.get("params", {})
    attributes = state.get("attributes", {})
    if not isinstance(params, dict) or not isinstance(attributes, dict):
        raise ValueError("bad LeNet5 state: params and attributes must be dicts")
    values = dict(cls._param_defaults())
    values.update(_split_params(cls, params, "the pickled LeNet5"))
    fitted = state.get("fitted")
    checked = None
    if fitted is not None:
        if not isinstance(fitted, dict):
            raise ValueError("bad LeNet5 state: fitted must be a dict or None")
        checked = _Fitted(
            fitted.get("architecture"),
            fitted.get("weights"),
            fitted.get("classes"),
            fitted.get("n_iter"),
            fitted.get("history", {}),
            fitted.get("best_epoch"),
        )
        if fitted.get("train_state") is not None:
            optimizer_key = _restore_train_state(checked.net, fitted["train_state"])
    _check_extra(cls, attributes, None if checked is None else checked.net.get_weights())
    extra = dict(attributes)
    # Everything is checked: from here on the model changes.
    for key in _TRANSIENT + _FITTED:
        model.__dict__.pop(key, None)
    model.__dict__.update(values)
    if checked is None:
        model.__dict__.update(extra)
    else:
        checked.install(model, extra)
        if optimizer_key is not None:
            model.__dict__["_optimizer_key"] = optimizer_key
