"""What scikit-learn users reach for: sample_weight and class_weight, predict_log_proba,
decision_function, n_features_in_, joblib's negative n_jobs, and predict over an
iterable of batches."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from conftest import assert_same_snapshot, snapshot, weights_equal
from lenet5 import LeNet5, NotFittedError

#: One plain gradient step on the whole set: SGD without momentum or weight decay, one
#: epoch, batch as large as the data, data order.
FULL_BATCH_STEP = {
    "epochs": 1,
    "optimizer": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "learning_rate": 0.5,
    "shuffle": False,
    "random_state": 3,
    "verbose": 0,
    "n_jobs": 1,
}


def _max_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_integer_sample_weights_equal_repeated_samples_in_a_full_batch_step(mnist):
    (x, y), _ = mnist
    x, y = x[:120], y[:120]
    counts = np.random.default_rng(0).integers(0, 4, size=120)  # 0..3 copies
    weighted = LeNet5(batch_size=120, **FULL_BATCH_STEP).fit(x, y, sample_weight=counts)
    repeated = LeNet5(batch_size=int(counts.sum()), **FULL_BATCH_STEP).fit(
        np.repeat(x, counts, axis=0), np.repeat(y, counts)
    )
    plain = LeNet5(batch_size=120, **FULL_BATCH_STEP).fit(x, y)
    a, b, c = weighted.get_weights(), repeated.get_weights(), plain.get_weights()
    # The same step up to float32 rounding, while weights that were ignored would move
    # the network somewhere else entirely.
    assert _max_difference(a, b) < 1e-5
    assert _max_difference(a, c) > 100 * _max_difference(a, b)
    # The loss of the epoch is the weighted mean, i.e. that of the repeated set.
    assert weighted.history_["loss"][0] == pytest.approx(repeated.history_["loss"][0], rel=1e-5)


def test_weights_are_rescaled_to_mean_one(mnist):
    """Multiplying every weight by a constant changes nothing (the learning rate keeps its
    meaning); weights of 1 train bit-identically to no weights."""
    (x, y), _ = mnist
    x, y = x[:200], y[:200]
    params = {"epochs": 2, "batch_size": 32, "random_state": 0, "verbose": 0, "n_jobs": 1}
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=200)
    once = LeNet5(**params).fit(x, y, sample_weight=w).get_weights()
    scaled = LeNet5(**params).fit(x, y, sample_weight=w * 8).get_weights()  # exact in binary
    assert weights_equal(once, scaled)
    ones = LeNet5(**params).fit(x, y, sample_weight=np.ones(200)).get_weights()
    assert weights_equal(ones, LeNet5(**params).fit(x, y).get_weights())


def test_class_weight_dict_and_balanced_equal_their_sample_weights(mnist):
    (x, y), _ = mnist
    x, y = x[:300], y[:300]
    params = {"epochs": 1, "batch_size": 50, "random_state": 0, "verbose": 0, "n_jobs": 1}
    by_dict = LeNet5(class_weight={3: 4.0, 7: 0.5}, **params).fit(x, y)
    explicit = np.where(y == 3, 4.0, np.where(y == 7, 0.5, 1.0))
    by_sample = LeNet5(**params).fit(x, y, sample_weight=explicit)
    assert weights_equal(by_dict.get_weights(), by_sample.get_weights())
    # "balanced": n_samples / (n_classes * count of the class), scikit-learn's formula
    counts = {k: int((y == k).sum()) for k in range(10)}
    balanced = np.array([300 / (10 * counts[k]) for k in y])
    a = LeNet5(class_weight="balanced", **params).fit(x, y).get_weights()
    b = LeNet5(**params).fit(x, y, sample_weight=balanced).get_weights()
    assert _max_difference(a, b) < 1e-6
    # class_weight and sample_weight multiply
    both = LeNet5(class_weight={3: 4.0, 7: 0.5}, **params).fit(x, y, sample_weight=balanced)
    product = LeNet5(**params).fit(x, y, sample_weight=explicit * balanced)
    assert _max_difference(both.get_weights(), product.get_weights()) < 1e-6


def test_class_weight_shifts_predictions_towards_the_heavy_class(mnist):
    (x, y), (xt, _) = mnist
    params = {"epochs": 2, "random_state": 0, "verbose": 0}
    plain = LeNet5(**params).fit(x[:1000], y[:1000])
    heavy = LeNet5(class_weight={8: 20.0}, **params).fit(x[:1000], y[:1000])
    assert (heavy.predict(xt) == 8).mean() > (plain.predict(xt) == 8).mean() + 0.05


def test_sample_weights_train_identically_at_any_thread_count(mnist):
    (x, y), _ = mnist
    w = np.random.default_rng(2).uniform(0, 2, size=400)
    params = {"epochs": 1, "batch_size": 64, "random_state": 0, "verbose": 0}
    one = LeNet5(n_jobs=1, **params).fit(x[:400], y[:400], sample_weight=w)
    two = LeNet5(n_jobs=2, **params).fit(x[:400], y[:400], sample_weight=w)
    assert weights_equal(one.get_weights(), two.get_weights())


def test_sample_weight_with_a_validation_split(mnist):
    """validation_fraction holds out the same samples with and without weights, and the
    weights follow their samples."""
    (x, y), _ = mnist
    x, y = x[:300], y[:300]
    params = {"epochs": 1, "validation_fraction": 0.2, "random_state": 0, "verbose": 0}
    a = LeNet5(**params).fit(x, y, sample_weight=np.ones(300))
    b = LeNet5(**params).fit(x, y)
    assert weights_equal(a.get_weights(), b.get_weights())
    assert a.history_["val_loss"] == b.history_["val_loss"]


def test_partial_fit_takes_sample_weight_but_not_balanced(mnist, make_model):
    (x, y), _ = mnist
    w = np.random.default_rng(3).uniform(0.5, 2, size=200)
    a = make_model().partial_fit(x[:200], y[:200], sample_weight=w)
    b = make_model().fit(x[:200], y[:200], sample_weight=w)
    assert weights_equal(a.get_weights(), b.get_weights())
    with pytest.raises(ValueError, match=r"balanced.*partial_fit"):
        make_model(class_weight="balanced").partial_fit(x[:200], y[:200])


@pytest.mark.parametrize(
    ("weights", "exc", "message"),
    [
        (-np.ones(50), ValueError, "finite non-negative"),
        (np.ones(49), ValueError, r"shape \(50,\)"),
        (np.zeros(50), ValueError, "all zero"),
        (np.full(50, np.nan), ValueError, "finite non-negative"),
        ("heavy", TypeError, "sample_weight"),
    ],
)
def test_bad_sample_weight_leaves_the_model_unchanged(fitted, mnist, weights, exc, message):
    (x, y), _ = mnist
    before = snapshot(fitted)
    with pytest.raises(exc, match=message):
        fitted.fit(x[:50], y[:50], sample_weight=weights)
    assert_same_snapshot(before, snapshot(fitted))


@pytest.mark.parametrize(
    ("class_weight", "message"),
    [
        ("balance", "class_weight must be None"),
        ({3: -1.0}, "finite non-negative"),
        ({3: "2"}, "finite non-negative"),
        ({"three": 2.0}, "not a class of y"),
        ([1, 2], "class_weight must be None"),
    ],
)
def test_bad_class_weight(mnist, make_model, class_weight, message):
    (x, y), _ = mnist
    model = make_model(class_weight=class_weight)
    with pytest.raises(ValueError, match=message):
        model.fit(x[:50], y[:50])
    assert not hasattr(model, "classes_")


def test_class_weight_is_a_hyperparameter():
    model = LeNet5(class_weight="balanced")
    assert model.get_params()["class_weight"] == "balanced"
    assert "class_weight='balanced'" in repr(model)


# ---------------------------------------------------------------- scores


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def test_decision_function_and_log_proba_from_the_logits(fitted_small, mnist):
    _, (xt, _) = mnist
    logits = fitted_small.activations(xt[:50])["output"]  # the per-layer path
    scores = fitted_small.decision_function(xt[:50])
    assert scores.shape == (50, 10)
    np.testing.assert_allclose(scores, logits, rtol=1e-4, atol=1e-4)
    log_proba = fitted_small.predict_log_proba(xt[:50])
    np.testing.assert_allclose(log_proba, _log_softmax(logits), atol=1e-4)
    np.testing.assert_allclose(np.exp(log_proba), fitted_small.predict_proba(xt[:50]), atol=1e-6)
    assert (fitted_small.classes_[scores.argmax(axis=1)] == fitted_small.predict(xt[:50])).all()


def test_log_proba_stays_finite_where_the_probability_underflows(fitted_small, mnist):
    _, (xt, _) = mnist
    proba = fitted_small.predict_proba(xt)
    log_proba = fitted_small.predict_log_proba(xt)
    assert np.isfinite(log_proba).all()
    tiny = proba < 1e-30
    assert (log_proba[tiny] < np.log(1e-30)).all()


def test_rbf_scores_are_minus_the_penalties(mnist):
    (x, y), (xt, _) = mnist
    model = LeNet5(preset="paper", epochs=1, batch_size=16, random_state=0, verbose=0)
    model.fit(x[:300], y[:300])
    penalties = model.activations(xt[:20])["output"]
    np.testing.assert_allclose(model.decision_function(xt[:20]), -penalties, rtol=1e-4, atol=1e-3)


def test_binary_decision_function_is_one_score(mnist, make_model):
    (x, y), (xt, _) = mnist
    model = make_model(epochs=2).fit(x[:600], np.where(y[:600] % 2 == 1, "odd", "even"))
    scores = model.decision_function(xt[:100])
    logits = model.activations(xt[:100])["output"]
    assert scores.shape == (100,)
    np.testing.assert_allclose(scores, logits[:, 1] - logits[:, 0], rtol=1e-4, atol=1e-4)
    assert (np.where(scores > 0, "odd", "even") == model.predict(xt[:100])).all()


def test_n_features_in_counts_the_pixels_of_the_training_images(mnist, make_model):
    (x, y), _ = mnist
    assert make_model().fit(x[:100], y[:100]).n_features_in_ == 784
    assert make_model().fit(x[:100].reshape(100, 784), y[:100]).n_features_in_ == 784
    padded = np.pad(x[:100], ((0, 0), (2, 2), (2, 2)))
    assert make_model().fit(padded, y[:100]).n_features_in_ == 1024
    assert make_model().partial_fit(padded, y[:100], classes=range(10)).n_features_in_ == 1024
    assert not hasattr(LeNet5(), "n_features_in_")


def test_n_features_in_survives_save_load_and_pickle(mnist, make_model, tmp_path):
    import pickle

    (x, y), _ = mnist
    model = make_model().fit(np.pad(x[:100], ((0, 0), (2, 2), (2, 2))), y[:100])
    model.save(tmp_path / "m.safetensors")
    assert LeNet5.load(tmp_path / "m.safetensors").n_features_in_ == 1024
    assert pickle.loads(pickle.dumps(model)).n_features_in_ == 1024


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@pytest.mark.parametrize(
    ("n_jobs", "threads"),
    [(-1, _cores()), (-2, max(_cores() - 1, 1)), (-1000, 1), (None, _cores()), (3, 3)],
)
def test_negative_n_jobs_count_from_the_cores_as_joblib(n_jobs, threads):
    assert LeNet5(n_jobs=n_jobs).resolved_params()["n_jobs"] == threads


@pytest.mark.parametrize("n_jobs", [0, -5000, 1.5, True])
def test_bad_n_jobs(n_jobs):
    with pytest.raises(ValueError, match="n_jobs must be"):
        LeNet5(n_jobs=n_jobs).resolved_params()


def test_negative_n_jobs_train_as_the_thread_count(mnist):
    (x, y), _ = mnist
    params = {"epochs": 1, "batch_size": 64, "random_state": 0, "verbose": 0}
    a = LeNet5(n_jobs=-2, **params).fit(x[:300], y[:300])
    b = LeNet5(n_jobs=1, **params).fit(x[:300], y[:300])
    assert weights_equal(a.get_weights(), b.get_weights())


# ---------------------------------------------------------------- streaming


def test_predict_over_a_generator_of_1000_batches_in_bounded_memory(fitted_small, mnist):
    _, (xt, _) = mnist
    expected = fitted_small.predict(xt)
    batch = 100

    def batches():
        for i in range(1000):
            start = (i * batch) % xt.shape[0]
            yield xt[start : start + batch].copy()  # a fresh array, as a reader makes

    tracemalloc.start()
    try:
        labels = fitted_small.predict(batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (100_000,)
    np.testing.assert_array_equal(labels, np.tile(expected, 100))
    # 100,000 images are 78 MB; one batch is 78 kB, the labels 0.8 MB (twice while joined)
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_predict_proba_and_scores_over_an_iterable(fitted_small, mnist):
    _, (xt, _) = mnist
    pieces = [xt[:7], xt[7:300], xt[300:301].reshape(1, 784), xt[301]]  # any layouts
    # each piece as one call (batches under 8 images run the single-image kernels, whose
    # rounding differs from the wide ones')
    want = np.concatenate([fitted_small.predict_proba(p) for p in pieces])
    np.testing.assert_array_equal(fitted_small.predict_proba(iter(pieces)), want)
    np.testing.assert_allclose(want, fitted_small.predict_proba(xt[:302]), atol=1e-6)
    got = fitted_small.predict_log_proba(b for b in pieces)
    np.testing.assert_allclose(got, fitted_small.predict_log_proba(xt[:302]), atol=1e-4)
    assert fitted_small.decision_function(map(np.asarray, pieces)).shape == (302, 10)


def test_a_bad_batch_is_named(fitted_small, mnist):
    _, (xt, _) = mnist
    with pytest.raises(ValueError, match=r"batch 1 \(counting from 0\) of x: .*shape"):
        fitted_small.predict(iter([xt[:5], np.zeros((5, 27, 27))]))
    with pytest.raises(TypeError, match="batch 0"):
        fitted_small.predict(iter([np.array(["a"])]))
    with pytest.raises(ValueError, match="yielded no batch"):
        fitted_small.predict(iter([]))


def test_unfitted_model_does_not_read_the_iterable():
    consumed = []

    def batches():
        consumed.append(True)
        yield np.zeros((1, 28, 28))

    with pytest.raises(NotFittedError):
        LeNet5().predict(batches())
    assert consumed == []
