"""Where output goes: the progress bar in a terminal, one line per epoch elsewhere, no
tqdm warning in Jupyter without ipywidgets, and ``summary()`` printing in scripts only."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import nbclient
import nbformat
import pytest
from lenet5 import LeNet5
from test_notebook import _kernel_spec


def test_verbose_1_prints_one_line_per_epoch_when_not_a_terminal(small, make_model, capsys):
    (x, y), _ = small
    make_model(epochs=2, verbose=1).fit(x, y)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert all(", lr " in line and line.endswith(" img/s") for line in lines)
    assert "\r" not in err


def test_command_line_logs_one_line_per_epoch_to_a_pipe():
    result = subprocess.run(
        [sys.executable, "-m", "lenet5", "train", "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stderr.splitlines() if line.startswith("Epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert "\r" not in result.stderr


# ---------------------------------------------------------------- summary()


def _python(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def test_summary_prints_in_a_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("from lenet5 import LeNet5\nLeNet5().summary()\n")
    result = _python(str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("LeNet5 (not fitted, 10 classes)") == 1
    assert "122,304" in result.stdout


def test_summary_shows_once_in_the_interactive_interpreter():
    """The console echoes the returned table; summary() itself must not print it too."""
    result = _python("-i", "-q", stdin="from lenet5 import LeNet5\nLeNet5().summary()\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("LeNet5 (not fitted, 10 classes)") == 1


def test_summary_print_fn(capsys):
    seen: list[str] = []
    table = LeNet5().summary(print_fn=seen.append)
    assert seen == [str(table)]
    assert capsys.readouterr().out == ""
    with pytest.raises(TypeError, match="print_fn must be a callable"):
        LeNet5().summary(print_fn="print")


# ---------------------------------------------------------------- Jupyter


def test_notebook_without_ipywidgets_has_a_text_bar_and_no_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    kernel = _kernel_spec(tmp_path / "jupyter")
    cells = [
        "import warnings\nwarnings.simplefilter('always')\nimport lenet5",
        textwrap.dedent(
            """\
            from lenet5.datasets import load_mnist
            (x, y), _ = load_mnist()
            model = lenet5.LeNet5(epochs=1, random_state=0, n_jobs=1).fit(x[:200], y[:200])
            """
        ),
        "model.summary()",
        "table = model.summary()",
        # control: tqdm.auto itself does warn in this kernel when ipywidgets is absent
        "import importlib, tqdm.autonotebook\nimportlib.reload(tqdm.autonotebook);",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    imported, fitted, shown, assigned, control = nb.cells

    def streams(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    assert imported.outputs == []
    has_widgets = importlib.util.find_spec("ipywidgets") is not None
    assert "IProgress" not in streams(fitted)
    assert "Warning" not in streams(fitted)
    if not has_widgets:
        assert "Epoch 1/1" in streams(fitted)
        assert "200/200" in streams(fitted)  # the text bar, redrawn in the cell
        assert "IProgress" in streams(control)
    # the table renders once, as HTML, and is not printed as well
    results = [o for o in shown.outputs if o.output_type == "execute_result"]
    assert len(results) == 1
    assert "<table" in results[0]["data"]["text/html"]
    assert streams(shown) == ""
    assert assigned.outputs == []
