"""Native core of lenet5 (Rust). Private: use :class:`lenet5.LeNet5` and :mod:`lenet5.datasets`.

Images passed here are 3-D, ``(n, 28, 28)`` or ``(n, 32, 32)``, of dtype uint8, float32 or
float64 in native byte order (any strides); the Python layer converts everything else.
"""

from collections.abc import Callable
from os import PathLike
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__all__ = ["Dataset", "Network", "__version__", "_forward_backward", "_isa", "load_idx"]

__version__: str

@final
class Network:
    """The LeNet-5 network and its training state."""

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
    ) -> Network: ...
    @property
    def n_classes(self) -> int:
        """Number of classes of the output layer."""
    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
    def config(self) -> dict[str, Any]:
        """The constructor's keyword values."""
    def get_weights(self) -> dict[str, NDArray[np.float32]]:
        """Copies of the weights (PyTorch ``state_dict`` names and layouts)."""
    def set_weights(self, weights: dict[str, Any]) -> None:
        """Replace all weights at once; nothing changes if any entry is wrong."""
    def predict_proba(self, x: NDArray[Any], n_jobs: int = 0) -> NDArray[np.float32]:
        """Class probabilities, (n, n_classes)."""
    def predict(self, x: NDArray[Any], n_jobs: int = 0) -> NDArray[np.int64]:
        """Index of the most probable class, (n,)."""
    def activations(self, x: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        """Every layer's outputs: "c1", "s2", "c3", "s4", "c5", "f6", "output" (logits)."""
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
    ) -> None:
        """Forget the optimizer state and seed the shuffling generator."""
    def set_learning_rate(self, learning_rate: float) -> None:
        """Set the learning rate, keeping the optimizer state."""
    def train_epoch(
        self,
        data: Dataset,
        batch_size: int,
        n_jobs: int = 0,
        callback: Callable[[int, float], object] | None = None,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """One shuffled pass over ``data`` without the GIL; returns loss, accuracy, samples,
        batches. Raises KeyboardInterrupt on Ctrl-C and FloatingPointError on divergence."""

@final
class Dataset:
    """Training images and int64 class indices, copied once."""

    def __new__(cls, x: NDArray[Any], y: NDArray[np.int64]) -> Dataset: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int:
        """Bytes of image data held."""

def load_idx(path: str | PathLike[str]) -> NDArray[Any]:
    """Read an IDX file, gzipped or not."""

def _forward_backward(
    network: Network,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    lanes: int | None = None,
) -> dict[str, Any]:
    """Test hook: activations, probabilities, loss and gradients of a batch."""

def _isa() -> str:
    """Instruction set the kernels run with."""
