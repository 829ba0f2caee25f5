"""Sphinx configuration of lenet5's documentation.

Build (what CI runs; every warning is an error, and ``-n`` reports every cross-reference
that does not resolve)::

    pip install '.[docs]'
    sphinx-build -W --keep-going -n -b html docs docs/_build/html

The API reference is generated from the numpydoc docstrings of the installed package, so
the pages describe the code that ``import lenet5`` loads.
"""

from __future__ import annotations

import inspect
import re

import lenet5
import lenet5.datasets
import lenet5.plot
from sphinx.util import logging

project = "lenet5"
author = "the lenet5 authors"
copyright = "2026, the lenet5 authors"
version = release = lenet5.__version__

extensions = ["sphinx.ext.autodoc", "numpydoc", "myst_parser"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"lenet5 {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -n: every reference must resolve. Names of other projects (numpy, Python's own types,
# scikit-learn, onnx, matplotlib) have no inventory here (the build is offline), so only
# those are exempt; a reference to a lenet5 name that does not exist stays an error.
_EXTERNAL = r"(numpy|np|sklearn|onnx|matplotlib|dask|PIL|os|pathlib|typing|collections)\b.*"
_BUILTIN = (
    r"(int|float|str|bool|bytes|dict|list|tuple|None|object|callable|Callable|Any|"
    r"array-like|array_like|ndarray|sequence|iterable|mapping|path-like|optional|"
    r"default|of|or|shape|dtype|uint8|float32|float64|int64|bool_|"
    r"[A-Z][A-Za-z]*Error|[A-Z][A-Za-z]*Warning|Exception|KeyboardInterrupt)"
)
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (r"py:.*", _BUILTIN),
]


def _public_names() -> list[str]:
    """Every name the package offers its users, as the reference must list it."""
    names = []
    for module in (lenet5, lenet5.datasets, lenet5.plot):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or name == "__version__":
                continue
            names.append(f"{module.__name__}.{name}")
    for name, _ in inspect.getmembers(lenet5.LeNet5):
        if not name.startswith("_"):
            names.append(f"lenet5.LeNet5.{name}")
    return names


def _check_every_public_name(app, env) -> None:
    """Warn (an error under -W) for each public name the reference does not document."""
    objects = env.get_domain("py").objects
    documented = {name for name, entry in objects.items() if not entry.aliased}
    log = logging.getLogger("lenet5.docs")
    for name in _public_names():
        if name not in documented:
            log.warning("public name %s is not in the API reference (docs/api.md)", name)
    for name in documented:
        if name.startswith("lenet5.") and re.search(r"\._[a-z]", name):
            log.warning("the API reference documents a private name: %s", name)


def setup(app):
    app.connect("env-check-consistency", _check_every_public_name)
