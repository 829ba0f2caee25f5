"""examples/quickstart.ipynb: stored without outputs, runs top to bottom in a fresh kernel."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ipykernel  # noqa: F401  (the kernel the notebook runs in; a test extra)
import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"

#: Seconds the whole run may take (kernel start, training, rendering) before failing; it
#: takes well under half a minute.
TIMEOUT = 300


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has outputs"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count"
        assert not cell.metadata.get("execution"), f"cell {cell.id} has execution metadata"
    assert "widgets" not in nb.metadata


def _kernel_spec(folder: Path) -> str:
    """A kernel spec running this interpreter (the one lenet5 is installed in), whatever
    ``python`` means on PATH."""
    name = "lenet5-test"
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lenet5 tests",
                "language": "python",
            }
        )
    )
    return name


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    kernel = _kernel_spec(tmp_path / "jupyter")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []

    def text(cell) -> str:
        return "".join(
            o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs
        )

    def html(cell) -> str:
        return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)

    # the summary renders as an HTML table with the paper's figures
    summary = next(c for c in code if "model.summary()" in c.source)
    assert "<table" in html(summary)
    assert "122,304" in html(summary)
    # training printed one line per epoch and the fitted model shows its summary
    fit = next(c for c in code if "model.fit(" in c.source)
    assert "Epoch 1/" in text(fit)
    assert "LeNet5(" in html(fit)
    assert "<table" in html(fit)
    score = next(c for c in code if "test accuracy" in c.source)
    accuracy = float(text(score).split("test accuracy:")[1].split()[0])
    assert accuracy > 0.85
    # early stopping ended training before the 40 epochs and kept an earlier best epoch
    best, _, trained = text(score).split("best epoch:")[1].split()[:3]
    assert int(best) < int(trained) < 40
    # each plot cell shows exactly one figure (the trailing ';' avoids a second copy)
    plots = [c for c in code if "plot.plot_" in c.source]
    assert len(plots) >= 6
    for cell in plots:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, cell.source
    assert seconds < TIMEOUT
