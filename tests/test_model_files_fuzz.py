"""Model files are untrusted input: mutated files either load or raise ValueError.

Hypothesis mutates a valid model file (tests/data/model_v1.safetensors) in the ways a
corrupted download or a hostile author would: bit flips, truncation, a wrong header
length field, duplicated keys, swapped names, overlapping or huge offsets and shapes,
odd numbers, wrong dtypes and arbitrary metadata values. ``LeNet5.load`` must then either
return a usable model or raise ValueError: never another exception, never a panic
(``PanicException`` is not an ``Exception``), never a crash or a hang. Each test is
bounded by ``max_examples`` and a per-example deadline (the whole file runs in seconds).

A file that ever broke the loader is kept as ``tests/data/crash-*.safetensors`` and
checked by ``test_kept_regression_files``.

Files of format version 2 also hold the optimizer's state (an ``optimizer`` metadata
entry and the tensors ``optimizer.m`` / ``optimizer.v``): a second seed, written by an
Adam fit when the tests run, is mutated in that state's members, tensors and bytes. A
mutated file that loads must also train on (``partial_fit``): a ValueError or, for
values that make training diverge, a FloatingPointError, and nothing else.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lenet5 import LeNet5

DATA = Path(__file__).resolve().parent / "data"
GOOD = (DATA / "model_v1.safetensors").read_bytes()
HEADER_LEN = struct.unpack("<Q", GOOD[:8])[0]
HEADER = json.loads(GOOD[8 : 8 + HEADER_LEN])
BUFFER = GOOD[8 + HEADER_LEN :]
IMAGES = np.zeros((2, 28, 28), np.uint8)

FUZZ = settings(
    max_examples=600,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "model.safetensors"


def load_or_value_error(path: Path, blob: bytes) -> str:
    """Writes ``blob`` to ``path`` and loads it: "ok" or "refused"; anything else fails."""
    path.write_bytes(blob)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. unknown hyperparameters
            model = LeNet5.load(path)
    except ValueError as err:
        message = str(err)
    else:
        # A file that loads gives a usable model.
        assert model.predict(IMAGES).shape == (2,)
        return "ok"
    assert message, "a ValueError must say what is wrong"
    return "refused"


def with_length(header: bytes, buffer: bytes = BUFFER) -> bytes:
    return struct.pack("<Q", len(header)) + header + buffer


def test_the_seed_file_loads(target):
    assert load_or_value_error(target, GOOD) == "ok"


# ------------------------------------------------------------------ raw bytes


@FUZZ
@given(
    flips=st.lists(
        st.tuples(st.integers(0, 8 + HEADER_LEN - 1), st.integers(0, 7)), min_size=1, max_size=6
    ),
    data_flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 7)), max_size=3),
)
def test_bit_flips(target, flips, data_flips):
    blob = bytearray(GOOD)
    for at, bit in flips + data_flips:
        blob[at] ^= 1 << bit
    load_or_value_error(target, bytes(blob))


@FUZZ
@given(
    cut=st.integers(0, len(GOOD)),
    length=st.one_of(
        st.none(),
        st.integers(0, 2**64 - 1),
        st.integers(max(0, HEADER_LEN - 16), HEADER_LEN + 16),
        st.sampled_from([2**63, 2**64 - 1, len(GOOD), len(GOOD) - 8, 1 << 20, (1 << 20) + 1]),
    ),
    tail=st.binary(max_size=16),
)
def test_truncation_and_length_field(target, cut, length, tail):
    blob = bytearray(GOOD[:cut] + tail)
    if length is not None and len(blob) >= 8:
        blob[:8] = struct.pack("<Q", length)
    load_or_value_error(target, bytes(blob))


# ------------------------------------------------------------------ header edits

WEIRD_NUMBERS = [
    "-1",
    "-0",
    "1.5",
    "4.0",
    "1e3",
    "1e400",
    "00",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "4611686018427387904",
    "99999999999999999999999999999999",
    "0x10",
    "null",
    "true",
    '"3"',
    "[]",
    "{}",
]
METADATA_KEYS = [
    "format",
    "format_version",
    "architecture",
    "hyperparameters",
    "classes",
    "n_iter",
    "history",
    "best_epoch",
    "library_version",
]
DTYPES = ["F32", "F64", "F16", "BF16", "I32", "U8", "f32", "", "F32 ", "F\\u0033\\u0032"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def fields_of(value: dict) -> list[tuple[str, str]]:
    return [(k, json.dumps(v)) for k, v in value.items()]


def render(header: list[tuple[str, list[tuple[str, str]]]]) -> bytes:
    """JSON text of a header given as (key, [(field, raw JSON text)]), duplicates allowed."""
    parts = []
    for name, fields in header:
        inner = ",".join(f"{json.dumps(k)}:{text}" for k, text in fields)
        parts.append(f"{json.dumps(name)}:{{{inner}}}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def edit(data: st.DataObject, header: list) -> None:
    """One random edit of the header structure, in place."""
    i = data.draw(st.integers(0, len(header) - 1))
    name, fields = header[i]
    tensors = [k for k, (n, _) in enumerate(header) if n != "__metadata__"]
    op = data.draw(
        st.sampled_from(
            [
                "duplicate entry",
                "duplicate field",
                "swap names",
                "rename",
                "offsets",
                "copy offsets",
                "shape",
                "weird number",
                "dtype",
                "metadata value",
                "drop entry",
                "drop field",
                "extra field",
            ]
        )
    )
    if op == "duplicate entry":
        header.insert(data.draw(st.integers(0, len(header))), (name, list(fields)))
    elif op == "duplicate field" and fields:
        fields.append(data.draw(st.sampled_from(fields)))
    elif op == "swap names":
        j = data.draw(st.integers(0, len(header) - 1))
        header[i], header[j] = (header[j][0], fields), (name, header[j][1])
    elif op == "rename":
        header[i] = (data.draw(st.sampled_from(["", "c1.weight", "x", "__metadata__"])), fields)
    elif op == "offsets" and tensors:
        k = data.draw(st.sampled_from(tensors))
        begin = data.draw(st.integers(0, len(BUFFER) + 8))
        end = data.draw(st.one_of(st.integers(0, len(BUFFER) + 8), st.just(begin)))
        header[k] = (header[k][0], [*header[k][1], ("data_offsets", json.dumps([begin, end]))])
        header[k] = (header[k][0], dedupe_last(header[k][1]))
    elif op == "copy offsets" and len(tensors) >= 2:
        a, b = data.draw(st.permutations(tensors))[:2]
        offsets = dict(header[a][1]).get("data_offsets", "[0,0]")
        header[b] = (header[b][0], dedupe_last([*header[b][1], ("data_offsets", offsets)]))
    elif op == "shape" and tensors:
        k = data.draw(st.sampled_from(tensors))
        dims = data.draw(
            st.lists(
                st.one_of(st.integers(0, 200), st.sampled_from([2**32, 2**62, 2**64 - 1])),
                max_size=5,
            )
        )
        header[k] = (header[k][0], dedupe_last([*header[k][1], ("shape", json.dumps(dims))]))
    elif op == "weird number" and tensors:
        k = data.draw(st.sampled_from(tensors))
        token = data.draw(st.sampled_from(WEIRD_NUMBERS))
        field = data.draw(st.sampled_from(["shape", "data_offsets"]))
        try:
            current = json.loads(dict(header[k][1]).get(field, "[0, 0]"))
        except ValueError:  # an earlier edit left a token that is not JSON
            current = None
        if isinstance(current, list) and current:
            at = data.draw(st.integers(0, len(current) - 1))
            parts = [json.dumps(v) for v in current]
            parts[at] = token
            text = "[" + ",".join(parts) + "]"
        else:
            text = token
        header[k] = (header[k][0], dedupe_last([*header[k][1], (field, text)]))
    elif op == "dtype" and tensors:
        k = data.draw(st.sampled_from(tensors))
        dtype = '"' + data.draw(st.sampled_from(DTYPES)) + '"'
        header[k] = (header[k][0], dedupe_last([*header[k][1], ("dtype", dtype)]))
    elif op == "metadata value":
        metas = [k for k, (n, _) in enumerate(header) if n == "__metadata__"]
        if metas:
            m = metas[0]
            key = data.draw(
                st.sampled_from([k for k, _ in header[m][1]] + ["format", "extra", ""])
            )
            value = data.draw(
                st.one_of(
                    JSON_VALUES.map(json.dumps),
                    st.text(max_size=12),
                    st.sampled_from(["0", "2", "1", "lenet5", "[", "{}", "NaN", "-1"]),
                )
            )
            header[m] = ("__metadata__", dedupe_last([*header[m][1], (key, json.dumps(value))]))
    elif op == "drop entry":
        del header[i]
    elif op == "drop field" and fields:
        del fields[data.draw(st.integers(0, len(fields) - 1))]
    elif op == "extra field":
        fields.append((data.draw(st.text(max_size=6)), data.draw(JSON_VALUES.map(json.dumps))))


def dedupe_last(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep the last value of each field (an edit replaces a field's value)."""
    out: dict[str, str] = {}
    for k, v in fields:
        out.pop(k, None)
        out[k] = v
    return list(out.items())


@FUZZ
@given(data=st.data(), n_edits=st.integers(1, 3))
def test_header_edits(target, data, n_edits):
    header = [(name, fields_of(value)) for name, value in HEADER.items()]
    for _ in range(n_edits):
        if not header:
            break
        edit(data, header)
    load_or_value_error(target, with_length(render(header)))


@FUZZ
@given(
    key=st.sampled_from(METADATA_KEYS),
    value=st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=20)),
)
def test_metadata_values(target, key, value):
    """Any value in any metadata entry: the loader's metadata checks are total."""
    header = dict(HEADER)
    header["__metadata__"] = dict(HEADER["__metadata__"], **{key: value})
    text = json.dumps(header).encode("utf-8")
    load_or_value_error(target, with_length(text))


@FUZZ
@given(
    data=st.data(),
    field=st.sampled_from(["architecture", "hyperparameters", "classes", "history"]),
    value=JSON_VALUES,
)
def test_metadata_json_members(target, data, field, value):
    """One member of a JSON metadata object replaced or added."""
    obj = json.loads(HEADER["__metadata__"][field])
    key = data.draw(st.one_of(st.sampled_from(sorted(obj)), st.text(max_size=10)))
    obj[key] = value
    header = dict(HEADER)
    header["__metadata__"] = dict(HEADER["__metadata__"], **{field: json.dumps(obj)})
    load_or_value_error(target, with_length(json.dumps(header).encode("utf-8")))


def with_classes(dtype: str, values: list) -> bytes:
    """The seed file with its ``classes`` metadata replaced."""
    header = dict(HEADER)
    classes = json.dumps({"dtype": dtype, "values": values})
    header["__metadata__"] = dict(HEADER["__metadata__"], classes=classes)
    return with_length(json.dumps(header).encode("utf-8"))


N_CLASSES = json.loads(HEADER["__metadata__"]["architecture"])["n_classes"]


@settings(FUZZ, max_examples=200)
@given(
    kind=st.sampled_from(["<U", ">U", "|S", "=U"]),
    width=st.one_of(st.integers(1, 12), st.sampled_from([999_999, 500_000, 100_000, 4_000])),
    count=st.one_of(st.just(N_CLASSES), st.integers(0, 3000)),
)
def test_class_label_dtypes(target, kind, width, count):
    """String label dtypes of any width with any number of values: loaded or refused
    within the deadline (the array is sized before it is built)."""
    values = [str(i) for i in range(count)]
    outcome = load_or_value_error(target, with_classes(f"{kind}{width}", values))
    fits = count == N_CLASSES and width >= len(str(count - 1))
    small = N_CLASSES * width * (1 if kind == "|S" else 4) <= 16 * 1024 * 1024
    assert outcome == ("ok" if fits and small else "refused")


# ------------------------------------------------------------------ kept inputs, memory


def test_kept_regression_files(tmp_path):
    kept = sorted(DATA.glob("crash-*.safetensors"))
    assert kept
    for path in kept:
        load_or_value_error(tmp_path / "m.safetensors", path.read_bytes())


MEMORY_CHILD = textwrap.dedent(
    """
    import json, resource, struct, sys
    from lenet5 import LeNet5

    def rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    files = sys.argv[1:]
    LeNet5.load(files[0])  # warm up: imports and first allocations
    before = rss_mib()
    for path in files[1:]:
        try:
            LeNet5.load(path)
        except ValueError as err:
            print(path, err, file=sys.stderr)
        else:
            raise SystemExit(f"{path} loaded")
    print(rss_mib() - before)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_claimed_sizes_never_allocate(tmp_path):
    """Files that claim a huge header, tensor, offset or label dtype are refused without
    reserving the claimed memory: peak RSS grows by less than 16 MiB over all of them."""

    def tensor_header(shape, offsets):
        return json.dumps(
            {"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}
        ).encode()

    small = b"\0" * 1024
    blobs = {
        "length": struct.pack("<Q", 2**63) + b"{}" + small,
        "length_cap": struct.pack("<Q", 1 << 40) + b"{}" + small,
        "shape": with_length(tensor_header([2**40], [0, 2**42]), small),
        "shape_mul": with_length(tensor_header([2**31, 2**31], [0, 1024]), small),
        "offsets": with_length(tensor_header([256], [0, 2**62]), small),
        "names": with_length(
            json.dumps(
                {
                    f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                    for i in range(5000)
                }
            ).encode(),
            b"",
        ),
    }
    # classes_ declared with huge string dtypes (the values themselves are short): the
    # size of the array is checked before it is built.
    many = [str(i) for i in range(2000)]
    blobs["classes_S_many"] = with_classes("|S999999", many)
    blobs["classes_U_many"] = with_classes("<U999999", many)
    blobs["classes_U_wide"] = with_classes("<U999999", many[:N_CLASSES])
    blobs["classes_U_100k"] = with_classes("<U99999", [str(i) for i in range(100_000)])
    paths = [str(DATA / "model_v1.safetensors")]
    for name, blob in blobs.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        paths.append(str(path))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(out.stdout) < 16, out.stdout


# ------------------------------------------------------------------ the optimizer's state


def _seed_with_state() -> bytes:
    """A model file with Adam's state, after one epoch on 64 embedded digits."""
    import tempfile

    from lenet5.datasets import load_mnist

    (x, y), _ = load_mnist()
    model = LeNet5(epochs=1, optimizer="adam", learning_rate=1e-3, random_state=0, verbose=0)
    model.fit(x[:64], y[:64])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adam.safetensors"
        model.save(path)
        return path.read_bytes()


GOOD2 = _seed_with_state()
HEADER2_LEN = struct.unpack("<Q", GOOD2[:8])[0]
HEADER2 = json.loads(GOOD2[8 : 8 + HEADER2_LEN])
BUFFER2 = GOOD2[8 + HEADER2_LEN :]
STATE = json.loads(HEADER2["__metadata__"]["optimizer"])
TRAIN_IMAGES = np.zeros((4, 28, 28), np.uint8)
TRAIN_LABELS = np.arange(4)
STATE_FUZZ = settings(FUZZ, max_examples=200)


def load_and_train_or_value_error(path: Path, blob: bytes) -> str:
    """As load_or_value_error, and a model that loads trains one step on (or diverges)."""
    if load_or_value_error(path, blob) == "refused":
        return "refused"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LeNet5.load(path).set_params(batch_size=4, n_jobs=1)
        try:
            model.partial_fit(TRAIN_IMAGES, TRAIN_LABELS)
        except FloatingPointError:
            return "diverged"
    assert model.predict(IMAGES).shape == (2,)
    return "ok"


def with_state(state: object, header: dict | None = None) -> bytes:
    header = dict(HEADER2 if header is None else header)
    header["__metadata__"] = dict(HEADER2["__metadata__"], optimizer=json.dumps(state))
    return with_length(json.dumps(header).encode("utf-8"), BUFFER2)


def test_the_seed_with_state_loads_and_trains(target):
    assert STATE["settings"][0] == "adam"
    assert {"optimizer.m", "optimizer.v"} <= set(HEADER2)
    assert load_and_train_or_value_error(target, GOOD2) == "ok"


@STATE_FUZZ
@given(data=st.data(), value=st.one_of(JSON_VALUES, st.sampled_from([0, -1, 2**64, 2**62])))
def test_optimizer_state_members(target, data, value):
    """One member of the optimizer entry, or one element of its settings or rng list,
    replaced (or a member added or removed)."""
    state = json.loads(json.dumps(STATE))
    where = data.draw(st.sampled_from(["member", "settings", "rng", "drop", "add"]))
    if where == "member":
        state[data.draw(st.sampled_from(sorted(state)))] = value
    elif where in ("settings", "rng"):
        state[where][data.draw(st.integers(0, len(state[where]) - 1))] = value
    elif where == "drop":
        del state[data.draw(st.sampled_from(sorted(state)))]
    else:
        state[data.draw(st.text(max_size=8))] = value
    load_and_train_or_value_error(target, with_state(state))


@STATE_FUZZ
@given(
    name=st.sampled_from(["sgd", "adam", "adamw", "sdlm", "rmsprop", ""]),
    nesterov=st.booleans(),
    numbers=st.lists(st.floats(1e-6, 0.999), min_size=6, max_size=6),
    odd=st.one_of(
        st.none(),
        st.tuples(
            st.integers(0, 5),
            st.one_of(st.floats(-2, 2, allow_nan=False), st.sampled_from([0, 1, 1e-30, 3e38])),
        ),
    ),
    learning_rate=st.one_of(
        st.floats(1e-6, 1), st.floats(-1, 10, allow_nan=False), st.sampled_from([1e-40, 3e38])
    ),
    step=st.one_of(st.integers(0, 10**6), st.integers(0, 2**63), st.just(2**62 - 1)),
)
def test_optimizer_settings(target, name, nesterov, numbers, odd, learning_rate, step):
    """Any optimizer name and settings (valid ones, or one of them odd), learning rate
    and step count: refused, or a model that trains on."""
    if odd is not None:
        numbers[odd[0]] = odd[1]
    momentum, weight_decay, beta_1, beta_2, epsilon, mu = numbers
    state = dict(
        STATE,
        settings=[name, momentum, weight_decay, nesterov, beta_1, beta_2, epsilon, mu],
        learning_rate=learning_rate,
        step=step,
    )
    load_and_train_or_value_error(target, with_state(state))


@STATE_FUZZ
@given(data=st.data())
def test_optimizer_tensor_edits(target, data):
    """The optimizer's tensors renamed, reshaped, retyped, dropped or duplicated."""
    header = dict(HEADER2)
    name = data.draw(st.sampled_from(["optimizer.m", "optimizer.v"]))
    entry = dict(header[name])
    op = data.draw(st.sampled_from(["rename", "shape", "dtype", "drop", "offsets"]))
    if op == "rename":
        new = data.draw(
            st.sampled_from(
                ["optimizer.h", "optimizer.", "optimizer.x", "optimizer.m", "c1.weight", "m"]
            )
        )
        del header[name]
        header[new] = entry
    elif op == "shape":
        size = entry["shape"][0]
        entry["shape"] = data.draw(
            st.sampled_from([[size // 2, 2], [1, size], [], [size - 1], [0], [size, 1]])
        )
        header[name] = entry
    elif op == "dtype":
        entry["dtype"] = data.draw(st.sampled_from(DTYPES))
        header[name] = entry
    elif op == "drop":
        del header[name]
    else:
        other = header["optimizer.v" if name == "optimizer.m" else "optimizer.m"]
        entry["data_offsets"] = other["data_offsets"]
        header[name] = entry
    load_and_train_or_value_error(target, with_length(json.dumps(header).encode(), BUFFER2))


@STATE_FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 7)), min_size=1, max_size=8))
def test_optimizer_data_bit_flips(target, flips):
    """Bit flips in the optimizer's buffers (NaN, infinity, negative second moments, huge
    or subnormal values)."""
    begin = min(HEADER2[n]["data_offsets"][0] for n in ("optimizer.m", "optimizer.v"))
    end = max(HEADER2[n]["data_offsets"][1] for n in ("optimizer.m", "optimizer.v"))
    start = 8 + HEADER2_LEN
    blob = bytearray(GOOD2)
    for at, bit in flips:
        blob[start + begin + at % (end - begin)] ^= 1 << bit
    load_and_train_or_value_error(target, bytes(blob))
