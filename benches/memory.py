"""Peak memory of ``predict`` / ``predict_proba`` on a million images.

A script, not a test. For each input kind it starts a fresh Python process that builds
the images (uint8, 28x28, filled chunk by chunk so that building them needs no second
copy), fits a small model, resets the kernel's peak-RSS counter, runs one call and reports
how far the peak resident set size rose above the resident size just before the call,
next to the sizes of the input and of the output. Bounded memory means:

    peak growth <= input bytes not yet resident + output bytes + a fixed workspace

where the workspace does not grow with the number of images.

Input kinds:

* ``array``:   an in-memory numpy array (already resident: it is not part of the growth);
* ``memmap``:  a read-only ``np.memmap`` of a file written beforehand (its pages become
  resident as predict reads them, so they count in the growth, up to the input size);
* ``float32``: an in-memory float32 array in [0, 1] (4x the uint8 size).

Linux only (reads /proc/self/status and resets the peak via /proc/self/clear_refs).

Usage::

    python benches/memory.py                  # 1,000,000 images, all kinds
    python benches/memory.py --n 200000 --kinds array memmap --json memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHUNK = 50_000


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Make VmHWM equal to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(kind: str, n: int, method: str, n_jobs: int, workdir: str) -> dict:
    import numpy as np
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    (x_train, y_train), (x_test, _) = load_mnist()
    model = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=n_jobs)
    model.fit(x_train[:1000], y_train[:1000])
    model.predict(x_test[:100])  # thread pool and lazy setup happen before measuring

    source = np.ascontiguousarray(x_test)  # 1,000 real digits, repeated
    if kind == "memmap":
        path = os.path.join(workdir, "images.u8")
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            out[start:stop] = source[np.arange(start, stop) % len(source)]
        out.flush()
        del out
        # drop the written pages from this process (they stay in the page cache)
        x = np.load(path, mmap_mode="r")
    else:
        dtype = np.float32 if kind == "float32" else np.uint8
        x = np.empty((n, 28, 28), dtype=dtype)
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            block = source[np.arange(start, stop) % len(source)]
            x[start:stop] = block / np.float32(255) if kind == "float32" else block

    input_bytes = x.size * x.dtype.itemsize
    rss_before = status_bytes("VmRSS")
    peak_reset = reset_peak()
    start = time.perf_counter()
    result = getattr(model, method)(x)
    seconds = time.perf_counter() - start
    peak = status_bytes("VmHWM")
    rss_after = status_bytes("VmRSS")
    output_bytes = result.nbytes
    resident_input = 0 if kind == "memmap" else input_bytes
    growth = peak - rss_before
    # (predict's int64 class indices, n * 8 bytes, are part of the workspace here)
    workspace = growth - (input_bytes - resident_input) - output_bytes
    return {
        "kind": kind,
        "method": method,
        "n_images": n,
        "n_jobs": n_jobs,
        "input_MB": input_bytes / 2**20,
        "output_MB": output_bytes / 2**20,
        "rss_before_MB": rss_before / 2**20,
        "peak_growth_MB": growth / 2**20,
        "rss_after_MB": rss_after / 2**20,
        "workspace_MB": workspace / 2**20,
        "peak_reset": peak_reset,
        "seconds": seconds,
        "images_per_s": n / seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="images (default 1,000,000)")
    parser.add_argument(
        "--kinds", nargs="+", default=["array", "memmap", "float32"],
        choices=["array", "memmap", "float32"],
    )  # fmt: skip
    parser.add_argument(
        "--methods", nargs="+", default=["predict_proba", "predict"],
        choices=["predict_proba", "predict"],
    )  # fmt: skip
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("memory.py reads /proc: Linux only", file=sys.stderr)
        return 2

    if args.child:
        kind, method = args.child
        print(json.dumps(child(kind, args.n, method, args.n_jobs, args.workdir)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for kind in args.kinds:
            for method in args.methods:
                cmd = [
                    sys.executable, __file__, "--child", kind, method, "--n", str(args.n),
                    "--n-jobs", str(args.n_jobs), "--workdir", workdir,
                ]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return done.returncode
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(
                    f"{r['kind']:8} {r['method']:14} {r['n_images']:>9,} images  "
                    f"input {r['input_MB']:7.1f} MB  output {r['output_MB']:6.1f} MB  "
                    f"peak growth {r['peak_growth_MB']:7.1f} MB  "
                    f"workspace {r['workspace_MB']:6.1f} MB  "
                    f"{r['seconds']:6.2f} s ({r['images_per_s']:,.0f} img/s)",
                    flush=True,
                )
    if not all(r["peak_reset"] for r in rows):
        print("note: /proc/self/clear_refs not writable; peaks include setup", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
