"""Kernels of column-blocked layers (see ``_blocks.py``): each block's work on one thread.

A blocked layer's weights ``Wb`` are (n_blocks, rows, width): block t holds the
neurons ``starts[t]:starts[t + 1]`` (the columns of the input-major weights).
Each kernel first loops over the blocks in parallel, a block's thread reading
and writing that block's weights only, and then, where the blocks' results must
be combined, loops over the samples. The layer's active lists are grouped
by block: sample s's neurons in block t are the run
``block_ptr[s, t]:block_ptr[s, t + 1]`` of its list.

Every block is computed the same way whichever thread runs it, and the blocks'
results are combined in block order: results do not depend on the number of
threads.
"""

import numba
from numba import njit, prange

from ._kernels import (_activate, _adam_apply, _adam_row, _bias_gradient, _column_union,
                       _derivative, _sgd_apply, _sgd_row, DOT_MATH, NO_SPANS)
from ._lsh import _group_by_block, _score_all, _top_by_score


@njit(nogil=True, parallel=True, cache=True, fastmath=DOT_MATH)
def select_exact_blocks(Wb, starts, b, in_ids, in_vals, in_cnt, in_nnz, n_active, activation,
                        out_ids, out_vals, out_cnt, block_ptr, local_ids, cost, block_scores,
                        all_ids, score_scratch, kept_scratch, pick_scratch):
    """Exact selection (``_lsh.select_active``'s SELECT_EXACT) over column blocks.

    Each block's thread scores its neurons for every sample into
    ``block_scores[t]``; then each sample's ``n_active`` best neurons go into
    ``out_ids`` grouped by block (``_lsh._group_by_block``), their activations
    into ``out_vals``, the runs of each block into ``block_ptr`` and the ids
    within their block into ``local_ids``. ``all_ids`` holds 0, 1, ..., n - 1.
    (Each block keeping its own best and the samples merging those picks ran
    1.5x slower on one thread with two blocks: two quickselects instead of one.)
    """
    n_blocks = starts.shape[0] - 1
    n_rows = in_cnt.shape[0]
    for t in prange(n_blocks):
        lo, width = starts[t], starts[t + 1] - starts[t]
        for s in range(n_rows):
            _score_all(s, Wb[t], b[lo: lo + width], width, in_ids, in_vals, in_cnt, block_scores[t, s])
    n_neurons, block_width = starts[n_blocks], starts[1] - starts[0]
    for s in prange(n_rows):
        tid = numba.get_thread_id()
        scores, kept, picked = score_scratch[tid], kept_scratch[tid], pick_scratch[tid]
        for t in range(n_blocks):
            lo = starts[t]
            for j in range(starts[t + 1] - lo):
                scores[lo + j] = block_scores[t, s, j]
        n_out = min(n_active, n_neurons)
        if n_out < n_neurons:
            _top_by_score(all_ids, scores, n_neurons, n_out, picked, kept)  # overwrites scores
        else:
            for c in range(n_out):
                picked[c] = c
        out_cnt[s] = n_out
        cost[s] = n_neurons * in_nnz[s]
        row, ptr = out_ids[s], block_ptr[s]
        _group_by_block(picked, n_out, block_width, n_neurons, row)
        c = 0
        for t in range(n_blocks):
            lo = starts[t]
            ptr[t] = c
            while c < n_out and row[c] < starts[t + 1]:
                local_ids[s, c] = row[c] - lo
                out_vals[s, c] = _activate(block_scores[t, s, row[c] - lo], activation)
                c += 1
        ptr[n_blocks] = n_out


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def backward_blocks(Wb, in_ids, in_vals, in_cnt, local_ids, block_ptr, out_delta, in_activation,
                    partial, in_delta):
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
            first, stop = block_ptr[s, t], block_ptr[s, t + 1]
            ids, delta = local_ids[s, first:stop], out_delta[s, first:stop]
            for p in range(in_cnt[s]):
                row = W[in_ids[s, p]]
                acc = row[0] * 0
                for q in range(ids.shape[0]):
                    acc += row[ids[q]] * delta[q]
                sums[s * width + p] = acc
    for s in prange(n_rows):
        for p in range(in_cnt[s]):
            acc = partial[0, s * width + p]
            for t in range(1, n_blocks):
                acc += partial[t, s * width + p]
            in_delta[s, p] = acc * _derivative(in_vals[s, p], in_activation)


@njit(cache=True, inline="always", error_model="numpy")
def _block_columns(t, starts, local_ids, out_delta, block_ptr, n_rows, n_touched, n_pairs,
                   lists, compact):
    """Block t's part of the layer's active lists, with ids local to the block, and
    its compact gradient sums prepared (``_kernels._column_union``).

    ``lists`` = (ids, deltas, counts) scratch with a leading block axis; ``compact``
    as ``_kernels.compact_scratch`` with a leading block axis on every array.
    Returns (ids, counts, deltas, n_union, the block's compact tuple).
    """
    width = starts[t + 1] - starts[t]
    ids, deltas, counts = lists[0][t], lists[1][t], lists[2][t][:n_rows]
    for s in range(n_rows):
        first, stop = block_ptr[s, t], block_ptr[s, t + 1]
        for c in range(stop - first):  # loops: slice assignments would be parallel loops
            ids[s, c] = local_ids[s, first + c]
            deltas[s, c] = out_delta[s, first + c]
        counts[s] = stop - first
    # the accumulators keep their block axis: _compact_row_gradient takes row t of them
    block_compact = (compact[0][t], compact[1][t], compact[2][t], compact[3][t], compact[4],
                     compact[5])
    n_union = _column_union(ids, counts, deltas, width, False, n_touched, n_pairs, block_compact)
    return ids, counts, deltas, n_union, block_compact


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def adam_update_blocks(
    Wb, m_Wb, v_Wb, starts, b, m_b, v_b, touched_rows, n_touched, n_pairs, row_start, row_sample,
    row_pos, row_vals, local_ids, out_delta, block_ptr, l2, step_size, beta_1, beta_2, epsilon,
    grad_scratch, mark_scratch, cols_scratch, lists, compact,
):
    """``_kernels.adam_update`` of a blocked layer: each block's thread updates the
    touched rows of its block, and its biases. ``n_pairs`` is the number of
    (row, sample) pairs in the index, ``row_start[n_inputs]``."""
    n_rows = local_ids.shape[0]
    for t in prange(starts.shape[0] - 1):
        tid = numba.get_thread_id()
        grad, mark, cols = grad_scratch[tid], mark_scratch[tid], cols_scratch[tid]
        lo, width = starts[t], starts[t + 1] - starts[t]
        ids, counts, deltas, n_union, block_compact = _block_columns(
            t, starts, local_ids, out_delta, block_ptr, n_rows, n_touched, n_pairs, lists, compact)
        for r in range(n_touched):
            i = touched_rows[r]
            _adam_row(Wb[t, i], m_Wb[t, i], v_Wb[t, i], i, width, row_start, row_sample, row_pos,
                      row_vals, ids, counts, deltas, NO_SPANS, n_union, block_compact, t, grad, mark,
                      cols, l2, step_size, beta_1, beta_2, epsilon)
        n_cols = _bias_gradient(ids, counts, deltas, grad, mark, cols)
        _adam_apply(b[lo: lo + width], m_b[lo: lo + width], v_b[lo: lo + width], grad, mark, cols,
                    n_cols, 0, width, l2 * 0, step_size, beta_1, beta_2, epsilon)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def sgd_update_blocks(
    Wb, vel_Wb, starts, b, vel_b, touched_rows, n_touched, n_pairs, row_start, row_sample,
    row_pos, row_vals, local_ids, out_delta, block_ptr, l2, learning_rate, momentum, nesterov,
    grad_scratch, mark_scratch, cols_scratch, lists, compact,
):
    """``_kernels.sgd_update`` of a blocked layer (arguments as ``adam_update_blocks``)."""
    n_rows = local_ids.shape[0]
    for t in prange(starts.shape[0] - 1):
        tid = numba.get_thread_id()
        grad, mark, cols = grad_scratch[tid], mark_scratch[tid], cols_scratch[tid]
        lo, width = starts[t], starts[t + 1] - starts[t]
        ids, counts, deltas, n_union, block_compact = _block_columns(
            t, starts, local_ids, out_delta, block_ptr, n_rows, n_touched, n_pairs, lists, compact)
        for r in range(n_touched):
            i = touched_rows[r]
            _sgd_row(Wb[t, i], vel_Wb[t, i], i, width, row_start, row_sample, row_pos, row_vals,
                     ids, counts, deltas, NO_SPANS, n_union, block_compact, t, grad, mark, cols, l2,
                     learning_rate, momentum, nesterov)
        n_cols = _bias_gradient(ids, counts, deltas, grad, mark, cols)
        _sgd_apply(b[lo: lo + width], vel_b[lo: lo + width], grad, mark, cols, n_cols, 0, width, l2 * 0,
                   learning_rate, momentum, nesterov)
