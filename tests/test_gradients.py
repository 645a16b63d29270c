"""The sparse kernels against float64 NumPy references: forward values and gradients.

One SGD step with learning rate 1 and no momentum moves each weight by exactly
minus its gradient, so ``W_before - W_after`` is the gradient the kernels
computed. It must match central finite differences of the loss of the same
network with the same active neurons (the selection is held fixed), and be zero
for every weight outside the active sets.
"""

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_hashdl import _kernels
from sklearn_hashdl._blocks import ColumnBlocks, column_blocks
from sklearn_hashdl._inputs import Targets
from sklearn_hashdl._layer_roles import column_blocked_layers
from sklearn_hashdl._network import Network, active_counts, glorot_init
from sklearn_hashdl._optim import SparseOptimizer
from sklearn_hashdl._select import SELECT_EXACT, SELECT_LSH
from sklearn_hashdl._train import train_batch
from sklearn_hashdl._workspace import Workspace

ACT = {
    "tanh": np.tanh,
    "logistic": lambda z: 1 / (1 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0),
    "identity": lambda z: z,
}


def _network(layer_sizes, sparsity, activation, softmax, seed=0, sparse_output=False,
             selection=SELECT_LSH):
    rng = np.random.RandomState(seed)
    pairs = [glorot_init(rng, a, b, activation) for a, b in zip(layer_sizes, layer_sizes[1:])]
    n_layers = len(pairs)
    n_active = active_counts(layer_sizes, sparsity, sparse_output=sparse_output)
    net = Network([W for W, _ in pairs], [b for _, b in pairs], n_active,
                  activation, softmax, K=3, L=4, mips=False, hyperplanes=[None] * n_layers,
                  offsets=[None] * n_layers, neuron_ids=[None] * n_layers, selection=selection)
    for i in range(n_layers):
        if net.n_active[i] < layer_sizes[i + 1]:
            net.hash_tables_for(i, rng)
            net.rebuild_tables(i)
    return net


def _masked_loss(weights, biases, masks, activation, softmax, X, Y, w, out_mask=None):
    """Weighted mean log loss of the network whose hidden neurons outside masks are 0,
    over the outputs in ``out_mask`` only (all by default)."""
    A = X.astype(np.float64)
    for i, (W, b) in enumerate(zip(weights, biases)):
        Z = A @ W + b
        if i < len(weights) - 1:
            A = ACT[activation](Z) * masks[i]
        else:
            A = Z
    if out_mask is None:
        out_mask = np.ones(A.shape, bool)
    if softmax:
        A = np.where(out_mask, A, -np.inf)
        Z = A - A.max(axis=1, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        per_sample = -(Y * np.where(out_mask, logp, 0)).sum(axis=1)
    else:
        logp, log1mp = -np.logaddexp(0, -A), -np.logaddexp(0, A)
        per_sample = -(out_mask * (Y * logp + (1 - Y) * log1mp)).sum(axis=1)
    return float(np.dot(per_sample, w) / w.sum())


def _one_sgd_step(net, X, Y, w, n_blocks=None):
    """One SGD step; with ``n_blocks``, the exactly scored hidden layers train on
    that many column blocks (``_blocks``), stored apart."""
    params = dict(solver="sgd", learning_rate="constant", learning_rate_init=1.0, power_t=0.5,
                  momentum=0.0, nesterovs_momentum=False, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    optimizer = SparseOptimizer(params, SparseOptimizer.new_state(params, net.weights, net.biases))
    targets = Targets.from_indicator(Y)
    ws = Workspace(net, X.shape[0], X.shape[1], targets.max_per_row())
    rows = np.arange(X.shape[0])
    ws.load_inputs(np.ascontiguousarray(X, dtype=np.float32), rows)
    before = [W.astype(np.float64) for W in net.weights], [b.astype(np.float64) for b in net.biases]
    layers = column_blocked_layers(net) if n_blocks else []
    for i in layers:
        net.column_blocks[i] = ColumnBlocks(*net.weights[i].shape, n_blocks)
    with column_blocks(net, optimizer, layers) as blocks:
        loss = train_batch(net, ws, optimizer, targets, rows, w.astype(np.float32),
                           0.0, 123, {"sparse": 0, "dense": 0}, blocks=blocks)
    masks = []
    for i in range(net.n_layers):
        mask = np.zeros((X.shape[0], net.weights[i].shape[1]))
        for s in range(X.shape[0]):
            mask[s, ws.ids[i + 1][s, : ws.cnt[i + 1][s]]] = 1
        masks.append(mask)
    grads = ([Wb - W for Wb, W in zip(before[0], net.weights)],
             [bb - b for bb, b in zip(before[1], net.biases)])
    return loss, before, grads, masks


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu"])
@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("selection, n_blocks", [(SELECT_LSH, None), (SELECT_EXACT, None),
                                                 (SELECT_EXACT, 3)])
def test_sparse_gradients_match_finite_differences(activation, softmax, selection, n_blocks):
    rng = np.random.RandomState(1)
    layer_sizes = [12, 16, 10, 4]
    net = _network(layer_sizes, 0.5, activation, softmax, selection=selection)
    # hashed hidden layers are neuron-major, exactly scored ones input-major
    assert net.neuron_major == [selection != SELECT_EXACT] * 2 + [False]
    X = rng.randn(9, 12) * (rng.rand(9, 12) < 0.6)  # zeros: skipped, or listed in whole rows
    Y = np.eye(4)[rng.randint(0, 4, 9)] if softmax else (rng.rand(9, 4) < 0.4).astype(float)
    w = rng.rand(9) + 0.5
    loss, (W0, b0), (gW, gb), masks = _one_sgd_step(net, X, Y, w, n_blocks)
    assert all(m.sum(axis=1).max() == k for m, k in zip(masks, net.n_active))
    assert loss == pytest.approx(_masked_loss(W0, b0, masks, activation, softmax, X, Y, w), rel=1e-5)

    eps = 1e-5
    for layer in range(len(W0)):
        for j in range(W0[layer].shape[0]):
            for i in range(W0[layer].shape[1]):
                Wp = [W.copy() for W in W0]
                Wm = [W.copy() for W in W0]
                Wp[layer][j, i] += eps
                Wm[layer][j, i] -= eps
                fd = (_masked_loss(Wp, b0, masks, activation, softmax, X, Y, w)
                      - _masked_loss(Wm, b0, masks, activation, softmax, X, Y, w)) / (2 * eps)
                assert gW[layer][j, i] == pytest.approx(fd, abs=2e-5, rel=2e-3), (layer, j, i)
        for j in range(b0[layer].shape[0]):
            bp = [b.copy() for b in b0]
            bm = [b.copy() for b in b0]
            bp[layer][j] += eps
            bm[layer][j] -= eps
            fd = (_masked_loss(W0, bp, masks, activation, softmax, X, Y, w)
                  - _masked_loss(W0, bm, masks, activation, softmax, X, Y, w)) / (2 * eps)
            assert gb[layer][j] == pytest.approx(fd, abs=2e-5, rel=2e-3), (layer, j)


def test_inactive_weights_do_not_move():
    rng = np.random.RandomState(2)
    net = _network([8, 20, 3], 0.2, "relu", True)
    X = rng.randn(5, 8)
    Y = np.eye(3)[rng.randint(0, 3, 5)]
    _, _, (gW, gb), masks = _one_sgd_step(net, X, Y, np.ones(5))
    never_active = masks[0].sum(axis=0) == 0
    assert never_active.any()
    assert np.all(gW[0][:, never_active] == 0) and np.all(gb[0][never_active] == 0)
    assert np.all(gW[1][never_active] == 0)


@pytest.mark.parametrize("selection", [SELECT_LSH, SELECT_EXACT])
def test_adam_leaves_features_absent_from_the_batch_alone(selection):
    """Lazy Adam updates only weights that met a non-zero input. A neuron-major
    first layer (hashed) takes dense rows whole, zeros included, and must skip
    the zero features exactly as the input-major layer (exact) skips them."""
    rng = np.random.RandomState(4)
    net = _network([12, 30, 3], 0.2, "relu", True, selection=selection)
    assert net.neuron_major[0] == (selection != SELECT_EXACT)
    params = dict(solver="adam", learning_rate_init=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    optimizer = SparseOptimizer(params, SparseOptimizer.new_state(params, net.weights, net.biases))
    X = rng.randn(16, 12).astype(np.float32)
    X[:, [0, 5]] = 0  # features 0 and 5 never appear
    Y = np.eye(3)[rng.randint(0, 3, 16)]
    targets = Targets.from_indicator(Y)
    ws = Workspace(net, 8, 12, targets.max_per_row())
    before = net.weights[0].copy()
    for step in range(4):
        rows = np.arange(8) + 8 * (step % 2)
        ws.load_inputs(X, rows)
        train_batch(net, ws, optimizer, targets, rows, np.ones(8, np.float32), 1e-3, step,
                    {"sparse": 0, "dense": 0})
    moved = net.weights[0] != before
    assert not moved[[0, 5]].any()
    assert moved[[1, 2, 3, 4, 6]].any(axis=1).all()
    assert not optimizer.state["m_W"][0][[0, 5]].any()


@pytest.mark.parametrize("softmax", [True, False])
def test_hashed_output_layer_gradients_match_finite_differences(softmax):
    """A sparse (neuron-major) output layer: the loss covers the active outputs, which
    always include the true labels, and only their weights move."""
    rng = np.random.RandomState(3)
    layer_sizes = [10, 12, 40]
    net = _network(layer_sizes, 0.2, "tanh", softmax, sparse_output=True)
    assert net.neuron_major == [True, True]  # hashed hidden and output layers
    X = rng.randn(7, 10) * (rng.rand(7, 10) < 0.7)
    Y = np.eye(40)[rng.randint(0, 40, 7)] if softmax else (rng.rand(7, 40) < 0.1).astype(float)
    w = rng.rand(7) + 0.5
    loss, (W0, b0), (gW, gb), masks = _one_sgd_step(net, X, Y, w)
    hidden_masks, out_mask = masks[:-1], masks[-1].astype(bool)
    assert np.all(out_mask[Y > 0])  # the true labels are always active
    assert np.all(out_mask.sum(axis=1) >= net.n_active[-1])
    assert np.all(out_mask.sum(axis=1) < 40)
    assert loss == pytest.approx(
        _masked_loss(W0, b0, hidden_masks, "tanh", softmax, X, Y, w, out_mask), rel=1e-5)
    never_active = ~out_mask.any(axis=0)
    assert never_active.any() and np.all(gW[1][:, never_active] == 0)
    eps = 1e-5
    for layer in range(2):
        for index in np.ndindex(*W0[layer].shape):
            Wp = [W.copy() for W in W0]
            Wm = [W.copy() for W in W0]
            Wp[layer][index] += eps
            Wm[layer][index] -= eps
            fd = (_masked_loss(Wp, b0, hidden_masks, "tanh", softmax, X, Y, w, out_mask)
                  - _masked_loss(Wm, b0, hidden_masks, "tanh", softmax, X, Y, w, out_mask)) / (2 * eps)
            assert gW[layer][index] == pytest.approx(fd, abs=2e-5, rel=2e-3), (layer, index)
    for j in range(40):
        bp, bm = [b.copy() for b in b0], [b.copy() for b in b0]
        bp[1][j] += eps
        bm[1][j] -= eps
        fd = (_masked_loss(W0, bp, hidden_masks, "tanh", softmax, X, Y, w, out_mask)
              - _masked_loss(W0, bm, hidden_masks, "tanh", softmax, X, Y, w, out_mask)) / (2 * eps)
        assert gb[1][j] == pytest.approx(fd, abs=2e-5, rel=2e-3), j


@pytest.mark.parametrize("softmax", [False, True])
def test_loss_kernel_matches_float64_reference(softmax):
    """The log loss and deltas of many outputs against NumPy in float64, with
    clipped probabilities, fractional targets and lists of every length (the
    logistic loss takes its logarithms of products of LOG_PRODUCT_TERMS
    probabilities; the softmax keeps its exponentials in a float64 scratch)."""
    rng = np.random.RandomState(0)
    n_rows, n_out = 40, 983
    ids = np.zeros((n_rows, n_out), np.int32)
    cnt = rng.randint(1, n_out + 1, n_rows).astype(np.int32)
    cnt[:3] = [n_out, _kernels.LOG_PRODUCT_TERMS, 2 * _kernels.LOG_PRODUCT_TERMS + 1]
    for s in range(n_rows):
        ids[s, : cnt[s]] = np.sort(rng.choice(n_out, cnt[s], replace=False))
    # logits past +-17 clip a logistic probability at float32's eps
    logits = (rng.randn(n_rows, n_out) * np.where(rng.rand(n_rows, n_out) < 0.1, 30, 3)).astype(np.float32)
    Y = (rng.rand(n_rows, n_out) < 0.05).astype(np.float32)
    Y[rng.rand(n_rows, n_out) < 0.01] = 0.25  # soft targets take the two-term formula
    rows = rng.permutation(n_rows).astype(np.int64)
    # a confident sample: every output clipped, on the right side
    confident = Y[rows[0]] == 1
    logits[0] = np.where(confident[ids[0]], 30, -30)
    labels = sp.csr_matrix(Y)
    targets = Targets(labels.indptr.astype(np.int64), labels.indices.astype(np.int32), labels.data)
    weights = (rng.rand(n_rows) + 0.5).astype(np.float32)
    scratch = np.zeros((numba.config.NUMBA_NUM_THREADS, n_out), np.float32)
    exps = np.zeros((numba.config.NUMBA_NUM_THREADS, n_out))
    delta = np.zeros((n_rows, n_out), np.float32)
    loss = np.zeros(n_rows)
    weighted = _kernels.output_loss_and_delta(ids, logits, cnt, rows, *targets, weights,
                                              float(weights.sum()), softmax, scratch, exps, delta, loss)
    eps = np.finfo(np.float32).eps
    for s in range(n_rows):
        # logits and deltas by position in the sample's list, targets by id
        z, y = logits[s, : cnt[s]].astype(np.float64), Y[rows[s], ids[s, : cnt[s]]]
        if softmax:
            shifted = (logits[s, : cnt[s]] - logits[s, : cnt[s]].max()).astype(np.float64)  # in float32
            p = np.exp(shifted) / np.exp(shifted).sum()
            expected = -np.sum(y * np.log(np.clip(p, eps, 1 - eps)))
        else:
            p = 1 / (1 + np.exp(-z))
            pc = np.clip(p, eps, 1 - eps)
            expected = -np.sum(y * np.log(pc) + (1 - y) * np.log(1 - pc))
        # the logarithm of 32 probabilities at a time is off by about 1e-16 per output
        assert loss[s] == pytest.approx(expected, rel=1e-12, abs=1e-15 * cnt[s])
        scale = weights[s] / weights.sum(dtype=np.float64)
        np.testing.assert_allclose(delta[s, : cnt[s]], (p - y) * scale, rtol=1e-6, atol=1e-12)
    assert weighted == pytest.approx(np.dot(loss, weights), rel=1e-12)
    assert not scratch.any()  # the targets' scratch is left zeroed
