"""Test error and fit time of the paper's LeNet-5 recipe and of its variants (docs/paper.md).

Every run trains on the training images of an IDX folder (``--data DIR``, e.g. the full MNIST;
default: the 4,000 + 1,000 digits embedded in lenet5) and tests on its test images after every
pass. Runs (pick with ``--runs``; default: all but ``fashion``):

``paper``         ``LeNet5(preset="paper")``.
``paper-aug``     ``LeNet5(preset="paper", augment=True)``.
``modern``        ``LeNet5(preset="modern")``; ``modern-aug`` with ``augment=True``.
``default``       ``LeNet5()`` (what ``python -m lenet5 train`` trains).
``literal``       the paper recipe from the literal initialisation, ``init="lecun"`` (+-2.4/F
                  instead of the preset's +-2.4/sqrt(F); docs/paper.md, "Departures" 4), at the
                  printed rates and at a tenth of them (``literal-tenth``).
``sgd``           the paper recipe with plain SGD instead of SDLM (``optimizer="sgd",
                  momentum=0``; same batch size 1 and schedule shape), one fit for each of
                  ``--sgd-rates`` (named ``sgd-RATE``).
``softmax-sdlm``  ``LeNet5(preset="paper", output="softmax")``: the paper's optimizer (SDLM,
                  its schedule, batch 1) on a softmax output with cross-entropy.
``fashion``       the paper recipe on Fashion-MNIST (``lenet5.datasets.load_fashion_mnist()``,
                  or the IDX folder ``--fashion-data``; 60,000 images, ``--fashion-epochs``
                  passes; skipped with a message when the files are missing):
                  wall time of ``fit``, images per second, test error; tested after every pass
                  only with ``--fashion-trace``.

Every fit prints one line per pass (training error measured on the fly during the pass, as
in the paper's Fig. 5, test error after the pass, rate, seconds) and a line with its final
test error, fit time and ``n_jobs``. After all seeds of a run comes a summary line (mean and
range of the final test error, mean fit time), and at the end a Markdown table of all runs.
The fit time includes testing after every pass. ``--json FILE`` writes the machine, every
fit and every per-pass record (run, seed, pass, train_error, test_error, learning_rate,
seconds; errors in %) to FILE, rewritten after every fit; ``benches/fig5.py`` draws the
paper's Fig. 5 from it. ``--epochs N`` (passes of every run instead of the preset's) and
``--limit N`` (train on the first N training images) make quick smoke runs.

    python benches/paper_results.py                      # embedded digits, all runs, seed 0
    python benches/paper_results.py --runs sgd --sgd-rates 0.0005 0.001 --seeds 0 1 2
    python benches/paper_results.py --runs fashion        # the 60,000-image timing run
    python benches/paper_results.py --runs fashion --fashion-lr 0.0001 --fashion-trace
    # the full MNIST (from /work/main; see /work/shared/data/README.md)
    python benches/paper_results.py --data ../shared/data/mnist \
        --runs paper default modern --seeds 0 1 2
    # Fig. 5: the per-pass records of the paper recipe, then the figure
    python benches/paper_results.py --data ../shared/data/mnist \
        --runs paper paper-aug --seeds 0 1 2 --json fig5.json
    python benches/fig5.py fig5.json --out docs/fig5.png
    # smoke run (seconds): 2 passes over the first 300 embedded digits
    python benches/paper_results.py --runs paper --epochs 2 --limit 300 --json /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RUNS = (
    "paper",
    "paper-aug",
    "modern",
    "modern-aug",
    "default",
    "literal",
    "sgd",
    "softmax-sdlm",
    "fashion",
)

Split = tuple[np.ndarray, np.ndarray]


def log(*args: object) -> None:
    print(*args, flush=True)


@dataclass
class Config:
    """One model of a run: its name in the records, its description and its keywords."""

    name: str
    params: dict[str, Any]
    fashion: bool = False

    @property
    def label(self) -> str:
        """The keywords as written in a call of LeNet5 (for the table of the docs)."""
        text = ", ".join(f"{k}={v!r}".replace("'", '"') for k, v in self.params.items())
        text = f"`{text}`" if text else "`LeNet5()`"
        return text + " on Fashion-MNIST" if self.fashion else text


@dataclass
class Fit:
    """One fit of one configuration at one seed."""

    config: Config
    seed: int
    n_jobs: int
    n_train: int
    fit_seconds: float
    test_error: float
    records: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.config.name,
            "label": self.config.label,
            "params": self.config.params,
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            "n_train": self.n_train,
            "passes": len(self.records),
            "fit_seconds": self.fit_seconds,
            "test_error": _finite_or_none(self.test_error),
            "warnings": self.warnings,
            "failure": self.failure,
        }


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def configs(run: str, args: argparse.Namespace) -> list[Config]:
    """The models a run name stands for."""
    if run == "paper":
        return [Config("paper", {"preset": "paper"})]
    if run == "paper-aug":
        return [Config("paper-aug", {"preset": "paper", "augment": True})]
    if run == "modern":
        return [Config("modern", {"preset": "modern"})]
    if run == "modern-aug":
        return [Config("modern-aug", {"preset": "modern", "augment": True})]
    if run == "default":
        return [Config("default", {})]
    if run == "literal":
        return [
            Config("literal", {"preset": "paper", "init": "lecun"}),
            Config(
                "literal-tenth",
                {"preset": "paper", "init": "lecun", "learning_rate": 0.00005},
            ),
        ]
    if run == "sgd":
        return [
            Config(
                f"sgd-{rate:g}",
                {"preset": "paper", "optimizer": "sgd", "momentum": 0, "learning_rate": rate},
            )
            for rate in args.sgd_rates
        ]
    if run == "softmax-sdlm":
        return [Config("softmax-sdlm", {"preset": "paper", "output": "softmax"})]
    if run == "fashion":
        params: dict[str, Any] = {"preset": "paper"}
        if args.fashion_lr is not None:
            params["learning_rate"] = args.fashion_lr
        return [Config("fashion", params, fashion=True)]
    raise ValueError(f"unknown run {run!r}")


# ---------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The "model name" of /proc/cpuinfo (else what platform knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kernel_path() -> str | None:
    """The instruction set of lenet5's native kernels, when the extension says it."""
    import lenet5

    info = getattr(lenet5, "native_info", None)
    if callable(info):
        native = info()
        return f"{native['isa']} ({native['lanes']} images per chunk; {native['reason']})"
    isa = getattr(lenet5._lenet5, "_isa", None)
    return str(isa()) if callable(isa) else None


def machine() -> dict[str, Any]:
    import lenet5

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "kernels": kernel_path(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "lenet5": lenet5.__version__,
    }


# ---------------------------------------------------------------------- data


class Data:
    """The training and test images of --data (and Fashion-MNIST when asked), read once."""

    def __init__(self, path: str | None, limit: int | None, fashion_path: str | None) -> None:
        self.path = path
        self.limit = limit
        self.fashion_path = fashion_path
        self._cache: dict[bool, tuple[Split, Split]] = {}

    def get(self, fashion: bool) -> tuple[Split, Split]:
        if fashion not in self._cache:
            from lenet5.datasets import load_fashion_mnist, load_mnist

            if fashion:
                (x, y), test = load_fashion_mnist(self.fashion_path)
            else:
                (x, y), test = load_mnist(self.path)
            if self.limit is not None:
                x, y = x[: self.limit], y[: self.limit]
            self._cache[fashion] = (x, y), test
        return self._cache[fashion]

    def describe(self, fashion: bool = False) -> str:
        (x, _), (xt, _) = self.get(fashion)
        if fashion:
            where = (
                f"Fashion-MNIST ({self.fashion_path})" if self.fashion_path else "Fashion-MNIST"
            )
        else:
            where = self.path or "the embedded digits"
        limited = f" (the first {x.shape[0]:,}: --limit)" if self.limit is not None else ""
        return f"{where}: {x.shape[0]:,} training images{limited}, {xt.shape[0]:,} test images"


# ---------------------------------------------------------------------- fitting


def percent_error(accuracy: float) -> float:
    """Error in %, rounded to 1e-6 (exact for test sets of up to 10^6 images)."""
    return round(100.0 * (1.0 - accuracy), 6)


def fit_one(config: Config, seed: int, data: Data, args: argparse.Namespace) -> Fit:
    """Fit one configuration at one seed, printing a line per pass; the fit's figures."""
    from lenet5 import LeNet5

    (x, y), (xt, yt) = data.get(config.fashion)
    params = dict(config.params)
    if args.epochs is not None:
        params["epochs"] = args.epochs
    elif config.fashion:
        params["epochs"] = args.fashion_epochs
    validate = args.fashion_trace or not config.fashion

    def report(epoch: int, logs: dict[str, Any]) -> None:
        test = f"{percent_error(logs['val_accuracy']):6.2f}%" if validate else "   -   "
        log(
            f"  pass {epoch:2d}  train error {percent_error(logs['accuracy']):6.2f}%  "
            f"test error {test}  loss {logs['loss']:.4f}  lr {logs['learning_rate']:.3g}  "
            f"{logs['seconds']:.1f} s"
        )

    model = LeNet5(random_state=seed, n_jobs=args.n_jobs, verbose=0, callbacks=report, **params)
    resolved = model.resolved_params()
    log(
        f"{config.name} (seed {seed}): {config.label}; optimizer {resolved['optimizer']}, "
        f"lr {resolved['learning_rate']:g} ({resolved['lr_schedule']}), "
        f"batch {resolved['batch_size']}, {resolved['epochs']} pass(es), "
        f"n_jobs {resolved['n_jobs']}"
    )
    failure = None
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(x, y, validation_data=(xt, yt) if validate else None)
        except FloatingPointError as err:  # the model keeps its last finite weights
            failure = str(err)
    seconds = time.perf_counter() - start
    history: dict[str, list[Any]] = getattr(model, "history_", None) or {}
    records = [
        {
            "run": config.name,
            "seed": seed,
            "pass": int(epoch),
            "train_error": percent_error(train),
            "test_error": _finite_or_none(percent_error(test)),
            "learning_rate": float(rate),
            "seconds": float(pass_seconds),
            "loss": _finite_or_none(loss),
        }
        for epoch, train, test, rate, pass_seconds, loss in zip(
            history.get("epoch", []),
            history.get("accuracy", []),
            history.get("val_accuracy", []),
            history.get("learning_rate", []),
            history.get("seconds", []),
            history.get("loss", []),
        )
    ]
    try:
        test_error = percent_error(model.score(xt, yt))
    except Exception:  # not fitted: the first pass failed
        test_error = math.nan
    fit = Fit(
        config=config,
        seed=seed,
        n_jobs=int(resolved["n_jobs"]),
        n_train=int(x.shape[0]),
        fit_seconds=seconds,
        test_error=test_error,
        records=records,
        warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
        failure=failure,
    )
    for message in fit.warnings:
        log(f"  {message}")
    if failure is not None:
        log(f"  failed: {failure}")
    traced = [r["test_error"] for r in records if r["test_error"] is not None]
    best = ""
    if traced:
        at = int(np.argmin(traced))
        best = f" (best {traced[at]:.2f}% after pass {records[at]['pass']})"
    images = x.shape[0] * len(records)
    included = "curvature estimates" if resolved["optimizer"] == "sdlm" else ""
    if validate:
        included += " and testing" if included else "testing"
    included = f", {included} included" if included else ""
    log(
        f"  final test error {test_error:.2f}%{best}; fit {seconds:.1f} s "
        f"({images / max(seconds, 1e-9):,.0f} images/s{included}), n_jobs {fit.n_jobs}"
    )
    return fit


# ---------------------------------------------------------------------- reporting


def seed_text(seeds: Sequence[int]) -> str:
    """0, 1, 2, 3 -> "0-3"; 0, 2, 5 -> "0, 2, 5"."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def summarize(fits: Sequence[Fit]) -> dict[str, Any]:
    """Mean and range of the final test error and mean fit time of a configuration's fits."""
    errors = np.array([f.test_error for f in fits], dtype=np.float64)
    finite = errors[np.isfinite(errors)]
    return {
        "run": fits[0].config.name,
        "label": fits[0].config.label,
        "seeds": [f.seed for f in fits],
        "test_error_mean": float(finite.mean()) if finite.size else None,
        "test_error_min": float(finite.min()) if finite.size else None,
        "test_error_max": float(finite.max()) if finite.size else None,
        "test_errors": [_finite_or_none(e) for e in errors],
        "fit_seconds_mean": float(np.mean([f.fit_seconds for f in fits])),
        "n_jobs": sorted({f.n_jobs for f in fits}),
        "failures": sum(f.failure is not None for f in fits),
    }


def summary_line(s: dict[str, Any]) -> str:
    if s["test_error_mean"] is None:
        errors = "no finite test error"
    else:
        errors = (
            f"test error mean {s['test_error_mean']:.2f}%, "
            f"range {s['test_error_min']:.2f}-{s['test_error_max']:.2f}%"
        )
    failed = f", {s['failures']} failed" if s["failures"] else ""
    return (
        f"== {s['run']}: {errors} over seeds {seed_text(s['seeds'])}{failed}; "
        f"fit {s['fit_seconds_mean']:.1f} s on average"
    )


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| run | test error mean | range | seeds | fit time |",
        "|---|---|---|---|---|",
    ]
    for s in summaries:
        if s["test_error_mean"] is None:
            mean = spread = "-"
        else:
            mean = f"{s['test_error_mean']:.2f}%"
            spread = f"{s['test_error_min']:.2f}-{s['test_error_max']:.2f}%"
        lines.append(
            f"| {s['label']} | {mean} | {spread} | {seed_text(s['seeds'])} "
            f"| {s['fit_seconds_mean']:.1f} s |"
        )
    return "\n".join(lines)


def write_json(
    path: Path, header: dict[str, Any], fits: Sequence[Fit], summaries: Sequence[dict[str, Any]]
) -> None:
    """Everything measured so far, written atomically (a long run leaves a usable file)."""
    content = {
        **header,
        "fits": [f.as_json() for f in fits],
        "summaries": list(summaries),
        "records": [r for f in fits for r in f.records],
    }
    text = json.dumps(content, indent=1, allow_nan=False) + "\n"
    from lenet5 import _lenet5

    _lenet5.write_atomic(path, text.encode("utf-8"), "the results")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").split("\n")[1:]),
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUNS,
        default=[r for r in RUNS if r != "fashion"],
        metavar="RUN",
        help=f"runs, among {', '.join(RUNS)} (default: all but fashion)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--data", default=None, help="IDX folder (MNIST file names); default: embedded digits"
    )
    parser.add_argument(
        "--n-jobs", type=int, default=None, help="threads (default: the usable cores)"
    )
    parser.add_argument("--sgd-rates", nargs="+", type=float, default=[0.0005, 0.002])
    parser.add_argument("--fashion-epochs", type=int, default=20)
    parser.add_argument(
        "--fashion-data", default=None, help="fashion: IDX folder (default: the known places)"
    )
    parser.add_argument(
        "--fashion-lr", type=float, default=None, help="fashion: start of the paper schedule"
    )
    parser.add_argument(
        "--fashion-trace", action="store_true", help="fashion: test after every pass"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="passes of every run (default: the preset's)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="train on the first N training images only"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every record to FILE")
    args = parser.parse_args(argv)
    for name in ("epochs", "limit", "n_jobs", "fashion_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.n_jobs is None:
        args.n_jobs = len(os.sched_getaffinity(0))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    log(
        f"CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"lenet5 kernels: {info['kernels'] or 'not reported'}"
    )
    log(
        f"lenet5 {info['lenet5']}, Python {info['python']}, numpy {info['numpy']}, "
        f"n_jobs {args.n_jobs}"
    )
    data = Data(args.data, args.limit, args.fashion_data)
    digits = any(r != "fashion" for r in args.runs)  # runs on --data
    if digits:
        log(f"data: {data.describe()}")
    header = {
        "machine": info,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv] if argv is None else ["paper_results", *argv],
        "data": {
            "path": args.data,
            "limit": args.limit,
            "epochs": args.epochs,
            "description": data.describe() if digits else None,
        },
    }
    fits: list[Fit] = []
    summaries: list[dict[str, Any]] = []
    for run in args.runs:
        for config in configs(run, args):
            if config.fashion:
                try:
                    log(f"data: {data.describe(fashion=True)}")
                except FileNotFoundError as err:
                    log(f"{config.name}: skipped: {err}\n")
                    continue
            done = [fit_one(config, seed, data, args) for seed in args.seeds]
            fits.extend(done)
            summaries.append(summarize(done))
            log(summary_line(summaries[-1]))
            log()
            if args.json is not None:
                write_json(args.json, header, fits, summaries)
    if not summaries:
        log("nothing ran")
        return 1
    on = [data.describe()] if digits else []
    on += [data.describe(fashion=True)] if any(f.config.fashion for f in fits) else []
    log(f"Test error (%) on {'; '.join(on)}. {info['cpu']}, n_jobs {args.n_jobs}:")
    log()
    log(markdown_table(summaries))
    if args.json is not None:
        log(
            f"\nwrote {len(fits)} fits and {sum(len(f.records) for f in fits)} records "
            f"to {args.json}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
