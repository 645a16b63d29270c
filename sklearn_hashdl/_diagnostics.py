"""How well a fitted model's selection finds each hidden layer's true top-k.

``selection_recall`` replays the training-time forward pass of a fitted
HashMLPClassifier on some rows and, at every hashed layer, compares the neurons
its selection strategy picks with the exact top-k of the same layer input.
"""

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _select
from ._inference import as_float_input
from ._inputs import check_sparse_indices, input_width, kernel_input
from ._runtime import kernels_ready
from ._train import compute_layer, select_layer
from ._workspace import Workspace


def selection_recall(estimator, X, max_rows=1024, seed=0):
    """Mean fraction of each hidden layer's exact top-k that the selection retrieves.

    Returns an array with one entry per hidden layer (1.0 for dense layers; a
    sparse layer's exact selection scores 1.0 too). Layer l is fed the active
    set that the selection chose at layer l - 1, as in training.
    """
    check_is_fitted(estimator)
    X = check_sparse_indices(validate_data(estimator, X, accept_sparse=["csr", "csc"], reset=False))
    with kernels_ready():
        return _recalls(estimator, as_float_input(X[:max_rows], np.float32), seed)


def _recalls(estimator, X, seed):
    layer_sizes = [X.shape[1]] + [c.shape[1] for c in estimator.coefs_]
    network = estimator._load_network(layer_sizes, check_random_state(seed), fresh_weights=False,
                                      n_active=estimator._fitted_counts())
    n_rows = X.shape[0]
    training_input = kernel_input(X)
    ws = Workspace(network, n_rows, input_width(training_input))
    ws.load_inputs(training_input, np.arange(n_rows))
    recalls = np.ones(network.n_layers - 1)
    levels = [(ws.ids[i], ws.vals[i], ws.cnt[i]) for i in range(network.n_layers + 1)]
    for i in range(network.n_layers - 1):
        if network.is_sparse(i):
            exact = _selected_ids(network, ws, levels, i, _select.SELECT_EXACT, seed).copy()
            chosen = _selected_ids(network, ws, levels, i, network.selection[i], seed)
            k = network.n_active[i]
            out_cnt = ws.cnt[i + 1]
            hits = [len(np.intersect1d(exact[s, :k], chosen[s, : out_cnt[s]])) for s in range(n_rows)]
            recalls[i] = np.mean(hits) / k
        compute_layer(network, i, levels[i], levels[i + 1])
    return recalls


def _selected_ids(network, ws, levels, i, mode, seed):
    select_layer(network, ws, i, levels[i], levels[i + 1], mode, network.n_active[i],
                 np.uint64(seed), ws.row_keys, ws.select_cost[i])
    return ws.ids[i + 1]
