"""make_prototype_classification: format, reproducibility, balanced classes, rows built
from their class prototypes, learnability, multilabel output and parameter errors."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neighbors import NearestCentroid
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.multiclass import type_of_target

from sklearn_hashdl.datasets import make_prototype_classification


def _prototype_hits(X, prototypes, classes):
    """Per row of X, how many of its features lie in the prototype of classes[row]."""
    return np.asarray(X.multiply(prototypes[classes] != 0).sum(axis=1)).ravel()


def _check_format(X, n_samples, n_features, max_row_nnz):
    assert sp.issparse(X) and X.format == "csr"
    assert X.shape == (n_samples, n_features)
    assert X.dtype == np.float32
    assert np.all(X.data == 1.0)
    X_copy = X.copy()
    X_copy.sort_indices()
    X_copy.sum_duplicates()
    assert np.array_equal(X_copy.indices, X.indices) and np.array_equal(X_copy.indptr, X.indptr)
    assert X.getnnz(axis=1).max() <= max_row_nnz


def test_format_and_prototypes():
    X, y, P = make_prototype_classification(
        600, 50, 300, n_prototype_features=15, n_active_prototype=6, n_noise_features=4,
        random_state=0, return_prototypes=True,
    )
    _check_format(X, 600, 300, 6 + 4)
    assert y.shape == (600,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(50))

    assert sp.issparse(P) and P.format == "csr" and P.shape == (50, 300)
    assert np.all(P.getnnz(axis=1) == 15) and np.all(P.data > 0)
    assert np.all(np.diff(P.indices.reshape(50, 15), axis=1) > 0)  # sorted, distinct
    np.testing.assert_allclose(np.asarray(P.sum(axis=1)).ravel(), 1.0)

    # The active features are distinct prototype features; noise may add more.
    assert np.all(_prototype_hits(X, P, y) >= 6)


def test_reproducible():
    kwargs = {"n_samples": 400, "n_classes": 40, "n_features": 500, "return_prototypes": True}
    a = make_prototype_classification(random_state=3, **kwargs)
    b = make_prototype_classification(random_state=np.random.RandomState(3), **kwargs)
    c = make_prototype_classification(random_state=4, **kwargs)
    for u, v in zip((a[0], a[2]), (b[0], b[2])):
        assert (u != v).nnz == 0 and np.array_equal(u.indices, v.indices)
    assert np.array_equal(a[1], b[1])
    assert (a[0] != c[0]).nnz > 0


@pytest.mark.parametrize("n_samples, n_classes", [(300, 100), (1234, 100), (70, 100), (5, 1)])
def test_classes_spread_evenly(n_samples, n_classes):
    _, y = make_prototype_classification(n_samples, n_classes, 200, random_state=0)
    counts = np.bincount(y, minlength=n_classes)
    assert counts.sum() == n_samples
    assert counts.min() == n_samples // n_classes and counts.max() - counts.min() <= 1


def test_shuffle():
    _, y_sorted = make_prototype_classification(500, 20, 100, shuffle=False, random_state=0)
    _, y_shuffled = make_prototype_classification(500, 20, 100, shuffle=True, random_state=0)
    assert np.all(np.diff(y_sorted) >= 0)
    assert np.any(np.diff(y_shuffled) < 0)
    assert np.array_equal(np.sort(y_shuffled), y_sorted)


def test_dense_sampling_regime():
    # Prototypes of nearly all features and every class as a label: the samplers
    # must still return distinct values.
    X, y, P = make_prototype_classification(
        200, 6, 10, n_prototype_features=9, n_active_prototype=9, n_noise_features=0,
        n_labels=6, random_state=0, return_prototypes=True,
    )
    assert np.all(P.getnnz(axis=1) == 9)
    assert np.all(y.getnnz(axis=1) == 6) and np.all(y.data == 1)
    _check_format(X, 200, 10, 10)


def test_weighted_prototype_sampling():
    # One active feature per row: it is drawn with probability equal to its weight.
    X, y, P = make_prototype_classification(
        40000, 2, 50, n_prototype_features=5, n_active_prototype=1, n_noise_features=0,
        random_state=0, return_prototypes=True,
    )
    for c in range(2):
        rows = X[y == c]
        freq = np.asarray(rows.sum(axis=0)).ravel() / rows.shape[0]
        np.testing.assert_allclose(freq, P[c].toarray().ravel(), atol=0.02)


def test_learnable_by_nearest_centroid():
    # 2000 classes with 5 rows each: 4 train, 1 test per class. Chance is 1/2000.
    n_classes = 2000
    X, y = make_prototype_classification(5 * n_classes, n_classes, 5000, random_state=0)
    _, first = np.unique(y, return_index=True)
    test = np.zeros(len(y), dtype=bool)
    test[first] = True
    clf = NearestCentroid().fit(X[~test], y[~test])
    assert clf.score(X[test], y[test]) > 0.5


def test_multilabel():
    n_labels = 3
    X, y, P = make_prototype_classification(
        500, 30, 400, n_active_prototype=5, n_noise_features=7, n_labels=n_labels,
        random_state=0, return_prototypes=True,
    )
    _check_format(X, 500, 400, n_labels * 5 + 7)
    assert sp.issparse(y) and y.format == "csr" and y.shape == (500, 30)
    assert y.dtype == np.int64 and np.all(y.data == 1)
    assert np.all(y.getnnz(axis=1) == n_labels)
    assert type_of_target(y) == "multilabel-indicator"
    labels = y.indices.reshape(500, n_labels)
    assert np.all(np.diff(labels, axis=1) > 0)
    for j in range(n_labels):
        assert np.all(_prototype_hits(X, P, labels[:, j]) >= 5)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n_samples": 0}, InvalidParameterError),
        ({"n_classes": -1}, InvalidParameterError),
        ({"n_features": 0}, InvalidParameterError),
        ({"n_prototype_features": 0}, InvalidParameterError),
        ({"n_active_prototype": 0}, InvalidParameterError),
        ({"n_noise_features": -1}, InvalidParameterError),
        ({"n_labels": 0}, InvalidParameterError),
        ({"n_samples": 10.5}, InvalidParameterError),
        ({"random_state": "seed"}, InvalidParameterError),
        ({"n_features": 10, "n_prototype_features": 11}, ValueError),
        ({"n_prototype_features": 5, "n_active_prototype": 6}, ValueError),
        ({"n_classes": 3, "n_labels": 4}, ValueError),
    ],
)
def test_invalid_parameters(kwargs, error):
    params = {"n_samples": 20, "n_classes": 5, "n_features": 100}
    params.update(kwargs)
    with pytest.raises(error):
        make_prototype_classification(**params)
