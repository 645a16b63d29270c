"""A dense layer after selected neurons runs its passes by input row
(``_kernels.forward_dense_grouped`` and ``backward_dense_grouped``): the same
values as the sample-by-sample kernels, on any number of threads and whatever
rows are batched together."""

import numba
import numpy as np
import pytest

from sklearn_hashdl import _kernels
from sklearn_hashdl._layer_roles import grouped_dense_layers
from sklearn_hashdl._network import Network, active_counts, glorot_init
from sklearn_hashdl._select import SELECT_EXACT, SELECT_LSH
from sklearn_hashdl._work_sharing import new_claims

N_IN, N_OUT, PER_ROW = 300, 7, 40


def _level(n_rows, seed=0):
    """A sparse level of ``n_rows`` samples, ``PER_ROW`` of ``N_IN`` ids each, in random order."""
    rng = np.random.RandomState(seed)
    ids = np.array([rng.choice(N_IN, PER_ROW, replace=False) for _ in range(n_rows)], np.int32)
    vals = rng.randn(n_rows, PER_ROW).astype(np.float32)
    return ids, vals, np.full(n_rows, PER_ROW, np.int32)


def _inverted(ids, cnt):
    n_pairs = ids.size
    touched, row_start = np.zeros(N_IN, np.int32), np.zeros(N_IN + 1, np.int64)
    row_sample, row_pos = np.zeros(n_pairs, np.int32), np.zeros(n_pairs, np.int32)
    n_touched = _kernels.invert_lists(ids, cnt, N_IN, row_start, row_sample, row_pos, touched)
    return touched, n_touched, row_start, row_sample, row_pos


def _weights(seed=1):
    rng = np.random.RandomState(seed)
    return rng.randn(N_IN, N_OUT).astype(np.float32), rng.randn(N_OUT).astype(np.float32)


def _grouped_forward(W, b, level, activation):
    ids, vals, cnt = level
    _, _, row_start, row_sample, row_pos = _inverted(ids, cnt)
    # as the workspace passes it: room for a full batch of its widest such layer
    partial = np.full((_kernels.GROUPED_PARTS, len(cnt) + 3, N_OUT + 2), np.nan, np.float32)
    out = np.zeros((len(cnt), N_OUT), np.float32)
    _kernels.forward_dense_grouped(W, b, vals, len(cnt), row_start, row_sample, row_pos,
                                   activation, partial, out)
    return out


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
def test_grouped_forward_matches_a_float64_reference(activation):
    W, b = _weights()
    level = _level(50)
    code = _kernels.ACTIVATION_CODES[activation]
    got = _grouped_forward(W, b, level, code)
    ids, vals, _ = level
    z = np.einsum("sp,spq->sq", vals.astype(np.float64), W.astype(np.float64)[ids]) + b
    expected = {"identity": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z)}[activation]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_grouped_forward_does_not_depend_on_threads_or_batch():
    W, b = _weights()
    level = _level(64)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one_thread = _grouped_forward(W, b, level, 0)
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(_grouped_forward(W, b, level, 0), one_thread)  # all threads
    # a row's logits are the same when the rows batched with it change
    for s in (0, 17, 63):
        alone = _grouped_forward(W, b, tuple(a[s: s + 1] for a in level), 0)
        assert np.array_equal(alone[0], one_thread[s])


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_grouped_backward_equals_the_sample_by_sample_kernel(activation):
    W, _ = _weights()
    ids, vals, cnt = _level(40, seed=3)
    vals = np.abs(vals)  # as activations of relu or logistic neurons
    out_delta = np.random.RandomState(4).randn(len(cnt), N_OUT).astype(np.float32)
    code = _kernels.ACTIVATION_CODES[activation]
    expected = np.zeros_like(vals)
    all_out = np.tile(np.arange(N_OUT, dtype=np.int32), (len(cnt), 1))
    _kernels.backward_layer(W, ids, vals, cnt, all_out, np.full(len(cnt), N_OUT, np.int32), True, 0,
                            out_delta, code, expected, new_claims(numba.get_num_threads()))
    got = np.full_like(vals, np.nan)
    _kernels.backward_dense_grouped(W, vals, *_inverted(ids, cnt), out_delta, code, got)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("n_out", [7, 983])
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_vectorised_backward_of_an_all_active_layer_matches_a_float64_reference(n_out, activation):
    # backward_all_active: the dense output layer's backward pass in training
    rng = np.random.RandomState(5)
    W = rng.randn(N_IN, n_out).astype(np.float32)
    ids, vals, cnt = _level(60, seed=6)
    cnt[::7] = 3  # some rows with fewer active inputs
    # outputs of the activation; relu's are zero for about half the inputs
    vals = {"identity": vals, "logistic": 1 / (1 + np.exp(-vals)), "tanh": np.tanh(vals),
            "relu": np.maximum(vals, 0)}[activation].astype(np.float32)
    out_delta = rng.randn(len(cnt), n_out).astype(np.float32)
    code = _kernels.ACTIVATION_CODES[activation]
    got = np.full_like(vals, np.nan)
    _kernels.backward_all_active(W, ids, vals, cnt, out_delta, code, got,
                                 new_claims(numba.get_num_threads()))
    sums = np.einsum("spq,sq->sp", W.astype(np.float64)[ids], out_delta.astype(np.float64))
    a = vals.astype(np.float64)
    derivative = {"identity": np.ones_like(a), "logistic": a * (1 - a), "tanh": 1 - a ** 2,
                  "relu": (a > 0).astype(float)}[activation]
    expected = sums * derivative
    by_sample = np.full_like(vals, np.nan)  # the kernel it replaces in training
    _kernels.backward_layer(W, ids, vals, cnt, np.tile(np.arange(n_out, dtype=np.int32), (len(cnt), 1)),
                            np.full(len(cnt), n_out, np.int32), True, 0, out_delta, code, by_sample,
                            new_claims(numba.get_num_threads()))
    for s_, n in enumerate(cnt):
        np.testing.assert_allclose(got[s_, :n], expected[s_, :n], rtol=1e-4, atol=1e-4 * np.sqrt(n_out))
        np.testing.assert_allclose(got[s_, :n], by_sample[s_, :n], rtol=1e-5, atol=1e-5 * np.sqrt(n_out))
        assert np.isnan(got[s_, n:]).all()  # inputs past a row's count are not written
    # the same values on one thread as on all
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one_thread = np.full_like(vals, np.nan)
        _kernels.backward_all_active(W, ids, vals, cnt, out_delta, code, one_thread, new_claims(1))
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(np.nan_to_num(one_thread), np.nan_to_num(got))


def test_training_runs_a_dense_output_layer_backward_through_the_vectorised_kernel(monkeypatch):
    from sklearn_hashdl import HashMLPClassifier

    calls = []
    original = _kernels.backward_all_active

    def counted(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(_kernels, "backward_all_active", counted)
    rng = np.random.RandomState(0)
    X, y = rng.rand(64, 10).astype(np.float32), rng.randint(0, 3, 64)
    HashMLPClassifier((40,), max_iter=1, batch_size=32, min_active=1, random_state=0).fit(X, y)
    assert calls == [(40, 3), (40, 3)]  # the dense output layer, once a batch
    calls.clear()  # a sparse output layer goes by neuron instead
    HashMLPClassifier((40,), max_iter=1, batch_size=32, sparse_layers="both", sparsity=0.5,
                      random_state=0).fit(X, y)
    assert calls == []


def _network(layer_sizes, sparsity, selection):
    rng = np.random.RandomState(0)
    pairs = [glorot_init(rng, a, b, "relu") for a, b in zip(layer_sizes, layer_sizes[1:])]
    n = len(pairs)
    return Network([W for W, _ in pairs], [b for _, b in pairs],
                   active_counts(layer_sizes, sparsity), "relu", True, K=3, L=4, mips=False,
                   hyperplanes=[None] * n, offsets=[None] * n, neuron_ids=[None] * n,
                   selection=selection)


def test_narrow_dense_layers_after_hashed_neurons_run_grouped():
    # the narrow dense output after two hashed hidden layers; not a wide one,
    # whose partial sums would take too much memory, nor one after exactly
    # scored or dense neurons
    assert grouped_dense_layers(_network([20, 64, 64, 10], 0.25, SELECT_LSH)) == [2]
    assert grouped_dense_layers(_network([20, 64, 200], 0.25, SELECT_LSH)) == []
    assert grouped_dense_layers(_network([20, 64, 64, 10], 0.25, SELECT_EXACT)) == []
    assert grouped_dense_layers(_network([20, 64, 10], 1.0, SELECT_LSH)) == []
