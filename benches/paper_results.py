"""Accuracy and time of the paper recipe and of the modern LeNet-5 (figures of docs/paper.md).

Runs (pick with --runs, default: all but fashion):

``paper``         ``LeNet5(preset="paper")`` on the embedded 4,000 MNIST digits, tested on the
                  1,000 embedded test digits after every pass.
``paper-aug``     the same with ``augment=True``.
``modern``        ``LeNet5(preset="modern")``; ``modern-aug`` with ``augment=True``.
``sgd``           the paper's network and schedule shape with plain SGD (no momentum, batch 1)
                  instead of SDLM, for each of ``--sgd-rates``, to compare at the same passes.
``default``       ``LeNet5()`` (what ``python -m lenet5 train`` trains).
``literal``       the paper recipe from the literal initialisation ``init="lecun"`` (+-2.4/F
                  instead of the preset's +-2.4/sqrt(F); docs/paper.md, "Departures" 4), at the
                  printed rates and at a tenth of them.
``fashion``       the paper recipe on Fashion-MNIST (60,000 images, 20 passes): wall time of
                  ``fit`` (the 2 cores of the machine), images per second, test accuracy.

Every run prints one line per pass and a summary line; ``--seeds 0 1 2`` repeats the runs.

    python benches/paper_results.py                      # embedded MNIST runs, seed 0
    python benches/paper_results.py --runs fashion        # the 60,000-image timing run
    python benches/paper_results.py --runs fashion --fashion-lr 0.0001 --fashion-trace
    python benches/paper_results.py --runs paper --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

RUNS = (
    "paper",
    "paper-aug",
    "modern",
    "modern-aug",
    "sgd",
    "default",
    "literal",
    "fashion",
)


def log(*args: object) -> None:
    print(*args, flush=True)


def fit_and_trace(model, x, y, xt, yt, validate=True):
    """Fit; returns (per-pass test accuracies or None, fit wall seconds, final accuracy)."""
    start = time.perf_counter()
    if validate:
        model.fit(x, y, validation_data=(xt, yt))
    else:
        model.fit(x, y)
    seconds = time.perf_counter() - start
    accuracy = model.score(xt, yt)
    trace = list(model.history_["val_accuracy"]) if validate else None
    return trace, seconds, accuracy


def run_embedded(name: str, seed: int, n_jobs: int, sgd_rates: list[float]) -> None:
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    settings: list[tuple[str, dict]] = []
    if name == "paper":
        settings = [("paper", {"preset": "paper"})]
    elif name == "paper-aug":
        settings = [("paper + augment", {"preset": "paper", "augment": True})]
    elif name == "modern":
        settings = [("modern", {"preset": "modern"})]
    elif name == "modern-aug":
        settings = [("modern + augment", {"preset": "modern", "augment": True})]
    elif name == "default":
        settings = [("default", {})]
    elif name == "literal":
        settings = [
            ("paper, init='lecun', printed rates", {"preset": "paper", "init": "lecun"}),
            (
                "paper, init='lecun', a tenth of the rates",
                {"preset": "paper", "init": "lecun", "learning_rate": 0.00005},
            ),
        ]
    elif name == "sgd":
        settings = [
            (
                f"paper, SGD lr {rate:g}",
                {"preset": "paper", "optimizer": "sgd", "momentum": 0.0, "learning_rate": rate},
            )
            for rate in sgd_rates
        ]
    for label, params in settings:
        model = LeNet5(random_state=seed, n_jobs=n_jobs, verbose=0, **params)
        trace, seconds, accuracy = fit_and_trace(model, x, y, xt, yt)
        resolved = model.resolved_params()
        log(
            f"{label} (seed {seed}): optimizer {resolved['optimizer']}, "
            f"lr {resolved['learning_rate']:g} ({resolved['lr_schedule']}), "
            f"batch {resolved['batch_size']}, {resolved['epochs']} passes"
        )
        log("  test accuracy per pass: " + " ".join(f"{a:.3f}" for a in trace))
        log(
            f"  final {accuracy:.2%}  best {max(trace):.2%} (pass {int(np.argmax(trace)) + 1})"
            f"  fit {seconds:.1f} s"
        )


def run_fashion(
    seed: int, n_jobs: int, epochs: int, rate: float | None = None, trace: bool = False
) -> None:
    from lenet5 import LeNet5
    from lenet5.datasets import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist()
    model = LeNet5(
        preset="paper",
        epochs=epochs,
        learning_rate=rate,
        random_state=seed,
        n_jobs=n_jobs,
        verbose=0,
    )
    accuracies, seconds, accuracy = fit_and_trace(model, x, y, xt, yt, validate=trace)
    if rate is not None:
        log(f"(schedule from learning_rate={rate:g})")
    per_pass = model.history_["seconds"]
    images = x.shape[0] * len(per_pass)
    log(
        f"paper recipe on Fashion-MNIST (seed {seed}): {len(per_pass)} passes over "
        f"{x.shape[0]:,} images in {seconds:.1f} s ({images / seconds:,.0f} images/s, "
        f"curvature estimates included); test accuracy {accuracy:.2%}"
    )
    log("  seconds per pass: " + " ".join(f"{s:.1f}" for s in per_pass))
    if accuracies is not None:
        log("  (fit time includes testing after every pass)")
        log("  test accuracy per pass: " + " ".join(f"{a:.3f}" for a in accuracies))
    log("  training loss per pass: " + " ".join(f"{v:.3f}" for v in model.history_["loss"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", nargs="+", choices=RUNS, default=[r for r in RUNS if "fashion" not in r]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--sgd-rates", nargs="+", type=float, default=[0.0005, 0.002])
    parser.add_argument("--fashion-epochs", type=int, default=20)
    parser.add_argument(
        "--fashion-lr", type=float, default=None, help="fashion: start of the paper schedule"
    )
    parser.add_argument(
        "--fashion-trace", action="store_true", help="fashion: test after every pass"
    )
    args = parser.parse_args(argv)
    import lenet5
    from lenet5 import _lenet5

    n_jobs = args.n_jobs or len(os.sched_getaffinity(0))
    log(
        f"lenet5 {lenet5.__version__}, ISA {_lenet5._isa()}, {n_jobs} threads, "
        f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}"
    )
    for seed in args.seeds:
        for name in args.runs:
            if name == "fashion":
                run_fashion(seed, n_jobs, args.fashion_epochs, args.fashion_lr, args.fashion_trace)
            else:
                run_embedded(name, seed, n_jobs, args.sgd_rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
