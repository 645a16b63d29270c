"""Prediction: a dense forward pass that keeps each hidden layer's top-k per row.

A network trained with k active neurons per layer expects k active neurons when
it predicts (DESIGN.md point 8), so mode 'topk' keeps, per row, the k largest
activations of each hashed layer and zeroes the rest. It is exact and
deterministic: a row's answer does not depend on the other rows of the call.
Mode 'dense' computes every neuron. Rows are processed in chunks so that memory
stays bounded by ``chunk_rows`` times the widest layer.
"""

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

CHUNK_ROWS = 2048


def _activate_inplace(Z, activation):
    if activation == "relu":
        np.maximum(Z, 0, out=Z)
    elif activation == "tanh":
        np.tanh(Z, out=Z)
    elif activation == "logistic":
        expit(Z, out=Z)
    return Z


def keep_top_k(A, k):
    """Zero all but the k largest entries of each row of A (in place)."""
    n = A.shape[1]
    if k >= n:
        return A
    # the n - k smallest of each row, by a deterministic per-row partition
    drop = np.argpartition(A, n - k - 1, axis=1)[:, : n - k]
    np.put_along_axis(A, drop, 0, axis=1)
    return A


def output_probabilities(logits, softmax):
    """Softmax (multiclass) or logistic (binary, multilabel) of float64 logits."""
    if softmax:
        logits = logits - logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits
    return expit(logits, out=logits)


def predict_logits(weights, biases, n_active, activation, X, mode="topk", chunk_rows=CHUNK_ROWS):
    """Output-layer logits (float64) for X, dense ndarray or CSR, in row chunks."""
    n_layers = len(weights)
    out = np.empty((X.shape[0], weights[-1].shape[1]), np.float64)
    for start in range(0, X.shape[0], chunk_rows):
        A = X[start : start + chunk_rows]
        for i in range(n_layers):
            Z = A @ weights[i]  # BLAS, or scipy for sparse A
            Z = np.asarray(Z, dtype=np.float32)
            Z += biases[i]
            if i < n_layers - 1:
                _activate_inplace(Z, activation)
                if mode == "topk":
                    keep_top_k(Z, n_active[i])
            A = Z
        out[start : start + A.shape[0]] = A
    return out


def as_float32_input(X):
    """float32 copy or view of validated input, CSR when sparse."""
    if sp.issparse(X):
        return X.tocsr().astype(np.float32)
    return np.asarray(X, dtype=np.float32)
