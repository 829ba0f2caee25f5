"""ONNX export: the graph onnxruntime runs gives the probabilities of predict_proba."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from lenet5 import LeNet5, NotFittedError, _lenet5
from lenet5._onnx import to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5


def session(source) -> ort.InferenceSession:
    """An onnxruntime session of a file path or a ModelProto (single-threaded)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if not isinstance(source, (str, bytes)):
        source = source.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(source, images_uint8: np.ndarray) -> np.ndarray:
    """The graph's probabilities for uint8 images (n, h, w), fed as x / 255 (n, 1, h, w)."""
    x = (images_uint8.astype(np.float32) / np.float32(255))[:, np.newaxis]
    (proba,) = session(source).run(["probabilities"], {"images": x})
    return proba


def train_native(x, y, **architecture):
    """A native network trained for a few epochs (for outputs the estimator may lack)."""
    net = _lenet5.Network(10, seed=0, **architecture)
    net.reset_optimizer("adam", learning_rate=1e-3, seed=0)
    data = _lenet5.Dataset(x, y.astype(np.int64))
    for _ in range(3):
        net.train_epoch(data, 32, n_jobs=1)
    return net


@pytest.fixture(scope="module")
def variants(mnist, fitted_small):
    """Fitted models of other architectures whose probabilities are far from uniform."""
    (x, y), _ = mnist
    trained = {"optimizer": "adam", "learning_rate": 1e-3, "random_state": 0, "verbose": 0}
    models = {
        "relu-max-full": LeNet5(epochs=3, activation="relu", pooling="max", c3="full", **trained),
        "tanh-avg": LeNet5(epochs=3, pooling="avg", **trained),
    }
    for model in models.values():
        model.fit(x, y)
    # ReLU after the trainable subsampling learns little in a few epochs; the export is
    # checked with the default model's weights, output layer sharpened.
    relu_sub = LeNet5(activation="relu", epochs=1, random_state=0, verbose=0)
    relu_sub.fit(x[:200], y[:200])
    weights = fitted_small.get_weights()
    weights["output.weight"] *= 10
    relu_sub.set_weights(weights)
    models["relu-sub"] = relu_sub
    try:
        models["rbf"] = LeNet5(output="rbf", epochs=3, **trained).fit(x, y)
    except ValueError:  # the estimator does not offer the RBF output: export the network
        models["rbf"] = train_native(x, y, output="rbf")
    return models


# ---------------------------------------------------------------- faithfulness


def test_default_model_matches_predict_proba(fitted_small, mnist, tmp_path):
    _, (xt, _) = mnist
    path = tmp_path / "lenet5.onnx"
    returned = fitted_small.to_onnx(path)
    assert isinstance(returned, onnx.ModelProto)
    onnx.checker.check_model(str(path), full_check=True)
    expected = fitted_small.predict_proba(xt)
    got = run(str(path), xt)
    assert got.shape == expected.shape == (1000, 10)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(got.argmax(axis=1), fitted_small.predict(xt))
    # A trained model: the comparison is not between two near-uniform outputs.
    assert expected.max(axis=1).mean() > 0.7


@pytest.mark.parametrize("name", ["relu-max-full", "tanh-avg", "relu-sub", "rbf"])
def test_variants_match_predict_proba(variants, mnist, name):
    _, (xt, _) = mnist
    model = variants[name]
    proto = to_onnx(model)  # a LeNet5, or a native Network where the estimator lacks it
    onnx.checker.check_model(proto, full_check=True)
    expected = model.predict_proba(xt)
    np.testing.assert_allclose(run(proto, xt), expected, rtol=0, atol=TOLERANCE)
    assert expected.max(axis=1).mean() > 0.5


def test_padded_32x32_input(fitted_small, mnist):
    _, (xt, _) = mnist
    padded = np.pad(xt[:200], ((0, 0), (2, 2), (2, 2)))
    proto = fitted_small.to_onnx(image_size=32)
    shape = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in shape] == ["N", 1, 32, 32]
    np.testing.assert_allclose(
        run(proto, padded), fitted_small.predict_proba(xt[:200]), rtol=0, atol=TOLERANCE
    )


def test_every_layer_matches_activations(fitted_small, mnist):
    """The intermediate tensors carry the names and values of LeNet5.activations."""
    _, (xt, _) = mnist
    proto = fitted_small.to_onnx()
    names = ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    for name in names:
        proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    x = (xt[:50].astype(np.float32) / 255)[:, np.newaxis]
    outputs = session(proto).run(names, {"images": x})
    expected = fitted_small.activations(xt[:50])
    for name, got in zip(names, outputs):
        assert got.shape == expected[name].shape, name
        np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-4, err_msg=name)


def test_any_batch_size(fitted_small, mnist):
    _, (xt, _) = mnist
    proto = fitted_small.to_onnx()
    for n in (1, 7):
        np.testing.assert_allclose(
            run(proto, xt[:n]), fitted_small.predict_proba(xt[:n]), rtol=0, atol=TOLERANCE
        )


# ---------------------------------------------------------------- the graph


def ops(proto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


def initializer(proto, name: str) -> np.ndarray:
    (tensor,) = [t for t in proto.graph.initializer if t.name == name]
    return onnx.numpy_helper.to_array(tensor)


def test_graph_is_the_paper_network(fitted_small):
    proto = fitted_small.to_onnx()
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 13)]
    assert proto.ir_version == 7
    assert proto.graph.input[0].name == "images"
    assert proto.graph.output[0].name == "probabilities"
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == ["N", 10]
    kinds = ops(proto)
    assert kinds[0] == "Pad"
    assert kinds.count("Conv") == 5  # C1, S2, C3, S4, C5
    assert kinds.count("Gemm") == 2
    assert kinds[-1] == "Softmax"
    # Trainable subsampling: depthwise 2x2 stride-2 convolutions with coef and bias.
    weights = fitted_small.get_weights()
    depthwise = [
        n for n in proto.graph.node if n.op_type == "Conv" and n.input[1].endswith(".kernel")
    ]
    assert [n.input[1] for n in depthwise] == ["s2.kernel", "s4.kernel"]
    for node, maps in zip(depthwise, (6, 16)):
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["group"] == maps
        assert attributes["strides"] == [2, 2]
        prefix = node.input[1].split(".")[0]
        kernel = initializer(proto, node.input[1])
        assert kernel.shape == (maps, 1, 2, 2)
        np.testing.assert_array_equal(
            kernel, np.broadcast_to(weights[f"{prefix}.weight"][:, None, None, None], kernel.shape)
        )
        np.testing.assert_array_equal(initializer(proto, node.input[2]), weights[f"{prefix}.bias"])
    # C3 keeps Table I: the exported weights are the model's, zeros included.
    c3 = initializer(proto, "c3.weight")
    np.testing.assert_array_equal(c3, weights["c3.weight"])
    assert (np.abs(c3).sum(axis=(2, 3)) == 0).sum() == 96 - 60


def test_scaled_tanh_count(fitted_small):
    # C1, S2, C3, S4, C5 and F6 each end with the scaled tanh (Mul, Tanh, Mul).
    assert ops(fitted_small.to_onnx()).count("Tanh") == 6


def test_other_layers_use_standard_operators(variants):
    relu = variants["relu-max-full"].to_onnx()
    assert ops(relu).count("MaxPool") == 2
    assert ops(relu).count("Relu") == 4  # C1, C3, C5, F6: max pooling has no activation
    assert "Tanh" not in ops(relu)
    avg = variants["tanh-avg"].to_onnx()
    assert ops(avg).count("AveragePool") == 2
    assert ops(avg).count("Tanh") == 4
    # Trainable subsampling with ReLU: the activation follows S2 and S4 too.
    assert ops(variants["relu-sub"].to_onnx()).count("Relu") == 6


def test_rbf_graph_uses_penalties(variants):
    model = variants["rbf"]
    proto = to_onnx(model)
    assert "ReduceSumSquare" in ops(proto)
    assert "Gemm" in ops(proto)  # F6 only
    assert ops(proto).count("Gemm") == 1
    assert ops(proto)[-2:] == ["Neg", "Softmax"]
    np.testing.assert_array_equal(
        initializer(proto, "output.weight")[0], model.get_weights()["output.weight"]
    )


def test_metadata_names_the_classes(mnist, tmp_path):
    (x, y), (xt, _) = mnist
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x[:500], names[y[:500]])
    proto = model.to_onnx(tmp_path / "named.onnx")
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == model.classes_.tolist()
    assert json.loads(props["architecture"])["pooling"] == "sub"
    assert props["lenet5_version"] == _lenet5.__version__
    assert "[0, 1]" in props["input"]
    loaded = onnx.load(str(tmp_path / "named.onnx"))
    assert {p.key: p.value for p in loaded.metadata_props} == props
    columns = json.loads(props["classes"])
    picked = [columns[i] for i in run(str(tmp_path / "named.onnx"), xt[:20]).argmax(axis=1)]
    assert picked == model.predict(xt[:20]).tolist()


# ---------------------------------------------------------------- errors and files


def test_unfitted_model_is_refused():
    with pytest.raises(NotFittedError):
        LeNet5().to_onnx()


@pytest.mark.parametrize("size", [27, 64, "28", True])
def test_bad_image_size(fitted_small, size):
    with pytest.raises(ValueError, match="image_size must be 28 or 32"):
        fitted_small.to_onnx(image_size=size)


def test_not_a_model():
    with pytest.raises(TypeError, match=r"fitted lenet5\.LeNet5"):
        to_onnx(object())


def test_missing_onnx_package_is_a_clear_import_error(fitted_small, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes "import onnx" fail
    with pytest.raises(ImportError, match=r"pip install 'lenet5-rs\[onnx\]'"):
        fitted_small.to_onnx()


def test_file_is_replaced_atomically(fitted_small, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    fitted_small.to_onnx(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert onnx.load(str(path)).graph.output[0].name == "probabilities"
    with pytest.raises(FileNotFoundError):
        fitted_small.to_onnx(tmp_path / "no" / "such" / "folder.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_write_errors_carry_errno_and_filename(fitted_small, tmp_path):
    """The native atomic writer: an OSError subclass by errno, naming the file; the
    temporary file is removed and a stale one of a killed export is swept."""
    import errno

    taken = tmp_path / "taken.onnx"
    taken.mkdir()
    (taken / "inside").write_bytes(b"x")
    with pytest.raises(IsADirectoryError, match="cannot write ONNX file") as info:
        fitted_small.to_onnx(taken)
    assert info.value.errno == errno.EISDIR
    assert info.value.filename == str(taken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.onnx"]
    stale = tmp_path / ".m.onnx.lenet5-save-999999-0.tmp"
    stale.write_bytes(b"partial")
    fitted_small.to_onnx(tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "taken.onnx"]


def test_constants_are_the_papers_in_float32(fitted_small):
    """The graph's scaled tanh and pixel mapping are the paper's values, rounded to
    float32 as the network computes with them."""
    proto = to_onnx(fitted_small)
    values = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    expected = {
        "input.scale": np.float32(1.275),
        "input.offset": np.float32(-0.1),
        "c1.tanh_a": np.float32(1.7159),
        "c1.tanh_s": np.float32(2.0 / 3.0),
    }
    for name, value in expected.items():
        assert values[name].dtype == np.float32, name
        assert values[name].tobytes() == value.tobytes(), (name, values[name], value)
