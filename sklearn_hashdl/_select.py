"""Each sample's active neurons in a layer: the ``SELECT_*`` strategies.

``select_active`` picks, per sample, the neurons a layer computes: those its
input collides with most often in the layer's LSH tables (``_lsh``), optionally
re-ranked by their exact pre-activation; every neuron ranked exactly; or random
ones. ``add_random`` pads the lists with random negatives, and
``keep_top_k_rows`` is the top-k of ``predict_mode='topk'``. The column-blocked
layers' kernels (``_block_kernels``) reuse the top-k helpers here.
"""

import numba
import numpy as np
from numba import njit, prange
from numba.extending import overload

from ._kernels import DOT_MATH, _activate
from ._lsh import _bucket, _bucket_shift
from ._random import GOLDEN, next_random, random_below
from ._work_sharing import SAMPLE_CHUNK, n_workers, next_chunk, reset_claims


# selection strategies (the ``mode`` argument of select_active)
SELECT_LSH, SELECT_LSH_RERANK, SELECT_EXACT, SELECT_RANDOM = 0, 1, 2, 3
SELECTION_MODES = {"lsh": SELECT_LSH, "lsh_rerank": SELECT_LSH_RERANK,
                   "exact": SELECT_EXACT, "random": SELECT_RANDOM}


@njit(cache=True, inline="always")
def _query_tables(s, in_ids, in_vals, in_cnt, hyperplanes, bias_row, K, L, offsets,
                  neuron_ids, n_probes, count, cand, proj):
    """Hash sample s's input [x, 1] and gather its buckets, n_probes per table.

    Besides the sample's own bucket, multi-probing reads the n_probes - 1
    neighbouring buckets whose code differs in the least certain bit (the
    projections closest to zero). Fills ``cand`` with the distinct neurons found
    and ``count`` with how many probes returned each; returns (number of
    candidates, bucket entries read).
    """
    n_planes = K * L
    for h in range(n_planes):
        proj[h] = hyperplanes[bias_row, h]
    for p in range(in_cnt[s]):
        plane_row = hyperplanes[in_ids[s, p]]
        v = in_vals[s, p]
        if v == 0:  # whole-row inputs list their zeros too
            continue
        for h in range(n_planes):
            proj[h] += v * plane_row[h]
    n_cand = 0
    retrieved = 0
    shift = _bucket_shift(K, offsets)
    for t in range(L):
        code = 0
        for bit in range(K):
            if proj[t * K + bit] > 0:
                code |= 1 << bit
        flipped = 0  # bits already used for a neighbouring probe
        for probe in range(n_probes):
            probe_code = code
            if probe > 0:
                best = -1
                for bit in range(K):
                    if (flipped >> bit) & 1 == 0:
                        if best < 0 or abs(proj[t * K + bit]) < abs(proj[t * K + best]):
                            best = bit
                if best < 0:
                    break
                flipped |= 1 << best
                probe_code = code ^ (1 << best)
            bucket = _bucket(probe_code, shift)
            start, stop = offsets[t, bucket], offsets[t, bucket + 1]
            retrieved += stop - start
            for e in range(start, stop):
                j = neuron_ids[t, e]
                cand[n_cand] = j  # branch-free "append j if new"
                n_cand += count[j] == 0
                count[j] += 1
    return n_cand, retrieved


@njit(cache=True, inline="always")
def _top_by_count(cand, n_cand, count, max_count, n_active, row, ties, hist, state):
    """Write the n_active candidates with most collisions into ``row``.

    Counts are at most max_count (tables times probes), so the cut is found
    from a histogram of the counts (``hist``, max_count + 1 zeros, left zeroed);
    ties at the cut are broken by a partial Fisher-Yates shuffle.
    """
    for c in range(n_cand):
        hist[count[cand[c]]] += 1
    threshold = max_count
    n_above = 0
    while n_above + hist[threshold] < n_active:
        n_above += hist[threshold]
        threshold -= 1
    hist[: max_count + 1] = 0
    n_out = 0
    n_ties = 0
    for c in range(n_cand):  # branch-free: which way a candidate goes is random
        j = cand[c]
        row[n_out] = j  # n_out stays below n_active, ties below n_cand
        n_out += count[j] > threshold
        ties[n_ties] = j
        n_ties += count[j] == threshold
    for c in range(n_active - n_out):
        state, r = random_below(state, n_ties - c)
        pick = c + r
        ties[c], ties[pick] = ties[pick], ties[c]
        row[n_out] = ties[c]
        n_out += 1
    return n_out, state


@njit(cache=True, inline="always")
def _score_all(s, W, b, n, in_ids, in_vals, in_cnt, scores):
    """Exact pre-activation of the first n neurons of input-major W (biases ``b``):
    a few contiguous AXPYs."""
    for j in range(n):
        scores[j] = b[j]
    ids, vals = in_ids[s], in_vals[s]
    n_in = in_cnt[s]
    p = 0
    # four input rows per pass: one load and store of the scores per four
    # multiply-adds instead of one per multiply-add (exact selection ran 1.2x faster)
    while p + 4 <= n_in:
        r0, r1, r2, r3 = W[ids[p]], W[ids[p + 1]], W[ids[p + 2]], W[ids[p + 3]]
        v0, v1, v2, v3 = vals[p], vals[p + 1], vals[p + 2], vals[p + 3]
        for j in range(n):
            scores[j] += (r0[j] * v0 + r1[j] * v1) + (r2[j] * v2 + r3[j] * v3)
        p += 4
    for p in range(p, n_in):
        row = W[ids[p]]
        v = vals[p]
        for j in range(n):
            scores[j] += row[j] * v


@njit(cache=True, inline="always")
def _score_candidates(s, W, b, in_ids, in_vals, in_cnt, cand, n_cand, scores):
    """Exact pre-activation of the listed candidates: gathers from the input rows."""
    for c in range(n_cand):
        scores[c] = b[cand[c]]
    for p in range(in_cnt[s]):
        row = W[in_ids[s, p]]
        v = in_vals[s, p]
        for c in range(n_cand):
            scores[c] += row[cand[c]] * v


@njit(cache=True, inline="always")
def _score_by_neuron(s, Wt, b, in_ids, in_vals, in_cnt, cand, n_cand, scores):
    """Exact pre-activation of the listed candidates for neuron-major ``Wt`` (n_out, n_in)."""
    dense_input = in_cnt[s] == Wt.shape[1]  # ids 0..n_in-1: contiguous dots
    for c in range(n_cand):
        row = Wt[cand[c]]
        acc = b[cand[c]]
        if dense_input:
            for p in range(in_cnt[s]):
                acc += row[p] * in_vals[s, p]
        else:
            for p in range(in_cnt[s]):
                acc += row[in_ids[s, p]] * in_vals[s, p]
        scores[c] = acc


@njit(cache=True, inline="always")
def _groups_in_block(n_active, width, n):
    """Groups of the cut (``_cut_bound``) in a block of ``width`` of the layer's n
    neurons: its share of n_active, rounded up, so that the blocks' groups add up
    to at least n_active."""
    return (n_active * width + n - 1) // n


@njit(cache=True, inline="always")
def _cut_bound(scores, n, n_groups):
    """The least of the maxima of ``n_groups`` equal runs of ``scores[:n]``: each run
    has its own maximum, so at least n_groups of the scores reach it. -inf (keep
    everything) when runs would be shorter than 4 scores, inf when n is 0."""
    if n == 0:
        return np.inf
    if n < 4 * n_groups:
        return -np.inf
    group = n // n_groups
    bound = np.inf
    for g in range(n_groups):
        top = scores[g * group]
        for c in range(g * group + 1, (g + 1) * group):
            top = max(top, scores[c])
        bound = min(bound, top)
    return bound


@njit(cache=True, inline="always")
def _layer_bound(scores, n, n_active, block_width):
    """The cut for the n_active largest of ``scores[:n]``: the least of its groups'
    maxima, whose at least n_active groups are made within each column block of
    ``block_width`` (the whole layer for 0). Column-blocked selection finds the
    same bound block by block (``_block_kernels.select_exact_blocks``)."""
    if block_width <= 0:
        return _cut_bound(scores, n, n_active)
    bound = np.inf
    for lo in range(0, n, block_width):
        width = min(block_width, n - lo)
        bound = min(bound, _cut_bound(scores[lo:], width, _groups_in_block(n_active, width, n)))
    return bound


@njit(cache=True, inline="always")
def _keep_at_least(ids, scores, n, bound, kept_ids, kept_scores):
    """Copy the scores of ``scores[:n]`` that reach ``bound``, and their ``ids``, in
    order to the front of ``kept_scores`` and ``kept_ids`` (which may be ``scores``
    itself); returns how many."""
    n_kept = 0
    for c in range(n):
        z = scores[c]
        kept_ids[n_kept] = ids[c]
        kept_scores[n_kept] = z
        n_kept += z >= bound  # branch-free
    return n_kept


def _int_view(values):
    """float32 or float64 ``values`` viewed as int32 or int64 (numba only: see below)."""
    raise NotImplementedError


@overload(_int_view)
def _int_view_numba(values):
    int_type = np.int32 if values.dtype.bitwidth == 32 else np.int64
    return lambda values: values.view(int_type)


def _sortable(bits):
    """The bits of a float as an integer of their width that orders as the floats
    do, -0 as +0 (numba only: see below)."""
    raise NotImplementedError


@overload(_sortable)
def _sortable_numba(bits):
    lowest = np.int32(-2**31) if bits.bitwidth == 32 else np.int64(-2**63)

    def sortable(bits):
        if bits >= 0:
            return bits
        return lowest - bits  # negative floats: the larger the bits, the lower
    return sortable


@njit(cache=True, inline="always")
def _count_from(bits, n, key):
    """How many of the n floats whose bits are ``bits`` have a sortable key of at least ``key``."""
    count = 0
    for c in range(n):
        count += _sortable(bits[c]) >= key
    return count


@njit(cache=True, inline="always")
def _order_top(scores, ids, n, n_active):
    """Move the n_active largest of ``scores[:n]`` (no NaN), and ``ids`` alongside,
    to the front, keeping their order; of equal scores at the cut, the first.

    The n_active-th largest is found by bisecting the scores' bit patterns: each
    step counts the scores at or above a key in one vectorised pass, about 15
    steps. A quickselect's comparisons branch unpredictably on fresh scores
    every sample: 1.32 us a sample for 32 of 100, 3.64 for 50 of 1000 with the
    cut before it, against 0.50 and 1.95 (one-off micro-benchmark, 5000 rows
    of random scores; replaying a few rows lets the branch predictor learn
    them, and flattered the quickselect 3x).
    """
    if n_active >= n:
        return
    bits = _int_view(scores[:n])
    lo = hi = _sortable(bits[0])
    for c in range(1, n):
        key = _sortable(bits[c])
        lo, hi = min(lo, key), max(hi, key)
    # the largest key with at least n_active scores at or above it lies in [lo, hi]
    while lo < hi:
        mid = (lo >> 1) + (hi >> 1) + ((lo | hi) & 1)  # (lo + hi) / 2 rounded up, no overflow
        count = _count_from(bits, n, mid)
        if count >= n_active:
            lo = mid
            if count == n_active:
                break
        else:
            hi = mid - 1
    ties = n_active - _count_from(bits, n, lo + 1)  # equal to the cut, to take
    m = 0
    for c in range(n):  # in place: m <= c, so nothing is overwritten before it is read
        key = _sortable(bits[c])
        take = (key > lo) | ((key == lo) & (ties > 0))
        ties -= (key == lo) & take
        ids[m], scores[m] = ids[c], scores[c]
        m += take


@njit(cache=True, inline="always")
def _top_by_score(ids, scores, n, n_active, row, kept_ids, block_width):
    """Write the ids of the n_active largest ``scores[:n]`` into ``row``.

    First a cut (``_layer_bound``, groups within column blocks of
    ``block_width``, 0 for none): only the scores that reach the least of the
    groups' maxima (about a sixth, for 50 of 1000) are kept, compacted into
    ``kept_ids`` and the front of ``scores`` (which is overwritten). Then
    ``_order_top`` moves the best of those to the front, in the order of ``ids``.
    """
    bound = _layer_bound(scores, n, n_active, block_width)
    n_kept = _keep_at_least(ids, scores, n, bound, kept_ids, scores)
    if n_kept < n_active:  # only with NaN scores
        for c in range(n_active):
            row[c] = ids[c]
        return n_active
    _order_top(scores, kept_ids, n_kept, n_active)
    for c in range(n_active):
        row[c] = kept_ids[c]
    return n_active


@njit(cache=True, inline="always")
def _group_by_block(picked, n_out, block_width, n_neurons, row, order):
    """Write the neurons ``picked[:n_out]`` into ``row`` grouped by column block
    (blocks of ``block_width`` neurons, see ``_blocks.py``), and each one's
    position in ``picked`` into ``order``: in block order, and within a block
    in picked order, except that a block picked whole goes ascending, as the
    update's whole-row gradient sums expect. Both layouts of a blocked layer
    order their lists so, and so add the same terms in the same order.
    """
    n = 0
    for lo in range(0, n_neurons, block_width):
        first = n
        hi = min(lo + block_width, n_neurons)
        for c in range(n_out):
            if lo <= picked[c] < hi:
                order[n] = c
                n += 1
        if n - first == hi - lo:  # whole: each of its neurons in its place
            for c in range(n_out):
                if lo <= picked[c] < hi:
                    order[first + picked[c] - lo] = c
    for c in range(n):
        row[c] = picked[order[c]]


@njit(nogil=True, cache=True)
def keep_top_k_rows(A, k):
    """Zero all but the k largest entries of each row of A (C-contiguous, in place).

    Prediction's top-k: the selection's cut and ``_order_top`` instead of NumPy's
    argpartition, which took longer than the layer's BLAS product (see
    docs/performance.md, Prediction). On one thread: between two BLAS products,
    a parallel region was no faster, and its idling threads slowed the next
    product by half.
    """
    n_rows, n = A.shape
    if k >= n:
        return
    ids = np.arange(n).astype(np.int32)
    scores = np.empty(n, A.dtype)
    kept = np.empty(n, np.int32)
    top = np.empty(k, np.int32)
    for r in range(n_rows):
        row = A[r]
        has_nan = False
        for j in range(n):  # copied and checked in one pass, allocating nothing per row
            scores[j] = row[j]
            has_nan |= row[j] != row[j]
        if has_nan:
            continue  # left whole, so that NaN reaches the output (argpartition kept it)
        _top_by_score(ids, scores, n, k, top, kept, 0)
        for c in range(k):  # the kept values, before the row is zeroed
            scores[c] = row[top[c]]
        row[:] = 0
        for c in range(k):
            row[top[c]] = scores[c]


@njit(nogil=True, parallel=True, cache=True, fastmath=DOT_MATH)
def select_active(
    mode, in_ids, in_vals, in_cnt, in_nnz, W, neuron_major, b, hyperplanes, bias_row, K, L,
    offsets,
    neuron_ids, n_active, rerank_pool, n_probes, seed, row_keys, out_ids, out_cnt, cost,
    write_values, block_width, activation, out_vals, count_scratch, cand_scratch,
    tie_scratch, hist_scratch, proj_scratch, pool_scratch, score_scratch,
    cand_score_scratch, claims,
):
    """Choose ``n_active`` neurons of layer (W, b) for every sample of the batch.

    Modes: SELECT_LSH ranks the neurons retrieved from the tables by how many
    tables returned them; SELECT_LSH_RERANK ranks (at most ``rerank_pool`` of)
    them by their exact pre-activation; SELECT_EXACT ranks every neuron exactly
    (the reference any selector is measured against); SELECT_RANDOM picks at
    random. A list shorter than n_active is padded with random neurons.
    ``cost[s]`` receives the multiply-adds and table reads spent on sample s,
    counting ``in_nnz[s]`` inputs (the non-zeros of a whole dense row).
    Randomness depends only on ``seed`` and ``row_keys[s]`` (the sample's
    position in training, a hash of its content in prediction), never on threads.
    With ``write_values`` (SELECT_EXACT on input-major ``W`` only, where every
    neuron is scored), ``out_vals[s]`` also receives the chosen neurons'
    activations (``activation`` code): their scores are their pre-activations.
    ``W`` is input-major (n_in, n_out), or (n_out, n_in) when ``neuron_major``.
    A ``block_width`` above 0 groups each list by column block (``_group_by_block``).
    The samples are shared among the workers of ``claims`` (``_work_sharing``).
    """
    n_neurons = W.shape[0] if neuron_major else W.shape[1]
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        count, cand = count_scratch[worker], cand_scratch[worker]
        first, stop, share = next_chunk(claims, worker, in_cnt.shape[0], SAMPLE_CHUNK, 0)
        while first < stop:
            for s in range(first, stop):
                row = out_ids[s]
                state = np.uint64(seed) ^ (row_keys[s] * GOLDEN)
                state, _ = next_random(state)
                n_cand = 0
                work = 0
                if mode == SELECT_EXACT:
                    for j in range(n_neurons):
                        cand[j] = j
                    n_cand = n_neurons
                elif mode != SELECT_RANDOM:
                    n_cand, retrieved = _query_tables(
                        s, in_ids, in_vals, in_cnt, hyperplanes, bias_row, K, L, offsets,
                        neuron_ids, n_probes, count, cand, proj_scratch[worker],
                    )
                    work += retrieved + in_nnz[s] * K * L
                if n_cand <= n_active:
                    for c in range(n_cand):
                        row[c] = cand[c]
                    n_out = n_cand
                elif mode == SELECT_LSH:
                    n_out, state = _top_by_count(
                        cand, n_cand, count, L * n_probes, n_active, row, tie_scratch[worker],
                        hist_scratch[worker], state
                    )
                else:
                    if mode == SELECT_LSH_RERANK and n_cand > rerank_pool:
                        # score only the rerank_pool candidates with most collisions
                        pool = pool_scratch[worker]
                        n_pool, state = _top_by_count(
                            cand, n_cand, count, L * n_probes, rerank_pool, pool, tie_scratch[worker],
                            hist_scratch[worker], state
                        )
                        for c in range(n_cand):
                            count[cand[c]] = 0
                        for c in range(n_pool):
                            cand[c] = pool[c]
                            count[pool[c]] = 1
                        n_cand = n_pool
                    scores = cand_score_scratch[worker]
                    if neuron_major:
                        _score_by_neuron(s, W, b, in_ids, in_vals, in_cnt, cand, n_cand, scores)
                        work += n_cand * in_nnz[s]
                    elif 4 * n_cand >= n_neurons:
                        # many candidates: scoring all neurons with AXPYs is cheaper than gathers
                        all_scores = score_scratch[worker]
                        _score_all(s, W, b, n_neurons, in_ids, in_vals, in_cnt, all_scores)
                        for c in range(n_cand):
                            scores[c] = all_scores[cand[c]]
                        work += n_neurons * in_nnz[s]
                    else:
                        _score_candidates(s, W, b, in_ids, in_vals, in_cnt, cand, n_cand, scores)
                        work += n_cand * in_nnz[s]
                    if block_width > 0:
                        # exact: the cut's groups within blocks, as _block_kernels.select_exact_blocks' are
                        cut_blocks = block_width if mode == SELECT_EXACT else 0
                        n_out = _top_by_score(cand, scores, n_cand, n_active, pool_scratch[worker],
                                              tie_scratch[worker], cut_blocks)
                        _group_by_block(pool_scratch[worker], n_out, block_width, n_neurons, row,
                                        tie_scratch[worker])
                    else:
                        n_out = _top_by_score(cand, scores, n_cand, n_active, row, tie_scratch[worker], 0)
                    if write_values:  # all_scores holds every neuron's pre-activation
                        for c in range(n_out):
                            out_vals[s, c] = _activate(score_scratch[worker][row[c]], activation)
                if mode != SELECT_EXACT:
                    for c in range(n_cand):
                        count[cand[c]] = 0
                if n_out < n_active:
                    n_out = _pad_with_random(row, n_out, n_active, n_neurons, count, state)
                out_cnt[s] = n_out
                cost[s] = work
            first, stop, share = next_chunk(claims, worker, in_cnt.shape[0], SAMPLE_CHUNK, share)


@njit(nogil=True, parallel=True, cache=True)
def add_random(out_ids, out_cnt, n_total, n_neurons, seed, row_keys, mark_scratch):
    """Extend every sample's active list with distinct random neurons to n_total.

    Used by a hashed output layer: uniform negatives keep pushing down the
    outputs that the selection rarely returns, whose logits would otherwise
    only ever rise (each class is the true label of some samples).
    """
    for s in prange(out_cnt.shape[0]):
        state = np.uint64(seed) ^ (row_keys[s] * GOLDEN)
        state, _ = next_random(state)
        out_cnt[s] = _pad_with_random(out_ids[s], out_cnt[s], n_total, n_neurons,
                                      mark_scratch[numba.get_thread_id()], state)


@njit(nogil=True, cache=True)
def _pad_with_random(row, n_out, n_active, n_neurons, mark, state):
    """Append random neurons not yet in ``row[:n_out]`` until it holds n_active."""
    for c in range(n_out):
        mark[row[c]] = 1
    tries = 0
    while n_out < n_active and tries < 4 * n_active:
        state, j = random_below(state, n_neurons)
        tries += 1
        if mark[j] == 0:
            mark[j] = 1
            row[n_out] = j
            n_out += 1
    if n_out < n_active:
        # dense request: walk from a random start instead of rejection sampling
        state, start = random_below(state, n_neurons)
        for step in range(n_neurons):
            j = (start + step) % n_neurons
            if mark[j] == 0:
                mark[j] = 1
                row[n_out] = j
                n_out += 1
                if n_out == n_active:
                    break
    for c in range(n_out):
        mark[row[c]] = 0
    return n_out
