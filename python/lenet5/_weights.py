"""Per-sample loss weights for ``fit`` and ``partial_fit``: ``sample_weight`` and
``class_weight``, combined as scikit-learn's classifiers combine them.

The weight of a sample multiplies its loss and so its gradient. The weights of a training
set are rescaled to mean 1 before training, so that ``learning_rate`` means what it means
without weights and multiplying every weight by a constant changes nothing; integer weights
then act as repeating each sample that many times (exactly so for a full-batch step).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_class_weight", "training_weights"]


def check_class_weight(value: Any) -> Any:
    """Check the ``class_weight`` hyperparameter: None, ``"balanced"`` or a dict.

    The dict maps class labels to finite non-negative numbers (its labels are checked
    against the training labels by :func:`training_weights`).

    Examples
    --------
    >>> from lenet5._weights import check_class_weight
    >>> check_class_weight({0: 2, 1: 0.5})
    {0: 2.0, 1: 0.5}
    """
    if value is None or (isinstance(value, str) and value == "balanced"):
        return value
    if isinstance(value, dict):
        out = {}
        for label, weight in value.items():
            if (
                not isinstance(weight, numbers.Real)
                or isinstance(weight, (bool, np.bool_))
                or not np.isfinite(float(weight))
                or float(weight) < 0
            ):
                raise ValueError(
                    "class_weight must map class labels to finite non-negative numbers; got "
                    f"{weight!r:.40} for the class {label!r:.40}"
                )
            out[label] = float(weight)
        return out
    raise ValueError(
        'class_weight must be None, "balanced" or a dict {class label: weight}; got '
        f"{value!r:.80}"
    )


def training_weights(
    class_weight: Any,
    sample_weight: Any,
    y_idx: np.ndarray,
    classes: np.ndarray,
) -> np.ndarray | None:
    """The float32 weight of every training sample, rescaled to mean 1, or None.

    ``class_weight`` is a value checked by :func:`check_class_weight`; ``sample_weight``
    None or the ``fit`` argument checked by
    :func:`~lenet5._validation.check_sample_weight` (float64, one per sample); ``y_idx`` the
    class index of each sample in ``classes``. ``"balanced"`` gives class ``k`` the weight
    ``n_samples / (n_classes * count_k)`` over the classes present in ``y_idx``, as
    scikit-learn's ``compute_class_weight``. Returns None when every weight would be 1.

    Raises
    ------
    ValueError
        For a ``class_weight`` label that is not a class, or weights whose sum is zero.

    Examples
    --------
    >>> import numpy as np
    >>> from lenet5._weights import training_weights
    >>> training_weights("balanced", None, np.array([0, 0, 0, 1]), np.array(["a", "b"]))
    array([0.6666667, 0.6666667, 0.6666667, 2.       ], dtype=float32)
    """
    n = y_idx.shape[0]
    weights = sample_weight
    per_class = None
    if isinstance(class_weight, str):  # "balanced"
        counts = np.bincount(y_idx, minlength=len(classes)).astype(np.float64)
        present = counts > 0
        per_class = np.ones(len(classes))
        per_class[present] = n / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        per_class = np.ones(len(classes))
        known = {label.item() if isinstance(label, np.generic) else label for label in classes}
        for label, value in class_weight.items():
            key = label.item() if isinstance(label, np.generic) else label
            if key not in known:
                raise ValueError(
                    f"class_weight has the label {label!r:.40}, which is not a class of y "
                    f"(the classes are {classes.tolist()!r:.80})"
                )
            per_class[int(np.flatnonzero(classes == label)[0])] = value
    if per_class is not None:
        by_class = per_class[y_idx]
        weights = by_class if weights is None else weights * by_class
    if weights is None:
        return None
    total = float(weights.sum())
    if not total > 0:
        raise ValueError(
            "the sample weights (sample_weight times class_weight) are all zero; at least "
            "one training sample needs a positive weight"
        )
    return (weights * (n / total)).astype(np.float32)
