"""asynchronous=True: HOGWILD! training, each thread on its own batches.

Results depend on thread timing, so these tests compare an asynchronous fit with
the synchronous one through what must not depend on it: the batches seen, the
rehash schedule, the accuracy reached, and exact equality with one thread.
"""

import threading
import warnings

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning

from sklearn_hashdl import HashMLPClassifier, _train

TWO_THREADS = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                 reason="needs 2 numba threads (NUMBA_NUM_THREADS)")
PARAMS = dict(hidden_layer_sizes=(256,), sparsity=0.1, min_active=1, rehash_interval=3, max_iter=4,
              batch_size=50, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.fixture
def async_rounds(monkeypatch):
    """Counts the batches trained on the asynchronous path."""
    counts = {"batches": 0}
    original = _train.TrainingRun._train_asynchronously

    def counting(self, batches):
        counts["batches"] += len(batches)
        return original(self, batches)

    monkeypatch.setattr(_train.TrainingRun, "_train_asynchronously", counting)
    return counts


@TWO_THREADS
def test_no_more_asynchronous_workers_than_cores(digits, async_rounds, monkeypatch):
    # a worker descheduled mid-batch applies a stale step later: 8 workers on 2
    # cores cost the 3 x 1000 network up to 45 points of accuracy
    from sklearn_hashdl import _classifier

    monkeypatch.setattr(_classifier, "machine_cores", lambda: 1)
    X, y = digits
    one_core = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=2, asynchronous=True), X, y)
    assert async_rounds["batches"] == 0  # trained synchronously
    sync = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=1), X, y)
    assert one_core.loss_curve_ == sync.loss_curve_


def test_one_thread_is_the_synchronous_fit(digits, async_rounds):
    X, y = digits
    sync = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=1), X, y)
    one = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=1, asynchronous=True), X, y)
    for a, b in zip(sync.coefs_ + sync.intercepts_, one.coefs_ + one.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert sync.loss_curve_ == one.loss_curve_
    assert async_rounds["batches"] == 0


@TWO_THREADS
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_two_threads_train_every_batch_to_the_same_accuracy(digits, async_rounds, solver):
    X, y = digits
    X_train, y_train, X_test, y_test = X[:1400], y[:1400], X[1400:], y[1400:]
    params = dict(PARAMS, solver=solver, learning_rate_init=0.01 if solver == "adam" else 0.1)
    sync = quiet_fit(HashMLPClassifier(**params, n_jobs=2), X_train, y_train)
    hogwild = quiet_fit(HashMLPClassifier(**params, n_jobs=2, asynchronous=True), X_train, y_train)
    n_batches = params["max_iter"] * int(np.ceil(1400 / params["batch_size"]))
    assert async_rounds["batches"] == n_batches
    # every batch counted once: the optimizer's steps and the rehash schedule agree
    assert hogwild._optimizer_state["step"] == sync._optimizer_state["step"] == n_batches
    assert hogwild._rehash_state == sync._rehash_state
    assert hogwild.t_ == sync.t_ and hogwild.n_iter_ == sync.n_iter_
    assert len(hogwild.loss_curve_) == len(sync.loss_curve_)
    assert np.isfinite(hogwild.loss_curve_).all()
    assert hogwild.flop_fraction_ == pytest.approx(sync.flop_fraction_, rel=0.2)
    np.testing.assert_allclose(hogwild.active_fraction_, sync.active_fraction_, rtol=1e-6)
    assert sync.score(X_test, y_test) > 0.85
    assert hogwild.score(X_test, y_test) > sync.score(X_test, y_test) - 0.1


@TWO_THREADS
def test_two_threads_on_sparse_input_and_a_hashed_output_layer(async_rounds):
    X, Y = make_multilabel_classification(n_samples=600, n_features=60, n_classes=40,
                                          n_labels=3, random_state=0)
    X = sp.csr_matrix(X / X.max())
    params = dict(hidden_layer_sizes=(64,), sparsity=0.2, min_active=1, sparse_layers="both", max_iter=3,
                  batch_size=40, random_state=0, learning_rate_init=0.01)
    sync = quiet_fit(HashMLPClassifier(**params, n_jobs=2), X, Y)
    hogwild = quiet_fit(HashMLPClassifier(**params, n_jobs=2, asynchronous=True), X, Y)
    assert async_rounds["batches"] == 3 * 15
    assert all(np.isfinite(W).all() for W in hogwild.coefs_)
    assert hogwild.predict(X).shape == Y.shape
    assert hogwild.score(X, Y) > sync.score(X, Y) - 0.1


@TWO_THREADS
def test_partial_fit_continues_asynchronously(digits, async_rounds):
    X, y = digits
    # hash tables: the threads must stop while they are rebuilt, 4 times per epoch here
    params = dict(PARAMS, selection="lsh", learning_rate_init=0.01)
    sync = HashMLPClassifier(**params, n_jobs=2)
    hogwild = HashMLPClassifier(**params, n_jobs=2, asynchronous=True)
    for _ in range(3):
        sync.partial_fit(X, y, classes=np.unique(y))
        hogwild.partial_fit(X, y, classes=np.unique(y))
    assert hogwild.t_ == 3 * X.shape[0]
    assert async_rounds["batches"] == 3 * int(np.ceil(X.shape[0] / PARAMS["batch_size"]))
    assert hogwild._rehash_state == sync._rehash_state
    # HOGWILD! noise on a small problem: 0.73-0.90 over 40 runs, against 0.87 synchronously
    assert hogwild.score(X, y) > 0.6


@TWO_THREADS
def test_an_error_in_a_worker_stops_training_and_leaves_the_model(digits, monkeypatch):
    X, y = digits
    model = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=2, asynchronous=True), X, y)
    before = [W.copy() for W in model.coefs_]
    threads_before = threading.active_count()
    calls = {"n": 0}
    lock = threading.Lock()
    original = _train.train_batch

    def failing(*args, **kwargs):
        with lock:
            calls["n"] += 1
            fail = calls["n"] == 5
        if fail:
            raise RuntimeError("worker failed")
        return original(*args, **kwargs)

    monkeypatch.setattr(_train, "train_batch", failing)
    with pytest.raises(RuntimeError, match="worker failed"):
        model.partial_fit(X, y)
    assert calls["n"] < 10  # the other worker stopped after its batch
    assert threading.active_count() == threads_before
    for a, b in zip(before, model.coefs_):
        np.testing.assert_array_equal(a, b)


@TWO_THREADS
def test_workqueue_layer_warns_and_trains_synchronously(digits, monkeypatch, async_rounds):
    X, y = digits
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    with pytest.warns(UserWarning, match="threading layer"):
        hogwild = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=2, asynchronous=True), X, y)
    sync = quiet_fit(HashMLPClassifier(**PARAMS, n_jobs=2), X, y)
    for a, b in zip(sync.coefs_, hogwild.coefs_):
        np.testing.assert_array_equal(a, b)
    assert async_rounds["batches"] == 0


@TWO_THREADS
@pytest.mark.parametrize("sparse_input", [False, True])
def test_batches_of_all_zero_rows(sparse_input):
    # an empty batch input: no touched rows for the reversed sweep of the second worker
    rng = np.random.RandomState(0)
    X = rng.rand(200, 20) * (rng.rand(200, 1) > 0.3)
    y = rng.randint(0, 3, 200)
    X = sp.csr_matrix(X) if sparse_input else X
    model = quiet_fit(HashMLPClassifier((32,), min_active=1, sparsity=0.25, batch_size=2, max_iter=2,
                                        random_state=0, n_jobs=2, asynchronous=True), X, y)
    assert all(np.isfinite(W).all() for W in model.coefs_)
