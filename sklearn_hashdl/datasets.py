"""Synthetic extreme-classification data: many classes over sparse bag-of-words features."""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_prototype_classification"]

# Random keys drawn per chunk when sampling densely (k > n_pop / 2); bounds the
# temporary (chunk, n_pop) array to this many float64 values.
_DENSE_CHUNK_VALUES = 2**22


def _distinct_rows(rng, n_rows, n_pop, k):
    """Draw, for every row, k distinct integers uniformly from range(n_pop).

    Returns an int64 array of shape (n_rows, k) with each row sorted.
    """
    if 2 * k > n_pop:
        # Dense regime: rejection would need many rounds, but the output is at
        # least half of (n_rows, n_pop) anyway, so random keys per row cost no more.
        out = np.empty((n_rows, k), dtype=np.int64)
        step = max(1, _DENSE_CHUNK_VALUES // n_pop)
        for start in range(0, n_rows, step):
            keys = rng.random_sample((min(step, n_rows - start), n_pop))
            out[start:start + step] = np.argpartition(keys, k - 1, axis=1)[:, :k]
        out.sort(axis=1)
        return out
    # Sparse regime: draw with replacement and redraw the duplicates. Every redraw
    # succeeds with probability >= 1/2, so a handful of rounds suffice. The
    # process treats all values alike, so each k-subset is equally likely.
    out = rng.randint(n_pop, size=(n_rows, k)).astype(np.int64, copy=False)
    out.sort(axis=1)
    rows = np.arange(n_rows)
    while True:
        dup = out[rows, 1:] == out[rows, :-1]
        has_dup = dup.any(axis=1)
        if not has_dup.any():
            return out
        rows, dup = rows[has_dup], dup[has_dup]
        sub = out[rows]
        sub[:, 1:][dup] = rng.randint(n_pop, size=int(dup.sum()))
        sub.sort(axis=1)
        out[rows] = sub


def _balanced_classes(rng, n_samples, n_classes, shuffle):
    """Class of every row: each class gets floor or ceil of n_samples / n_classes rows."""
    counts = np.full(n_classes, n_samples // n_classes, dtype=np.int64)
    # Which classes receive the remainder's extra row is random, not the lowest ids.
    counts[rng.choice(n_classes, n_samples % n_classes, replace=False)] += 1
    y = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    if shuffle:
        y = y[rng.permutation(n_samples)]
    return y


def _weighted_subset(rng, features, weights, k):
    """Per row, k of the row's features without replacement, proportional to weights.

    Successive weighted sampling through Efraimidis-Spirakis keys u ** (1 / w):
    the k largest keys are a weighted sample without replacement.
    """
    n_rows, p = features.shape
    if k == p:
        return features
    keys = np.log(1.0 - rng.random_sample((n_rows, p))) / weights  # log keeps the order
    top = np.argpartition(keys, p - k, axis=1)[:, p - k:]
    return np.take_along_axis(features, top, axis=1)


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_classes": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_prototype_features": [Interval(Integral, 1, None, closed="left")],
        "n_active_prototype": [Interval(Integral, 1, None, closed="left")],
        "n_noise_features": [Interval(Integral, 0, None, closed="left")],
        "n_labels": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "return_prototypes": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_prototype_classification(
    n_samples=10000,
    n_classes=1000,
    n_features=10000,
    *,
    n_prototype_features=20,
    n_active_prototype=10,
    n_noise_features=10,
    n_labels=1,
    shuffle=True,
    random_state=None,
    return_prototypes=False,
):
    """Generate a many-class problem over sparse binary bag-of-words features.

    Every class has a prototype: ``n_prototype_features`` distinct feature ids,
    drawn uniformly without replacement from all features (classes may share
    features), with weights drawn uniformly from (0, 1] and normalised to sum to
    one per class. A sample of class ``c`` switches on ``n_active_prototype``
    features of ``c``'s prototype, drawn without replacement with probability
    proportional to the prototype weights (successive weighted sampling), plus
    ``n_noise_features`` features drawn uniformly with replacement from all
    features. Values are 1.0; a feature drawn twice is stored once, so a row
    has at most ``n_labels * n_active_prototype + n_noise_features`` non-zeros.

    Classes are spread evenly: every class gets ``n_samples // n_classes`` or
    one more rows, so even with very many classes each has training rows.
    Generation is vectorised and never builds an (n_samples, n_features) or
    (n_samples, n_classes) dense array; 200,000 samples of 100,000 classes over
    100,000 features take a few seconds.

    Parameters
    ----------
    n_samples : int, default=10000
        Number of rows.
    n_classes : int, default=1000
        Number of classes.
    n_features : int, default=10000
        Number of features (columns of X).
    n_prototype_features : int, default=20
        Features in each class prototype; at most ``n_features``.
    n_active_prototype : int, default=10
        Prototype features switched on per sample and label; at most
        ``n_prototype_features``.
    n_noise_features : int, default=10
        Features per sample drawn uniformly from all features.
    n_labels : int, default=1
        Classes per sample; at most ``n_classes``. With more than one, each
        sample draws ``n_labels`` distinct classes - the first spread evenly as
        above, the others uniformly at random - and carries
        ``n_active_prototype`` prototype features of each.
    shuffle : bool, default=True
        Shuffle the rows; otherwise they are ordered by (first) class.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator; an int gives identical output on every call.
    return_prototypes : bool, default=False
        Also return the class prototypes.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), dtype float32
        Binary features, with sorted indices and no duplicate entries.
    y : ndarray of shape (n_samples,), dtype int64, or scipy.sparse.csr_matrix \
of shape (n_samples, n_classes), dtype int64
        Class ids in ``range(n_classes)`` if ``n_labels == 1``, otherwise a
        label-indicator matrix with exactly ``n_labels`` ones per row.
    prototypes : scipy.sparse.csr_matrix of shape (n_classes, n_features), dtype float64
        Only if ``return_prototypes``: row ``c`` holds class ``c``'s prototype
        weights (summing to one) at its feature ids, with sorted indices.

    Examples
    --------
    >>> from sklearn_hashdl.datasets import make_prototype_classification
    >>> X, y = make_prototype_classification(300, 100, 1000, random_state=0)
    >>> X.shape, y.shape
    ((300, 1000), (300,))
    """
    if n_prototype_features > n_features:
        raise ValueError(
            f"n_prototype_features ({n_prototype_features}) must not exceed n_features ({n_features})."
        )
    if n_active_prototype > n_prototype_features:
        raise ValueError(
            f"n_active_prototype ({n_active_prototype}) must not exceed "
            f"n_prototype_features ({n_prototype_features})."
        )
    if n_labels > n_classes:
        raise ValueError(f"n_labels ({n_labels}) must not exceed n_classes ({n_classes}).")
    rng = check_random_state(random_state)

    proto_features = _distinct_rows(rng, n_classes, n_features, n_prototype_features)
    proto_weights = 1.0 - rng.random_sample((n_classes, n_prototype_features))  # in (0, 1]
    proto_weights /= proto_weights.sum(axis=1, keepdims=True)

    labels = _balanced_classes(rng, n_samples, n_classes, shuffle)[:, None]
    if n_labels > 1:
        # The other labels: distinct values of range(n_classes - 1), shifted past
        # the first label so that none equals it.
        others = _distinct_rows(rng, n_samples, n_classes - 1, n_labels - 1)
        others += others >= labels
        labels = np.hstack([labels, others])

    parts = [
        _weighted_subset(rng, proto_features[labels[:, j]], proto_weights[labels[:, j]], n_active_prototype)
        for j in range(n_labels)
    ]
    parts.append(rng.randint(n_features, size=(n_samples, n_noise_features)).astype(np.int64, copy=False))
    cols = np.hstack(parts)
    cols.sort(axis=1)
    keep = np.ones(cols.shape, dtype=bool)
    keep[:, 1:] = cols[:, 1:] != cols[:, :-1]
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    index_dtype = np.int32 if max(n_features, indptr[-1]) < np.iinfo(np.int32).max else np.int64
    X = sp.csr_matrix(
        (np.ones(indptr[-1], dtype=np.float32), cols[keep].astype(index_dtype), indptr.astype(index_dtype)),
        shape=(n_samples, n_features),
    )
    X.has_sorted_indices = True

    if n_labels == 1:
        y = labels[:, 0]
    else:
        labels.sort(axis=1)
        y = sp.csr_matrix(
            (np.ones(labels.size, dtype=np.int64), labels.ravel(),
             np.arange(0, labels.size + 1, n_labels, dtype=np.int64)),
            shape=(n_samples, n_classes),
        )
        y.has_sorted_indices = True

    if not return_prototypes:
        return X, y
    prototypes = sp.csr_matrix(
        (proto_weights.ravel(), proto_features.ravel(),
         np.arange(0, proto_features.size + 1, n_prototype_features, dtype=np.int64)),
        shape=(n_classes, n_features),
    )
    prototypes.has_sorted_indices = True
    return X, y, prototypes
