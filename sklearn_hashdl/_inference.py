"""Prediction: a dense forward pass that keeps each hidden layer's top-k per row.

A network trained with k active neurons per layer expects k active neurons when
it predicts (DESIGN.md point 8), so mode 'topk' keeps, per row, the k largest
activations of each sparse layer and zeroes the rest. It is exact and
deterministic: a row's answer does not depend on the other rows of the call,
except in the last float32 bit for dense float32 input (BLAS picks its kernel by
the shape; see ``logit_chunks``), which can swap two neurons tied for the k-th place.
Mode 'dense' computes every neuron. Mode 'hashed' selects each layer's neurons
as training did (same strategy, tables rebuilt from the final weights), its
random choices keyed by the row's content so that it stays row-deterministic.
Rows are processed in chunks so that memory stays bounded, however many
classes the output layer has.
"""

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ._inputs import kernel_input
from ._random import content_keys
from ._select import keep_top_k_rows
from ._train import forward_batch
from ._workspace import Workspace

# prediction works on row chunks of at most this many rows and about this many
# values of the widest layer (32 MB of float64), whatever the number of classes
MAX_CHUNK_ROWS = 2048
CHUNK_ELEMENTS = 1 << 22


def _activate_inplace(Z, activation):
    if activation == "relu":
        np.maximum(Z, 0, out=Z)
    elif activation == "tanh":
        np.tanh(Z, out=Z)
    elif activation == "logistic":
        expit(Z, out=Z)
    return Z


def keep_top_k(A, k):
    """Zero all but the k largest entries of each row of A (in place where A is
    C-contiguous); returns the result."""
    A = np.ascontiguousarray(A)
    keep_top_k_rows(A, k)
    return A


def output_probabilities(logits, softmax):
    """Softmax (multiclass) or logistic (binary, multilabel) of float64 logits."""
    if softmax:
        logits = logits - logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits
    return expit(logits, out=logits)


def chunk_rows_for(layer_sizes, budget=CHUNK_ELEMENTS):
    """Rows per chunk so that one chunk of the widest layer holds about ``budget`` values."""
    return int(max(1, min(MAX_CHUNK_ROWS, budget // max(layer_sizes))))


def logit_chunks(weights, biases, n_active, activation, X, mode="topk"):
    """Yield (first row, float64 output logits) for row chunks of X (dense or CSR).

    The products run in X's dtype, float32 or float64 (as MLPClassifier), except
    a sparse X's first layer, in float32 as the weights are: float32 BLAS picks
    its kernel by the matrix shape, so a row's logits can change in the last
    float32 bit with the number of rows predicted together; in float64 that is
    far below any tolerance (sparse products go row by row either way).
    """
    n_layers = len(weights)
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    # sparse float64 input meets the first layer's float32 weights in float32: a
    # float64 copy of 20 Newsgroups' 130k x 256 weights took 266 MB every call
    first_dtype = np.float32 if sp.issparse(X) else dtype
    first_in_float64 = None  # the first layer's weights, made if some chunk overflows float32
    weights = [np.asarray(W, dtype=first_dtype if i == 0 else dtype) for i, W in enumerate(weights)]
    chunk_rows = chunk_rows_for([W.shape[1] for W in weights])
    for start in range(0, X.shape[0], chunk_rows):
        rows = X[start : start + chunk_rows]
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            A = rows.astype(first_dtype, copy=False)
            Z = np.asarray(A @ weights[0], dtype=dtype)  # BLAS, or scipy for sparse A
        if first_dtype != dtype and not np.isfinite(Z).all():
            # values beyond float32's range: this chunk's first layer in float64 after all
            if first_in_float64 is None:
                first_in_float64 = np.asarray(weights[0], dtype=dtype)
            Z = np.asarray(rows @ first_in_float64)
        for i in range(n_layers):
            if i > 0:
                Z = np.asarray(A @ weights[i], dtype=dtype)
            Z += biases[i]
            if i < n_layers - 1:
                _activate_inplace(Z, activation)
                if mode == "topk":
                    Z = keep_top_k(Z, n_active[i])
            A = Z
        yield start, A.astype(np.float64)


def hashed_logit_chunks(network, X):
    """Yield (first row, float64 output logits) with the training-time selection.

    ``X`` is validated input, dense or sparse; each chunk of it is brought to the
    training layout (``_inputs.kernel_input``) on its own, so that float64 input
    is never copied whole. The hidden layers select as in training; every
    output is scored (a sparse output layer's training selection is mostly
    random negatives).
    """
    network = network.with_dense_output()
    if sp.issparse(X):
        X = X.tocsr()
        width = max(1, int(np.diff(X.indptr).max(initial=0)))  # at least any chunk's
    else:
        width = max(1, X.shape[1])
    n_rows = X.shape[0]
    chunk_rows = min(chunk_rows_for(network.layer_sizes[1:]), max(1, n_rows))
    ws = Workspace(network, chunk_rows, width)
    keys = np.zeros(chunk_rows, np.uint64)
    for start in range(0, n_rows, chunk_rows):
        chunk = kernel_input(X[start: start + chunk_rows])
        B = chunk.shape[0]
        ws.load_inputs(chunk, np.arange(B))
        content_keys(ws.ids[0][:B], ws.vals[0][:B].view(np.uint32), ws.cnt[0][:B], keys[:B])
        logits = forward_batch(network, ws, B, 0, keys[:B])[-1][1]
        yield start, logits.astype(np.float64)


def as_float_input(X, dtype):
    """Validated input as ``dtype`` (a view when it already is), CSR when sparse."""
    if sp.issparse(X):
        return X.tocsr().astype(dtype, copy=False)
    return np.asarray(X, dtype=dtype)
