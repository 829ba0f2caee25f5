"""LeNet-5 (LeCun et al., 1998) with a Rust core and a scikit-learn-style Python API.

>>> from lenet5 import LeNet5
>>> from lenet5.datasets import load_mnist
>>> (x_train, y_train), (x_test, y_test) = load_mnist()
>>> model = LeNet5(epochs=1, random_state=0, verbose=0).fit(x_train[:500], y_train[:500])
>>> model.predict(x_test[:5]).shape
(5,)
"""

from . import datasets
from ._estimator import LeNet5, TrainingWarning
from ._info import native_info
from ._lenet5 import __version__
from ._paper import distort, rbf_bitmaps, rbf_codes
from ._prepare import InvertedInputWarning
from ._validation import NotFittedError

__all__ = [
    "InvertedInputWarning",
    "LeNet5",
    "NotFittedError",
    "TrainingWarning",
    "__version__",
    "datasets",
    "distort",
    "native_info",
    "rbf_bitmaps",
    "rbf_codes",
]
