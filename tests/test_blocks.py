"""Column blocks (``_blocks``): exactly scored hidden layers split into blocks of neurons.

Stored apart or left in the one matrix, the blocks must train bit for bit alike,
for any number of blocks, including uneven blocks, blocks that a sample fills
completely and empty ones; the number of blocks changes only the rounding.
"""

import numba
import numpy as np
import pytest
from sklearn.datasets import make_classification

from sklearn_hashdl import HashMLPClassifier, _train
from sklearn_hashdl._blocks import (PAGE_BYTES, ColumnBlocks, LayoutChooser, column_blocks,
                                    machine_cores, n_column_blocks)
from sklearn_hashdl._inputs import Targets
from sklearn_hashdl._layer_roles import column_blocked_layers
from sklearn_hashdl._network import Network, active_counts, glorot_init
from sklearn_hashdl._optim import SparseOptimizer
from sklearn_hashdl._select import SELECT_EXACT
from sklearn_hashdl._train import train_batch
from sklearn_hashdl._workspace import Workspace

SIZES = [30, 200, 150, 5]


@pytest.mark.parametrize("n_columns, n_blocks", [(1000, 2), (10, 3), (7, 7), (5, 1)])
def test_split_and_join_give_back_the_matrix(n_columns, n_blocks):
    rng = np.random.default_rng(0)
    A = rng.random((13, n_columns), dtype=np.float32)
    layout = ColumnBlocks(13, n_columns, n_blocks)
    assert layout.n_blocks == n_blocks and layout.starts[-1] == n_columns
    blocked = layout.split(A)
    # at least a page of unused rows between one block's data and the next
    gap_bytes = (blocked.shape[1] - 13) * blocked.shape[2] * blocked.itemsize
    assert gap_bytes >= PAGE_BYTES
    assert not blocked[:, 13:].any()
    for t in range(n_blocks):
        lo, hi = layout.starts[t], layout.starts[t + 1]
        np.testing.assert_array_equal(blocked[t, :13, : hi - lo], A[:, lo:hi])
        assert not blocked[t, :13, hi - lo:].any()  # spare entries of a short last block
    out = np.zeros_like(A)
    layout.join(blocked, out)
    np.testing.assert_array_equal(out, A)


def test_block_count_follows_the_cores_and_the_width(monkeypatch):
    assert n_column_blocks(100) == 1
    assert n_column_blocks(1_000_000) == min(machine_cores(), 8)
    # not numba's thread count, which joblib's workers lower
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)
    assert n_column_blocks(1_000_000) == min(machine_cores(), 8)


def _network_and_optimizer(solver, activation="relu", sizes=SIZES, sparsity=0.1, init=glorot_init):
    rng = np.random.RandomState(0)
    pairs = [init(rng, a, b, activation) for a, b in zip(sizes, sizes[1:])]
    n = len(pairs)
    network = Network([W for W, _ in pairs], [b for _, b in pairs], active_counts(sizes, sparsity),
                      activation, True, K=3, L=4, mips=False, hyperplanes=[None] * n,
                      offsets=[None] * n, neuron_ids=[None] * n, selection=SELECT_EXACT)
    params = dict(solver=solver, learning_rate="constant", learning_rate_init=0.01, power_t=0.5,
                  momentum=0.9, nesterovs_momentum=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    optimizer = SparseOptimizer(params, SparseOptimizer.new_state(params, network.weights,
                                                                  network.biases))
    return network, optimizer


def _train_steps(n_blocks, apart, solver, activation="relu", sizes=SIZES, sparsity=0.1, steps=6,
                 init=glorot_init):
    """Six Adam or SGD steps on alternating halves of a small data set, the exactly
    scored hidden layers split into ``n_blocks`` column blocks (a number, or one
    per layer), stored ``apart`` or left in the one matrix; ``init`` draws the weights."""
    rng = np.random.RandomState(1)
    X = (rng.randn(64, sizes[0]) * (rng.rand(64, sizes[0]) < 0.5)).astype(np.float32)
    Y = np.eye(sizes[-1])[rng.randint(0, sizes[-1], 64)]
    targets = Targets.from_indicator(Y, spread=True)
    network, optimizer = _network_and_optimizer(solver, activation, sizes, sparsity, init)
    ws = Workspace(network, 32, sizes[0], 1)
    layers = column_blocked_layers(network)
    assert layers == list(range(len(sizes) - 2))  # the hidden layers
    counts = n_blocks if isinstance(n_blocks, tuple) else (n_blocks,) * len(layers)
    for i, count in zip(layers, counts):
        network.column_blocks[i] = ColumnBlocks(*network.weights[i].shape, count)
    losses, active = [], []
    for step in range(steps):
        rows = np.arange(32) + 32 * (step % 2)
        ws.load_inputs(X, rows)
        with column_blocks(network, optimizer, layers if apart else []) as blocks:
            losses.append(train_batch(network, ws, optimizer, targets, rows,
                                      np.ones(32, np.float32), 1e-4, step,
                                      {"sparse": 0, "dense": 0}, blocks=blocks))
        active.append([ws.ids[i + 1][:32, : ws.cnt[i + 1][0]].copy() for i in layers])
    arrays = [*network.weights, *network.biases,
              *(a for name in optimizer.weight_state for a in optimizer.state[name])]
    return arrays, losses, active


def _paired_init(rng, n_in, n_out, activation):
    """glorot_init with neuron j + n_out // 2 a copy of neuron j: their scores always
    tie, and the two sit in different blocks."""
    W, b = glorot_init(rng, n_in, n_out, activation)
    half = n_out // 2
    W[:, half: 2 * half], b[half: 2 * half] = W[:, :half], b[:half]
    return W, b


def test_ties_at_the_cut_pick_alike_whatever_the_blocks():
    # an odd number active (21 of 200, 16 of 150) cuts a pair of equal scores in two
    tied = dict(sparsity=0.105, init=_paired_init)
    _, _, first = _train_steps(1, False, "adam", steps=1, **tied)
    half = SIZES[1] // 2
    twins = [(row + half) % (2 * half) for row in first[0][0]]
    assert any((~np.isin(twin, row)).any() for row, twin in zip(first[0][0], twins))  # a tie was cut
    for n_blocks in (2, 3, (3, 2)):
        arrays, losses, active = _train_steps(n_blocks, False, "adam", **tied)
        arrays_apart, losses_apart, active_apart = _train_steps(n_blocks, True, "adam", **tied)
        for a, b in zip(arrays + sum(active, []), arrays_apart + sum(active_apart, [])):
            np.testing.assert_array_equal(a, b)
        assert losses == losses_apart
        # the first step's picks (before the blocks' sums round apart) as with one block
        for a, b in zip(active[0], first[0]):
            np.testing.assert_array_equal(np.sort(a, axis=1), np.sort(b, axis=1))


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 7, (3, 2), (1, 4)])
def test_blocks_stored_apart_train_as_in_the_one_matrix(solver, n_blocks):
    # the same neurons, in the same order, and the same sums: bit for bit
    arrays, losses, active = _train_steps(n_blocks, False, solver)
    arrays_apart, losses_apart, active_apart = _train_steps(n_blocks, True, solver)
    for a, b in zip(arrays + sum(active, []), arrays_apart + sum(active_apart, [])):
        np.testing.assert_array_equal(a, b)
    assert losses == losses_apart


def test_blocks_that_samples_fill_train_as_in_the_one_matrix():
    # 8 of 16 neurons active in blocks of 3: some samples fill whole blocks (which
    # the update sums as whole rows); 10 neurons in blocks of 2 leave a block empty
    sizes = [12, 16, 10, 4]
    arrays, losses, _ = _train_steps(6, False, "adam", "tanh", sizes, 0.5)
    arrays_apart, losses_apart, _ = _train_steps(6, True, "adam", "tanh", sizes, 0.5)
    for a, b in zip(arrays, arrays_apart):
        np.testing.assert_array_equal(a, b)
    assert losses == losses_apart


def test_the_block_count_changes_only_rounding():
    arrays, losses, active = _train_steps(1, False, "adam")
    arrays_3, losses_3, active_3 = _train_steps(3, True, "adam")
    for a, b in zip(sum(active, []), sum(active_3, [])):
        np.testing.assert_array_equal(np.sort(a, axis=1), np.sort(b, axis=1))
    for a, b in zip(arrays, arrays_3):
        # only the backward pass's sums, added block by block, round differently
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses, losses_3, rtol=1e-6)


def test_blocks_are_written_back_when_training_fails():
    network, optimizer = _network_and_optimizer("adam")
    network.column_blocks[0] = ColumnBlocks(*network.weights[0].shape, 2)
    before = network.weights[0].copy()
    with pytest.raises(RuntimeError):
        with column_blocks(network, optimizer, [0]) as blocks:
            # the matrices are let go meanwhile; their shapes stay readable
            assert network.weights[0].shape == before.shape
            assert not isinstance(network.weights[0], np.ndarray)
            assert not isinstance(optimizer.state["m_W"][0], np.ndarray)
            blocks[0].W[1, 0, 0] += 1.0
            blocks[0].state["m_W"][1, 0, 0] = 2.0
            raise RuntimeError("a batch failed")
    lo = network.column_blocks[0].starts[1]
    assert network.weights[0].flags.c_contiguous and network.weights[0].dtype == np.float32
    assert network.weights[0][0, lo] == before[0, lo] + 1.0
    assert optimizer.state["m_W"][0][0, lo] == 2.0
    network.weights[0][0, lo] = before[0, lo]
    np.testing.assert_array_equal(network.weights[0], before)


def _layouts_chosen(chooser, n_batches, seconds):
    """The layouts ``chooser`` gives for ``n_batches`` batches, each batch taking
    ``seconds(batch, apart)``."""
    layouts = []
    for batch in range(n_batches):
        apart = chooser.layout()
        layouts.append(apart)
        chooser.record(apart, seconds(batch, apart))
    return layouts


def test_the_layout_chooser_measures_then_trains_in_the_faster_layout():
    def seconds(batch, apart):
        # blocks apart are faster in the first cycle, the one matrix in the second;
        # the first batch after a switch is slow, and must not count
        faster = (batch < 12) == apart
        return 9.0 if batch in (0, 4, 15) else 1.0 if faster else 1.2

    layouts = _layouts_chosen(LayoutChooser(probe=3, exploit=4, warm_up=1, settle=0), 23, seconds)
    F, T = False, True
    # probes of 1 + 3 batches, 4 exploited; the second cycle probes the layout
    # the weights are in first, without warm-up, then the other one
    assert layouts == [F] * 4 + [T] * 4 + [T] * 4 + [T] * 3 + [F] * 4 + [F] * 4


def test_the_layout_chooser_does_not_time_a_fits_first_batches():
    # the first batches are slow whatever the layout; after them, the one
    # matrix is faster: timing them would have picked blocks apart
    layouts = _layouts_chosen(LayoutChooser(probe=2, exploit=4, warm_up=0, settle=3), 10,
                              lambda batch, apart: 9.0 if batch < 3 else 1.2 if apart else 1.0)
    F, T = False, True
    assert layouts == [F] * 3 + [F] * 2 + [T] * 2 + [F] * 3


def test_the_layout_chooser_measures_again_when_the_chosen_layout_slows():
    def seconds(batch, apart):
        # the one matrix is faster until batch 12, then (the host moved the CPUs)
        # 1.8x slower than at first, and slower than blocks apart
        if batch < 12:
            return 1.2 if apart else 1.0
        return 1.3 if apart else 1.8

    layouts = _layouts_chosen(LayoutChooser(probe=2, exploit=100, warm_up=0, settle=0, window=4), 24,
                              seconds)
    F, T = False, True
    # probes 2 + 2, the one matrix chosen; its windows of batches 4-7 and 8-11 as
    # expected, 12-15 slower: measured again (the one matrix first, no switch),
    # then blocks apart
    assert layouts == [F] * 2 + [T] * 2 + [F] * 12 + [F] * 2 + [T] * 2 + [T] * 4
    # a rise short of the drift keeps the choice
    layouts = _layouts_chosen(LayoutChooser(probe=2, exploit=100, warm_up=0, settle=0, window=4), 24,
                              lambda batch, apart: (1.0 if batch < 12 else 1.25) * (1.2 if apart else 1.0))
    assert layouts == [F] * 2 + [T] * 2 + [F] * 20


class _Alternating(LayoutChooser):
    """Switches layout every batch, so that a fit meets both many times."""

    calls = 0

    def layout(self):
        self.calls += 1
        return self.calls % 2 == 0


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_a_fit_switching_layouts_does_not_depend_on_n_jobs(monkeypatch):
    X, y = make_classification(n_samples=600, n_features=40, n_informative=20, n_classes=3,
                               random_state=0)
    params = dict(hidden_layer_sizes=(600, 520), sparsity=0.1, selection="exact", max_iter=2,
                  batch_size=32, random_state=0)
    one = HashMLPClassifier(**params, n_jobs=1).fit(X, y)
    choosers = []
    monkeypatch.setattr(_train, "LayoutChooser", lambda: choosers.append(_Alternating()) or choosers[-1])
    two = HashMLPClassifier(**params, n_jobs=2).fit(X, y)
    assert len(choosers) == 1 and choosers[0].calls == 2 * 19  # every batch of both epochs
    for a, b in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert one.loss_curve_ == two.loss_curve_


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("interrupted_join", [1, 2, 3])  # the weights', then Adam's moments'
def test_an_interrupt_while_joining_blocks_fails_the_call_and_keeps_the_model(monkeypatch,
                                                                              interrupted_join):
    # Ctrl-C between batches keeps the training done (as MLPClassifier); landing in the
    # join of the column blocks it used to leave pieces of matrices in the model
    X, y = make_classification(n_samples=300, n_features=40, n_informative=20, n_classes=3,
                               random_state=0)
    model = HashMLPClassifier(hidden_layer_sizes=(600,), sparsity=0.1, selection="exact", max_iter=1,
                              batch_size=32, random_state=0, n_jobs=2, warm_start=True)
    model.fit(X, y)
    before = [a.copy() for a in model.coefs_ + model.intercepts_]
    monkeypatch.setattr(_train, "LayoutChooser", _Alternating)
    joined, calls = ColumnBlocks.joined, []

    def interrupted(layout, blocks):
        calls.append(1)
        if len(calls) == interrupted_join:
            raise KeyboardInterrupt
        return joined(layout, blocks)

    monkeypatch.setattr(ColumnBlocks, "joined", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    for a, b in zip(model.coefs_ + model.intercepts_, before):
        np.testing.assert_array_equal(a, b)
    assert all(isinstance(a, np.ndarray) for arrays in model._optimizer_state.values()
               if isinstance(arrays, list) for a in arrays)
    monkeypatch.undo()
    model.partial_fit(X, y)  # trains on
    assert not any(np.array_equal(a, b) for a, b in zip(model.coefs_, before))


def test_an_interrupt_between_batches_keeps_the_training_done(monkeypatch):
    X, y = make_classification(n_samples=300, n_features=40, n_informative=20, n_classes=3,
                               random_state=0)
    model = HashMLPClassifier(hidden_layer_sizes=(64,), min_active=1, max_iter=5, batch_size=32,
                              random_state=0, n_jobs=1)
    train_batch, batches = _train.TrainingRun._train_batch, []

    def interrupted(run, rows, apart=None):
        batches.append(1)
        if len(batches) == 25:  # in the third epoch
            raise KeyboardInterrupt
        return train_batch(run, rows, apart)

    monkeypatch.setattr(_train.TrainingRun, "_train_batch", interrupted)
    with pytest.warns(UserWarning, match="interrupted by user"):
        model.fit(X, y)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 2  # as MLPClassifier counts
    assert all(np.isfinite(a).all() for a in model.coefs_) and model.predict(X).shape == (300,)
