"""Fig. 5 of LeCun et al. (1998) reproduced: training and test error per pass of the paper recipe.

Reads the JSON that ``benches/paper_results.py --json FILE`` writes (runs ``paper`` and,
optionally, ``paper-aug``) and draws, with :func:`lenet5.plot.plot_error_curves`, the training
error (measured on the fly during each pass, as in the paper) and the test error (after each
pass) of every seed, as the mean with the range of the seeds shaded (``--each``: one line per
seed), next to the paper's figures: test error 0.95% (stable after about 10 passes),
training error 0.35% after 19 passes, and 0.8% test error with distortions. It also prints
the same comparison as a Markdown table. No training: the figure comes from the records.

    python benches/paper_results.py --data ../shared/data/mnist \\
        --runs paper paper-aug --seeds 0 1 2 --json fig5.json
    python benches/fig5.py fig5.json                     # writes docs/fig5.png
    python benches/fig5.py fig5.json --each --out /tmp/fig5_each.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: The paper's figures (Section III-C and Fig. 5), errors in %.
PAPER_TEST_ERROR = 0.95  # stable after about 10 passes
PAPER_TEST_STABLE_FROM = 10
PAPER_TRAIN_ERROR = 0.35  # after 19 passes
PAPER_TRAIN_PASS = 19
PAPER_DISTORTED_TEST_ERROR = 0.8
PAPER_PASSES = 20

#: The runs of paper_results.py drawn, with the title of their panel.
PANELS = {
    "paper": 'LeNet5(preset="paper")',
    "paper-aug": 'LeNet5(preset="paper", augment=True)',
}

ROOT = Path(__file__).resolve().parents[1]


def histories(records: list[dict[str, Any]], run: str) -> dict[int, dict[str, list[float]]]:
    """history_-like dicts of one run, by seed, from the per-pass records (errors in %)."""
    by_seed: dict[int, dict[str, list[float]]] = {}
    for r in sorted((r for r in records if r["run"] == run), key=lambda r: (r["seed"], r["pass"])):
        h = by_seed.setdefault(r["seed"], {"epoch": [], "accuracy": [], "val_accuracy": []})
        h["epoch"].append(r["pass"])
        h["accuracy"].append(1.0 - r["train_error"] / 100.0)
        test = r["test_error"]
        h["val_accuracy"].append(np.nan if test is None else 1.0 - test / 100.0)
    return by_seed


def seed_text(seeds: list[int]) -> str:
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def error_at(runs: dict[int, dict[str, list[float]]], key: str, epoch: int) -> str:
    """Mean and range over the seeds of the error (%) after ``epoch`` ("-" if missing)."""
    values = [
        100.0 * (1.0 - h[key][h["epoch"].index(epoch)])
        for h in runs.values()
        if epoch in h["epoch"]
    ]
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}%"
    return f"{np.mean(values):.2f}% ({min(values):.2f}-{max(values):.2f}%)"


def comparison(runs: dict[str, dict[int, dict[str, list[float]]]]) -> str:
    """The paper's figures beside the measured ones, as a Markdown table."""
    rows = ["| | paper | lenet5 (mean, range over seeds) |", "|---|---|---|"]
    if "paper" in runs:
        paper = runs["paper"]
        last = int(max(max(h["epoch"]) for h in paper.values()))
        rows += [
            f"| test error after {PAPER_TEST_STABLE_FROM} passes | {PAPER_TEST_ERROR}% "
            f"(stable from about pass {PAPER_TEST_STABLE_FROM}) "
            f"| {error_at(paper, 'val_accuracy', PAPER_TEST_STABLE_FROM)} |",
            f"| test error after {last} passes | {PAPER_TEST_ERROR}% "
            f"| {error_at(paper, 'val_accuracy', last)} |",
            f"| training error after {PAPER_TRAIN_PASS} passes | {PAPER_TRAIN_ERROR}% "
            f"| {error_at(paper, 'accuracy', PAPER_TRAIN_PASS)} |",
        ]
    if "paper-aug" in runs:
        aug = runs["paper-aug"]
        last = int(max(max(h["epoch"]) for h in aug.values()))
        rows.append(
            f"| test error with distortions, after {last} passes | "
            f"{PAPER_DISTORTED_TEST_ERROR}% | {error_at(aug, 'val_accuracy', last)} |"
        )
    return "\n".join(rows)


def draw(content: dict[str, Any], spread: str, ymax: float | None, log_scale: bool) -> Any:
    """The figure: one panel per run found (paper, paper-aug)."""
    import matplotlib.pyplot as plt
    from lenet5.plot import plot_error_curves

    records = content["records"]
    runs = {run: h for run in PANELS if (h := histories(records, run))}
    if not runs:
        raise SystemExit("no records of the runs 'paper' or 'paper-aug' in the file")
    fig, axes = plt.subplots(
        1,
        len(runs),
        figsize=(6.4 * len(runs), 5.0),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, (run, by_seed) in zip(axes[0], runs.items()):
        last = int(max(max(h["epoch"]) for h in by_seed.values()))
        end = max(PAPER_PASSES, last)
        if run == "paper":
            marks = [
                (
                    f"paper: test error {PAPER_TEST_ERROR}% (stable from about pass "
                    f"{PAPER_TEST_STABLE_FROM})",
                    PAPER_TEST_ERROR,
                    (PAPER_TEST_STABLE_FROM, end),
                ),
                (
                    f"paper: training error {PAPER_TRAIN_ERROR}% after {PAPER_TRAIN_PASS} passes",
                    PAPER_TRAIN_ERROR,
                    PAPER_TRAIN_PASS,
                ),
            ]
        else:
            marks = [
                (
                    f"paper, with distortions: test error {PAPER_DISTORTED_TEST_ERROR}%",
                    PAPER_DISTORTED_TEST_ERROR,
                    None,
                )
            ]
        plot_error_curves(
            list(by_seed.values()), spread=spread, marks=marks, validation_label="test", ax=ax
        )
        seeds = "seed" if len(by_seed) == 1 else "seeds"
        ax.set_title(f"{PANELS[run]}, {seeds} {seed_text(list(by_seed))}")
        ax.set_xlabel("pass through the training set")
        ax.set_xlim(0.5, end + 0.5)
        if log_scale:
            ax.set_yscale("log")
        elif ymax is not None:
            ax.set_ylim(0, ymax)
        ax.legend(fontsize=9)
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    data = content.get("data", {})
    machine = content.get("machine", {})
    where = data.get("description") or data.get("path") or "the embedded digits"
    fig.suptitle(
        "Fig. 5 of LeCun et al. (1998) reproduced with lenet5\n"
        "training error (measured during each pass) and test error (after each pass)",
        fontsize=11,
    )
    fig.text(
        0.5,
        -0.01,
        f"{where}. lenet5 {machine.get('lenet5', '?')}, {machine.get('cpu', '?')}, "
        f"{content.get('date', '')[:10]}. Black: the paper's figures.",
        ha="center",
        va="top",
        fontsize=8,
        color="dimgray",
    )
    return fig, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").split("\n")[1:]),
    )
    parser.add_argument("json", type=Path, help="the file of paper_results.py --json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "fig5.png")
    parser.add_argument("--dpi", type=int, default=110)
    parser.add_argument("--each", action="store_true", help="one line per seed, not mean+range")
    parser.add_argument("--ymax", type=float, default=None, help="top of the error axis (%%)")
    parser.add_argument("--log", action="store_true", help="logarithmic error axis")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    content = json.loads(args.json.read_text(encoding="utf-8"))
    fig, runs = draw(content, "each" if args.each else "band", args.ymax, args.log)
    fig.savefig(args.out, dpi=args.dpi, bbox_inches="tight")
    print(comparison(runs))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
