"""Native core of lenet5 (Rust). Private: use :class:`lenet5.LeNet5` and :mod:`lenet5.datasets`.

Images passed here are 3-D, ``(n, 28, 28)`` or ``(n, 32, 32)``, of dtype uint8 (0..255),
float32 or float64 (in [0, 1]), in native byte order (any strides); the Python layer
converts every other layout first.
"""

from collections.abc import Callable, Iterable
from os import PathLike
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BACKGROUND",
    "INK_RANGE",
    "MAX_CLASSES",
    "OPTIONS",
    "RBF_UNITS",
    "TABLE_I",
    "TANH_A",
    "TANH_S",
    "Dataset",
    "Network",
    "__version__",
    "_forward_backward",
    "_isa",
    "bright_borders",
    "check_output_size",
    "distort",
    "idx_header",
    "load_idx",
    "load_safetensors",
    "native_info",
    "rbf_bitmaps",
    "rbf_codes",
    "save_safetensors",
    "write_atomic",
]

__version__: str

#: A and S of the scaled tanh f(a) = A tanh(S a).
TANH_A: float
TANH_S: float
#: The pixel mapping: a pixel v in [0, 1] enters the network as BACKGROUND + INK_RANGE * v.
BACKGROUND: float
INK_RANGE: float
#: The largest number of classes a network can have.
MAX_CLASSES: int
#: The number of RBF prototypes (at most this many classes with output="rbf").
RBF_UNITS: int
#: The paper's Table I: for each S2 map (row), "X" where it feeds a C3 map (column).
TABLE_I: tuple[str, ...]
#: The names each architecture option accepts, in the core's order.
OPTIONS: dict[str, tuple[str, ...]]

@final
class Network:
    """The LeNet-5 network and its training state.

    ``output`` is ``"softmax"`` or ``"rbf"`` (the paper's Euclidean RBF units, at most 10
    classes); ``loss`` is ``"ce"``, ``"map"`` or ``"mle"`` (None: ``"ce"`` for softmax,
    ``"map"`` for rbf). The RBF prototypes (``rbf_prototypes``: ``"bitmaps"`` or ``"codes"``)
    are fixed unless ``rbf_trainable``.
    """

    def __new__(
        cls,
        n_classes: int,
        *,
        activation: str = "tanh",
        pooling: str = "sub",
        c3: str = "table",
        output: str = "softmax",
        init: str = "lecun",
        seed: int = 0,
        loss: str | None = None,
        map_j: float = 0.1,
        rbf_trainable: bool = False,
        rbf_prototypes: str = "bitmaps",
    ) -> Network: ...
    def copy(self) -> Network:
        """An independent copy: weights, optimizer state and shuffling generator."""

    @property
    def n_classes(self) -> int:
        """Number of classes of the output layer."""
    @property
    def n_params(self) -> int:
        """Number of trainable parameters (fixed RBF prototypes excluded)."""
    def config(self) -> dict[str, Any]:
        """The constructor's keyword values (``loss`` resolved, ``map_j`` for MAP only)."""
    def get_weights(self) -> dict[str, NDArray[np.float32]]:
        """Copies of the weights (PyTorch ``state_dict`` names and layouts)."""
    def set_weights(self, weights: dict[str, Any]) -> None:
        """Replace all weights at once; nothing changes if any entry is wrong."""
    def predict_proba(self, x: NDArray[Any], n_jobs: int = 0) -> NDArray[np.float32]:
        """Class probabilities, (n, n_classes) (``softmax(-penalties)`` for RBF output)."""
    def decision_function(self, x: NDArray[Any], n_jobs: int = 0) -> NDArray[np.float32]:
        """Class scores, (n, n_classes): the logits, or minus the RBF penalties."""
    def predict(self, x: NDArray[Any], n_jobs: int = 0) -> NDArray[np.int64]:
        """Index of the most probable class, (n,)."""
    def activations(self, x: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        """Every layer's outputs: "c1", "s2", "c3", "s4", "c5", "f6", "output" (logits, or
        the RBF penalties)."""
    def reset_optimizer(
        self,
        optimizer: str = "sgd",
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        seed: int = 0,
        mu: float = 0.02,
    ) -> None:
        """Forget the optimizer state ("sgd", "adam", "adamw" or "sdlm") and seed the shuffling
        generator."""
    def set_learning_rate(self, learning_rate: float) -> None:
        """Set the learning rate, keeping the optimizer state."""
    def train_epoch(
        self,
        data: Dataset,
        batch_size: int,
        n_jobs: int = 0,
        callback: Callable[[int, float], object] | None = None,
        interval: float = 0.2,
        augment: dict[str, float] | None = None,
        label_smoothing: float = 0.0,
        order_seed: int | None = None,
        shuffle: bool = True,
    ) -> dict[str, Any]:
        """One pass over ``data`` without the GIL, shuffled afresh (or in the order
        ``order_seed`` gives, the same every epoch; or in data order without ``shuffle``);
        returns loss, accuracy, samples, batches. ``augment`` distorts each image afresh
        (keys translate, scale, squeeze, shear); ``label_smoothing`` (softmax output only)
        smooths the cross-entropy's targets. Raises KeyboardInterrupt on Ctrl-C and
        FloatingPointError on divergence."""
    def estimate_curvature(self, data: Dataset, n_samples: int = 500, n_jobs: int = 0) -> None:
        """Estimate the SDLM curvature ``h_kk`` on a random sample of ``data``."""
    def curvature(self) -> dict[str, NDArray[np.float32]] | None:
        """The SDLM curvature estimates ``h_kk``, or None."""
    def step_sizes(self) -> dict[str, NDArray[np.float32]] | None:
        """The SDLM step sizes ``lr / (mu + h_kk)``, or None."""
    def train_state(self) -> dict[str, Any] | None:
        """The optimizer's state and the random stream's position (``step``, ``rng``,
        ``learning_rate`` and the flat float32 buffers ``m``, ``v``, ``h``), or None
        before ``reset_optimizer``."""
    def set_train_state(
        self,
        step: int,
        rng: list[int],
        learning_rate: float,
        m: NDArray[np.float32],
        v: NDArray[np.float32],
        h: NDArray[np.float32],
    ) -> None:
        """Restore ``train_state``'s values into the optimizer ``reset_optimizer`` set up;
        ValueError (nothing changed) for wrong lengths or values."""

@final
class Dataset:
    """Training images and int64 class indices (and float32 weights), copied once.

    ``x`` is one array or an iterable of arrays (chunks of the images in order, one size and
    one kind, integer or float), pulled one at a time."""

    def __new__(
        cls,
        x: NDArray[Any] | Iterable[NDArray[Any]],
        y: NDArray[np.int64],
        weights: NDArray[np.float32] | None = None,
    ) -> Dataset: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int:
        """Bytes of image data held."""

def check_output_size(n: int, item_bytes: int, what: str) -> None:
    """Check, before allocating, that ``n`` items of ``item_bytes`` bytes fit in this
    machine's memory; ValueError saying how much they would need otherwise."""

def load_idx(path: str | PathLike[str]) -> NDArray[Any]:
    """Read an IDX file, gzipped or not."""

def idx_header(path: str | PathLike[str]) -> tuple[str, list[int]]:
    """The dtype name and shape an IDX file declares, checked against its size."""

def distort(
    x: NDArray[Any],
    seed: int = 0,
    translate: float = 2.0,
    scale: float = 0.1,
    squeeze: float = 0.1,
    shear: float = 0.2,
) -> NDArray[np.float32]:
    """Randomly distorted copies of images: float32 (n, 32, 32) in [0, 1]."""

def save_safetensors(
    path: str | PathLike[str], tensors: dict[str, NDArray[np.float32]], metadata: dict[str, str]
) -> None:
    """Write float32 tensors and string metadata to a safetensors file, atomically."""

def bright_borders(x: NDArray[Any]) -> int:
    """How many images of ``x`` (3-D; uint8, float32 or float64) have more than half of
    their border pixels bright (at least 128, or 0.5 for floats)."""

def write_atomic(path: str | PathLike[str], data: bytes, what: str = "file") -> None:
    """Write ``data`` to ``path`` atomically, as model files are written.

    The bytes go to a new temporary file beside ``path``
    (``.<name>.lenet5-save-<pid>-<n>.tmp``, locked while in use), which is flushed,
    fsynced and renamed over ``path``; the folder is then fsynced. On any error the
    temporary file is removed and ``path`` keeps its previous content; temporary files
    left by killed writes to the same ``path`` are removed first. Raises OSError with
    ``errno`` and ``filename`` (``path``), its message starting "cannot write <what>".
    """

def load_safetensors(
    path: str | PathLike[str],
) -> tuple[dict[str, NDArray[np.float32]], dict[str, str]]:
    """Read and validate a safetensors file: (tensors, metadata)."""

def rbf_bitmaps() -> NDArray[np.float32]:
    """The RBF prototypes: 7x12 digit bitmaps, (10, 84) of -1/+1."""

def rbf_codes() -> NDArray[np.float32]:
    """The RBF prototypes of ``rbf_prototypes="codes"``: Hadamard rows, (10, 84), -1/+1."""

def _forward_backward(
    network: Network,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    lanes: int | None = None,
    curvature: bool = False,
    label_smoothing: float = 0.0,
) -> dict[str, Any]:
    """Test hook: activations, probabilities, loss and gradients (or the diagonal
    Gauss-Newton curvature) of a batch given in network units."""

def _isa() -> str:
    """Instruction set the kernels run with."""

def native_info() -> dict[str, Any]:
    """The kernel path, why it was chosen, the CPU and the default thread count."""
