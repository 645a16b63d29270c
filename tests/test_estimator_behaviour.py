"""HashMLPClassifier as a drop-in for MLPClassifier: the user-facing contract of
DESIGN.md section 4 (fitting modes, targets, input types, persistence, model
selection, errors, atomic failure, reproducibility, diagnostics).

Small data and networks only; most tests use sparsity < 1 so that the hashed
selection path is exercised.
"""

import math
import pickle
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_hashdl import HashMLPClassifier

# a hashed (64,) layer keeping ceil(0.2 * 64) = 13 neurons per sample
# min_active=1: the small layer keeps its sparsity's share (13 of 64), not the default 32
SMALL = dict(hidden_layer_sizes=(64,), sparsity=0.2, min_active=1, K=3, L=8, max_iter=3, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(n_samples=300, n_features=20, n_informative=6,
                               class_sep=2.0, random_state=0)
    return X, y


def make(**params):
    return HashMLPClassifier(**{**SMALL, **params})


def quiet_fit(model, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **fit_params)


def params_of(model):
    return [np.array(a) for a in model.coefs_ + model.intercepts_]


def assert_same_params(a, b, atol=0.0):
    pa, pb = params_of(a), params_of(b)
    assert len(pa) == len(pb)
    for x, z in zip(pa, pb):
        assert x.shape == z.shape
        np.testing.assert_allclose(x, z, rtol=0, atol=atol)


def params_differ(a, b, atol=1e-6):
    return any(not np.allclose(x, z, rtol=0, atol=atol)
               for x, z in zip(params_of(a), params_of(b)))


# ------------------------------------------------------------------ partial_fit

def test_partial_fit_requires_classes_on_first_call(digits):
    X, y = digits
    model = make()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    assert not hasattr(model, "coefs_")
    model.partial_fit(X, y, classes=np.unique(y))  # and then it works
    assert hasattr(model, "coefs_")


def test_partial_fit_trains_one_epoch_per_call_like_mlpclassifier(digits):
    X, y = digits
    classes = np.unique(y)
    # max_iter must not matter: partial_fit is one pass over the data
    ours = make(max_iter=50)
    ref = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
    chunks = [slice(0, 600), slice(600, 1000), slice(1000, None)]
    t_expected = 0
    for step, rows in enumerate(chunks, start=1):
        kwargs = {"classes": classes} if step == 1 else {}
        ours.partial_fit(X[rows], y[rows], **kwargs)
        ref.partial_fit(X[rows], y[rows], **kwargs)
        t_expected += X[rows].shape[0]
        assert ours.t_ == ref.t_ == t_expected
        assert ours.n_iter_ == ref.n_iter_ == 1  # sklearn 1.9: epochs of this call
        assert len(ours.loss_curve_) == len(ref.loss_curve_) == step
        assert ours.loss_ == ours.loss_curve_[-1]


def test_partial_fit_keeps_optimizer_state(digits):
    X, y = digits
    classes = np.unique(y)
    A, B = slice(0, 900), slice(900, None)

    fresh = make().partial_fit(X[B], y[B], classes=classes)
    two = make().partial_fit(X[A], y[A], classes=classes)
    two.partial_fit(X[B], y[B])
    assert params_differ(two, fresh)

    # The second partial_fit and a one-epoch warm-start fit on the same model
    # see the same weights, hash state, shuffle and selection seeds; only
    # partial_fit continues the Adam moments, fit starts a new optimizer.
    restarted = make().partial_fit(X[A], y[A], classes=classes)
    restarted.set_params(warm_start=True, max_iter=1)
    quiet_fit(restarted, X[B], y[B])
    assert params_differ(two, restarted)

    # ... and with a stateless optimizer (plain SGD) the two coincide exactly,
    # which shows that the difference above is the optimizer state.
    sgd = dict(solver="sgd", momentum=0.0, learning_rate_init=0.05)
    cont = make(**sgd).partial_fit(X[A], y[A], classes=classes)
    cont.partial_fit(X[B], y[B])
    warm = make(**sgd).partial_fit(X[A], y[A], classes=classes)
    warm.set_params(warm_start=True, max_iter=1)
    quiet_fit(warm, X[B], y[B])
    assert_same_params(cont, warm)


def test_partial_fit_refuses_labels_not_in_classes(digits):
    X, y = digits
    low = y < 5
    model = make()
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, y, classes=np.arange(5))  # y holds 5..9 already
    model.partial_fit(X[low], y[low], classes=np.arange(5))
    with pytest.raises(ValueError, match="classes not in"):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model.classes_, np.arange(5))


def test_partial_fit_accepts_a_subset_of_the_classes(digits):
    X, y = digits
    model = make()
    first = y <= 2
    model.partial_fit(X[first], y[first], classes=np.arange(10))
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    assert model.predict_proba(X[:7]).shape == (7, 10)
    later = (y >= 3) & (y <= 6)
    model.partial_fit(X[later], y[later])
    model.partial_fit(X, y)
    assert set(np.unique(model.predict(X))) <= set(range(10))
    assert model.predict_proba(X).shape == (X.shape[0], 10)


# ------------------------------------------------------------------- warm_start

def test_warm_start_continues_from_the_previous_coefs(digits):
    X, y = digits
    warm = quiet_fit(make(warm_start=True), X, y)
    after_first = [a.copy() for a in params_of(warm)]
    first_losses = list(warm.loss_curve_)
    quiet_fit(warm, X, y)
    cold = quiet_fit(make(), X, y)
    assert params_differ(warm, cold)
    # the second call starts where the first ended, so its loss is lower
    assert warm.loss_curve_[: len(first_losses)] == first_losses
    assert warm.loss_curve_[len(first_losses)] < first_losses[0]

    # with a vanishing learning rate, a warm fit stays at the previous weights
    # (a cold fit would stay at the initial weights instead)
    warm.set_params(learning_rate_init=1e-12)
    before = params_of(warm)
    quiet_fit(warm, X, y)
    for a, b in zip(before, params_of(warm)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    moved = max(np.abs(a - b).max() for a, b in zip(after_first, before))
    assert moved > 1e-3


def test_warm_start_counters_follow_mlpclassifier(digits):
    X, y = digits
    ours = make(warm_start=True, max_iter=3)
    ref = MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=0, warm_start=True)
    for _ in range(2):
        quiet_fit(ours, X, y)
        quiet_fit(ref, X, y)
        assert ours.n_iter_ == ref.n_iter_
        assert ours.t_ == ref.t_
        assert len(ours.loss_curve_) == len(ref.loss_curve_)
    assert ours.t_ == 2 * 3 * X.shape[0]


def test_warm_start_with_different_classes_is_refused(digits):
    X, y = digits
    model = quiet_fit(make(warm_start=True), X, y)
    coefs = params_of(model)
    keep = y != 9
    with pytest.raises(ValueError, match="warm_start can only be used"):
        model.fit(X[keep], y[keep])
    for a, b in zip(coefs, params_of(model)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.classes_, np.arange(10))


# --------------------------------------------------------------- early_stopping

def test_early_stopping_tracks_validation_and_stops_early():
    X, y = make_classification(n_samples=400, n_features=10, n_informative=4,
                               class_sep=4.0, random_state=1)
    model = make(early_stopping=True, n_iter_no_change=2, max_iter=200,
                 learning_rate_init=0.01, validation_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y)
    assert model.best_loss_ is None
    assert isinstance(model.validation_scores_, list)
    assert len(model.validation_scores_) == model.n_iter_ == len(model.loss_curve_)
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert all(0.0 <= s <= 1.0 for s in model.validation_scores_)
    assert model.best_validation_score_ > 0.9
    assert model.n_iter_ < 200


@pytest.mark.parametrize("predict_mode", ["hashed", "topk"])
def test_the_best_validation_score_is_the_fitted_models(digits, monkeypatch, predict_mode):
    # validation used to predict through training's tables, last rebuilt at the
    # previous rehash, while the fitted model rebuilds them from its final weights
    from sklearn_hashdl import _classifier
    split, original = [], _classifier.train_test_split

    def recording_split(*arrays, **options):
        split.append(original(*arrays, **options))
        return split[-1]

    monkeypatch.setattr(_classifier, "train_test_split", recording_split)
    X, y = digits
    model = quiet_fit(make(hidden_layer_sizes=(128,), K=6, L=10, selection="lsh",
                           predict_mode=predict_mode, early_stopping=True, max_iter=8,
                           n_iter_no_change=8), X, y)
    X_val, y_val = split[0][1], split[0][3]
    assert model.best_validation_score_ == model.score(X_val, y_val)
    assert model.validation_scores_[-1] < 1  # not a trivial match


def test_without_early_stopping_validation_attributes_are_none(digits):
    X, y = digits
    model = quiet_fit(make(), X, y)
    assert model.validation_scores_ is None
    assert model.best_validation_score_ is None
    assert model.best_loss_ == min(model.loss_curve_)


def test_partial_fit_with_early_stopping_is_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="early_stopping"):
        make(early_stopping=True).partial_fit(X, y, classes=np.unique(y))


# ------------------------------------------------------- verbose and warnings

def test_verbose_prints_one_loss_line_per_epoch(digits, capsys):
    X, y = digits
    model = quiet_fit(make(verbose=True, max_iter=3), X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Iteration")]
    assert len(lines) == model.n_iter_ == 3
    for i, (line, loss) in enumerate(zip(lines, model.loss_curve_), start=1):
        match = re.fullmatch(r"Iteration (\d+), loss = ([0-9.]+)", line)
        assert match, line
        assert int(match.group(1)) == i
        assert float(match.group(2)) == pytest.approx(loss, abs=1e-7)


def test_quiet_by_default(digits, capsys):
    X, y = digits
    quiet_fit(make(), X, y)
    assert "Iteration" not in capsys.readouterr().out


def test_convergence_warning_when_max_iter_is_reached(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        model = make(max_iter=2).fit(X, y)
    assert model.n_iter_ == 2


# ---------------------------------------------------------------------- targets

def test_binary_target(binary):
    X, y = binary
    model = quiet_fit(make(max_iter=10, learning_rate_init=0.01), X, y)
    np.testing.assert_array_equal(model.classes_, [0, 1])
    assert model.n_outputs_ == 1 and model.out_activation_ == "logistic"
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    assert model.score(X, y) > 0.8


def test_multiclass_target(digits):
    X, y = digits
    model = quiet_fit(make(max_iter=10, learning_rate_init=0.01), X, y)
    assert model.n_outputs_ == 10 and model.out_activation_ == "softmax"
    assert model.n_layers_ == 3
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba), atol=1e-6)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    assert model.score(X, y) > 0.85


def test_string_labels(digits):
    X, y = digits
    names = np.array(["zero", "one", "two"])
    keep = y < 3
    labels = names[y[keep]]
    model = quiet_fit(make(max_iter=10, learning_rate_init=0.01), X[keep], labels)
    np.testing.assert_array_equal(model.classes_, np.sort(names))
    pred = model.predict(X[keep])
    assert pred.dtype.kind == labels.dtype.kind
    assert set(pred) <= set(names)
    assert np.mean(pred == labels) > 0.9
    # binary string labels: two probability columns in classes_ order
    two = y[keep] < 2
    model2 = quiet_fit(make(), X[keep][two], labels[two])
    assert list(model2.classes_) == ["one", "zero"]
    assert model2.predict_proba(X[:4]).shape == (4, 2)


def test_multilabel_indicator_target():
    X, Y = make_multilabel_classification(n_samples=300, n_features=20, n_classes=5,
                                          random_state=0)
    model = quiet_fit(make(max_iter=10, learning_rate_init=0.01), X, Y)
    assert model.n_outputs_ == 5 and model.out_activation_ == "logistic"
    pred = model.predict(X)
    assert pred.shape == Y.shape
    assert set(np.unique(pred)) <= {0, 1}
    proba = model.predict_proba(X)
    assert proba.shape == Y.shape
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(pred.dtype))
    assert np.mean(pred == Y) > 0.7  # per-label accuracy well above a coin flip
    # multilabel partial_fit takes the label set from the indicator matrix
    inc = make().partial_fit(X, Y, classes=np.arange(5))
    assert inc.predict(X[:3]).shape == (3, 5)


def test_continuing_with_the_other_kind_of_target_is_refused(digits):
    # an indicator matrix on a model fitted with labels (or the reverse) would
    # silently train the wrong loss; MLPClassifier refuses it with this message
    X, y = digits
    Y = np.c_[y == 0, y == 1, y > 0].astype(int)
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1).partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="not fitted with multilabel input") as expected:
        mlp.partial_fit(X, Y)
    labels = quiet_fit(make(), X, y)
    for call in (lambda m: m.partial_fit(X, Y),
                 lambda m: m.set_params(warm_start=True).fit(X, Y)):
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            call(labels)
    indicator = quiet_fit(make(), X, Y)
    with pytest.raises(ValueError, match="fitted with multilabel input"):
        indicator.partial_fit(X, y)


# ------------------------------------------------------------------ input types

@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("selection", ["auto", "lsh"])
def test_sparse_input_gives_the_same_model_as_dense(digits, fmt, selection):
    X, y = digits
    dense = quiet_fit(make(selection=selection), X, y)
    sparse = quiet_fit(make(selection=selection), sp.csr_matrix(X).asformat(fmt), y)
    assert_same_params(dense, sparse, atol=1e-5)
    np.testing.assert_array_equal(dense.predict(X), sparse.predict(sp.csr_matrix(X).asformat(fmt)))
    np.testing.assert_allclose(dense.predict_proba(X), sparse.predict_proba(sp.csc_matrix(X)),
                               atol=1e-5)
    assert dense.flop_fraction_ == pytest.approx(sparse.flop_fraction_, rel=1e-6)
    # hashed prediction: a dense row lists its zeros, a CSR row does not; the random
    # choices keyed by the row's content must not see the difference
    for model in (dense, sparse):
        model.set_params(predict_mode="hashed")
    np.testing.assert_allclose(dense.predict_proba(X), sparse.predict_proba(sp.csr_matrix(X)),
                               atol=1e-5)


def test_float32_float64_and_int_inputs(digits):
    X, y = digits
    X_int = (X * 16).astype(np.int64)
    m64 = quiet_fit(make(), X_int.astype(np.float64), y)
    m32 = quiet_fit(make(), X_int.astype(np.float32), y)
    mint = quiet_fit(make(), X_int, y)
    assert_same_params(m64, m32, atol=1e-6)
    assert_same_params(m64, mint, atol=1e-6)
    for model in (m64, m32, mint):
        assert model.coefs_[0].dtype == np.float32
        for X_pred in (X_int, X_int.astype(np.float32), X_int.astype(np.float64)):
            np.testing.assert_array_equal(model.predict(X_pred), m64.predict(X_int))
        # probabilities in the input's float type, as MLPClassifier fitted on it
        assert model.predict_proba(X_int.astype(np.float32)).dtype == np.float32
        assert model.predict_log_proba(sp.csr_matrix(X_int.astype(np.float32))).dtype == np.float32
        assert model.predict_proba(X_int).dtype == np.float64


def test_dataframe_input_sets_feature_names(digits):
    X, y = digits
    columns = [f"pixel_{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    model = quiet_fit(make(), df, y)
    np.testing.assert_array_equal(model.feature_names_in_, columns)
    assert model.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(model.predict(df), quiet_fit(make(), X, y).predict(X))

    ref = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0), df, y)
    renamed = df.rename(columns=lambda c: c.replace("pixel", "px"))
    # as MLPClassifier: other column names are refused, a bare array warns
    with pytest.raises(ValueError, match="feature names should match") as ours:
        model.predict(renamed)
    with pytest.raises(ValueError, match="feature names should match") as theirs:
        ref.predict(renamed)
    assert str(ours.value) == str(theirs.value)
    with pytest.warns(UserWarning, match="does not have valid feature names, but "
                                         "HashMLPClassifier was fitted with feature names"):
        model.predict(X)
    # a model fitted without names does not grow any
    assert not hasattr(quiet_fit(make(), X, y), "feature_names_in_")


# ---------------------------------------------------------------- sample_weight

def test_sample_weight(digits):
    X, y = digits
    plain = quiet_fit(make(), X, y)
    ones = quiet_fit(make(), X, y, sample_weight=np.ones(X.shape[0]))
    assert_same_params(plain, ones)
    rng = np.random.RandomState(0)
    weighted = quiet_fit(make(), X, y, sample_weight=rng.uniform(0.2, 3.0, X.shape[0]))
    assert params_differ(plain, weighted)


def test_zero_weight_class_is_not_learned(digits):
    X, y = digits
    weights = np.where(y == 9, 0.0, 1.0)
    nines = y == 9
    unweighted = quiet_fit(make(max_iter=10, learning_rate_init=0.01), X, y)
    weighted = quiet_fit(make(max_iter=10, learning_rate_init=0.01), X, y, sample_weight=weights)
    assert np.mean(unweighted.predict(X[nines]) == 9) > 0.7
    assert np.mean(weighted.predict(X[nines]) == 9) < 0.1


def test_sample_weight_of_wrong_length_is_refused(digits):
    X, y = digits
    with pytest.raises(ValueError):
        make().fit(X, y, sample_weight=np.ones(X.shape[0] - 1))


def test_negative_sample_weight_is_refused(digits):
    # a negative weight would flip the sample's gradient; a batch of them was
    # once skipped without a word
    X, y = digits
    weights = np.ones(X.shape[0])
    weights[7] = -1.0
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        make().fit(X, y, sample_weight=weights)


def test_weights_summing_past_float32s_range_train_as_their_ratios(digits):
    # a batch's 200 weights of 2e36 sum past float32's largest value (3.4e38):
    # summed in float32, every gradient was 0 and the fit trained nothing
    X, y = digits
    plain = quiet_fit(make(alpha=0.0, sparsity=1.0), X, y)
    huge = quiet_fit(make(alpha=0.0, sparsity=1.0), X, y, sample_weight=np.full(len(y), 2e36))
    np.testing.assert_allclose(huge.loss_curve_, plain.loss_curve_, rtol=1e-5)
    for a, b in zip(huge.coefs_, plain.coefs_):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_rows_of_zero_weight_do_not_touch_the_model(digits, solver):
    # they must not even pick active neurons: Adam moves every neuron it
    # steps, whatever its gradient (weight decay, momentum)
    X, y = digits
    X, y = X[:400], y[:400]
    weights = np.ones(len(y))
    weights[::3] = 0.0
    other_X = X.copy()
    other_X[::3] = np.random.RandomState(0).rand(*X[::3].shape)
    a = quiet_fit(make(solver=solver, batch_size=64), X, y, sample_weight=weights)
    b = quiet_fit(make(solver=solver, batch_size=64), other_X, y, sample_weight=weights)
    assert_same_params(a, b)
    assert a.loss_curve_ == b.loss_curve_


# ------------------------------------------------------------------ persistence

def test_pickle_and_joblib_round_trips(digits, tmp_path):
    X, y = digits
    model = quiet_fit(make(), X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    for copy in (pickle.loads(pickle.dumps(model)), joblib.load(path)):
        np.testing.assert_array_equal(copy.predict(X), model.predict(X))
        np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
        assert copy.flop_fraction_ == model.flop_fraction_
    # the whole training state is saved: continuing a copy equals continuing the original
    copy = pickle.loads(pickle.dumps(model))
    model.partial_fit(X[:500], y[:500])
    copy.partial_fit(X[:500], y[:500])
    assert_same_params(model, copy)


def test_memory_mapped_model_can_predict_and_continue_training(digits, tmp_path):
    X, y = digits
    model = quiet_fit(make(), X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    mapped = joblib.load(path, mmap_mode="r")
    assert any(isinstance(c, np.memmap) and not c.flags.writeable for c in mapped.coefs_)
    for mode in ("topk", "hashed"):
        mapped.set_params(predict_mode=mode)
        model.set_params(predict_mode=mode)
        np.testing.assert_array_equal(mapped.predict(X), model.predict(X))
        np.testing.assert_array_equal(mapped.predict_proba(X), model.predict_proba(X))

    mapped.partial_fit(X[:500], y[:500])
    model.partial_fit(X[:500], y[:500])
    assert_same_params(mapped, model)
    # the file was not written to
    on_disk = joblib.load(path)
    assert_same_params(on_disk, quiet_fit(make(), X, y))


# ------------------------------------------------------------- model selection

def test_grid_search_over_hash_parameters_in_a_pipeline(digits):
    X, y = digits
    grid = {"clf__K": [2, 4], "clf__L": [4, 8], "clf__sparsity": [0.1, 0.3]}
    pipe = Pipeline([("scale", StandardScaler()), ("clf", make(max_iter=5, learning_rate_init=0.01))])
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X[:800], y[:800])
    assert not np.isnan(search.cv_results_["mean_test_score"]).any()
    assert len(search.cv_results_["params"]) == 8
    assert search.best_params_["clf__K"] in grid["clf__K"]
    assert search.best_params_["clf__L"] in grid["clf__L"]
    assert search.best_params_["clf__sparsity"] in grid["clf__sparsity"]
    best = search.best_estimator_.named_steps["clf"]
    assert best.K == search.best_params_["clf__K"]
    assert search.score(X[800:], y[800:]) > 0.7


# -------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(digits, bad):
    X, y = digits
    X_bad = X.copy()
    X_bad[3, 5] = bad
    with pytest.raises(ValueError, match="Input X contains"):
        make().fit(X_bad, y)
    with pytest.raises(ValueError, match="Input X contains"):
        make().partial_fit(X_bad, y, classes=np.unique(y))
    model = quiet_fit(make(), X, y)
    with pytest.raises(ValueError, match="Input X contains"):
        model.predict(X_bad)


def test_values_beyond_float32_are_refused_before_training(digits):
    X, y = digits
    for X_big in (X * 1e39, sp.csr_matrix(X * 1e39)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no overflow warning either
            with pytest.raises(ValueError, match="float32"):
                make().fit(X_big, y)


def test_checking_float32_input_allocates_nothing_of_its_size():
    import tracemalloc

    from sklearn_hashdl._inputs import kernel_input

    X = np.random.RandomState(0).rand(2000, 500).astype(np.float32)
    tracemalloc.start()
    try:
        assert kernel_input(X) is X
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 20  # the range check once took a byte per value (+47 MB on MNIST)


def test_diverging_training_reports_a_finite_loss():
    X, y = make_classification(200, 10, random_state=0)  # weights stay within float32
    model = HashMLPClassifier((20,), min_active=1, solver="sgd", learning_rate_init=1e10, max_iter=3,
                              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the L2 term once overflowed float32
        quiet_fit(model, X, y)
    assert np.isfinite(model.loss_curve_).all() and model.loss_ > 1e6


def test_wrong_number_of_features_at_predict(digits):
    X, y = digits
    model = quiet_fit(make(), X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :-1])
    with pytest.raises(ValueError, match="features"):
        model.predict_proba(np.hstack([X, X[:, :1]]))
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :-1], y)


def test_predict_before_fit(digits):
    X, _ = digits
    model = make()
    for method in (model.predict, model.predict_proba, model.predict_log_proba):
        with pytest.raises(NotFittedError):
            method(X)


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"sparsity": 0}, "sparsity"),
        ({"sparsity": 1.5}, "sparsity"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"min_active": 0}, "min_active"),
        ({"min_active": 2.5}, "min_active"),
        ({"K": 0}, "'K'"),
        ({"L": 0}, "'L'"),
        ({"activation": "bad"}, "activation"),
        ({"solver": "lbfgs"}, "solver"),
        ({"solver": "newton"}, "solver"),
        ({"hash_function": "md5"}, "hash_function"),
        ({"predict_mode": "sometimes"}, "predict_mode"),
        ({"rehash_interval": 0}, "rehash_interval"),
        ({"rehash_growth": 0.5}, "rehash_growth"),
        ({"max_iter": 0}, "max_iter"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_bad_hyperparameters_are_refused(digits, params, pattern):
    X, y = digits
    with pytest.raises(InvalidParameterError, match=pattern):
        make(**params).fit(X, y)
    with pytest.raises(InvalidParameterError, match=pattern):
        make(**params).partial_fit(X, y, classes=np.unique(y))


@pytest.mark.parametrize("sizes", [(0,), (32, 0), (-4,)])
def test_empty_hidden_layer_is_refused(digits, sizes):
    X, y = digits
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        make(hidden_layer_sizes=sizes).fit(X, y)


def test_lbfgs_message_explains_why(digits):
    X, y = digits
    with pytest.raises(InvalidParameterError) as info:
        make(solver="lbfgs").fit(X, y)
    message = str(info.value)
    assert "'adam' or 'sgd'" in message
    assert "full-batch" in message and "active" in message


def test_mismatched_lengths_are_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make().fit(X, y[:-1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make().partial_fit(X[:-1], y, classes=np.unique(y))


# --------------------------------------------------------------- atomic failure

def _snapshot(model, X):
    return {
        "params": params_of(model),
        "n_iter_": model.n_iter_,
        "t_": model.t_,
        "loss_": model.loss_,
        "loss_curve_": list(model.loss_curve_),
        "classes_": model.classes_.copy(),
        "n_features_in_": model.n_features_in_,
        "flop_fraction_": model.flop_fraction_,
        "proba": model.predict_proba(X),
    }


def _assert_unchanged(model, before, X):
    after = _snapshot(model, X)
    for a, b in zip(before["params"], after["params"]):
        np.testing.assert_array_equal(a, b)
    for key in ("n_iter_", "t_", "loss_", "loss_curve_", "n_features_in_", "flop_fraction_"):
        assert after[key] == before[key], key
    np.testing.assert_array_equal(after["classes_"], before["classes_"])
    np.testing.assert_array_equal(after["proba"], before["proba"])


def test_failed_calls_leave_a_fitted_model_unchanged(digits):
    X, y = digits
    model = quiet_fit(make(), X, y)
    model.partial_fit(X[:400], y[:400])
    before = _snapshot(model, X)

    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError):
        model.partial_fit(X_nan, y)
    _assert_unchanged(model, before, X)

    y_new = y.copy()
    y_new[0] = 42
    with pytest.raises(ValueError, match="classes not in"):
        model.partial_fit(X, y_new)
    _assert_unchanged(model, before, X)

    with pytest.raises(ValueError):
        model.partial_fit(X[:, :10], y)
    _assert_unchanged(model, before, X)

    with pytest.raises(ValueError):
        model.fit(X_nan, y)  # a cold refit that fails keeps the old model too
    _assert_unchanged(model, before, X)

    with pytest.raises(ValueError, match="[Nn]egative"):
        model.fit(X, y, sample_weight=np.full(len(y), -1.0))
    _assert_unchanged(model, before, X)

    # the model still trains normally afterwards
    model.partial_fit(X, y)
    assert model.t_ == before["t_"] + X.shape[0]


@pytest.mark.parametrize("call", ["partial_fit", "warm_start_fit"])
def test_failed_training_leaves_the_model_unchanged(digits, call):
    X, y = digits
    model = quiet_fit(make(solver="sgd", learning_rate_init=0.5), X, y)
    before = _snapshot(model, X)
    X_huge = X * 1e20  # finite, so validation passes, but training diverges
    with pytest.raises(ValueError, match="non-finite parameter weights|diverged"):
        if call == "partial_fit":
            model.partial_fit(X_huge, y)
        else:
            model.set_params(warm_start=True)
            quiet_fit(model, X_huge, y)
    _assert_unchanged(model, before, X)


def test_a_diverging_fit_with_early_stopping_fails_instead_of_returning_nan(digits):
    # early stopping handed back the best weights, finite but of about 1e20, whose
    # predictions were NaN, with loss_ NaN; MLPClassifier raises
    X, y = digits
    X = StandardScaler().fit_transform(X)[:1000]
    y = y[:1000]
    model = quiet_fit(make(predict_mode="hashed"), X, y)
    before = _snapshot(model, X)
    model.set_params(solver="sgd", learning_rate_init=1e4, early_stopping=True, max_iter=8,
                     n_iter_no_change=50)
    with pytest.raises(ValueError, match="diverged"):
        quiet_fit(model, X, y)
    _assert_unchanged(model, before, X)


def test_outputs_that_overflow_are_an_error_or_computed_in_float64(digits):
    X, y = digits
    model = quiet_fit(make(), X, y)
    # sparse float64 input goes through the first layer in float32, unless it overflows
    huge = sp.csr_matrix(X[:5] * 1e37)
    huge.data[0] = 1e39
    reference = MLPClassifier(hidden_layer_sizes=model.hidden_layer_sizes)
    reference.coefs_ = [c.astype(np.float64) for c in model.coefs_]
    reference.intercepts_ = [b.astype(np.float64) for b in model.intercepts_]
    for name in ("classes_", "n_layers_", "n_outputs_", "out_activation_", "_label_binarizer",
                 "n_features_in_"):
        setattr(reference, name, getattr(model, name))
    dense = model.set_params(predict_mode="dense").predict_proba(huge)
    assert np.isfinite(dense).all()
    np.testing.assert_allclose(dense, reference.predict_proba(huge), atol=1e-6)
    # float32 input, or the float32 hashed pass: a clear error, not NaN
    for mode, rows in (("topk", (X[:5] * 3e38).astype(np.float32)), ("hashed", X[:5] * 3e38)):
        # the weights of a fit that diverged with a finite loss can overflow too
        with pytest.raises(ValueError, match="overflowed.*too large.*weights"):
            model.set_params(predict_mode=mode).predict_proba(rows)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_infinite_logits_give_probabilities_of_0_and_1_as_in_mlpclassifier(n_classes):
    rng = np.random.RandomState(0)
    X = rng.randn(60, 1).astype(np.float32)
    y = np.digitize(X[:, 0], [-0.5, 0.5][: n_classes - 1])
    n_outputs = 1 if n_classes == 2 else n_classes
    weights = [np.ones((1, 2), np.float32), np.full((2, n_outputs), 1e-30, np.float32)]
    weights[1][:, 0] = -1e10  # a row of 1e30 overflows the first output only
    biases = [np.zeros(2, np.float32), np.zeros(n_outputs, np.float32)]
    probabilities = []
    for model in (MLPClassifier(hidden_layer_sizes=(2,)), HashMLPClassifier(hidden_layer_sizes=(2,), sparsity=1.0)):
        quiet_fit(model.set_params(max_iter=2, random_state=0), X, y)
        model.coefs_, model.intercepts_ = [W.copy() for W in weights], [b.copy() for b in biases]
        with np.errstate(over="ignore"):
            probabilities.append(model.predict_proba(np.array([[1e30], [0.5]], np.float32)))
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=1e-6)
    assert probabilities[1][0, 0] == (1.0 if n_classes == 2 else 0.0)


def test_duplicate_sparse_entries_summing_past_float32_get_the_range_error(digits):
    X, y = digits
    # row 0 lists feature 1 twice; the other rows are empty
    indptr = np.r_[0, np.full(X.shape[0], 2)]
    duplicated = sp.csr_matrix((np.full(2, 3e38), [1, 1], indptr), shape=X.shape)
    assert not duplicated.has_canonical_format
    with pytest.raises(ValueError, match="beyond float32's range"):
        quiet_fit(make(), duplicated, y)


def test_numpy_float16_parameters_compute_in_float64(digits):
    X, y = digits
    plain = quiet_fit(make(alpha=1e-3, sparsity=0.1), X * 300, y)
    half = quiet_fit(make(alpha=np.float16(1e-3), sparsity=np.float16(0.1)), X * 300, y)
    expected = quiet_fit(make(alpha=float(np.float16(1e-3)), sparsity=float(np.float16(0.1))), X * 300, y)
    assert all(isinstance(loss, float) for loss in half.loss_curve_)
    assert half.loss_curve_ == expected.loss_curve_ and np.isfinite(plain.loss_curve_).all()


# -------------------------------------------------------------- reproducibility

def test_same_random_state_same_model_other_seed_other_model(digits):
    X, y = digits
    a = quiet_fit(make(random_state=7), X, y)
    b = quiet_fit(make(random_state=7), X, y)
    c = quiet_fit(make(random_state=8), X, y)
    assert_same_params(a, b)
    assert a.loss_curve_ == b.loss_curve_
    assert params_differ(a, c)
    # a RandomState instance is consumed: two fits sharing one differ
    rs = np.random.RandomState(0)
    d = quiet_fit(make(random_state=rs), X, y)
    e = quiet_fit(make(random_state=rs), X, y)
    assert params_differ(d, e)


@pytest.mark.parametrize("selection", ["auto", "lsh", "lsh_rerank"])
def test_thread_count_does_not_change_the_model(digits, selection):
    X, y = digits
    X, y = X[:600], y[:600]  # few batches: a parallel region stalls on a busy 2-core box
    params = dict(hidden_layer_sizes=(256, 32), sparsity=0.1, min_active=1, selection=selection,
                  rehash_interval=3, max_iter=2, batch_size=100)
    one = quiet_fit(make(n_jobs=1, **params), X, y)
    two = quiet_fit(make(n_jobs=2, **params), X, y)
    assert_same_params(one, two)
    assert one.loss_curve_ == two.loss_curve_
    assert one.flop_fraction_ == two.flop_fraction_


def test_rehash_products_run_on_one_blas_thread(digits, monkeypatch):
    # OpenBLAS threads spin after a call, stealing a core from the next kernels,
    # and the product's rounding (so the buckets) may change with their number
    from threadpoolctl import threadpool_info

    from sklearn_hashdl import _network

    X, y = digits
    seen = []
    original = _network._lsh.neuron_codes

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    def recording(*args, **kwargs):
        seen.extend(blas_threads())
        return original(*args, **kwargs)

    before = blas_threads()
    monkeypatch.setattr(_network._lsh, "neuron_codes", recording)
    for n_jobs in (1, 2):
        # the first build, the scheduled rebuilds, and the early-stopping restore
        quiet_fit(make(n_jobs=n_jobs, selection="lsh", rehash_interval=2, max_iter=3,
                       early_stopping=True), X[:600], y[:600])
    assert len(seen) > 6 and set(seen) == {1}
    assert blas_threads() == before  # the limit is lifted after each product


# ------------------------------------------------------------------ diagnostics

def test_flop_fraction_falls_with_sparsity(digits):
    X, y = digits
    fractions = {}
    for sparsity in (0.05, 0.3):
        model = quiet_fit(make(hidden_layer_sizes=(512,), sparsity=sparsity, max_iter=1,
                               K=6, L=10), X, y)
        assert 0.0 < model.flop_fraction_ < 1.0
        fractions[sparsity] = model.flop_fraction_
    assert fractions[0.05] < 0.5
    assert fractions[0.05] < fractions[0.3]


@pytest.mark.parametrize("selection", ["auto", "lsh"])
@pytest.mark.parametrize("sizes, sparsity", [((512,), 0.05), ((32, 32), 0.3), ((50, 7), 0.2)])
def test_active_fraction_is_ceil_sparsity_n_over_n(digits, selection, sizes, sparsity):
    X, y = digits
    model = quiet_fit(make(hidden_layer_sizes=sizes, sparsity=sparsity, max_iter=1,
                           selection=selection), X, y)
    assert model.n_layers_ == len(sizes) + 2
    assert model.active_fraction_.shape == (model.n_layers_ - 1,)
    expected = [math.ceil(sparsity * n) / n for n in sizes] + [1.0]
    np.testing.assert_allclose(model.active_fraction_, expected, rtol=1e-12)


def test_a_whole_sparsity_times_width_keeps_that_many_neurons(digits):
    # 0.07 * 100 and 0.14 * 100 are 7.000000000000001 and 14.000000000000002 in
    # floating point: 7 and 14 neurons, not 8 and 15
    X, y = digits
    for sparsity, kept in ((0.07, 7), (0.14, 14), (0.55, 55)):
        model = quiet_fit(make(hidden_layer_sizes=(100,), sparsity=sparsity, max_iter=1), X[:300], y[:300])
        assert model._n_active[0] == kept


def test_min_active_sets_the_fewest_neurons_of_a_sparse_hidden_layer():
    X, y = make_classification(300, 20, n_informative=8, n_classes=3, random_state=0)
    counts = {}
    for min_active in (1, 32, 10**6):
        model = quiet_fit(HashMLPClassifier((100, 1000), sparsity=0.05, min_active=min_active, max_iter=1,
                                            random_state=0), X, y)
        counts[min_active] = model._n_active.tolist()
    # 5 and 50 by sparsity; at least min_active, at most the layer; the output stays dense
    assert counts == {1: [5, 50, 3], 32: [32, 50, 3], 10**6: [100, 1000, 3]}
    assert HashMLPClassifier().min_active == 32
    # a sparse output layer keeps its share: 5 of 50 classes plus the true labels
    Y = np.random.RandomState(0).rand(300, 50) < 0.05
    model = quiet_fit(HashMLPClassifier((64,), sparse_layers="both", sparsity=0.1, max_iter=1,
                                        random_state=0), X, Y)
    assert model._n_active.tolist() == [32, 5]


def test_auto_prediction_follows_the_fits_counts_and_old_pickles_keep_theirs(digits):
    X, y = digits
    # 8 of 32 with min_active=1: a hashed layer, predicted through its tables
    model = quiet_fit(HashMLPClassifier((32,), selection="lsh", sparsity=0.25, min_active=1,
                                        predict_mode="auto", max_iter=1, random_state=0), X, y)
    assert model._resolved_predict_mode([64, 32, 10], model._n_active) == "hashed"
    state = dict(model.__getstate__())
    del state["min_active"], state["max_fun"]  # as pickled before the parameters existed
    old = HashMLPClassifier.__new__(HashMLPClassifier)
    old.__setstate__(state)
    assert old.get_params()["min_active"] == 1 and old.min_active == 1
    assert old.get_params()["max_fun"] == 15000
    np.testing.assert_array_equal(old.predict(X), model.predict(X))
    # the default floor keeps all 32: dense, so 'auto' predicts by top-k, and a
    # min_active set after the fit changes neither the counts nor the mode
    dense = quiet_fit(model.set_params(min_active=32), X, y)
    assert dense._n_active.tolist() == [32, 10]
    dense.set_params(min_active=1)
    assert dense._resolved_predict_mode([64, 32, 10], dense._n_active) == "topk"


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_continued_optimizer_follows_a_layer_whose_layout_changed(digits, solver):
    # an 'lsh' layer stores its weights neuron-major, an exactly scored one
    # input-major: moments kept in the old order made numba compile the update
    # kernels again (7 versions) when partial_fit continued after set_params
    X, y = digits
    model = HashMLPClassifier((64,), selection="lsh", sparsity=0.2, min_active=1, solver=solver,
                              random_state=0).partial_fit(X, y, classes=np.unique(y))
    saved = {k: [np.array(a) for a in v] for k, v in model._optimizer_state.items() if k.endswith("_W")}
    model.set_params(selection="exact")
    network = model._load_network([64, 64, 10], np.random.RandomState(0), fresh_weights=False)
    assert not network.neuron_major[0]
    state = model._load_optimizer(network, reset=False).state
    for name, moments in saved.items():
        for loaded, before, W in zip(state[name], moments, network.weights):
            np.testing.assert_array_equal(loaded, before)  # the same values, in the weights' order
            assert loaded.flags.c_contiguous == W.flags.c_contiguous
    model.partial_fit(X, y)  # and training goes on from there
    assert np.isfinite(model.loss_)


def test_early_stopping_validates_with_the_counts_being_trained(digits, monkeypatch):
    X, y = digits
    # a first fit has no fitted counts yet: validation must not need them
    model = quiet_fit(HashMLPClassifier((64,), selection="lsh", early_stopping=True, predict_mode="auto",
                                        max_iter=2, random_state=0), X, y)
    assert model.validation_scores_ and model._n_active.tolist() == [32, 10]
    # a warm start that makes the layer sparse again validates through its tables
    modes = []
    resolve = HashMLPClassifier._resolved_predict_mode
    monkeypatch.setattr(HashMLPClassifier, "_resolved_predict_mode",
                        lambda self, *args: modes.append(resolve(self, *args)) or modes[-1])
    quiet_fit(model.set_params(min_active=64, warm_start=True), X, y)
    assert set(modes) == {"topk"}  # 64 of 64: dense
    modes.clear()
    quiet_fit(model.set_params(min_active=1), X, y)
    assert set(modes) == {"hashed"} and model._n_active.tolist() == [4, 10]


def test_default_small_network_scores_as_mlpclassifier_on_iris():
    # MLPClassifier's default 100 neurons at sparsity 0.05 would keep 5 per sample,
    # too few to learn iris from (0.76 at min_active=1 on this split, 0.97 at 32)
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    dense = quiet_fit(MLPClassifier(random_state=0), X_train, y_train).score(X_test, y_test)
    sparse = quiet_fit(HashMLPClassifier(random_state=0), X_train, y_train)
    assert sparse._n_active.tolist() == [32, 3]
    assert sparse.score(X_test, y_test) >= dense - 0.03


def test_asynchronous_fits_are_tagged_non_deterministic():
    assert not HashMLPClassifier().__sklearn_tags__().non_deterministic
    assert HashMLPClassifier(asynchronous=True).__sklearn_tags__().non_deterministic


def test_dense_training_reports_full_activity(digits):
    X, y = digits
    model = quiet_fit(make(sparsity=1.0), X, y)
    np.testing.assert_array_equal(model.active_fraction_, [1.0, 1.0])
    sparse = quiet_fit(make(sparsity=0.1), X, y)
    assert sparse.flop_fraction_ < model.flop_fraction_


# ------------------------------------------------------------------- prediction

@pytest.mark.parametrize("predict_mode", ["topk", "dense"])
def test_prediction_is_deterministic_and_row_independent(digits, predict_mode):
    X, y = digits
    model = quiet_fit(make(predict_mode=predict_mode), X, y)
    labels, proba = model.predict(X), model.predict_proba(X)
    np.testing.assert_array_equal(model.predict(X), labels)
    np.testing.assert_array_equal(model.predict_proba(X), proba)
    rows = np.random.RandomState(0).choice(X.shape[0], 37, replace=False)
    np.testing.assert_array_equal(model.predict(X[rows]), labels[rows])
    np.testing.assert_allclose(model.predict_proba(X[rows]), proba[rows], rtol=1e-5, atol=1e-7)
    for i in rows[:5]:
        np.testing.assert_array_equal(model.predict(X[i: i + 1]), labels[i: i + 1])
    # more rows than one prediction chunk (2048) are handled the same way
    big = np.vstack([X, X])
    np.testing.assert_array_equal(model.predict(big), np.concatenate([labels, labels]))


# ------------------------------------------------------------ learning quality

def test_learns_digits_well_above_chance(digits):
    X, y = digits
    model = quiet_fit(make(hidden_layer_sizes=(256,), max_iter=10), X, y)
    assert model.score(X, y) > 0.9
    assert model.loss_curve_[-1] < model.loss_curve_[0]


def test_stops_when_training_loss_stalls_like_mlpclassifier(digits):
    X, y = digits
    model = quiet_fit(make(n_iter_no_change=1, tol=10.0, max_iter=50), X, y)
    reference = MLPClassifier((64,), n_iter_no_change=1, tol=10.0, max_iter=50).fit(X, y)
    assert model.n_iter_ == reference.n_iter_ == 3  # two epochs without improvement


def test_switching_early_stopping_between_warm_fits(digits):
    X, y = digits
    model = quiet_fit(make(warm_start=True), X, y)
    model.set_params(early_stopping=True)
    quiet_fit(model, X, y)
    assert len(model.validation_scores_) == model.n_iter_
    model.set_params(early_stopping=False)
    quiet_fit(model, X, y)
    assert np.isfinite(model.best_loss_)


def test_numpy_scalar_parameters_reuse_the_compiled_kernels(tmp_path):
    # a grid of np.int32 K, L or n_probes once made numba compile (about 40 s) and
    # cache another version of the selection kernels
    from numba.core.registry import CPUDispatcher

    from sklearn_hashdl import _block_kernels, _kernels, _lsh, _select, _work_sharing

    def compiled_versions():
        return {(module.__name__, name): len(kernel.signatures)
                for module in (_kernels, _lsh, _select, _block_kernels, _work_sharing)
                for name, kernel in vars(module).items() if isinstance(kernel, CPUDispatcher)}

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]

    def fit_and_predict(integer, real):
        for solver in ("adam", "sgd"):
            for selection in ("lsh", "lsh_rerank", "exact", "random"):
                model = HashMLPClassifier(
                    hidden_layer_sizes=(integer(40),), min_active=integer(1), selection=selection,
                    solver=solver, K=integer(5),
                    L=integer(4), n_probes=integer(2), sparsity=real(0.2), sparse_layers="both",
                    alpha=real(1e-4), learning_rate_init=real(1e-3), beta_1=real(0.9), beta_2=real(0.999),
                    epsilon=real(1e-8), momentum=real(0.9), rerank_factor=real(3.0),
                    rehash_interval=integer(3), rehash_growth=real(1.2), batch_size=integer(64),
                    max_iter=integer(2), n_iter_no_change=integer(5), early_stopping=True,
                    validation_fraction=real(0.2), random_state=0, n_jobs=1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X, y).set_params(early_stopping=False).partial_fit(X, y)
                for mode in ("hashed", "topk", "dense"):
                    model.set_params(predict_mode=mode).predict_proba(X)

    fit_and_predict(int, float)
    versions = compiled_versions()
    fit_and_predict(np.int32, np.float32)
    assert compiled_versions() == versions
    # nor do a memory-mapped model's read-only hash tables
    model = quiet_fit(HashMLPClassifier(hidden_layer_sizes=(40,), min_active=1, selection="lsh", max_iter=2,
                                        random_state=0, n_jobs=1, predict_mode="hashed"), X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    expected = model.predict_proba(X)
    model.partial_fit(X, y)
    versions = compiled_versions()
    mapped = joblib.load(path, mmap_mode="r")
    np.testing.assert_array_equal(mapped.predict_proba(X), expected)
    mapped.partial_fit(X, y)
    assert compiled_versions() == versions


def test_a_single_class_fits_as_in_mlpclassifier():
    # MultiOutputClassifier and ClassifierChain fit one model per label column: an
    # all-zero column gives a one-class fit, which MLPClassifier accepts
    from sklearn.multioutput import MultiOutputClassifier

    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), np.full(60, "only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = MLPClassifier(max_iter=3, random_state=0).fit(X, y)
        for mode in ("topk", "hashed", "dense"):
            model = HashMLPClassifier(max_iter=3, random_state=0, selection="lsh", predict_mode=mode)
            model.fit(X, y)
            np.testing.assert_array_equal(model.classes_, reference.classes_)
            np.testing.assert_array_equal(model.predict(X), reference.predict(X))
            assert model.predict_proba(X).shape == reference.predict_proba(X).shape == (60, 2)
            assert model.score(X, y) == 1.0 and np.isfinite(model.loss_)
        model = HashMLPClassifier(max_iter=3, early_stopping=True, random_state=0).fit(X, y)
        assert model.best_validation_score_ == 1.0
        Y = np.zeros((60, 3), int)
        Y[:30, 1], Y[::3, 2] = 1, 1
        hashed = MultiOutputClassifier(HashMLPClassifier(max_iter=3, random_state=0)).fit(X, Y)
        dense = MultiOutputClassifier(MLPClassifier(max_iter=3, random_state=0)).fit(X, Y)
    np.testing.assert_array_equal(hashed.predict(X)[:, 0], dense.predict(X)[:, 0])
    assert hashed.predict(X).shape == (60, 3)


@pytest.mark.parametrize("corrupt", ["column 25", "column -3", "indptr", "csc row", "short data"])
def test_sparse_matrices_with_indices_outside_them_are_refused(corrupt):
    # the kernels would read and write past the weights (once a segfault, or a fit
    # that changed from run to run)
    from sklearn.base import clone

    X, y = make_classification(n_samples=120, n_features=20, random_state=0)
    X[np.abs(X) < 0.7] = 0
    model = quiet_fit(HashMLPClassifier(hidden_layer_sizes=(16,), min_active=1, max_iter=2, random_state=0),
                      X, y)
    bad = sp.csc_matrix(X) if corrupt == "csc row" else sp.csr_matrix(X)
    if corrupt == "indptr":
        bad.indptr[3] = bad.indptr[4] + 1  # decreasing
    elif corrupt == "short data":
        bad.data = bad.data[:10].astype(np.float32)  # float32: no conversion rebuilds it
    else:
        bad.indices[5] = {"column 25": 25, "column -3": -3, "csc row": 500}[corrupt]
    kept_indices, kept_indptr = bad.indices.copy(), bad.indptr.copy()
    for call in (lambda: model.predict(bad), lambda: quiet_fit(clone(model), bad, y)):
        with pytest.raises(ValueError, match="not a valid"):
            call()
    assert (bad.indices == kept_indices).all() and (bad.indptr == kept_indptr).all()


def test_mlpclassifiers_parameters_carry_over(digits):
    """Every MLPClassifier parameter is accepted with its default (max_fun unused),
    so a model or a grid written for MLPClassifier runs as it is."""
    X, y = digits
    dense_params = MLPClassifier().get_params()
    ours = HashMLPClassifier().get_params()
    assert {name: ours[name] for name in dense_params} == dense_params
    model = quiet_fit(HashMLPClassifier(**{**dense_params, "max_iter": 2, "random_state": 0}), X, y)
    bounded = quiet_fit(clone(model).set_params(max_fun=10), X, y)
    for ours, theirs in zip(bounded.coefs_, model.coefs_):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(InvalidParameterError, match="max_fun"):
        HashMLPClassifier(max_fun=0).fit(X, y)
