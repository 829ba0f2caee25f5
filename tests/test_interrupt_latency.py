"""Ctrl-C inside every long native loop is answered within half a second.

Each case runs in a child Python process, starts one long call (predict on a million
images, one batch of 60,000 images, the SDLM curvature on 60,000 samples, validation on
300,000 images, ``activations``, ``distort``, fit's set-up on 60,000 images), sends the
process a real SIGINT from a timer thread once the call is under way, and measures the time
from the signal to the moment the call returned or raised. The native loops check for
signals between waves of chunks (or every few hundred images), not only between
mini-batches; before that, predict on a million images ran to its end (7-8 s) and a
60,000-image batch or curvature estimate took seconds to answer.

``fit`` answers with its Ctrl-C contract (a UserWarning, the model returned, ``history_``
covering the completed epochs); the other calls raise KeyboardInterrupt.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from conftest import child_report

#: The latency allowed: the issue's half second, on a shared 2-core machine.
LIMIT = 0.5

PRELUDE = textwrap.dedent(
    """
    import json, os, signal, threading, time, warnings
    import numpy as np
    import lenet5
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x60 = np.concatenate([x] * 15)            # 60,000 images
    y60 = np.concatenate([y] * 15)
    small = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:300], y[:300])

    def interrupted(call, delay):
        sent = []
        def interrupt():
            time.sleep(delay)
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        timer = threading.Thread(target=interrupt)
        outcome = "returned"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            timer.start()
            try:
                call()
            except KeyboardInterrupt:
                outcome = "KeyboardInterrupt"
            end = time.perf_counter()
        timer.join()
        return {
            "latency": end - sent[0] if sent else None,
            "ran": end - start,
            "outcome": outcome,
            "warnings": [str(w.message) for w in caught],
        }
    """
)

CASES = {
    "predict-1e6-images": (
        "small.predict(np.broadcast_to(xt[:1], (1_000_000, 28, 28)))",
        0.5,
        "KeyboardInterrupt",
    ),
    "predict_proba-1e6-images": (
        "small.predict_proba(np.broadcast_to(xt[:1], (1_000_000, 28, 28)))",
        0.5,
        "KeyboardInterrupt",
    ),
    "activations-25000-images": (
        "small.activations(np.broadcast_to(xt[:1], (25_000, 28, 28)))",
        0.3,
        "KeyboardInterrupt",
    ),
    "distort-100000-images": (
        "lenet5.distort(np.broadcast_to(xt[:1], (100_000, 28, 28)))",
        0.3,
        "KeyboardInterrupt",
    ),
    "fit-batch-60000": (
        "model.fit(x60, y60)",
        0.6,
        "returned",
    ),
    "curvature-60000-samples": (
        "model.fit(x60, y60)",
        0.3,
        "returned",
    ),
    "validation-300000-images": (
        "model.fit(x[:64], y[:64], validation_data=(np.broadcast_to(xt[:1], (300_000, 28, 28)),"
        " np.broadcast_to(yt[:1], (300_000,))))",
        0.6,
        "returned",
    ),
    "fit-set-up-60000": (
        "model.fit(x60, y60)",
        0.02,
        "returned",
    ),
}

MODELS = {
    "fit-batch-60000": "LeNet5(epochs=5, batch_size=60000, random_state=0, verbose=0)",
    "curvature-60000-samples": (
        "LeNet5(preset='paper', epochs=2, curvature_samples=60000, random_state=0, verbose=0)"
    ),
    "validation-300000-images": "LeNet5(epochs=2, random_state=0, verbose=0)",
    "fit-set-up-60000": "LeNet5(epochs=1, batch_size=60000, random_state=0, verbose=0)",
}


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to the child process")
@pytest.mark.parametrize("case", list(CASES))
def test_a_long_native_loop_answers_ctrl_c_within_half_a_second(case):
    call, delay, outcome = CASES[case]
    script = PRELUDE + textwrap.dedent(
        f"""
        model = {MODELS.get(case, "None")}
        report = interrupted(lambda: {call}, {delay})
        if model is not None:
            report["n_iter"] = model.n_iter_
            report["lengths"] = sorted({{len(v) for v in model.history_.values()}})
            report["finite"] = bool(np.isfinite(model.predict_proba(xt[:20])).all())
        print("REPORT " + json.dumps(report))
        """
    )
    report = child_report(script)
    if report["latency"] is not None:  # the figures: pytest tests/test_interrupt_latency.py -s
        print(f"\n{case}: answered {1000 * report['latency']:.0f} ms after Ctrl-C")
    assert report["latency"] is not None, f"the call ended before the signal: {report}"
    assert report["outcome"] == outcome, report
    assert report["latency"] < LIMIT, f"{case}: answered {report['latency']:.3f} s after Ctrl-C"
    if outcome == "returned":
        interrupts = [w for w in report["warnings"] if "interrupted (KeyboardInterrupt)" in w]
        assert len(interrupts) == 1, report["warnings"]
        assert report["lengths"] == [report["n_iter"]]
        assert report["finite"]
