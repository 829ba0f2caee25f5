"""model.summary(): per-layer shapes, parameters and connections; HTML and repr."""

from __future__ import annotations

import html.parser
import itertools

import numpy as np
import pytest
from lenet5 import LeNet5, _lenet5
from lenet5._summary import TABLE_I, Summary, architecture_summary, c3_inputs

LAYERS = ["input", "C1", "S2", "C3", "S4", "C5", "F6", "output"]

# The paper's figures (section II.B), counted by hand for the default network, 10 classes:
# name: (output shape, trainable parameters, connections)
PAPER = {
    "input": ((1, 32, 32), 0, 0),
    "C1": ((6, 28, 28), 156, 122_304),  # 6 * (25 + 1); 28 * 28 * 156
    "S2": ((6, 14, 14), 12, 5_880),  # 6 * 2; 14 * 14 * 6 * (4 + 1)
    "C3": ((16, 10, 10), 1_516, 151_600),  # 6*76 + 9*101 + 151; 10 * 10 * 1516
    "S4": ((16, 5, 5), 32, 2_000),  # 16 * 2; 5 * 5 * 16 * (4 + 1)
    "C5": ((120,), 48_120, 48_120),  # 120 * (400 + 1)
    "F6": ((84,), 10_164, 10_164),  # 84 * (120 + 1)
    "output": ((10,), 850, 850),  # 10 * (84 + 1)
}


def rows(summary: Summary) -> dict:
    return {r.name: (r.output_shape, r.params, r.connections) for r in summary}


# ---------------------------------------------------------------- the default network


def test_default_matches_the_paper_layer_by_layer():
    s = LeNet5().summary()
    assert [r.name for r in s] == LAYERS
    assert rows(s) == PAPER
    assert s.total_params == 60_850
    assert s.total_connections == 340_918
    assert s.fixed_params == 0


def test_paper_preset_with_rbf_output_gives_the_papers_totals():
    # "LeNet-5 ... 340,908 connections ... 60,000 trainable parameters"
    s = architecture_summary(output="rbf")
    assert s["output"].params == 0
    assert s["output"].connections == 840  # 10 units x 84 inputs, no bias
    assert s.total_params == 60_000
    assert s.total_connections == 340_908
    assert s.fixed_params == 840


# ---------------------------------------------------------------- variants, by hand


def test_c3_full_connects_all_96_pairs():
    s = architecture_summary(c3="full")
    assert s["C3"].params == 16 * (6 * 25 + 1) == 2_416
    assert s["C3"].connections == 10 * 10 * 2_416
    assert s.total_params == 60_850 - 1_516 + 2_416


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_parameter_free_pooling(pooling):
    s = architecture_summary(pooling=pooling)
    assert s["S2"].params == 0
    assert s["S4"].params == 0
    assert s["S2"].connections == 14 * 14 * 6 * 4  # no bias input
    assert s["S4"].connections == 5 * 5 * 16 * 4
    assert s.total_params == 60_850 - 12 - 32
    assert {"avg": "average", "max": "max"}[pooling] in s["S2"].description


def test_rbf_trainable_counts_the_prototypes():
    s = architecture_summary(output="rbf", rbf_trainable=True)
    assert s["output"].params == 840
    assert s.fixed_params == 0
    assert s.total_params == 60_840


@pytest.mark.parametrize(("k", "softmax", "rbf"), [(2, 170, 168), (7, 595, 588), (10, 850, 840)])
def test_n_classes_changes_the_output_layer(k, softmax, rbf):
    assert architecture_summary(k)["output"].params == softmax
    assert architecture_summary(k)["output"].output_shape == (k,)
    s = architecture_summary(k, output="rbf", rbf_trainable=True)
    assert s["output"].params == rbf
    assert architecture_summary(k, output="rbf")["output"].connections == rbf
    # every other layer is unchanged
    assert rows(architecture_summary(k))["F6"] == PAPER["F6"]


def test_activation_changes_no_count():
    assert rows(architecture_summary(activation="relu")) == PAPER
    assert "ReLU" in architecture_summary(activation="relu")["C1"].description


def test_table_i_has_60_connections():
    assert c3_inputs("table") == [3] * 6 + [4] * 9 + [6]
    assert sum(c3_inputs("table")) == 60


# ---------------------------------------------------------------- against the native core

ARCHITECTURES = [
    dict(zip(("activation", "pooling", "c3", "output", "rbf_trainable"), combo))
    for combo in itertools.product(
        ("tanh", "relu"),
        ("sub", "avg", "max"),
        ("table", "full"),
        ("softmax", "rbf"),
        (False, True),
    )
    if not (combo[3] == "softmax" and combo[4])
]


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: "-".join(map(str, a.values())))
@pytest.mark.parametrize("k", [2, 7, 10])
def test_totals_equal_native_n_params(arch, k):
    s = architecture_summary(k, **arch)
    net = _lenet5.Network(k, **arch)
    assert s.total_params == net.n_params


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: "-".join(map(str, a.values())))
def test_per_layer_params_equal_native_weights(arch):
    """Each layer's count equals its tensors in get_weights (C3: only Table I's kernels;
    fixed RBF prototypes: none)."""
    net = _lenet5.Network(10, **arch)
    weights = net.get_weights()
    s = architecture_summary(10, **arch)
    for name in LAYERS[1:]:
        prefix = name.lower() + "."
        tensors = {k: v for k, v in weights.items() if k.startswith(prefix)}
        if name == "C3":
            kernels = tensors["c3.weight"]
            connected = np.any(kernels != 0, axis=(2, 3)).sum()
            native = int(connected) * 25 + tensors["c3.bias"].size
        elif name == "output" and arch["output"] == "rbf" and not arch["rbf_trainable"]:
            native = 0
            assert tensors["output.weight"].size == s.fixed_params
        else:
            native = sum(v.size for v in tensors.values())
        assert s[name].params == native, name


def test_table_i_matches_the_native_zero_pattern():
    kernels = _lenet5.Network(10, seed=3).get_weights()["c3.weight"]
    connected = np.any(kernels != 0, axis=(2, 3))  # (16 C3 maps, 6 S2 maps)
    expected = np.array([[ch == "X" for ch in row] for row in TABLE_I])  # (6, 16)
    np.testing.assert_array_equal(connected.T, expected)


# ---------------------------------------------------------------- before and after fit


def test_before_fit_uses_hyperparameters_and_stated_classes():
    model = LeNet5(pooling="avg", c3="full")
    s = model.summary()
    assert s.n_classes == 10
    assert s["S2"].params == 0
    assert s["C3"].params == 2_416
    assert "10 classes assumed" in str(s)
    assert model.summary(n_classes=3)["output"].params == 3 * 85
    assert not hasattr(model, "classes_")  # summary does not fit


def test_after_fit_describes_the_fitted_network(small, make_model):
    (x, y), _ = small
    keep = y < 3
    model = make_model(pooling="max").fit(x[keep], y[keep])
    s = model.summary()
    assert s.n_classes == 3
    assert s["output"].params == 3 * 85
    assert s.total_params == model.n_params_
    assert "fitted" in str(s)
    assert "assumed" not in str(s)
    assert model.summary(n_classes=3).total_params == s.total_params
    with pytest.raises(ValueError, match="n_classes"):
        model.summary(n_classes=10)
    # changing a hyperparameter after fit does not change the fitted network
    model.set_params(pooling="sub")
    assert model.summary()["S2"].params == 0


def test_presets_are_resolved_before_fit():
    paper = LeNet5(preset="paper").summary()
    assert (paper.total_params, paper.total_connections) == (60_000, 340_908)
    assert paper.fixed_params == 840
    modern = LeNet5(preset="modern").summary()
    assert modern["S2"].params == 0
    assert modern["C3"].params == 2_416
    assert "ReLU" in modern["C1"].description
    # explicit keywords override the preset
    assert LeNet5(preset="paper", output="softmax").summary().total_params == 60_850


def test_fitted_rbf_model(small, make_model):
    (x, y), _ = small
    model = make_model(output="rbf", batch_size=32).fit(x[:200], y[:200])
    s = model.summary()
    assert s.total_params == model.n_params_ == 60_000
    assert s.total_connections == 340_908


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"pooling": "mean"}, "pooling"),
        ({"c3": "all"}, "c3"),
        ({"activation": "sigmoid"}, "activation"),
        ({"output": "svm"}, "output"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_parameter(params, name):
    with pytest.raises(ValueError, match=name):
        LeNet5(**params).summary()


def test_bad_n_classes():
    with pytest.raises(ValueError, match="n_classes"):
        LeNet5().summary(n_classes=1)
    with pytest.raises(ValueError, match="at most 10"):
        architecture_summary(11, output="rbf")


# ---------------------------------------------------------------- text, HTML, repr


def test_text_table():
    text = str(LeNet5().summary())
    lines = text.splitlines()
    assert lines[0] == "LeNet5 (not fitted, 10 classes)"
    assert lines[1].split()[:2] == ["Layer", "Output"]
    for name, (shape, params, connections) in PAPER.items():
        line = next(ln for ln in lines if ln.split()[0] == name)
        assert f"{params:,}" in line.split()
        assert f"{connections:,}" in line.split()
        assert " x ".join(map(str, shape)) in line
    total = next(ln for ln in lines if ln.startswith("Total"))
    assert total.split() == ["Total", "60,850", "340,918"]
    assert repr(LeNet5().summary()) == text


def test_rows_by_name_and_errors():
    s = architecture_summary()
    assert s["c3"] == s["C3"]
    assert len(s) == 8
    with pytest.raises(KeyError, match="C1"):
        s["C7"]


class _TableParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.rows: list[list[str]] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("thead", "tbody", "tfoot"):
            self.sections.append(tag)

    def handle_endtag(self, tag):
        assert self.stack, tag
        assert self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            self.rows[-1].append(data)


def parse_table(markup: str) -> _TableParser:
    parser = _TableParser()
    parser.feed(markup)
    parser.close()
    assert parser.stack == []  # every tag closed, properly nested
    return parser


def test_summary_html_table():
    parsed = parse_table(LeNet5().summary()._repr_html_())
    assert parsed.sections == ["thead", "tbody", "tfoot"]
    header, *body, total = parsed.rows
    assert header[:4] == ["Layer", "Output shape", "Params", "Connections"]
    assert [r[0] for r in body] == LAYERS
    assert [r[2] for r in body] == [f"{PAPER[n][1]:,}" for n in LAYERS]
    assert [r[3] for r in body] == [f"{PAPER[n][2]:,}" for n in LAYERS]
    assert total == ["Total", "60,850", "340,918"]


def test_model_repr_html_shows_repr_and_table():
    model = LeNet5(c3="full", epochs=3)
    markup = model._repr_html_()
    parse_table(markup)
    assert "LeNet5(epochs=3, c3=&#x27;full&#x27;)" in markup
    assert "2,416" in markup
    # hyperparameters that describe no network still render (the message instead)
    bad = LeNet5(pooling="<b>")._repr_html_()
    parse_table(bad)
    assert "pooling must be one of" in bad
    assert "<b>" not in bad


def test_repr_shows_only_non_default_hyperparameters():
    assert repr(LeNet5()) == "LeNet5()"
    assert repr(LeNet5(momentum=0.9, verbose=1)) == "LeNet5()"  # defaults given explicitly
    assert repr(LeNet5(pooling="max", epochs=3)) == "LeNet5(epochs=3, pooling='max')"


def test_repr_matches_scikit_learn_changed_only_style():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone

    model = LeNet5(learning_rate=0.01, c3="full")
    assert repr(clone(model)) == repr(model) == "LeNet5(learning_rate=0.01, c3='full')"
    assert sklearn.get_config()["print_changed_only"] is True


def test_table_i_is_the_papers():
    """The table the core exports, against Table I of LeCun et al. (1998) as printed."""
    printed = (
        "X...XXX..XXXX.XX",
        "XX...XXX..XXXX.X",
        "XXX...XXX..X.XXX",
        ".XXX..XXXX..X.XX",
        "..XXX..XXXX.XX.X",
        "...XXX..XXXX.XXX",
    )
    assert tuple(TABLE_I) == printed
    assert sum(c3_inputs("table")) == 60
