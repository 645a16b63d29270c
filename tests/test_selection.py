"""The selection kernel: every strategy returns k distinct neurons per sample,
exact re-ranking returns the true top-k, and LSH ranks by collision count."""

import numba
import numpy as np
import pytest
from numba import njit

from sklearn_hashdl import _lsh, _select
from sklearn_hashdl._network import Network, glorot_init, layer_codes
from sklearn_hashdl._train import select_layer
from sklearn_hashdl._workspace import Workspace

N_IN, N_OUT, K_ACTIVE, BATCH = 30, 200, 12, 16


def _setup(mode, K=3, L=6, rerank_factor=100.0, seed=0):
    rng = np.random.RandomState(seed)
    W, b = glorot_init(rng, N_IN, N_OUT, "relu")
    W2, b2 = glorot_init(rng, N_OUT, 3, "relu")
    net = Network([W, W2], [b, b2], [K_ACTIVE, 3], "relu", True, K, L, False,
                  [None, None], [None, None], [None, None], selection=mode,
                  rerank_factor=rerank_factor)
    net.hash_tables_for(0, rng)
    net.rebuild_tables(0)
    ws = Workspace(net, BATCH, N_IN)
    X = rng.randn(BATCH, N_IN).astype(np.float32) * (rng.rand(BATCH, N_IN) < 0.5)
    ws.load_inputs(X, np.arange(BATCH))
    return net, ws, X


def _selected_lists(net, ws, seed=7):
    inputs = (ws.ids[0], ws.vals[0], ws.cnt[0])
    outputs = (ws.ids[1], ws.vals[1], ws.cnt[1])
    select_layer(net, ws, 0, inputs, outputs, net.selection[0], K_ACTIVE, np.uint64(seed),
                 ws.row_keys, ws.select_cost[0])
    return [ws.ids[1][s, : ws.cnt[1][s]].copy() for s in range(BATCH)]


@pytest.mark.parametrize("mode", list(_select.SELECTION_MODES))
def test_k_distinct_neurons_and_clean_scratch(mode):
    net, ws, _ = _setup(_select.SELECTION_MODES[mode])
    for chosen in _selected_lists(net, ws):
        assert len(chosen) == K_ACTIVE
        assert len(np.unique(chosen)) == K_ACTIVE
        assert chosen.min() >= 0 and chosen.max() < N_OUT
    # scratch must be left zeroed for the next call
    assert not ws.count.any()


def test_exact_mode_returns_the_true_top_k():
    net, ws, X = _setup(_select.SELECT_EXACT)
    Z = X @ net.weights[0] + net.biases[0]
    for s, chosen in enumerate(_selected_lists(net, ws)):
        expected = np.argsort(-Z[s])[:K_ACTIVE]
        np.testing.assert_array_equal(np.sort(chosen), np.sort(expected))


def test_rerank_keeps_the_best_retrieved_candidates():
    net, ws, X = _setup(_select.SELECT_LSH_RERANK, K=2, L=3)
    Z = X @ net.weights[0] + net.biases[0]
    chosen_sets = _selected_lists(net, ws)
    codes = _lsh.neuron_codes(net.weights[0], net.biases[0], net.hyperplanes[0], net.K, net.L)
    proj = np.hstack([X, np.ones((BATCH, 1), np.float32)]) @ net.hyperplanes[0]
    query = ((proj > 0).reshape(BATCH, net.L, net.K) << np.arange(net.K)).sum(axis=2)
    for s, chosen in enumerate(chosen_sets):
        retrieved = np.flatnonzero((codes == query[s]).any(axis=1))
        if len(retrieved) >= K_ACTIVE:
            best = retrieved[np.argsort(-Z[s, retrieved])[:K_ACTIVE]]
            np.testing.assert_array_equal(np.sort(chosen), np.sort(best))
        else:
            assert set(retrieved) <= set(chosen)


def test_lsh_prefers_neurons_returned_by_more_tables():
    net, ws, X = _setup(_select.SELECT_LSH, K=2, L=8)
    codes = _lsh.neuron_codes(net.weights[0], net.biases[0], net.hyperplanes[0], net.K, net.L)
    proj = np.hstack([X, np.ones((BATCH, 1), np.float32)]) @ net.hyperplanes[0]
    query = ((proj > 0).reshape(BATCH, net.L, net.K) << np.arange(net.K)).sum(axis=2)
    for s, chosen in enumerate(_selected_lists(net, ws)):
        collisions = (codes == query[s]).sum(axis=1)
        rest = np.setdiff1d(np.arange(N_OUT), chosen)
        assert collisions[chosen].min() >= collisions[rest].max()


def test_selection_is_reproducible_and_seeded():
    net, ws, _ = _setup(_select.SELECT_RANDOM)
    first, again = _selected_lists(net, ws, 1), _selected_lists(net, ws, 1)
    other = _selected_lists(net, ws, 2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_tables_hold_every_neuron_once_per_table():
    net, _, _ = _setup(_select.SELECT_LSH)
    for t in range(net.L):
        assert net.offsets[0][t, -1] == N_OUT
        assert np.array_equal(np.sort(net.neuron_ids[0][t]), np.arange(N_OUT))
    codes = _lsh.neuron_codes(net.weights[0], net.biases[0], net.hyperplanes[0], net.K, net.L)
    for t in range(net.L):
        for c in range(1 << net.K):
            bucket = net.neuron_ids[0][t, net.offsets[0][t, c]: net.offsets[0][t, c + 1]]
            assert np.all(codes[bucket, t] == c)


@pytest.mark.parametrize("mips", [False, True])
def test_neuron_codes_are_the_signs_of_the_projections_whatever_the_threads(monkeypatch, mips):
    # the products run a chunk of neurons per numba thread: chunks of 64 here (the
    # last one shorter), on one thread and on two
    monkeypatch.setattr(_lsh, "CODE_CHUNK", 64)
    rng = np.random.RandomState(3)
    W, b = glorot_init(rng, N_IN, N_OUT, "relu")
    K, L = 4, 5
    planes = _lsh.make_hyperplanes(rng, N_IN, K, L, mips)
    rows = np.hstack([W.T, b[:, None]]).astype(np.float64)
    if mips:
        norms = np.linalg.norm(rows, axis=1)
        rows = np.hstack([rows / norms.max(), np.sqrt(1 - (norms / norms.max()) ** 2)[:, None]])
    projections = rows @ planes
    expected = ((projections > 0).reshape(N_OUT, L, K) << np.arange(K)).sum(axis=2)
    clear = (np.abs(projections) > 1e-4).reshape(N_OUT, L, K).all(axis=2)  # float32 agrees there
    assert clear.mean() > 0.9

    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = layer_codes(W, b, planes, K, L, mips)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = layer_codes(W, b, planes, K, L, mips)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(one[clear], expected[clear])
    np.testing.assert_array_equal(two, one)


def test_long_codes_are_hashed_into_a_table_sized_for_the_neurons():
    net, ws, _ = _setup(_select.SELECT_LSH, K=20, L=4)
    n_buckets = 1 << (int(np.ceil(np.log2(N_OUT))) + _lsh.SPARE_BUCKET_BITS)  # 2048, not 2**20
    assert net.offsets[0].shape == (net.L, n_buckets + 1)
    codes = _lsh.neuron_codes(net.weights[0], net.biases[0], net.hyperplanes[0], net.K, net.L)
    shift = _lsh._bucket_shift(net.K, net.offsets[0])
    assert shift == 64 - 11
    for t in range(net.L):
        buckets = np.array([_lsh._bucket(c, shift) for c in codes[:, t]])
        assert 0 <= buckets.min() and buckets.max() < n_buckets
        for c in np.unique(buckets):
            held = net.neuron_ids[0][t, net.offsets[0][t, c]: net.offsets[0][t, c + 1]]
            np.testing.assert_array_equal(np.sort(held), np.flatnonzero(buckets == c))
        # distinct codes rarely share a bucket: about 200 codes in 2048 buckets
        assert len(np.unique(buckets)) >= 0.8 * len(np.unique(codes[:, t]))
    for row in _selected_lists(net, ws):
        assert len(np.unique(row)) == K_ACTIVE


def test_a_model_with_long_codes_stays_small():
    import pickle

    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    model = HashMLPClassifier((50,), min_active=1, selection="lsh", K=24, L=10, max_iter=2,
                              random_state=0).fit(X / 16, y)
    assert len(pickle.dumps(model)) < 1_000_000  # 2**24 buckets per table took 671 MB
    # 50 neurons rarely share a 24-bit code: selection is mostly random padding
    assert np.isfinite(model.predict_proba(X / 16)).all()


def test_rehash_schedule_interval_grows():
    schedule = _lsh.RehashSchedule(interval=4, growth=2.0)
    due = [step for step in range(1, 40) if schedule.step()]
    assert due == [4, 12, 28]


def test_multiprobe_reads_neighbouring_buckets():
    net, ws, X = _setup(_select.SELECT_LSH_RERANK, K=4, L=2)
    single = _selected_lists(net, ws)
    single_cost = ws.select_cost[0].copy()
    net.n_probes = 3
    multi = _selected_lists(net, ws)
    # more buckets read per table, and never a worse best candidate
    assert np.all(ws.select_cost[0] >= single_cost) and np.any(ws.select_cost[0] > single_cost)
    Z = X @ net.weights[0] + net.biases[0]
    for s in range(BATCH):
        assert Z[s, multi[s]].max() >= Z[s, single[s]].max() - 1e-6 or len(single[s]) < K_ACTIVE


def test_probes_past_every_bit_and_a_huge_rerank_factor_change_nothing():
    # a table has K + 1 probes at most (its bucket, and one per flipped bit):
    # n_probes=10**9 once sized scratch for 10**10 counts (MemoryError); a
    # rerank_factor of 1e308 overflowed to inf before it was capped by the width
    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    params = dict(hidden_layer_sizes=(32,), min_active=1, selection="lsh_rerank", K=6, max_iter=2, n_jobs=1,
                  random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning
        reference = HashMLPClassifier(n_probes=7, rerank_factor=100.0, **params).fit(X, y)
    with pytest.warns(Warning):
        extreme = HashMLPClassifier(n_probes=10**9, rerank_factor=1e308, **params).fit(X, y)
    for a, b in zip(reference.coefs_, extreme.coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("selection", ["exact", "random"])
def test_K_and_L_change_nothing_without_tables(selection):
    # no layer queries tables: L=10**9 once sized selection scratch by it (MemoryError)
    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    params = dict(hidden_layer_sizes=(32,), min_active=1, selection=selection, max_iter=2, n_jobs=1,
                  random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning
        reference = HashMLPClassifier(**params).fit(X, y)
    with pytest.warns(Warning):
        huge = HashMLPClassifier(K=24, L=10**9, **params).fit(X, y)
    for a, b in zip(reference.coefs_, huge.coefs_):
        np.testing.assert_array_equal(a, b)


def test_tables_are_drawn_anew_when_K_and_L_change_but_not_their_product():
    # K=6, L=10 and K=5, L=12 both give 60 hyperplanes: the saved tables were once
    # reused for L=12, and the kernels wrote past their 10 rows (double free)
    from sklearn.datasets import load_digits
    from sklearn.utils import check_random_state

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    model = HashMLPClassifier(hidden_layer_sizes=(64,), min_active=1, selection="lsh", K=6, L=10, max_iter=1,
                              n_jobs=1, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning
        model.fit(X, y)
    layer_sizes = [X.shape[1], 64, 10]
    kept = model._load_network(layer_sizes, check_random_state(1), fresh_weights=False)
    np.testing.assert_array_equal(kept.hyperplanes[0], model._hash_state["hyperplanes"][0])
    model.set_params(K=5, L=12)
    redrawn = model._load_network(layer_sizes, check_random_state(1), fresh_weights=False)
    assert redrawn.hyperplanes[0].shape == (X.shape[1] + 1, 60)
    assert redrawn.offsets[0].shape[0] == 12 and redrawn.neuron_ids[0].shape == (12, 64)
    assert not np.array_equal(redrawn.hyperplanes[0], model._hash_state["hyperplanes"][0])
    model.partial_fit(X, y)
    assert model._hash_state["offsets"][0].shape[0] == 12
    # small NumPy integers: their product 6 * 50 wraps in int8, yet the tables are kept
    model.set_params(K=np.int8(6), L=np.int8(50)).partial_fit(X, y)
    planes = model._hash_state["hyperplanes"][0]
    model.partial_fit(X, y)
    assert model._hash_state["hyperplanes"][0] is planes
    proba = model.set_params(predict_mode="hashed").predict_proba(X)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_a_rehash_interval_beyond_float_range_never_rehashes():
    from sklearn_hashdl._lsh import RehashSchedule

    schedule = RehashSchedule(10**400, 1.1)  # float(10**400) overflows
    assert not any(schedule.step() for _ in range(1000))


def test_auto_selection_depends_on_layer_width():
    from sklearn_hashdl import HashMLPClassifier
    from sklearn_hashdl._classifier import AUTO_EXACT_MAX_WIDTH

    wide = AUTO_EXACT_MAX_WIDTH + 1
    modes = HashMLPClassifier(selection="auto")._selection_modes
    exact, rerank, random = _select.SELECT_EXACT, _select.SELECT_LSH_RERANK, _select.SELECT_RANDOM
    assert modes([5, AUTO_EXACT_MAX_WIDTH, wide, 10]) == [exact, rerank, exact]
    # a sparse output layer gets random negatives, see _selection_modes
    assert modes([5, 10, wide]) == [exact, random]
    sparse_output = HashMLPClassifier(sparse_layers="output")._selection_modes
    assert sparse_output([5, 10, 20]) == [exact, random]
    assert HashMLPClassifier(selection="lsh")._selection_modes([5, 10, wide]) == [_select.SELECT_LSH] * 2


def test_hashed_prediction_matches_training_selection_and_is_row_deterministic():
    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    model = HashMLPClassifier((300,), min_active=1, selection="lsh", K=4, max_iter=5, random_state=0,
                              predict_mode="hashed").fit(X, y)
    full = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(X[40:57]), full[40:57])
    np.testing.assert_array_equal(model.predict_proba(X[::-1]), full[::-1])
    # the same rows through the sparse kernels with exact selection equal top-k BLAS
    exact = HashMLPClassifier((300,), min_active=1, selection="exact", max_iter=3, random_state=0).fit(X, y)
    topk = exact.predict_proba(X)
    np.testing.assert_allclose(exact.set_params(predict_mode="hashed").predict_proba(X), topk,
                               atol=1e-5)


def test_hashed_prediction_rebuilds_tables_only_when_the_model_changes(monkeypatch):
    import pickle

    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    model = HashMLPClassifier((300,), min_active=1, selection="lsh", K=4, max_iter=2, random_state=0,
                              predict_mode="hashed").fit(X, y)
    rebuilds = []
    rebuild = Network.rebuild_tables
    monkeypatch.setattr(Network, "rebuild_tables", lambda net, i: rebuilds.append(i) or rebuild(net, i))
    first = model.predict_proba(X)
    model.predict(X[:3])
    np.testing.assert_array_equal(model.predict_proba(X[5:9]), first[5:9])
    assert len(rebuilds) == 1

    def uncached(model):  # a copy predicts from freshly built tables
        return pickle.loads(pickle.dumps(model)).predict_proba(X)

    np.testing.assert_array_equal(uncached(model), first)
    # training, or a parameter that shapes the selection, makes a new network
    model.partial_fit(X, y)
    trained = model.predict_proba(X)
    assert not np.array_equal(trained, first)
    np.testing.assert_array_equal(trained, uncached(model))
    model.set_params(n_probes=2)
    probed = model.predict_proba(X)
    assert not np.array_equal(probed, trained)
    np.testing.assert_array_equal(probed, uncached(model))
    # an edit of the fitted arrays in place also makes a new network
    model.coefs_[0] *= -1
    model.intercepts_[0] *= -1
    edited = model.predict_proba(X)
    assert not np.array_equal(edited, probed)
    np.testing.assert_array_equal(edited, uncached(model))


def test_hashed_prediction_copies_a_sparse_output_layer_once(monkeypatch):
    # scoring every output needs the output weights input-major: once per model,
    # not once per call (a 50k-class output layer is tens of MB)
    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    model = HashMLPClassifier((64,), min_active=1, selection="lsh", sparse_layers="both", sparsity=0.3,
                              max_iter=2, random_state=0, predict_mode="hashed")
    with pytest.warns(Warning):  # ConvergenceWarning
        model.fit(X, y)
    copies = []
    contiguous = np.ascontiguousarray

    def counting_contiguous(a, *args, **kwargs):
        if not a.flags.c_contiguous:
            copies.append(a.shape)
        return contiguous(a, *args, **kwargs)

    monkeypatch.setattr("sklearn_hashdl._network.np.ascontiguousarray", counting_contiguous)
    first = model.predict_proba(X[:5])
    assert (64, 10) in copies
    copies.clear()
    np.testing.assert_array_equal(model.predict_proba(X[:5]), first)
    assert copies == []


def test_fingerprint_sees_a_layer_scaled_by_a_power_of_two():
    # with multipliers 2i + 1, a 1024 x 1024 layer times 4 kept its fingerprint
    # (each word grows by 2**24; the multipliers summed to 2**40), and the
    # cached network predicted from the old tables
    from sklearn_hashdl._kernels import fingerprint

    W = np.random.RandomState(0).randn(1 << 20).astype(np.float32)
    prints = {int(fingerprint((W * scale).view(np.uint32))) for scale in (1, 4, 0.25, 2, -1)}
    assert len(prints) == 5
    single = W.copy()
    single[12345] = np.nextafter(single[12345], np.float32(np.inf))
    assert fingerprint(single.view(np.uint32)) != fingerprint(W.view(np.uint32))


@pytest.mark.parametrize("sparse", [False, True])
def test_hashed_prediction_converts_float64_input_a_chunk_at_a_time(sparse, monkeypatch):
    # it once made a float32 copy of the whole input first (200k MNIST rows:
    # 611 MB more at its peak than predict_mode='topk')
    import scipy.sparse as sp

    from sklearn_hashdl import HashMLPClassifier, _inference

    rng = np.random.RandomState(0)
    X = rng.rand(5000, 30)
    X[X < 0.5] = 0
    y = rng.randint(0, 3, len(X))
    if sparse:
        X = sp.csr_matrix(X)
    model = HashMLPClassifier((64,), min_active=1, selection="lsh", predict_mode="hashed", max_iter=1,
                              random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning
        model.fit(X[:500], y[:500])
    converted, convert = [], _inference.kernel_input
    monkeypatch.setattr(_inference, "kernel_input", lambda X: converted.append(X.shape[0]) or convert(X))
    proba = model.predict_proba(X)
    assert sum(converted) == X.shape[0] and max(converted) <= _inference.MAX_CHUNK_ROWS
    np.testing.assert_allclose(proba, model.predict_proba(X.astype(np.float32)), rtol=1e-6)


def test_prediction_keeps_the_fits_active_counts_in_every_mode():
    # 'hashed' once took a sparsity set after the fit, where 'topk' kept the fit's
    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    model = HashMLPClassifier((64,), min_active=1, selection="exact", max_iter=2, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning
        model.fit(X, y)
    modes = ("topk", "hashed")
    before = {mode: model.set_params(predict_mode=mode).predict_proba(X) for mode in modes}
    model.set_params(sparsity=0.5)
    for mode in modes:
        np.testing.assert_array_equal(model.set_params(predict_mode=mode).predict_proba(X),
                                      before[mode])


def test_sparse_float64_prediction_makes_no_float64_copy_of_the_first_layer():
    # a TfidfTransformer's float64 CSR output once had every predict call copy the
    # first layer's weights to float64 (20 Newsgroups, 130k x 256: 266 MB)
    import tracemalloc

    import scipy.sparse as sp

    from sklearn_hashdl import HashMLPClassifier

    rng = np.random.RandomState(0)
    X = sp.random(300, 20000, density=0.002, format="csr", random_state=0, dtype=np.float64)
    y = rng.randint(0, 3, 300)
    model = HashMLPClassifier((64,), min_active=1, max_iter=1, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning
        model.fit(X, y)
    model.predict_proba(X[:5])
    tracemalloc.start()
    proba = model.predict_proba(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert proba.dtype == np.float64
    assert peak < model.coefs_[0].nbytes, (peak, model.coefs_[0].nbytes)  # a float64 copy: 2x
    np.testing.assert_allclose(proba, model.predict_proba(X.toarray()), rtol=1e-5, atol=1e-7)


def test_cached_prediction_network_is_dropped_by_fit_and_not_kept_for_mapped_models(tmp_path):
    import gc
    import weakref

    import joblib
    from sklearn.datasets import load_digits

    from sklearn_hashdl import HashMLPClassifier, _classifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    model = HashMLPClassifier((100,), min_active=1, selection="lsh", K=4, max_iter=1, random_state=0,
                              predict_mode="hashed").fit(X, y)
    model.predict(X[:2])
    old_weights = weakref.ref(model.coefs_[0])
    model.fit(X, y)
    gc.collect()
    assert old_weights() is None  # the cache no longer holds the previous model
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    mapped = joblib.load(path, mmap_mode="r")
    np.testing.assert_array_equal(mapped.predict_proba(X), model.predict_proba(X))
    assert mapped not in _classifier._PREDICTION_NETWORKS  # its copy of the weights is not kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prediction_top_k_keeps_each_rows_k_largest(dtype):
    rng = np.random.RandomState(0)
    # ReLU-like rows: some with fewer than k positive values (ties at zero)
    A = np.maximum(rng.randn(64, 500) - rng.rand(64, 1) * 3, 0).astype(dtype)
    for k in (1, 25, 499, 500, 600):
        kept = A.copy()
        _select.keep_top_k_rows(kept, k)
        kth = -np.sort(-A, axis=1)[:, min(k, 500) - 1 : min(k, 500)]
        np.testing.assert_array_equal(kept, np.where(A >= kth, A, 0))
        assert ((kept != 0).sum(axis=1) <= k).all()


@njit
def _top_k(scores, k, block_width=0):
    ids = np.arange(scores.shape[0]).astype(np.int32)
    row = np.zeros(k, np.int32)
    kept = np.zeros(scores.shape[0], np.int32)
    n = _select._top_by_score(ids, scores.copy(), scores.shape[0], k, row, kept, block_width)
    return row[:n]


@pytest.mark.parametrize("block_width", [0, 500, 333, 60, 7])
@pytest.mark.parametrize("case", ["random", "ascending", "descending", "ties", "few", "negative"])
def test_top_by_score_finds_the_k_largest(case, block_width):
    """The cut and quickselect behind exact and re-ranked selection, on orders
    and ties that trip partition schemes, with the cut's groups made within
    column blocks (of 7 neurons: too narrow for groups) or not (0)."""
    rng = np.random.RandomState(0)
    n, k = (1000, 50) if case != "few" else (30, 20)
    scores = {
        "random": rng.randn(n), "ascending": np.arange(n), "descending": -np.arange(n),
        "ties": rng.randint(0, 3, n), "few": rng.randn(n), "negative": -rng.rand(n) - 5,
    }[case].astype(np.float32)
    chosen = _top_k(scores, k, block_width)
    assert len(np.unique(chosen)) == k
    # every chosen score is at least every unchosen one
    rest = np.setdiff1d(np.arange(n), chosen)
    assert scores[chosen].min() >= scores[rest].max()


@pytest.mark.parametrize("block_width", [0, 150])
def test_top_by_score_survives_nan_scores(block_width):
    scores = np.random.RandomState(1).randn(400).astype(np.float32)
    scores[::7] = np.nan
    chosen = _top_k(scores, 20, block_width)
    assert len(np.unique(chosen)) == 20 and chosen.min() >= 0 and chosen.max() < 400


@njit
def _grouped(picked, block_width, n_neurons):
    row = np.zeros(picked.shape[0], np.int32)
    order = np.zeros(picked.shape[0], np.int32)
    _select._group_by_block(picked, picked.shape[0], block_width, n_neurons, row, order)
    return row, order


def test_group_by_block_orders_by_block_and_a_whole_block_ascending():
    # blocks of 4 among 10 neurons: [0, 4), [4, 8), [8, 10); the last picked whole
    picked = np.array([9, 5, 1, 8, 4, 0], np.int32)
    row, order = _grouped(picked, 4, 10)
    np.testing.assert_array_equal(row, [1, 0, 5, 4, 8, 9])
    np.testing.assert_array_equal(picked[order], row)  # each entry's place in picked


def test_exact_selection_gives_the_forward_pass_values():
    # an exactly scored hidden layer: the chosen neurons' scores are their
    # activations, so the forward pass is skipped; they must be what it computes
    net, ws, X = _setup(_select.SELECT_EXACT)
    assert not net.neuron_major[0]
    chosen = _selected_lists(net, ws)
    W, b = net.weights[0], net.biases[0]
    for s in range(BATCH):
        expected = np.maximum(X[s] @ W[:, chosen[s]] + b[chosen[s]], 0)
        np.testing.assert_allclose(ws.vals[1][s, :K_ACTIVE], expected, rtol=1e-5, atol=1e-6)


@njit
def _ordered_top(scores, k):
    ids = np.arange(scores.shape[0]).astype(np.int32)
    scores = scores.copy()
    _select._order_top(scores, ids, scores.shape[0], k)
    return ids[:k], scores[:k]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_top_keeps_order_and_takes_the_first_ties(dtype):
    """The bisection over the scores' bits: the k largest in their order, equal
    scores at the cut taken first come, -0.0 equal to 0.0, infinities in place."""
    scores = np.array([0.5, -0.0, 3.0, 0.0, -np.inf, 0.5, 0.0, np.inf, -2.0, 0.5], dtype)
    ids, kept = _ordered_top(scores, 4)
    np.testing.assert_array_equal(ids, [0, 2, 5, 7])  # 0.5 at 9 is the tie left out
    np.testing.assert_array_equal(kept, scores[[0, 2, 5, 7]])
    ids, _ = _ordered_top(scores, 7)  # zeros, signed or not, taken in order
    np.testing.assert_array_equal(ids, [0, 1, 2, 3, 5, 7, 9])
    ids, _ = _ordered_top(scores, 9)
    np.testing.assert_array_equal(ids, [0, 1, 2, 3, 5, 6, 7, 8, 9])
    rng = np.random.RandomState(0)
    for _ in range(200):  # wide ranges and tiny gaps between the k-th and the next
        n = rng.randint(2, 300)
        values = rng.randn(n) * 10.0 ** rng.randint(-30, 30)
        values = np.where(rng.rand(n) < 0.3, np.round(values, 0), values).astype(dtype)
        k = rng.randint(1, n + 1)
        ids, _ = _ordered_top(values, k)
        assert np.all(np.diff(ids) > 0)
        expected = np.sort(np.argsort(-values, kind="stable")[:k])  # ties: the first ones
        np.testing.assert_array_equal(ids, expected)
