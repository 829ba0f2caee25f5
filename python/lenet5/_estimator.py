"""The ``LeNet5`` estimator: scikit-learn's classifier contract around the native network.

The class holds the hyperparameters (``__init__`` only stores them) and the public
methods. What they use lives beside it: ``_params`` resolves and checks the
hyperparameters, ``_training`` runs ``fit`` and ``partial_fit``, ``_validation`` checks the
inputs, ``_persist`` reads and writes model files and pickles.
"""

from __future__ import annotations

import inspect
import math
import operator
import os
from typing import Any, Callable

import numpy as np

from . import _persist, _training
from ._params import resolve, resolve_n_jobs
from ._prepare import warn_if_inverted
from ._stream import is_batch_stream, over_batches
from ._training import TrainingWarning
from ._validation import (
    NotFittedError,
    check_images,
    check_labels,
    check_sample_weight,
    check_weights,
    comparison_failed,
    quick_images,
    run_in_chunks,
)

__all__ = ["LeNet5", "TrainingWarning"]

#: Values per image that ``activations`` returns besides the output layer's (C1 6x28x28,
#: S2 6x14x14, C3 16x10x10, S4 16x5x5, C5 120, F6 84).
ACTIVATION_VALUES = 6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84

# Reads the network and the classes of a fitted model in one call (see _fitted_state).
_FITTED_PAIR = operator.itemgetter("_net", "classes_")


def _same_value(a: Any, b: Any) -> bool:
    """Whether a hyperparameter value equals its default (for ``repr``)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


class LeNet5:
    """LeNet-5 (LeCun et al., 1998) as a scikit-learn-style classifier.

    The network (C1 convolution, S2 subsampling, C3 convolution with the paper's Table I
    connections, S4 subsampling, C5 convolution, F6 and an output layer) runs in a
    native Rust core; this class adds the estimator contract: hyperparameters in
    ``__init__``, ``fit`` / ``partial_fit`` / ``predict`` / ``predict_proba`` / ``score``,
    validation, early stopping, callbacks, progress output and pickling. scikit-learn is
    not a dependency, but ``clone``, ``Pipeline``, ``GridSearchCV`` and
    ``cross_val_score`` work with it.

    Every part of the 1998 paper is an option (Euclidean RBF output, MAP loss, stochastic
    diagonal Levenberg-Marquardt, distortions), and so are the parts of the LeNet-5 most
    tutorials use (ReLU, max pooling, full C3, He or Glorot initialisation, Adam, weight
    decay). A ``preset`` names a combination; see ``docs/paper.md`` for the paper's parts
    and where lenet5 departs from it.

    Parameters
    ----------
    preset : {"paper", "modern"} or None, default=None
        A named set of values for the parameters below whose default is None.
        ``"paper"``: the paper's recipe (Table I, trainable subsampling, scaled tanh, RBF
        output with the MAP loss and ``rbf_prototypes="codes"``, ``init="lecun_sqrt"``,
        ``optimizer="sdlm"`` with ``lr_schedule="paper"`` at the paper's printed rates
        (``learning_rate=0.0005``), 20 epochs, ``batch_size=1``, ``shuffle="once"``; see
        ``docs/paper.md``).
        ``"modern"``: ReLU, max pooling, full C3, softmax with ``label_smoothing=0.05``,
        Glorot initialisation, AdamW with ``learning_rate=0.003``, ``lr_schedule="cosine"``
        and ``weight_decay=0.1`` (decoupled), 30 epochs of batches of 32.
        A keyword argument given explicitly (not None) overrides the preset's value; the
        preset's other values stay (an ``optimizer`` other than the preset's takes that
        optimizer's default ``learning_rate`` and ``weight_decay`` unless they are given:
        both are scaled for the preset's own optimizer). None: the library defaults listed
        below.
    epochs : int or None, default=None
        Passes over the training data in ``fit`` (None: the preset's, else 20).
        ``partial_fit`` always makes one.
    batch_size : int or None, default=None
        Images per mini-batch; the last batch of an epoch may be smaller (None: the
        preset's, else 64).
    learning_rate : float or None, default=None
        Step size of the optimizer (the start value when ``lr_schedule`` varies it; for
        SDLM the global rate eta of the step ``eta / (mu + h_kk)``). None: the preset's
        value when ``optimizer`` is the preset's optimizer, else 0.05 for SGD, 0.001 for
        Adam and AdamW and 0.005 for SDLM (rates for the default mini-batches of 64).
    optimizer : {"sgd", "adam", "adamw", "sdlm"} or None, default=None
        Mini-batch SGD (with ``momentum``, ``nesterov``, ``weight_decay``), Adam (with
        ``beta_1``, ``beta_2``, ``epsilon``, ``weight_decay``), AdamW (Adam with decoupled
        weight decay, as ``torch.optim.AdamW``), or the paper's stochastic
        diagonal Levenberg-Marquardt method (with ``mu``, ``curvature_samples``,
        ``weight_decay``): each parameter steps by ``learning_rate / (mu + h_kk)`` times
        its gradient, ``h_kk`` a Gauss-Newton estimate of the loss's second derivative
        re-estimated before every epoch (None: the preset's, else "sgd").
    momentum : float, default=0.9
        SGD momentum, in [0, 1).
    nesterov : bool, default=False
        Use Nesterov momentum (SGD only).
    weight_decay : float or None, default=None
        L2 penalty coefficient, >= 0: ``weight_decay * w`` is added to the gradient of
        every parameter ``w`` (None: the preset's, else 0.002). With AdamW the decay is
        decoupled instead: each step also subtracts ``learning_rate * weight_decay * w``.
        With SDLM the penalty's gradient is added before the step as with SGD
        (``preset="paper"`` uses 0.002; see ``docs/paper.md``, departure 16).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's decay rates of the first and second moment estimates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's numerical stability term.
    mu : float, default=0.02
        SDLM's damping term (the paper's value), > 0: it caps the step of parameters
        whose curvature estimate is small at ``learning_rate / mu``.
    curvature_samples : int, default=500
        SDLM: training images (drawn without replacement, all when there are fewer)
        on which ``h_kk`` is estimated before each epoch, as in the paper.
    lr_schedule : {"constant", "cosine", "paper"} or callable or None, default=None
        Learning rate per epoch (None: the preset's, else "cosine"). ``"cosine"``
        decays it from ``learning_rate`` towards 0 as half a cosine over ``epochs``.
        ``"paper"`` is the paper's schedule scaled by ``learning_rate / 0.0005``: 0.0005
        for epochs 1-2, 0.0002 for 3-5, 0.0001 for 6-8, 0.00005 for 9-12 and 0.00001 from
        epoch 13 on. A callable is called as ``lr_schedule(epoch_index, learning_rate)``
        with the 0-based epoch index of the current ``fit`` (for ``partial_fit``: the
        number of epochs trained so far) and must return a positive learning rate.
    activation : {"tanh", "relu"} or None, default=None
        ``"tanh"`` is the paper's scaled tanh ``1.7159 * tanh(2a/3)`` (None: the
        preset's, else "tanh").
    pooling : {"sub", "avg", "max"} or None, default=None
        ``"sub"`` is the paper's trainable subsampling (sum of each 2x2 block, times a
        trainable coefficient, plus a trainable bias, then the activation); ``"avg"`` and
        ``"max"`` have no parameters and no activation (None: the preset's, else "sub").
    c3 : {"table", "full"} or None, default=None
        Connections from S2 to C3: the paper's Table I (60 of 96 pairs) or all of them
        (None: the preset's, else "table").
    output : {"softmax", "rbf"} or None, default=None
        ``"softmax"``: a dense layer of logits and a softmax. ``"rbf"``: the paper's
        Euclidean RBF units, penalty ``y_i = sum_j (x_j - w_ij)^2`` of F6's 84 outputs
        from fixed prototypes ``w_i`` of -1 and +1 (``rbf_prototypes``: bitmaps of the
        digits or distributed codes); class ``classes_[i]`` gets prototype i, so at most
        10 classes; ``predict`` is the class of the smallest penalty and
        ``predict_proba`` is ``softmax(-y)`` (None: the preset's, else "softmax").
    loss : {"ce", "map", "mle"} or None, default=None
        ``"ce"``: cross-entropy (with ``output="softmax"`` only). ``"map"``: the paper's
        Eq. 9, ``y_D + log(exp(-map_j) + sum_i exp(-y_i))``; ``"mle"``: Eq. 8, the
        penalty ``y_D`` of the correct class (both with ``output="rbf"`` only). None:
        "ce" for softmax, "map" for RBF.
    map_j : float, default=0.1
        The constant ``j`` of the MAP loss, >= 0 (only used by ``loss="map"``).
    label_smoothing : float or None, default=None
        In [0, 1), with ``loss="ce"`` only (None: the preset's, else 0.02; 0 with an RBF
        output): the cross-entropy's target puts ``1 - label_smoothing`` on the true class
        and spreads ``label_smoothing`` evenly over all classes (as
        ``torch.nn.CrossEntropyLoss(label_smoothing=...)``). The training loss in
        ``history_`` includes it; the validation loss is the plain cross-entropy.
    rbf_trainable : bool, default=False
        Let the RBF prototypes learn (the paper keeps them fixed).
    rbf_prototypes : {"bitmaps", "codes"} or None, default=None
        The RBF units' prototypes (None: the preset's, else "bitmaps"). ``"bitmaps"``:
        stylised 7x12 drawings of the digits (:func:`lenet5.rbf_bitmaps`), the kind the
        paper describes; ``"codes"``: distributed codes, rows of a Hadamard matrix of
        order 84, any two 42 units apart (:func:`lenet5.rbf_codes`), the paper preset's:
        on the full MNIST they train to the paper's errors, the bitmaps do not
        (``docs/paper.md``).
    init : {"lecun", "lecun_sqrt", "he", "glorot"} or None, default=None
        Weight initialisation (None: the preset's, else "he"). ``"lecun"``: weights and
        biases uniform in +-2.4 / fan-in, as the paper prints it (the signal then fades
        layer by layer: F6 starts near +-0.01, and training from it is slow to start).
        ``"lecun_sqrt"``: uniform in +-2.4 / sqrt(fan-in), but +-2.4 / fan-in for the
        subsampling coefficients, the paper's aim (every weighted sum with the same
        spread) under the hypothesis that fits each weight (the paper preset's). ``"he"``:
        uniform in +-sqrt(6 / fan-in); ``"glorot"``: uniform in +-sqrt(6 / (fan-in +
        fan-out)); both with zero biases and subsampling coefficients of 1/4. (Keras's
        ``lecun_uniform``, +-sqrt(3 / fan-in), is neither of the LeCun rules here.)
    augment : bool or dict, default=False
        Train on randomly distorted images (the paper's planar affine distortions,
        bilinear resampling, a fresh distortion of every image in every epoch). True uses
        the default strengths (with ``preset="paper"``: half of each, 1.0, 0.05, 0.05 and
        0.1); a dict sets some of them, the rest as True: ``"translate"`` (largest shift
        in pixels, default 2.0, in [0, 16)), ``"scale"`` (largest relative change of
        size, 0.1, in [0, 0.9)), ``"squeeze"`` (0.1, in [0, 0.9)) and ``"shear"``
        (largest horizontal shear, 0.2, in [0, 2)). See :func:`lenet5.distort`.
    shuffle : bool or "once" or None, default=None
        Order of the training images in each epoch (None: the preset's, else True).
        True: a fresh random order every epoch. ``"once"``: one random order (from
        ``random_state``), the same in every epoch, as the paper's "constant random order"
        (``preset="paper"``). False: the order of ``x``.
    early_stopping : bool, default=False
        Stop when the validation loss has not improved by more than ``min_delta`` for
        ``patience`` epochs, and restore the weights of the best epoch whenever training
        ends (out of epochs, stopped by a callback, interrupted, or diverged). Without
        ``validation_data`` passed to ``fit``, ``validation_fraction`` of the training data
        (0.1 when it is None) is held out.
    validation_fraction : float or None, default=None
        Fraction of the training data held out (stratified by class) to compute the
        validation loss and accuracy after each epoch. Ignored when ``fit`` gets
        ``validation_data``.
    patience : int, default=5
        Epochs without improvement before early stopping.
    min_delta : float, default=0.0
        Smallest decrease of the validation loss that counts as an improvement.
    callbacks : callable or list of callables, default=None
        Called after every epoch as ``callback(epoch, logs)`` with the 1-based epoch number
        (counting all epochs of this model, as ``n_iter_``) and a dict of that epoch's
        figures (the keys of ``history_`` without ``"epoch"``). A callback returning
        ``False`` stops training after that epoch; any other return value continues.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the training loss, as in scikit-learn's classifiers: a
        dict ``{label: weight}`` (classes not in it weigh 1), or ``"balanced"``, which
        gives class ``k`` the weight ``n_samples / (n_classes * count_k)``. They multiply
        ``fit``'s ``sample_weight`` (see :meth:`fit`). ``"balanced"`` needs the whole
        training set, so ``partial_fit`` accepts only a dict.
    warm_start : bool, default=False
        When True and the model is already fitted, ``fit`` continues from the current
        weights, the optimizer's state (momentum, Adam moments, step count; a fresh one
        when the optimizer's settings changed) and the random stream, and appends to
        ``history_``; the classes and the architecture must not change. With
        ``fit(..., initial_epoch=model.n_iter_)`` it resumes the schedule exactly.
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None, default=None
        Seeds the initial weights, the shuffling and the validation split. With the same
        integer, training gives bit-identical weights at any ``n_jobs`` on the same
        machine. None draws a fresh seed at every ``fit``.
    n_jobs : int or None, default=None
        Threads for training and prediction. None or -1 use all cores available; as in
        joblib, -2 all but one, -k all but k - 1 (at least one).
    verbose : int, default=1
        0: silent. 1: a progress bar per epoch in a terminal or Jupyter (a widget with
        ipywidgets, ``lenet5[notebook]``), one line per epoch where a bar cannot be redrawn
        (a log file, a pipe, CI). 2: one line per epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (sorted, as ``np.unique``), in the order of ``predict_proba``'s
        columns.
    n_iter_ : int
        Number of epochs trained (completed ones; all ``fit`` and ``partial_fit`` calls
        on a warm model add up).
    history_ : dict of lists
        Per epoch: ``"epoch"``, ``"loss"`` and ``"accuracy"`` (training, measured during
        the epoch), ``"val_loss"`` and ``"val_accuracy"`` (NaN without validation data),
        ``"learning_rate"`` and ``"seconds"``.
    loss_curve_ : list of float
        Training loss per epoch (``history_["loss"]``).
    validation_scores_ : list of float or None
        Validation accuracy per epoch when training used validation data, else None.
    best_epoch_ : int or None
        With early stopping, the epoch whose weights the model holds; else None.
    n_features_in_ : int
        Pixels per image of the last ``fit`` (784 for 28x28 images, 1024 for 32x32), as
        scikit-learn's ``n_features_in_``; ``predict`` takes either size.
    n_params_ : int
        Number of trainable parameters (60,850 for 10 classes and the defaults; 60,000
        for ``preset="paper"``, whose fixed RBF prototypes do not count).
    hessian_diag_ : dict of str to ndarray or None
        With ``optimizer="sdlm"``: the curvature estimates ``h_kk`` used by the last epoch
        (names and shapes of :meth:`get_weights`). None for other optimizers.
    step_sizes_ : dict of str to ndarray or None
        With ``optimizer="sdlm"``: the per-parameter step sizes
        ``learning_rate / (mu + h_kk)`` of the last epoch. None for other optimizers.

    Notes
    -----
    **Ctrl-C.** A KeyboardInterrupt during ``fit`` or ``partial_fit`` stops training
    within half a second (the native loops check for it inside a batch, the curvature
    estimate and validation too). The model keeps the weights of the last completed
    mini-batch (or, with early stopping, of the best epoch), ``history_`` and ``n_iter_``
    cover the completed epochs (each epoch is recorded in one step), a
    :class:`UserWarning` says that training was interrupted, and the method **returns the
    model** instead of re-raising, so a notebook cell or a script goes on with a usable
    model. Ctrl-C during the set-up takes effect when it is done: training then stops
    before its first update.

    **Failures change nothing.** A ``fit`` or ``partial_fit`` that raises (bad input, a
    callable ``lr_schedule`` returning a bad rate at any epoch, divergence, a callback's
    error, no memory) leaves the model as it was before the call; a warm start or
    ``partial_fit`` trains a copy of the network and installs it as it goes.

    **Divergence.** A non-finite loss or gradient raises :class:`FloatingPointError`
    naming the epoch and the mini-batch. So does an epoch after which some valid image
    could give non-finite outputs (a bound on every value of a forward pass, derived from
    the weights, exceeds a quarter of float32's largest number): no fit returns a model
    whose probabilities are not finite.

    **Training that went nowhere.** When ``fit`` ends normally (out of epochs, or stopped
    by early stopping or a callback; not on Ctrl-C, not when it raises) after at least one
    epoch, it issues a :class:`lenet5.TrainingWarning` if the epoch whose weights the model
    keeps (the last; with early stopping, the best) has a training accuracy
    (``history_["accuracy"]``) no more than 0.02 above chance, the share of the most
    frequent class among the training labels (judged only after at least 50 mini-batch
    updates in that fit: an epoch's accuracy is measured while it trains, so a few updates
    cannot show learning), or a training loss more than twice that of the fit's first
    epoch that, for the softmax output, is also above 1.5 * log(n_classes), the
    cross-entropy of a uniform guess (the RBF output's MAP and MLE losses are penalties
    with no such reference: the relative rule alone applies). Only the epochs of that fit
    count, also on a warm start. The model is trained and kept as it is; the message names
    the figures, the optimizer, learning rate and init, and what to try (a smaller
    learning rate, another init, more epochs, labels that match the images, the pixel
    range). ``partial_fit`` does not warn: one epoch on one chunk is too little to judge,
    and chunks need not be alike (a chunk of classes not seen before starts at a high
    loss); watch ``history_`` there. Silence the warning with
    ``warnings.simplefilter("ignore", lenet5.TrainingWarning)``.

    **Threads.** Training and prediction release the GIL. ``predict`` may be called from
    other threads while ``fit`` runs; a second ``fit`` or ``partial_fit`` on the same
    model while one runs raises :class:`RuntimeError`.

    **Failed calls.** Bad input or hyperparameters raise before anything changes: the
    model stays as it was.

    Examples
    --------
    >>> from lenet5 import LeNet5
    >>> from lenet5.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> model = LeNet5(epochs=1, random_state=0, verbose=0)
    >>> model.fit(x_train[:500], y_train[:500])
    LeNet5(epochs=1, random_state=0, verbose=0)
    >>> model.predict(x_test[:3]).shape
    (3,)
    >>> model.n_params_
    60850
    """

    # Read by scikit-learn versions before 1.6 (is_classifier).
    _estimator_type = "classifier"

    def __init__(
        self,
        *,
        preset: str | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        optimizer: str | None = None,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float | None = None,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        mu: float = 0.02,
        curvature_samples: int = 500,
        lr_schedule: str | Callable[[int, float], float] | None = None,
        activation: str | None = None,
        pooling: str | None = None,
        c3: str | None = None,
        output: str | None = None,
        loss: str | None = None,
        map_j: float = 0.1,
        label_smoothing: float | None = None,
        rbf_trainable: bool = False,
        rbf_prototypes: str | None = None,
        init: str | None = None,
        augment: bool | dict[str, float] = False,
        shuffle: bool | str | None = None,
        early_stopping: bool = False,
        validation_fraction: float | None = None,
        patience: int = 5,
        min_delta: float = 0.0,
        callbacks: Any = None,
        class_weight: Any = None,
        warm_start: bool = False,
        random_state: Any = None,
        n_jobs: int | None = None,
        verbose: int = 1,
    ) -> None:
        self.preset = preset
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.mu = mu
        self.curvature_samples = curvature_samples
        self.lr_schedule = lr_schedule
        self.activation = activation
        self.pooling = pooling
        self.c3 = c3
        self.output = output
        self.loss = loss
        self.map_j = map_j
        self.label_smoothing = label_smoothing
        self.rbf_trainable = rbf_trainable
        self.rbf_prototypes = rbf_prototypes
        self.init = init
        self.augment = augment
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.callbacks = callbacks
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]

    @classmethod
    def _param_defaults(cls) -> dict[str, Any]:
        signature = inspect.signature(cls.__init__)
        return {
            p.name: p.default for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY
        }

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict (the ``__init__`` keywords).

        Parameters
        ----------
        deep : bool, default=True
            Accepted for scikit-learn compatibility; there are no nested estimators.

        Returns
        -------
        dict

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> LeNet5(epochs=3).get_params()["epochs"]
        3
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> LeNet5:
        """Set hyperparameters; values are checked at the next ``fit``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a name that is not a hyperparameter (nothing is changed then).

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> LeNet5().set_params(epochs=5, verbose=0)
        LeNet5(epochs=5, verbose=0)
        """
        valid = self._param_names()
        for name in params:
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def resolved_params(self) -> dict[str, Any]:
        """The hyperparameters ``fit`` will use: the preset's values and the library
        defaults in place of None, checked.

        Returns
        -------
        dict
            Every ``__init__`` keyword; ``loss`` is the natural one of ``output`` when
            None, ``augment`` the dict of distortion strengths (or None), ``n_jobs`` the
            number of threads.

        Raises
        ------
        ValueError
            For a bad hyperparameter, as ``fit`` would.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> p = LeNet5(preset="paper", epochs=5).resolved_params()
        >>> p["optimizer"], p["output"], p["loss"], p["batch_size"], p["epochs"]
        ('sdlm', 'rbf', 'map', 1, 5)
        """
        p = resolve(self)
        return {name: getattr(p, name, getattr(self, name)) for name in self._param_names()}

    def __repr__(self) -> str:
        defaults = self._param_defaults()
        shown = [
            f"{name}={getattr(self, name)!r}"
            for name in defaults
            if not _same_value(getattr(self, name), defaults[name])
        ]
        return f"{type(self).__name__}({', '.join(shown)})"

    # ------------------------------------------------------------------ fitted state

    def _is_fitted(self) -> bool:
        return "_net" in self.__dict__

    def __sklearn_is_fitted__(self) -> bool:
        return self._is_fitted()

    def _fitted_net(self) -> Any:
        return self._fitted_state()[0]

    def _fitted_state(self) -> tuple[Any, np.ndarray]:
        """The network and ``classes_``, read together: one snapshot per call, so that a
        ``fit`` in another thread (which installs both in one step) cannot pair one
        fit's network with another fit's classes."""
        try:
            return _FITTED_PAIR(self.__dict__)  # one C call: no other thread runs between
        except KeyError:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit (or "
                "partial_fit) with training data first."
            ) from None

    @property
    def loss_curve_(self) -> list[float]:
        """Training loss per epoch (``history_["loss"]``), as scikit-learn's MLP names it."""
        self._fitted_net()
        return list(self.history_["loss"])

    @property
    def validation_scores_(self) -> list[float] | None:
        """Validation accuracy per epoch when training used validation data, else None."""
        self._fitted_net()
        scores = list(self.history_["val_accuracy"])
        if all(math.isnan(s) for s in scores):
            return None
        return scores

    # ------------------------------------------------------------------ training

    def fit(
        self,
        x: Any,
        y: Any,
        validation_data: Any = None,
        sample_weight: Any = None,
        initial_epoch: Any = None,
    ) -> LeNet5:
        """Train the network on images ``x`` with labels ``y``.

        Parameters
        ----------
        x : array-like
            Images of shape ``(n, 28, 28)``, ``(n, 32, 32)``, ``(n, 1, 28, 28)``,
            ``(n, 1, 32, 32)``, ``(n, 28, 28, 1)``, ``(n, 32, 32, 1)``, ``(n, 784)`` or
            ``(n, 1024)``: integers in 0..255 (white ink on black, as MNIST) or floats in
            [0, 1]. 28x28 images are padded to 32x32 as in the paper.
        y : array-like of shape (n,)
            Class labels: integers, strings, bools or integral floats; at least 2 classes.
        validation_data : tuple (x_val, y_val), optional
            Evaluated after every epoch (``val_loss``, ``val_accuracy`` in ``history_``);
            used by early stopping. Its labels must be among those of ``y``.
        sample_weight : array-like of shape (n,), optional
            Non-negative weight of each sample's loss (times ``class_weight``'s for its
            class); its gradient is scaled alike. The weights of the training samples are
            rescaled to mean 1, so ``learning_rate`` keeps its meaning: integer weights act
            as repeating samples (exactly so in a full-batch step). The reported loss is
            the weighted mean, the accuracy unweighted; validation is unweighted, and the
            SDLM curvature estimate ignores the weights.
        initial_epoch : int, optional
            As Keras's ``fit(initial_epoch=...)``: the epochs of the schedule already
            done. This fit trains epochs ``initial_epoch + 1`` to ``epochs`` (so
            ``epochs - initial_epoch`` of them) at those positions of ``lr_schedule``
            (a cosine spans ``epochs``). By default every fit starts the schedule at
            its first epoch and trains ``epochs`` epochs. To resume training exactly,
            fit with ``warm_start=True`` and ``initial_epoch=model.n_iter_``: the
            optimizer's state and the random stream carry on (also through
            :meth:`save` / :meth:`load` and pickles), so ten epochs give the same bits as
            five (stopped by a callback, ``callbacks=[lambda epoch, logs: epoch < 5]``),
            a save and a load, and the other five. (Exact when the previous fit ended
            with an epoch: its epochs ran out or a callback stopped it. Early stopping
            restores an earlier epoch's weights, and Ctrl-C may stop within an epoch.)

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            For bad input or hyperparameters; the model is left unchanged.
        FloatingPointError
            When the loss becomes non-finite, or the network could give non-finite
            outputs after an epoch (the model is left as it was before the call).
        RuntimeError
            When another ``fit`` or ``partial_fit`` is running on this model.

        Warns
        -----
        TrainingWarning
            When training went nowhere: the training accuracy of the epoch the model keeps
            is within 0.02 of chance (or below it) after at least 50 mini-batch updates,
            or its loss ended far above that of this fit's first epoch (see the class
            Notes).
        UserWarning
            When training was interrupted by Ctrl-C.

        Notes
        -----
        A KeyboardInterrupt (Ctrl-C) does not propagate: training stops, the model keeps
        the weights of the last completed mini-batch (or the best epoch's with early
        stopping), a :class:`UserWarning` is issued and ``self`` is returned.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), (x_test, y_test) = load_mnist()
        >>> model = LeNet5(epochs=2, random_state=0, verbose=0)
        >>> model = model.fit(x[:1000], y[:1000], validation_data=(x_test, y_test))
        >>> model.n_iter_, len(model.history_["val_accuracy"])
        (2, 2)
        """
        # Ctrl-C raises only inside the training loop; anywhere else in fit (the set-up,
        # the bookkeeping of an epoch, the end) it is held back (see _Interrupts).
        _training.fit(self, x, y, validation_data, sample_weight, initial_epoch)
        return self

    def partial_fit(
        self, x: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> LeNet5:
        """Train one epoch on ``x``, ``y``, continuing from the current state.

        The first call builds the network (``classes`` lists every label that will ever
        come; by default the labels of this ``y``). Later calls keep the weights and the
        optimizer state (momentum, Adam moments, shuffling stream), so two calls equal a
        two-epoch ``fit`` on the same data with the same ``random_state``. Validation data,
        early stopping and ``epochs`` do not apply; callbacks and progress output do.

        Parameters
        ----------
        x : array-like
            Images, as for :meth:`fit`.
        y : array-like of shape (n,)
            Labels; they must be among ``classes_`` once fitted.
        classes : array-like, optional
            All class labels. Needed on the first call when this ``y`` does not contain
            every class; on later calls it must equal ``classes_``.
        sample_weight : array-like of shape (n,), optional
            As for :meth:`fit` (rescaled to mean 1 within this chunk).

        Returns
        -------
        self

        Notes
        -----
        Unlike :meth:`fit`, ``partial_fit`` issues no :class:`TrainingWarning`: one epoch
        on one chunk is too little to judge, and chunks need not be alike. Watch
        ``history_["loss"]`` and ``history_["accuracy"]`` instead.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(random_state=0, verbose=0)
        >>> for start in (0, 500):
        ...     model = model.partial_fit(x[start:start + 500], y[start:start + 500],
        ...                               classes=range(10))
        >>> model.n_iter_
        2
        """
        _training.partial_fit(self, x, y, classes, sample_weight)
        return self

    # ------------------------------------------------------------------ inference

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        x : array-like or iterable of array-likes
            Images as for :meth:`fit`, or one image of shape ``(28, 28)`` or ``(32, 32)``
            (treated as a batch of one); or an iterable (a generator, ``map``, ...) of
            such batches, read one batch at a time, the results concatenated.

        Returns
        -------
        ndarray of shape (n, n_classes), float32
            Rows sum to 1; columns follow ``classes_``.

        Warns
        -----
        InvertedInputWarning
            When most images have a mostly bright border (dark ink on a light
            background, the opposite of MNIST's); :meth:`fit` warns alike.

        Examples
        --------
        >>> import numpy as np
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], y[:500])
        >>> proba = model.predict_proba(x[:4])
        >>> proba.shape, proba.dtype, bool(np.allclose(proba.sum(axis=1), 1, atol=1e-5))
        ((4, 10), dtype('float32'), True)
        """
        quick = self._quick(x, "predict_proba")
        if quick is not None:
            return quick[0]
        if is_batch_stream(x):
            self._fitted_net()
            return over_batches(x, self.predict_proba)
        net, classes = self._fitted_state()
        n_jobs = resolve_n_jobs(self.n_jobs)
        x3 = check_images(
            x,
            "x",
            allow_single=True,
            convert=False,
            item_bytes=4 * len(classes),
            output="the probabilities",
        )
        warn_if_inverted(x3, "x")
        return run_in_chunks(lambda part: net.predict_proba(part, n_jobs), x3, "the probabilities")

    def predict_log_proba(self, x: Any) -> np.ndarray:
        """Logarithms of the class probabilities, computed from the class scores (finite
        where ``predict_proba`` rounds to 0).

        Parameters
        ----------
        x : array-like or iterable of array-likes
            Images as for :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n, n_classes), float64
            ``log_softmax`` of :meth:`decision_function`'s scores; columns follow
            ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], y[:500])
        >>> bool(np.allclose(np.exp(model.predict_log_proba(x[:4])), model.predict_proba(x[:4]),
        ...                  atol=1e-6))
        True
        """
        scores = self._class_scores(x).astype(np.float64)
        top = scores.max(axis=1, keepdims=True)
        shifted = scores - top
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def decision_function(self, x: Any) -> np.ndarray:
        """Class scores whose largest is the predicted class (the network's output before
        the softmax).

        Parameters
        ----------
        x : array-like or iterable of array-likes
            Images as for :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n, n_classes), or (n,) for two classes; float32
            The logits of the softmax output, or minus the RBF penalties; columns follow
            ``classes_``. With two classes, as scikit-learn's classifiers, the score of
            ``classes_[1]`` minus that of ``classes_[0]`` (positive: ``classes_[1]``).

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), (x_test, _) = load_mnist()
        >>> small = ["small" if d < 5 else "large" for d in y[:600]]
        >>> model = LeNet5(epochs=2, random_state=0, verbose=0).fit(x[:600], small)
        >>> scores = model.decision_function(x_test[:8])  # > 0: classes_[1]
        >>> model.classes_.tolist(), scores.shape
        (['large', 'small'], (8,))
        >>> bool((model.classes_[(scores > 0).astype(int)] == model.predict(x_test[:8])).all())
        True
        """
        scores = self._class_scores(x)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def _quick(self, x: Any, method: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``net.<method>`` of a small batch that needs no check in Python (see
        :func:`quick_images`), with the inverted-input warning, and ``classes_`` (read
        with the network in one step); None for any other input, or when the native
        layer refused a pixel (the caller's full checks then say what is wrong). A
        single-image ``predict`` is mostly this call."""
        x3 = quick_images(x)
        if x3 is None:
            return None
        net, classes = self._fitted_state()
        try:
            # None asks for every core: the native layer's 0 says the same without
            # the affinity query (a microsecond, most of a one-image call's Python).
            n_jobs = 0 if self.n_jobs is None else resolve_n_jobs(self.n_jobs)
            out = getattr(net, method)(x3, n_jobs)
        except ValueError:
            return None
        warn_if_inverted(x3, "x", stacklevel=4)
        return out, classes

    def _class_scores(self, x: Any) -> np.ndarray:
        net = self._fitted_net()
        if is_batch_stream(x):
            return over_batches(x, self._class_scores)
        x3 = check_images(x, "x", allow_single=True)
        warn_if_inverted(x3, "x", stacklevel=4)
        return net.decision_function(x3, resolve_n_jobs(self.n_jobs))

    def predict(self, x: Any) -> np.ndarray:
        """Predicted class labels (values from ``classes_``).

        Parameters
        ----------
        x : array-like or iterable of array-likes
            Images as for :meth:`predict_proba` (an iterable of batches is read one batch
            at a time; only the labels are kept).

        Returns
        -------
        ndarray of shape (n,)

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> names = ["even", "odd"]
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0)
        >>> model = model.fit(x[:500], [names[d % 2] for d in y[:500]])
        >>> model.classes_.tolist()
        ['even', 'odd']
        >>> model.predict(x[0]).shape
        (1,)
        """
        quick = self._quick(x, "predict")
        if quick is not None:
            return quick[1][quick[0]]
        if is_batch_stream(x):
            self._fitted_net()
            return over_batches(x, self.predict)
        net, classes = self._fitted_state()
        n_jobs = resolve_n_jobs(self.n_jobs)
        x3 = check_images(
            x, "x", allow_single=True, convert=False, item_bytes=8, output="the predictions"
        )
        warn_if_inverted(x3, "x")
        indices = run_in_chunks(lambda part: net.predict(part, n_jobs), x3, "the predictions")
        return classes[indices]

    def score(self, x: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(x)`` against ``y``.

        Parameters
        ----------
        x : array-like
            Images as for :meth:`fit`.
        y : array-like of shape (n,)
            True labels; labels unknown to the model count as errors.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights of the samples.

        Returns
        -------
        float

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), (x_test, y_test) = load_mnist()
        >>> model = LeNet5(epochs=3, optimizer="adam", learning_rate=0.001, random_state=0,
        ...                verbose=0).fit(x, y)
        >>> 0.5 < model.score(x_test, y_test) <= 1.0
        True
        """
        net, classes = self._fitted_state()
        n_jobs = resolve_n_jobs(self.n_jobs)
        x3 = check_images(x, "x", convert=False, item_bytes=8, output="the predictions")
        y_arr = check_labels(y, x3.shape[0], "y")
        weights = check_sample_weight(sample_weight, y_arr.shape[0])
        warn_if_inverted(x3, "x")
        indices = run_in_chunks(lambda part: net.predict(part, n_jobs), x3, "the predictions")
        predicted = classes[indices]
        try:
            correct = np.asarray(predicted == y_arr)
        except Exception as err:  # a label type whose equality itself fails
            raise comparison_failed("y", err) from err
        if correct.shape != y_arr.shape:  # labels of a type never equal to the classes
            correct = np.zeros(y_arr.shape, dtype=bool)
        return float(np.average(correct, weights=weights))

    def activations(self, x: Any) -> dict[str, np.ndarray]:
        """Outputs of every layer, for teaching and debugging.

        Parameters
        ----------
        x : array-like
            Images as for :meth:`predict_proba`.

        Returns
        -------
        dict
            ``"c1"`` (n, 6, 28, 28), ``"s2"`` (n, 6, 14, 14), ``"c3"`` (n, 16, 10, 10),
            ``"s4"`` (n, 16, 5, 5), ``"c5"`` (n, 120), ``"f6"`` (n, 84) and ``"output"``
            (n, n_classes, the logits before the softmax), float32.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])
        >>> model.activations(x[:2])["c3"].shape
        (2, 16, 10, 10)
        """
        net, classes = self._fitted_state()
        per_image = 4 * (ACTIVATION_VALUES + len(classes))
        x3 = check_images(
            x,
            "x",
            allow_single=True,
            convert=False,
            item_bytes=per_image,
            output="the layer outputs",
        )
        return run_in_chunks(net.activations, x3, "the layer outputs")

    def summary(self, n_classes: int | None = None, *, print_fn: Any = None) -> Any:
        """The layers with their output shapes, trainable parameters and connections.

        As Keras's ``model.summary()``, it prints the table in a script; in Jupyter,
        IPython and the interactive interpreter it prints nothing, and the returned table
        shows itself when it is the value of the line (as HTML in Jupyter).

        Works before ``fit`` (the network the hyperparameters describe, for ``n_classes``
        classes, 10 by default) and after it (the fitted network). Counts follow the paper:
        for the defaults and 10 classes, C1 has 156 parameters and 122,304 connections, S2
        12 and 5,880, C3 1,516 and 151,600, S4 32 and 2,000, C5 48,120, F6 10,164 and the
        output layer 850.

        Parameters
        ----------
        n_classes : int, optional
            Classes of the output layer of an unfitted model (10 when omitted). For a
            fitted model it may be omitted, or must equal ``len(classes_)``.
        print_fn : callable, optional
            Called with the table's text instead of printing, in any environment (for
            example ``logging.info``; ``lambda text: None`` prints nothing).

        Returns
        -------
        lenet5._summary.Summary
            Printed as a text table, shown as an HTML table in Jupyter; ``summary["C3"]``
            is a row (``params``, ``connections``, ``output_shape``), and
            ``total_params`` / ``total_connections`` are the totals.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> s = LeNet5().summary(print_fn=lambda text: None)
        >>> s["C3"].params, s["C3"].connections, s.total_params
        (1516, 151600, 60850)
        >>> LeNet5(pooling="max").summary(print_fn=lambda text: None)["S2"].params
        0
        >>> s = LeNet5().summary()  # a doctest prints, as a script does  # doctest: +ELLIPSIS
        LeNet5 (not fitted, 10 classes)
        Layer   Output shape  Params  Connections  Description
        ...
        C1      6 x 28 x 28      156      122,304  5x5 convolution, 6 maps, scaled tanh
        ...
        Total                 60,850      340,918
        ...
        """
        from ._summary import model_summary, session_shows_results

        table = model_summary(self, n_classes)
        if print_fn is not None:
            if not callable(print_fn):
                raise TypeError(
                    f"print_fn must be a callable taking the text, or None; got {print_fn!r:.60}"
                )
            print_fn(str(table))
        elif not session_shows_results():
            print(table, flush=True)
        return table

    def _repr_html_(self) -> str:
        """HTML for Jupyter: the ``repr`` and the :meth:`summary` table."""
        import html

        from ._summary import model_summary

        try:
            table = model_summary(self)._repr_html_()
        except ValueError as err:  # hyperparameters that describe no network
            table = f"<p>{html.escape(str(err))}</p>"
        return f"<div><pre>{html.escape(repr(self))}</pre>\n{table}</div>"

    # ------------------------------------------------------------------ weights

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the trainable parameters, PyTorch ``state_dict`` names and layout.

        Returns
        -------
        dict of str to ndarray (float32)
            ``c1.weight`` (6, 1, 5, 5), ``c1.bias`` (6,), ``s2.weight`` (6,), ``s2.bias``,
            ``c3.weight`` (16, 6, 5, 5; zero where Table I has no connection),
            ``c3.bias``, ``s4.weight`` (16,), ``s4.bias``, ``c5.weight`` (120, 16, 5, 5),
            ``c5.bias``, ``f6.weight`` (84, 120), ``f6.bias``, ``output.weight``
            (n_classes, 84), ``output.bias``. The ``s2.*`` and ``s4.*`` entries exist only
            for ``pooling="sub"``.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])
        >>> model.get_weights()["c1.weight"].shape
        (6, 1, 5, 5)
        """
        return self._fitted_net().get_weights()

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Replace all trainable parameters.

        Parameters
        ----------
        weights : dict
            Exactly the names and shapes of :meth:`get_weights`, float32-convertible,
            finite. All or nothing: on error no weight changes.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> a = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])
        >>> b = LeNet5(epochs=1, random_state=1, verbose=0).fit(x[:300], y[:300])
        >>> b.set_weights(a.get_weights())
        >>> bool((a.predict(x[:50]) == b.predict(x[:50])).all())
        True
        """
        self._fitted_net().set_weights(check_weights(weights))

    def to_onnx(self, path: Any = None, *, image_size: int = 28) -> Any:
        """Export the fitted network as an ONNX graph (needs ``pip install 'lenet5-rs[onnx]'``).

        The graph takes float32 pixels in [0, 1] of shape ``(N, 1, 28, 28)`` (or
        ``(N, 1, 32, 32)`` with ``image_size=32``) and outputs ``probabilities``
        ``(N, n_classes)`` as :meth:`predict_proba`. Writes ``path`` (atomically) if given
        and returns the ``onnx.ModelProto``; the README's ONNX section describes the graph.

        Parameters
        ----------
        path : str or path-like, optional
            Where to write the ``.onnx`` file (atomically). Without it, nothing is written.
        image_size : {28, 32}, default=28
            Height and width of the graph's input: 28 (padded to 32 inside the graph) or
            32 (images already padded).

        Returns
        -------
        onnx.ModelProto

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])
        >>> model.to_onnx("lenet5.onnx")  # doctest: +SKIP
        """
        from ._onnx import to_onnx

        return to_onnx(self, path, image_size=image_size)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
        """Write the fitted model to one safetensors file, atomically.

        The weights are stored under the names of :meth:`get_weights` (the
        ``safetensors`` package, and so PyTorch, reads them as they are); the
        architecture, hyperparameters, ``classes_``, ``n_iter_``, ``history_``,
        ``best_epoch_`` and the format and library versions go into the file's metadata;
        with ``include_optimizer`` (as Keras's), also the optimizer's state and the random
        stream's position, so that training resumes exactly after :meth:`load` (a file
        about twice (SGD) or three times (Adam) the size of the weights alone).
        The file is written to a temporary file in the same folder, flushed to disk and
        renamed over ``path``: ``path`` holds the old model or the new one, never a mix.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (conventionally ``*.safetensors``); replaced if it exists.
        include_optimizer : bool, default=True
            Whether to store the training state (False: the weights for prediction only,
            as lenet5 wrote them before; training after :meth:`load` then starts a fresh
            optimizer state).

        Raises
        ------
        NotFittedError
            When the model has not been fitted.
        ValueError
            When a hyperparameter to be stored is invalid.
        OSError
            When the file cannot be written (a previous file at ``path`` is kept), with
            ``errno`` and ``filename`` set (``ENOSPC`` for a full disk, ...). The
            temporary file, ``.<name>.lenet5-save-<pid>-<n>.tmp``, is removed; one left
            by a process killed while saving is removed by the next save to ``path``.

        Warns
        -----
        UserWarning
            For hyperparameters that are not JSON values (a callable ``lr_schedule``,
            callbacks, a ``RandomState``): they are not stored, and :meth:`load` gives
            their defaults.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), _ = load_mnist()
        >>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])
        >>> model.save("model.safetensors")
        >>> again = LeNet5.load("model.safetensors")
        >>> bool((again.predict_proba(x[:20]) == model.predict_proba(x[:20])).all())
        True
        """
        _persist.save(self, path, include_optimizer=include_optimizer)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LeNet5:
        """Read a model written by :meth:`save`.

        The file is untrusted input: its header, tensors (names, shapes, float32 dtype,
        finite values) and metadata are all checked, and nothing in it can run code. The
        loaded model predicts exactly as the saved one did and can continue training
        (``partial_fit``, or ``fit`` with ``warm_start=True``) from the saved optimizer
        state and random stream, as if it had not been saved (a file written before
        lenet5 saved them continues with a fresh optimizer state).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.

        Returns
        -------
        LeNet5
            The fitted model (an instance of the class ``load`` is called on).

        Raises
        ------
        ValueError
            For a malformed or hostile file, one that is not a lenet5 model, or one of a
            newer ``format_version`` than this lenet5 reads; the message names the file
            and the problem (for a file that is not safetensors at all, what it looks
            like: a NumPy file, a pickle, text, an image, empty, ...).
        OSError
            When the file cannot be read, with ``errno`` and ``filename`` set as by
            ``open()`` (:class:`FileNotFoundError`, :class:`PermissionError`, ...).
            Anything but a regular file (a named pipe, a device) is refused before it is
            opened.

        Examples
        --------
        >>> from lenet5 import LeNet5
        >>> from lenet5.datasets import load_mnist
        >>> (x, y), (x_test, y_test) = load_mnist()
        >>> LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300]).save("m.safetensors")
        >>> model = LeNet5.load("m.safetensors")
        >>> model.n_iter_, model.classes_.tolist()[:3]
        (1, [0, 1, 2])
        """
        return _persist.load(path, cls=cls)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        # Plain values and numpy arrays only; see lenet5._persist.getstate.
        return _persist.getstate(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Rebuilds the network through set_weights' checks; see lenet5._persist.setstate.
        _persist.setstate(self, state)

    def __sklearn_tags__(self) -> Any:
        # Only scikit-learn calls this, so importing it here adds no dependency.
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(multi_class=True),
            input_tags=InputTags(two_d_array=True, three_d_array=True),
        )
