"""``fit`` and ``partial_fit``: their set-up and the epoch loop.

The set-up checks every input once and builds everything training needs (the resolved
:class:`~lenet5._params.Params`, the native dataset, the learning rates, the validation
data, the network: new, or a copy of the model's) before the one step that installs the
network in the model. The epoch loop runs the native training epoch by epoch, with the
learning rate schedule, SDLM's curvature estimates, validation, ``history_``, callbacks,
early stopping, progress output and the Ctrl-C contract; a failure puts the model back as
it was before the call.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _lenet5
from ._params import PAPER_SCHEDULE, Params, draw_seeds, order_seed, resolve
from ._prepare import warn_if_inverted
from ._progress import EpochProgress, say
from ._validation import (
    check_images,
    check_labels,
    check_sample_weight,
    encode_labels,
    labels_to_indices,
    native_chunks,
    to_native,
)
from ._weights import training_weights

__all__ = ["TrainingWarning", "fit", "partial_fit"]

#: Seconds between two progress reports from the native training loop.
PROGRESS_INTERVAL = 0.2

#: Largest bound on the magnitude of any pre-activation or output value (see
#: ``_output_bound``) a fit may leave: a quarter of float32's largest number, so that no
#: sum in a forward pass and no difference in the softmax can overflow.
OUTPUT_BOUND_LIMIT = float(np.finfo(np.float32).max) / 4

#: Keys of ``history_``, in order.
HISTORY_KEYS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)

# Serialises the lazy creation of the per-model fit locks.
_LOCK_CREATION = threading.Lock()

#: Training that went nowhere (:class:`TrainingWarning`, fit only): the training accuracy
#: of the epoch whose weights the model keeps is at most this far above chance (the share
#: of the most frequent class in the training labels) ...
CHANCE_MARGIN = 0.02
#: ... judged after at least this many mini-batch updates in the fit (an epoch's accuracy
#: is measured while it trains, so a few updates cannot show learning) ...
MIN_UPDATES = 50
#: ... or that epoch's training loss is more than this many times that of the fit's first
#: epoch ...
LOSS_GROWTH = 2.0
#: ... and, for the softmax output, more than this many times log(n_classes), the
#: cross-entropy of a uniform guess (the RBF losses have no such reference).
UNIFORM_LOSS_FACTOR = 1.5


class TrainingWarning(UserWarning):
    """Issued when ``fit`` ended normally but training went nowhere.

    ``fit`` issues it when the epoch whose weights the model keeps (the last one; with
    early stopping, the best one) has a training accuracy no more than 0.02 above chance
    (always predicting the most frequent class of the training labels) after at least 50
    mini-batch updates in that fit, or a training loss more than twice the loss of the
    fit's first epoch (for the softmax output also above 1.5 * log(n_classes), the loss
    of a uniform guess). ``partial_fit`` does not issue it. The message gives the figures
    and what to try. A subclass of :class:`UserWarning`, so it can be filtered on its own.

    Examples
    --------
    >>> import warnings
    >>> from lenet5 import LeNet5, TrainingWarning
    >>> from lenet5.datasets import load_mnist
    >>> (x, y), _ = load_mnist()
    >>> model = LeNet5(epochs=2, learning_rate=10, random_state=0, verbose=0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", TrainingWarning)
    ...     model = model.fit(x[:500], y[:500])
    >>> [w.category.__name__ for w in caught]
    ['TrainingWarning']
    >>> "learning_rate=10" in str(caught[0].message)
    True
    >>> with warnings.catch_warnings():  # silence it where a degenerate fit is expected
    ...     warnings.simplefilter("ignore", TrainingWarning)
    ...     model = model.fit(x[:500], y[:500])
    """


# Warnings issued here name the user's line: counted from the function that warns, the
# frames below it are this module's entry point (fit, partial_fit) and LeNet5's method.
_ENTRY_FRAMES = 2


class _Run(NamedTuple):
    """What ``fit`` or ``partial_fit`` set up for its training loop: the checked
    hyperparameters, the network to train (new, or a copy of the model's), the data, the
    learning rates, the validation data, the first epoch index for the progress label
    (None for fit), the order seed, and the model's ``__dict__`` before the call."""

    p: Params
    net: Any
    train_set: Any
    rates: Sequence[float]
    val: tuple[np.ndarray, np.ndarray] | None
    schedule_start: int | None
    order_seed: int
    before: dict[str, Any]


# ---------------------------------------------------------------------- entry points


def fit(
    model: Any,
    x: Any,
    y: Any,
    validation_data: Any,
    sample_weight: Any,
    initial_epoch: Any,
) -> None:
    """``LeNet5.fit``: set up, train, and judge whether training went anywhere."""
    # Ctrl-C raises only inside the training loop; anywhere else in fit (the set-up,
    # the bookkeeping of an epoch, the end) it is held back (see _Interrupts).
    with _Interrupts() as interrupts, _exclusive(model, "fit"):
        run, y_idx = _set_up_fit(model, x, y, validation_data, sample_weight, initial_epoch)
        p = run.p
        n_before = model.n_iter_
        completed = _train(model, run, interrupts)
        n_epochs = model.n_iter_ - n_before
        if completed and n_epochs > 0 and not interrupts.pending:
            updates = n_epochs * -(-y_idx.shape[0] // p.batch_size)
            chance = None  # too few updates to judge the accuracy
            if updates >= MIN_UPDATES:
                chance = float(np.bincount(y_idx).max()) / y_idx.shape[0]
            message = _went_nowhere(
                model.history_,
                model.best_epoch_,
                p,
                n_classes=len(model.classes_),
                n_epochs=n_epochs,
                chance=chance,
            )
            if message is not None:
                warnings.warn(message, TrainingWarning, stacklevel=1 + _ENTRY_FRAMES)
    if completed and interrupts.pending:  # Ctrl-C once the training loop was done
        _warn_interrupted(model, f"after epoch {model.n_iter_}", "the trained weights")


def partial_fit(model: Any, x: Any, y: Any, classes: Any, sample_weight: Any) -> None:
    """``LeNet5.partial_fit``: set up and train one epoch."""
    with _Interrupts() as interrupts, _exclusive(model, "partial_fit"):
        # No TrainingWarning: one epoch on one chunk is too little to judge, and
        # chunks need not be alike (a chunk of new classes starts at a high loss).
        run = _set_up_partial_fit(model, x, y, classes, sample_weight)
        completed = _train(model, run, interrupts)
    if completed and interrupts.pending:
        _warn_interrupted(model, f"after epoch {model.n_iter_}", "the trained weights")


def _warn_interrupted(model: Any, when: str, kept: str, depth: int = 0) -> None:
    """The UserWarning of an interrupted training; ``depth``: frames between the entry
    point and the caller of this function."""
    warnings.warn(
        f"Training was interrupted (KeyboardInterrupt) {when}; the model keeps {kept}, "
        f"and history_ covers the {model.n_iter_} completed epochs.",
        UserWarning,
        stacklevel=2 + depth + _ENTRY_FRAMES,
    )


# ---------------------------------------------------------------------- set-up


def _set_up_fit(
    model: Any,
    x: Any,
    y: Any,
    validation_data: Any,
    sample_weight: Any,
    initial_epoch: Any,
) -> tuple[_Run, np.ndarray]:
    """Everything ``fit`` checks and builds before training, ending with the one step
    that installs the network; nothing of the model changes before that step."""
    p = resolve(model)
    x3 = check_images(x, "x", convert=False)
    y_arr = check_labels(y, x3.shape[0], "y")
    given_weights = check_sample_weight(sample_weight, x3.shape[0])
    classes, y_idx = encode_labels(y_arr, "y")
    p.check_n_classes(len(classes))
    warn_if_inverted(x3, "x", stacklevel=3 + _ENTRY_FRAMES)
    warm = p.warm_start and model._is_fitted()
    if warm:
        _check_warm_start(model, p, classes)
    initial_epoch = _check_initial_epoch(initial_epoch, p.epochs)
    first = initial_epoch or 0
    # A named schedule's rates are all checked before anything changes; a callable's
    # as each is produced (a bad one ends the fit, which then changes nothing).
    rates = _Rates(p, p.epochs - first, start=first)
    val = None
    if validation_data is not None:
        val = _check_validation_data(validation_data, classes)
    init_seed, shuffle_seed, split_seed = draw_seeds(p.random_state)
    fraction = p.validation_fraction
    if val is None and fraction is None and p.early_stopping:
        fraction = 0.1
    keep = None
    if val is None and fraction is not None:
        keep, held = _stratified_split(y_idx, len(classes), fraction, split_seed)
        val = (to_native(x3, held), y_idx[held])
        y_idx = y_idx[keep]
        if given_weights is not None:  # the same split, of the weights
            given_weights = given_weights[keep]
    weights = training_weights(p.class_weight, given_weights, y_idx, classes)
    train_set = _lenet5.Dataset(native_chunks(x3, keep), y_idx, weights)
    n_features = int(x3.shape[1] * x3.shape[2])
    if warm:
        net = model._fitted_net().copy()  # trained apart: the model's stays as it is
    else:
        net = _lenet5.Network(len(classes), **p.architecture(), seed=init_seed)
    # A warm start carries on with the optimizer's state and the random stream (the
    # copy holds them), unless the optimizer's settings changed.
    key = p.optimizer_key()
    if not (warm and model.__dict__.get("_optimizer_key") == key):
        net.reset_optimizer(**p.optimizer_settings(), seed=shuffle_seed)
    before = dict(model.__dict__)
    # Everything is checked: from here on the model changes, in one step.
    if warm:
        model.__dict__.update(_net=net, _optimizer_key=key, n_features_in_=n_features)
    else:
        commit_new_network(model, net, classes, _optimizer_key=key, n_features_in_=n_features)
    run = _Run(p, net, train_set, rates, val, initial_epoch, order_seed(shuffle_seed), before)
    return run, y_idx


def _set_up_partial_fit(
    model: Any, x: Any, y: Any, classes: Any, sample_weight: Any = None
) -> _Run:
    """As ``_set_up_fit``, for ``partial_fit``."""
    p = resolve(model)
    x3 = check_images(x, "x", convert=False)
    y_arr = check_labels(y, x3.shape[0], "y")
    given_weights = check_sample_weight(sample_weight, x3.shape[0])
    if isinstance(p.class_weight, str):
        raise ValueError(
            'class_weight="balanced" needs the whole training set and is not '
            "supported by partial_fit; compute the weights of the classes once and "
            "pass them as a dict, class_weight={label: weight}"
        )
    warn_if_inverted(x3, "x", stacklevel=3 + _ENTRY_FRAMES)
    given = None
    if classes is not None:
        listed = check_labels(classes, None, "classes")
        given, _ = encode_labels(listed, "classes")
        if len(given) != len(listed):
            raise ValueError("classes has repeated labels; list each class once")
    fitted = model._is_fitted()
    key = p.optimizer_key()
    if fitted:
        net, new_classes = model._fitted_state()
        if given is not None and not _same_classes(given, new_classes):
            raise ValueError(
                f"classes {given.tolist()!r:.80} differ from the classes_ the model "
                f"was fitted with, {new_classes.tolist()!r:.80}"
            )
        y_idx = labels_to_indices(y_arr, new_classes, "y")
        # A fresh optimizer only when there is none or its settings changed.
        needs_optimizer = model.__dict__.get("_optimizer_key") != key
    elif given is None:
        new_classes, y_idx = encode_labels(y_arr, "y")
        needs_optimizer = True
    else:
        new_classes = given
        y_idx = labels_to_indices(y_arr, new_classes, "y")
        needs_optimizer = True
    if not fitted:
        p.check_n_classes(len(new_classes))
    rates = [p.learning_rate_at(model.__dict__.get("n_iter_", 0))]  # checked first
    weights = training_weights(p.class_weight, given_weights, y_idx, new_classes)
    train_set = _lenet5.Dataset(native_chunks(x3), y_idx, weights)
    init_seed, shuffle_seed, _ = draw_seeds(p.random_state)
    if fitted:
        net = net.copy()  # trained apart: the model's stays as it is until it is done
    else:
        net = _lenet5.Network(len(new_classes), **p.architecture(), seed=init_seed)
    if needs_optimizer:
        net.reset_optimizer(**p.optimizer_settings(), seed=shuffle_seed)
    before = dict(model.__dict__)
    # Everything is checked: from here on the model changes, in one step.
    if not needs_optimizer:
        key = model.__dict__.get("_optimizer_key")
    if fitted:
        model.__dict__.update(_net=net, _optimizer_key=key)
    else:
        n_features = int(x3.shape[1] * x3.shape[2])
        commit_new_network(model, net, new_classes, _optimizer_key=key, n_features_in_=n_features)
    start = model.n_iter_
    return _Run(p, net, train_set, rates, None, start, order_seed(shuffle_seed), before)


def commit_new_network(model: Any, net: Any, classes: np.ndarray, **extra: Any) -> None:
    """Install a freshly built network and reset the fitted state, in one step (a
    single ``dict.update``: neither a Ctrl-C nor another thread sees half of it)."""
    history: dict[str, list[Any]] = {key: [] for key in HISTORY_KEYS}
    model.__dict__.update(
        {
            "classes_": classes,
            "n_iter_": 0,
            "history_": history,
            "best_epoch_": None,
            "n_params_": int(net.n_params),
            "hessian_diag_": None,
            "step_sizes_": None,
            "_net": net,
            **extra,
        }
    )


def _check_warm_start(model: Any, p: Params, classes: np.ndarray) -> None:
    if not _same_classes(classes, model.classes_):
        raise ValueError(
            f"warm_start=True but y has the classes {classes.tolist()!r:.80} while the "
            f"model was fitted with {model.classes_.tolist()!r:.80}; set "
            "warm_start=False to train a new network"
        )
    config = model._net.config()
    for key, value in p.architecture().items():
        # The initialisation only drew the first weights: it cannot matter once they
        # have trained (a model saved before a preset changed its init still warm-starts).
        if key not in config or key == "init":
            continue
        if key == "map_j":  # stored in float32 by the network
            same = bool(np.float32(config[key]) == np.float32(value))
        else:
            same = config[key] == value
        if not same:
            raise ValueError(
                f"warm_start=True cannot change {key} from {config[key]!r} to {value!r}; "
                "set warm_start=False to train a new network"
            )


def _check_initial_epoch(initial_epoch: Any, epochs: int) -> int | None:
    """fit's ``initial_epoch``: None, or an int in [0, epochs)."""
    if initial_epoch is None:
        return None
    if (
        isinstance(initial_epoch, (bool, np.bool_))
        or not isinstance(initial_epoch, numbers.Integral)
        or not 0 <= initial_epoch < epochs
    ):
        raise ValueError(
            f"initial_epoch must be None or an integer in [0, epochs) = [0, {epochs}), the "
            f"epochs of the schedule already done; got {initial_epoch!r:.80}"
        )
    return int(initial_epoch)


def _same_classes(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            same = np.asarray(a == b)
        except Exception:  # labels whose comparison fails are not the same labels
            return False
    return same.shape == a.shape and bool(same.all())


def _check_validation_data(data: Any, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"validation_data must be a tuple (x_val, y_val); got {type(data).__name__}"
        )
    x_val = check_images(data[0], "validation_data[0]")
    y_val = check_labels(data[1], x_val.shape[0], "validation_data[1]")
    return x_val, labels_to_indices(y_val, classes, "validation_data[1]")


def _stratified_split(
    y_idx: np.ndarray, n_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of every class (at least one sample stays for training):
    the indices of the samples kept for training and of those held out."""
    rng = np.random.default_rng(seed)
    held = np.zeros(y_idx.shape[0], dtype=bool)
    for k in range(n_classes):
        members = np.flatnonzero(y_idx == k)
        count = min(round(fraction * members.shape[0]), members.shape[0] - 1)
        if count > 0:
            held[rng.permutation(members)[:count]] = True
    if not held.any():
        raise ValueError(
            f"validation_fraction={fraction:g} of {y_idx.shape[0]} samples leaves no "
            "validation samples; use a larger fraction or pass validation_data"
        )
    return np.flatnonzero(~held), np.flatnonzero(held)


class _Rates(Sequence[float]):
    """The learning rates of a fit's ``n`` epochs, produced (and checked) one at a time
    by ``Params.learning_rate_at``. A named schedule is checked at once at its extremes
    (its first epoch and the epochs where it is smallest), so that a rate float32 cannot
    hold is refused before anything changes; a callable is only called epoch by epoch."""

    def __init__(self, p: Params, n: int, start: int = 0) -> None:
        self._p, self._n, self._start = p, n, start
        schedule = p.lr_schedule
        last = start + n - 1
        if schedule == "cosine":
            extremes = {start, last}
        elif schedule == "paper":
            extremes = set(range(start, min(last + 1, len(PAPER_SCHEDULE)))) | {last}
        elif schedule == "constant":
            extremes = {start}
        else:
            extremes = set()
        for index in sorted(extremes):
            if n > 0:
                p.learning_rate_at(index)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._p.learning_rate_at(self._start + index)

    def __iter__(self) -> Iterator[float]:
        return (self._p.learning_rate_at(self._start + i) for i in range(self._n))


# ---------------------------------------------------------------------- locking


def _fit_lock(model: Any) -> threading.Lock:
    lock = model.__dict__.get("_lock")
    if lock is None:
        with _LOCK_CREATION:
            lock = model.__dict__.get("_lock")
            if lock is None:
                lock = threading.Lock()
                model.__dict__["_lock"] = lock
    return lock


@contextlib.contextmanager
def _exclusive(model: Any, method: str) -> Iterator[None]:
    lock = _fit_lock(model)
    if not lock.acquire(blocking=False):
        raise RuntimeError(
            f"{method} was called while another fit or partial_fit is running on this "
            "model; wait for it to finish (predict may run meanwhile) or train a copy "
            "(copy.deepcopy(model))"
        )
    try:
        yield
    finally:
        lock.release()


class _Interrupts:
    """Where Ctrl-C may interrupt ``fit``: only inside its training loop.

    While a fit runs (on the main thread, with Python's default SIGINT handler in place)
    SIGINT goes to this object's handler: between ``arm()`` and ``disarm()`` (the epochs:
    native training, curvature, validation) it raises KeyboardInterrupt, which the loop
    turns into the Ctrl-C contract; elsewhere (the set-up, the recording of an epoch in
    ``held()``, the end of the fit) it is only noted as ``pending``. ``arm()`` raises at
    once for a SIGINT held back during the set-up, ``held()`` on leaving for one during
    the recording, so neither waits for the next chance. No other thread gets
    KeyboardInterrupt, and a handler of the program's own is left alone: then this
    object does nothing."""

    def __init__(self) -> None:
        self.pending = False
        self._armed = False
        self._installed = False

    def __enter__(self) -> _Interrupts:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            self._armed = False
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.pending = True
        if self._armed:
            raise KeyboardInterrupt

    def arm(self) -> None:
        self._armed = self._installed
        if self._armed and self.pending:
            raise KeyboardInterrupt

    def disarm(self) -> None:
        self._armed = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        armed, self._armed = self._armed, False
        pending, self.pending = self.pending, False
        try:
            yield
        finally:
            self._armed = armed
            self.pending = self.pending or pending
        if armed and self.pending:
            raise KeyboardInterrupt


# ---------------------------------------------------------------------- the epoch loop


def _train(model: Any, run: _Run, interrupts: _Interrupts) -> bool:
    """The epoch loop, putting the model back as it was before the call (``run.before``,
    its ``__dict__`` then) if it raises: a failed fit or partial_fit changes nothing.
    Training never touches the network of ``before`` (a new network, or a copy of the
    old one, is trained), and the fitted attributes are only ever replaced, never changed
    in place, so the shallow copy ``before`` is the whole old state. A KeyboardInterrupt
    is not an error here: the model keeps what was trained (see ``_epochs``)."""
    try:
        return _epochs(model, run, interrupts)
    except Exception as err:
        model.__dict__ = dict(run.before)  # one step
        if isinstance(err, MemoryError):
            batch_size, n_samples = run.p.batch_size, len(run.train_set)
            raise MemoryError(
                f"{err}: training needs memory in proportion to the batch size "
                f"(batch_size={batch_size!r:.30}, {min(batch_size, n_samples)} images "
                "per batch here); use a smaller batch_size. The model is unchanged."
            ) from err
        raise


def _epochs(model: Any, run: _Run, interrupts: _Interrupts) -> bool:
    """The epoch loop: progress, validation, history, callbacks, early stopping.

    One epoch per learning rate of ``run.rates`` (each checked as it is produced).
    ``run.order_seed`` fixes the order of every epoch when ``shuffle="once"``. Returns
    False when a KeyboardInterrupt ended training (after warning), else True. Each
    epoch's results are installed in one step (``history_``, ``n_iter_``,
    ``best_epoch_`` together, with Ctrl-C held back meanwhile), so an interrupt never
    leaves them half updated. An epoch whose network could give non-finite outputs raises
    FloatingPointError. Ctrl-C raises KeyboardInterrupt only inside
    ``interrupts.armed()``; one held back during the set-up stops training before its
    first update."""
    p, net, train_set, val = run.p, run.net, run.train_set, run.val
    n_epochs = len(run.rates)
    verbose = p.verbose
    n_samples = len(train_set)
    early = p.early_stopping and val is not None
    order = run.order_seed if p.shuffle == "once" else None
    best_loss = math.inf
    best_weights = None
    stale = 0
    interrupted = False
    in_epoch = False  # True while the native loop runs (an interrupt then cuts an epoch)
    first_epoch = model.n_iter_ + 1
    sdlm = p.optimizer == "sdlm"
    if sdlm:
        model.__dict__.update(best_epoch_=None)
    else:
        model.__dict__.update(best_epoch_=None, hessian_diag_=None, step_sizes_=None)
    try:
        interrupts.arm()
        for i, lr in enumerate(run.rates):
            epoch_no = model.n_iter_ + 1
            net.set_learning_rate(lr)
            if run.schedule_start is None:
                label = f"Epoch {i + 1}/{n_epochs}"
            else:
                label = f"Epoch {epoch_no}"
            start = time.perf_counter()
            if sdlm:
                # The paper re-estimates the curvature on a sample before every pass.
                net.estimate_curvature(train_set, p.curvature_samples, p.n_jobs)
                curvature = {"hessian_diag_": net.curvature(), "step_sizes_": net.step_sizes()}
                model.__dict__.update(curvature)
            with EpochProgress(verbose, label, n_samples) as progress:
                try:
                    in_epoch = True
                    stats = net.train_epoch(
                        train_set,
                        p.batch_size,
                        p.n_jobs,
                        callback=progress.update,
                        interval=PROGRESS_INTERVAL,
                        augment=p.augment,
                        label_smoothing=p.label_smoothing,
                        order_seed=order,
                        shuffle=p.shuffle is not False,
                    )
                except FloatingPointError as err:
                    where = str(err).split(";")[0]  # "training diverged at batch b ..."
                    raise FloatingPointError(
                        f"training diverged in epoch {epoch_no} (learning_rate={lr:g}): "
                        f"{where}. The model is left as it was before this call; try a "
                        "smaller learning_rate."
                    ) from err
                # The last update can leave finite weights so large that a forward
                # pass overflows (NaN probabilities) although every loss was finite.
                bound = _output_bound(net)
                if not bound < OUTPUT_BOUND_LIMIT:
                    raise FloatingPointError(
                        f"training diverged in epoch {epoch_no} (learning_rate={lr:g}): "
                        f"after its last update the network's outputs can reach {bound:.3g}"
                        ", too large for float32 (some images would give NaN or "
                        "infinite probabilities). The model is left as it was before "
                        "this call; try a smaller learning_rate."
                    )
                val_loss = val_acc = math.nan
                if val is not None:
                    val_loss, val_acc = _evaluate(net, val, p.n_jobs)
                logs = {
                    "loss": float(stats["loss"]),
                    "accuracy": float(stats["accuracy"]),
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "learning_rate": lr,
                    "seconds": time.perf_counter() - start,
                }
                progress.finish(logs)
            improved = early and val_loss < best_loss - p.min_delta
            candidate = net.get_weights() if improved else None
            with interrupts.held():  # the epoch is recorded whole or not at all
                old = model.history_
                history = {
                    key: [*old[key], epoch_no if key == "epoch" else logs[key]]
                    for key in HISTORY_KEYS
                }
                update: dict[str, Any] = {"history_": history, "n_iter_": epoch_no}
                if improved:
                    update["best_epoch_"] = epoch_no
                    best_loss, best_weights, stale = val_loss, candidate, 0
                model.__dict__.update(update)
                in_epoch = False
            stop = False
            if early and not improved:
                stale += 1
                if stale >= p.patience:
                    say(
                        verbose,
                        f"Early stopping after epoch {epoch_no}: val_loss has not "
                        f"improved for {stale} epochs; keeping the weights of epoch "
                        f"{model.best_epoch_} (val_loss {best_loss:.4f}).",
                    )
                    stop = True
            for callback in p.callbacks:
                if callback(epoch_no, dict(logs)) is False:
                    say(verbose, f"Training stopped by a callback after epoch {epoch_no}.")
                    stop = True
            if stop:
                break
        interrupts.disarm()  # here, not in finally: a SIGINT there would escape
    except KeyboardInterrupt:
        interrupts.disarm()
        interrupted = True
    finally:
        # Whatever ended training, early stopping leaves the best epoch's weights.
        if best_weights is not None:
            net.set_weights(best_weights)
    if interrupted:
        if not in_epoch and model.n_iter_ == first_epoch - 1:
            when = "before the first update"
            kept = "its weights as they were before this call's training"
        elif in_epoch:
            when = f"during epoch {model.n_iter_ + 1}"
            kept = "the weights of the last completed mini-batch"
        else:
            when = f"after epoch {model.n_iter_}"
            kept = f"the weights after epoch {model.n_iter_}"
        if best_weights is not None:
            kept = f"the weights of epoch {model.best_epoch_} (best validation loss)"
        _warn_interrupted(model, when, kept, depth=2)  # _epochs, _train
    return not interrupted


def _output_bound(net: Any) -> float:
    """An upper bound, over every valid input image, on the magnitude of every value a
    forward pass computes (each layer's weighted sums and the output scores), from the
    weights alone: pixels lie in [BACKGROUND, BACKGROUND + INK_RANGE] (-0.1 to 1.175); a
    layer's sums are at most the largest sum of its absolute weights times the bound on
    its inputs plus its largest bias; the scaled tanh is at most TANH_A and at most
    TANH_A * TANH_S times its argument; pooling keeps the bound. Infinite or NaN when a
    weight is. Below ``OUTPUT_BOUND_LIMIT``, no image can give a non-finite output."""
    w = {k: np.abs(v.astype(np.float64)) for k, v in net.get_weights().items()}
    if not all(np.isfinite(v).all() for v in w.values()):
        return math.inf
    config = net.config()
    tanh = config["activation"] == "tanh"
    a, s = _lenet5.TANH_A, _lenet5.TANH_S

    def act(b: float) -> float:
        return min(b * (a * s), a) if tanh else b

    def dense(name: str, b: float) -> float:
        rows = w[f"{name}.weight"].reshape(w[f"{name}.weight"].shape[0], -1).sum(axis=1)
        bias = w.get(f"{name}.bias", np.zeros(1)).max()
        return float(rows.max() * b + bias)

    largest = 0.0
    b = max(abs(_lenet5.BACKGROUND), abs(_lenet5.BACKGROUND + _lenet5.INK_RANGE))
    for layer in ("c1", "s2", "c3", "s4", "c5", "f6"):
        if layer in ("s2", "s4"):
            if f"{layer}.weight" not in w:  # max or average pooling: no larger than its input
                continue
            b = float(w[f"{layer}.weight"].max() * 4 * b + w[f"{layer}.bias"].max())
        else:
            b = dense(layer, b)
        largest = max(largest, b)
        b = act(b)
    if config["output"] == "rbf":
        # penalties: sum over F6 of (f6 - prototype)^2
        out = float((((b + w["output.weight"]) ** 2).sum(axis=1)).max())
    else:
        out = dense("output", b)
    return max(largest, out)


def _evaluate(net: Any, val: tuple[np.ndarray, np.ndarray], n_jobs: int) -> tuple[float, float]:
    """Mean training loss (cross-entropy, or MAP / MLE for the RBF output) and accuracy on
    validation data."""
    x_val, y_val = val
    config = net.config()
    if config.get("output") == "rbf":
        return _evaluate_rbf(net, x_val, y_val, config, n_jobs)
    proba = net.predict_proba(x_val, n_jobs)
    picked = proba[np.arange(y_val.shape[0]), y_val].astype(np.float64)
    # float32 probabilities can underflow to 0; clip at float32's smallest normal number
    loss = float(-np.mean(np.log(np.maximum(picked, np.finfo(np.float32).tiny))))
    accuracy = float(np.mean(np.argmax(proba, axis=1) == y_val))
    return loss, accuracy


#: Images per call when validation reads the RBF penalties (bounds the memory of the
#: per-layer outputs that ``activations`` returns).
_PENALTY_CHUNK = 512


def _evaluate_rbf(
    net: Any, x_val: np.ndarray, y_val: np.ndarray, config: dict[str, Any], n_jobs: int
) -> tuple[float, float]:
    """The MAP or MLE loss and the accuracy from the RBF penalties."""
    penalties = np.concatenate(
        [
            net.activations(x_val[i : i + _PENALTY_CHUNK])["output"]
            for i in range(0, x_val.shape[0], _PENALTY_CHUNK)
        ]
    ).astype(np.float64)
    rows = np.arange(y_val.shape[0])
    loss_terms = penalties[rows, y_val]
    if config.get("loss") == "map":
        # log(exp(-j) + sum_i exp(-y_i)), shifted by its largest term
        terms = np.concatenate(
            [np.full((len(penalties), 1), -float(config["map_j"])), -penalties], axis=1
        )
        top = terms.max(axis=1)
        loss_terms = loss_terms + top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
    # Accuracy from the predictions themselves: the penalties above come from the
    # single-image kernels, predict's from the chunk kernels, whose rounding can break a
    # near tie the other way.
    accuracy = float(np.mean(net.predict(x_val, n_jobs) == y_val))
    return float(np.mean(loss_terms)), accuracy


# ---------------------------------------------------------------------- judging a fit


def _went_nowhere(
    history: dict[str, list[Any]],
    best_epoch: int | None,
    p: Any,
    *,
    n_classes: int,
    n_epochs: int,
    chance: float | None,
) -> str | None:
    """The message of a TrainingWarning for a fit's last ``n_epochs`` epochs, or None.

    ``p`` is the fit's :class:`~lenet5._params.Params` (or a dict with the keys output,
    lr_schedule, learning_rate, optimizer and init). Only the epochs of this fit count (a
    warm start may continue on other data). The epoch judged is the one whose weights the
    model keeps: the best one with early stopping, else the last. Accuracy rule (only when
    ``chance`` is given): its training accuracy is at most ``chance + CHANCE_MARGIN``.
    Loss rule: its training loss is more than ``LOSS_GROWTH`` times that of the fit's
    first epoch, and for the softmax output more than ``UNIFORM_LOSS_FACTOR *
    log(n_classes)``, the cross-entropy of a uniform guess (the RBF losses, MAP and MLE,
    are penalties with no such reference)."""
    if isinstance(p, dict):
        output, schedule, rate0 = p["output"], p["lr_schedule"], p["learning_rate"]
        optimizer, init = p["optimizer"], p["init"]
    else:
        output, schedule, rate0 = p.output, p.lr_schedule, p.learning_rate
        optimizer, init = p.optimizer, p.init
    epochs, losses, accuracies = history["epoch"], history["loss"], history["accuracy"]
    start = len(epochs) - n_epochs
    if n_epochs < 1 or start < 0:
        return None
    index = len(epochs) - 1
    if best_epoch is not None and best_epoch in epochs[start:]:
        index = epochs.index(best_epoch, start)
    at_chance = chance is not None and accuracies[index] <= chance + CHANCE_MARGIN
    first, last = losses[start], losses[index]
    rose = (
        index > start
        and last > LOSS_GROWTH * first
        and (output == "rbf" or last > UNIFORM_LOSS_FACTOR * math.log(n_classes))
    )
    if not (at_chance or rose):
        return None
    epoch = epochs[index]
    kept = " (the best epoch, whose weights the model keeps)" if best_epoch is not None else ""
    findings = []
    if at_chance and chance is not None:
        relation = "below" if accuracies[index] < chance else "no better than"
        findings.append(
            f"the training accuracy of epoch {epoch}{kept} is {accuracies[index]:.1%}, "
            f"{relation} chance ({chance:.1%}, always predicting the most frequent class)"
        )
        kept = ""
    if rose:
        findings.append(
            f"the training loss rose from {first:.4g} in epoch {epochs[start]} to "
            f"{last:.4g} in epoch {epoch}{kept}"
        )
    if callable(schedule):
        rate = f"learning_rate={rate0:g} with a callable lr_schedule"
    elif schedule != "constant":
        rate = f"learning_rate={rate0:g} with lr_schedule={schedule!r}"
    else:
        rate = f"learning_rate={rate0:g}"
    plural = "s" if n_epochs != 1 else ""
    smaller = f"a smaller learning_rate (e.g. {rate0 / 10:g})"
    other_init = "glorot" if init != "glorot" else "he"
    if rose:
        tries = f"{smaller}, a different init (e.g. init={other_init!r}) or more epochs"
    else:
        tries = f"more epochs, a different init (e.g. init={other_init!r}) or {smaller}"
    return (
        f"Training went nowhere: {' and '.join(findings)}, after {n_epochs} epoch{plural} "
        f"with optimizer={optimizer!r}, {rate}, init={init!r}. Try {tries}; "
        "check that the labels match the images (same order) and that the pixels use "
        "their range (integers in 0..255 or floats in [0, 1], light ink on a dark "
        "background as MNIST)."
    )
