"""Many classes and multilabel targets with a hashed (sparse) output layer."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from sklearn_hashdl import (
    HashMLPClassifier,
    _classifier,
    _inference,
    make_precision_at_k_scorer,
    make_prototype_classification,
    precision_at_k,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _many_classes(n_classes=300, rows_per_class=4, seed=0):
    X, y = make_prototype_classification(n_samples=n_classes * rows_per_class, n_classes=n_classes,
                                         n_features=3000, random_state=seed, shuffle=False)
    # rows come grouped by class: the last row of each class is the test row
    test = np.zeros(len(y), bool)
    test[rows_per_class - 1 :: rows_per_class] = True
    return X[~test], y[~test], X[test], y[test]


@pytest.mark.parametrize("selection", ["exact", "lsh_rerank", "lsh"])
def test_hashed_output_layer_learns_many_classes(selection):
    X, y, X_test, y_test = _many_classes()
    clf = HashMLPClassifier((64,), sparse_layers="output", sparsity=0.1, selection=selection,
                            max_iter=15, random_state=0).fit(X, y)
    assert clf._n_active.tolist() == [64, 30]  # dense hidden layer, 30 of 300 outputs
    assert 0.05 < clf.active_fraction_[1] < 0.2  # the true labels are added on top
    assert clf.score(X_test, y_test) > 0.7  # the dense network gets 0.82, chance 0.003
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X_test), clf.classes_[proba.argmax(axis=1)])


def test_auto_hashes_the_output_layer_from_a_width(monkeypatch):
    X, y, _, _ = _many_classes(n_classes=50, rows_per_class=3)
    monkeypatch.setattr(_classifier, "AUTO_SPARSE_OUTPUT_MIN_WIDTH", 50)
    clf = HashMLPClassifier((20,), min_active=1, sparsity=0.2, max_iter=2, random_state=0).fit(X, y)
    assert clf._n_active.tolist() == [4, 10]
    monkeypatch.setattr(_classifier, "AUTO_SPARSE_OUTPUT_MIN_WIDTH", 51)
    clf = HashMLPClassifier((20,), min_active=1, sparsity=0.2, max_iter=2, random_state=0).fit(X, y)
    assert clf._n_active.tolist() == [4, 50]
    clf.set_params(sparse_layers="both").fit(X, y)
    assert clf._n_active.tolist() == [4, 10]
    clf.set_params(sparse_layers="hidden").fit(X, y)
    assert clf._n_active.tolist() == [4, 50]


def test_prediction_in_small_chunks_equals_one_chunk(monkeypatch):
    X, y, X_test, _ = _many_classes(n_classes=100, rows_per_class=3)
    for mode in ("topk", "hashed"):
        clf = HashMLPClassifier((32,), min_active=1, sparse_layers="both", sparsity=0.1,
                                selection="lsh_rerank", predict_mode=mode, max_iter=3,
                                random_state=0).fit(X, y)
        whole = clf.predict_proba(X_test)
        monkeypatch.setattr(_inference, "CHUNK_ELEMENTS", 300)  # 3 rows per chunk
        np.testing.assert_allclose(clf.predict_proba(X_test), whole, rtol=1e-6)
        np.testing.assert_array_equal(clf.predict(X_test), clf.classes_[whole.argmax(axis=1)])
        monkeypatch.undo()
        assert np.all(whole > 0)  # every output is scored, in both modes


@pytest.mark.parametrize("loss", ["logistic", "softmax"])
def test_multilabel_with_a_hashed_output_layer(loss):
    X, Y = make_prototype_classification(n_samples=1500, n_classes=200, n_features=2000, n_labels=3,
                                         random_state=1)
    clf = HashMLPClassifier((64,), sparse_layers="output", sparsity=0.1, multilabel_loss=loss,
                            max_iter=20, random_state=0).fit(X[:1200], Y[:1200])
    assert clf.out_activation_ == loss
    proba = clf.predict_proba(X[1200:])
    assert proba.shape == (300, 200)
    if loss == "softmax":
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert precision_at_k(Y[1200:], proba, k=1) > 0.7
    predicted = clf.predict(X[1200:])
    assert sp.issparse(predicted)  # sparse y in, sparse indicator out (as MLPClassifier)
    predicted = predicted.toarray()
    assert predicted.shape == (300, 200)
    assert set(np.unique(predicted)) <= {0, 1}
    if loss == "softmax":
        # labels at half a true label's share or more: mostly true ones, most rows get some
        hits = np.asarray(sp.csr_matrix(Y[1200:]).multiply(predicted).sum())
        assert hits / max(1, predicted.sum()) > 0.6
        assert (predicted.sum(axis=1) > 0).mean() > 0.7


def test_precision_at_k_scorer_in_a_grid_search():
    X, y, _, _ = _many_classes(n_classes=60, rows_per_class=4)
    search = GridSearchCV(
        HashMLPClassifier((32,), sparse_layers="output", max_iter=5, random_state=0),
        {"sparsity": [0.1, 0.3]}, scoring=make_precision_at_k_scorer(k=1), cv=2,
    ).fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_score_ > 1 / 60


def test_failed_fit_with_a_hashed_output_layer_keeps_the_model():
    X, y, X_test, _ = _many_classes(n_classes=40, rows_per_class=3)
    clf = HashMLPClassifier((16,), sparse_layers="output", sparsity=0.2, max_iter=2,
                            random_state=0).fit(X, y)
    before = clf.predict_proba(X_test)
    with pytest.raises(ValueError):
        clf.partial_fit(X, np.full(len(y), 999))  # a class not seen before
    np.testing.assert_array_equal(clf.predict_proba(X_test), before)
    assert ConvergenceWarning  # imported for the module-level filter


def test_partial_fit_mini_batch_by_mini_batch_trains_every_output():
    # each call draws its own random negatives: with an int seed, calls that
    # each started the seed afresh trained 85 of these 500 outputs, all the
    # stream's other outputs never sampled
    X, y, _, _ = _many_classes(n_classes=10, rows_per_class=160)
    clf = HashMLPClassifier((32,), sparse_layers="output", sparsity=0.02, random_state=0, n_jobs=1)
    clf.partial_fit(X[:8], y[:8], classes=np.arange(500))
    first = clf.coefs_[-1].copy()
    for start in range(8, len(y) - 7, 8):
        clf.partial_fit(X[start: start + 8], y[start: start + 8])
    trained = (clf.coefs_[-1] != first).any(axis=0)
    assert trained.sum() >= 490, trained.sum()


def test_duplicate_csr_entries_train_like_their_sum():
    """Kernels take a row with n_features entries as listing every feature once."""
    rng = np.random.RandomState(0)
    cols = rng.randint(0, 3, 180).astype(np.int32)  # 3 entries per row, some repeated
    X_dup = sp.csr_matrix((np.ones(180), cols, np.arange(0, 181, 3)), shape=(60, 3))
    assert not X_dup.has_canonical_format
    y = rng.randint(0, 20, 60)
    params = dict(hidden_layer_sizes=(), sparse_layers="output", sparsity=0.2, max_iter=5,
                  random_state=0)
    a = HashMLPClassifier(**params).fit(X_dup, y)
    b = HashMLPClassifier(**params).fit(X_dup.copy().tocoo().tocsr(), y)
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], atol=1e-6)


@pytest.mark.parametrize("sparse_layers", ["hidden", "output"])
def test_a_label_listed_twice_in_a_sparse_y_is_one_label(sparse_layers):
    # softmax spreads a row's target over its labels: a duplicated entry once
    # halved every target of its row
    rng = np.random.RandomState(0)
    X = rng.rand(200, 6)
    Y = sp.csr_matrix((rng.rand(200, 4) < 0.4) | (np.arange(4) == 0))
    Y_twice = sp.csr_matrix((np.repeat(Y.data, 2), np.repeat(Y.indices, 2), Y.indptr * 2),
                            shape=Y.shape)
    assert not Y_twice.has_canonical_format
    params = dict(hidden_layer_sizes=(16,), min_active=1, max_iter=5, random_state=0, n_jobs=1,
                  multilabel_loss="softmax", sparse_layers=sparse_layers, sparsity=0.5)
    once = HashMLPClassifier(**params).fit(X, Y)
    twice = HashMLPClassifier(**params).fit(X, Y_twice)
    np.testing.assert_array_equal(twice.loss_curve_, once.loss_curve_)
    for ours, theirs in zip(twice.coefs_, once.coefs_):
        np.testing.assert_array_equal(ours, theirs)
    assert Y_twice.nnz == 2 * Y.nnz  # the caller's matrix is left as it was


@pytest.mark.parametrize("sparse", [False, True])
def test_a_uint8_indicator_of_many_labels_trains_as_int64(sparse):
    # scikit-learn's LabelBinarizer moved a uint8 indicator's labels past column
    # 255 (the Delicious files store 983 labels as uint8): P@1 0.02 against 0.52
    rng = np.random.RandomState(0)
    X = rng.rand(300, 10)
    Y = (rng.rand(300, 300) < 0.05).astype(np.uint8)
    if sparse:
        Y = sp.csr_matrix(Y)
    params = dict(hidden_layer_sizes=(16,), min_active=1, max_iter=2, random_state=0, n_jobs=1)
    small = HashMLPClassifier(**params).fit(X, Y)
    wide = HashMLPClassifier(**params).fit(X, Y.astype(np.int64))
    for a, b in zip(small.coefs_, wide.coefs_):
        np.testing.assert_array_equal(a, b)
    labels = np.arange(Y.shape[1])
    partial = HashMLPClassifier(**params).partial_fit(X, Y, classes=labels)
    np.testing.assert_array_equal(partial.coefs_[-1], HashMLPClassifier(**params).partial_fit(
        X, Y.astype(np.int64), classes=labels).coefs_[-1])


def test_sparse_column_vector_target():
    X, y, _, _ = _many_classes(n_classes=10, rows_per_class=4)
    with pytest.warns(Warning, match="column-vector"):
        clf = HashMLPClassifier((8,), min_active=1, max_iter=2, random_state=0)
        clf.fit(X, sp.csr_matrix(y[:, None]))
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
