"""Kernels of column-blocked layers (see ``_blocks.py``): each block's work on its own thread.

A blocked layer's weights ``Wb`` are (n_blocks, rows, width): block t holds the
neurons ``starts[t]:starts[t + 1]`` (the columns of the input-major weights).
Each kernel first loops over the blocks in parallel, and then, where the blocks'
results must be combined, loops over the samples. The layer's active lists are
grouped by block: sample s's neurons in block t are the run
``block_ptr[s, t]:block_ptr[s, t + 1]`` of its list.

The selection and the backward pass score or read each block on one thread: a
sample reads a large part of a block's weight rows, and another thread reading
them made the owner's next writes to them cost a cross-core invalidation (with
the virtual CPUs apart, 3 x 1000 batches took 12% longer). The update has a
worker per block (``block_claims``: claims of ``_work_sharing`` for as many
workers as blocks), which takes its block's touched rows in chunks, and then,
when ahead, the other blocks' rows left but about their last OWNER_KEEPS_ROWS: so a
row moves between cores only while one runs slower (a virtual CPU can, for
seconds at a time). The loops over the samples share them among the threads
(``claims``).

Every item is computed the same way whichever worker takes it, and the blocks'
results are combined in block order: results do not depend on the number of
threads nor on how the work was shared.
"""

from numba import njit, prange

from ._kernels import (_activate, _adam_apply, _adam_row, _bias_gradient, _column_union,
                       _derivative, _sgd_apply, _sgd_row, DOT_MATH, NO_SPANS)
from ._select import (_cut_bound, _group_by_block, _groups_in_block, _keep_at_least, _order_top,
                      _score_all)
from ._work_sharing import (ROW_CHUNK, SAMPLE_CHUNK, mark_ready, n_workers, next_chunk,
                            reset_claims, share_ready, take_chunk)

# Touched rows at the end of a block's share that another worker does not start
# on (``take_chunk``'s ``leave``; it may finish a chunk begun before them): a row
# another worker updates moves to its core and back, worth it when a core runs
# slow, not for the last few rows of a call
OWNER_KEEPS_ROWS = 16


@njit(cache=True, inline="always", error_model="numpy")
def _pick_and_group(s, starts, n_out, activation, block_scores, n_kept, kept_scores, kept_ids,
                    scores, ids, order, in_nnz, out_ids, out_vals, out_cnt, block_ptr, local_ids, cost):
    """Sample s's part of ``select_exact_blocks`` once each block has kept its scores
    above the cut: the best of those, their activations and runs per block."""
    n_blocks = starts.shape[0] - 1
    n_neurons, block_width = starts[n_blocks], starts[1] - starts[0]
    n = 0
    for t in range(n_blocks):  # in block order: the one matrix's order of ids
        for c in range(n_kept[t, s]):
            scores[n] = kept_scores[t, s, c]
            ids[n] = kept_ids[t, s, c]
            n += 1
    if n_out < n_neurons and n >= n_out:
        _order_top(scores, ids, n, n_out)
    else:  # every neuron, or the cut kept too few (NaN scores): the first n_out
        for c in range(n_out):
            t = min(c // block_width, n_blocks - 1)
            ids[c], scores[c] = c, block_scores[t, s, c - starts[t]]
    out_cnt[s] = n_out
    cost[s] = n_neurons * in_nnz[s]
    row, ptr = out_ids[s], block_ptr[s]
    _group_by_block(ids, n_out, block_width, n_neurons, row, order)
    c = 0
    for t in range(n_blocks):
        lo = starts[t]
        ptr[t] = c
        while c < n_out and row[c] < starts[t + 1]:
            local_ids[s, c] = row[c] - lo
            out_vals[s, c] = _activate(scores[order[c]], activation)
            c += 1
    ptr[n_blocks] = n_out


@njit(nogil=True, parallel=True, cache=True, fastmath=DOT_MATH)
def select_exact_blocks(Wb, starts, b, in_ids, in_vals, in_cnt, in_nnz, n_active, activation,
                        out_ids, out_vals, out_cnt, block_ptr, local_ids, cost, block_scores,
                        block_bounds, kept_scores, kept_ids, n_kept, all_ids, score_scratch,
                        id_scratch, order_scratch, claims):
    """Exact selection (``_select.select_active``'s SELECT_EXACT) over column blocks.

    Each block's thread scores its neurons for every sample into
    ``block_scores[t]``, with the least of its cut's group maxima
    (``_select._layer_bound``) into ``block_bounds[t]``; then, the blocks' least
    of those known, keeps the scores that reach it and their ids
    (``kept_scores[t]``, ``kept_ids[t]``, ``n_kept[t]``). Each sample's
    ``n_active`` best of the kept go into ``out_ids`` grouped by block
    (``_select._group_by_block``), their activations into ``out_vals``, the runs
    of each block into ``block_ptr`` and the ids within their block into
    ``local_ids``. ``all_ids`` holds 0, 1, ..., n - 1. The one matrix's
    selection keeps the same scores in the same order, and so picks alike.
    A sample's pick reads the about a sixth of the scores that the blocks' cut
    kept, not all of them: 7-10% faster than copying every score first, on one
    thread and on two with the virtual CPUs near; with them apart no gain was
    measured (docs/performance.md, Zen 4 ninth session). (Each block keeping
    its own best and the samples merging those picks ran 1.5x slower on one
    thread with two blocks, and 1.2x or more slower on two: a block's pick costs
    most of a layer's; docs/performance.md, Zen 4 eighth session.)
    """
    n_blocks = starts.shape[0] - 1
    n_rows = in_cnt.shape[0]
    n_neurons = starts[n_blocks]
    n_out = min(n_active, n_neurons)
    for t in prange(n_blocks):
        lo, width = starts[t], starts[t + 1] - starts[t]
        n_groups = _groups_in_block(n_out, width, n_neurons)
        for s in range(n_rows):
            scores = block_scores[t, s]
            _score_all(s, Wb[t], b[lo: lo + width], width, in_ids, in_vals, in_cnt, scores)
            block_bounds[t, s] = _cut_bound(scores, width, n_groups)
    for t in prange(n_blocks):
        lo, width = starts[t], starts[t + 1] - starts[t]
        for s in range(n_rows):
            bound = block_bounds[0, s]
            for u in range(1, n_blocks):
                bound = min(bound, block_bounds[u, s])
            n_kept[t, s] = _keep_at_least(all_ids[lo: lo + width], block_scores[t, s], width, bound,
                                          kept_ids[t, s], kept_scores[t, s])
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, n_rows, SAMPLE_CHUNK, 0)
        while first < stop:
            for s in range(first, stop):
                _pick_and_group(s, starts, n_out, activation, block_scores, n_kept, kept_scores,
                                kept_ids, score_scratch[worker], id_scratch[worker],
                                order_scratch[worker], in_nnz, out_ids, out_vals, out_cnt,
                                block_ptr, local_ids, cost)
            first, stop, share = next_chunk(claims, worker, n_rows, SAMPLE_CHUNK, share)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def backward_blocks(Wb, in_ids, in_vals, in_cnt, local_ids, block_ptr, out_delta, in_activation,
                    partial, in_delta, claims):
    """Deltas of the layer's active inputs from those of its active neurons: each
    block's thread sums its neurons' terms into ``partial[t]``, and the blocks'
    sums are added in block order."""
    n_blocks = Wb.shape[0]  # block_ptr may have room for more (other layers' blocks)
    n_rows, width = in_ids.shape[0], in_ids.shape[1]
    for t in prange(n_blocks):
        W, sums = Wb[t], partial[t]
        for s in range(n_rows):
            # the block's run as slices: a loop from 0 lets LLVM drop the
            # negative-index checks (1.6x faster than a loop from first to stop)
            lo, hi = block_ptr[s, t], block_ptr[s, t + 1]
            ids, delta = local_ids[s, lo:hi], out_delta[s, lo:hi]
            for p in range(in_cnt[s]):
                row = W[in_ids[s, p]]
                acc = row[0] * 0
                for q in range(ids.shape[0]):
                    acc += row[ids[q]] * delta[q]
                sums[s * width + p] = acc
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, n_rows, SAMPLE_CHUNK, 0)
        while first < stop:
            for s in range(first, stop):
                for p in range(in_cnt[s]):
                    acc = partial[0, s * width + p]
                    for t in range(1, n_blocks):
                        acc += partial[t, s * width + p]
                    in_delta[s, p] = acc * _derivative(in_vals[s, p], in_activation)
            first, stop, share = next_chunk(claims, worker, n_rows, SAMPLE_CHUNK, share)


@njit(cache=True, inline="always")
def _block_lists(t, lists, n_rows):
    """Block t's active lists, with ids local to the block: (ids, deltas, counts)
    of ``lists``, scratch with a leading block axis."""
    return lists[0][t], lists[1][t], lists[2][t][:n_rows]


@njit(cache=True, inline="always")
def _block_compact(t, compact):
    """Block t's compact gradient sums (``_workspace.compact_scratch``, with a leading
    block axis on every array); the accumulators keep theirs: a worker sums into
    its own row of them, whichever block's row it takes."""
    return compact[0][t], compact[1][t], compact[2][t], compact[3][t], compact[4], compact[5]


@njit(cache=True, inline="always", error_model="numpy")
def _prepare_block(t, starts, local_ids, out_delta, block_ptr, n_rows, n_touched, n_pairs, lists,
                   compact):
    """Copy block t's part of the layer's active lists into ``lists`` and prepare
    its compact gradient sums (``_kernels._column_union``); returns their column
    count (-1: none)."""
    ids, deltas, counts = _block_lists(t, lists, n_rows)
    for s in range(n_rows):
        first, stop = block_ptr[s, t], block_ptr[s, t + 1]
        for c in range(stop - first):  # loops: slice assignments would be parallel loops
            ids[s, c] = local_ids[s, first + c]
            deltas[s, c] = out_delta[s, first + c]
        counts[s] = stop - first
    return _column_union(ids, counts, deltas, starts[t + 1] - starts[t], False, n_touched, n_pairs,
                         _block_compact(t, compact))


@njit(cache=True, inline="always", error_model="numpy")
def _own_block_first(worker, starts, local_ids, out_delta, block_ptr, n_rows, n_touched, n_pairs,
                     lists, compact, union_sizes, block_claims, grad, mark, cols):
    """A blocked update worker's start: prepare its block's lists, mark its share
    ready and sum its biases' gradient into ``grad``. Returns (first bias, number
    of biases, touched count) for the optimizer's bias step."""
    union_sizes[worker] = _prepare_block(worker, starts, local_ids, out_delta, block_ptr, n_rows,
                                         n_touched, n_pairs, lists, compact)
    mark_ready(block_claims, worker)
    ids, deltas, counts = _block_lists(worker, lists, n_rows)
    n_cols = _bias_gradient(ids, counts, deltas, grad, mark, cols)
    return starts[worker], starts[worker + 1] - starts[worker], n_cols


@njit(cache=True, inline="always")
def _share_to_take(worker, share, starts, union_sizes, lists, compact, n_rows, block_claims):
    """The block a blocked update worker turns to at its ``share``-th step (its own
    first) and what its rows need: (block, whether to take rows of it, rows left to
    its owner, width, compact column count, ids, deltas, counts, compact sums)."""
    n_blocks = starts.shape[0] - 1
    t = (worker + share) % n_blocks
    take = share == 0 or share_ready(block_claims, t)
    leave = 0 if share == 0 else OWNER_KEEPS_ROWS
    ids, deltas, counts = _block_lists(t, lists, n_rows)
    return (t, take, leave, starts[t + 1] - starts[t], union_sizes[t], ids, deltas, counts,
            _block_compact(t, compact))


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def adam_update_blocks(
    Wb, m_Wb, v_Wb, starts, b, m_b, v_b, touched_rows, n_touched, n_pairs, row_start, row_sample,
    row_pos, row_vals, local_ids, out_delta, block_ptr, l2, step_size, beta_1, beta_2, epsilon,
    grad_scratch, mark_scratch, cols_scratch, lists, compact, union_sizes, block_claims,
):
    """``_kernels.adam_update`` of a blocked layer: each block's worker prepares the
    block's lists, updates its biases and the touched rows of its block, then
    takes touched rows of the other blocks that are left. ``n_pairs`` is the number
    of (row, sample) pairs in the index, ``row_start[n_inputs]``; ``union_sizes``
    holds each block's compact column count; scratch rows are per worker."""
    n_rows, n_blocks = local_ids.shape[0], starts.shape[0] - 1
    reset_claims(block_claims)
    for worker in prange(n_blocks):
        grad, mark, cols = grad_scratch[worker], mark_scratch[worker], cols_scratch[worker]
        lo, width, n_cols = _own_block_first(worker, starts, local_ids, out_delta, block_ptr, n_rows,
                                             n_touched, n_pairs, lists, compact, union_sizes,
                                             block_claims, grad, mark, cols)
        _adam_apply(b[lo: lo + width], m_b[lo: lo + width], v_b[lo: lo + width], grad, mark, cols,
                    n_cols, 0, width, l2 * 0, step_size, beta_1, beta_2, epsilon)
        for share in range(n_blocks):
            t, take, leave, t_width, n_union, ids, deltas, counts, block_compact = _share_to_take(
                worker, share, starts, union_sizes, lists, compact, n_rows, block_claims)
            if not take:
                continue
            W, M, V = Wb[t], m_Wb[t], v_Wb[t]
            first, stop = take_chunk(block_claims, t, n_touched, ROW_CHUNK, leave)
            while first < stop:
                for r in range(first, stop):
                    i = touched_rows[r]
                    _adam_row(W[i], M[i], V[i], i, t_width, row_start, row_sample, row_pos, row_vals,
                              ids, counts, deltas, NO_SPANS, n_union, block_compact, worker, grad,
                              mark, cols, l2, step_size, beta_1, beta_2, epsilon)
                first, stop = take_chunk(block_claims, t, n_touched, ROW_CHUNK, leave)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def sgd_update_blocks(
    Wb, vel_Wb, starts, b, vel_b, touched_rows, n_touched, n_pairs, row_start, row_sample,
    row_pos, row_vals, local_ids, out_delta, block_ptr, l2, learning_rate, momentum, nesterov,
    grad_scratch, mark_scratch, cols_scratch, lists, compact, union_sizes, block_claims,
):
    """``_kernels.sgd_update`` of a blocked layer (arguments as ``adam_update_blocks``)."""
    n_rows, n_blocks = local_ids.shape[0], starts.shape[0] - 1
    reset_claims(block_claims)
    for worker in prange(n_blocks):
        grad, mark, cols = grad_scratch[worker], mark_scratch[worker], cols_scratch[worker]
        lo, width, n_cols = _own_block_first(worker, starts, local_ids, out_delta, block_ptr, n_rows,
                                             n_touched, n_pairs, lists, compact, union_sizes,
                                             block_claims, grad, mark, cols)
        _sgd_apply(b[lo: lo + width], vel_b[lo: lo + width], grad, mark, cols, n_cols, 0, width,
                   l2 * 0, learning_rate, momentum, nesterov)
        for share in range(n_blocks):
            t, take, leave, t_width, n_union, ids, deltas, counts, block_compact = _share_to_take(
                worker, share, starts, union_sizes, lists, compact, n_rows, block_claims)
            if not take:
                continue
            W, VEL = Wb[t], vel_Wb[t]
            first, stop = take_chunk(block_claims, t, n_touched, ROW_CHUNK, leave)
            while first < stop:
                for r in range(first, stop):
                    i = touched_rows[r]
                    _sgd_row(W[i], VEL[i], i, t_width, row_start, row_sample, row_pos, row_vals, ids,
                             counts, deltas, NO_SPANS, n_union, block_compact, worker, grad, mark,
                             cols, l2, learning_rate, momentum, nesterov)
                first, stop = take_chunk(block_claims, t, n_touched, ROW_CHUNK, leave)
