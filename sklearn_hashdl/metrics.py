"""Precision at k, the standard metric of extreme multi-label classification.

``precision_at_k`` scores a matrix of label scores against the true labels;
``make_precision_at_k_scorer`` wraps it as a ``scoring=`` callable that predicts
in row chunks, so that evaluating a model with many labels never holds the full
(n_samples, n_labels) score matrix in memory.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.metadata_routing import UNCHANGED, MetadataRequest
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _num_samples, check_array, check_consistent_length, column_or_1d

__all__ = ["make_precision_at_k_scorer", "precision_at_k"]

# Rows per chunk, and a cap on chunk rows x columns: argpartition allocates an int64
# index array of the chunk's size, so with 100k labels a 4096-row chunk would need
# 3 GB; 2**22 elements keeps the temporaries near 32 MB while still amortising the
# per-chunk Python overhead.
_CHUNK_ROWS = 4096
_CHUNK_ELEMENTS = 2**22


@validate_params(
    {
        "y_true": ["array-like", "sparse matrix"],
        "y_score": ["array-like"],
        "k": [Interval(Integral, 1, None, closed="left")],
        "labels": ["array-like", None],
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def precision_at_k(y_true, y_score, *, k=1, labels=None, sample_weight=None):
    """Precision at k: the fraction of the k highest-scored labels that are true.

    For each sample, the number of true labels among the ``k`` columns of
    ``y_score`` with the highest scores is divided by ``k``; the result is the
    (weighted) mean over samples.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_labels) or (n_samples,)
        True labels: a 0/1 label-indicator matrix (dense or sparse), or class
        labels of a binary or multiclass problem.
    y_score : array-like of shape (n_samples, n_labels) or (n_samples,)
        Scores or probabilities, one column per label. For binary class labels,
        a 1-D array is read as the score of the positive class (``labels[1]``,
        by default the greater label), as in
        :func:`sklearn.metrics.top_k_accuracy_score`: it is compared with a
        threshold of 0.5 if all scores lie in [0, 1], else with 0.
    k : int, default=1
        Number of top-scored labels per sample. ``k`` may exceed the number of
        labels: all labels are then taken, but the denominator stays ``k``
        (the usual definition of P@k), so the score can no longer reach 1.
    labels : array-like of shape (n_labels,), default=None
        Only for class-label ``y_true``: the label of each column of
        ``y_score``. By default the sorted unique values of ``y_true``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    score : float
        Precision at k, in [0, 1].

    Notes
    -----
    Ties among scores are broken by the lower column index, so the result is
    deterministic. For class labels (one true label per sample), P@k equals
    top-k accuracy divided by ``k``; with ``k=1`` it is the accuracy of the
    argmax prediction.

    The computation works on chunks of rows with ``np.argpartition``, so its
    temporaries stay bounded however many labels there are.

    Examples
    --------
    >>> from sklearn_hashdl.metrics import precision_at_k
    >>> y_true = [[1, 0, 1], [0, 1, 0]]
    >>> y_score = [[0.9, 0.5, 0.1], [0.2, 0.1, 0.7]]
    >>> precision_at_k(y_true, y_score, k=2)
    0.25
    """
    y_score = check_array(y_score, ensure_2d=False, dtype="numeric", input_name="y_score")
    check_consistent_length(y_true, y_score, sample_weight)
    targets = _Targets(y_true, labels)
    if y_score.ndim == 1:
        if not targets.is_binary:
            raise ValueError(
                "y_score of shape (n_samples,) is only supported for binary class labels; "
                f"y_true has {targets.n_columns} labels. Pass one column of scores per label."
            )
        threshold = 0.5 if y_score.min() >= 0 and y_score.max() <= 1 else 0.0
        y_score = _binary_columns(y_score, threshold)
    targets.check_width(y_score.shape[1])
    hits = _count_hits(targets, y_score, 0, k)
    return _weighted_mean(hits / k, sample_weight)


class _PrecisionAtKScorer:
    """Scorer returned by :func:`make_precision_at_k_scorer`."""

    def __init__(self, k, chunk_rows):
        self.k = k
        self.chunk_rows = chunk_rows
        # what metadata routing passes to the scorer: sample_weight once requested;
        # until then passing it is an error, as for scikit-learn's scorers
        self._metadata_request = MetadataRequest(owner=self)
        self._metadata_request.score.add_request(param="sample_weight", alias=None)

    def set_score_request(self, *, sample_weight=UNCHANGED):
        """Request ``sample_weight`` under metadata routing, as scikit-learn's scorers
        do (True, False, None or an alias; left as it is by default); returns the scorer."""
        if not get_config().get("enable_metadata_routing", False):
            raise RuntimeError("This method is only available when metadata routing is enabled. "
                               "You can enable it using sklearn.set_config(enable_metadata_routing=True).")
        if sample_weight is not UNCHANGED:
            self._metadata_request.score.add_request(param="sample_weight", alias=sample_weight)
        return self

    def get_metadata_routing(self):
        """The metadata this scorer requests (see ``set_score_request``)."""
        return self._metadata_request

    def __call__(self, estimator, X, y, sample_weight=None):
        """Precision at k of ``estimator``'s scores on ``X`` against ``y``."""
        method = getattr(estimator, "predict_proba", None)
        threshold = 0.5
        if method is None:
            method = getattr(estimator, "decision_function", None)
            threshold = 0.0
        if method is None:
            raise TypeError(
                f"{type(estimator).__name__} has neither predict_proba nor decision_function; "
                "precision at k needs a score per label."
            )
        if sp.issparse(X) and X.format not in ("csr", "csc"):
            X = X.tocsr()  # COO and others cannot be sliced by rows
        check_consistent_length(X, y, sample_weight)
        is_indicator = sp.issparse(y) or np.ndim(y) == 2 and np.shape(y)[1] > 1
        targets = _Targets(y, None if is_indicator else estimator.classes_)
        n_samples = _num_samples(X)
        hits = np.empty(n_samples, dtype=np.int64)
        for start in range(0, n_samples, self.chunk_rows):
            stop = min(start + self.chunk_rows, n_samples)
            scores = method(_safe_indexing(X, np.arange(start, stop)))
            if isinstance(scores, list):
                raise TypeError(
                    f"{type(estimator).__name__}.{method.__name__} returned a list (one array per "
                    "output); precision at k needs a single (n_samples, n_labels) score matrix."
                )
            scores = check_array(scores, ensure_2d=False, dtype="numeric", input_name="y_score")
            if scores.ndim == 1 and targets.is_binary:
                scores = _binary_columns(scores, threshold)
            if scores.ndim != 2 or scores.shape[0] != stop - start:
                raise ValueError(
                    f"{type(estimator).__name__}.{method.__name__} returned scores of shape "
                    f"{scores.shape} for {stop - start} samples."
                )
            targets.check_width(scores.shape[1])
            hits[start:stop] = _count_hits(targets, scores, start, self.k)
        return _weighted_mean(hits / self.k, sample_weight)

    def __repr__(self):
        extra = "" if self.chunk_rows == 2048 else f", chunk_rows={self.chunk_rows}"
        return f"make_precision_at_k_scorer(k={self.k}{extra})"


@validate_params(
    {
        "k": [Interval(Integral, 1, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def make_precision_at_k_scorer(k=1, chunk_rows=2048):
    """Make a scorer of precision at k for ``scoring=`` in model selection.

    The scorer calls the estimator's ``predict_proba`` (or ``decision_function``
    if it has none) on ``chunk_rows`` rows of ``X`` at a time, so memory stays
    bounded by ``chunk_rows x n_labels`` scores. For class-label ``y`` the score
    columns are matched to ``estimator.classes_``; a label-indicator ``y`` is
    matched column by column. Greater is better.

    Parameters
    ----------
    k : int, default=1
        Number of top-scored labels per sample, see :func:`precision_at_k`.
    chunk_rows : int, default=2048
        Rows of ``X`` scored per call to the estimator.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, sample_weight=None)`` returning a float.

    Examples
    --------
    >>> from sklearn_hashdl.metrics import make_precision_at_k_scorer
    >>> make_precision_at_k_scorer(k=5)
    make_precision_at_k_scorer(k=5)
    """
    return _PrecisionAtKScorer(int(k), int(chunk_rows))


class _Targets:
    """Validated y_true: either class indices into the score columns or a 0/1 indicator matrix.

    Only validation that is linear in the input is done here; dense indicator
    values are checked chunk by chunk in ``hits``.
    """

    def __init__(self, y_true, labels):
        if sp.issparse(y_true) or np.ndim(y_true) == 2 and np.shape(y_true)[1] > 1:
            if labels is not None:
                raise ValueError("'labels' is only supported for class-label y_true, not for a "
                                 "label-indicator matrix.")
            Y = check_array(y_true, accept_sparse="csr", dtype=None, input_name="y_true")
            if Y.dtype.kind not in "biuf":
                raise ValueError(f"A label-indicator y_true must be numeric, got dtype {Y.dtype}.")
            if sp.issparse(Y):
                if not Y.has_canonical_format:
                    Y = Y.copy()  # do not reorder the caller's matrix
                    Y.sum_duplicates()
                _check_indicator_values(Y.data)
            self.indicator = Y
            self.n_columns = Y.shape[1]
            self.is_binary = False
        else:
            y = column_or_1d(check_array(y_true, ensure_2d=False, dtype=None, input_name="y_true"),
                             warn=True)
            y_type = type_of_target(y, input_name="y_true")
            if y_type not in ("binary", "multiclass"):
                raise ValueError(
                    f"y_true must be class labels (binary or multiclass) or a label-indicator "
                    f"matrix, got target type {y_type!r}."
                )
            if labels is None:
                labels, self.codes = np.unique(y, return_inverse=True)
            else:
                labels = column_or_1d(labels)
                sorter = np.argsort(labels, kind="stable")
                sorted_labels = labels[sorter]
                if len(labels) != len(np.unique(labels)):
                    raise ValueError("Parameter 'labels' must be unique.")
                pos = np.minimum(np.searchsorted(sorted_labels, y), len(labels) - 1)
                unknown = sorted_labels[pos] != y
                if unknown.any():
                    raise ValueError(
                        f"y_true contains labels not in 'labels': {np.unique(y[unknown]).tolist()}."
                    )
                self.codes = sorter[pos]
            self.indicator = None
            self.n_columns = len(labels)
            self.is_binary = len(labels) == 2

    def check_width(self, n_score_columns):
        if n_score_columns == self.n_columns:
            return
        if self.indicator is not None:
            raise ValueError(
                f"y_true has {self.n_columns} label columns but y_score has {n_score_columns} columns."
            )
        raise ValueError(
            f"y_true has {self.n_columns} labels (from 'labels' or the unique values of y_true) "
            f"but y_score has {n_score_columns} columns; they must match."
        )

    def hits(self, start, stop, top):
        """Number of true labels among columns ``top`` (all columns if None) of rows start:stop."""
        if self.indicator is None:
            if top is None:
                return np.ones(stop - start, dtype=np.int64)
            return np.count_nonzero(top == self.codes[start:stop, None], axis=1)
        Y = self.indicator
        if not sp.issparse(Y):
            chunk = Y[start:stop]
            _check_indicator_values(chunk)
            if top is None:
                return np.count_nonzero(chunk, axis=1)
            return np.count_nonzero(np.take_along_axis(chunk, top, axis=1), axis=1)
        # Sparse: the true (row, column) pairs of a canonical CSR chunk, encoded as
        # row * n_columns + column, come out sorted, so membership of the top-k pairs
        # is one searchsorted: no densifying, O(nnz + rows x k) per chunk.
        lo, hi = Y.indptr[start], Y.indptr[stop]
        rows = np.repeat(np.arange(stop - start), np.diff(Y.indptr[start:stop + 1]))
        nonzero = Y.data[lo:hi] != 0  # explicit zeros are not true labels
        rows = rows[nonzero]
        if top is None:
            return np.bincount(rows, minlength=stop - start)
        true_keys = rows * np.int64(self.n_columns) + Y.indices[lo:hi][nonzero]
        top_keys = np.arange(stop - start)[:, None] * np.int64(self.n_columns) + top
        if true_keys.size == 0:
            return np.zeros(stop - start, dtype=np.int64)
        pos = np.minimum(np.searchsorted(true_keys, top_keys), true_keys.size - 1)
        return np.count_nonzero(true_keys[pos] == top_keys, axis=1)


def _check_indicator_values(values):
    if not ((values == 0) | (values == 1)).all():
        raise ValueError("A label-indicator y_true must contain only 0 and 1.")


def _binary_columns(score, threshold):
    """Two score columns (negative, positive class) ranking like ``score > threshold``."""
    centred = score.astype(np.float64) - threshold
    return np.column_stack([-centred, centred])


def _count_hits(targets, scores, start, k):
    """Per-row true labels among the top-k columns of ``scores`` (rows start: of targets)."""
    n_rows, n_columns = scores.shape
    hits = np.empty(n_rows, dtype=np.int64)
    step = max(1, min(_CHUNK_ROWS, _CHUNK_ELEMENTS // max(n_columns, 1)))
    for lo in range(0, n_rows, step):
        hi = min(lo + step, n_rows)
        top = _top_k_columns(scores[lo:hi], k)
        hits[lo:hi] = targets.hits(start + lo, start + hi, top)
    return hits


def _top_k_columns(S, k):
    """Column indices (in no particular order) of the k highest scores of each row of S.

    Ties at the k-th largest value go to the lower column indices. Returns None if
    k covers all columns.
    """
    n_columns = S.shape[1]
    if k >= n_columns:
        return None
    top = np.argpartition(S, n_columns - k, axis=1)[:, n_columns - k:]
    top_scores = np.take_along_axis(S, top, axis=1)
    kth = top_scores.min(axis=1, keepdims=True)
    # argpartition picks arbitrary columns among those tied at the k-th value; a row
    # needs fixing only when it has more such columns than slots left for them.
    slots = k - np.count_nonzero(top_scores > kth, axis=1)
    tied = S == kth
    ambiguous = np.count_nonzero(tied, axis=1) > slots
    if ambiguous.any():
        tied = tied[ambiguous]
        keep = (S[ambiguous] > kth[ambiguous]) | (tied & (np.cumsum(tied, axis=1) <= slots[ambiguous, None]))
        top[ambiguous] = np.nonzero(keep)[1].reshape(-1, k)
    return top


def _weighted_mean(values, sample_weight):
    if sample_weight is None:
        return float(values.mean())
    weight = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if weight.ndim != 1:  # as scikit-learn's metrics, no column vector either
        raise ValueError(f"sample_weight must be 1-D, got an array of shape {weight.shape}.")
    if (weight < 0).any():
        raise ValueError("sample_weight must be non-negative.")
    total = weight.sum()
    if total == 0:
        raise ValueError("sample_weight sums to zero; the weighted mean is undefined.")
    return float(values @ weight / total)
