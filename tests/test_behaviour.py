"""HashMLPClassifier behaves like MLPClassifier for users: fitting modes, targets,
input types, persistence, model selection, and clear errors on bad input."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_hashdl import HashMLPClassifier

FAST = dict(hidden_layer_sizes=(64,), sparsity=0.2, K=3, L=8, max_iter=5, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return HashMLPClassifier(**{**FAST, **params}).fit(X, y)


def _same_model(a, b, atol=0.0):
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


# ------------------------------------------------------------------ fitting modes

def test_learns_digits_well_above_chance(digits):
    X, y = digits
    model = _fit(X, y, hidden_layer_sizes=(256,), selection="lsh_rerank", max_iter=10)
    assert model.score(X, y) > 0.9
    assert model.loss_curve_[-1] < model.loss_curve_[0]


def test_partial_fit_needs_classes_then_trains_one_epoch_per_call(digits):
    X, y = digits
    model = HashMLPClassifier(**FAST)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    model.partial_fit(X[:500], y[:500], classes=np.unique(y))
    assert model.n_iter_ == 1 and model.t_ == 500
    coefs = [c.copy() for c in model.coefs_]
    model.partial_fit(X[500:900], y[500:900])
    assert model.n_iter_ == 1 and model.t_ == 900
    assert any(not np.array_equal(a, b) for a, b in zip(coefs, model.coefs_))
    assert len(model.loss_curve_) == 2


def test_partial_fit_keeps_optimizer_state(digits):
    X, y = digits
    twice = HashMLPClassifier(**FAST)
    twice.partial_fit(X, y, classes=np.unique(y))
    twice.partial_fit(X, y)
    # a fresh optimizer restarted from the same weights takes a different step
    restarted = HashMLPClassifier(**FAST)
    restarted.partial_fit(X, y, classes=np.unique(y))
    restarted._optimizer_state = None
    restarted.partial_fit(X, y)
    assert any(not np.allclose(a, b) for a, b in zip(twice.coefs_, restarted.coefs_))


def test_partial_fit_accepts_a_subset_of_classes_and_refuses_new_ones(digits):
    X, y = digits
    model = HashMLPClassifier(**FAST)
    model.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))
    assert list(model.classes_) == list(range(10))
    fitted = HashMLPClassifier(**FAST)
    fitted.partial_fit(X[y < 5], y[y < 5], classes=np.arange(5))
    with pytest.raises(ValueError, match="classes not in"):
        fitted.partial_fit(X, y)


def test_warm_start_continues_from_previous_weights(digits):
    X, y = digits
    warm = _fit(X, y, warm_start=True, max_iter=2)
    first = [c.copy() for c in warm.coefs_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
    cold = _fit(X, y, max_iter=2)
    assert warm.n_iter_ == 2 and warm.t_ == 4 * len(X)
    assert any(not np.allclose(a, b) for a, b in zip(first, warm.coefs_))
    assert any(not np.allclose(a, b) for a, b in zip(cold.coefs_, warm.coefs_))
    with pytest.raises(ValueError, match="warm_start can only be used"):
        warm.fit(X[y < 5], y[y < 5])


def test_early_stopping_tracks_validation_and_stops(digits):
    X, y = digits
    model = _fit(X, y, early_stopping=True, n_iter_no_change=2, tol=0.5, max_iter=50)
    assert model.best_loss_ is None
    assert model.n_iter_ < 50 and len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        HashMLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.unique(y))


def test_stops_when_training_loss_stalls_like_mlpclassifier(digits):
    from sklearn.neural_network import MLPClassifier

    X, y = digits
    model = _fit(X, y, n_iter_no_change=1, tol=10.0, max_iter=50)
    reference = MLPClassifier((64,), n_iter_no_change=1, tol=10.0, max_iter=50).fit(X, y)
    assert model.n_iter_ == reference.n_iter_ == 3  # two epochs without improvement


def test_verbose_prints_one_line_per_epoch(digits, capsys):
    X, y = digits
    _fit(X, y, verbose=True, max_iter=2)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_convergence_warning_when_max_iter_reached(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        HashMLPClassifier(**{**FAST, "max_iter": 1}).fit(X, y)


# ----------------------------------------------------------------------- targets

def test_binary_string_labels():
    X, y = make_classification(n_samples=300, n_features=10, random_state=0)
    labels = np.array(["no", "yes"])[y]
    model = _fit(X, labels, max_iter=20)
    assert model.out_activation_ == "logistic" and model.n_outputs_ == 1
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert set(model.predict(X)) <= {"no", "yes"}
    assert model.score(X, labels) > 0.8
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))


def test_multilabel_indicator_targets():
    X, Y = make_multilabel_classification(n_samples=300, n_features=20, n_classes=5, random_state=0)
    model = _fit(StandardScaler().fit_transform(X), Y, max_iter=50)
    X = StandardScaler().fit_transform(X)
    assert model.out_activation_ == "logistic" and model.n_outputs_ == 5
    predicted = model.predict(X)
    assert predicted.shape == Y.shape and set(np.unique(predicted)) <= {0, 1}
    assert model.predict_proba(X).shape == (300, 5)
    # better than predicting each label's majority value
    majority = np.maximum(Y.mean(axis=0), 1 - Y.mean(axis=0)).mean()
    assert (predicted == Y).mean() > majority + 0.05


# ------------------------------------------------------------------- input types

def test_sparse_input_gives_the_same_model_as_dense(digits):
    X, y = digits
    dense = _fit(X, y)
    for convert in (sp.csr_matrix, sp.csc_matrix):
        sparse = _fit(convert(X), y)
        _same_model(dense, sparse, atol=1e-6)
        np.testing.assert_allclose(dense.predict_proba(X), sparse.predict_proba(convert(X)), atol=1e-5)


def test_input_dtypes(digits):
    X, y = digits
    as32 = _fit(X.astype(np.float32), y)
    as64 = _fit(X.astype(np.float64), y)
    _same_model(as32, as64)
    integers = _fit((X * 16).astype(np.int64), y)
    assert integers.coefs_[0].dtype == np.float32
    assert integers.score((X * 16).astype(np.int64), y) > 0.3  # chance is 0.1


def test_dataframe_feature_names(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])
    model = _fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns)
    renamed = frame.rename(columns={"pixel0": "other"})
    with pytest.raises(ValueError, match="feature names"):
        model.predict(renamed)


def test_sample_weight_changes_the_model_and_ones_change_nothing(digits):
    X, y = digits
    plain = _fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ones = HashMLPClassifier(**FAST).fit(X, y, sample_weight=np.ones(len(y)))
        weighted = HashMLPClassifier(**FAST).fit(X, y, sample_weight=(y == 3) * 5.0 + 0.1)
    _same_model(plain, ones)
    assert any(not np.allclose(a, b) for a, b in zip(plain.coefs_, weighted.coefs_))
    # class 3 got most of the weight: it should be predicted more often
    assert (weighted.predict(X) == 3).sum() >= (plain.predict(X) == 3).sum()


# ---------------------------------------------------------------- reproducibility

def test_same_seed_same_model_and_threads_do_not_matter(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(256, 128), sparsity=0.1, max_iter=2)
    one = _fit(X, y, n_jobs=1, **params)
    two = _fit(X, y, n_jobs=2, **params)
    again = _fit(X, y, n_jobs=2, **params)
    _same_model(one, two)
    _same_model(two, again)
    other = _fit(X, y, n_jobs=2, **{**params, "random_state": 1})
    assert not np.allclose(other.coefs_[0], one.coefs_[0])


def test_prediction_is_row_independent(digits):
    X, y = digits
    model = _fit(X, y)
    full = model.predict_proba(X)
    np.testing.assert_allclose(model.predict_proba(X[7:19]), full[7:19], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(X[::-1]), model.predict(X)[::-1])


def test_flop_and_active_fractions(digits):
    X, y = digits
    sparse = _fit(X, y, hidden_layer_sizes=(512,), sparsity=0.05, K=5, L=10)
    denser = _fit(X, y, hidden_layer_sizes=(512,), sparsity=0.2, K=5, L=10)
    assert 0 < sparse.flop_fraction_ < denser.flop_fraction_ < 1
    assert sparse.flop_fraction_ < 0.5
    assert sparse.active_fraction_.shape == (sparse.n_layers_ - 1,)
    assert sparse.active_fraction_[0] == pytest.approx(np.ceil(0.05 * 512) / 512)
    assert sparse.active_fraction_[-1] == 1.0
    dense = _fit(X, y, sparsity=1.0)
    assert dense.active_fraction_[0] == 1.0


# --------------------------------------------------------------------- persistence

def test_pickle_and_joblib_round_trips(digits, tmp_path):
    X, y = digits
    model = _fit(X, y)
    expected = model.predict_proba(X)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), expected)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    mapped = joblib.load(path, mmap_mode="r")
    assert not mapped.coefs_[0].flags.writeable
    np.testing.assert_array_equal(mapped.predict_proba(X), expected)
    # partial_fit after a read-only reload must copy, not write into the map
    mapped.partial_fit(X, y)
    assert not np.allclose(mapped.predict_proba(X), expected)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(X), expected)


def test_grid_search_in_a_pipeline(digits):
    X, y = digits
    pipeline = make_pipeline(StandardScaler(), HashMLPClassifier(**{**FAST, "max_iter": 3}))
    grid = {"hashmlpclassifier__K": [3, 4], "hashmlpclassifier__L": [4, 8],
            "hashmlpclassifier__sparsity": [0.1, 0.3]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipeline, grid, cv=2, n_jobs=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 8
    assert search.best_params_["hashmlpclassifier__sparsity"] in (0.1, 0.3)
    assert search.score(X, y) > 0.5


# ---------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(digits, bad):
    X, y = digits
    X = X.copy()
    X[3, 5] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        HashMLPClassifier(**FAST).fit(X, y)


def test_wrong_shapes_are_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        HashMLPClassifier(**FAST).fit(X, y[:-1])
    model = _fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :10])


def test_one_class_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="class"):
        HashMLPClassifier(**FAST).fit(X, np.zeros(len(X)))


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        HashMLPClassifier().predict(np.zeros((2, 3)))


@pytest.mark.parametrize("params", [
    dict(sparsity=0.0), dict(sparsity=1.5), dict(K=0), dict(K=40), dict(L=0),
    dict(activation="bad"), dict(selection="best"), dict(batch_size=0), dict(n_probes=0),
])
def test_bad_hyperparameters_raise_invalid_parameter_error(digits, params):
    X, y = digits
    with pytest.raises(InvalidParameterError):
        HashMLPClassifier(**params).fit(X, y)


def test_lbfgs_is_refused_with_a_reason(digits):
    X, y = digits
    with pytest.raises(InvalidParameterError, match="full-batch"):
        HashMLPClassifier(solver="lbfgs").fit(X, y)


def test_zero_sized_hidden_layer_is_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        HashMLPClassifier(hidden_layer_sizes=(64, 0)).fit(X, y)


def test_failed_call_leaves_the_fitted_model_unchanged(digits):
    X, y = digits
    model = _fit(X[y < 5], y[y < 5])
    coefs = [c.copy() for c in model.coefs_]
    state = (model.n_iter_, model.t_, len(model.loss_curve_), model.flop_fraction_)
    expected = model.predict_proba(X)
    bad = X.copy()
    bad[0, 0] = np.nan
    for call in (lambda: model.partial_fit(bad, y),
                 lambda: model.partial_fit(X, y),  # unseen classes 5..9
                 lambda: model.fit(bad, y)):
        with pytest.raises(ValueError):
            call()
        assert (model.n_iter_, model.t_, len(model.loss_curve_), model.flop_fraction_) == state
        for a, b in zip(coefs, model.coefs_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(model.predict_proba(X), expected)
