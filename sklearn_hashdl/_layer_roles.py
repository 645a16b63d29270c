"""Which path each layer of a network takes through training and hashed prediction,
and how training counts its multiply-adds against dense training of the same network."""

import numpy as np

from . import _kernels, _select


def selection_computes_activations(network, i, mode):
    """Does selecting layer i's neurons with ``mode`` give their activations too?

    Exact selection of an input-major layer scores every neuron with a few
    contiguous AXPYs; the chosen neurons' scores are their pre-activations, so
    the forward pass need not compute them again (3 x 1000 at 0.05 on MNIST:
    the forward pass was 11% of the fit). Not for the output layer, which gains
    random negatives and true labels after the selection.
    """
    return mode == _select.SELECT_EXACT and not network.neuron_major[i] and i < network.n_layers - 1


def grouped_dense_layers(network):
    """The layers whose forward and backward passes run by input row
    (``_kernels.forward_dense_grouped``): every neuron active, at most
    ``GROUPED_MAX_WIDTH`` of them, after a neuron-major layer, whose forward
    pass has grouped their input by id already. (After exactly scored neurons,
    grouping did not pay: 3 x 1000 on MNIST, the output layer's two passes took
    0.05-0.06 ms a batch by sample, 0.07-0.10 grouped, not counting the
    grouping of their input, which they would need first.)"""
    return [i for i in range(1, network.n_layers)
            if not network.is_sparse(i) and network.neuron_major[i - 1]
            and network.layer_sizes[i + 1] <= _kernels.GROUPED_MAX_WIDTH]


def column_blocked_layers(network):
    """The layers split into column blocks (``_blocks``): the exactly scored hidden layers."""
    return [i for i, layout in enumerate(network.column_blocks) if layout is not None]


def layers_stored_apart(network):
    """The layers whose blocks training on several threads may store apart: those
    of more than one block (a single block would run on one thread)."""
    return [i for i in column_blocked_layers(network) if network.column_blocks[i].n_blocks > 1]


def flop_passes(network):
    """How training counts multiply-adds: (dense ones per sample; per layer, the
    passes over its (active input, active neuron) pairs; the layers whose
    selection costs count). Passes: forward, weight gradient, and input deltas
    past layer 0, less the forward pass where the selection's scores were it
    (counted in the selection's cost)."""
    passes = np.array([3 if i > 0 else 2 for i in range(network.n_layers)], np.int64)
    dense = int(np.dot(passes, [W.size for W in network.weights]))
    selecting = np.array([network.is_sparse(i) for i in range(network.n_layers)])
    for i in np.flatnonzero(selecting):
        if selection_computes_activations(network, i, network.selection[i]):
            passes[i] -= 1
    return dense, passes, selecting
