"""Hashing-based sparse multi-layer perceptrons for scikit-learn."""

from ._classifier import HashMLPClassifier
from .datasets import make_prototype_classification
from .metrics import make_precision_at_k_scorer, precision_at_k

__version__ = "0.1.0"

__all__ = [
    "HashMLPClassifier",
    "make_precision_at_k_scorer",
    "make_prototype_classification",
    "precision_at_k",
    "__version__",
]
