"""Command line: ``python -m lenet5 COMMAND`` (also installed as the ``lenet5`` command).

Subcommands:

``train``
    Train LeNet-5 on the embedded MNIST subset (or ``--data DIR``, a folder of IDX
    files, or ``--download``, the full MNIST), show progress, print the test accuracy
    and the wall time (process start-up included), and save the model with ``--save``.
``evaluate MODEL``
    Accuracy and confusion matrix of a saved model on a test set.
``predict MODEL INPUT...``
    Labels and probabilities for images (PNG, JPEG and what else Pillow reads; the
    optional extra ``lenet5-rs[image]``) or ``.npy`` arrays of images.
``summary MODEL``
    The layers of a saved model, their output shapes, parameters and connections.

Images given to ``predict`` are converted to grayscale (transparent parts count as
white) and prepared as MNIST prepared its digits (:func:`lenet5.datasets.prepare_digit`):
inverted when their background is light (MNIST digits are light ink on a dark background;
the background is judged from the border pixels, ``--invert`` overrides it), the digit's
bounding box scaled to fit 20x20 keeping its aspect ratio, and centred by its centre of
mass in a 28x28 field. ``.npy`` arrays of 28x28 or 32x32 images are used as they are
(inverted with ``--invert yes``); arrays of images of other sizes are prepared as image
files are. ``--no-prepare`` skips the preparation: an image file is then only padded to a
square with its background and resized to 28x28 (Lanczos).

``.npy`` inputs are read and predicted in chunks of :data:`PREDICT_CHUNK` images, so
memory does not grow with the file, and a file whose header declares more data than it
holds is refused before anything is read. Errors are reported as one line on stderr with
exit code 2. Warnings of ``train`` (training
interrupted by Ctrl-C, or training that went nowhere, :class:`lenet5.TrainingWarning`) are
one line each on stderr, ``lenet5: warning: ...``; the exit code stays 0, since the model
was trained and is evaluated (and saved with ``--save``) as it stands.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

#: Seed used when --seed is not given, so that two runs print the same accuracy.
DEFAULT_SEED = 0

_MODULE_START = time.perf_counter()


def _process_age() -> float:
    """Seconds since this process started (since this module loaded where unknown)."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        # Fields after "(comm)" start at field 3; starttime is field 22.
        start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if age >= 0:
            return age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return time.perf_counter() - _MODULE_START


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors as one line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _n_jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value != 0:
        return value
    raise argparse.ArgumentTypeError(
        "expected a positive number of threads, or as in joblib -1 for all cores, -2 for "
        f"all but one, ...; got {text!r}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subparser per command)."""
    from . import __version__
    from ._params import ACTIVATIONS, C3_CONNECTIONS, OPTIMIZERS, OUTPUTS, POOLINGS, PRESETS

    presets = tuple(PRESETS)

    parser = _Parser(
        prog="lenet5",
        description="LeNet-5 (LeCun et al., 1998) with a Rust core.",
    )
    parser.add_argument("--version", action="version", version=f"lenet5 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train on MNIST-style data and print the test accuracy",
        description=(
            "Train LeNet-5 on the embedded MNIST subset (4,000 training and 1,000 test "
            "digits), on a folder of IDX files or on the full MNIST, then print the test "
            "accuracy and the wall time including start-up, and save the model with --save. "
            "Ctrl-C stops training early and evaluates (and saves) the model as it stands."
        ),
    )
    _add_data_options(train, "train and test on")
    train.add_argument(
        "--epochs", type=_positive_int, metavar="N", help="passes over the training data"
    )
    train.add_argument("--batch-size", type=_positive_int, metavar="N", help="images per batch")
    train.add_argument(
        "--learning-rate", type=_positive_float, metavar="X", help="optimizer step size"
    )
    train.add_argument(
        "--n-jobs",
        type=_n_jobs,
        metavar="N",
        help="threads (default: all cores, also -1; -2: all but one)",
    )
    train.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"random seed for initialisation and shuffling (default: {DEFAULT_SEED})",
    )
    if presets:
        train.add_argument(
            "--preset",
            choices=presets,
            help="a set of hyperparameters (the options below override it)",
        )
    train.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer")
    train.add_argument("--activation", choices=ACTIVATIONS, help="activation function")
    train.add_argument("--pooling", choices=POOLINGS, help="pooling layers S2 and S4")
    train.add_argument("--c3", choices=C3_CONNECTIONS, help="connections from S2 to C3")
    train.add_argument("--output", choices=OUTPUTS, help="output layer")
    train.add_argument(
        "--save",
        metavar="PATH",
        help="write the trained model to PATH (a safetensors file; load it with "
        "LeNet5.load or the evaluate, predict and summary commands)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress output, only the results")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy and confusion matrix of a saved model",
        description=(
            "Print the accuracy and the confusion matrix (rows: true labels, columns: "
            "predicted labels) of a saved model on the test split of the embedded MNIST "
            "subset (1,000 digits), of a folder of IDX files, or of the full MNIST."
        ),
    )
    evaluate.add_argument("model", metavar="MODEL", help="a model file written by train --save")
    _add_data_options(evaluate, "test on")
    evaluate.add_argument(
        "--n-jobs",
        type=_n_jobs,
        metavar="N",
        help="threads (default: all cores, also -1; -2: all but one)",
    )
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser(
        "predict",
        help="labels and probabilities for image files or .npy arrays",
        description=(
            "Print the predicted label and its probability for each image: PNG, JPEG or "
            "any format Pillow reads (pip install 'lenet5-rs[image]'), converted to "
            "grayscale "
            "and prepared as MNIST's digits (inverted when the background is light, the "
            "digit scaled to fit 20x20 and centred by its centre of mass in 28x28); or .npy "
            "files of uint8 (0-255) or float (0-1) images shaped (28, 28), (n, 28, 28), "
            "(n, 784), (n, 32, 32) or (n, 1, 28, 28), light digits on a dark background as "
            "in MNIST, used as they are, or (h, w) / (n, h, w) images of other sizes, "
            "prepared as image files are."
        ),
    )
    predict.add_argument("model", metavar="MODEL", help="a model file written by train --save")
    predict.add_argument("inputs", metavar="INPUT", nargs="+", help="image or .npy files")
    predict.add_argument(
        "--all",
        action="store_true",
        help="print the probability of every class, not only of the predicted one",
    )
    predict.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help=(
            "invert the images (files and arrays): yes, no, or auto (default): image files "
            "and arrays of other sizes when their border is mostly light"
        ),
    )
    predict.add_argument(
        "--no-prepare",
        dest="prepare",
        action="store_false",
        help=(
            "do not crop, scale and centre the digits as MNIST's; image files are only "
            "padded to a square and resized to 28x28"
        ),
    )
    predict.add_argument(
        "--n-jobs",
        type=_n_jobs,
        metavar="N",
        help="threads (default: all cores, also -1; -2: all but one)",
    )
    predict.set_defaults(run=_predict)

    summary = commands.add_parser(
        "summary",
        help="the layers of a saved model",
        description=(
            "Print the layers of a saved model (output shapes, trainable parameters, "
            "connections) and what the file holds."
        ),
    )
    summary.add_argument("model", metavar="MODEL", help="a model file written by train --save")
    summary.set_defaults(run=_summary)
    return parser


def _add_data_options(parser: argparse.ArgumentParser, verb: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--data",
        metavar="DIR",
        help=f"{verb} a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz); "
        "default: the embedded MNIST subset",
    )
    group.add_argument(
        "--download",
        action="store_true",
        help=f"{verb} the full MNIST (60,000 + 10,000 digits), downloaded on first use into "
        "$LENET5_DATA or the user's cache folder and checked against its published sha256",
    )


def _load_data(args: argparse.Namespace) -> tuple[str, Any]:
    """(description, ((x_train, y_train), (x_test, y_test))) for --data / --download."""
    from .datasets import load_mnist

    if getattr(args, "download", False):
        return "the full MNIST", load_mnist(download=True)
    if args.data is not None:
        return args.data, load_mnist(args.data)
    return "the embedded MNIST subset", load_mnist()


def _check_save_target(path: str) -> None:
    """Fails before training when the model could not be saved there."""
    target = Path(path).expanduser()
    folder = target.parent
    if target.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"--save {path}: is a folder; give a file name", path
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"--save {path}: folder {folder} does not exist", str(folder)
        )
    if not os.access(folder, os.W_OK):
        raise PermissionError(
            errno.EACCES, f"--save {path}: folder {folder} is not writable", str(folder)
        )


def _save(model: Any, path: str) -> None:
    target = str(Path(path).expanduser())
    saver: Any = getattr(model, "save", None)
    if saver is None:  # pragma: no cover - before LeNet5.save existed
        from ._persist import save

        saver = functools.partial(save, model)
    saver(target)


def _load_model(path: str) -> Any:
    from . import LeNet5

    source = Path(path).expanduser()
    if not source.exists():
        raise FileNotFoundError(errno.ENOENT, f"model file {path} does not exist", path)
    if source.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"model file {path} is a folder", path)
    loader: Any = getattr(LeNet5, "load", None)
    if loader is None:  # pragma: no cover - before LeNet5.load existed
        from ._persist import load

        loader = load
    try:
        return loader(str(source))
    except ValueError as err:
        message = " ".join(str(err).split())
        if path in message or str(source) in message:
            raise
        raise ValueError(f"model file {path}: {message}") from None


def _train(args: argparse.Namespace) -> int:
    from . import LeNet5

    if args.save is not None:
        _check_save_target(args.save)
    source, ((x_train, y_train), (x_test, y_test)) = _load_data(args)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "n_jobs": args.n_jobs,
        "optimizer": args.optimizer,
        "activation": args.activation,
        "pooling": args.pooling,
        "c3": args.c3,
        "output": args.output,
        "preset": getattr(args, "preset", None),
    }
    model = LeNet5(
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    resolver = getattr(model, "resolved_params", None)
    p = resolver() if resolver is not None else model.get_params()
    if not args.quiet:
        print(
            f"Training LeNet-5 on {x_train.shape[0]:,} images from {source} "
            f"({p['epochs']} epochs, batch {p['batch_size']}, {p['optimizer']} with learning "
            f"rate {p['learning_rate']:g}, seed {args.seed}); testing on {x_test.shape[0]:,}.",
            flush=True,
        )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model.fit(x_train, y_train)
    training = time.perf_counter() - start
    for warning in caught:
        # One line each, as errors are; a TrainingWarning (training went nowhere) does not
        # change the exit code: the model was trained, and is evaluated and saved.
        message = " ".join(str(warning.message).split())
        print(f"lenet5: warning: {message}", file=sys.stderr, flush=True)
    accuracy = model.score(x_test, y_test)
    correct = round(accuracy * x_test.shape[0])
    print(f"test accuracy: {accuracy:.2%} ({correct}/{x_test.shape[0]})")
    print(f"wall time: {_process_age():.1f} s (training {training:.1f} s)", flush=True)
    if args.save is not None:
        _save(model, args.save)
        if not args.quiet:
            size = os.path.getsize(Path(args.save).expanduser())
            print(f"model saved to {args.save} ({size:,} bytes)", flush=True)
    return 0


def _set_n_jobs(model: Any, n_jobs: int | None) -> None:
    if n_jobs is not None:
        model.set_params(n_jobs=n_jobs)


def confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> Any:
    """Counts ``m[i, j]`` of images of label ``labels[i]`` predicted as ``labels[j]``.

    Examples
    --------
    >>> from lenet5.__main__ import confusion_matrix
    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], [0, 1, 2]).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    import numpy as np

    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[index[t], index[p]] += 1
    return matrix


def format_confusion(matrix: Any, labels: Sequence[Any]) -> str:
    """The confusion matrix as a text table with row and column totals."""
    names = [str(label) for label in labels]
    cells = [[f"{v:,}" for v in row] for row in matrix.tolist()]
    totals = [f"{v:,}" for v in matrix.sum(axis=1).tolist()]
    corner = "true \\ predicted"
    first = max([len(corner), *map(len, names)])
    width = max([*map(len, names), *(len(c) for row in cells for c in row), 3])
    total_width = max([len("total"), *map(len, totals)])
    lines = [
        corner.ljust(first)
        + "".join(" " + n.rjust(width) for n in names)
        + " "
        + "total".rjust(total_width)
    ]
    for name, row, total in zip(names, cells, totals):
        lines.append(
            name.ljust(first)
            + "".join(" " + c.rjust(width) for c in row)
            + " "
            + total.rjust(total_width)
        )
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    _set_n_jobs(model, args.n_jobs)
    source, (_, (x_test, y_test)) = _load_data(args)
    predicted = model.predict(x_test)
    truth = y_test.tolist()
    guesses = predicted.tolist()
    labels = list(model.classes_.tolist())
    known = set(labels)
    labels += sorted({t for t in truth if t not in known}, key=str)
    correct = sum(1 for t, p in zip(truth, guesses) if t == p)
    n = len(truth)
    print(f"model: {args.model} ({len(model.classes_)} classes)")
    print(f"data: {source}, test split ({n:,} images)")
    print(f"accuracy: {correct / n:.2%} ({correct:,}/{n:,})")
    print("confusion matrix (rows: true label, columns: predicted label):")
    print(format_confusion(confusion_matrix(truth, guesses, labels), labels), flush=True)
    return 0


#: Images checked and predicted at a time: a .npy input is read in chunks of this many
#: images, so a file of any size takes bounded memory.
PREDICT_CHUNK = 4096


class _Npy:
    """A .npy file read lazily: ``shape``, ``ndim`` and ``read(start, stop)``, the images
    ``start:stop`` along the first axis. C-ordered files are read chunk by chunk with
    ordinary reads (nothing stays mapped or cached in the process); Fortran-ordered
    ones, whose images are not contiguous in the file, are memory-mapped. Never
    unpickled. The header's shape and dtype are checked against the file's size first."""

    def __init__(self, path: Path) -> None:
        import numpy as np

        fmt = np.lib.format
        try:
            with open(path, "rb") as f:
                if f.read(4) == b"PK\x03\x04":
                    raise ValueError(f"{path}: expected one array (.npy), not an archive (.npz)")
                f.seek(0)
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                offset = f.tell()
                size = os.fstat(f.fileno()).st_size
        except ValueError as err:
            if str(err).startswith(str(path)):
                raise
            raise ValueError(f"{path}: not a .npy array of numbers ({err})") from None
        if dtype.hasobject:
            raise ValueError(
                f"{path}: not a .npy array of numbers (it holds Python objects, which are "
                "never unpickled)"
            )
        count = 1
        for side in shape:
            count *= side
        needed = count * dtype.itemsize
        if size - offset < needed:
            raise ValueError(
                f"{path}: the header declares shape {shape} of {dtype} ({needed:,} bytes of "
                f"data), but the file holds {size - offset:,} bytes of data"
            )
        self.path, self.shape, self.ndim, self.dtype = path, shape, len(shape), dtype
        self.offset, self.fortran, self.empty = offset, fortran, needed == 0

    def read(self, start: int, stop: int) -> Any:
        """Images ``start:stop`` (for a 0-d array: its one value)."""
        import numpy as np

        rest = self.shape[1:]
        if self.fortran:
            if self.empty:
                return np.zeros(self.shape, self.dtype)[start:stop]
            mapped = np.memmap(self.path, self.dtype, "r", self.offset, self.shape, order="F")
            return np.array(mapped[start:stop] if self.ndim else mapped)
        per_row = 1
        for side in rest:
            per_row *= side
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * per_row * self.dtype.itemsize)
            flat = np.fromfile(f, self.dtype, count=(stop - start) * per_row)
        return flat.reshape((stop - start, *rest) if self.ndim else ())


class _Batches:
    """The images of one predict input, as checked batches of at most PREDICT_CHUNK, with
    their names: ``file.npy[i]`` for the images of an array, the file name for one image.
    ``images`` has ``shape`` and ``read(start, stop)`` (an :class:`_Npy`, or
    :class:`_InMemory`)."""

    def __init__(self, text: str, images: Any, single: bool, invert: bool = False) -> None:
        self.text, self.images, self.single, self.invert = text, images, single, invert
        self.count = int(images.shape[0]) if images.ndim and not single else 1

    def width(self) -> int:
        """Length of the longest name."""
        return len(self.text) if self.single else len(f"{self.text}[{self.count - 1}]")

    def __iter__(self) -> Any:
        from ._validation import check_images

        if self.single or self.count <= PREDICT_CHUNK:
            whole = self.images.read(0, self.images.shape[0] if self.images.ndim else 1)
            images = self._inverted(check_images(whole, self.text, allow_single=True))
            names = (
                [self.text] if self.single else [f"{self.text}[{i}]" for i in range(self.count)]
            )
            yield names, images
            return
        for start in range(0, self.count, PREDICT_CHUNK):
            stop = min(start + PREDICT_CHUNK, self.count)
            chunk = self.images.read(start, stop)
            where = f"{self.text}[{start}:{stop}]"
            try:
                images = check_images(chunk, where)
            except ValueError as err:
                message, shape = str(err), f"got shape {chunk.shape}"
                if shape not in message:
                    raise
                # A wrong shape is the whole array's, not the chunk's.
                message = message.replace(shape, f"got shape {self.images.shape}")
                raise ValueError(message.replace(where, self.text)) from None
            yield [f"{self.text}[{i}]" for i in range(start, stop)], self._inverted(images)

    def _inverted(self, images: Any) -> Any:
        """The checked images, inverted with ``--invert yes``."""
        import numpy as np

        if not self.invert:
            return images
        return 255 - images if images.dtype == np.uint8 else 1 - images


class _InMemory:
    """An array already in memory, with the interface of :class:`_Npy`."""

    def __init__(self, array: Any) -> None:
        self.array, self.shape, self.ndim = array, array.shape, array.ndim

    def read(self, start: int, stop: int) -> Any:
        return self.array[start:stop]


#: ``--invert``'s choices as ``prepare_digit``'s ``invert``.
_INVERT = {"auto": None, "yes": True, "no": False}


def _model_sized(shape: tuple[int, ...]) -> bool:
    """Whether an array's images have one of the sizes ``predict`` takes as they are."""
    sides = {(28, 28), (32, 32)}
    ndim = len(shape)
    return (
        shape[-2:] in sides
        or (ndim >= 3 and shape[-3:-1] in sides)
        or (ndim == 2 and shape[1] in (784, 1024))
    )


def _read_npy(path: Path, invert: str = "auto", prepare: bool = True) -> _Batches:
    """A .npy input (never unpickled), read and checked chunk by chunk.

    Images of other sizes ((h, w) or (n, h, w)) are prepared as MNIST's digits when
    ``prepare`` is true (the prepared 28x28 images are held in memory); ``invert="yes"``
    inverts the images in any case."""
    import numpy as np

    from ._prepare import prepare_digits

    array = _Npy(path)
    if prepare and array.ndim in (2, 3) and not _model_sized(tuple(array.shape)):
        raw = array.read(0, array.shape[0])
        try:
            images = prepare_digits(
                raw[np.newaxis] if array.ndim == 2 else raw, invert=_INVERT[invert]
            )
        except (TypeError, ValueError) as err:
            raise type(err)(f"{path}: {err}") from None
        single = array.ndim == 2
        return _Batches(str(path), _InMemory(images[0] if single else images), single)
    single = array.ndim == 2 and array.shape in ((28, 28), (32, 32))
    return _Batches(str(path), array, single, invert=invert == "yes")


def load_image(path: str | os.PathLike[str], invert: str = "auto", prepare: bool = True) -> Any:
    """An image file as a 28x28 uint8 MNIST-style digit (light ink on black).

    The image is converted to grayscale (transparent parts count as white). With
    ``prepare`` (the default) it is then prepared by :func:`lenet5.datasets.prepare_digit`
    (``invert`` ``"yes"``, ``"no"`` or ``"auto"``: from the border). Without, it is
    inverted when ``invert`` is ``"yes"``, or ``"auto"`` and the mean of its border pixels
    is above 127 (a light background), padded to a square with the background and resized
    to 28x28 with a Lanczos filter (a 28x28 image is used as it is).

    Raises
    ------
    ImportError
        When Pillow is not installed (``pip install 'lenet5-rs[image]'``).
    ValueError
        When the file is not an image Pillow can read.
    """
    import numpy as np

    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise ImportError(
            "reading image files needs Pillow; install it with: pip install 'lenet5-rs[image]'"
        ) from None
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened) or opened
            image.load()
    except UnidentifiedImageError:
        raise ValueError(f"{os.fspath(path)}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, SyntaxError) as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    if gray.size == 0:
        raise ValueError(f"{os.fspath(path)}: the image is empty")
    if prepare:
        from ._prepare import prepare_digit

        return prepare_digit(gray, invert=_INVERT[invert])
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 127):
        gray = 255 - gray
    height, width = gray.shape
    if (height, width) == (28, 28):
        return gray.copy()
    side = max(height, width)
    background = int(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    square = np.full((side, side), background, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    resampling = getattr(Image, "Resampling", Image).LANCZOS
    small = Image.fromarray(square, mode="L").resize((28, 28), resampling)
    return np.asarray(small, dtype=np.uint8)


def _read_inputs(paths: Sequence[str], invert: str, prepare: bool = True) -> list[_Batches]:
    """The inputs given to predict, each checked before anything is printed: .npy files
    read and checked chunk by chunk, image files read (each a batch of one)."""
    import numpy as np

    inputs = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, f"input {text} does not exist", text)
        if path.is_dir():
            raise IsADirectoryError(
                errno.EISDIR, f"input {text} is a folder; give image or .npy files", text
            )
        if not path.is_file():  # a named pipe or a device: opening it could block
            raise OSError(errno.EINVAL, f"input {text} is not a regular file", text)
        if path.suffix.lower() == ".npy":
            batches = _read_npy(path, invert, prepare)
        else:
            image = load_image(path, invert, prepare)[np.newaxis]
            batches = _Batches(text, _InMemory(image), single=True)
        for _ in batches:  # check every chunk before anything is printed
            pass
        inputs.append(batches)
    return inputs


def _predict(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    _set_n_jobs(model, args.n_jobs)
    inputs = _read_inputs(args.inputs, args.invert, args.prepare)
    from ._prepare import InvertedInputWarning

    classes = [str(c) for c in model.classes_.tolist()]
    first = max(len("input"), *(batches.width() for batches in inputs))
    label_width = max(len("label"), *map(len, classes))
    width = max(6, *map(len, classes))
    if args.all:
        header = ["input".ljust(first), "label".ljust(label_width)]
        header += [c.rjust(width) for c in classes]
        print(" ".join(header))
    else:
        print(f"{'input'.ljust(first)} {'label'.ljust(label_width)} probability")
    warned_inverted = False
    for batches in inputs:
        for names, images in batches:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                proba = model.predict_proba(images)
            for warning in caught:
                if issubclass(warning.category, InvertedInputWarning):
                    if warned_inverted:
                        continue
                    warned_inverted = True
                    message = (
                        "the images look inverted (most border pixels are bright), but MNIST "
                        "digits are light ink on a dark background; pass --invert yes"
                    )
                else:
                    message = " ".join(str(warning.message).split())
                print(f"lenet5: warning: {message}", file=sys.stderr, flush=True)
            best = proba.argmax(axis=1)
            lines = []
            for name, k, row in zip(names, best, proba):
                if args.all:
                    cells = [name.ljust(first), classes[k].ljust(label_width)]
                    cells += [f"{p:.4f}".rjust(width) for p in row]
                    lines.append(" ".join(cells))
                else:
                    lines.append(
                        f"{name.ljust(first)} {classes[k].ljust(label_width)} {row[k]:.4f}"
                    )
            print("\n".join(lines))
    sys.stdout.flush()
    return 0


def _summary(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    size = os.path.getsize(Path(args.model).expanduser())
    print(f"model file: {args.model} ({size:,} bytes)")
    classes = ", ".join(str(c) for c in model.classes_.tolist())
    print(f"classes: {classes}")
    print(f"epochs trained: {model.n_iter_}")
    print()
    model.summary(print_fn=functools.partial(print, flush=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 2 error, 130 Ctrl-C).

    Examples
    --------
    >>> from lenet5.__main__ import main
    >>> main(["train", "--epochs", "1", "--quiet"])  # doctest: +SKIP
    test accuracy: ...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("lenet5: interrupted", file=sys.stderr)
        return 130
    except (
        OSError,
        ValueError,
        TypeError,
        RuntimeError,
        FloatingPointError,
        ImportError,
    ) as err:
        text = str(err)
        if isinstance(err, OSError) and err.strerror:
            # Without Python's "[Errno N]" prefix: the reason, and the file if not named.
            text = err.strerror
            if err.filename is not None and str(err.filename) not in text:
                text += f": {err.filename}"
        message = " ".join(text.split()) or type(err).__name__
        print(f"lenet5: error: {message}", file=sys.stderr)
        return 2
    except MemoryError as err:
        detail = " ".join(str(err).split())
        print(f"lenet5: error: out of memory{': ' + detail if detail else ''}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
