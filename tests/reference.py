"""Independent float64 NumPy reference of LeNet-5, used only by the tests.

Written from the equations of the design notes (LeCun et al. 1998, Section II.B), not from the
Rust core. Everything works on float64 arrays, in NCHW layout, vectorised over the batch.

The network is a list of *stages* (convolution, activation, pooling, flatten, dense). Every stage
has the same small interface:

* ``forward(weights, x, branch)`` returns ``(y, cache, branch)``: the output, what the backward
  pass needs, and the discrete decision taken (the ReLU active set or the max-pooling argmax;
  ``None`` for smooth stages). Passing a ``branch`` forces that decision instead of recomputing
  it, which lets a test follow another implementation's choices at points that sit on a kink.
* ``backward(weights, g, cache, square)`` maps a quantity defined on the stage output back to
  its input and to its parameters. With ``square=False`` it is the chain rule (``g`` is a
  gradient). With ``square=True`` every linear factor is squared (weights, inputs, activation
  slopes, pooling factors): that is the diagonal Gauss-Newton propagation of LeCun's stochastic
  diagonal Levenberg-Marquardt method, see :func:`gauss_newton_diag`.

:func:`run_forward` and :func:`backprop` drive any list of stages, so the full network and the
tiny networks of the tests share the same code.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TANH_AMPLITUDE = 1.7159
TANH_SLOPE = 2.0 / 3.0
BACKGROUND = -0.1
INK = 1.175

ACTIVATIONS = ("tanh", "relu")
POOLINGS = ("sub", "avg", "max")
C3_MODES = ("table", "full")
LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "output")

# Table I of the paper, typed from the notes. Rows: S2 maps 0-5; columns: C3 maps 0-15.
_TABLE_I_ROWS = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)
TABLE_I = np.array([[mark == "X" for mark in row] for row in _TABLE_I_ROWS], dtype=bool)


def c3_mask(c3: str = "table") -> np.ndarray:
    """C3 connection mask, shape (16, 6): ``mask[j, i]`` is True when C3 map j reads S2 map i."""
    if c3 == "table":
        return TABLE_I.T.copy()
    if c3 == "full":
        return np.ones((16, 6), dtype=bool)
    raise ValueError(f"unknown c3 mode {c3!r}")


# --------------------------------------------------------------------------------------------
# Pixels, shapes, initialisation, parameter counts
# --------------------------------------------------------------------------------------------


def map_pixels(x: np.ndarray) -> np.ndarray:
    """Map images to network units: float64 (n, 32, 32).

    uint8 ``v`` becomes ``-0.1 + 1.275 * v / 255``; a float ``v`` in [0, 1] becomes
    ``-0.1 + 1.275 * v`` (background -0.1, full ink 1.175). 28x28 images are padded by 2 pixels
    on every side with the background value.
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] not in ((28, 28), (32, 32)):
        raise ValueError(f"expected (n, 28, 28) or (n, 32, 32), got {x.shape}")
    if x.dtype == np.uint8:
        units = BACKGROUND + (INK - BACKGROUND) * (x.astype(np.float64) / 255.0)
    elif np.issubdtype(x.dtype, np.floating):
        units = BACKGROUND + (INK - BACKGROUND) * x.astype(np.float64)
    else:
        raise TypeError(f"unsupported dtype {x.dtype}")
    if units.shape[1] == 28:
        units = np.pad(units, ((0, 0), (2, 2), (2, 2)), constant_values=BACKGROUND)
    return units


def weight_shapes(n_classes: int = 10, pooling: str = "sub", c3: str = "table") -> dict:
    """Names and shapes of the trainable tensors (PyTorch ``state_dict`` layout)."""
    _check_config("tanh", pooling, c3)
    shapes = {"c1.weight": (6, 1, 5, 5), "c1.bias": (6,)}
    if pooling == "sub":
        shapes.update({"s2.weight": (6,), "s2.bias": (6,)})
    shapes.update({"c3.weight": (16, 6, 5, 5), "c3.bias": (16,)})
    if pooling == "sub":
        shapes.update({"s4.weight": (16,), "s4.bias": (16,)})
    shapes.update(
        {
            "c5.weight": (120, 16, 5, 5),
            "c5.bias": (120,),
            "f6.weight": (84, 120),
            "f6.bias": (84,),
            "output.weight": (n_classes, 84),
            "output.bias": (n_classes,),
        }
    )
    return shapes


def init_bounds(
    n_classes: int = 10, pooling: str = "sub", c3: str = "table", rule: str = "lecun"
) -> dict:
    """The "lecun" bound 2.4 / F of every tensor, F the fan-in of the unit the weight feeds
    (``rule="lecun_sqrt"``: 2.4 / sqrt(F), except for the subsampling coefficients, one weight
    on four correlated inputs, which keep 2.4 / F).

    Values broadcast against the tensor (C3 has one bound per output map).
    """
    inputs_per_map = c3_mask(c3).sum(axis=1).astype(np.float64)
    fan_in = {
        "c1": np.float64(25.0),
        "s2": np.float64(4.0),
        "c3": 25.0 * inputs_per_map,
        "s4": np.float64(4.0),
        "c5": np.float64(400.0),
        "f6": np.float64(120.0),
        "output": np.float64(84.0),
    }
    bounds = {}
    for name, shape in weight_shapes(n_classes, pooling, c3).items():
        layer = name.split(".")[0]
        f = fan_in[layer]
        coefficient = layer in ("s2", "s4") and name.endswith(".weight")
        bound = 2.4 / (np.sqrt(f) if rule == "lecun_sqrt" and not coefficient else f)
        if layer == "c3" and len(shape) == 4:
            bound = bound[:, None, None, None]
        bounds[name] = bound
    return bounds


def init_weights(
    rng: np.random.Generator, n_classes: int = 10, pooling: str = "sub", c3: str = "table"
) -> dict:
    """Uniform(-2.4/F, 2.4/F) weights and biases; C3 weights are 0 outside the connection mask."""
    bounds = init_bounds(n_classes, pooling, c3)
    weights = {}
    for name, shape in weight_shapes(n_classes, pooling, c3).items():
        weights[name] = rng.uniform(-1.0, 1.0, size=shape) * bounds[name]
    weights["c3.weight"] *= c3_mask(c3)[:, :, None, None]
    return weights


def param_counts(n_classes: int = 10, pooling: str = "sub", c3: str = "table") -> dict:
    """Trainable parameters per layer; C3 weights outside the connection mask do not count."""
    counts: dict[str, int] = {}
    for name, shape in weight_shapes(n_classes, pooling, c3).items():
        layer = name.split(".")[0]
        size = int(np.prod(shape))
        if name == "c3.weight":
            size = int(c3_mask(c3).sum()) * 25
        counts[layer] = counts.get(layer, 0) + size
    return counts


def param_count(n_classes: int = 10, pooling: str = "sub", c3: str = "table") -> int:
    """Total number of trainable parameters (60,850 for the paper's network with 10 classes)."""
    return sum(param_counts(n_classes, pooling, c3).values())


def _check_config(activation: str, pooling: str, c3: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}")
    if c3 not in C3_MODES:
        raise ValueError(f"unknown c3 mode {c3!r}")


# --------------------------------------------------------------------------------------------
# Elementary operations
# --------------------------------------------------------------------------------------------


def activate(a: np.ndarray, activation: str) -> np.ndarray:
    """f(a): ``1.7159 * tanh(2a/3)`` ("tanh") or ``max(a, 0)`` ("relu")."""
    if activation == "tanh":
        return TANH_AMPLITUDE * np.tanh(TANH_SLOPE * a)
    if activation == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(f"unknown activation {activation!r}")


def activation_slope(a: np.ndarray, activation: str) -> np.ndarray:
    """f'(a); for ReLU the slope is 1 where a > 0 and 0 elsewhere."""
    if activation == "tanh":
        return TANH_AMPLITUDE * TANH_SLOPE * (1.0 - np.tanh(TANH_SLOPE * a) ** 2)
    if activation == "relu":
        return (a > 0).astype(np.float64)
    raise ValueError(f"unknown activation {activation!r}")


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation: y[n,o,i,j] = sum_{c,u,v} w[o,c,u,v] x[n,c,i+u,j+v] + b[o]."""
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # (n, c, i, j, u, v)
    return np.einsum("ncijuv,ocuv->noij", windows, w, optimize=True) + b[None, :, None, None]


def conv2d_backward(g: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple:
    """Adjoint of :func:`conv2d` for an output quantity g: returns (dx, dw, db).

    dw[o,c,u,v] = sum_{n,i,j} g[n,o,i,j] x[n,c,i+u,j+v]; db[o] = sum_{n,i,j} g[n,o,i,j];
    dx[n,c,y,x] = sum_{o,i,j} g[n,o,i,j] w[o,c,y-i,x-j], i.e. a "full" correlation of g with the
    kernel flipped in both spatial axes.
    """
    kh, kw = w.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))
    dw = np.einsum("noij,ncijuv->ocuv", g, windows, optimize=True)
    db = g.sum(axis=(0, 2, 3))
    padded = np.pad(g, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    g_windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))  # (n, o, y, x, u, v)
    dx = np.einsum("noyxuv,ocuv->ncyx", g_windows, w[:, :, ::-1, ::-1], optimize=True)
    return dx, dw, db


def to_blocks(x: np.ndarray) -> np.ndarray:
    """(n, c, 2h, 2w) -> (n, c, h, w, 4): the 2x2 blocks, stride 2, in row-major block order."""
    n, c, height, width = x.shape
    blocks = x.reshape(n, c, height // 2, 2, width // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return blocks.reshape(n, c, height // 2, width // 2, 4)


def from_blocks(blocks: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_blocks`."""
    n, c, height, width, _ = blocks.shape
    x = blocks.reshape(n, c, height, width, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return x.reshape(n, c, 2 * height, 2 * width)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax through a shifted log-sum-exp (no overflow for large logits)."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


class Conv:
    """Convolution layer ``name`` (weights ``name.weight`` (o,c,k,k), ``name.bias`` (o,)).

    With a ``mask`` (o, c), the kernels of absent connections are treated as 0 in the forward
    pass and their gradient is exactly 0.
    """

    def __init__(self, name: str, mask: np.ndarray | None = None):
        self.tag = name
        self.mask = None if mask is None else mask[:, :, None, None].astype(np.float64)

    def _kernel(self, weights):
        w = weights[f"{self.tag}.weight"]
        return w if self.mask is None else w * self.mask

    def forward(self, weights, x, branch=None):
        return conv2d(x, self._kernel(weights), weights[f"{self.tag}.bias"]), x, None

    def backward(self, weights, g, cache, square=False):
        x, w = cache, self._kernel(weights)
        if square:
            x, w = x * x, w * w
        dx, dw, db = conv2d_backward(g, x, w)
        if self.mask is not None:
            dw = dw * self.mask
        return dx, {f"{self.tag}.weight": dw, f"{self.tag}.bias": db}


class Dense:
    """Dense layer ``name``: y = x W^T + b; W is stored as (out, ...) and used as (out, in)."""

    def __init__(self, name: str):
        self.tag = name

    def forward(self, weights, x, branch=None):
        w = weights[f"{self.tag}.weight"]
        return x @ w.reshape(w.shape[0], -1).T + weights[f"{self.tag}.bias"], x, None

    def backward(self, weights, g, cache, square=False):
        stored = weights[f"{self.tag}.weight"]
        x, w = cache, stored.reshape(stored.shape[0], -1)
        if square:
            x, w = x * x, w * w
        grads = {
            f"{self.tag}.weight": (g.T @ x).reshape(stored.shape),
            f"{self.tag}.bias": g.sum(0),
        }
        return g @ w, grads


class Activation:
    """Elementwise activation; the ReLU branch is its active set (a > 0)."""

    def __init__(self, tag: str, activation: str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        self.tag = tag
        self.activation = activation

    def forward(self, weights, a, branch=None):
        if self.activation == "tanh":
            return activate(a, "tanh"), (a, None), None
        active = a > 0 if branch is None else np.asarray(branch, dtype=bool)
        return np.where(active, a, 0.0), (a, active), active

    def backward(self, weights, g, cache, square=False):
        a, active = cache
        slope = activation_slope(a, "tanh") if active is None else active.astype(np.float64)
        return g * (slope * slope if square else slope), {}


class SubPool:
    """Trainable subsampling: a[n,c] = coef[c] * (sum of the 2x2 block) + bias[c].

    The activation is a separate :class:`Activation` stage that follows it.
    """

    def __init__(self, name: str):
        self.tag = name

    def forward(self, weights, x, branch=None):
        blocks = to_blocks(x)
        block_sum = blocks.sum(axis=-1)
        coef, bias = weights[f"{self.tag}.weight"], weights[f"{self.tag}.bias"]
        out = coef[None, :, None, None] * block_sum + bias[None, :, None, None]
        return out, (block_sum, (blocks * blocks).sum(axis=-1)), None

    def backward(self, weights, g, cache, square=False):
        (block_sum, square_sum), coef = cache, weights[f"{self.tag}.weight"]
        if square:
            # GN, the paper's per-connection rule (Appendix C, Eq. 23 and 25): the coefficient
            # is shared by the 4 connections of each unit, so its curvature is the sum over
            # those connections of h(a) x_j^2, the squares of the inputs (not of their sum);
            # each block input gets coef^2 h(a).
            block_sum, coef = square_sum, coef * coef
        grads = {
            f"{self.tag}.weight": (g * block_sum).sum(axis=(0, 2, 3)),
            f"{self.tag}.bias": g.sum(axis=(0, 2, 3)),
        }
        dx = from_blocks(np.repeat((g * coef[None, :, None, None])[..., None], 4, axis=-1))
        return dx, grads


class AvgPool:
    """Mean of each 2x2 block; no parameters."""

    def __init__(self, tag: str):
        self.tag = tag

    def forward(self, weights, x, branch=None):
        return to_blocks(x).mean(axis=-1), None, None

    def backward(self, weights, g, cache, square=False):
        factor = 1.0 / 16.0 if square else 1.0 / 4.0
        return from_blocks(np.repeat((g * factor)[..., None], 4, axis=-1)), {}


class MaxPool:
    """Max of each 2x2 block; the branch is the block index (0..3, row-major) of the winner.

    On ties the first winner in row-major order is chosen (it alone gets the gradient).
    """

    def __init__(self, tag: str):
        self.tag = tag

    def forward(self, weights, x, branch=None):
        blocks = to_blocks(x)
        winner = blocks.argmax(axis=-1) if branch is None else np.asarray(branch)
        y = np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]
        return y, winner, winner

    def backward(self, weights, g, cache, square=False):
        one_hot = np.arange(4) == cache[..., None]
        return from_blocks(one_hot * g[..., None]), {}


class Flatten:
    """(n, c, h, w) -> (n, c*h*w) in (c, y, x) order."""

    tag = None

    def forward(self, weights, x, branch=None):
        return x.reshape(x.shape[0], -1), x.shape, None

    def backward(self, weights, g, cache, square=False):
        return g.reshape(cache), {}


def build_stages(activation: str = "tanh", pooling: str = "sub", c3: str = "table") -> list:
    """The LeNet-5 stages in order; each layer's output is that of its last stage."""
    _check_config(activation, pooling, c3)

    def pool(name):
        if pooling == "sub":
            return [SubPool(name), Activation(name, activation)]
        return [AvgPool(name) if pooling == "avg" else MaxPool(name)]

    return [
        Conv("c1"),
        Activation("c1", activation),
        *pool("s2"),
        Conv("c3", c3_mask(c3)),
        Activation("c3", activation),
        *pool("s4"),
        Flatten(),
        Dense("c5"),
        Activation("c5", activation),
        Dense("f6"),
        Activation("f6", activation),
        Dense("output"),
    ]


def run_forward(stages: list, weights: dict, x: np.ndarray, branches: dict | None = None) -> tuple:
    """Run the stages. Returns (outputs by tag, caches, branches by tag, pre-activations by tag).

    ``branches`` (tag -> array) forces discrete decisions; missing tags are decided normally.
    """
    branches = branches or {}
    outputs, caches, taken, pre = {}, [], {}, {}
    for stage in stages:
        if isinstance(stage, Activation):
            pre[stage.tag] = x
        x, cache, branch = stage.forward(weights, x, branches.get(stage.tag))
        caches.append(cache)
        if branch is not None:
            taken[stage.tag] = branch
        if stage.tag is not None:
            outputs[stage.tag] = x
    return outputs, caches, taken, pre


def backprop(
    stages: list, weights: dict, caches: list, g: np.ndarray, square: bool = False
) -> dict:
    """Propagate g from the last stage's output down to the first; parameter results by name.

    ``square=False``: chain rule (g is dL/d(last output)). ``square=True``: diagonal Gauss-Newton
    propagation (g is the curvature diagonal on the last output).
    """
    results = {}
    for stage, cache in zip(reversed(stages), reversed(caches)):
        g, grads = stage.backward(weights, g, cache, square)
        results.update(grads)
    return results


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _as_batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
        raise ValueError(f"expected network units of shape (n, 32, 32), got {x.shape}")
    return x


def _one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return (np.asarray(y)[:, None] == np.arange(n_classes)).astype(np.float64)


def _run(weights, x, activation, pooling, c3, branches):
    stages = build_stages(activation, pooling, c3)
    weights = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    outputs, caches, taken, pre = run_forward(stages, weights, _as_batch(x), branches)
    return stages, outputs, caches, taken, pre


def forward(
    weights: dict,
    x: np.ndarray,
    y: np.ndarray | None = None,
    activation: str = "tanh",
    pooling: str = "sub",
    c3: str = "table",
    branches: dict | None = None,
    smoothing: float = 0.0,
) -> dict:
    """Forward pass on x in network units, (n, 32, 32).

    Returns the output of every layer ("c1" (n,6,28,28), "s2" (n,6,14,14), "c3" (n,16,10,10),
    "s4" (n,16,5,5), "c5" (n,120), "f6" (n,84), "output" (n,K) logits), "proba" (softmax) and,
    when labels y are given, "loss" = mean cross-entropy against the targets of
    :func:`smoothed_targets`.
    """
    _, outputs, _, _, _ = _run(weights, x, activation, pooling, c3, branches)
    log_p = log_softmax(outputs["output"])
    result = dict(outputs)
    result["proba"] = np.exp(log_p)
    if y is not None:
        targets = smoothed_targets(y, log_p.shape[1], smoothing)
        result["loss"] = float(-(targets * log_p).sum(axis=1).mean())
    return result


def smoothed_targets(y: np.ndarray, n_classes: int, smoothing: float = 0.0) -> np.ndarray:
    """Cross-entropy targets with label smoothing: (1 - s) one_hot(y) + s / K."""
    return (1.0 - smoothing) * _one_hot(y, n_classes) + smoothing / n_classes


def gradients(
    weights: dict,
    x: np.ndarray,
    y: np.ndarray,
    activation: str = "tanh",
    pooling: str = "sub",
    c3: str = "table",
    branches: dict | None = None,
    smoothing: float = 0.0,
) -> dict:
    """Gradient of the mean cross-entropy wrt every tensor (same names and shapes as weights).

    Hand-written chain rule: dL/dz = (softmax(z) - targets) / n on the logits (targets:
    onehot(y), or :func:`smoothed_targets`), then :func:`backprop`. C3 weights outside the
    connection mask get exactly 0.
    """
    stages, outputs, caches, _, _ = _run(weights, x, activation, pooling, c3, branches)
    logits = outputs["output"]
    targets = smoothed_targets(y, logits.shape[1], smoothing)
    g = (np.exp(log_softmax(logits)) - targets) / len(logits)
    return backprop(stages, weights, caches, g)


def softmax_curvature(proba: np.ndarray) -> np.ndarray:
    """Diagonal of the cross-entropy Hessian wrt the logits, p_k (1 - p_k), over the batch size."""
    return proba * (1.0 - proba) / len(proba)


def gauss_newton_diag(
    weights: dict,
    x: np.ndarray,
    y: np.ndarray | None = None,
    activation: str = "tanh",
    pooling: str = "sub",
    c3: str = "table",
    branches: dict | None = None,
) -> dict:
    """Diagonal Gauss-Newton estimate h_kk of d2L/dw_k2, averaged over the samples.

    Per sample (LeCun's stochastic diagonal Levenberg-Marquardt, cross terms neglected):

    * logits z: h(z_k) = p_k (1 - p_k), the diagonal of the softmax cross-entropy Hessian (it does
      not depend on the label, so ``y`` is accepted only for symmetry with :func:`gradients`);
    * activation x = f(a): h(a) = f'(a)^2 h(x);
    * linear map y_i = sum_j w_ij x_j + b_i (dense, or convolution with the sum also running over
      positions): h(x_j) = sum_i w_ij^2 h(y_i), h(w_ij) = sum over the uses of w_ij of
      h(y_i) x_j^2 (a shared weight sums over its positions), h(b_i) = sum of h(y_i) over its uses;
    * "sub" pooling a = coef * S + bias with S the 2x2 block sum: h(x) = coef^2 h(a) for each of
      the 4 block inputs, h(coef) = sum over the connections of h(a) x_j^2 (the paper's rule:
      each of the block's 4 connections is one use of the shared coefficient), h(bias) = sum h(a);
    * "avg" pooling: h(x) = h(y) / 16 for each block input; "max": h(winner) = h(y), 0 elsewhere.

    The per-sample values are averaged over the batch. Same names and shapes as the weights;
    C3 entries outside the connection mask are exactly 0. All entries are >= 0.
    """
    stages, outputs, caches, _, _ = _run(weights, x, activation, pooling, c3, branches)
    proba = np.exp(log_softmax(outputs["output"]))
    return backprop(stages, weights, caches, softmax_curvature(proba), square=True)


def forward_branches(
    weights: dict, x: np.ndarray, activation: str = "tanh", pooling: str = "sub", c3: str = "table"
) -> dict:
    """The discrete decisions of the forward pass: tag -> ReLU active set or max-pool winner."""
    return _run(weights, x, activation, pooling, c3, None)[3]


def branch_margins(
    weights: dict, x: np.ndarray, activation: str = "tanh", pooling: str = "sub", c3: str = "table"
) -> dict:
    """Distance of every discrete decision to its kink: tag -> array shaped like the branch.

    ReLU: |a| (the pre-activation). Max pooling: the gap between the largest and the second
    largest value of the block; blocks whose two largest values are both exactly 0 (ReLU zeros,
    which carry no gradient) get +inf.
    """
    _, outputs, _, _, pre = _run(weights, x, activation, pooling, c3, None)
    margins = {}
    if activation == "relu":
        for tag, a in pre.items():
            margins[tag] = np.abs(a)
    if pooling == "max":
        for tag, source in (("s2", "c1"), ("s4", "c3")):
            top = np.sort(to_blocks(outputs[source]), axis=-1)
            gap = top[..., 3] - top[..., 2]
            margins[tag] = np.where((top[..., 3] == 0) & (top[..., 2] == 0), np.inf, gap)
    return margins


def branches_from_activations(
    outputs: dict, activation: str = "tanh", pooling: str = "sub"
) -> dict:
    """Infer the discrete decisions of another implementation from its layer outputs.

    ReLU: active where the layer output is > 0. Max pooling: the first block entry (row-major)
    closest to the pooled value (equal to it for an exact max).
    """
    taken = {}
    if pooling == "max":
        for tag, source in (("s2", "c1"), ("s4", "c3")):
            distance = np.abs(
                to_blocks(np.asarray(outputs[source], dtype=np.float64)) - outputs[tag][..., None]
            )
            taken[tag] = distance.argmin(axis=-1)
    if activation == "relu":
        tags = ["c1", "c3", "c5", "f6"] + (["s2", "s4"] if pooling == "sub" else [])
        for tag in tags:
            taken[tag] = np.asarray(outputs[tag]) > 0
    return taken


# --------------------------------------------------------------------------------------------
# Euclidean RBF output and the paper's losses (pure functions for later work)
# --------------------------------------------------------------------------------------------


def rbf_forward(x84: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Penalties y[n,i] = sum_j (x[n,j] - w[i,j])^2; x84 (n, 84), prototypes (K, 84) -> (n, K)."""
    diff = x84[:, None, :] - prototypes[None, :, :]
    return (diff * diff).sum(axis=-1)


def rbf_backward(g: np.ndarray, x84: np.ndarray, prototypes: np.ndarray) -> tuple:
    """Adjoint of :func:`rbf_forward` for an upstream gradient g (n, K): returns (dx, dprototypes).

    dx[n,j] = 2 sum_i g[n,i] (x[n,j] - w[i,j]); dw[i,j] = -2 sum_n g[n,i] (x[n,j] - w[i,j]).
    """
    dx = 2.0 * (g.sum(axis=1)[:, None] * x84 - g @ prototypes)
    dw = -2.0 * (g.T @ x84 - g.sum(axis=0)[:, None] * prototypes)
    return dx, dw


def _map_log_terms(penalties: np.ndarray, j: float) -> np.ndarray:
    """Columns [-j, -y_0, ..., -y_{K-1}] whose log-sum-exp is the MAP competition term."""
    return np.concatenate([np.full((len(penalties), 1), -float(j)), -penalties], axis=1)


def map_loss(penalties: np.ndarray, labels: np.ndarray, j: float = 0.1) -> float:
    """Paper eq. (9): mean over samples of y_D + log(exp(-j) + sum_i exp(-y_i)), kept stable."""
    terms = _map_log_terms(penalties, j)
    top = terms.max(axis=1)
    lse = top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
    return float((penalties[np.arange(len(labels)), labels] + lse).mean())


def map_loss_grad(penalties: np.ndarray, labels: np.ndarray, j: float = 0.1) -> np.ndarray:
    """d map_loss / d y[n,i] = (onehot(D)_i - exp(-y_i) / (exp(-j) + sum_k exp(-y_k))) / n."""
    terms = _map_log_terms(penalties, j)
    weights = np.exp(terms - terms.max(axis=1, keepdims=True))
    share = weights[:, 1:] / weights.sum(axis=1, keepdims=True)
    return (_one_hot(labels, penalties.shape[1]) - share) / len(penalties)


def mle_loss(penalties: np.ndarray, labels: np.ndarray) -> float:
    """Paper eq. (8): mean over samples of the penalty of the correct class, y_D."""
    return float(penalties[np.arange(len(labels)), labels].mean())


def mle_loss_grad(penalties: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d mle_loss / d y[n,i] = onehot(D)_i / n."""
    return _one_hot(labels, penalties.shape[1]) / len(penalties)
