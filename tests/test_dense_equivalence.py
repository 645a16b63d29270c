"""With every neuron active the sparse engine is dense training: it must match
scikit-learn's MLPClassifier (same initialisation, batches and optimizer rules)
to float32 precision, for every activation, both solvers and each target type."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl._network import glorot_init

COMMON = dict(hidden_layer_sizes=(7, 6), max_iter=4, batch_size=16, shuffle=False,
              random_state=0, alpha=1e-3, learning_rate_init=0.01)


def _data(target, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(64, 5).astype(np.float32)
    if target == "binary":
        y = rng.randint(0, 2, 64)
    elif target == "multiclass":
        y = rng.randint(0, 3, 64)
    else:
        y = (rng.rand(64, 4) < 0.4).astype(int)
    return X, y


def _fit_both(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = HashMLPClassifier(sparsity=1.0, **{**COMMON, **params}).fit(X, y)
        theirs = MLPClassifier(**{**COMMON, **params}).fit(X, y)
    return ours, theirs


def _assert_same(ours, theirs, X):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_matches_mlpclassifier(solver, activation):
    X, y = _data("multiclass")
    _assert_same(*_fit_both(X, y, solver=solver, activation=activation), X)


@pytest.mark.parametrize("target", ["binary", "multilabel"])
def test_matches_mlpclassifier_on_logistic_outputs(target):
    X, y = _data(target)
    ours, theirs = _fit_both(X, y)
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    _assert_same(ours, theirs, X)


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_matches_mlpclassifier_learning_rate_schedules(learning_rate):
    X, y = _data("multiclass")
    ours, theirs = _fit_both(X, y, solver="sgd", learning_rate=learning_rate, max_iter=12,
                             n_iter_no_change=2, tol=0.05, nesterovs_momentum=False)
    assert ours.n_iter_ == theirs.n_iter_
    _assert_same(ours, theirs, X)


def test_matches_mlpclassifier_with_sample_weight_and_shuffle():
    X, y = _data("multiclass", seed=3)
    weights = np.random.RandomState(0).rand(64) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        params = {**COMMON, "shuffle": True}
        ours = HashMLPClassifier(sparsity=1.0, **params).fit(X, y, sample_weight=weights)
        theirs = MLPClassifier(**params).fit(X, y, sample_weight=weights)
    _assert_same(ours, theirs, X)


def test_matches_mlpclassifier_partial_fit_on_sparse_input():
    X, y = _data("multiclass", seed=4)
    X_sparse = sp.csr_matrix(np.where(np.abs(X) > 0.3, X, 0))
    ours = HashMLPClassifier(sparsity=1.0, **COMMON)
    theirs = MLPClassifier(**COMMON)
    for _ in range(3):
        ours.partial_fit(X_sparse, y, classes=[0, 1, 2])
        theirs.partial_fit(X_sparse, y, classes=[0, 1, 2])
    # inputs that are exactly zero are skipped, so their weights get no L2 decay:
    # compare without the penalty. Every input here is non-zero in some sample
    # of each batch; one zero throughout a batch would keep its weights still
    # (test_an_input_zero_in_a_whole_batch_keeps_its_weights)
    batches = X_sparse.toarray().reshape(-1, COMMON["batch_size"], X_sparse.shape[1])
    assert (batches != 0).any(axis=1).all()
    ours_no_l2 = HashMLPClassifier(sparsity=1.0, **{**COMMON, "alpha": 0.0})
    theirs_no_l2 = MLPClassifier(**{**COMMON, "alpha": 0.0})
    for _ in range(3):
        ours_no_l2.partial_fit(X_sparse, y, classes=[0, 1, 2])
        theirs_no_l2.partial_fit(X_sparse, y, classes=[0, 1, 2])
    _assert_same(ours_no_l2, theirs_no_l2, X_sparse)
    # as in MLPClassifier, n_iter_ counts the epochs of the last call only
    assert ours.n_iter_ == theirs.n_iter_ == 1
    assert ours.t_ == theirs.t_ == 3 * 64


def test_an_input_zero_in_a_whole_batch_keeps_its_weights():
    # The updates stay lazy with every neuron active: a batch in which an input
    # is zero in every sample leaves that input's weights and their Adam
    # moments as they were, where MLPClassifier still moves them by their
    # momentum (and L2 decay). The other weights train alike.
    X, y = _data("multiclass", seed=6)
    X[32:, 0] = 0
    params = {**COMMON, "batch_size": 32}
    ours, theirs = HashMLPClassifier(sparsity=1.0, **params), MLPClassifier(**params)
    for model in (ours, theirs):
        model.partial_fit(X[:32], y[:32], classes=[0, 1, 2])
    first_ours, first_theirs = ours.coefs_[0].copy(), theirs.coefs_[0].copy()
    np.testing.assert_allclose(first_ours, first_theirs, atol=2e-5, rtol=1e-4)
    for model in (ours, theirs):
        model.partial_fit(X[32:], y[32:])  # input 0 is zero in this whole batch
    np.testing.assert_array_equal(ours.coefs_[0][0], first_ours[0])
    assert (theirs.coefs_[0][0] != first_theirs[0]).all()
    np.testing.assert_allclose(ours.coefs_[0][1:], theirs.coefs_[0][1:], atol=2e-5, rtol=1e-4)
    assert (ours.coefs_[0][1:] != first_ours[1:]).all()


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_continued_optimizer_keeps_its_settings_as_in_mlpclassifier(solver):
    # partial_fit continues the optimizer made by the first call, with its
    # learning rate and momentum, whatever set_params changed in between
    X, y = _data("multiclass", seed=7)
    ours = HashMLPClassifier(sparsity=1.0, solver=solver, **COMMON)
    theirs = MLPClassifier(solver=solver, **COMMON)
    for model in (ours, theirs):
        model.partial_fit(X, y, classes=[0, 1, 2])
        model.set_params(learning_rate_init=1.0, momentum=0.5, beta_1=0.5)
        model.partial_fit(X, y)
    _assert_same(ours, theirs, X)


def test_adam_rounds_its_constants_as_mlpclassifier_over_many_epochs():
    # 1 - float32(0.999) is 1.3e-5 off float32(0.001), which sklearn uses: the
    # steps were a little too large, and the loss drifted by 2e-6 in 50 epochs
    rng = np.random.RandomState(0)
    X = rng.randn(300, 10).astype(np.float32)
    y = rng.randint(0, 3, 300)
    params = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=50, alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = HashMLPClassifier(sparsity=1.0, n_jobs=1, **params).fit(X, y)
        theirs = MLPClassifier(**params).fit(X, y)
    assert np.abs(np.subtract(ours.loss_curve_, theirs.loss_curve_)).max() < 3e-7


def test_later_calls_shuffle_as_in_mlpclassifier():
    # each call draws its shuffles from random_state as MLPClassifier does (an
    # int seed's stream starts again); only the random neurons of sparse
    # layers change with the samples seen (test_extreme)
    X, y = _data("multiclass", seed=5)
    params = {**COMMON, "shuffle": True}
    ours, theirs = HashMLPClassifier(sparsity=1.0, **params), MLPClassifier(**params)
    for _ in range(3):
        ours.partial_fit(X, y, classes=[0, 1, 2])
        theirs.partial_fit(X, y, classes=[0, 1, 2])
    _assert_same(ours, theirs, X)
    ours, theirs = _fit_both(X, y, shuffle=True, warm_start=True, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)
    _assert_same(ours, theirs, X)


@pytest.mark.parametrize("activation", ["relu", "logistic"])
@pytest.mark.parametrize("fan_in, fan_out", [(50, 1000), (3, 70000)])
def test_initial_weights_are_mlpclassifiers_draws(activation, fan_in, fan_out):
    # layers this wide are drawn a few rows at a time (several draws per matrix);
    # the values must still be those of MLPClassifier's single draw, in order
    dense = MLPClassifier(activation=activation)
    dense._random_state = np.random.RandomState(0)
    expected = [dense._init_coef(a, b, np.float32) for a, b in [(fan_in, fan_out), (fan_out, 2)]]
    rng = np.random.RandomState(0)
    drawn = [glorot_init(rng, a, b, activation) for a, b in [(fan_in, fan_out), (fan_out, 2)]]
    for (W, b), (W_ref, b_ref) in zip(drawn, expected):
        assert W.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(W, W_ref)
        np.testing.assert_array_equal(b, b_ref)
