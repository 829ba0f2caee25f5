"""Export of a fitted LeNet-5 as a standard ONNX graph (``LeNet5.to_onnx``).

Needs the ``onnx`` package (``pip install 'lenet5-rs[onnx]'``); running the graph needs a
runtime such as ``onnxruntime``, which this module never imports.

The graph
---------
Input ``images``: float32 pixels in [0, 1] (0 = background, 1 = full ink, as MNIST after
``x / 255``), shape ``(N, 1, 28, 28)`` (default) or ``(N, 1, 32, 32)`` with
``image_size=32``; ``N`` is free. The graph itself does everything the network does
to them:

- 28x28 input: ``Pad`` by 2 on every side with 0 (the background), giving 32x32;
- the pixel mapping ``-0.1 + 1.275 * v`` (``Mul``, ``Add``);
- C1, C3 and C5 as ``Conv`` (C3 with the weights outside the paper's Table I exactly 0,
  so the graph has the same connections as the network);
- the scaled tanh ``1.7159 * tanh(2a/3)`` as ``Mul``, ``Tanh``, ``Mul``, or ``Relu``;
- S2 and S4: the trainable subsampling as a depthwise 2x2 stride-2 ``Conv``
  (``group`` = maps, every weight of map c equal to its coefficient, its bias the map's
  bias) followed by the activation, or ``AveragePool`` / ``MaxPool`` (2x2, stride 2,
  no activation);
- F6 as ``Gemm`` and the activation;
- softmax output: ``Gemm`` (the logits, tensor ``output``) then ``Softmax``;
  RBF output: the penalties ``sum_j (f6_j - w_ij)^2`` (tensor ``output``) as ``Sub`` of
  the broadcast prototypes then ``ReduceSumSquare``, then ``Softmax`` of their negation,
  as ``predict_proba`` does.

Output ``probabilities``: float32 ``(N, n_classes)``, columns in the order of the
model's ``classes_``. The intermediate tensors carry the names of
:meth:`LeNet5.activations` (``c1``, ``s2``, ``c3``, ``s4``, ``c5``, ``f6``, ``output``).
The model's ``metadata_props`` hold ``classes`` (a JSON list), ``architecture`` (JSON),
``input`` (this description in one line) and ``lenet5_version``.

Opset 13 (ONNX IR version 7), so that runtimes of the last years load it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from . import _lenet5

__all__ = ["OPSET", "to_onnx"]

#: The ONNX operator set the graph is written for.
OPSET = 13
#: ONNX IR version matching OPSET (older runtimes refuse newer IR versions).
IR_VERSION = 7

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"

# Scaled tanh f(a) = A tanh(S a) and the pixel mapping v -> BACKGROUND + INK_RANGE * v:
# the native core's float32 constants (as Python floats), so the graph computes with the
# very values the network does.
TANH_A = _lenet5.TANH_A
TANH_S = _lenet5.TANH_S
BACKGROUND = _lenet5.BACKGROUND
INK_RANGE = _lenet5.INK_RANGE

_INPUT_DOC = "float32 pixels in [0, 1] (0 background, 1 ink), shape (N, 1, {size}, {size}){pad}"


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ImportError(
            "to_onnx needs the onnx package; install it with: "
            f"pip install 'lenet5-rs[onnx]' ({err})"
        ) from None
    return onnx


def _network_of(model: Any) -> tuple[Any, list[Any]]:
    """The native network and the class labels of a fitted LeNet5 (or a bare Network)."""
    if isinstance(model, _lenet5.Network):
        return model, list(range(int(model.n_classes)))
    fitted_net = getattr(model, "_fitted_net", None)
    if fitted_net is None:
        raise TypeError(f"to_onnx exports a fitted lenet5.LeNet5; got {type(model).__name__}")
    net = fitted_net()  # NotFittedError when not fitted
    return net, np.asarray(model.classes_).tolist()


class _Graph:
    """Collects nodes and initialisers with unique names."""

    def __init__(self, onnx: Any) -> None:
        self.helper = onnx.helper
        self.numpy_helper = onnx.numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = output if output is not None else f"t{self._count}_{op.lower()}"
        self.nodes.append(
            self.helper.make_node(op, inputs, [out], name=f"{op}_{self._count}", **attrs)
        )
        return out

    def activation(self, x: str, kind: str, prefix: str, output: str) -> str:
        if kind == "tanh":
            scaled = self.node("Mul", [x, self.const(f"{prefix}.tanh_s", TANH_S)])
            squashed = self.node("Tanh", [scaled])
            return self.node("Mul", [squashed, self.const(f"{prefix}.tanh_a", TANH_A)], output)
        if kind == "relu":
            return self.node("Relu", [x], output)
        raise ValueError(f"activation {kind!r} cannot be exported")

    def pooling(
        self, x: str, kind: str, activation: str, prefix: str, weights: dict[str, Any], maps: int
    ) -> str:
        if kind == "sub":
            coef = np.asarray(weights[f"{prefix}.weight"], dtype=np.float32)
            kernel = np.repeat(coef.reshape(maps, 1, 1, 1), 4).reshape(maps, 1, 2, 2)
            summed = self.node(
                "Conv",
                [
                    x,
                    self.const(f"{prefix}.kernel", kernel),
                    self.const(f"{prefix}.bias", weights[f"{prefix}.bias"]),
                ],
                kernel_shape=[2, 2],
                strides=[2, 2],
                group=maps,
            )
            return self.activation(summed, activation, prefix, prefix)
        if kind == "avg":
            return self.node("AveragePool", [x], prefix, kernel_shape=[2, 2], strides=[2, 2])
        if kind == "max":
            return self.node("MaxPool", [x], prefix, kernel_shape=[2, 2], strides=[2, 2])
        raise ValueError(f"pooling {kind!r} cannot be exported")

    def conv(self, x: str, prefix: str, weights: dict[str, Any]) -> str:
        return self.node(
            "Conv",
            [
                x,
                self.const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                self.const(f"{prefix}.bias", weights[f"{prefix}.bias"]),
            ],
            kernel_shape=[5, 5],
        )

    def dense(
        self, x: str, prefix: str, weights: dict[str, Any], output: str | None = None
    ) -> str:
        return self.node(
            "Gemm",
            [
                x,
                self.const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                self.const(f"{prefix}.bias", weights[f"{prefix}.bias"]),
            ],
            output,
            transB=1,
        )


def _plain_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def build_model(model: Any, *, image_size: int = 28) -> Any:
    """The ONNX ``ModelProto`` of a fitted ``LeNet5`` (or a native ``Network``).

    See :func:`to_onnx`.
    """
    onnx = _import_onnx()
    helper = onnx.helper
    if isinstance(image_size, bool) or image_size not in (28, 32):
        raise ValueError(f"image_size must be 28 or 32; got {image_size!r}")
    net, classes = _network_of(model)
    config = dict(net.config())
    weights = net.get_weights()
    n_classes = int(net.n_classes)
    activation = config.get("activation", "tanh")
    pooling = config.get("pooling", "sub")
    output = config.get("output", "softmax")

    g = _Graph(onnx)
    x = INPUT_NAME
    if image_size == 28:
        x = g.node(
            "Pad",
            [
                x,
                g.const("pad.pads", [0, 0, 2, 2, 0, 0, 2, 2], np.int64),
                g.const("pad.value", 0.0),
            ],
            mode="constant",
        )
    x = g.node("Mul", [x, g.const("input.scale", INK_RANGE)])
    x = g.node("Add", [x, g.const("input.offset", BACKGROUND)], "input")

    x = g.activation(g.conv(x, "c1", weights), activation, "c1", "c1")
    x = g.pooling(x, pooling, activation, "s2", weights, 6)
    x = g.activation(g.conv(x, "c3", weights), activation, "c3", "c3")
    x = g.pooling(x, pooling, activation, "s4", weights, 16)
    x = g.activation(g.conv(x, "c5", weights), activation, "c5", "c5.maps")
    x = g.node("Flatten", [x], "c5", axis=1)
    x = g.activation(g.dense(x, "f6", weights), activation, "f6", "f6")

    if output == "softmax":
        logits = g.dense(x, "output", weights, "output")
        g.node("Softmax", [logits], OUTPUT_NAME, axis=1)
    elif output == "rbf":
        prototypes = np.asarray(weights["output.weight"], dtype=np.float32)
        lifted = g.node("Unsqueeze", [x, g.const("output.axes", [1], np.int64)])
        diff = g.node("Sub", [lifted, g.const("output.weight", prototypes[np.newaxis])])
        penalties = g.node("ReduceSumSquare", [diff], "output", axes=[2], keepdims=0)
        negated = g.node("Neg", [penalties])
        g.node("Softmax", [negated], OUTPUT_NAME, axis=1)
    else:
        raise ValueError(f"output {output!r} cannot be exported")

    size = int(image_size)
    pad_note = " (padded by 2 to 32x32 inside the graph)" if size == 28 else ""
    input_doc = _INPUT_DOC.format(size=size, pad=pad_note)
    graph = helper.make_graph(
        g.nodes,
        "lenet5",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, onnx.TensorProto.FLOAT, ["N", 1, size, size], input_doc
            )
        ],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME,
                onnx.TensorProto.FLOAT,
                ["N", n_classes],
                "class probabilities, columns in the order of the classes metadata",
            )
        ],
        g.initializers,
        doc_string="LeNet-5 (LeCun et al., 1998) exported by lenet5",
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lenet5",
        producer_version=str(_lenet5.__version__),
        doc_string=f"LeNet-5 classifier. Input: {input_doc}. Output: probabilities (N, "
        f"{n_classes}).",
    )
    proto.ir_version = IR_VERSION
    architecture = {k: v for k, v in config.items() if k != "seed"}
    helper.set_model_props(
        proto,
        {
            "classes": _plain_json(classes),
            "architecture": _plain_json(architecture),
            "input": input_doc,
            "lenet5_version": str(_lenet5.__version__),
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(
    model: Any, path: str | os.PathLike[str] | None = None, *, image_size: int = 28
) -> Any:
    """Export the fitted network as an ONNX model; write it to ``path`` if given.

    Parameters
    ----------
    model : LeNet5
        A fitted model (a native ``Network`` is accepted too; its classes are then
        0..n_classes-1).
    path : str or path-like, optional
        Where to write the ``.onnx`` file (atomically: a temporary file in the same
        folder, then renamed). Without it, nothing is written.
    image_size : {28, 32}, default=28
        Height and width of the graph's input ``images``. 28: MNIST-sized images, padded
        to 32x32 with the background inside the graph. 32: images already padded.

    Returns
    -------
    onnx.ModelProto
        The model (checked with ``onnx.checker``).

    Raises
    ------
    ImportError
        When the ``onnx`` package is not installed.
    NotFittedError
        When the model has not been fitted.
    ValueError
        For an ``image_size`` other than 28 or 32.
    OSError
        When ``path`` cannot be written (with ``errno`` and ``filename``; a file already
        there is then left as it was).
    """
    proto = build_model(model, image_size=image_size)
    if path is not None:
        # The native writer of model files: a temporary file in the same folder, fsynced,
        # renamed; OSError with errno and filename when it fails.
        _lenet5.write_atomic(os.fsdecode(os.fspath(path)), proto.SerializeToString(), "ONNX file")
    return proto
