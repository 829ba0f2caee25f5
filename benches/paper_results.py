"""Accuracy and time of the paper recipe and of the modern LeNet-5 (figures of docs/paper.md).

Runs (pick with --runs, default: all but fashion):

``paper``         ``LeNet5(preset="paper")`` on the embedded 4,000 MNIST digits, tested on the
                  1,000 embedded test digits after every pass.
``paper-aug``     the same with ``augment=True``.
``modern``        ``LeNet5(preset="modern")``; ``modern-aug`` with ``augment=True``.
``sgd``           the paper's network and schedule shape with plain SGD (no momentum, batch 1)
                  instead of SDLM, for each of ``--sgd-rates``, to compare at the same passes.
``default``       ``LeNet5()`` (what ``python -m lenet5 train`` trains).
``what-if``       the paper recipe started from weights uniform in +-2.4/sqrt(F) instead of
                  +-2.4/F (see docs/paper.md, "Departures" 4), with SDLM and with SGD at
                  ``--sgd-rates``; run on the native module directly. ``what-if-aug``: the
                  same with SDLM and the default distortions. ``what-if-fashion``: on
                  Fashion-MNIST (60,000 images).
``fashion``       the paper recipe on Fashion-MNIST (60,000 images, 20 passes): wall time of
                  ``fit`` (the 2 cores of the machine), images per second, test accuracy.

Every run prints one line per pass and a summary line; ``--seeds 0 1 2`` repeats the runs.

    python benches/paper_results.py                      # embedded MNIST runs, seed 0
    python benches/paper_results.py --runs fashion        # the 60,000-image timing run
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
    "what-if",
    "what-if-aug",
    "fashion",
    "what-if-fashion",
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


def sqrt_fan_in_weights(net, seed: int) -> dict:
    """Weights and biases uniform in +-2.4 / sqrt(F) (F = fan-in), RBF prototypes kept: the
    reading of the paper's initialisation rule under which its stated aim (weighted sums of
    unit order) holds. For the what-if run only; the library's init="lecun" is +-2.4 / F."""
    weights = net.get_weights()
    rng = np.random.default_rng(seed)
    mask = (weights["c3.weight"] != 0).any(axis=(2, 3))  # Table I, (16, 6)
    fan_in = {"c1": 25.0, "s2": 4.0, "s4": 4.0, "c5": 400.0, "f6": 120.0, "output": 84.0}
    for name, value in weights.items():
        layer = name.split(".")[0]
        if name == "output.weight" and net.config()["output"] == "rbf":
            continue
        if layer == "c3":
            f = 25.0 * mask.sum(axis=1)
            bound = (2.4 / np.sqrt(f)).reshape((16,) + (1,) * (value.ndim - 1))
        else:
            bound = 2.4 / np.sqrt(fan_in[layer])
        weights[name] = (rng.uniform(-1.0, 1.0, value.shape) * bound).astype(np.float32)
    weights["c3.weight"] *= mask[:, :, None, None]
    return weights


def run_what_if(
    seed: int, n_jobs: int, optimizer: str, rate: float, augment=None, fashion=False
) -> None:
    """The paper recipe (schedule, batch 1, 500 curvature samples per pass) from +-2.4/sqrt(F)
    weights, on the native module directly."""
    from lenet5 import _lenet5
    from lenet5._estimator import PAPER_SCHEDULE
    from lenet5.datasets import load_fashion_mnist, load_mnist

    (x, y), (xt, yt) = load_fashion_mnist() if fashion else load_mnist()
    net = _lenet5.Network(10, output="rbf", seed=seed)
    net.set_weights(sqrt_fan_in_weights(net, seed))
    net.reset_optimizer(optimizer, rate, momentum=0.0, seed=seed, mu=0.02)
    data = _lenet5.Dataset(x, y.astype(np.int64))
    trace = []
    start = time.perf_counter()
    for factor in np.array(PAPER_SCHEDULE) / PAPER_SCHEDULE[0]:
        net.set_learning_rate(rate * factor)
        if optimizer == "sdlm":
            net.estimate_curvature(data, 500, n_jobs)
        net.train_epoch(data, 1, n_jobs, augment=augment)
        trace.append(float(np.mean(net.predict(xt, n_jobs) == yt)))
    seconds = time.perf_counter() - start
    extra = " + augment" if augment is not None else ""
    extra += " on Fashion-MNIST" if fashion else ""
    log(
        f"what-if: paper recipe{extra} from +-2.4/sqrt(F) weights, {optimizer} lr {rate:g} "
        f"(seed {seed})"
    )
    log("  test accuracy per pass: " + " ".join(f"{a:.3f}" for a in trace))
    log(
        f"  final {trace[-1]:.2%}  best {max(trace):.2%} (pass {int(np.argmax(trace)) + 1})"
        f"  {seconds:.1f} s ({x.shape[0] * len(trace) / seconds:,.0f} images/s, "
        "test passes included)"
    )


def run_fashion(seed: int, n_jobs: int, epochs: int) -> None:
    from lenet5 import LeNet5
    from lenet5.datasets import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist()
    model = LeNet5(preset="paper", epochs=epochs, random_state=seed, n_jobs=n_jobs, verbose=0)
    _, seconds, accuracy = fit_and_trace(model, x, y, xt, yt, validate=False)
    per_pass = model.history_["seconds"]
    images = x.shape[0] * len(per_pass)
    log(
        f"paper recipe on Fashion-MNIST (seed {seed}): {len(per_pass)} passes over "
        f"{x.shape[0]:,} images in {seconds:.1f} s ({images / seconds:,.0f} images/s, "
        f"curvature estimates included); test accuracy {accuracy:.2%}"
    )
    log("  seconds per pass: " + " ".join(f"{s:.1f}" for s in per_pass))
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
                run_fashion(seed, n_jobs, args.fashion_epochs)
            elif name == "what-if-fashion":
                run_what_if(seed, n_jobs, "sdlm", 0.0005, fashion=True)
            elif name == "what-if-aug":
                run_what_if(seed, n_jobs, "sdlm", 0.0005, augment={})
            elif name == "what-if":
                run_what_if(seed, n_jobs, "sdlm", 0.0005)
                for rate in args.sgd_rates:
                    run_what_if(seed, n_jobs, "sgd", rate)
            else:
                run_embedded(name, seed, n_jobs, args.sgd_rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
