"""Threads: predicting while training, a second fit, the private thread pool, fork.

The native network keeps its weights behind a read-write lock as an immutable snapshot;
training works on a private copy and publishes it whole (every 0.2 s and at the end of an
epoch). A predict that runs meanwhile therefore sees one published state, never a mix of
two. The first test checks exactly that: with one mini-batch per epoch, the published
states are the weights before fit and after each epoch, all of which the fit thread
records; every probability table that 8 concurrent predict threads obtained must be
bit-identical to the table of one of those states.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import weights_equal
from lenet5 import LeNet5, _lenet5

TIMEOUT = 120  # seconds; a deadlock shows up as a thread still alive after this


def _run_threads(threads):
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    alive = [t.name for t in threads if t.is_alive()]
    assert alive == [], f"deadlock: {alive} still running after {TIMEOUT} s"


def test_eight_predict_threads_and_one_fit_see_only_published_states(mnist):
    (x, y), (xt, _) = mnist
    x, y = x[:512], y[:512]
    probe = xt[:40]
    # The network and rate this test was written for (large, visible steps every epoch).
    old_default = {"init": "lecun", "lr_schedule": "constant", "weight_decay": 0.0}
    model = LeNet5(
        epochs=1,
        batch_size=512,
        random_state=0,
        verbose=0,
        n_jobs=2,
        learning_rate=0.2,
        **old_default,
    ).fit(x, y)
    # One batch per epoch: weights are published once per epoch, and the epoch callback
    # (on the fit thread, after the publication) records each published state.
    states = [model.get_weights()]
    model.set_params(
        warm_start=True,
        epochs=30,
        callbacks=lambda epoch, logs: states.append(model.get_weights()),
    )
    training = threading.Event()
    training.set()
    seen: list[list[np.ndarray]] = [[] for _ in range(8)]
    labels: list[list[np.ndarray]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def predictor(i):
        try:
            while training.is_set() or not seen[i]:
                seen[i].append(model.predict_proba(probe))
                labels[i].append(model.predict(probe))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def trainer():
        try:
            model.fit(x, y)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            training.clear()

    threads = [threading.Thread(target=predictor, args=(i,), name=f"p{i}") for i in range(8)]
    threads.append(threading.Thread(target=trainer, name="fit"))
    _run_threads(threads)
    assert errors == []
    assert model.n_iter_ == 31
    assert len(states) == 31
    # all the states differ (otherwise the check below could not tell them apart)
    assert all(not weights_equal(a, b) for a, b in zip(states, states[1:]))

    reference = copy.deepcopy(model)
    tables = []
    for state in states:
        reference.set_weights(state)
        tables.append(reference.predict_proba(probe))
    observed = [table for per_thread in seen for table in per_thread]
    assert len(observed) >= 8
    matched = set()
    for table in observed:
        hits = [k for k, t in enumerate(tables) if np.array_equal(t, table)]
        assert hits, "a predict saw weights that were never published (a torn mix)"
        matched.add(hits[0])
    for per_thread, per_labels in zip(seen, labels):
        for table, predicted in zip(per_thread, per_labels):
            assert predicted.shape == (40,)
            np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-5)
    print(f"{len(observed)} predictions during fit saw {len(matched)} of {len(states)} states")


def test_a_second_fit_raises_runtime_error_while_predict_works(small, make_model):
    (x, y), (xt, _) = small
    entered, release = threading.Event(), threading.Event()

    def hold(epoch, logs):
        entered.set()
        release.wait(TIMEOUT)

    model = make_model(epochs=2, callbacks=hold)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(model.fit(x, y)))
    worker.start()
    try:
        assert entered.wait(TIMEOUT)
        for call in (lambda: model.fit(x, y), lambda: model.partial_fit(x, y)):
            with pytest.raises(RuntimeError, match="another fit or partial_fit is running"):
                call()
        assert model.predict(xt).shape == (200,)
        assert model.score(xt, model.predict(xt)) == 1.0
    finally:
        release.set()
        worker.join(TIMEOUT)
    assert outcome == [model]
    assert model.n_iter_ == 2


def test_native_training_is_exclusive_per_network():
    """Two threads training one native Network: one trains, the other gets RuntimeError."""
    net = _lenet5.Network(2, seed=0)
    net.reset_optimizer()
    data = _lenet5.Dataset(
        np.random.default_rng(0).integers(0, 256, (3000, 28, 28), dtype=np.uint8),
        np.arange(3000, dtype=np.int64) % 2,
    )
    inside, second_done = threading.Event(), threading.Event()

    def slow_callback(done, loss):
        inside.set()
        second_done.wait(TIMEOUT)  # hold the first training until the second has tried

    results, errors = [], []

    def train(callback):
        try:
            results.append(net.train_epoch(data, 8, 1, callback, 0.0))
        except RuntimeError as err:
            errors.append(err)

    first = threading.Thread(target=train, args=(slow_callback,))
    first.start()
    assert inside.wait(TIMEOUT)
    second = threading.Thread(target=train, args=(None,))
    _run_threads([second])
    second_done.set()
    first.join(TIMEOUT)
    assert len(results) == 1
    assert len(errors) == 1
    assert "trained in another thread" in str(errors[0])


# ---------------------------------------------------------------- the thread pool

POOL_PROBE = textwrap.dedent(
    """
    import json, os, threading
    import numpy as np
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    def threads():
        names = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        return sorted(names)

    (x, y), (xt, _) = load_mnist()
    x, y = np.ascontiguousarray(x[:300]), y[:300]
    xt = np.ascontiguousarray(xt[:100])
    before = threads()
    a = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1).fit(x, y)
    after_fit_1 = threads()
    a.predict(xt)
    b = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=3).fit(x, y)
    b.predict(xt)
    after_fit_3 = threads()
    print(json.dumps({"before": before, "after_fit_1": after_fit_1, "after_fit_3": after_fit_3,
                      "python": [t.name for t in threading.enumerate()]}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lists threads via /proc")
def test_each_model_has_its_own_small_pool_not_the_global_rayon_pool():
    """A fit with n_jobs=1 adds exactly one native thread (named lenet5-0), whatever the
    number of cores; rayon's global pool (one thread per core) is never started."""
    env = dict(os.environ, RAYON_NUM_THREADS="7", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", POOL_PROBE],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    def new(after, before):
        rest = list(after)
        for name in before:
            rest.remove(name)
        return sorted(rest)

    assert new(report["after_fit_1"], report["before"]) == ["lenet5-0"]
    # n_jobs above the core count is capped at the core count.
    cores = len(os.sched_getaffinity(0))
    assert new(report["after_fit_3"], report["after_fit_1"]) == [
        f"lenet5-{i}" for i in range(min(3, cores))
    ]
    assert report["python"] == ["MainThread"]


def _child_predict(queue, model, probe):
    try:
        queue.put(("ok", model.predict_proba(probe)))
        model.partial_fit(probe, model.predict(probe))  # training works in the child too
        queue.put(("ok", model.n_iter_))
    except BaseException as err:  # pragma: no cover - reported in the parent
        queue.put(("error", repr(err)))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform"
)
def test_fork_after_use_does_not_hang_the_child(mnist):
    (x, y), (xt, _) = mnist
    model = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=2).fit(x[:500], y[:500])
    probe = np.ascontiguousarray(xt[:64])  # enough images for the threaded path
    expected = model.predict_proba(probe)  # the pool's threads now exist in the parent
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with warnings.catch_warnings():
        # Python 3.12+ warns that fork() in a multi-threaded process may deadlock: this
        # test is there to show that lenet5's threads do not make it deadlock.
        warnings.simplefilter("ignore", DeprecationWarning)
        child = context.Process(target=_child_predict, args=(queue, model, probe))
        started = time.monotonic()
        child.start()
    try:
        status, proba = queue.get(timeout=60)
        assert status == "ok", proba
        np.testing.assert_array_equal(proba, expected)
        status, n_iter = queue.get(timeout=60)
        assert (status, n_iter) == ("ok", 2)
        child.join(60)
        assert child.exitcode == 0
        assert time.monotonic() - started < 60
    finally:
        if child.is_alive():  # pragma: no cover - the hang this test is about
            child.kill()
            child.join()
    # the parent's model and pool are unaffected
    np.testing.assert_array_equal(model.predict_proba(probe), expected)


def test_estimator_caps_n_jobs(small, make_model):
    (x, y), _ = small
    model = make_model(n_jobs=10**6)
    with pytest.raises(ValueError, match=r"n_jobs must be .*got 1000000 \(at most 1024 threads\)"):
        model.fit(x, y)


NATIVE_HUGE_N_JOBS = textwrap.dedent(
    """
    import numpy as np, time
    from lenet5 import _lenet5
    net = _lenet5.Network(10, seed=0)
    x = np.zeros((64, 28, 28), np.uint8)
    try:
        net.predict(x, 100_000)
        print("answered")
    except ValueError as err:
        print("ValueError", err)
    """
)


def test_native_huge_n_jobs_answers_quickly():
    """n_jobs=100000 made the native layer start 100,000 OS threads one after another
    (about 60 per second: minutes of apparent hang, then likely failure). It must answer
    (run with fewer threads, or raise ValueError) within seconds."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", NATIVE_HUGE_N_JOBS],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("predict(x, n_jobs=100000) did not answer within 10 s")
    assert done.returncode == 0, done.stderr[-2000:]


def test_predict_takes_one_snapshot_while_a_fit_changes_the_classes(mnist):
    """The issue's race: predict read the network before its native call and ``classes_``
    after it, so a fit with other classes in between gave IndexError (30 of 30 runs).
    Each call now reads the network and the classes together, installed by fit in one
    step: every answer holds labels of one fit only."""
    (x, y), (xt, _) = mnist
    big = np.concatenate([xt] * 8)
    model = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1).fit(x[:64], y[:64])
    digits = {int(d) for d in range(10)}

    def predict(answers, errors):
        try:
            answers.append(model.predict(big))
            answers.append(model.predict_proba(big[:2000]).shape[1])
            answers.append(model.score(big[:2000], np.zeros(2000, dtype=np.int64)))
        except Exception as err:
            errors.append(repr(err))

    for run in range(10):
        answers, errors = [], []
        thread = threading.Thread(target=predict, args=(answers, errors))
        thread.start()
        time.sleep(0.005)
        labels = np.where(y[:64] % 2, "odd", "even") if run % 2 == 0 else y[:64]
        model.fit(x[:64], labels)
        thread.join(TIMEOUT)
        assert errors == [], errors
        predicted = answers[0]
        assert set(predicted.tolist()) <= {"odd", "even"} or set(predicted.tolist()) <= digits
        assert answers[1] in (2, 10)


def test_bit_identical_with_batches_of_many_waves(mnist):
    """A batch of 1,000 images is more chunks than one wave of gradient buffers holds
    (the buffers no longer grow with the batch): the sum keeps its order, so the weights
    are still bit-identical for any n_jobs, also with SDLM's curvature on 2,000 samples."""
    (x, y), _ = mnist
    for params in (
        {"batch_size": 1000},
        {
            "optimizer": "sdlm",
            "batch_size": 1000,
            "curvature_samples": 2000,
            "learning_rate": 1e-4,
        },
    ):
        weights = [
            LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=jobs, **params)
            .fit(x[:2000], y[:2000])
            .get_weights()
            for jobs in (1, 2)
        ]
        assert weights_equal(*weights), params
