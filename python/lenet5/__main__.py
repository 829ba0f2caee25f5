"""Command line: ``python -m lenet5 train`` (also installed as the ``lenet5`` command).

Subcommands:

``train``
    Train LeNet-5 on the embedded MNIST subset (or ``--data DIR``, a folder of IDX
    files), show progress, and print the test accuracy and the wall time (process
    start-up included).

Errors are reported as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import NoReturn

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
    if value == -1 or value >= 1:
        return value
    raise argparse.ArgumentTypeError(
        f"expected a positive number of threads or -1 for all cores, got {text!r}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subparser per command)."""
    from . import __version__

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
            "digits) or on a folder of IDX files, then print the test accuracy and the wall "
            "time including start-up. Ctrl-C stops training early and evaluates the model "
            "as it stands."
        ),
    )
    train.add_argument(
        "--data",
        metavar="DIR",
        help="folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz); "
        "default: the embedded MNIST subset",
    )
    train.add_argument(
        "--epochs", type=_positive_int, metavar="N", help="passes over the training data"
    )
    train.add_argument("--batch-size", type=_positive_int, metavar="N", help="images per batch")
    train.add_argument(
        "--learning-rate", type=_positive_float, metavar="X", help="optimizer step size"
    )
    train.add_argument(
        "--n-jobs", type=_n_jobs, metavar="N", help="threads (default: all cores, also -1)"
    )
    train.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"random seed for initialisation and shuffling (default: {DEFAULT_SEED})",
    )
    train.add_argument("--quiet", action="store_true", help="no progress output, only the results")
    train.set_defaults(run=_train)
    return parser


def _train(args: argparse.Namespace) -> int:
    from . import LeNet5
    from .datasets import load_mnist

    source = args.data if args.data is not None else "the embedded MNIST subset"
    (x_train, y_train), (x_test, y_test) = load_mnist(args.data)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "n_jobs": args.n_jobs,
    }
    model = LeNet5(
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    if not args.quiet:
        print(
            f"Training LeNet-5 on {x_train.shape[0]:,} images from {source} "
            f"({model.epochs} epochs, batch {model.batch_size}, learning rate "
            f"{model.learning_rate:g}, seed {args.seed}); testing on {x_test.shape[0]:,}.",
            flush=True,
        )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model.fit(x_train, y_train)
    training = time.perf_counter() - start
    for warning in caught:
        print(f"lenet5: {warning.message}", file=sys.stderr, flush=True)
    accuracy = model.score(x_test, y_test)
    correct = round(accuracy * x_test.shape[0])
    print(f"test accuracy: {accuracy:.2%} ({correct}/{x_test.shape[0]})")
    print(f"wall time: {_process_age():.1f} s (training {training:.1f} s)", flush=True)
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
    except (OSError, ValueError, TypeError, RuntimeError, FloatingPointError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"lenet5: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
