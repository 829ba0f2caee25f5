"""``LeNet5.summary()``: the layers with their output shapes, parameters and connections.

The figures are counted here from the architecture (layer sizes, kernel sizes, the C3
connection table the core exports, the kind of pooling and of output layer), not read from
the native network, so that the tests can hold both against each other and against the
paper's numbers.

Counting follows the paper (LeCun et al., 1998, section II.B): a trainable parameter is a
weight or a bias; a connection is one input of one unit, the bias counting as an input.
A convolution reuses each of its weights at every output position, so its connections are
its parameters times the number of positions.
"""

from __future__ import annotations

import html
import sys
from typing import Any, NamedTuple

from . import _lenet5
from ._validation import check_bool, check_choice, check_int

__all__ = ["LayerSummary", "Summary", "architecture_summary"]


def session_shows_results() -> bool:
    """Whether the session shows the value of each line itself: IPython or Jupyter, or the
    interactive interpreter (``LeNet5.summary`` prints only where nothing else would)."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


#: Choices of the architecture hyperparameters, as the native core names them.
ACTIVATIONS = _lenet5.OPTIONS["activation"]
POOLINGS = _lenet5.OPTIONS["pooling"]
C3_CONNECTIONS = _lenet5.OPTIONS["c3"]
OUTPUTS = _lenet5.OPTIONS["output"]

#: The paper's Table I: for each S2 map (row), the C3 maps (columns) it feeds.
TABLE_I: tuple[str, ...] = _lenet5.TABLE_I

#: Number of RBF units / prototypes available (one per digit).
RBF_UNITS: int = _lenet5.RBF_UNITS

_ACTIVATION_TEXT = {"tanh": "scaled tanh", "relu": "ReLU"}


def c3_inputs(c3: str) -> list[int]:
    """Number of S2 maps feeding each of the 16 C3 maps.

    Examples
    --------
    >>> from lenet5._summary import c3_inputs
    >>> c3_inputs("table")
    [3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6]
    >>> sum(c3_inputs("full"))
    96
    """
    if c3 == "full":
        return [6] * 16
    return [sum(row[j] == "X" for row in TABLE_I) for j in range(16)]


class LayerSummary(NamedTuple):
    """One row of a :class:`Summary`.

    Attributes
    ----------
    name : str
        ``"input"``, ``"C1"``, ``"S2"``, ``"C3"``, ``"S4"``, ``"C5"``, ``"F6"`` or
        ``"output"``.
    output_shape : tuple of int
        Shape of the layer's output for one image: ``(maps, height, width)`` or ``(units,)``.
    params : int
        Trainable parameters (weights and biases).
    connections : int
        Connections, counted as in the paper (each input of each unit, bias included).
    description : str
        What the layer computes.

    Examples
    --------
    >>> from lenet5._summary import architecture_summary
    >>> c1 = architecture_summary()["C1"]
    >>> c1.output_shape, c1.params, c1.connections
    ((6, 28, 28), 156, 122304)
    """

    name: str
    output_shape: tuple[int, ...]
    params: int
    connections: int
    description: str


class Summary:
    """The table returned by :meth:`lenet5.LeNet5.summary`.

    Shown as text by ``print`` and in a console, as an HTML table in Jupyter. Rows can be
    looked up by layer name (``summary["C3"]``) or iterated.

    Attributes
    ----------
    layers : tuple of LayerSummary
        The rows, from ``input`` to ``output``.
    total_params : int
        Trainable parameters of the whole network.
    total_connections : int
        Connections of the whole network.
    fixed_params : int
        Parameters that are not trained (the RBF prototypes unless ``rbf_trainable``).
    n_classes : int
        Number of classes of the output layer.
    note : str
        A remark printed under the table (empty when there is none).

    Examples
    --------
    >>> from lenet5._summary import architecture_summary
    >>> s = architecture_summary(output="rbf")
    >>> s.total_params, s.total_connections, s.fixed_params
    (60000, 340908, 840)
    >>> [layer.name for layer in s]
    ['input', 'C1', 'S2', 'C3', 'S4', 'C5', 'F6', 'output']
    """

    def __init__(
        self,
        layers: tuple[LayerSummary, ...],
        *,
        n_classes: int,
        fixed_params: int = 0,
        title: str = "LeNet-5",
        note: str = "",
    ) -> None:
        self.layers = tuple(layers)
        self.n_classes = n_classes
        self.fixed_params = fixed_params
        self.title = title
        self.note = note
        self.total_params = sum(layer.params for layer in self.layers)
        self.total_connections = sum(layer.connections for layer in self.layers)

    def __iter__(self) -> Any:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerSummary:
        for layer in self.layers:
            if layer.name.lower() == str(name).lower():
                return layer
        names = ", ".join(layer.name for layer in self.layers)
        raise KeyError(f"no layer {name!r}; the layers are {names}")

    def _cells(self) -> tuple[list[str], list[list[str]], list[str]]:
        header = ["Layer", "Output shape", "Params", "Connections", "Description"]
        rows = [
            [
                layer.name,
                " x ".join(str(d) for d in layer.output_shape),
                f"{layer.params:,}",
                f"{layer.connections:,}",
                layer.description,
            ]
            for layer in self.layers
        ]
        total = ["Total", "", f"{self.total_params:,}", f"{self.total_connections:,}", ""]
        return header, rows, total

    def _footer(self) -> list[str]:
        lines = [f"Trainable parameters: {self.total_params:,}"]
        if self.fixed_params:
            lines.append(f"Fixed parameters: {self.fixed_params:,} (RBF prototypes)")
        if self.note:
            lines.append(self.note)
        return lines

    def __str__(self) -> str:
        header, rows, total = self._cells()
        table = [header, *rows, total]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        right = {2, 3}  # numbers are right-aligned

        def fmt(cells: list[str]) -> str:
            parts = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ]
            return "  ".join(parts).rstrip()

        rule = "  ".join("-" * w for w in widths)
        lines = [self.title, fmt(header), rule]
        lines += [fmt(r) for r in rows]
        lines += [rule, fmt(total), *self._footer()]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """The table as HTML (Jupyter calls this to display the summary)."""
        header, rows, total = self._cells()
        esc = html.escape
        right = {2, 3}

        def cell(tag: str, i: int, text: str) -> str:
            style = ' style="text-align: right"' if i in right else ' style="text-align: left"'
            return f"<{tag}{style}>{esc(text)}</{tag}>"

        out = [
            '<table class="lenet5-summary">',
            f"<caption>{esc(self.title)}</caption>",
            "<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
            "</thead>",
            "<tbody>",
        ]
        for r in rows:
            out.append("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>")
        out.append("</tbody>")
        out.append(
            "<tfoot><tr>"
            + "".join(cell("th", i, c) for i, c in enumerate(total))
            + "</tr></tfoot>"
        )
        out.append("</table>")
        out += [f"<p>{esc(line)}</p>" for line in self._footer()]
        return "\n".join(out)


def architecture_summary(
    n_classes: int = 10,
    *,
    activation: str = "tanh",
    pooling: str = "sub",
    c3: str = "table",
    output: str = "softmax",
    rbf_trainable: bool = False,
    title: str = "LeNet-5",
    note: str = "",
) -> Summary:
    """The summary of a LeNet-5 architecture, computed from its description.

    Parameters
    ----------
    n_classes : int, default=10
        Units of the output layer (at most 10 for ``output="rbf"``).
    activation : {"tanh", "relu"}, default="tanh"
    pooling : {"sub", "avg", "max"}, default="sub"
        ``"sub"`` has a trainable coefficient and bias per map; the others have none.
    c3 : {"table", "full"}, default="table"
    output : {"softmax", "rbf"}, default="softmax"
        ``"rbf"``: Euclidean RBF units, one weight per F6 unit and no bias, fixed (not
        trainable) unless ``rbf_trainable``.
    rbf_trainable : bool, default=False
    title, note : str
        Text shown above and under the table.

    Returns
    -------
    Summary

    Raises
    ------
    ValueError
        For a value outside the allowed ones, naming the parameter.

    Examples
    --------
    >>> from lenet5._summary import architecture_summary
    >>> s = architecture_summary()
    >>> s.total_params, s["C3"].params, s["C3"].connections
    (60850, 1516, 151600)
    >>> architecture_summary(pooling="max")["S2"].params
    0
    """
    k = check_int(n_classes, "n_classes", low=2)
    activation = check_choice(activation, "activation", ACTIVATIONS)
    pooling = check_choice(pooling, "pooling", POOLINGS)
    c3 = check_choice(c3, "c3", C3_CONNECTIONS)
    output = check_choice(output, "output", OUTPUTS)
    rbf_trainable = check_bool(rbf_trainable, "rbf_trainable")
    _check_rbf_classes(output, k)
    return _summary(k, activation, pooling, c3, output, rbf_trainable, title, note)


def _check_rbf_classes(output: str, k: int) -> None:
    if output == "rbf" and k > RBF_UNITS:
        raise ValueError(
            f"output='rbf' has {RBF_UNITS} prototypes and so at most {RBF_UNITS} classes; "
            f"got n_classes={k}"
        )


def _summary(
    k: int,
    activation: str,
    pooling: str,
    c3: str,
    output: str,
    rbf_trainable: bool,
    title: str,
    note: str = "",
) -> Summary:
    """:func:`architecture_summary` of values already checked."""
    act = _ACTIVATION_TEXT[activation]

    def conv(name: str, maps: int, side: int, inputs: list[int], text: str) -> LayerSummary:
        # one 5x5 kernel per connected input map plus one bias, per output map
        params = sum(25 * n + 1 for n in inputs)
        return LayerSummary(name, (maps, side, side), params, params * side * side, text)

    def pool(name: str, maps: int, side: int) -> LayerSummary:
        if pooling == "sub":
            params, per_unit = 2 * maps, 5  # 4 inputs and the bias
            text = f"2x2 trainable subsampling, {act}"
        else:
            params, per_unit = 0, 4
            text = "2x2 average pooling" if pooling == "avg" else "2x2 max pooling"
        return LayerSummary(name, (maps, side, side), params, maps * side * side * per_unit, text)

    def dense(name: str, n_in: int, n_out: int, text: str) -> LayerSummary:
        params = n_out * (n_in + 1)
        return LayerSummary(name, (n_out,), params, params, text)

    inputs = c3_inputs(c3)
    c3_text = "Table I (60 of 96 pairs)" if c3 == "table" else "all 96 pairs"
    layers = [
        LayerSummary("input", (1, 32, 32), 0, 0, "28x28 image padded to 32x32"),
        conv("C1", 6, 28, [1] * 6, f"5x5 convolution, 6 maps, {act}"),
        pool("S2", 6, 14),
        conv("C3", 16, 10, inputs, f"5x5 convolution, 16 maps, {c3_text}, {act}"),
        pool("S4", 16, 5),
        dense("C5", 16 * 5 * 5, 120, f"5x5 convolution, 120 maps (400 -> 120), {act}"),
        dense("F6", 120, 84, f"dense 120 -> 84, {act}"),
    ]
    fixed = 0
    if output == "softmax":
        layers.append(dense("output", 84, k, f"dense 84 -> {k}, softmax"))
    else:
        weights = k * 84  # one prototype of 84 values per class, no bias
        kind = "trainable" if rbf_trainable else "fixed"
        params = weights if rbf_trainable else 0
        fixed = 0 if rbf_trainable else weights
        text = f"Euclidean RBF, {k} {kind} prototypes"
        layers.append(LayerSummary("output", (k,), params, weights, text))
    return Summary(tuple(layers), n_classes=k, fixed_params=fixed, title=title, note=note)


def model_summary(model: Any, n_classes: int | None = None) -> Summary:
    """The summary of a :class:`~lenet5.LeNet5`: of its fitted network when there is one,
    else of the network its hyperparameters describe (``n_classes``, default 10)."""
    name = type(model).__name__
    keys = ("activation", "pooling", "c3", "output")
    net = model.__dict__.get("_net")
    if net is not None:
        # The network's own configuration: values the core accepted.
        config = net.config()
        k = int(config["n_classes"])
        if n_classes is not None and check_int(n_classes, "n_classes", low=2) != k:
            raise ValueError(
                f"n_classes={n_classes!r} differs from the {k} classes the model was fitted with"
            )
        arch = [config[key] for key in keys]
        trainable = bool(config.get("rbf_trainable", False))
        return _summary(k, *arch, trainable, title=f"{name} (fitted, {k} classes)")
    # The hyperparameters resolved (presets, library defaults for None) and checked, with
    # a ValueError naming a bad one, as fit would.
    from ._params import resolve

    p = resolve(model)
    arch = [getattr(p, key) for key in keys]
    if n_classes is None:
        k = 10
        note = "Not fitted: 10 classes assumed (pass n_classes= to change)."
    else:
        k = check_int(n_classes, "n_classes", low=2)
        note = "Not fitted: the network fit would build for these hyperparameters."
    _check_rbf_classes(p.output, k)
    title = f"{name} (not fitted, {k} classes)"
    return _summary(k, *arch, p.rbf_trainable, title=title, note=note)
