"""Inference over an iterable of image batches (a generator, ``map``, a reader object).

Only one batch is held at a time, plus the results: ``predict`` keeps one label per
image, ``predict_proba`` one row. Arrays, lists and tuples are image batches themselves,
not streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

__all__ = ["is_batch_stream", "over_batches"]


def is_batch_stream(x: Any) -> bool:
    """Whether ``x`` is an iterable of batches rather than one array-like batch.

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5._stream import is_batch_stream
    >>> is_batch_stream(b for b in [np.zeros((2, 28, 28))]), is_batch_stream(np.zeros((2, 784)))
    (True, False)
    """
    if isinstance(x, (np.ndarray, list, tuple, str, bytes, dict, set, frozenset)):
        return False
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        return False
    return isinstance(x, Iterable)


def over_batches(x: Iterable[Any], method: Callable[[Any], np.ndarray]) -> np.ndarray:
    """``method`` applied to each batch of ``x`` in turn, the results concatenated.

    A bad batch raises the error ``method`` raises, with the batch's position in front.
    """
    results = []
    for i, batch in enumerate(x):
        try:
            results.append(method(batch))
        except (TypeError, ValueError) as err:
            if type(err) not in (TypeError, ValueError):
                raise
            raise type(err)(f"batch {i} (counting from 0) of x: {err}") from err
    if not results:
        raise ValueError(
            "x is an iterable of image batches that yielded no batch; at least one image is "
            "required"
        )
    return np.concatenate(results)
