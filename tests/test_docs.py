"""Docs and typing: the doctests of every module, an Examples section on every public name,
and the hand-written stub of the native module checked by mypy's stubtest."""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import lenet5
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Every Python module of the package (the native ``_lenet5`` has no doctests).
MODULES = [
    "lenet5",
    *sorted(
        info.name
        for info in pkgutil.walk_packages(lenet5.__path__, prefix="lenet5.")
        if info.name != "lenet5._lenet5"
    ),
]


@pytest.fixture
def _doctest_environment(tmp_path, monkeypatch):
    """Examples run in a scratch folder, with a non-interactive matplotlib backend."""
    monkeypatch.chdir(tmp_path)
    try:
        import matplotlib
    except ImportError:
        pass
    else:
        matplotlib.use("Agg", force=True)
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.mark.usefixtures("_doctest_environment")
@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    for test in finder.find(module, name):
        runner.run(test, out=report.write)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, report.getvalue()


def public_names() -> dict[str, object]:
    """Every public function, class and method a user is pointed to."""
    import lenet5.datasets
    import lenet5.plot
    from lenet5 import _summary

    names: dict[str, object] = {}
    for module in (lenet5, lenet5.datasets, lenet5.plot, _summary):
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                names[f"{module.__name__}.{attr}"] = obj
    for cls in (lenet5.LeNet5, _summary.Summary):
        for attr, obj in vars(cls).items():
            if not attr.startswith("_") and inspect.isfunction(obj):
                names[f"{cls.__module__}.{cls.__name__}.{attr}"] = obj
    return names


PUBLIC = public_names()


def test_the_public_names_include_the_essentials():
    expected = [
        "lenet5.LeNet5",
        "lenet5._estimator.LeNet5.fit",
        "lenet5._estimator.LeNet5.partial_fit",
        "lenet5._estimator.LeNet5.predict",
        "lenet5._estimator.LeNet5.predict_proba",
        "lenet5._estimator.LeNet5.score",
        "lenet5._estimator.LeNet5.activations",
        "lenet5._estimator.LeNet5.summary",
        "lenet5._estimator.LeNet5.get_params",
        "lenet5._estimator.LeNet5.set_params",
        "lenet5.datasets.load_mnist",
        "lenet5.datasets.load_fashion_mnist",
        "lenet5.datasets.load_idx",
        "lenet5.plot.plot_history",
        "lenet5.plot.plot_kernels",
        "lenet5.plot.plot_feature_maps",
        "lenet5.plot.plot_confusion_matrix",
        "lenet5.plot.plot_misclassified",
        "lenet5._summary.Summary",
        "lenet5._summary.architecture_summary",
    ]
    assert [n for n in expected if n not in PUBLIC] == []


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_numpydoc_with_a_runnable_example(name):
    obj = PUBLIC[name]
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    summary_line = doc.splitlines()[0]
    assert summary_line.strip(), f"{name}: the docstring starts with an empty line"
    assert "\nExamples\n--------\n" in doc, f"{name} has no numpydoc Examples section"
    examples = doc.split("\nExamples\n--------\n", 1)[1]
    assert ">>> " in examples, f"{name}: the Examples section has no doctest"
    if not inspect.isfunction(obj):
        return
    parameters = [
        p
        for p in inspect.signature(obj).parameters.values()
        if p.name not in ("self", "cls") and p.kind is not p.VAR_KEYWORD
    ]
    if parameters:
        assert "\nParameters\n----------\n" in doc, f"{name} has no Parameters section"


def test_stub_matches_the_native_module(tmp_path):
    """mypy's stubtest compares python/lenet5/_lenet5.pyi with the compiled module: every
    name, signature, default and decorator (mypy is a test extra, so this runs in CI)."""
    command = [sys.executable, "-m", "mypy.stubtest", "lenet5._lenet5"]
    allowlist = ROOT / ".mypy-stubtest-allowlist"
    if allowlist.exists():
        command += ["--allowlist", str(allowlist)]
    env = dict(os.environ, MYPY_CACHE_DIR=str(tmp_path / "mypy-cache"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_is_typed():
    stub = Path(lenet5.__file__).with_name("_lenet5.pyi")
    assert stub.is_file()
    assert Path(lenet5.__file__).with_name("py.typed").is_file()
