"""Saturated units per pass of the paper recipe, with and without its L2 decay.

Measures what docs/paper.md, departure 16, reports: the paper preset trains pass by pass
(``warm_start=True`` and ``initial_epoch``, which resume exactly, so the run is the same as
one 20-pass ``fit``) and after each pass prints the test error, the share of saturated
values (|f(a)| > 1.6; the scaled tanh's range is 1.7159) of every layer on the first
2,000 training images, the number of F6 units saturated on more than 95% of them, the
median penalty of the own class, and the rms of F6's weights. Saturated units have a
vanishing gradient and Gauss-Newton curvature, so only the weight decay brings them back.

    python benches/saturation.py --data ../shared/data/mnist --weight-decay 0 --seed 0
    python benches/saturation.py --data ../shared/data/mnist --weight-decay 0.002 --seed 0
    python benches/saturation.py --data ../shared/data/mnist --weight-decay 0 --set mu=0.0313

``--set NAME=VALUE`` (repeatable) passes further parameters to ``LeNet5``;
``--epochs`` and ``--limit`` (first N training images) make quick runs.
"""

from __future__ import annotations

import argparse
import ast
import json
import time

import numpy as np
from lenet5 import LeNet5
from lenet5.datasets import load_mnist

SATURATED = 1.6
LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="IDX folder (default: the embedded digits)")
    ap.add_argument("--weight-decay", type=float, default=0.002)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--probe", type=int, default=2000, help="training images measured")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--json", default=None, help="write the per-pass records here")
    args = ap.parse_args()
    extra = {}
    for item in args.set:
        name, _, value = item.partition("=")
        extra[name] = ast.literal_eval(value)
    (x, y), (xt, yt) = load_mnist(args.data)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    probe = x[: args.probe]
    model = LeNet5(
        preset="paper",
        weight_decay=args.weight_decay,
        random_state=args.seed,
        warm_start=True,
        verbose=0,
        **extra,
    )
    print(
        f"preset='paper', weight_decay={args.weight_decay}, random_state={args.seed}, "
        f"{extra or ''} on {len(x):,} images"
    )
    columns = "  ".join(f"{k:>5s}" for k in LAYERS)
    print(f"pass  test%  train%  {columns}  F6-stuck  pen  F6rms")
    records = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.set_params(epochs=epoch).fit(x, y, initial_epoch=epoch - 1)
        seconds = time.perf_counter() - start
        a = model.activations(probe)
        sat = {k: float(np.mean(np.abs(a[k]) > SATURATED)) for k in LAYERS}
        stuck = int((np.mean(np.abs(a["f6"]) > SATURATED, axis=0) > 0.95).sum())
        own = a["output"][np.arange(len(probe)), np.searchsorted(model.classes_, y[: len(probe)])]
        f6 = model.get_weights()["f6.weight"]
        rec = {
            "pass": epoch,
            "test_error": float(np.mean(model.predict(xt) != yt) * 100),
            "train_error": float((1 - model.history_["accuracy"][-1]) * 100),
            "saturated": sat,
            "f6_stuck_units": stuck,
            "own_penalty_median": float(np.median(own)),
            "f6_weight_rms": float(np.sqrt(np.mean(f6.astype(np.float64) ** 2))),
            "seconds": seconds,
        }
        records.append(rec)
        print(
            f"{epoch:4d}  {rec['test_error']:5.2f}  {rec['train_error']:6.2f}  "
            + "  ".join(f"{100 * sat[k]:4.1f}%" for k in LAYERS)
            + f"  {stuck:8d}  {rec['own_penalty_median']:4.2f}  {rec['f6_weight_rms']:5.3f}",
            flush=True,
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
