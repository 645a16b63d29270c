"""Hashing-based sparse multi-layer perceptrons for scikit-learn."""

import os

# A training step runs a dozen short parallel kernels. With libgomp's default,
# numba's OpenMP worker went to sleep between them, and waking it cost 0.1-0.3 ms
# per kernel on 2-core virtual machines: two threads were barely faster than one
# on a 4096-wide layer. Spinning up to 10M rounds (about 0.1 s) before sleeping,
# like Intel OpenMP's default 200 ms, fixes that. It applies to OpenMP runtimes
# loaded after this import (numba loads its own at the first parallel kernel);
# set GOMP_SPINCOUNT yourself to choose otherwise (0 on an oversubscribed machine).
os.environ.setdefault("GOMP_SPINCOUNT", "10000000")

from ._classifier import HashMLPClassifier  # noqa: E402
from .datasets import make_prototype_classification  # noqa: E402
from .metrics import make_precision_at_k_scorer, precision_at_k  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "HashMLPClassifier",
    "make_precision_at_k_scorer",
    "make_prototype_classification",
    "precision_at_k",
    "__version__",
]
