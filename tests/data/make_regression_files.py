"""Writes the model files of this folder (run from the repository root):

    python tests/data/make_regression_files.py

``model_v1.safetensors`` is a small fitted model in format version 1, kept so that
every later lenet5 must still load it (``model_v1_proba.npy``: its probabilities for the
first 32 embedded test digits). The ``bad_*.safetensors`` files are hostile or broken
variants of it, made by ``bad_files`` when the tests run; each must be refused with a
ValueError (tests/test_persistence.py). Inputs that ever made the loader fail otherwise
than with a ValueError are kept as ``crash-*.safetensors`` (``crash_files``), and
tests/test_model_files_fuzz.py checks every one of them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def split(blob: bytes) -> tuple[str, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return blob[8 : 8 + n].decode("utf-8"), blob[8 + n :]


def join(header: str, buffer: bytes) -> bytes:
    raw = header.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + buffer


def edit_json(blob: bytes, change) -> bytes:
    header, buffer = split(blob)
    obj = json.loads(header)
    change(obj)
    return join(json.dumps(obj), buffer)


def edit_meta(blob: bytes, key: str, value: str) -> bytes:
    def change(obj):
        obj["__metadata__"][key] = value

    return edit_json(blob, change)


def bad_files(good: bytes) -> dict[str, bytes]:
    header, buffer = split(good)
    obj = json.loads(header)
    out: dict[str, bytes] = {}
    out["bad_header_length_huge"] = struct.pack("<Q", 2**64 - 1) + good[8:]
    out["bad_header_length_past_end"] = struct.pack("<Q", len(good)) + good[8:]
    out["bad_truncated"] = good[: len(good) // 2]
    out["bad_empty"] = b""
    # The same tensor name twice (JSON that plain parsers silently accept).
    entry = '"c1.bias":' + json.dumps(obj["c1.bias"])
    out["bad_duplicate_tensor"] = join(header.replace("{", "{" + entry + ",", 1), buffer)
    out["bad_duplicate_metadata_key"] = join(
        header.replace('"__metadata__":{', '"__metadata__":{"format":"lenet5",', 1),
        buffer,
    )

    def overlap(o):
        begin = o["c1.weight"]["data_offsets"][0]
        o["c1.bias"]["data_offsets"] = [begin + 4, begin + 28]

    out["bad_overlapping_offsets"] = edit_json(good, overlap)

    def huge_shape(o):
        o["c1.weight"]["shape"] = [4294967296, 4294967296, 16]

    out["bad_huge_shape"] = edit_json(good, huge_shape)

    def huge_offsets(o):
        o["c1.weight"]["data_offsets"] = [0, 2**62]

    out["bad_huge_offsets"] = edit_json(good, huge_offsets)

    def number_too_big(o):
        o["c1.weight"]["shape"] = [18446744073709551616]

    out["bad_number_too_big"] = edit_json(good, number_too_big)

    def f64(o):
        o["c1.bias"]["dtype"] = "F64"

    out["bad_dtype_f64"] = edit_json(good, f64)
    begin = obj["c1.weight"]["data_offsets"][0]
    nan = bytearray(buffer)
    nan[begin + 4 : begin + 8] = struct.pack("<f", float("nan"))
    out["bad_nan_weight"] = join(header, bytes(nan))
    bad_utf8 = bytearray(good)
    bad_utf8[9] = 0xFF
    out["bad_header_utf8"] = bytes(bad_utf8)

    def renamed(o):
        o["c9.weight"] = o.pop("c1.weight")

    out["bad_tensor_name"] = edit_json(good, renamed)

    def no_meta(o):
        del o["__metadata__"]

    out["bad_not_lenet5"] = edit_json(good, no_meta)
    out["bad_format_version_3"] = edit_meta(good, "format_version", "3")
    out["bad_classes_count"] = edit_meta(good, "classes", '{"dtype":"<i8","values":[0,1,2]}')
    out["bad_hyperparameter"] = edit_meta(good, "hyperparameters", '{"epochs": -1}')
    out["bad_metadata_json"] = edit_meta(good, "history", '{"loss": [NaN]}')
    out["bad_architecture"] = edit_meta(
        good, "architecture", '{"n_classes": 10, "pooling": "median"}'
    )
    return out


def crash_files() -> dict[str, bytes]:
    """Small files that once made the loader raise something other than ValueError."""
    meta = {
        "format": "lenet5",
        "format_version": "1",
        "hyperparameters": "{}",
        "classes": '{"dtype":"<i8","values":[0,1,2,3,4,5,6,7,8,9]}',
        "n_iter": "0",
    }
    out = {}
    # OverflowError from the native constructor (found by test_metadata_json_members).
    for name, arch in {
        "crash-architecture-negative-seed": '{"n_classes":10,"seed":-1}',
        "crash-architecture-huge-n-classes": '{"n_classes":1180591620717411303424}',
    }.items():
        header = json.dumps({"__metadata__": dict(meta, architecture=arch)})
        header += " " * (-len(header) % 8)
        out[name] = join(header, b"")
    return out


def main() -> None:
    for name, blob in crash_files().items():
        (HERE / f"{name}.safetensors").write_bytes(blob)
    path = HERE / "model_v1.safetensors"
    if path.exists():
        return  # written once by format version 1: never regenerate it
    from lenet5 import LeNet5
    from lenet5.datasets import load_mnist

    (x, y), (x_test, _) = load_mnist()
    model = LeNet5(epochs=1, random_state=0, verbose=0, n_jobs=1).fit(x[:500], y[:500])
    model.save(path)
    np.save(HERE / "model_v1_proba.npy", model.predict_proba(x_test[:32]))


if __name__ == "__main__":
    main()
