"""Training and prediction input in the one layout the kernels compile for, and
the training targets as a sparse label matrix.

Dense input becomes a C-contiguous float32 array, sparse input ``SparseRows``
(float32 CSR with fixed index dtypes), by ``kernel_input``, which refuses values
beyond float32's range. The kernels index without bounds checks, so callers run
``check_sparse_indices`` on sparse input first.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp


class SparseRows(NamedTuple):
    """CSR training input with fixed dtypes (float32 data, int32 indices, int64 indptr)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple


class Targets(NamedTuple):
    """Training targets as a CSR label matrix: sample r's labels are
    ``ids[ptr[r]:ptr[r + 1]]`` with target values ``values[...]`` (0 elsewhere).

    No (n_samples, n_classes) array is ever needed, however many classes.
    """

    ptr: np.ndarray
    ids: np.ndarray
    values: np.ndarray

    @classmethod
    def from_indicator(cls, Y, spread=False):
        """From a label-indicator matrix (dense or sparse); with ``spread`` each
        row's targets are 1 / (its number of labels), a distribution for softmax."""
        Y = sp.csr_matrix(Y, copy=True)  # a copy: the two calls below work in place
        # a label listed twice is one label (as in MLPClassifier), not two targets
        Y.sum_duplicates()
        Y.eliminate_zeros()
        values = np.ones(Y.nnz, np.float32)
        if spread:
            per_row = np.diff(Y.indptr)
            values /= np.repeat(per_row, per_row).astype(np.float32)
        return cls(Y.indptr.astype(np.int64), Y.indices.astype(np.int32), values)

    def max_per_row(self):
        return int(np.diff(self.ptr).max(initial=0))


def input_width(X):
    """Largest number of non-zeros in a row of X (the level-0 list width)."""
    if isinstance(X, SparseRows):
        return max(1, int(np.diff(X.indptr).max(initial=0)))
    return max(1, X.shape[1])


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BEYOND_FLOAT32 = ("Input X holds values beyond float32's range (about 3.4e38), in which "
                   "HashMLPClassifier computes; scale the features first.")


def check_sparse_indices(X):
    """X, after checking that a CSR or CSC matrix's index arrays stay inside it:
    the kernels (and SciPy's products) would read and write past the weights.
    scipy's check_format is not used, as it changes the caller's matrix."""
    if not sp.issparse(X):
        return X
    n_major, n_minor = X.shape if X.format == "csr" else X.shape[::-1]
    indptr, indices = X.indptr, X.indices
    if (len(indptr) != n_major + 1 or indptr[0] != 0 or indptr[-1] > len(indices)
            or len(X.data) != len(indices) or (n_major and np.diff(indptr).min() < 0)):
        raise ValueError(f"Input X is not a valid {X.format.upper()} matrix: its index pointer "
                         "array does not match its shape, indices and values.")
    used = indices[:indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= n_minor):
        axis = "column" if X.format == "csr" else "row"
        raise ValueError(f"Input X is not a valid {X.format.upper()} matrix: its {axis} indices "
                         f"must lie in [0, {n_minor}), got {used.min()} to {used.max()}.")
    return X


def kernel_input(X):
    """Training input in the one layout the kernels compile for: float32, and
    C-contiguous when dense, ``SparseRows`` when sparse."""
    given = X
    values = X.data if sp.issparse(X) else X
    # validated input is finite, but float64 values can overflow float32; max and
    # min allocate nothing (np.isfinite on the converted input took a byte per value)
    if (values.dtype.kind == "f" and values.dtype != np.float32 and values.size
            and max(values.max(), -values.min()) > _FLOAT32_MAX):
        raise ValueError(_BEYOND_FLOAT32)
    if not sp.issparse(X):
        return np.ascontiguousarray(X, dtype=np.float32)
    X = X.tocsr()
    summed = not X.has_canonical_format
    X = X.astype(np.float32, copy=False)  # which may sum the duplicates already
    if not X.has_canonical_format:
        # sorted and without duplicates: the kernels take a row with n_features
        # entries for one listing every feature once, in order
        X = X.copy() if X is given else X  # sum_duplicates works in place
        X.sum_duplicates()
    if summed and not np.isfinite(X.data).all():  # two entries summed past float32's range
        raise ValueError(_BEYOND_FLOAT32)
    return SparseRows(X.data, X.indices.astype(np.int32), X.indptr.astype(np.int64), X.shape)
