"""Progress output for training: one tqdm bar per epoch, or one line per epoch.

All output goes through Python (tqdm and ``print`` on the ``sys.stdout`` / ``sys.stderr``
of the moment), so it shows in Jupyter and can be captured by tests. The native layer
never prints.

``verbose=1`` draws a bar where a bar can be redrawn: in a terminal, and in Jupyter (the
ipywidgets widget when ``lenet5[notebook]`` installed ipywidgets, else tqdm's text bar,
silently). Elsewhere (a log file, a pipe, CI) it prints one line per epoch instead, the
line of ``verbose=2``, on the stream the bar would have used.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

from tqdm import TqdmWarning

with warnings.catch_warnings():
    # In Jupyter without ipywidgets, tqdm.auto warns "IProgress not found" at import and
    # falls back to its text bar, which is what lenet5 wants there: no warning.
    warnings.simplefilter("ignore", TqdmWarning)
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


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm redraws in the cell's output)."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def redraws(stream: Any) -> bool:
    """Whether a progress bar on ``stream`` is redrawn in place (a terminal, Jupyter)
    rather than written line after line (a file, a pipe)."""
    if in_notebook():
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def say(verbose: int, text: str) -> None:
    """Print a message line when ``verbose`` is not 0."""
    if verbose:
        print(text, file=sys.stdout, flush=True)


class EpochProgress:
    """Reports one epoch: a tqdm bar (``verbose=1`` where it can be redrawn) or one line at
    the end (``verbose>=2``, on stdout; ``verbose=1`` elsewhere, on stderr).

    ``update`` is the callback handed to the native ``train_epoch``: it receives the
    number of samples done so far and the running mean loss.
    """

    def __init__(self, verbose: int, label: str, n_samples: int) -> None:
        self.verbose = verbose
        self.label = label
        self.n_samples = n_samples
        self._bar: Any = None
        self._line_to: Any = None  # the stream of the end-of-epoch line, if any

    def __enter__(self) -> EpochProgress:
        if self.verbose >= 2:
            self._line_to = sys.stdout
        elif self.verbose == 1 and not redraws(sys.stderr):
            self._line_to = sys.stderr
        elif self.verbose == 1:
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
        elif self._line_to is not None:
            rate = self.n_samples / logs["seconds"] if logs["seconds"] > 0 else math.inf
            print(
                f"{self.label}: {format_logs(logs)}, {rate:,.0f} img/s",
                file=self._line_to,
                flush=True,
            )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
