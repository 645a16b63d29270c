"""precision_at_k and make_precision_at_k_scorer: hand-checked values, agreement with
a full-argsort reference, tie-breaking, chunking, errors, and use as ``scoring=``."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, RidgeClassifier
from sklearn.metrics import accuracy_score, top_k_accuracy_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_score
from sklearn.multioutput import MultiOutputClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_hashdl import metrics
from sklearn_hashdl.metrics import make_precision_at_k_scorer, precision_at_k

# 3 samples, 4 labels. Top-1 columns are 0, 2, 3 and top-2 sets {0, 1}, {2, 3}, {3, 2}.
Y_SMALL = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
S_SMALL = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.1, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4]])


def reference_precision(Y, S, k, sample_weight=None):
    """P@k by a full stable argsort: ties go to the lower column index."""
    Y = Y.toarray() if sp.issparse(Y) else np.asarray(Y)
    top = np.argsort(-np.asarray(S), axis=1, kind="stable")[:, :k]
    per_row = np.take_along_axis(Y, top, axis=1).sum(axis=1) / k
    return np.average(per_row, weights=sample_weight)


def random_problem(rng, n_samples, n_labels, density=0.1, integer_scores=False):
    Y = (rng.random((n_samples, n_labels)) < density).astype(np.int64)
    if integer_scores:  # few distinct values: many ties
        S = rng.integers(0, 4, size=(n_samples, n_labels)).astype(np.float64)
    else:
        S = rng.standard_normal((n_samples, n_labels))
    return Y, S


@pytest.fixture
def tiny_chunks(monkeypatch):
    # force many small chunks so that chunk boundaries are exercised
    monkeypatch.setattr(metrics, "_CHUNK_ROWS", 5)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 37)


# -- hand-checked values ------------------------------------------------------------------


@pytest.mark.parametrize("make_y", [np.asarray, sp.csr_matrix, sp.csr_array, sp.csc_matrix])
def test_small_example_by_hand(make_y):
    Y = make_y(Y_SMALL)
    # k=1: hits 1, 0, 1
    assert precision_at_k(Y, S_SMALL, k=1) == pytest.approx(2 / 3)
    # k=2: row 0 has label 0 of {0, 1}, row 1 none of {2, 3}, row 2 label 3 of {2, 3}
    assert precision_at_k(Y, S_SMALL, k=2) == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    # k=4 takes every column: hits 2, 1, 1
    assert precision_at_k(Y, S_SMALL, k=4) == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    # k=5 > n_labels: still every column, but the denominator stays 5
    assert precision_at_k(Y, S_SMALL, k=5) == pytest.approx((2 / 5 + 1 / 5 + 1 / 5) / 3)


def test_returns_python_float():
    assert type(precision_at_k(Y_SMALL, S_SMALL)) is float


def test_sample_weight_by_hand():
    # per-row P@1 is 1, 0, 1
    assert precision_at_k(Y_SMALL, S_SMALL, sample_weight=[2, 1, 1]) == pytest.approx(3 / 4)
    assert precision_at_k(Y_SMALL, S_SMALL, sample_weight=[1, 0, 3]) == 1.0
    assert precision_at_k(Y_SMALL, S_SMALL, sample_weight=[0, 1, 0]) == 0.0


def test_sample_weight_must_be_one_dimensional():
    with pytest.raises(ValueError, match="1-D"):
        precision_at_k(Y_SMALL, S_SMALL, sample_weight=[[1], [1], [1]])


def test_integer_sample_weight_equals_repeated_rows():
    rng = np.random.default_rng(0)
    Y, S = random_problem(rng, 40, 12)
    w = rng.integers(0, 4, size=40)
    for k in (1, 3):
        expected = precision_at_k(np.repeat(Y, w, axis=0), np.repeat(S, w, axis=0), k=k)
        assert precision_at_k(Y, S, k=k, sample_weight=w) == pytest.approx(expected)
        assert precision_at_k(Y, S, k=k, sample_weight=w) == pytest.approx(reference_precision(Y, S, k, w))


# -- ties ---------------------------------------------------------------------------------


def test_ties_go_to_lower_column_index():
    S = [[1.0, 1.0, 1.0, 0.0]]
    assert precision_at_k([[0, 0, 1, 0]], S, k=2) == 0.0  # top-2 is {0, 1}
    assert precision_at_k([[0, 0, 1, 0]], S, k=3) == pytest.approx(1 / 3)
    assert precision_at_k([[1, 0, 0, 0]], S, k=1) == 1.0
    assert precision_at_k([[0, 1, 0, 0]], S, k=1) == 0.0
    # an all-zero row (e.g. underflowed probabilities): the first k columns
    zeros = np.zeros((1, 6))
    assert precision_at_k([[0, 1, 0, 0, 0, 1]], zeros, k=2) == 0.5
    assert precision_at_k(sp.csr_matrix([[0, 1, 0, 0, 0, 1]]), zeros, k=2) == 0.5
    # the same for class labels: column 1 (label "b") wins a tie only against later columns
    assert precision_at_k(["b", "b"], [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]], labels=["a", "b", "c"]) == 0.5


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_ties_match_stable_argsort(k, tiny_chunks):
    rng = np.random.default_rng(k)
    Y, S = random_problem(rng, 60, 9, density=0.3, integer_scores=True)
    expected = reference_precision(Y, S, k)
    assert precision_at_k(Y, S, k=k) == pytest.approx(expected)
    assert precision_at_k(sp.csr_matrix(Y), S, k=k) == pytest.approx(expected)
    y = rng.integers(0, 9, size=60)
    assert precision_at_k(y, S, k=k, labels=np.arange(9)) == pytest.approx(
        reference_precision(np.eye(9, dtype=int)[y], S, k))


# -- agreement with the reference ---------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 20, 30])
@pytest.mark.parametrize("sparse", [False, True])
def test_matches_reference_on_random_data(k, sparse):
    rng = np.random.default_rng(k)
    Y, S = random_problem(rng, 300, 20)
    Y_in = sp.csr_matrix(Y) if sparse else Y
    assert precision_at_k(Y_in, S, k=k) == pytest.approx(reference_precision(Y, S, k))


@pytest.mark.parametrize("k", [1, 4])
def test_chunking_does_not_change_the_result(k, monkeypatch):
    rng = np.random.default_rng(1)
    Y, S = random_problem(rng, 53, 11, density=0.2)
    w = rng.random(53)
    Ys = sp.csr_matrix(Y)
    whole = [precision_at_k(Y, S, k=k, sample_weight=w), precision_at_k(Ys, S, k=k, sample_weight=w)]
    monkeypatch.setattr(metrics, "_CHUNK_ROWS", 4)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 23)  # 2 rows per chunk
    chunked = [precision_at_k(Y, S, k=k, sample_weight=w), precision_at_k(Ys, S, k=k, sample_weight=w)]
    assert chunked == whole
    assert whole[0] == whole[1] == pytest.approx(reference_precision(Y, S, k, w))


def test_sparse_indicator_details(tiny_chunks):
    rng = np.random.default_rng(2)
    Y, S = random_problem(rng, 30, 8, density=0.3)
    expected = reference_precision(Y, S, 3)
    # unsorted indices and explicit zeros are handled without touching the caller's matrix
    Ys = sp.csr_matrix(Y)
    Ys.indices = Ys.indices.copy()
    for r in range(Ys.shape[0]):
        lo, hi = Ys.indptr[r], Ys.indptr[r + 1]
        Ys.indices[lo:hi] = Ys.indices[lo:hi][::-1]
    Ys.has_sorted_indices = False
    before = Ys.indices.copy()
    assert precision_at_k(Ys, S, k=3) == pytest.approx(expected)
    np.testing.assert_array_equal(Ys.indices, before)
    with_zeros = sp.csr_matrix(Y)
    with_zeros.data[::3] = 0
    assert precision_at_k(with_zeros, S, k=3) == pytest.approx(reference_precision(with_zeros, S, 3))
    # rows without any true label, and an empty matrix
    assert precision_at_k(sp.csr_matrix((30, 8)), S, k=3) == 0.0


def test_boolean_and_float_indicator_and_integer_scores():
    assert precision_at_k(Y_SMALL.astype(bool), S_SMALL, k=2) == pytest.approx(1 / 3)
    assert precision_at_k(Y_SMALL.astype(float), S_SMALL, k=2) == pytest.approx(1 / 3)
    assert precision_at_k(Y_SMALL, (S_SMALL * 10).astype(int), k=2) == pytest.approx(1 / 3)
    assert precision_at_k(Y_SMALL.tolist(), S_SMALL.tolist(), k=2) == pytest.approx(1 / 3)


# -- class labels -------------------------------------------------------------------------


def test_multiclass_k1_is_accuracy_of_argmax():
    rng = np.random.default_rng(3)
    classes = np.array(["ant", "bee", "cat", "dog", "eel"])
    y = classes[rng.integers(0, 5, size=200)]
    S = rng.random((200, 5))
    assert precision_at_k(y, S) == pytest.approx(accuracy_score(y, classes[S.argmax(axis=1)]))
    w = rng.random(200)
    assert precision_at_k(y, S, sample_weight=w) == pytest.approx(
        accuracy_score(y, classes[S.argmax(axis=1)], sample_weight=w))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_multiclass_is_top_k_accuracy_over_k(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, 4, size=150)
    S = rng.random((150, 4))
    assert precision_at_k(y, S, k=k) == pytest.approx(top_k_accuracy_score(y, S, k=k) / k)


def test_labels_give_the_column_order():
    y = [2, 0, 1]
    S = np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.1, 0.6, 0.3]])
    assert precision_at_k(y, S) == 1.0
    # columns are labels 2, 1, 0 in that order: only the middle sample (label 1) is right
    assert precision_at_k(y, S, labels=[2, 1, 0]) == pytest.approx(1 / 3)
    # a label absent from y_true still owns a column
    assert precision_at_k([0, 0], [[0.9, 0.1, 0.0], [0.1, 0.0, 0.9]], labels=[0, 1, 2]) == 0.5
    # k beyond the number of classes: the true class is always taken, denominator stays k
    assert precision_at_k(y, S, k=4) == pytest.approx(1 / 4)


def test_column_vector_labels_are_raveled():
    with pytest.warns(Warning, match="column-vector"):
        assert precision_at_k(np.array([[2], [0], [1]]), np.eye(3)[[2, 0, 0]]) == pytest.approx(2 / 3)


def test_binary_one_dimensional_score():
    y = [0, 1, 1, 0]
    # probabilities: positive iff score > 0.5 (a tie at 0.5 goes to the negative column 0)
    p = [0.2, 0.7, 0.4, 0.5]
    assert precision_at_k(y, p) == pytest.approx(3 / 4)
    assert precision_at_k(y, p) == pytest.approx(top_k_accuracy_score(y, p, k=1))
    # decision values: positive iff score > 0
    d = np.array([-1.0, 2.0, -0.5, 0.3])
    assert precision_at_k(y, d) == pytest.approx(1 / 2)
    assert precision_at_k(y, d) == precision_at_k(y, np.column_stack([-d, d]))
    # string labels: the positive class is the greater one, or labels[1]
    assert precision_at_k(["no", "yes", "yes", "no"], d) == pytest.approx(1 / 2)
    # with labels=["yes", "no"] the positive column is "no": predictions yes, no, yes, no
    assert precision_at_k(["no", "yes", "yes", "no"], d, labels=["yes", "no"]) == pytest.approx(1 / 2)
    assert precision_at_k(y, d, k=2) == pytest.approx(1 / 2)


# -- errors -------------------------------------------------------------------------------


def test_mismatched_rows():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        precision_at_k(Y_SMALL, S_SMALL[:2])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        precision_at_k([0, 1, 2, 0], S_SMALL)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        precision_at_k(Y_SMALL, S_SMALL, sample_weight=[1, 1])


def test_wrong_widths():
    with pytest.raises(ValueError, match="4 label columns but y_score has 3 columns"):
        precision_at_k(Y_SMALL, S_SMALL[:, :3])
    with pytest.raises(ValueError, match="4 label columns but y_score has 3 columns"):
        precision_at_k(sp.csr_matrix(Y_SMALL), S_SMALL[:, :3])
    with pytest.raises(ValueError, match="y_true has 3 labels .* y_score has 4 columns"):
        precision_at_k([0, 1, 2], S_SMALL)
    with pytest.raises(ValueError, match="y_true has 5 labels .* y_score has 4 columns"):
        precision_at_k([0, 1, 2], S_SMALL, labels=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="only supported for binary"):
        precision_at_k([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="dim 3"):
        precision_at_k([0, 1, 2], np.zeros((3, 3, 1)))


def test_bad_labels():
    with pytest.raises(ValueError, match=r"labels not in 'labels': \[3\]"):
        precision_at_k([0, 3, 1], S_SMALL[:, :3], labels=[0, 1, 2])
    with pytest.raises(ValueError, match="must be unique"):
        precision_at_k([0, 1, 1], S_SMALL[:, :3], labels=[0, 1, 1])
    with pytest.raises(ValueError, match="only supported for class-label"):
        precision_at_k(Y_SMALL, S_SMALL, labels=[0, 1, 2, 3])


def test_bad_targets():
    with pytest.raises(ValueError, match="only 0 and 1"):
        precision_at_k(Y_SMALL * 2, S_SMALL)
    with pytest.raises(ValueError, match="only 0 and 1"):
        precision_at_k(sp.csr_matrix(Y_SMALL * 2), S_SMALL)
    with pytest.raises(ValueError, match="target type 'continuous'"):
        precision_at_k([0.5, 1.5, 2.0], S_SMALL[:, :3])


@pytest.mark.parametrize("k", [0, -1, 1.5, 2.0, "2", None])
def test_bad_k(k):
    with pytest.raises(InvalidParameterError, match="'k' parameter"):
        precision_at_k(Y_SMALL, S_SMALL, k=k)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores(bad):
    S = S_SMALL.copy()
    S[1, 2] = bad
    with pytest.raises(ValueError, match="y_score contains"):
        precision_at_k(Y_SMALL, S)
    with pytest.raises(ValueError, match="y_score contains"):
        precision_at_k([0, 1], [0.3, bad])


def test_bad_sample_weight():
    with pytest.raises(ValueError, match="non-negative"):
        precision_at_k(Y_SMALL, S_SMALL, sample_weight=[1, -1, 1])
    with pytest.raises(ValueError, match="sums to zero"):
        precision_at_k(Y_SMALL, S_SMALL, sample_weight=[0, 0, 0])


# -- scorer -------------------------------------------------------------------------------


def mlp(**params):
    return MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0, **params)


@pytest.fixture(scope="module")
def multiclass():
    return make_classification(n_samples=150, n_features=10, n_informative=6, n_classes=4,
                               random_state=0)


@pytest.fixture(scope="module")
def multilabel():
    return make_multilabel_classification(n_samples=150, n_features=10, n_classes=8, random_state=0)


@pytest.fixture(autouse=True)
def _no_convergence_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def manual_cv_scores(estimator, X, y, cv, k):
    scores = []
    for train, test in cv.split(X, y):
        est = clone(estimator).fit(X[train], y[train])
        labels = None if y.ndim == 2 else est.classes_
        scores.append(precision_at_k(y[test], est.predict_proba(X[test]), k=k, labels=labels))
    return np.array(scores)


def test_scorer_repr_and_pickle():
    assert repr(make_precision_at_k_scorer(k=5)) == "make_precision_at_k_scorer(k=5)"
    assert repr(make_precision_at_k_scorer()) == "make_precision_at_k_scorer(k=1)"
    assert repr(make_precision_at_k_scorer(k=2, chunk_rows=7)) == "make_precision_at_k_scorer(k=2, chunk_rows=7)"
    scorer = pickle.loads(pickle.dumps(make_precision_at_k_scorer(k=3)))
    assert (scorer.k, scorer.chunk_rows) == (3, 2048)


def test_scorer_takes_sample_weight_through_metadata_routing(multiclass):
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import make_scorer

    X, y = multiclass
    weights = np.where(y == y[0], 5.0, 1.0)
    scorer = make_precision_at_k_scorer(k=1)
    with pytest.raises(RuntimeError, match="metadata routing is enabled"):
        scorer.set_score_request(sample_weight=True)
    with sklearn.config_context(enable_metadata_routing=True):
        model = LogisticRegression(max_iter=200).set_fit_request(sample_weight=False)
        # not requested: an error, as for sklearn's scorers, not an unweighted score
        with pytest.raises(ValueError, match="sample_weight"):
            cross_val_score(model, X, y, cv=3, scoring=scorer, params={"sample_weight": weights})
        assert scorer.set_score_request(sample_weight=True) is scorer
        assert scorer.set_score_request() is scorer  # no argument: left as it was
        weighted = cross_val_score(model, X, y, cv=3, scoring=pickle.loads(pickle.dumps(scorer)),
                                   params={"sample_weight": weights})
        # P@1 of a multiclass model is its weighted accuracy
        accuracy = make_scorer(accuracy_score).set_score_request(sample_weight=True)
        expected = cross_val_score(model, X, y, cv=3, scoring=accuracy, params={"sample_weight": weights})
    np.testing.assert_allclose(weighted, expected, rtol=1e-12)
    assert not np.allclose(weighted, cross_val_score(LogisticRegression(max_iter=200), X, y, cv=3))


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 1.5}, {"chunk_rows": 0}, {"chunk_rows": None}])
def test_scorer_bad_params(params):
    with pytest.raises(InvalidParameterError):
        make_precision_at_k_scorer(**params)


@pytest.mark.parametrize("k", [1, 2])
def test_cross_val_score_multiclass(multiclass, k):
    X, y = multiclass
    scores = cross_val_score(mlp(), X, y, cv=3, scoring=make_precision_at_k_scorer(k=k, chunk_rows=7))
    np.testing.assert_allclose(scores, manual_cv_scores(mlp(), X, y, StratifiedKFold(3), k), rtol=1e-12)


def test_cross_val_score_multilabel(multilabel):
    X, Y = multilabel
    scores = cross_val_score(mlp(), X, Y, cv=3, scoring=make_precision_at_k_scorer(k=3))
    np.testing.assert_allclose(scores, manual_cv_scores(mlp(), X, Y, KFold(3), 3), rtol=1e-12)


def test_grid_search_multiclass(multiclass):
    X, y = multiclass
    search = GridSearchCV(mlp(), {"alpha": [1e-4, 1.0]}, cv=2, scoring=make_precision_at_k_scorer(k=2))
    search.fit(X, y)
    for i, params in enumerate(search.cv_results_["params"]):
        expected = manual_cv_scores(mlp(**params), X, y, StratifiedKFold(2), 2)
        got = [search.cv_results_[f"split{j}_test_score"][i] for j in range(2)]
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_scorer_matches_full_predict_proba_and_chunking_is_invisible(multiclass, multilabel):
    for X, y in (multiclass, multilabel):
        est = mlp().fit(X, y)
        labels = None if y.ndim == 2 else est.classes_
        w = np.linspace(0.0, 2.0, len(X))
        for k in (1, 3):
            expected = precision_at_k(y, est.predict_proba(X), k=k, labels=labels, sample_weight=w)
            for chunk_rows in (7, 10**6):
                scorer = make_precision_at_k_scorer(k=k, chunk_rows=chunk_rows)
                assert scorer(est, X, y, sample_weight=w) == pytest.approx(expected, rel=1e-12)
        # sparse X is sliced by rows too
        scorer = make_precision_at_k_scorer(k=2, chunk_rows=7)
        assert scorer(est, sp.coo_matrix(X), y) == pytest.approx(scorer(est, X, y), rel=1e-12)


def test_scorer_binary_and_string_classes():
    X, y = make_classification(n_samples=80, n_features=6, random_state=1)
    y = np.array(["neg", "pos"])[y]
    est = mlp().fit(X, y)
    scorer = make_precision_at_k_scorer(chunk_rows=7)
    assert scorer(est, X, y) == pytest.approx(est.score(X, y))


def test_scorer_falls_back_to_decision_function(multiclass):
    X, y = multiclass
    est = RidgeClassifier().fit(X, y)
    expected = precision_at_k(y, est.decision_function(X), k=2, labels=est.classes_)
    assert make_precision_at_k_scorer(k=2, chunk_rows=7)(est, X, y) == pytest.approx(expected)
    # binary: a 1-D decision function ranks the positive class first iff it is > 0
    yb = (y > 1).astype(int)
    est = RidgeClassifier().fit(X, yb)
    d = est.decision_function(X)
    expected = precision_at_k(yb, np.column_stack([-d, d]))
    assert expected == pytest.approx(est.score(X, yb))
    assert make_precision_at_k_scorer(chunk_rows=7)(est, X, yb) == pytest.approx(expected)


def test_scorer_errors(multiclass, multilabel):
    X, y = multiclass
    with pytest.raises(TypeError, match="neither predict_proba nor decision_function"):
        make_precision_at_k_scorer()(LinearRegression().fit(X, y), X, y)
    Xm, Y = multilabel
    multi = MultiOutputClassifier(RidgeClassifier()).fit(Xm, Y)
    multi.predict_proba = lambda X: [np.zeros((len(X), 2)) for _ in range(Y.shape[1])]
    with pytest.raises(TypeError, match="returned a list"):
        make_precision_at_k_scorer()(multi, Xm, Y)
    est = mlp().fit(X, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make_precision_at_k_scorer()(est, X, y[:-1])
    with pytest.raises(ValueError, match=r"labels not in 'labels': \[7\]"):
        make_precision_at_k_scorer()(est, X, np.where(y == 0, 7, y))
