"""The network being trained: its weights, in each layer's layout, plus the hash tables.

``Network`` is a short-lived working object. The estimator keeps only arrays and
scalars (``coefs_``, ``intercepts_``, hyperplanes, tables); a fit call builds a
``Network`` from copies of them and writes them back when it succeeds, so a failed
call leaves a fitted model as it was and read-only (memory-mapped) arrays are
never written to.
"""

import copy
import functools
import importlib
import math

import numpy as np
from threadpoolctl import ThreadpoolController

from . import _lsh, _select
from ._blocks import ColumnBlocks
from ._kernels import ACTIVATION_CODES, transpose_into


def active_counts(layer_sizes, sparsity, sparse_hidden=True, sparse_output=False, min_hidden=1):
    """Neurons kept per sample in each layer: ceil(sparsity * n) where the layer is
    sparse, but at least ``min_hidden`` in a hidden layer; all n where it is dense.

    A sparse output layer also trains each sample's true labels (added on top).
    """
    def kept(n, sparse, at_least=1):
        # rounded first: 0.07 * 100 is 7.000000000000001 in floating point
        return min(n, max(at_least, math.ceil(round(sparsity * n, 9)))) if sparse else n

    hidden = [kept(n, sparse_hidden, min_hidden) for n in layer_sizes[1:-1]]
    return hidden + [kept(layer_sizes[-1], sparse_output)]


class Network:
    """Weights ``W[i]`` (n_in, n_out) float32, biases, and LSH tables.

    ``W[i]`` is C-contiguous (input-major), except for a sparse layer that is not
    exactly scored, or a sparse output layer: there it is the transpose of a
    C-contiguous (n_out, n_in) array (neuron-major); ``kernel_weights`` gives the
    kernels' view.

    Layer i has hash tables when it keeps fewer neurons than it has and selects
    them through tables (``uses_tables``); then ``hyperplanes[i]``, ``offsets[i]``
    and ``neuron_ids[i]`` hold them, otherwise they are None.
    """

    def __init__(self, weights, biases, n_active, activation, softmax, K, L, mips,
                 hyperplanes, offsets, neuron_ids, selection=None, rerank_factor=4.0,
                 n_probes=1):
        self.biases = biases
        self.n_active = n_active
        self.activation = activation
        self.activation_code = ACTIVATION_CODES[activation]
        self.softmax = softmax
        # plain ints: a NumPy integer (np.int32(10) from a grid) would make numba
        # compile and cache another version of each kernel taking it (about 40 s)
        self.K, self.L, self.mips = int(K), int(L), bool(mips)
        self.hyperplanes = hyperplanes
        self.offsets = offsets
        self.neuron_ids = neuron_ids
        # one selection mode per layer (see _select.SELECTION_MODES)
        if selection is None or np.isscalar(selection):
            mode = _select.SELECT_LSH if selection is None else selection
            selection = [mode] * len(weights)
        self.selection = list(selection)
        # Neuron-major weights (each neuron's row contiguous) for a sparse layer
        # whose neurons are hashed, random, or an output layer: a few of many
        # neurons are read per sample, and the batch's forward pass reads each
        # active neuron's row once for all the samples that chose it
        # (_kernels.forward_layer_grouped). Exactly scored hidden layers stay
        # input-major: scoring every neuron is one contiguous AXPY per active input.
        # Measured on MNIST, one hidden layer of 16384 at sparsity 0.02 with LSH:
        # forward 0.86 -> 0.27 s per epoch.
        self.neuron_major = [n_active[i] < W.shape[1]
                             and (i == len(weights) - 1 or self.selection[i] != _select.SELECT_EXACT)
                             for i, W in enumerate(weights)]
        self.weights = [neuron_major_copy(W) if by_neuron else np.ascontiguousarray(W)
                        for W, by_neuron in zip(weights, self.neuron_major)]
        # Exactly scored hidden layers are split into blocks of neurons, which
        # training may store apart, one per thread (_blocks.py); either way the
        # kernels add each block's terms apart, so results do not depend on it.
        self.column_blocks = [
            ColumnBlocks(*W.shape) if (n_active[i] < W.shape[1] and i < len(weights) - 1
                                       and self.selection[i] == _select.SELECT_EXACT) else None
            for i, W in enumerate(weights)]
        self.rehash_flops = 0  # multiply-adds spent building tables when the network was loaded
        self.rerank_factor = rerank_factor
        # a table's probes stop once each of its K bits has been flipped: more
        # would only size scratch (a histogram of L * n_probes counts) for nothing
        self.n_probes = min(int(n_probes), self.K + 1)
        # what training asks of each layer every batch, worked out once (the
        # shapes and active counts do not change)
        self.layer_sizes = tuple([self.weights[0].shape[0]] + [W.shape[1] for W in self.weights])
        self._sparse = [n_active[i] < W.shape[1] for i, W in enumerate(self.weights)]
        self._n_selected = [self._selected_count(i) for i in range(len(self.weights))]
        # capped before the ceiling: a huge rerank_factor would overflow to inf
        self._rerank_pool = [math.ceil(min(W.shape[1], rerank_factor * self._n_selected[i]))
                             for i, W in enumerate(self.weights)]

    # a sparse output layer selects this fraction of its active outputs; the rest
    # are uniform random negatives (see _select.add_random)
    output_selected_fraction = 0.5

    @property
    def n_layers(self):
        return len(self.weights)

    def with_dense_output(self):
        """The same network with every output active (prediction scores all classes);
        shares the hidden layers' arrays and tables."""
        if not self.is_sparse(self.n_layers - 1):
            return self
        n_active = list(self.n_active[:-1]) + [self.layer_sizes[-1]]
        return Network(self.weights, self.biases, n_active, self.activation, self.softmax,
                       self.K, self.L, self.mips, self.hyperplanes, self.offsets, self.neuron_ids,
                       self.selection, self.rerank_factor, self.n_probes)

    def block_width(self, i):
        """Neurons per column block of layer i, 0 for a layer not split into blocks."""
        return 0 if self.column_blocks[i] is None else self.column_blocks[i].width

    def kernel_weights(self, i):
        """Layer i's weights as the kernels take them: (n_in, n_out) C-contiguous, or
        (n_out, n_in) C-contiguous for a neuron-major layer (a view either way)."""
        W = self.weights[i].T if self.neuron_major[i] else self.weights[i]
        assert W.flags.c_contiguous
        return W

    def rerank_pool(self, i):
        """Most candidates layer i scores exactly when re-ranking."""
        return self._rerank_pool[i]

    def n_selected(self, i):
        """Active neurons of layer i chosen by its selection strategy (the rest are random)."""
        return self._n_selected[i]

    def _selected_count(self, i):
        if i == len(self.weights) - 1 and self._sparse[i]:
            return max(1, int(round(self.output_selected_fraction * self.n_active[i])))
        return self.n_active[i]

    def is_sparse(self, i):
        """Does layer i keep only some of its neurons per sample?"""
        return self._sparse[i]

    def uses_tables(self, i):
        """Does layer i select through hash tables (rather than exact or random)?"""
        return self.is_sparse(i) and self.selection[i] in (_select.SELECT_LSH, _select.SELECT_LSH_RERANK)

    def tables(self, i):
        """(hyperplanes, offsets, neuron_ids) of layer i; tiny placeholders without tables.

        The selection kernel always takes arrays, so one compiled version serves
        every mode.
        """
        if self.hyperplanes[i] is None:
            return _NO_PLANES, _NO_OFFSETS, _NO_IDS
        return self.hyperplanes[i], self.offsets[i], self.neuron_ids[i]

    def rebuild_tables(self, i):
        """Rehash every neuron of layer i; returns the multiply-adds spent."""
        W, b = self.weights[i], self.biases[i]
        codes = layer_codes(W, b, self.hyperplanes[i], self.K, self.L, self.mips)
        _lsh.build_tables(codes, self.K, self.offsets[i], self.neuron_ids[i])
        return W.shape[1] * (W.shape[0] + 1) * self.K * self.L

    def rebuild_all_tables(self):
        return sum(self.rebuild_tables(i) for i in range(self.n_layers) if self.uses_tables(i))

    def with_current_tables(self):
        """The same network with its hash tables rebuilt from the current weights,
        into new arrays: what the fitted model will predict with, while training
        goes on with its own tables, rebuilt on their schedule."""
        fresh = copy.copy(self)
        fresh.offsets, fresh.neuron_ids = list(self.offsets), list(self.neuron_ids)
        for i in range(self.n_layers):
            if self.uses_tables(i):
                fresh.offsets[i], fresh.neuron_ids[i] = _lsh.new_tables(self.layer_sizes[i + 1],
                                                                         self.K, self.L)
                fresh.rebuild_tables(i)
        return fresh

    def hash_tables_for(self, i, random_state):
        """Fresh hyperplanes and empty tables for layer i (rebuilt by the caller)."""
        n_in, n_out = self.weights[i].shape
        self.hyperplanes[i] = _lsh.make_hyperplanes(random_state, n_in, self.K, self.L, self.mips)
        self.offsets[i], self.neuron_ids[i] = _lsh.new_tables(n_out, self.K, self.L)


@functools.cache
def _blas_controller():
    # made once: threadpoolctl's threadpool_limits scans the loaded libraries on
    # every call (about 3 ms, paid per rehash and per epoch). The rehash products
    # are numba's np.dot, which calls SciPy's BLAS: loaded first, so that the scan
    # finds it (NumPy's is loaded before this module is imported)
    importlib.import_module("scipy.linalg.cython_blas")
    return ThreadpoolController()


def one_blas_thread():
    """Context in which BLAS calls (NumPy's matrix products) run on one thread."""
    return _blas_controller().limit(limits=1, user_api="blas")


def layer_codes(W, b, hyperplanes, K, L, mips=False):
    """``_lsh.neuron_codes`` with BLAS on one thread: its products run on numba's
    threads, a chunk each. OpenBLAS's own threads busy-wait about 0.1 s after a
    call, taking a core from the training kernels that follow (two-thread fits of
    a 4096-wide LSH layer on MNIST: 1.90 s per epoch, 1.49 s on one BLAS thread),
    and the product's last bits, so the buckets, could change with their number."""
    with one_blas_thread():
        return _lsh.neuron_codes(W, b, hyperplanes, K, L, mips)


_NO_PLANES = np.zeros((1, 1), np.float32)
_NO_OFFSETS = np.zeros((1, 2), np.int32)
_NO_IDS = np.zeros((1, 1), np.int32)


def neuron_major_copy(W):
    """W (n_in, n_out) float32 as the transpose of a C-contiguous (n_out, n_in)
    array; W itself when it already is. Same as np.asfortranarray, but a tiled
    parallel transpose (numpy's took 20 ms for 784 x 4096)."""
    if W.flags.f_contiguous:
        return W
    Wt = np.empty((W.shape[1], W.shape[0]), W.dtype)
    transpose_into(np.ascontiguousarray(W), Wt)
    return Wt.T


# glorot_init draws the weights this many values at a time
_DRAW_CHUNK = 1 << 15


def glorot_init(random_state, fan_in, fan_out, activation):
    """sklearn's MLP initialisation (same draws), as float32 (fan_in, fan_out), bias.

    The weights are drawn a few rows at a time into the float32 array: the
    same values as one draw of them all (the stream is consumed in the same
    order), without its float64 copy. For 784 x 16384 that copy was 103 MB, and
    its first touch made the initialisation take 0.10-0.38 s against 0.07-0.08.
    """
    factor = 2.0 if activation == "logistic" else 6.0
    bound = np.sqrt(factor / (fan_in + fan_out))
    coef = np.empty((fan_in, fan_out), np.float32)
    rows_per_draw = max(1, _DRAW_CHUNK // max(1, fan_out))
    for start in range(0, fan_in, rows_per_draw):
        stop = min(fan_in, start + rows_per_draw)
        coef[start:stop] = random_state.uniform(-bound, bound, (stop - start, fan_out))
    intercept = random_state.uniform(-bound, bound, fan_out)
    return coef, intercept.astype(np.float32)
