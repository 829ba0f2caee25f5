"""TrainingWarning: a fit that ended normally but went nowhere says so.

``fit`` warns when the epoch whose weights the model keeps has a training accuracy at most
0.02 above chance (the share of the most frequent training label) after at least 50
mini-batch updates, or a training loss more than twice that of the fit's first epoch (for
the softmax output also above 1.5 * log(n_classes)). ``partial_fit`` never warns. No
warning on Ctrl-C or when fit raises.
"""

from __future__ import annotations

import math
import re
import warnings

import lenet5
import numpy as np
import pytest
from lenet5 import LeNet5, TrainingWarning
from lenet5.__main__ import main
from lenet5._training import _went_nowhere


def quiet(**params):
    return LeNet5(**{"random_state": 0, "verbose": 0, "n_jobs": 1, **params})


#: learning_rate=10 at a constant rate: the loss climbs into the thousands (a decaying
#: schedule can bring it down again in the last epochs).
LR_10 = {"learning_rate": 10, "lr_schedule": "constant"}


def training_warnings(fit):
    """The TrainingWarnings that ``fit()`` issues (fit's return value is discarded)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    others = [w for w in caught if not issubclass(w.category, TrainingWarning)]
    for w in others:  # let any other warning reach pytest (filterwarnings = error)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]


def test_the_warning_is_public_and_a_user_warning():
    assert lenet5.TrainingWarning is TrainingWarning
    assert "TrainingWarning" in lenet5.__all__
    assert issubclass(TrainingWarning, UserWarning)


def test_learning_rate_10_warns_naming_the_rate_and_the_figures(mnist):
    """The issue's case: a finite loss in the thousands at chance accuracy."""
    (x, y), _ = mnist
    model = quiet(epochs=4, **LR_10)  # 4 x 16 = 64 updates
    with pytest.warns(TrainingWarning) as record:
        assert model.fit(x[:1000], y[:1000]) is model
    assert len(record) == 1
    message = str(record[0].message)
    assert re.search(r"learning_rate=10\b", message)
    assert "smaller learning_rate" in message
    accuracy = model.history_["accuracy"][-1]
    chance = np.bincount(y[:1000]).max() / 1000
    assert f"accuracy of epoch 4 is {accuracy:.1%}" in message
    assert f"chance ({chance:.1%}" in message
    assert "\n" not in message
    # the model is trained and kept: fit returned it with its 4 epochs
    assert model.n_iter_ == 4
    assert model.predict(x[:5]).shape == (5,)


def test_a_loss_that_rises_tenfold_warns(mnist):
    """3 epochs of 8 batches: too few updates for the accuracy rule; the loss rule fires."""
    (x, y), _ = mnist
    model = quiet(epochs=3, **LR_10)
    messages = training_warnings(lambda: model.fit(x[:500], y[:500]))
    losses = model.history_["loss"]
    assert losses[-1] > 2 * losses[0]
    assert len(messages) == 1
    first, last = f"{losses[0]:.4g}", f"{losses[-1]:.4g}"
    assert f"rose from {first} in epoch 1 to {last} in epoch 3" in messages[0]
    assert "chance" not in messages[0]
    assert re.search(r"learning_rate=10\b", messages[0])


def test_labels_that_do_not_match_the_images_warn(mnist):
    (x, y), _ = mnist
    labels = np.random.default_rng(0).permutation(y[:1000])
    messages = training_warnings(lambda: quiet(epochs=4, init="glorot").fit(x[:1000], labels))
    assert len(messages) == 1
    assert "chance" in messages[0]
    assert "labels match the images" in messages[0]


@pytest.mark.parametrize(("batch_size", "warns"), [(10, True), (11, False)])
def test_the_accuracy_rule_needs_50_updates(mnist, batch_size, warns):
    """Shuffled labels, one epoch of 500 images: 50 batches of 10 are judged, 46 batches
    of 11 are too few to tell (an epoch's accuracy is measured while it trains)."""
    (x, y), _ = mnist
    labels = np.random.default_rng(1).permutation(y[:500])
    model = quiet(init="glorot", epochs=1, batch_size=batch_size)
    messages = training_warnings(lambda: model.fit(x[:500], labels))
    assert model.history_["accuracy"][-1] < 0.14  # at chance both times
    assert len(messages) == int(warns)


def test_a_healthy_fit_does_not_warn(mnist):
    (x, y), _ = mnist
    model = quiet(init="glorot", epochs=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        model.fit(x[:1000], y[:1000])
    # the run is far above chance, so the check above had something to pass
    assert model.history_["accuracy"][-1] > 0.5


def test_a_healthy_partial_fit_stream_does_not_warn(mnist):
    (x, y), _ = mnist
    model = quiet(init="glorot")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        for start in range(0, 1000, 250):
            model.partial_fit(x[start : start + 250], y[start : start + 250], classes=range(10))
    assert model.n_iter_ == 4


def test_interrupted_training_does_not_warn(mnist):
    """lr=10 goes nowhere, but Ctrl-C after epoch 2 has its own warning only."""
    (x, y), _ = mnist

    def interrupt(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    model = quiet(epochs=5, callbacks=interrupt, **LR_10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x[:500], y[:500])
    assert [w.category for w in caught] == [UserWarning]
    assert "interrupted" in str(caught[0].message)
    # without the interrupt the same run warns (so the check above can fail)
    model.set_params(callbacks=None, epochs=2)
    assert len(training_warnings(lambda: model.fit(x[:500], y[:500]))) == 1


def test_a_diverging_fit_raises_without_the_warning(small):
    (x, y), _ = small
    model = quiet(epochs=3, learning_rate=1e38)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        with pytest.raises(FloatingPointError):
            model.fit(x, y)


def test_a_callback_that_stops_training_is_a_normal_end(mnist):
    (x, y), _ = mnist
    model = quiet(epochs=5, callbacks=lambda epoch, logs: epoch < 2, **LR_10)
    messages = training_warnings(lambda: model.fit(x[:500], y[:500]))
    assert model.n_iter_ == 2
    assert len(messages) == 1
    assert "after 2 epochs" in messages[0]


def test_early_stopping_judges_the_epoch_it_keeps(mnist):
    """Epochs 1-2 learn, then a huge rate wrecks the net: early stopping keeps epoch 1 or
    2, whose accuracy is far above chance, so the fit does not warn; without early
    stopping the last (wrecked) epoch is judged and it does."""
    (x, y), _ = mnist

    def schedule(epoch, lr):
        return 0.05 if epoch < 2 else 5.0

    params = {"init": "glorot", "epochs": 4, "lr_schedule": schedule, "validation_fraction": 0.2}
    plain = quiet(**params)
    assert len(training_warnings(lambda: plain.fit(x[:1000], y[:1000]))) == 1
    assert plain.history_["accuracy"][-1] < 0.2
    early = quiet(**params, early_stopping=True, patience=10)
    assert training_warnings(lambda: early.fit(x[:1000], y[:1000])) == []
    assert early.best_epoch_ in (1, 2)


def test_partial_fit_never_warns(mnist):
    """Neither a rate that blows the loss up nor shuffled labels: partial_fit judges
    nothing, while fit on the same data and settings warns."""
    (x, y), _ = mnist
    labels = np.random.default_rng(0).permutation(y[:1000])
    cases = [(LR_10, y[:500], 500), ({"init": "glorot"}, labels, 1000)]
    for params, targets, n in cases:
        model = quiet(**params)
        for _ in range(4):
            told = training_warnings(lambda m=model, t=targets, n=n: m.partial_fit(x[:n], t))
            assert told == []
        assert model.history_["accuracy"][-1] < 0.14
        fitted = quiet(**params, epochs=4)
        assert len(training_warnings(lambda m=fitted, t=targets, n=n: m.fit(x[:n], t))) == 1


def test_a_warm_start_is_judged_on_its_own_epochs(mnist):
    """A fit that learns, then a warm fit at lr=10: the loss rule compares the warm fit's
    last epoch (5) with its own first one (3), not with the model's first epoch."""
    (x, y), _ = mnist
    model = quiet(init="glorot", epochs=2).fit(x[:500], y[:500])
    model.set_params(warm_start=True, epochs=3, **LR_10)
    messages = training_warnings(lambda: model.fit(x[:500], y[:500]))
    losses = model.history_["loss"]
    assert len(losses) == 5
    assert len(messages) == 1
    assert f"rose from {losses[2]:.4g} in epoch 3 to {losses[4]:.4g} in epoch 5" in messages[0]
    assert "after 3 epochs" in messages[0]


def test_rbf_output_warns_when_its_loss_doubles(mnist):
    """The paper's network learns for 2 epochs, then its rate jumps 100-fold: the MAP loss
    ends far above the first epoch's."""
    (x, y), _ = mnist
    model = quiet(preset="paper", epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        model.fit(x[:300], y[:300])  # a healthy RBF fit: no warning
    assert model.history_["accuracy"][-1] > 0.5
    model = quiet(preset="paper", epochs=3, lr_schedule=lambda e, lr: lr if e < 2 else 0.05)
    messages = training_warnings(lambda: model.fit(x[:300], y[:300]))
    losses = model.history_["loss"]
    assert losses[-1] > 2 * losses[0]
    assert len(messages) == 1
    assert f"rose from {losses[0]:.4g} in epoch 1 to {losses[-1]:.4g} in epoch 3" in messages[0]


# ------------------------------------------------------------------ the rule itself


def history(losses, accuracies):
    return {
        "epoch": list(range(1, len(losses) + 1)),
        "loss": list(losses),
        "accuracy": list(accuracies),
    }


def judge(
    losses,
    accuracies,
    *,
    output="softmax",
    chance=0.1,
    best_epoch=None,
    n_classes=10,
    n_epochs=None,
):
    p = {
        "output": output,
        "learning_rate": 0.05,
        "lr_schedule": "constant",
        "optimizer": "sgd",
        "init": "lecun",
    }
    return _went_nowhere(
        history(losses, accuracies),
        best_epoch,
        p,
        n_classes=n_classes,
        n_epochs=len(losses) if n_epochs is None else n_epochs,
        chance=chance,
    )


@pytest.mark.parametrize(
    ("accuracy", "warns"),
    [(0.05, True), (0.1, True), (0.119, True), (0.13, False), (0.9, False)],
)
def test_accuracy_rule_margin(accuracy, warns):
    assert (judge([2.3, 2.0], [0.1, accuracy], chance=0.1) is not None) is warns


def test_softmax_loss_rule_needs_a_doubling_and_more_than_a_uniform_guess():
    uniform = math.log(10)
    # doubled but still better than a uniform guess: a model that learnt something
    assert judge([0.4, 1.0], [0.9, 0.7]) is None
    # far above a uniform guess but not doubled
    assert judge([3.0, 5.9], [0.9, 0.7]) is None
    # both
    message = judge([1.0, 1.5 * uniform + 0.01], [0.9, 0.7])
    assert message is not None
    assert "rose from 1 in epoch 1" in message
    assert judge([1.0, 1.5 * uniform - 0.01], [0.9, 0.7]) is None
    # two classes: log(2) is the reference
    assert judge([0.3, 1.1], [0.9, 0.8], chance=0.5, n_classes=2) is not None


def test_rbf_loss_rule_is_relative_only():
    # an RBF MAP loss well below 1.5 * log(10) that doubled still counts
    assert judge([1.0, 2.1], [0.9, 0.8], output="rbf") is not None
    assert judge([1.0, 1.9], [0.9, 0.8], output="rbf") is None
    # the same losses under softmax are no warning (better than a uniform guess)
    assert judge([1.0, 2.1], [0.9, 0.8]) is None
    # and the accuracy rule applies to RBF too
    assert judge([50.0, 40.0], [0.1, 0.11], output="rbf") is not None


def test_rule_judges_the_best_epoch_with_early_stopping():
    assert judge([2.0, 0.5, 9.0], [0.3, 0.8, 0.1], best_epoch=2) is None
    assert judge([2.0, 0.5, 9.0], [0.3, 0.8, 0.1]) is not None
    message = judge([2.0, 2.3, 9.0], [0.3, 0.1, 0.8], best_epoch=2)
    assert message is not None
    assert "epoch 2 (the best epoch" in message


def test_rule_judges_only_the_epochs_of_the_fit():
    # a warm fit of 2 epochs after 2 good ones: its own first epoch is the reference
    assert judge([0.2, 0.1, 5.0, 6.0], [0.9, 0.95, 0.5, 0.5], n_epochs=2) is None
    message = judge([0.2, 0.1, 5.0, 11.0], [0.9, 0.95, 0.5, 0.5], n_epochs=2)
    assert message is not None
    assert "rose from 5 in epoch 3 to 11 in epoch 4, after 2 epochs" in message
    assert judge([0.2, 0.1, 5.0, 6.0], [0.9, 0.95, 0.5, 0.5]) is not None  # all 4 epochs
    # one epoch: no loss rule, and no accuracy rule without chance
    assert judge([0.2, 9.0], [0.9, 0.5], n_epochs=1) is None
    assert judge([0.2, 9.0], [0.9, 0.1], n_epochs=1, chance=None) is None
    assert judge([0.2, 9.0], [0.9, 0.1], n_epochs=1) is not None


# ------------------------------------------------------------------ command line


def test_cli_prints_one_warning_line_and_exits_0(tiny_folder, tmp_path, capsys):
    save = tmp_path / "model.safetensors"
    args = ["train", "--data", str(tiny_folder), "--epochs", "2", "--quiet", "--n-jobs", "1"]
    code = main([*args, "--learning-rate", "10", "--save", str(save)])
    out, err = capsys.readouterr()
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(
        r"lenet5: warning: Training went nowhere: .*learning_rate=10\b.*", lines[0]
    )
    assert re.search(r"^test accuracy: ", out, re.M)
    assert save.is_file()  # the model was saved all the same
    # a run that learns prints no warning
    assert main([*args, "--preset", "modern"]) == 0
    assert capsys.readouterr().err == ""
