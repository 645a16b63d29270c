"""How well a fitted model's selection finds each hidden layer's true top-k.

``selection_recall`` replays the training-time forward pass of a fitted
HashMLPClassifier on some rows and, at every hashed layer, compares the neurons
its selection strategy picks with the exact top-k of the same layer input.
"""

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels, _lsh
from ._inference import as_float32_input
from ._train import Workspace, input_width, kernel_input


def selection_recall(estimator, X, max_rows=1024, seed=0):
    """Mean fraction of each hidden layer's exact top-k that the selection retrieves.

    Returns an array with one entry per hidden layer (1.0 for layers that are not
    hashed). Layer l is fed the active set that the selection chose at layer
    l - 1, as in training.
    """
    check_is_fitted(estimator)
    X = validate_data(estimator, X, accept_sparse=["csr", "csc"], reset=False)
    X = as_float32_input(X[:max_rows])
    layer_sizes = [X.shape[1]] + [c.shape[1] for c in estimator.coefs_]
    network = estimator._load_network(layer_sizes, check_random_state(seed), fresh_weights=False)
    n_rows = X.shape[0]
    training_input = kernel_input(X)
    ws = Workspace(network, n_rows, input_width(training_input))
    ws.load_inputs(training_input, np.arange(n_rows))
    recalls = np.ones(network.n_layers - 1)
    for i in range(network.n_layers - 1):
        W, b = network.weights[i], network.biases[i]
        in_ids, in_vals, in_cnt = ws.ids[i], ws.vals[i], ws.cnt[i]
        out_ids, out_vals, out_cnt = ws.ids[i + 1], ws.vals[i + 1], ws.cnt[i + 1]
        if network.is_sparse(i):
            exact = _select(network, ws, i, _lsh.SELECT_EXACT, seed).copy()
            chosen = _select(network, ws, i, network.selection[i], seed)
            k = network.n_active[i]
            hits = [len(np.intersect1d(exact[s, :k], chosen[s, : out_cnt[s]])) for s in range(n_rows)]
            recalls[i] = np.mean(hits) / k
        _kernels.forward_layer(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt, not network.is_sparse(i),
                               network.activation_code, out_vals)
    return recalls


def _select(network, ws, i, mode, seed):
    W, b = network.weights[i], network.biases[i]
    hyperplanes, offsets, neuron_ids = network.tables(i)
    _lsh.select_active(
        mode, ws.ids[i], ws.vals[i], ws.cnt[i], W, False, b, hyperplanes, W.shape[0],
        network.K, network.L, offsets, neuron_ids, network.n_active[i],
        network.rerank_pool(i), network.n_probes, np.uint64(seed), ws.row_keys, ws.ids[i + 1],
        ws.cnt[i + 1],
        ws.select_cost, ws.count, ws.cand, ws.ties, ws.proj, ws.heap, ws.pool, ws.scores,
        ws.cand_scores,
    )
    return ws.ids[i + 1]
