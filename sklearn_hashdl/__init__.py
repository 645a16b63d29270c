"""Hashing-based sparse multi-layer perceptrons for scikit-learn."""

from ._classifier import HashMLPClassifier

__version__ = "0.1.0"

__all__ = ["HashMLPClassifier", "__version__"]
