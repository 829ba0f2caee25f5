"""Throughput, latency and memory benchmark for lenet5, optionally next to PyTorch.

Run after installing the project (``pip install .``)::

    python benches/throughput.py                     # lenet5 alone
    python benches/throughput.py --vs torch          # lenet5 and PyTorch, same run
    python benches/throughput.py --quick             # fast smoke run
    python benches/throughput.py --vs torch --json results.json
    python benches/throughput.py --baseline OLD/_lenet5.abi3.so   # this build vs another

See benches/README.md for what each figure means.  This is a script, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
N_TRAIN_FULL = 60_000
N_TRAIN_QUICK = 10_000
N_INFER = 10_000
INFER_BATCH = 1_000
LATENCY_CALLS = 200
LATENCY_WARMUP = 20
LEARNING_RATE = 0.01
# At batch size 1 every image is a step: the batch-64 rate with momentum 0.9 takes steps about
# 64 times too big per image and drives lenet5's scaled-tanh network into saturation (it ends at
# chance). Both frameworks train the batch-1 figure at this smaller, per-pattern rate instead.
LEARNING_RATE_B1 = 0.001
MOMENTUM = 0.9
SEED = 0
BUSY_LIMIT = 0.10  # a measurement during which other processes used more CPU than this is flagged
N_TRAIN_B1 = 5_000  # images of the batch-size-1 training figure (one update per image)
ALL_FIGURES = {"train", "train1", "infer", "latency", "rss"}
PAUSE = 0.3  # seconds of quiet between measurements, so idle worker threads settle


def learning_rate(batch_size: int) -> float:
    """SGD's learning rate for a batch size: per-pattern updates take the smaller one."""
    return LEARNING_RATE_B1 if batch_size == 1 else LEARNING_RATE


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Data


def read_idx_gz(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (optionally gzipped) into a numpy array."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with (gzip.open if gzipped else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX element type {raw[2]:#x} is not unsigned byte")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != header + count:
        raise ValueError(f"{path}: size does not match the header {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_data(args: argparse.Namespace, need_test: bool = True) -> dict:
    """Training and test images (uint8, (n, 28, 28)) and labels (int64).

    Real Fashion-MNIST when its IDX files are found, random bytes of the same shape otherwise.
    """
    n_train = args.n_train
    data_dir = Path(args.data_dir)
    files = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    if not need_test:
        del files["x_test"], files["y_test"]
    if not args.synthetic and all((data_dir / name).is_file() for name in files.values()):
        out = {key: read_idx_gz(data_dir / name) for key, name in files.items()}
        out["x_train"] = np.ascontiguousarray(out["x_train"][:n_train])
        out["y_train"] = out["y_train"][:n_train].astype(np.int64)
        if need_test:
            out["x_test"] = np.ascontiguousarray(out["x_test"][:N_INFER])
            out["y_test"] = out["y_test"][:N_INFER].astype(np.int64)
        out["source"] = f"the IDX files in {data_dir} (real images)"
        out["real"] = True
        return out
    rng = np.random.default_rng(SEED)
    out = {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train, dtype=np.int64),
    }
    if need_test:
        out["x_test"] = rng.integers(0, 256, size=(N_INFER, 28, 28), dtype=np.uint8)
        out["y_test"] = rng.integers(0, 10, size=N_INFER, dtype=np.int64)
    reason = "--synthetic" if args.synthetic else f"no Fashion-MNIST IDX files in {data_dir}"
    out["source"] = f"random uint8 images of the Fashion-MNIST shape ({reason})"
    out["real"] = False
    return out


# --------------------------------------------------------------------------------------
# One adapter per framework.  Each adapter does the framework's own work only:
#   prepare_train(x, y) -> data   untimed conversion into what train() takes
#   prepare_infer(x) -> data      untimed conversion into what predict() takes
#   train(data, batch_size, threads) -> model    timed: build a fresh model, train one epoch
#   predict(model, x, threads) -> np.ndarray     timed: class indices for the images in x
# The timing code below is shared, so both frameworks are measured the same way.


class Lenet5Adapter:
    name = "lenet5"

    def __init__(self, api: str, arch: str) -> None:
        import lenet5

        self.lenet5 = lenet5
        self.native = getattr(lenet5, "_lenet5", None)
        if self.native is None:
            import importlib

            self.native = importlib.import_module("lenet5._lenet5")
        has_estimator = hasattr(lenet5, "LeNet5")
        if api == "auto":
            api = "estimator" if has_estimator else "native"
        if api == "estimator" and not has_estimator:
            raise RuntimeError("lenet5.LeNet5 is not available (try --api native)")
        self.api = api
        # "paper": the library defaults (trainable subsampling, Table I C3 map).
        # "peer": the same architecture as the PyTorch peer (average pooling, full C3).
        self.set_arch(arch)

    def set_arch(self, arch: str) -> None:
        self.arch = arch
        self.arch_kwargs = {} if arch == "paper" else {"pooling": "avg", "c3": "full"}

    def version(self) -> str:
        version = getattr(self.lenet5, "__version__", None) or getattr(
            self.native, "__version__", "unknown"
        )
        return f"{version} ({self.api} API, {self.arch} architecture)"

    def prepare_train(self, x: np.ndarray, y: np.ndarray):
        if self.api == "estimator":
            # The estimator takes the uint8 images as they are; its own copy is part of fit().
            return (x, y)
        return self.native.Dataset(x, y)

    def prepare_infer(self, x: np.ndarray):
        return x

    def train(self, data, batch_size: int, threads: int):
        if self.api == "estimator":
            model = self.lenet5.LeNet5(
                epochs=1,
                batch_size=batch_size,
                learning_rate=learning_rate(batch_size),
                optimizer="sgd",
                momentum=MOMENTUM,
                n_jobs=threads,
                random_state=SEED,
                verbose=0,
                **self.arch_kwargs,
            )
            model.fit(*data)
            return model
        net = self.native.Network(10, seed=SEED, **self.arch_kwargs)
        net.reset_optimizer("sgd", learning_rate(batch_size), MOMENTUM, seed=SEED)
        net.train_epoch(data, batch_size, n_jobs=threads)
        return net

    def predict(self, model, x, threads: int) -> np.ndarray:
        if self.api == "estimator":
            # The estimator keeps its n_jobs from construction (the thread count it trained with).
            return np.asarray(model.predict(x))
        return model.predict(x, n_jobs=threads)


class BaselineAdapter(Lenet5Adapter):
    """Another build of lenet5's extension module (a ``_lenet5*.so`` file), measured through
    its native layer beside this one in the same run: a regression check between commits."""

    name = "baseline"

    def __init__(self, path: str, arch: str) -> None:
        import importlib.util

        # The file's init function is named after the module, so it loads as "_lenet5" under
        # a name of its own; its statics (thread pools, kernel choice) are its own.
        spec = importlib.util.spec_from_file_location("_lenet5", path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"{path} is not an extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.lenet5 = module
        self.native = module
        self.api = "native"
        self.set_arch(arch)
        self.path = path

    def version(self) -> str:
        version = getattr(self.native, "__version__", "unknown")
        return f"{version} (native API, {self.arch} architecture, {self.path})"


class TorchAdapter:
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        nn = torch.nn

        class ScaledTanh(nn.Module):
            def forward(self, a):
                return 1.7159 * torch.tanh(a * (2.0 / 3.0))

        def build():
            return nn.Sequential(
                nn.Conv2d(1, 6, 5),  # C1 -> 6x28x28
                ScaledTanh(),
                nn.AvgPool2d(2),  # S2 -> 6x14x14
                nn.Conv2d(6, 16, 5),  # C3 (all 6 inputs) -> 16x10x10
                ScaledTanh(),
                nn.AvgPool2d(2),  # S4 -> 16x5x5
                nn.Conv2d(16, 120, 5),  # C5 -> 120x1x1
                ScaledTanh(),
                nn.Flatten(),
                nn.Linear(120, 84),  # F6
                ScaledTanh(),
                nn.Linear(84, 10),  # output logits; softmax is inside cross_entropy
            )

        self.build = build

    def version(self) -> str:
        return self.torch.__version__

    def to_tensor(self, x: np.ndarray):
        """uint8 (n,28,28) -> float32 (n,1,32,32), same pixel mapping and padding as lenet5."""
        out = np.full((len(x), 1, 32, 32), -0.1, dtype=np.float32)
        scale, offset = np.float32(1.275 / 255.0), np.float32(0.1)
        for start in range(0, len(x), 10_000):  # in chunks: no full-size temporary
            chunk = x[start : start + 10_000]
            out[start : start + len(chunk), 0, 2:30, 2:30] = chunk * scale - offset
        return self.torch.from_numpy(out)

    def prepare_train(self, x: np.ndarray, y: np.ndarray):
        return self.to_tensor(x), self.torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def prepare_infer(self, x: np.ndarray):
        return self.to_tensor(x)

    def train(self, data, batch_size: int, threads: int):
        torch = self.torch
        torch.set_num_threads(threads)
        x, y = data
        torch.manual_seed(SEED)
        model = self.build()
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=learning_rate(batch_size), momentum=MOMENTUM)
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        return model

    def predict(self, model, x, threads: int) -> np.ndarray:
        torch = self.torch
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return model(x).argmax(1).numpy()


def make_adapter(name: str, args: argparse.Namespace):
    if name == "lenet5":
        return Lenet5Adapter(args.api, args.lenet5_arch)
    if name == "torch":
        return TorchAdapter()
    if name == "baseline":
        return BaselineAdapter(args.baseline, args.lenet5_arch)
    raise ValueError(name)


# --------------------------------------------------------------------------------------
# Shared measurements


class CpuWatch:
    """Share of the machine's CPU time used by processes other than this one (and its children)."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return time.monotonic(), busy, own

    def others_share(self) -> float | None:
        end = self._read()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        if wall <= 0:
            return None
        others = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, others / (wall * (os.cpu_count() or 1)))


def wait_for_idle(limit_s: float) -> None:
    """Wait (at most limit_s seconds) until other processes leave the CPUs nearly idle."""
    deadline = time.monotonic() + limit_s
    while True:
        watch = CpuWatch()
        time.sleep(5)
        share = watch.others_share()
        if share is None or share <= BUSY_LIMIT / 2:
            return
        if time.monotonic() > deadline:
            log(f"warning: still busy ({share:.0%} of the CPUs used by others); measuring anyway")
            return
        log(f"waiting: other processes use {share:.0%} of the CPUs")


def settle() -> None:
    gc.collect()
    time.sleep(PAUSE)


def measure_train(fw, data, n: int, batch_size: int, threads: int):
    settle()
    t0 = time.perf_counter()
    model = fw.train(data, batch_size, threads)
    elapsed = time.perf_counter() - t0
    return n / elapsed, model


def measure_infer(fw, model, x, n: int, threads: int):
    settle()
    preds = []
    t0 = time.perf_counter()
    for start in range(0, n, INFER_BATCH):
        preds.append(fw.predict(model, x[start : start + INFER_BATCH], threads))
    elapsed = time.perf_counter() - t0
    return n / elapsed, np.concatenate(preds)


def measure_latency(fw, model, x, threads: int) -> float:
    """Median seconds of one predict call on a single image (a (1, ...) slice)."""
    settle()
    singles = [x[i : i + 1] for i in range(min(LATENCY_CALLS, len(x)))]
    for i in range(LATENCY_WARMUP):
        fw.predict(model, singles[i % len(singles)], threads)
    times = []
    for i in range(LATENCY_CALLS):
        one = singles[i % len(singles)]
        t0 = time.perf_counter_ns()
        fw.predict(model, one, threads)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) * 1e-9


def measure_rss(fw_name: str, threads: int, args: argparse.Namespace) -> float:
    """Peak RSS (MiB) of a fresh process that loads the data and trains one epoch (batch 64)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_rss",
        fw_name,
        "--_threads",
        str(threads),
        "--n-train",
        str(args.n_train),
        "--data-dir",
        args.data_dir,
        "--api",
        args.api,
        "--lenet5-arch",
        args.lenet5_arch,
    ]
    if args.synthetic:
        cmd.append("--synthetic")
    settle()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"peak-RSS child failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mib"]


def rss_child(args: argparse.Namespace) -> None:
    """Body of the fresh process used by measure_rss; prints one JSON line."""
    fw = make_adapter(args._rss, args)
    data = load_data(args, need_test=False)
    train = fw.prepare_train(data["x_train"], data["y_train"])
    del data
    fw.train(train, 64, args._threads)
    # ru_maxrss (KiB on Linux) survives execve: a child started from a big parent would report
    # the parent's peak. VmHWM is the peak of this process's own address space, so it wins.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hwm = vm_hwm_mib()
    print(json.dumps({"maxrss_mib": hwm if hwm is not None else maxrss, "ru_maxrss_mib": maxrss}))


def vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# --------------------------------------------------------------------------------------
# Report

FIGURES = [
    # key, label, unit, higher is better
    ("train_b64", "training, batch 64", "img/s", True),
    ("train_b256", "training, batch 256", "img/s", True),
    ("train_b1", f"training, batch 1 ({N_TRAIN_B1:,} img)", "img/s", True),
    ("infer", "inference, batches of 1,000", "img/s", True),
    ("latency", "single-image predict latency", "ms", False),
    ("rss", "peak RSS, fresh process, 1 epoch b64", "MiB", False),
    ("accuracy", "test accuracy, 1 epoch b64", "", True),
]


AMD_FAMILIES = {"23": "Zen/Zen 2", "25": "Zen 3/Zen 4", "26": "Zen 5"}


def amd_generation(family: str, flags: list[str]) -> str:
    """Zen generation of an AMD family; family 25 holds Zen 3 and Zen 4, told apart by
    AVX-512, which Zen 4 has and Zen 3 lacks."""
    if family == "25":
        return "Zen 4" if "avx512f" in flags else "Zen 3"
    return AMD_FAMILIES[family]


def machine_info() -> dict:
    info = {"cpu": platform.processor() or platform.machine()}
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key and key not in fields:
                fields[key] = value
        info["cpu"] = fields.get("model name", info["cpu"])
        flags = fields.get("flags", "").split()
        if "cpu family" in fields:
            family = fields["cpu family"]
            info["cpu"] += f" (family {family}, model {fields.get('model', '?')}"
            if fields.get("vendor_id") == "AuthenticAMD" and family in AMD_FAMILIES:
                info["cpu"] += f", {amd_generation(family, flags)}"
            info["cpu"] += ")"
        info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "amx_tile") if f in flags)
    except OSError:
        pass
    info["logical_cpus"] = os.cpu_count()
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    try:
        import lenet5  # the kernel path the lenet5 runs use (LENET5_ISA is inherited)
    except ImportError:
        pass
    else:
        native = lenet5.native_info()
        info["lenet5_kernels"] = f"{native['isa']}, {native['lanes']} images per chunk"
        info["lenet5_kernel_reason"] = native["reason"]
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    return info


def fmt_value(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "latency":
        return f"{value * 1e3:.3f}"
    if key == "rss":
        return f"{value:,.0f}"
    if key == "accuracy":
        return f"{value:.3f}"
    return f"{value:,.0f}"


def fmt_cell(key: str, samples: list[float] | None) -> str:
    if not samples:
        return "-"
    med = statistics.median(samples)
    text = fmt_value(key, med)
    if len(samples) > 1 and med and key != "accuracy":
        spread = (max(samples) - min(samples)) / 2 / abs(med) * 100
        text += f" ±{spread:.0f}%"
    return text


def advantage(key: str, mine: list[float] | None, theirs: list[float] | None) -> float | None:
    """How many times better lenet5 is (>1: lenet5 better)."""
    if not mine or not theirs or key == "accuracy":
        return None
    a, b = statistics.median(mine), statistics.median(theirs)
    higher_is_better = next(f[3] for f in FIGURES if f[0] == key)
    return a / b if higher_is_better else b / a


def print_table(
    results: dict, others: dict, frameworks: list[str], thread_counts: list[int]
) -> None:
    header = ["figure", "threads", *frameworks]
    # (column, the framework lenet5 is compared with)
    versus = [(f"vs {peer}", peer) for peer in ("baseline", "torch") if peer in frameworks]
    if "lenet5" not in frameworks:
        versus = []
    header += [column for column, _ in versus]
    header.append("others' CPU")
    rows = []
    for key, label, unit, _ in FIGURES:
        if not any(key in results.get(fw, {}) for fw in frameworks):
            continue
        full = f"{label} ({unit})" if unit else label
        for k in thread_counts:
            row = [full, str(k)]
            per_fw = [results.get(fw, {}).get(key, {}).get(str(k)) for fw in frameworks]
            row += [fmt_cell(key, s) for s in per_fw]
            for _, peer in versus:
                adv = advantage(
                    key, per_fw[frameworks.index("lenet5")], per_fw[frameworks.index(peer)]
                )
                row.append(f"{adv:.2f}x" if adv is not None else "-")
            shares = [
                share
                for fw in frameworks
                for share in others.get(fw, {}).get(key, {}).get(str(k), [])
                if share is not None
            ]
            row.append(f"{max(shares):.0%}" if shares else "-")
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest])

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


# --------------------------------------------------------------------------------------
# Driver


def run(args: argparse.Namespace) -> int:
    thread_counts = [int(t) for t in args.threads.split(",")]
    figures = set(args.figures.split(","))
    if args.no_rss:
        figures.discard("rss")
    unknown = figures - ALL_FIGURES
    if unknown:
        choices = ", ".join(sorted(ALL_FIGURES))
        log(f"unknown figure(s) {', '.join(sorted(unknown))}; choose from {choices}")
        return 2
    frameworks = []
    adapters = {}
    errors = {}
    wanted = (
        ["lenet5"]
        + (["baseline"] if args.baseline else [])
        + (["torch"] if args.vs == "torch" else [])
    )
    for name in wanted:
        try:
            adapters[name] = make_adapter(name, args)
            frameworks.append(name)
        except Exception as exc:  # report it and go on with the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"warning: {name} unavailable: {errors[name]}")
    if not frameworks:
        log("nothing to measure")
        return 1

    data = load_data(args)
    n_train = len(data["x_train"])
    log(f"data: {data['source']}, {n_train} training and {len(data['x_test'])} test images")

    prepared = {}
    for name, fw in adapters.items():
        prepared[name] = {
            "train": fw.prepare_train(data["x_train"], data["y_train"]),
            "test": fw.prepare_infer(data["x_test"]),
            "train1": fw.prepare_train(data["x_train"][:N_TRAIN_B1], data["y_train"][:N_TRAIN_B1]),
        }

    # Warm-up: first-call costs (thread pools, lazy initialisation) stay out of the figures.
    for name, fw in list(adapters.items()):
        small_x, small_y = data["x_train"][:1024], data["y_train"][:1024]
        try:
            for k in thread_counts:
                model = fw.train(fw.prepare_train(small_x, small_y), 64, k)
                fw.predict(model, prepared[name]["test"][:INFER_BATCH], k)
        except Exception as exc:  # report it and go on with the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"warning: {name} failed during warm-up, left out: {errors[name]}")
            del adapters[name]
            frameworks.remove(name)
    if not frameworks:
        return 1

    if args.wait_idle > 0:
        wait_for_idle(args.wait_idle)
    results = {name: {} for name in frameworks}
    others = {name: {} for name in frameworks}  # CPU share taken by other processes, per sample
    run_watch = CpuWatch()

    def sample(name, key, k, rep, unit, fn, *fn_args):
        """Run one measurement fn(*fn_args) -> (value, extra); record value; return extra."""
        watch = CpuWatch()
        value, extra = fn(*fn_args)
        busy = watch.others_share()
        results[name].setdefault(key, {}).setdefault(str(k), []).append(value)
        others[name].setdefault(key, {}).setdefault(str(k), []).append(busy)
        shown = f"{value * 1e3:.3f}" if key == "latency" else f"{value:,.0f}"
        note = f"  (other processes: {busy:.0%} of the CPUs)" if busy is not None else ""
        log(f"  {name:7s} {key:10s} threads={k} run {rep + 1}: {shown} {unit}{note}")
        return extra

    def latency(fw, model, x, k):
        return measure_latency(fw, model, x, k), None

    def rss(name, k):
        return measure_rss(name, k, args), None

    models = {}  # (name, k) -> model trained at batch 64, used for inference and latency
    for k in thread_counts:
        if "train" in figures:
            for batch_size, key in ((64, "train_b64"), (256, "train_b256")):
                for rep in range(args.repeats):
                    for name in frameworks:
                        fw, train = adapters[name], prepared[name]["train"]
                        model = sample(
                            name, key, k, rep, "img/s", measure_train, fw, train, n_train,
                            batch_size, k,
                        )  # fmt: skip
                        if batch_size == 64 and rep == 0:
                            models[(name, k)] = model
        if "train1" in figures:
            n1 = min(N_TRAIN_B1, n_train)
            for rep in range(args.repeats):
                for name in frameworks:
                    fw, train1 = adapters[name], prepared[name]["train1"]
                    sample(name, "train_b1", k, rep, "img/s", measure_train, fw, train1, n1, 1, k)
        if "train" not in figures and ("infer" in figures or "latency" in figures):
            for name in frameworks:
                log(f"  {name:7s} training one epoch (untimed) for inference, threads={k}")
                models[(name, k)] = adapters[name].train(prepared[name]["train"], 64, k)
        if "infer" in figures:
            for rep in range(args.repeats):
                for name in frameworks:
                    fw, model, test = adapters[name], models[(name, k)], prepared[name]["test"]
                    preds = sample(
                        name, "infer", k, rep, "img/s", measure_infer, fw, model, test, N_INFER, k
                    )
                    if rep == 0 and data["real"]:
                        acc = float(np.mean(preds == data["y_test"]))
                        results[name].setdefault("accuracy", {})[str(k)] = [acc]
        if "latency" in figures:
            for rep in range(args.repeats):
                for name in frameworks:
                    fw, model, test = adapters[name], models[(name, k)], prepared[name]["test"]
                    sample(name, "latency", k, rep, "ms", latency, fw, model, test, k)
        if "rss" in figures:
            for rep in range(args.repeats):
                for name in frameworks:
                    if name == "baseline":  # the child process imports this checkout's build
                        continue
                    try:
                        sample(name, "rss", k, rep, "MiB", rss, name, k)
                    except Exception as exc:  # report it and go on with the others
                        log(f"warning: {name} peak RSS failed: {exc}")
    run_busy = run_watch.others_share()

    machine = machine_info()
    versions = {name: adapters[name].version() for name in frameworks}
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print()
    print(f"date:     {date}")
    print(
        f"machine:  {machine['cpu']}, {machine['logical_cpus']} logical CPUs "
        f"({machine['usable_cpus']} usable), SIMD: {machine.get('simd', '?')}"
    )
    print(f"          {machine['os']}, Python {machine['python']}, numpy {machine['numpy']}")
    if "lenet5_kernels" in machine:
        print(f"kernels:  lenet5 {machine['lenet5_kernels']} ({machine['lenet5_kernel_reason']})")
    for name in frameworks:
        print(f"{name + ':':9s} {versions[name]}")
    print(f"data:     {data['source']}")
    print(
        f"setup:    training on {n_train:,} images (one epoch), SGD lr {LEARNING_RATE} "
        f"(batch 1: {LEARNING_RATE_B1}) momentum {MOMENTUM}; inference on {N_INFER:,} images "
        f"in batches of {INFER_BATCH:,}; "
        f"latency = median of {LATENCY_CALLS} single-image calls"
    )
    times = (
        "1 run"
        if args.repeats == 1
        else f"medians of {args.repeats} runs (± half the min-max range)"
    )
    print(f"          {times}")
    if run_busy is not None:
        disturbed = sum(
            1
            for figs in others.values()
            for by_k in figs.values()
            for shares in by_k.values()
            for share in shares
            if share is not None and share > BUSY_LIMIT
        )
        print(
            f"load:     other processes used {run_busy:.0%} of the CPUs during the run; "
            f"{disturbed} measurement(s) saw more than {BUSY_LIMIT:.0%}"
        )
        if disturbed:
            print(
                "          WARNING: the machine was not idle; figures may be off (the last column"
                " gives the most CPU other processes took during a row's measurements)"
            )
    print()
    print_table(results, others, frameworks, thread_counts)
    if "lenet5" in frameworks and len(frameworks) > 1:
        print()
        print("vs X: lenet5/X for img/s, X/lenet5 for latency and RSS (above 1 = lenet5 better)")
    for name, err in errors.items():
        print(f"note: {name} not measured: {err}")

    if args.json:
        doc = {
            "date": date,
            "machine": machine,
            "versions": versions,
            "data": data["source"],
            "config": {
                "n_train": n_train,
                "n_infer": N_INFER,
                "infer_batch": INFER_BATCH,
                "latency_calls": LATENCY_CALLS,
                "repeats": args.repeats,
                "threads": thread_counts,
                "lenet5_arch": args.lenet5_arch,
                "learning_rate": LEARNING_RATE,
                "learning_rate_b1": LEARNING_RATE_B1,
                "momentum": MOMENTUM,
            },
            "units": {key: unit or "fraction" for key, _, unit, _ in FIGURES},
            "samples": results,
            "others_cpu_share": {"run": run_busy, "per_sample": others},
            "medians": {
                name: {
                    key: {k: statistics.median(v) for k, v in by_k.items()}
                    for key, by_k in figs.items()
                }
                for name, figs in results.items()
            },
            "errors": errors,
        }

        def versus(peer: str) -> dict:
            """lenet5's advantage over ``peer`` per figure and thread count."""
            return {
                key: {
                    str(k): advantage(
                        key,
                        results["lenet5"].get(key, {}).get(str(k)),
                        results[peer].get(key, {}).get(str(k)),
                    )
                    for k in thread_counts
                }
                for key, _, _, _ in FIGURES
                if key != "accuracy"
            }

        # (the JSON key of each comparison)
        for peer, field in (("baseline", "vs_baseline"), ("torch", "lenet5_advantage")):
            if peer in frameworks and "lenet5" in frameworks:
                doc[field] = versus(peer)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vs", choices=["torch"], help="also measure the PyTorch peer in the same run")
    p.add_argument(
        "--baseline",
        metavar="SO",
        help="also measure another build of lenet5's extension (a _lenet5*.so file) in the "
        "same run, both through the native API",
    )
    p.add_argument("--repeats", type=int, help="repeats per figure (default 3, 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="10,000 training images, 1 repeat")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder with the IDX .gz files")
    p.add_argument("--synthetic", action="store_true", help="use random images even if real exist")
    p.add_argument("--n-train", type=int, help="training images (default 60,000; 10,000 quick)")
    p.add_argument(
        "--api",
        choices=["auto", "estimator", "native"],
        default="auto",
        help="lenet5 API: the LeNet5 class or the native layer (default: the class if present)",
    )
    p.add_argument(
        "--lenet5-arch",
        choices=["paper", "peer"],
        default="paper",
        help="lenet5 architecture: library defaults (paper) or avg pooling + full C3 like torch",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before measuring, wait up to SECONDS for other processes to leave the CPUs idle",
    )
    p.add_argument(
        "--figures",
        default="train,train1,infer,latency,rss",
        help="comma-separated subset of train,train1,infer,latency,rss to measure "
        "(default: all); train1 is training at batch size 1",
    )
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--_rss", help=argparse.SUPPRESS)
    p.add_argument("--_threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.baseline:
        if args.api == "estimator":
            p.error("--baseline compares native layers; use --api native (or auto)")
        args.api = "native"  # both builds through the same API
    if args.n_train is None:
        args.n_train = N_TRAIN_QUICK if args.quick else N_TRAIN_FULL
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._rss:
        rss_child(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
