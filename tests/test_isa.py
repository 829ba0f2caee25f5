"""Every instruction-set path computes the same network.

The kernels are compiled for several instruction sets and one is chosen at run time
(``LENET5_ISA`` forces it). Each path, run in its own process, must match the float64
NumPy reference (tests/reference.py), and training must give bit-identical weights with
1 and 2 threads on every path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as R

PROBE = r"""
import json, sys
import numpy as np
import lenet5._lenet5 as N

rng = np.random.default_rng(7)
out = {"isa": N._isa()}
for output in ("softmax", "rbf"):
    net = N.Network(10, output=output, seed=3)
    x = rng.uniform(-0.1, 1.175, (21, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 21)
    r = N._forward_backward(net, x, y)
    out[output] = {
        "x": x.tolist(), "y": y.tolist(),
        "weights": {k: v.tolist() for k, v in net.get_weights().items()},
        "f6": r["f6"].tolist(), "proba": r["proba"].tolist(), "loss": r["loss"],
        "grads": {k: v.tolist() for k, v in r["grads"].items()},
    }
imgs = np.random.default_rng(1).integers(0, 256, (40, 28, 28), dtype=np.uint8)
labels = np.arange(40) % 10
# one image at a time through predict_proba: the single-image forward kernels
net = N.Network(10, seed=3)
out["single"] = {
    "weights": {k: v.tolist() for k, v in net.get_weights().items()},
    "proba": [net.predict_proba(imgs[i : i + 1])[0].tolist() for i in range(3)],
    "layers": {k: v.tolist() for k, v in net.activations(imgs[:3]).items()},
}
same = True
# batch 40: several wide chunks (and a partial one); batch 4: several single images; batch
# 16: one chunk, run on the calling thread; each optimizer
for opt, rate, batch in (("sgd", 0.05, 40), ("adam", 0.001, 4), ("sdlm", 0.002, 16)):
    trained = []
    for jobs in (1, 2):
        net = N.Network(10, seed=5)
        net.reset_optimizer(opt, rate, 0.9, weight_decay=1e-3, seed=11)
        data = N.Dataset(imgs, labels.astype(np.int64))
        for _ in range(2):
            if opt == "sdlm":
                net.estimate_curvature(data, 20, n_jobs=jobs)
            net.train_epoch(data, batch, n_jobs=jobs)
        trained.append(np.concatenate([v.ravel() for v in net.get_weights().values()]))
    same = same and bool(np.array_equal(trained[0], trained[1]))
out["same_across_threads"] = same
print(json.dumps(out))
"""


def _available() -> list[str]:
    isas = ["scalar"]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in flags and " fma " in flags:
        isas.append("avx2")
        if " avx512f " in flags:
            isas.append("avx512")
    return isas


def _run(isa: str) -> dict:
    env = dict(os.environ, LENET5_ISA=isa)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("isa", _available())
def test_each_instruction_set_matches_the_reference(isa):
    got = _run(isa)
    assert got["isa"] == isa
    for output in ("softmax", "rbf"):
        case = got[output]
        w = {k: np.asarray(v, np.float64) for k, v in case["weights"].items()}
        x = np.asarray(case["x"], np.float64)
        y = np.asarray(case["y"])
        stages = R.build_stages()
        if output == "softmax":
            ref = R.forward(w, x, y)
            grads = R.gradients(w, x, y)
            proba, loss = ref["proba"], ref["loss"]
        else:
            stages = stages[:-1]
            outs, caches, _, _ = R.run_forward(stages, w, x[:, None])
            pen = R.rbf_forward(outs["f6"], w["output.weight"])
            loss = R.map_loss(pen, y)
            gx, _ = R.rbf_backward(R.map_loss_grad(pen, y), outs["f6"], w["output.weight"])
            grads = R.backprop(stages, w, caches, gx)
            grads["output.weight"] = np.zeros_like(w["output.weight"])  # fixed prototypes
            z = -pen - (-pen).max(axis=1, keepdims=True)
            proba = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(case["proba"], proba, rtol=0, atol=1e-5)
        assert abs(case["loss"] - loss) <= 1e-5 * abs(loss)
        for name, g in grads.items():
            scale = max(np.abs(g).max(), 1e-12)
            err = np.abs(np.asarray(case["grads"][name]) - g).max() / scale
            assert err < 1e-4, (isa, output, name, err)


@pytest.mark.parametrize("isa", _available())
def test_single_image_predictions_match_the_reference(isa):
    got = _run(isa)["single"]
    w = {k: np.asarray(v, np.float64) for k, v in got["weights"].items()}
    imgs = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    # the paper's mapping: background -0.1, full ink 1.175, centred on 32x32
    x = np.full((3, 32, 32), -0.1)
    x[:, 2:30, 2:30] = -0.1 + 1.275 * imgs / 255.0
    want = R.forward(w, x, np.zeros(3, dtype=int))["proba"]
    np.testing.assert_allclose(got["proba"], want, rtol=0, atol=1e-5)
    # every layer's outputs (a fresh network's probabilities hardly depend on the image)
    outs = R.run_forward(R.build_stages(), w, x[:, None])[0]
    for name in R.LAYERS:
        have = np.asarray(got["layers"][name]).reshape(3, -1)
        ref = outs[name].reshape(3, -1)
        scale = np.abs(ref).max()
        assert np.abs(have - ref).max() <= 1e-5 * scale, (isa, name)


@pytest.mark.parametrize("isa", _available())
def test_training_is_bit_identical_across_thread_counts_on_every_path(isa):
    assert _run(isa)["same_across_threads"]


INFO = "import json, lenet5; print(json.dumps(lenet5.native_info()))"


def _info(env_isa: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LENET5_ISA"}
    if env_isa is not None:
        env["LENET5_ISA"] = env_isa
    done = subprocess.run(
        [sys.executable, "-c", INFO], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux's /proc/cpuinfo")
def test_native_info_names_this_cpu_and_the_widest_path():
    """By default the widest path the CPU's flags allow (AVX-512F, else AVX2 with FMA,
    else scalar), as the kernel-choice rule says; the CPU as the kernel reports it."""
    info = _info(None)
    cpu = _cpuinfo()
    widest = _available()[-1]
    assert info["isa"] == widest
    assert info["available"] == _available()[::-1]
    assert info["lanes"] == (16 if widest == "avx512" else 8)
    assert info["requested"] is None
    assert info["reason"] == "the widest path this CPU has"
    assert " ".join(cpu["model name"].split()) == info["cpu"]
    assert int(cpu["cpu family"]) == info["cpu_family"]
    assert int(cpu["model"]) == info["cpu_model"]
    assert info["threads"] == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("isa", _available())
def test_lenet5_isa_forces_each_available_path(isa):
    info = _info(isa)
    assert (info["isa"], info["requested"], info["reason"]) == (
        isa,
        isa,
        "forced by LENET5_ISA",
    )
    assert info["lanes"] == (16 if isa == "avx512" else 8)


@pytest.mark.parametrize("value", ["avx1024", "AVX2", " "])
def test_an_unknown_lenet5_isa_falls_back_and_says_so(value):
    info = _info(value)
    assert info["isa"] == _available()[-1]
    assert info["requested"] == value
    assert "not one of scalar, avx2, avx512" in info["reason"]


@pytest.mark.skipif("avx512" in _available(), reason="this CPU has AVX-512")
def test_a_path_the_cpu_lacks_falls_back_and_says_so():
    info = _info("avx512")
    assert info["isa"] == _available()[-1]
    assert "lacks" in info["reason"]
