"""The buffers of a training step and of hashed prediction, allocated once per fit
or predict call (never per sample or per batch).

``Workspace`` holds the levels of a batch (its input, then each layer's active
neurons and activations), the deltas, the inverted indexes and each thread's
scratch; ``BlockScratch`` the buffers of the column-blocked layers' kernels.
Each thread's or block's scratch, and each level's ids and inverted index, start
on pages of their own (``_thread_scratch``, ``_page_segments``).
"""

from typing import NamedTuple

import numba
import numpy as np

from . import _kernels, _work_sharing
from ._blocks import PAGE_BYTES, stacked_apart
from ._inputs import SparseRows
from ._layer_roles import flop_passes, grouped_dense_layers


class BatchViews(NamedTuple):
    """A Workspace's buffers cut to one batch size (``Workspace.views``)."""

    levels: list  # per level, (ids, values, counts)
    delta: list  # per level, the deltas (None for the input)
    select_cost: list  # per layer, the selection's multiply-adds per sample
    row_keys: np.ndarray
    loss: np.ndarray


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
        # Visit touched rows last to first (see _train.TrainingRun: asynchronous workers
        # sweep the shared weights in opposite directions)
        self.descending = descending
        self.n_rows = 0  # rows in the levels, set by load_inputs
        # per-thread scratch of the update kernels, indexed by weight column
        self.grad = _thread_scratch(n_threads, max_size, np.float32)
        self.target = _thread_scratch(n_threads, max_out, np.float32)
        # the softmax's exponentials of a sample's active outputs, by position
        self.exps = _thread_scratch(n_threads, widths[-1], np.float64)
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
        """Asynchronous workers visit the touched rows last to first (see _train.TrainingRun)."""
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
