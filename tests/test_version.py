"""The version is written once, in Cargo.toml: the package, the distribution's metadata, the
changelog, model files and pickles all carry that same string."""

from __future__ import annotations

import importlib.metadata
import json
import re
import struct
from pathlib import Path

import lenet5
import pytest
from lenet5 import _lenet5

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "lenet5-rs"


def cargo_version() -> str:
    """The ``version`` of Cargo.toml's ``[package]`` table, read without the package."""
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the [package] table's own version line
        package = re.search(r"^\[package\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        assert package, "Cargo.toml has no [package] table"
        match = re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
        assert match, "Cargo.toml's [package] has no version"
        return match.group(1)
    return tomllib.loads(text)["package"]["version"]


@pytest.fixture(scope="module")
def version() -> str:
    value = cargo_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?[a-z0-9.]+)?", value), value
    return value


def test_dunder_version_is_cargo_version(version):
    assert lenet5.__version__ == version
    assert _lenet5.__version__ == version


def test_distribution_metadata_has_cargo_version(version):
    try:
        installed = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the {DISTRIBUTION} distribution is not installed (an in-place build)")
    assert installed == version


def test_changelog_names_the_version_first(version):
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\S+)", text, re.M)
    assert headings, "CHANGELOG.md has no '## <version>' heading"
    assert headings[0] == version


def test_model_file_and_pickle_record_the_version(version, fitted_small, tmp_path):
    path = tmp_path / "m.safetensors"
    fitted_small.save(path)
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    metadata = json.loads(raw[8 : 8 + size])["__metadata__"]
    assert metadata["library_version"] == version
    assert fitted_small.__getstate__()["library_version"] == version


def test_one_native_module_beside_the_package():
    # A native module built before the stable-ABI switch (``_lenet5.cpython-3XX-...so``)
    # would be imported instead of a newer ``_lenet5.abi3.so`` beside it, silently.
    folder = Path(_lenet5.__file__).parent
    found = sorted(p.name for p in folder.glob("_lenet5.*") if p.suffix in {".so", ".pyd"})
    assert found == [Path(_lenet5.__file__).name], (
        f"several native modules in {folder}: {found}; delete all but the newest build"
    )
