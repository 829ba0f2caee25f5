"""Ctrl-C during ``fit``: in a script (a real SIGINT) and in a Jupyter kernel.

The native training loop checks for signals every 0.2 s (between mini-batches); on Ctrl-C
it stops after the current batch, keeps that batch's weights and raises KeyboardInterrupt,
which ``LeNet5.fit`` turns into a UserWarning and a normal return of the model. Each test
checks:

* fit returns soon after the signal (the issue asks for half a second; the assertion
  allows 1 s for a loaded CI machine and the measured time is in the failure message);
* the model is usable and consistent: finite weights, predict works, ``history_`` and
  ``n_iter_`` cover the completed epochs only;
* a warning says what happened;
* nothing keeps training afterwards: the weights stay put and the model's native worker
  threads (named ``lenet5-N``) use no CPU time.

The script test runs a child Python process and sends it a real SIGINT
(``os.kill(os.getpid(), SIGINT)`` from a timer thread), as a terminal's Ctrl-C does. The
kernel test starts an IPython kernel through jupyter_client and calls ``interrupt_kernel``,
which is what the notebook's stop button does (SIGINT to the kernel process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="reads per-thread CPU times from /proc (Linux only)",
)

#: Code shared by the child script and the kernel: CPU ticks of the native worker threads.
THREAD_PROBE = textwrap.dedent(
    """
    import os

    def lenet5_thread_ticks():
        ticks = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if name.startswith("lenet5-"):
                ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
        return ticks
    """
)

#: The body of the experiment (``signal_fit`` is provided by the caller: it runs
#: ``model.fit`` and interrupts it after ``delay`` seconds, returning the signal time).
EXPERIMENT = textwrap.dedent(
    """
    import json, math, threading, time, warnings
    import numpy as np
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    model = LeNet5(epochs=500, batch_size=32, random_state=0, verbose=0, n_jobs=2,
                   early_stopping=EARLY_STOPPING)
    threads_before = sorted(t.name for t in threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signalled, returned = signal_fit(model, x, y, DELAY)
    w1 = model.get_weights()
    time.sleep(0.1)
    ticks1 = lenet5_thread_ticks()
    time.sleep(0.6)
    ticks2 = lenet5_thread_ticks()
    w2 = model.get_weights()
    report = {
        "after_signal": returned - signalled,
        "returned": returned,
        "threads_before": threads_before,
        "warnings": [str(w.message) for w in caught],
        "n_iter": model.n_iter_,
        "history_lengths": sorted({len(v) for v in model.history_.values()}),
        "best_epoch": model.best_epoch_,
        "finite": all(bool(np.isfinite(v).all()) for v in w1.values()),
        "weights_still": all(np.array_equal(w1[k], w2[k]) for k in w1),
        "busy_threads": sorted(t for t in ticks2 if ticks2[t] > ticks1.get(t, 0)),
        "worker_threads": len(ticks2),
        "python_threads": sorted(t.name for t in threading.enumerate()),
        "predict": model.predict(xt[:50]).tolist(),
        "score": model.score(xt, yt),
    }
    REPORT
    """
)

SCRIPT_SIGNAL = textwrap.dedent(
    """
    import os, signal, threading, time

    def signal_fit(model, x, y, delay):
        # Ctrl-C `delay` seconds after the first epoch ended: in the middle of epoch 2
        first_epoch = threading.Event()
        model.set_params(callbacks=lambda epoch, logs: first_epoch.set())
        sent = []
        def interrupt():
            first_epoch.wait(120)
            time.sleep(delay)
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        timer = threading.Thread(target=interrupt)
        timer.start()
        model.fit(x, y)
        returned = time.perf_counter()
        timer.join()
        return sent[0], returned
    """
)


def _experiment(early_stopping: bool, delay: float, report: str) -> str:
    body = EXPERIMENT.replace("EARLY_STOPPING", repr(early_stopping)).replace("DELAY", str(delay))
    return body.replace("REPORT", report)


def _check(report: dict, *, early_stopping: bool) -> None:
    assert report["after_signal"] < 1.0, f"fit returned {report['after_signal']:.3f} s late"
    assert len(report["warnings"]) == 1, report["warnings"]
    message = report["warnings"][0]
    assert "Training was interrupted (KeyboardInterrupt)" in message
    assert f"history_ covers the {report['n_iter']} completed epochs" in message
    assert report["history_lengths"] == [report["n_iter"]]
    assert report["n_iter"] >= 1
    assert report["finite"]
    assert report["weights_still"], "the weights changed after fit returned"
    assert report["busy_threads"] == [], "lenet5 worker threads kept using CPU"
    assert report["python_threads"] == report["threads_before"]
    assert len(report["predict"]) == 50
    if early_stopping:
        assert report["n_iter"] >= 1
        assert "(best validation loss)" in message
        assert report["best_epoch"] is not None
        assert 1 <= report["best_epoch"] <= report["n_iter"]
        assert 0.0 <= report["score"] <= 1.0
    else:
        assert (
            f"during epoch {report['n_iter'] + 1}; the model keeps the weights of the last "
            "completed mini-batch" in message
        ) or f"after epoch {report['n_iter']}; the model keeps the weights after" in message


@pytest.mark.parametrize(("early_stopping", "delay"), [(False, 0.3), (True, 0.3)])
def test_ctrl_c_in_a_script(early_stopping, delay):
    code = (
        THREAD_PROBE
        + SCRIPT_SIGNAL
        + _experiment(early_stopping, delay, "print('REPORT ' + json.dumps(report))")
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(li for li in done.stdout.splitlines() if li.startswith("REPORT "))
    report = json.loads(line[len("REPORT ") :])
    _check(report, early_stopping=early_stopping)
    print(f"script: fit returned {report['after_signal']:.3f} s after SIGINT")


# ---------------------------------------------------------------- Jupyter kernel


def _run_cell(client, code: str, timeout: float = 120.0) -> tuple[dict, str, str]:
    """Execute a cell; return (reply content, stdout text, stderr text)."""
    msg_id = client.execute(code)
    out, err = [], []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the kernel did not finish the cell in time"
        msg = client.get_iopub_msg(timeout=remaining)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            (out if content["name"] == "stdout" else err).append(content["text"])
        elif kind == "error":
            err.append("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=30)
    return reply["content"], "".join(out), "".join(err)


def test_ctrl_c_in_a_jupyter_kernel():
    """The notebook's interrupt button during a long fit in a cell."""
    pytest.importorskip("ipykernel")
    manager_module = pytest.importorskip("jupyter_client.manager")
    manager = manager_module.KernelManager(kernel_name="python3")
    manager.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        _, _, err = _run_cell(client, THREAD_PROBE)
        assert not err, err
        setup = textwrap.dedent(
            """
            import time
            def signal_fit(model, x, y, delay):
                # the test presses "interrupt" from outside; it measures from its press
                def started(epoch, logs):
                    if epoch == 1:
                        print("FIT STARTED", flush=True)
                model.set_params(callbacks=started)
                model.fit(x, y)
                return float("nan"), time.perf_counter()
            """
        )
        _, _, err = _run_cell(client, setup)
        assert not err, err
        code = _experiment(False, 0.0, "print('REPORT ' + json.dumps(report))")
        msg_id = client.execute(code)
        # wait for the fit to start, then let it train a moment and press "interrupt"
        deadline = time.monotonic() + 120
        while True:
            msg = client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            content = msg["content"]
            if msg["parent_header"].get("msg_id") == msg_id and "FIT STARTED" in content.get(
                "text", ""
            ):
                break
        time.sleep(0.3)
        interrupted_at = time.perf_counter()
        manager.interrupt_kernel()
        out, err = [], []
        while True:
            msg = client.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "error":
                err.append("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = client.get_shell_msg(timeout=30)["content"]
        assert reply["status"] == "ok", "".join(err)
        line = next(li for li in "".join(out).splitlines() if li.startswith("REPORT "))
        report = json.loads(line[len("REPORT ") :])
        # time.perf_counter is CLOCK_MONOTONIC on Linux: one clock for both processes
        report["after_signal"] = report["returned"] - interrupted_at
        _check(report, early_stopping=False)
        print(f"kernel: fit returned {report['after_signal']:.3f} s after interrupt_kernel")
        # the kernel is alive and the model usable in the next cell
        _, stdout, err = _run_cell(client, "print(model.predict(xt[:3]).shape)")
        assert stdout.strip() == "(3,)", err
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


RANDOM_MOMENTS = textwrap.dedent(
    """
    import json, os, random, signal, tempfile, threading, time, warnings
    import numpy as np
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    rng = random.Random(0)
    path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    results = []
    for run in range(RUNS):
        # tiny epochs: most of the time goes to the set-up and the per-epoch bookkeeping
        model = LeNet5(epochs=10**6, batch_size=16, random_state=run, verbose=0, n_jobs=1,
                       validation_fraction=0.25, early_stopping=run % 2 == 1, patience=10**6)
        delay = rng.uniform(0.0, 0.03)
        def interrupt():
            time.sleep(delay)
            os.kill(os.getpid(), signal.SIGINT)
        timer = threading.Thread(target=interrupt)
        outcome = "returned"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                timer.start()
                model.fit(x[:20], y[:20])
            except KeyboardInterrupt:
                outcome = "KeyboardInterrupt"
        timer.join()
        entry = {"outcome": outcome, "delay": delay,
                 "warnings": [str(w.message)[:70] for w in caught]}
        if hasattr(model, "classes_"):
            entry["n_iter"] = model.n_iter_
            entry["lengths"] = sorted({len(v) for v in model.history_.values()})
            entry["best_epoch"] = model.best_epoch_
            entry["finite"] = bool(np.isfinite(model.predict_proba(xt[:10])).all())
            try:
                model.save(path)
                again = LeNet5.load(path)
                entry["reloaded"] = again.history_ == model.history_ and bool(
                    np.array_equal(again.predict_proba(xt[:10]), model.predict_proba(xt[:10])))
            except ValueError as err:
                entry["reloaded"] = str(err)
        results.append(entry)
    print("REPORT " + json.dumps(results))
    """
)


def test_ctrl_c_at_random_moments_leaves_a_consistent_model_that_saves_and_loads():
    """SIGINT at random moments of fits whose time goes mostly to the Python side (the
    set-up, validation, history, early stopping): fit always returns the model with one
    warning (a SIGINT in the set-up is held back until it is done, then training stops
    before its first update; before, KeyboardInterrupt escaped and left the model
    unfitted); each epoch is recorded in one step, so the history_ lists always have
    n_iter_ entries (before, an interrupt in the per-epoch update left them of unequal
    length and save() wrote a file that load() rejected); the saved model loads back
    equal. A SIGINT before fit's first statement or after its last is the caller's."""
    script = RANDOM_MOMENTS.replace("RUNS", "60")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(li for li in done.stdout.splitlines() if li.startswith("REPORT "))
    for entry in json.loads(line[len("REPORT ") :]):
        assert entry["outcome"] == "returned", entry
        assert len([w for w in entry["warnings"] if "interrupted" in w]) == 1, entry
        assert entry["lengths"] == [entry["n_iter"]], entry
        assert entry["best_epoch"] is None or 1 <= entry["best_epoch"] <= entry["n_iter"], entry
        assert entry["finite"], entry
        assert entry["reloaded"] is True, entry
