"""One training step over a mini-batch: select, forward, loss, backward, sparse update.

``Workspace`` allocates every buffer once per fit call (never per sample or per
batch). ``train_batch`` runs the kernels layer by layer and counts the
multiply-adds done against those of dense training of the same network.
"""

import contextlib
import math
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

from . import _block_kernels, _kernels, _lsh, _work_sharing
from ._blocks import PAGE_BYTES, LayoutChooser, column_blocks, stacked_apart


class PhaseTimer:
    """Wall time per training phase, for benchmarks (benchmarks/bench_speed.py)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._last = time.perf_counter()

    def start(self):
        self._last = time.perf_counter()

    def mark(self, phase):
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now


class _NoTimer:
    def start(self):
        pass

    def mark(self, phase):
        pass


# Set to a PhaseTimer to record where training time goes (benchmarks only).
# Marks separate kernel calls only; they add a few microseconds per batch.
phase_timer = None


class SparseRows(NamedTuple):
    """CSR training input with fixed dtypes (float32 data, int32 indices, int64 indptr)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple


class Targets(NamedTuple):
    """Training targets as a CSR label matrix: sample r's labels are
    ``ids[ptr[r]:ptr[r + 1]]`` with target values ``values[...]`` (0 elsewhere).

    No (n_samples, n_classes) array is ever needed, however many classes.
    """

    ptr: np.ndarray
    ids: np.ndarray
    values: np.ndarray

    @classmethod
    def from_indicator(cls, Y, spread=False):
        """From a label-indicator matrix (dense or sparse); with ``spread`` each
        row's targets are 1 / (its number of labels), a distribution for softmax."""
        Y = sp.csr_matrix(Y, copy=True)  # a copy: the two calls below work in place
        # a label listed twice is one label (as in MLPClassifier), not two targets
        Y.sum_duplicates()
        Y.eliminate_zeros()
        values = np.ones(Y.nnz, np.float32)
        if spread:
            per_row = np.diff(Y.indptr)
            values /= np.repeat(per_row, per_row).astype(np.float32)
        return cls(Y.indptr.astype(np.int64), Y.indices.astype(np.int32), values)

    def max_per_row(self):
        return int(np.diff(self.ptr).max(initial=0))


class Workspace:
    """Buffers for batches of at most ``batch_size`` rows.

    Level 0 holds the batch input as lists of non-zeros (width ``input_width``);
    level i + 1 holds layer i's active neurons and their activations. A sparse
    output layer gets room for ``max_labels`` true labels per sample on top.
    """

    def __init__(self, network, batch_size, input_width, max_labels=0, descending=False):
        n_threads = numba.config.NUMBA_NUM_THREADS
        widths = [input_width] + list(network.n_active)
        if network.is_sparse(network.n_layers - 1):
            widths[-1] = min(network.layer_sizes[-1], widths[-1] + max_labels)
        B = batch_size
        # a neuron-major first layer takes dense input rows whole (see load_inputs;
        # CSR rows still list their non-zeros, for which skipping zeros is a no-op)
        self.whole_rows = network.neuron_major[0]
        # the id lists and counts of all levels in flat arrays, so that one kernel
        # can group several levels by id (see invert_levels)
        self._ids, ids_at = _page_segments([B * w for w in widths], np.int32)
        self.ids = [self._ids[at: at + B * w].reshape(B, w) for at, w in zip(ids_at, widths)]
        self.vals = [np.zeros((B, w), np.float32) for w in widths]
        self._cnt = np.zeros((len(widths), B), np.int32)
        self.cnt = list(self._cnt)
        # non-zeros of each input row (whole rows also list zeros): multiply-adds
        # are counted over these, so flop_fraction_ is the same for dense and CSR input
        self.nnz0 = np.zeros(B, np.int32)
        # the non-zeros of whole input rows as lists, for hashing them: the
        # (ids, values, counts) of the batch when level 0 holds whole rows, else None
        self.nz_ids = np.zeros((B, input_width), np.int32) if self.whole_rows else None
        self.nz_vals = np.zeros((B, input_width), np.float32) if self.whole_rows else None
        # for a neuron-major first layer, the span of each input row's non-zeros
        # (see _kernels.NO_SPANS): the update sums and steps a whole dense row over
        # it only; a CSR row spans every column
        self.spans0 = np.zeros((B, 2), np.int32) if self.whole_rows else _kernels.NO_SPANS
        self.nonzeros = None
        # deltas of level 0 (the input) are never needed
        self.delta = [None] + [np.zeros((B, w), np.float32) for w in widths[1:]]
        # dense layers keep every neuron: fixed lists 0..n-1
        for i in range(network.n_layers):
            if not network.is_sparse(i):
                n = network.weights[i].shape[1]
                self.ids[i + 1][:] = np.arange(n, dtype=np.int32)
                self.cnt[i + 1][:] = n
        sizes = network.layer_sizes
        max_size, max_out = max(sizes), max(sizes[1:])
        # each level's inverted index (id -> the samples that list it), kept
        # until the level's lists change (see inverted)
        self._row_start, starts_at = _page_segments([n + 1 for n in sizes], np.int64)
        self._row_sample, pairs_at = _page_segments([B * w for w in widths], np.int32)
        self._row_pos, _ = _page_segments([B * w for w in widths], np.int32)
        self._touched, touched_at = _page_segments(sizes, np.int32)
        self._index_layout = np.array([ids_at, widths, sizes, starts_at, pairs_at, touched_at],
                                      np.int64).T.copy()
        self._n_touched = np.full(len(widths), -1, np.int64)  # -1: not grouped
        self._index_views = [self._index_arrays(level) for level in range(len(widths))]
        # Visit touched rows last to first (see TrainingRun: asynchronous workers
        # sweep the shared weights in opposite directions)
        self.descending = descending
        self.n_rows = 0  # rows in the levels, set by load_inputs
        # per-thread scratch of the update kernels, indexed by weight column
        self.grad = _thread_scratch(n_threads, max_size, np.float32)
        self.target = _thread_scratch(n_threads, max_out, np.float32)
        self.mark = _thread_scratch(n_threads, max_size, np.uint8)
        self.cols = _thread_scratch(n_threads, max_size, np.int32)
        self.compact = compact_scratch(n_threads, B, max_size)
        # per-thread scratch of the selection kernel (per worker: _work_sharing)
        # sized by L only where some layer queries tables: K and L change nothing otherwise
        n_tables = network.L if any(map(network.uses_tables, range(network.n_layers))) else 0
        n_planes = network.K * n_tables
        self.count = _thread_scratch(n_threads, max_out, np.int32)
        self.cand = _thread_scratch(n_threads, max_out, np.int32)
        self.ties = _thread_scratch(n_threads, max_out, np.int32)
        self.hist = _thread_scratch(n_threads, n_tables * network.n_probes + 1, np.int32)
        self.pool = _thread_scratch(n_threads, max_out, np.int32)
        self.proj = _thread_scratch(n_threads, n_planes, np.float32)
        self.scores = _thread_scratch(n_threads, max_out, np.float32)
        self.cand_scores = _thread_scratch(n_threads, max_out, np.float32)
        # each layer's selection cost (multiply-adds) per sample, and the batch's
        # counts per layer (_kernels.batch_counts)
        self.select_cost = np.zeros((network.n_layers, B), np.int64)
        self.pairs, self.active, self.selected = (np.zeros(network.n_layers, np.int64)
                                                  for _ in range(3))
        self.flop_passes = flop_passes(network)
        self._block_scratch = None  # made on first use (block_scratch)
        self._scratch_blocks = None  # the blocks it was last sized for
        # per-row keys of the selection's random choices: the row's position
        self.row_keys = np.arange(1, B + 1, dtype=np.uint64)
        self.loss = np.zeros(B, np.float64)
        # the layers whose passes run by input row, and their forward pass's sums
        # per range of input ids (see _kernels.forward_dense_grouped)
        self.grouped = grouped_dense_layers(network)
        widest = max([sizes[i + 1] for i in self.grouped], default=0)
        self.partial_sums = np.zeros((_kernels.GROUPED_PARTS, B, widest), np.float32)
        # the threads its kernels run on, set where that count is chosen (asking
        # numba each batch took 10 us)
        self.n_threads = numba.get_num_threads()
        self._views = {}  # batch size -> BatchViews

    @property
    def n_threads(self):
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n_threads):
        # the kernels that share their items among workers get one per thread
        # (``_work_sharing``); each worker uses the scratch row of its number.
        # Kernels run on at most this many threads: set it where numba's count is set
        self._n_threads = n_threads
        self.claims = _work_sharing.new_claims(min(n_threads, numba.config.NUMBA_NUM_THREADS))

    def views(self, n_rows):
        """The buffers cut to a batch of ``n_rows`` (``BatchViews``), made once per size
        rather than once per batch (Python between kernels keeps a second thread waiting)."""
        views = self._views.get(n_rows)
        if views is None:
            B = n_rows
            views = self._views[B] = BatchViews(
                [(ids[:B], vals[:B], cnt[:B]) for ids, vals, cnt in zip(self.ids, self.vals, self.cnt)],
                [None] + [delta[:B] for delta in self.delta[1:]],
                list(self.select_cost[:, :B]), self.row_keys[:B], self.loss[:B])
        return views

    def block_scratch(self, network, blocks):
        """Scratch of the kernels of the column-blocked layers ``blocks`` ({layer:
        BlockedLayer}), made on first use (prediction never needs it)."""
        if blocks is self._scratch_blocks:
            return self._block_scratch  # the same layers as the last call (sizing took 25 us)
        layers = list(blocks)
        sizes = (max(blocks[i].layout.n_blocks for i in layers),
                 max(blocks[i].layout.width for i in layers),
                 max(network.n_active[i] for i in layers),
                 # input lists of the layers past the first (no deltas for the input)
                 max([self.ids[i].shape[1] for i in layers if i > 0], default=1),
                 network.n_layers + 1, self.ids[0].shape[0])
        if self._block_scratch is None or self._block_scratch.sizes != sizes:
            self._block_scratch = BlockScratch(*sizes)
        self._scratch_blocks = blocks
        return self._block_scratch

    def inverted(self, level):
        """Level ``level``'s (sample, position) pairs grouped by id: the index
        (touched ids, their count, row_start, row_sample, row_pos) of
        ``_kernels.invert_lists``. The forward pass of a neuron-major layer and
        the updates of the layers on either side of a level group it the same
        way, so the index is kept until the level's lists change."""
        touched, row_start, row_sample, row_pos = self._index_views[level]
        if self._n_touched[level] < 0:
            # one level: on this thread (a parallel call for it ran 2x slower)
            self._n_touched[level] = _kernels.invert_lists(
                self.ids[level], self.cnt[level][: self.n_rows], len(touched), row_start, row_sample,
                row_pos, touched)
            self._reverse_if_descending([level])
        return touched, int(self._n_touched[level]), row_start, row_sample, row_pos

    def _index_arrays(self, level):
        """Views of level ``level``'s index in the flat arrays: (touched, row_start,
        row_sample, row_pos), made once (slicing them per batch cost 10 us)."""
        at = self._index_layout[level]
        n_ids, n_pairs = at[_kernels.N_IDS], self.ids[level].size
        starts, pairs = at[_kernels.STARTS_AT], at[_kernels.PAIRS_AT]
        return (self._touched[at[_kernels.TOUCHED_AT]:][:n_ids], self._row_start[starts:][: n_ids + 1],
                self._row_sample[pairs:][:n_pairs], self._row_pos[pairs:][:n_pairs])

    def invert_levels(self, levels):
        """Group those of ``levels`` not yet grouped, in one call (a thread each)."""
        todo = np.array([level for level in set(levels) if self._n_touched[level] < 0], np.int64)
        if len(todo) > 1:
            _kernels.invert_levels(todo, self.n_rows, self._index_layout, self._ids, self._cnt,
                                   self._row_start, self._row_sample, self._row_pos, self._touched,
                                   self._n_touched, self.n_threads)
            self._reverse_if_descending(todo)

    def _reverse_if_descending(self, levels):
        """Asynchronous workers visit the touched rows last to first (see TrainingRun)."""
        if self.descending:
            for level in levels:
                touched = self._touched[self._index_layout[level, _kernels.TOUCHED_AT]:]
                n_touched = self._n_touched[level]
                touched[:n_touched] = touched[:n_touched][::-1].copy()

    def lists_changed(self, level=None):
        """Forget the inverted index of ``level``, or of every level (call before
        writing a level's id lists)."""
        self._n_touched[slice(None) if level is None else level] = -1

    def whole_row_spans(self, level):
        """The spans of ``level``'s rows for the kernels: ``spans0`` for the whole
        dense input rows of a neuron-major first layer, else ``_kernels.NO_SPANS``
        (sparse input lists its non-zeros only, and may then be summed compactly)."""
        return self.spans0 if level == 0 and self.nonzeros is not None else _kernels.NO_SPANS

    def load_inputs(self, X, rows):
        """Put the non-zeros of X[rows] (float32 ndarray or SparseRows) into level 0,
        or whole dense rows for a neuron-major first layer."""
        self.n_rows = len(rows)
        self.lists_changed()
        self.nonzeros = None
        ids, vals, cnt = self.ids[0], self.vals[0], self.cnt[0]
        if isinstance(X, SparseRows):
            _kernels.csr_rows_to_lists(X.data, X.indices, X.indptr, rows, ids, vals, cnt)
        elif self.whole_rows:
            _kernels.dense_rows_to_full_lists(X, rows, ids, vals, cnt, self.nnz0, self.nz_ids,
                                              self.nz_vals, self.spans0)
            B = len(rows)
            self.nonzeros = (self.nz_ids[:B], self.nz_vals[:B], self.nnz0[:B])
            return
        else:
            _kernels.dense_rows_to_lists(X, rows, ids, vals, cnt)
        self.nnz0[: len(rows)] = cnt[: len(rows)]


def _zeros_on_pages(n_items, dtype):
    """A zeroed flat array of ``n_items`` that starts on a page."""
    n_bytes = n_items * np.dtype(dtype).itemsize
    raw = np.zeros(n_bytes + PAGE_BYTES, np.uint8)
    first = -raw.ctypes.data % PAGE_BYTES
    return raw[first: first + n_bytes].view(dtype)


def _page_segments(lengths, dtype):
    """A zeroed flat array of segments of the given lengths, each starting on a
    page of its own, and their starts: threads that write different segments
    share no cache line, nor a page that a prefetcher might cross."""
    per_page = PAGE_BYTES // np.dtype(dtype).itemsize
    starts = np.cumsum([0] + [-(-n // per_page) * per_page for n in lengths])
    return _zeros_on_pages(starts[-1], dtype), starts[:-1]


def _thread_scratch(n_threads, width, dtype):
    """Zeroed (n_threads, width) scratch in which each thread's row has pages of its own.

    Each row starts on a page and is followed by a free page. With rows only a
    cache line apart (as before), a thread sweeping its own row made the
    hardware prefetchers pull in the start of the next thread's row, and when
    the host placed the two cores far apart, those lines went back and forth
    at up to a microsecond each: the 3 x 1000 network's gradient sums gained
    1.05x from a second thread, 1.85x with the rows pages apart
    (docs/performance.md, Zen 1 third session). Rows in one cache line, with
    no padding at all, slowed the hashing loop about tenfold.
    """
    itemsize = np.dtype(dtype).itemsize
    # whole pages for the row, and a free one after it
    row_bytes = -(-width * itemsize // PAGE_BYTES) * PAGE_BYTES + PAGE_BYTES
    return _zeros_on_pages(n_threads * row_bytes // itemsize, dtype).reshape(n_threads, -1)


class BatchViews(NamedTuple):
    """A Workspace's buffers cut to one batch size (``Workspace.views``)."""

    levels: list  # per level, (ids, values, counts)
    delta: list  # per level, the deltas (None for the input)
    select_cost: list  # per layer, the selection's multiply-adds per sample
    row_keys: np.ndarray
    loss: np.ndarray


class BlockScratch:
    """Buffers of the column-blocked layers' kernels (``_block_kernels``) for up to
    ``n_blocks`` blocks of ``width`` neurons, ``n_active`` of them active per
    sample, inputs lists up to ``in_width`` long, ``n_levels`` levels and
    ``batch_size`` rows. Everything written per block sits on pages of its own.
    ``in_width`` counts the input lists of blocked layers past the first only:
    no deltas are computed for the network's input."""

    def __init__(self, n_blocks, width, n_active, in_width, n_levels, batch_size):
        self.sizes = (n_blocks, width, n_active, in_width, n_levels, batch_size)
        B = batch_size
        # selection: each block's scores of every sample, its cut's bound, the
        # scores it keeps above the blocks' least bound and their ids, and the
        # ids of all neurons
        self.scores = stacked_apart(n_blocks, B, width, np.float32)
        self.bounds = _thread_scratch(n_blocks, B, np.float32)
        self.kept = (stacked_apart(n_blocks, B, width, np.float32),
                     stacked_apart(n_blocks, B, width, np.int32),
                     _thread_scratch(n_blocks, B, np.int32))
        self.all_ids = np.arange(n_blocks * width, dtype=np.int32)
        # each level's runs of neurons per block, and their ids within the block
        # (from the selection of the layer below)
        self.block_ptr = np.zeros((n_levels, B, n_blocks + 1), np.int32)
        self.local_ids = np.zeros((n_levels, B, n_active), np.int32)
        self._cuts = {}
        # backward: each block's share of the input deltas, unrounded (the
        # one-matrix kernel sums in float64 too: float32 weights times numba's
        # integer 0 start a float64 sum)
        self.partial = _thread_scratch(n_blocks, B * in_width, np.float64)
        # update: each block's (ids, deltas, counts) and compact gradient sums
        self.lists = (stacked_apart(n_blocks, B, n_active, np.int32),
                      stacked_apart(n_blocks, B, n_active, np.float32),
                      _thread_scratch(n_blocks, B, np.int32))
        n_columns = min(width, _kernels.COMPACT_MAX_COLUMNS)
        n_words = _kernels.mark_words(n_columns)
        slot = _thread_scratch(n_blocks, width, np.int32)
        slot[:] = -1
        self.compact = (slot, _thread_scratch(n_blocks, width + 1, np.int32),
                        stacked_apart(n_blocks, B, n_columns, np.float32),
                        stacked_apart(n_blocks, B, n_words, np.uint64),
                        _thread_scratch(n_blocks, n_columns, np.float32),
                        _thread_scratch(n_blocks, n_words, np.uint64))
        self.union_sizes = np.zeros(n_blocks, np.int64)
        # each worker's dense gradient row (a worker per block, _block_kernels)
        self.grad = _thread_scratch(n_blocks, width, np.float32)
        self.mark = _thread_scratch(n_blocks, width, np.uint8)
        self.cols = _thread_scratch(n_blocks, width, np.int32)
        # claims of the update's loop over blocks, a worker per block: a layer of
        # n blocks takes the first n workers' (claims_for)
        self._claims = _work_sharing.new_claims(n_blocks)

    def claims_for(self, layer):
        """Claims of ``layer``'s loops over its blocks (a ``BlockedLayer``)."""
        return self._claims[: layer.layout.n_blocks * _work_sharing.CLAIM_STRIDE]

    def update_scratch(self, layer):
        """Scratch of the update kernels of ``layer`` (a ``BlockedLayer``): (grad, mark,
        cols, lists, compact, union_sizes, claims)."""
        return (self.grad, self.mark, self.cols, self.lists, self.compact, self.union_sizes,
                self.claims_for(layer))

    def runs(self, n_rows):
        """Per level, (block_ptr, local_ids) of the first ``n_rows`` samples (made once
        per batch size)."""
        cuts = self._cuts.get(n_rows)
        if cuts is None:
            cuts = self._cuts[n_rows] = [(ptr[:n_rows], ids[:n_rows])
                                         for ptr, ids in zip(self.block_ptr, self.local_ids)]
        return cuts


def compact_scratch(n_threads, batch_size, max_width, max_columns=_kernels.COMPACT_MAX_COLUMNS):
    """Scratch of the update kernels' compact gradient sums (``_kernels._column_union``):
    (slot, union_ids, dense_delta, dense_bits, acc_grad, acc_bits) for up to
    ``batch_size`` samples, weight rows up to ``max_width`` long and batches
    naming up to ``max_columns`` columns (0 turns the compact sums off); the
    marks are bits, 64 columns to a word."""
    n_columns = min(max_width, max_columns)
    n_words = _kernels.mark_words(n_columns)
    return (
        np.full(max_width, -1, np.int32),
        np.zeros(max_width + 1, np.int32),  # + 1: the branch-free append writes one past
        np.zeros((batch_size, n_columns), np.float32),
        np.zeros((batch_size, n_words), np.uint64),
        _thread_scratch(n_threads, n_columns, np.float32),
        _thread_scratch(n_threads, n_words, np.uint64),
    )


def input_width(X):
    """Largest number of non-zeros in a row of X (the level-0 list width)."""
    if isinstance(X, SparseRows):
        return max(1, int(np.diff(X.indptr).max(initial=0)))
    return max(1, X.shape[1])


def forward_batch(network, ws, n_rows, seed, row_keys, timer=_NoTimer(), labels=None, blocks=None):
    """Select and compute every layer's active neurons for the batch in ``ws`` level 0.

    Returns the levels as (ids, values, counts) views; the last level holds the
    output logits. Layer i's selection costs go to ``ws.select_cost[i]``.
    In training, ``labels`` = (Targets, batch rows): a sparse output layer then
    always includes each sample's true labels. ``blocks`` ({layer: BlockedLayer},
    from ``_blocks.column_blocks``) holds the layers whose blocks are stored apart.
    """
    blocks = blocks or {}
    views = ws.views(n_rows)
    levels = views.levels
    for i in range(network.n_layers):
        out_ids, out_vals, out_cnt = levels[i + 1]
        is_output = i == network.n_layers - 1
        computed = False
        if i in blocks:
            computed = select_blocks(network, ws, i, levels[i], levels[i + 1], blocks,
                                     views.select_cost[i])
        elif network.is_sparse(i):
            computed = select_layer(network, ws, i, levels[i], levels[i + 1], network.selection[i],
                                    network.n_selected(i), np.uint64(seed + i), row_keys,
                                    views.select_cost[i])
        if network.is_sparse(i):
            if network.n_selected(i) < network.n_active[i]:
                _lsh.add_random(out_ids, out_cnt, network.n_active[i], network.layer_sizes[i + 1],
                                np.uint64(seed + i + 500), row_keys, ws.mark)
            if is_output and labels is not None:
                targets, rows = labels
                _kernels.add_true_labels(out_ids, out_cnt, rows, targets.ptr, targets.ids, ws.mark)
            timer.mark("select (hash, query, score)")
        if not computed:
            compute_layer(network, i, levels[i], levels[i + 1], ws)
            timer.mark("forward")
    return levels


def selection_computes_activations(network, i, mode):
    """Does selecting layer i's neurons with ``mode`` give their activations too?

    Exact selection of an input-major layer scores every neuron with a few
    contiguous AXPYs; the chosen neurons' scores are their pre-activations, so
    the forward pass need not compute them again (3 x 1000 at 0.05 on MNIST:
    the forward pass was 11% of the fit). Not for the output layer, which gains
    random negatives and true labels after the selection.
    """
    return mode == _lsh.SELECT_EXACT and not network.neuron_major[i] and i < network.n_layers - 1


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


def select_blocks(network, ws, i, inputs, outputs, blocks, cost):
    """Exact selection of the column-blocked layer i (``blocks[i]``): the ids,
    activations and per-block runs of its active neurons into ``outputs``."""
    in_ids, in_vals, in_cnt = inputs
    out_ids, out_vals, out_cnt = outputs
    ws.lists_changed(i + 1)
    scratch, layer = ws.block_scratch(network, blocks), blocks[i]
    in_nnz = ws.nnz0[: in_cnt.shape[0]] if i == 0 else in_cnt
    block_ptr, local_ids = scratch.runs(in_cnt.shape[0])[i + 1]
    _block_kernels.select_exact_blocks(
        layer.W, layer.layout.starts, network.biases[i], in_ids, in_vals, in_cnt, in_nnz,
        network.n_active[i], network.activation_code, out_ids, out_vals, out_cnt,
        block_ptr, local_ids, cost, scratch.scores, scratch.bounds, *scratch.kept, scratch.all_ids,
        ws.scores, ws.ties, ws.pool, ws.claims,
    )
    return True


def select_layer(network, ws, i, inputs, outputs, mode, n_select, seed, row_keys, cost):
    """Write the n_select neurons of layer i that ``mode`` picks for each sample of
    ``inputs`` into the id lists of ``outputs`` (see _lsh.select_active). Returns
    whether it wrote their activations too (``selection_computes_activations``)."""
    in_ids, in_vals, in_cnt = inputs
    out_ids, out_vals, out_cnt = outputs
    write_values = selection_computes_activations(network, i, mode) and n_select == network.n_active[i]
    ws.lists_changed(i + 1)
    hyperplanes, offsets, neuron_ids = network.tables(i)
    in_nnz = ws.nnz0[: in_cnt.shape[0]] if i == 0 else in_cnt
    if i == 0 and ws.nonzeros is not None and mode in (_lsh.SELECT_LSH, _lsh.SELECT_RANDOM):
        # hashing skips zeros: the lists of non-zeros save a test per column
        # (selection 1.13x faster on MNIST); scoring modes keep the contiguous rows
        in_ids, in_vals, in_cnt = ws.nonzeros
    _lsh.select_active(
        mode, in_ids, in_vals, in_cnt, in_nnz, network.kernel_weights(i), network.neuron_major[i],
        network.biases[i], hyperplanes, network.layer_sizes[i], network.K, network.L, offsets,
        neuron_ids, n_select, network.rerank_pool(i), network.n_probes, seed, row_keys, out_ids,
        out_cnt, cost, write_values, network.block_width(i), network.activation_code, out_vals,
        ws.count, ws.cand, ws.ties, ws.hist, ws.proj, ws.pool, ws.scores, ws.cand_scores, ws.claims,
    )
    return write_values


def compute_layer(network, i, inputs, outputs, ws=None):
    """Activations of layer i's active neurons (listed in ``outputs``) from ``inputs``,
    both levels as (ids, values, counts); the output layer gives logits."""
    in_ids, in_vals, in_cnt = inputs
    out_ids, out_vals, out_cnt = outputs
    W, b = network.kernel_weights(i), network.biases[i]
    activation = 0 if i == network.n_layers - 1 else network.activation_code
    if network.neuron_major[i] and ws is not None:
        _kernels.forward_layer_grouped(W, b, in_ids, in_vals, in_cnt, *ws.inverted(i + 1),
                                       activation, out_vals, ws.claims)
    elif ws is not None and i in ws.grouped:
        _, _, row_start, row_sample, row_pos = ws.inverted(i)
        _kernels.forward_dense_grouped(W, b, in_vals, in_cnt.shape[0], row_start, row_sample, row_pos,
                                       activation, ws.partial_sums, out_vals)
    elif network.neuron_major[i]:
        _kernels.forward_layer_by_neuron(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt,
                                         activation, out_vals)
    else:
        _kernels.forward_layer(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt,
                               not network.is_sparse(i), activation, out_vals)


def train_batch(network, ws, optimizer, targets, rows, sample_weight, alpha, seed, flops,
                timer=_NoTimer(), step_size=None, blocks=None, weight_sum=None):
    """One step of sparse training on the batch already loaded in ``ws`` level 0.

    ``rows`` are the batch's rows of ``targets`` (int64), ``sample_weight``
    their weights. Returns the batch's weighted mean log loss (without the L2
    term); adds the multiply-adds done and those of dense training to ``flops``
    ('sparse', 'dense'); ``timer`` is marked after each phase. ``step_size``
    is the optimizer's, from ``optimizer.begin_batch()`` when not given.
    ``blocks`` ({layer: BlockedLayer}, from ``_blocks.column_blocks``) holds the
    layers whose column blocks are stored apart. ``weight_sum``: the sum of
    ``sample_weight``, when the caller has it.
    """
    B = len(rows)
    n_layers = network.n_layers
    blocks = blocks or {}
    views = ws.views(B)
    if blocks:
        block_scratch = ws.block_scratch(network, blocks)
        runs = block_scratch.runs(B)  # per level, (block_ptr, local_ids)
    levels = forward_batch(network, ws, B, seed, views.row_keys, timer, (targets, rows), blocks)
    if weight_sum is None:
        weight_sum = float(sample_weight.sum(dtype=np.float64))

    delta = views.delta
    out_delta = delta[n_layers]
    out_ids, logits, out_cnt = levels[n_layers]
    loss = _kernels.output_loss_and_delta(
        out_ids, logits, out_cnt, rows, targets.ptr, targets.ids, targets.values,
        sample_weight, weight_sum, network.softmax, ws.target, out_delta, views.loss,
    ) / weight_sum
    timer.mark("loss")

    for i in range(n_layers - 1, 0, -1):
        in_ids, in_vals, in_cnt = levels[i]
        out_ids, _, out_cnt = levels[i + 1]
        lists = (in_ids, in_vals, in_cnt, out_ids, out_cnt)
        if i in blocks:
            block_ptr, local_ids = runs[i + 1]
            _block_kernels.backward_blocks(
                blocks[i].W, in_ids, in_vals, in_cnt, local_ids, block_ptr, delta[i + 1],
                network.activation_code, block_scratch.partial, delta[i], ws.claims)
        elif i in ws.grouped:
            _kernels.backward_dense_grouped(network.kernel_weights(i), in_vals, *ws.inverted(i),
                                            delta[i + 1], network.activation_code, delta[i])
        elif network.neuron_major[i]:
            _kernels.backward_layer_by_neuron(network.kernel_weights(i), *lists, delta[i + 1],
                                              network.activation_code, delta[i])
        else:
            _kernels.backward_layer(network.kernel_weights(i), *lists, not network.is_sparse(i),
                                    network.block_width(i), delta[i + 1],
                                    network.activation_code, delta[i], ws.claims)
    timer.mark("backward")

    if step_size is None:
        step_size = optimizer.begin_batch()
    l2 = alpha / weight_sum
    scratch = (ws.grad, ws.mark, ws.cols, ws.compact, ws.claims)
    # each layer's update groups the batch by weight row: by input (level i),
    # or by neuron (level i + 1) for neuron-major W; all levels at once
    row_levels = [i + 1 if network.neuron_major[i] else i for i in range(n_layers)]
    ws.invert_levels(row_levels)
    # last layer first: the backward pass has just read its weights, still in
    # cache (a 4096-wide net's output update 0.50-0.53 -> 0.47 ms on one thread)
    for i in reversed(range(n_layers)):
        b = network.biases[i]
        in_ids, in_vals, in_cnt = levels[i]
        inputs = (in_ids, in_cnt, in_vals)
        outputs = (levels[i + 1][0], levels[i + 1][2], delta[i + 1])  # ids, counts, deltas
        if network.neuron_major[i]:
            (_, _, row_vals), columns = outputs, inputs
        else:
            (_, _, row_vals), columns = inputs, outputs
        index = ws.inverted(row_levels[i])
        if i in blocks:
            block_ptr, local_ids = runs[i + 1]
            optimizer.update_blocked_layer(i, blocks[i], b, step_size, l2, index, row_vals,
                                           (local_ids, block_ptr, outputs[2]),
                                           block_scratch.update_scratch(blocks[i]))
        else:
            optimizer.update_layer(i, network.kernel_weights(i), b, step_size, l2, index, row_vals,
                                   columns, outputs, scratch, network.neuron_major[i],
                                   ws.whole_row_spans(i))
    timer.mark("update")

    dense_passes, sparse_passes, selecting = ws.flop_passes
    flops["dense"] += B * dense_passes
    flops["sparse"] += _kernels.batch_counts(ws._cnt, ws.nnz0, ws.select_cost, B, sparse_passes,
                                             selecting, ws.pairs, ws.active, ws.selected)
    timer.mark("bookkeeping")
    return loss


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


class TrainingRun:
    """The batch loop of one fit call: a workspace, the data, and running counts.

    ``epoch(order)`` trains one pass over the rows in ``order`` and returns the
    epoch loss as MLPClassifier reports it: the mean batch log loss plus the L2
    penalty 0.5 * alpha * |W|^2 per batch (computed once, at the epoch's end).

    With ``n_workers`` > 1 the batches are trained asynchronously (HOGWILD!):
    each worker thread takes the next batch and trains it with single-threaded
    kernels on the shared weights, without locks, while the others do the
    same. The threads meet only where the hash tables are rebuilt (tables are
    rewritten in place, so nobody may query them meanwhile). Results then
    depend on thread timing.
    """

    def __init__(self, network, optimizer, X, targets, sample_weight, batch_size, alpha, schedule,
                 seed, initial_flops=0, n_workers=1):
        self.network, self.optimizer, self.schedule = network, optimizer, schedule
        self.X, self.targets, self.sample_weight = X, targets, sample_weight
        # most fits weigh every sample 1: their batches need neither gathering
        # nor summing of weights
        self.unit_weights = bool((sample_weight == 1).all())
        self.some_weights_zero = not sample_weight.all()  # else batches need no filtering
        self._ones = np.ones(batch_size, np.float32)
        self.batch_size, self.alpha = batch_size, alpha
        width, max_labels = input_width(X), targets.max_per_row()
        # Two threads sweeping the same weight rows in the same order fall into
        # step, the follower writing lines still in the leader's cache; opposite
        # directions cross twice per sweep. Measured on MNIST with 2 threads:
        # 3 x 1000 at 0.05 fits 15-20% faster, 4096 at 0.02 with LSH the same.
        self.workspaces = [Workspace(network, batch_size, width, max_labels, descending=k % 2 == 1)
                           for k in range(n_workers)]
        self.seed = seed
        self.n_batches = 0
        self.flops = {"sparse": initial_flops, "dense": 0}
        self.active_sum = np.zeros(network.n_layers)
        self.layer_widths = np.array([W.shape[1] for W in network.weights])
        self.n_trained = 0
        self.timer = phase_timer if phase_timer is not None else _NoTimer()
        self._lock = threading.Lock()
        self.blocks = {}  # the column-blocked layers stored apart, during an epoch
        # which layout is faster for them depends on the machine: measure (_blocks)
        threaded = n_workers == 1 and numba.get_num_threads() > 1
        self.layout_chooser = LayoutChooser() if threaded and layers_stored_apart(network) else None

    def _rebuild_tables(self):
        self.flops["sparse"] += self.network.rebuild_all_tables()

    def _rebuild_tables_on_one_thread(self):
        """The rebuild between asynchronous rounds: on several threads, numba's
        worker would spin on after it (GOMP_SPINCOUNT, see __init__.py), taking a
        core from the workers' next batches (4096 at 0.02 on MNIST: two workers
        1.24-1.27x faster than one thread, against 1.60-1.72x)."""
        n_threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            self._rebuild_tables()
        finally:
            numba.set_num_threads(n_threads)

    def epoch(self, order):
        self._loss_sum = 0.0
        self._l2_batches = 0.0  # sum over batches of batch_size / sum(batch weights)
        batches = [order[start: start + self.batch_size].astype(np.int64)
                   for start in range(0, len(order), self.batch_size)]
        self.workspaces[0].n_threads = numba.get_num_threads()
        if len(self.workspaces) > 1:
            self._train_asynchronously(batches)
        elif self.layout_chooser is None:
            for rows in batches:
                self._train_batch(rows)
        else:
            self._train_choosing_layouts(batches)
        squared_norm = sum(_kernels.sum_of_squares(W.ravel(order="K")) for W in self.network.weights)
        return (self._loss_sum + 0.5 * self.alpha * squared_norm * self._l2_batches) / len(order)

    def _train_batch(self, rows, apart=None):
        """Train one batch synchronously; rebuild the tables when due. Its time goes
        to the layout chooser when the blocks are stored ``apart`` (True) or not
        (False)."""
        start = time.perf_counter()
        trained = self._train(self.workspaces[0], rows, self.flops, self.timer)
        if trained and apart is not None:
            self.layout_chooser.record(apart, time.perf_counter() - start)
        if trained and self.schedule.step():
            self._rebuild_tables()
        self.timer.mark("rehash and batch loop")

    def _train_choosing_layouts(self, batches):
        """Train ``batches`` with the column blocks stored apart or in the one matrix,
        batch by batch as ``layout_chooser`` says (the same results either way),
        switching layouts only where its choice changes."""
        layers = layers_stored_apart(self.network)
        self.layout_chooser.restart()
        try:
            with contextlib.ExitStack() as layout:
                apart_now = None
                for rows in batches:
                    apart = self.layout_chooser.layout()
                    if apart != apart_now:
                        layout.close()  # joins the blocks stored apart, if any
                        self.blocks = layout.enter_context(
                            column_blocks(self.network, self.optimizer, layers if apart else []))
                        apart_now = apart
                    self._train_batch(rows, apart)
        finally:
            self.blocks = {}

    def _train(self, ws, rows, flops, timer, lock=contextlib.nullcontext()):
        """Train one batch in workspace ``ws``, updating the shared counts under ``lock``;
        False when there is nothing to learn from it (all sample weights zero)."""
        n_rows = len(rows)
        if self.unit_weights:
            weights, weight_sum = self._ones[:n_rows], float(n_rows)
        else:
            weights = self.sample_weight[rows]
            if self.some_weights_zero and not weights.all():
                # rows of weight 0 would still pick active neurons, whose lazy Adam
                # step (decay, L2) moves them although their gradient is 0
                rows, weights = rows[weights > 0], weights[weights > 0]
            # in float64: float32 weights can sum past float32's range
            weight_sum = float(weights.sum(dtype=np.float64))
            if weight_sum <= 0:
                return False
        timer.start()
        with lock:
            # a distinct seed per batch, spread far apart for the per-layer offsets
            seed = self.seed + 1000 * self.n_batches
            self.n_batches += 1
            step_size = self.optimizer.begin_batch()
        ws.load_inputs(self.X, rows)
        timer.mark("load batch")
        loss = train_batch(self.network, ws, self.optimizer, self.targets, rows, weights,
                           self.alpha, seed, flops, timer, step_size, self.blocks, weight_sum)
        with lock:
            # the batch's weighted mean loss counts for the whole batch, as in MLPClassifier
            self._loss_sum += loss * n_rows
            self._l2_batches += n_rows / weight_sum
            self.n_trained += len(rows)
            self.active_sum += ws.active / self.layer_widths
        return True

    def _train_asynchronously(self, batches):
        """HOGWILD! over ``batches``, in rounds that end where the tables are due a rebuild."""
        stop = threading.Event()

        def work(ws, flops, queue):
            """Train batches from ``queue`` until it is empty; returns how many trained."""
            numba.set_num_threads(1)  # thread-local: this thread's kernels run inline
            ws.n_threads = 1
            n_trained = 0
            try:
                while not stop.is_set():
                    with self._lock:
                        if not queue:
                            break
                        rows = queue.pop()
                    n_trained += self._train(ws, rows, flops, _NoTimer(), self._lock)
            except BaseException:
                stop.set()  # the other workers end their batch and stop
                raise
            return n_trained

        start = 0
        with ThreadPoolExecutor(len(self.workspaces)) as pool:
            try:
                while start < len(batches):
                    # the schedule rebuilds after ceil(batches_left) more batches
                    size = min(len(batches) - start, max(1, math.ceil(self.schedule.batches_left)))
                    queue = batches[start: start + size][::-1]  # popped from the end, in order
                    start += size
                    worker_flops = [{"sparse": 0, "dense": 0} for _ in self.workspaces]
                    jobs = [pool.submit(work, ws, flops, queue)
                            for ws, flops in zip(self.workspaces, worker_flops)]
                    n_trained = sum(job.result() for job in jobs)
                    for flops in worker_flops:
                        for key in flops:
                            self.flops[key] += flops[key]
                    if any([self.schedule.step() for _ in range(n_trained)]):
                        self._rebuild_tables_on_one_thread()
            finally:
                stop.set()  # after an interrupt, too

    def flop_fraction(self):
        return self.flops["sparse"] / max(self.flops["dense"], 1)

    def active_fraction(self):
        return self.active_sum / max(1, self.n_trained)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BEYOND_FLOAT32 = ("Input X holds values beyond float32's range (about 3.4e38), in which "
                   "HashMLPClassifier trains; scale the features first.")


def check_sparse_indices(X):
    """X, after checking that a CSR or CSC matrix's index arrays stay inside it:
    the kernels (and SciPy's products) would read and write past the weights.
    scipy's check_format is not used, as it changes the caller's matrix."""
    if not sp.issparse(X):
        return X
    n_major, n_minor = X.shape if X.format == "csr" else X.shape[::-1]
    indptr, indices = X.indptr, X.indices
    if (len(indptr) != n_major + 1 or indptr[0] != 0 or indptr[-1] > len(indices)
            or len(X.data) != len(indices) or (n_major and np.diff(indptr).min() < 0)):
        raise ValueError(f"Input X is not a valid {X.format.upper()} matrix: its index pointer "
                         "array does not match its shape, indices and values.")
    used = indices[:indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= n_minor):
        axis = "column" if X.format == "csr" else "row"
        raise ValueError(f"Input X is not a valid {X.format.upper()} matrix: its {axis} indices "
                         f"must lie in [0, {n_minor}), got {used.min()} to {used.max()}.")
    return X


def kernel_input(X):
    """Training input in the one layout the kernels compile for: float32, and
    C-contiguous when dense, ``SparseRows`` when sparse."""
    given = X
    values = X.data if sp.issparse(X) else X
    # validated input is finite, but float64 values can overflow float32; max and
    # min allocate nothing (np.isfinite on the converted input took a byte per value)
    if (values.dtype.kind == "f" and values.dtype != np.float32 and values.size
            and max(values.max(), -values.min()) > _FLOAT32_MAX):
        raise ValueError(_BEYOND_FLOAT32)
    if not sp.issparse(X):
        return np.ascontiguousarray(X, dtype=np.float32)
    X = X.tocsr()
    summed = not X.has_canonical_format
    X = X.astype(np.float32, copy=False)  # which may sum the duplicates already
    if not X.has_canonical_format:
        # sorted and without duplicates: the kernels take a row with n_features
        # entries for one listing every feature once, in order
        X = X.copy() if X is given else X  # sum_duplicates works in place
        X.sum_duplicates()
    if summed and not np.isfinite(X.data).all():  # two entries summed past float32's range
        raise ValueError(_BEYOND_FLOAT32)
    return SparseRows(X.data, X.indices.astype(np.int32), X.indptr.astype(np.int64), X.shape)
