"""Progress output for training: one tqdm bar per epoch, or one line per epoch.

All output goes through Python (tqdm and ``print`` on the ``sys.stdout`` / ``sys.stderr``
of the moment), so it shows in Jupyter (tqdm.auto picks the notebook widget there) and
can be captured by tests. The native layer never prints.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["EpochProgress", "format_logs", "say"]

#: Seconds between two bar refreshes at most; the native layer reports at its own interval.
BAR_MININTERVAL = 0.25


def _fmt(value: float, spec: str = ".4f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def format_logs(logs: dict[str, Any]) -> str:
    """One line describing an epoch's figures.

    Examples
    --------
    >>> from lenet5._progress import format_logs
    >>> format_logs({"loss": 0.5, "accuracy": 0.75, "learning_rate": 0.01, "seconds": 2.0,
    ...              "val_loss": float("nan"), "val_accuracy": float("nan")})
    'loss 0.5000, accuracy 0.7500, lr 0.01, 2.0 s'
    """
    parts = [f"loss {_fmt(logs['loss'])}", f"accuracy {_fmt(logs['accuracy'])}"]
    if not math.isnan(logs.get("val_loss", math.nan)):
        parts.append(f"val_loss {_fmt(logs['val_loss'])}")
        parts.append(f"val_accuracy {_fmt(logs['val_accuracy'])}")
    parts.append(f"lr {logs['learning_rate']:.3g}")
    parts.append(f"{logs['seconds']:.1f} s")
    return ", ".join(parts)


def say(verbose: int, text: str) -> None:
    """Print a message line when ``verbose`` is not 0."""
    if verbose:
        print(text, file=sys.stdout, flush=True)


class EpochProgress:
    """Reports one epoch: a tqdm bar (``verbose=1``) or one line at the end (``verbose>=2``).

    ``update`` is the callback handed to the native ``train_epoch``: it receives the
    number of samples done so far and the running mean loss.
    """

    def __init__(self, verbose: int, label: str, n_samples: int) -> None:
        self.verbose = verbose
        self.label = label
        self.n_samples = n_samples
        self._bar: Any = None

    def __enter__(self) -> EpochProgress:
        if self.verbose == 1:
            self._bar = tqdm(
                total=self.n_samples,
                desc=self.label,
                unit="img",
                leave=True,
                dynamic_ncols=True,
                mininterval=BAR_MININTERVAL,
                file=sys.stderr,
            )
        return self

    def update(self, samples_done: int, running_loss: float) -> None:
        bar = self._bar
        if bar is None:
            return
        step = int(samples_done) - bar.n
        bar.set_postfix_str(f"loss {running_loss:.4f}", refresh=False)
        if step > 0:
            bar.update(step)

    def finish(self, logs: dict[str, Any]) -> None:
        """Show the epoch's final figures."""
        if self._bar is not None:
            self._bar.set_postfix_str(format_logs(logs), refresh=True)
        elif self.verbose >= 2:
            rate = self.n_samples / logs["seconds"] if logs["seconds"] > 0 else math.inf
            print(
                f"{self.label}: {format_logs(logs)}, {rate:,.0f} img/s",
                file=sys.stdout,
                flush=True,
            )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
