"""Numba kernels for sparse training over flat arrays.

Every layer's input and output for a batch is held as three arrays per "level":
``ids`` (n_samples, width) int32, ``vals`` (n_samples, width) float32 and
``cnt`` (n_samples,) int32: sample ``s`` has ``cnt[s]`` active units whose indices
are ``ids[s, :cnt[s]]`` and whose values are ``vals[s, :cnt[s]]``. Level 0 is the
network input (the non-zeros of each row, or whole dense rows for a neuron-major
first layer), level ``l`` the output of layer ``l``.
By default weights are input-major, as scikit-learn's ``coefs_``: ``W[i]`` (length n_out) is
the contiguous row of weights leaving input i, so a sparse input is a sum of a
few contiguous rows, and scoring every neuron of a layer is a few AXPYs. The
``*_by_neuron`` kernels and ``forward_layer_grouped`` take neuron-major weights
``Wt`` (n_out, n_in) instead, for layers where few of many neurons are active; the
``*_dense_grouped`` kernels take input-major ``W`` and visit it input by input.

Parallel loops write only to what their iteration owns (a sample's row in the
forward and backward passes, a neuron, an input row or a range of input ids in the
grouped passes, a weight row in the update), so results do not depend on the number
of threads. Per-thread scratch is indexed by ``numba.get_thread_id()``, or by the
worker's number in the kernels that share their items among workers
(``_work_sharing``: the update kernels, ``_select.select_active``; the by-sample
backward pass and the grouped forward pass share theirs too, with no scratch); all
of it but the ``cols`` lists and the softmax's exponentials (written before they
are read) is left zeroed. Kernels called from Python release the GIL
(``nogil``), so that asynchronous training can run them from several threads.
"""

import numba
import numpy as np
from numba import njit, prange

from ._work_sharing import ROW_CHUNK, SAMPLE_CHUNK, n_workers, next_chunk, reset_claims

ACTIVATION_CODES = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3}

# Lets LLVM reorder the sums of dot products so that it can vectorise them
# (several partial sums in SIMD lanes). Results change in the last bits only,
# and not with the number of threads.
DOT_MATH = {"reassoc", "contract"}
# The update sweeps a whole weight row, vectorised, once more than 1 in
# DENSE_ROW_FRACTION of its entries are touched, rather than visiting the
# touched entries one by one: scattered visits defeat the prefetcher and cost
# about 17 times a swept entry (MNIST, three hidden layers of 1000 at 0.05:
# the update ran 1.3-1.4x faster at 16 than at 4).
DENSE_ROW_FRACTION = 16
# The update sums a row's gradient over dense copies of the batch's column
# lists, compacted to the columns that occur in the batch, when there are at
# most COMPACT_MAX_COLUMNS of those and that is cheaper (see _column_union).
COMPACT_UNION_FACTOR = 16
COMPACT_MAX_COLUMNS = 2048
# With compact sums, the optimizer step visits the batch's columns alone, in
# ascending order, when they are at most 1 in UNION_STEP_FRACTION of the row:
# ascending visits cost about 2.4 times a swept entry (the 17 times above is
# for the order in which the sample-by-sample sums list the columns). MNIST,
# three hidden layers of 1000 at 0.05: a batch names about 200 columns.
UNION_STEP_FRACTION = 3
# The logistic loss takes the logarithm of products of this many probabilities,
# not of each (a logarithm cost about three times the rest of the kernel: 200
# rows of 983 labels, 4.51 -> 1.46 ms on one thread). Each factor is at least
# float32's eps, 2**-23, so their product stays above 2**-736, far from
# float64's smallest normal number (2**-1022). Its 32 roundings put about 4e-15
# into the logarithm: a sample's loss is off by about 1e-16 per output, which
# for a confident model (every output near its target) is up to 1e-10 of it.
LOG_PRODUCT_TERMS = 32
# Whole dense input rows (a neuron-major first layer's input) come with the
# span of each row's non-zeros, [first, last + 1): the update skips the zeros
# outside it, which on MNIST's images are a third of the row. (The forward
# pass does not: its vectorised dot products would then group a row's terms
# by where the span of the other sample of its pair starts, and a row's
# activations would depend on the rows batched with it.)
# NO_SPANS stands for "no spans": the lists are not whole rows.
NO_SPANS = np.zeros((0, 2), np.int32)
# The kernels whose loops divide are compiled with error_model="numpy": with numba's default
# ("python"), each float division checks for a zero divisor so as to raise
# ZeroDivisionError, and that early exit keeps LLVM from vectorising the loop
# (the Adam step ran 7x slower). No kernel divides by zero.


@njit(cache=True, inline="always", error_model="numpy")
def _activate(z, code):
    if code == 3:
        return z if z > 0 else z * 0
    if code == 2:
        return np.tanh(z)
    if code == 1:
        return 1 / (1 + np.exp(-z))
    return z


@njit(cache=True, inline="always", error_model="numpy")
def _derivative(a, code):
    # derivative of the activation written in terms of its output, as sklearn does
    if code == 3:
        return a * 0 + 1 if a > 0 else a * 0
    if code == 2:
        return 1 - a * a
    if code == 1:
        return a * (1 - a)
    return a * 0 + 1


@njit(nogil=True, cache=True, fastmath=DOT_MATH)
def sum_of_squares(values):
    """Sum of squares of a flat array, accumulated in float64: the weights of a
    diverging fit can square past float32's range (and a float64 copy for
    NumPy's dot would cost as much memory as the weights)."""
    total = 0.0
    for v in values:
        total += np.float64(v) * np.float64(v)
    return total


@njit(nogil=True, cache=True)
def batch_counts(cnt, nnz0, select_cost, n_rows, passes, selecting, pairs, active, selected):
    """A batch's counts per layer i, over its first n_rows samples: the (active
    input, active neuron) pairs, sum of cnt[i + 1, s] times the inputs (nnz0[s]
    for layer 0, else cnt[i, s]); the active neurons, sum of cnt[i + 1, s]; and
    the selection's multiply-adds, sum of select_cost[i, s]. Returns the
    batch's multiply-adds: ``passes[i]`` over layer i's pairs, plus the
    selection's where ``selecting[i]`` (see ``_layer_roles.flop_passes``). (One call
    in place of a dozen NumPy reductions, which cost more than the kernels of a
    small batch.)"""
    total = 0
    for i in range(pairs.shape[0]):
        n_pairs, n_active, cost = 0, 0, 0
        for s in range(n_rows):
            n_inputs = nnz0[s] if i == 0 else cnt[i, s]
            n_pairs += np.int64(cnt[i + 1, s]) * n_inputs
            n_active += cnt[i + 1, s]
            cost += select_cost[i, s]
        pairs[i], active[i], selected[i] = n_pairs, n_active, cost
        total += passes[i] * n_pairs + (cost if selecting[i] else 0)
    return total


@njit(nogil=True, cache=True)
def fingerprint(words):
    """A 64-bit sum of the words, each times its own odd pseudo-random number
    (the cached prediction network's check for fitted arrays edited in place).
    Any one changed word changes it. With multipliers 2i + 1, scaling a whole
    1024 x 1024 layer by 4 did not (each word grows by 2**24, and the
    multipliers summed to 2**40); pseudo-random ones make such sums vanish
    about once in 2**40."""
    total = np.uint64(0)
    for i in range(words.shape[0]):
        z = np.uint64(i) * np.uint64(0x9E3779B97F4A7C15)  # splitmix64's finaliser
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        total += np.uint64(words[i]) * ((z ^ (z >> np.uint64(31))) | np.uint64(1))
    return total


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def dense_rows_to_lists(X, rows, ids, vals, cnt):
    """Copy the non-zeros of ``X[rows]`` (dense) into level-0 lists."""
    for s in prange(rows.shape[0]):
        r = rows[s]
        m = 0
        for i in range(X.shape[1]):
            v = X[r, i]
            if v != 0:
                ids[s, m] = i
                vals[s, m] = v
                m += 1
        cnt[s] = m


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def dense_rows_to_full_lists(X, rows, ids, vals, cnt, nnz, nz_ids, nz_vals, spans):
    """Copy the whole rows ``X[rows]`` (zeros included) into level-0 lists, and
    their non-zeros alone into ``nz_ids``, ``nz_vals``; ``nnz[s]`` receives the
    row's number of non-zeros and ``spans[s]`` = (first, last + 1) of their
    columns; (n_columns, 0) for a row of zeros, so that the union of spans by
    min and max skips it.

    For a neuron-major first layer: each active neuron then takes one
    contiguous, vectorised dot product with the row instead of gathering its
    non-zeros, and its update sweeps its whole weight row. Hashing the row
    reads its non-zeros only.
    """
    n = X.shape[1]
    for s in prange(rows.shape[0]):
        r = rows[s]
        m = 0
        for i in range(n):
            v = X[r, i]
            ids[s, i] = i
            vals[s, i] = v
            nz_ids[s, m] = i  # branch-free "append if non-zero"
            nz_vals[s, m] = v
            m += v != 0
        cnt[s] = n
        nnz[s] = m
        spans[s, 0] = nz_ids[s, 0] if m > 0 else n
        spans[s, 1] = nz_ids[s, m - 1] + 1 if m > 0 else 0


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def transpose_into(A, out):
    """out[j, i] = A[i, j], by 64 x 64 tiles so that reads and writes both stay in cache."""
    n, m = A.shape
    for tile_i in prange((n + 63) // 64):
        for tile_j in range((m + 63) // 64):
            for i in range(tile_i * 64, min(n, tile_i * 64 + 64)):
                for j in range(tile_j * 64, min(m, tile_j * 64 + 64)):
                    out[j, i] = A[i, j]


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def csr_rows_to_lists(data, indices, indptr, rows, ids, vals, cnt):
    """Copy the non-zeros of CSR rows ``rows`` into level-0 lists."""
    for s in prange(rows.shape[0]):
        r = rows[s]
        m = 0
        for e in range(indptr[r], indptr[r + 1]):
            v = data[e]
            if v != 0:
                ids[s, m] = indices[e]
                vals[s, m] = v
                m += 1
        cnt[s] = m


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def forward_layer(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt, all_active, activation, out_vals):
    """out_vals[s, q] = act(x_s . W[:, j] + b[j]) for each active neuron j = out_ids[s, q].

    A layer whose every neuron is active (``all_active``: out_ids = 0..n-1) takes
    the contiguous, vectorisable path.
    """
    for s in prange(in_cnt.shape[0]):
        k = out_cnt[s]
        z = out_vals[s]
        ids = out_ids[s]
        for q in range(k):
            z[q] = b[ids[q]]
        for p in range(in_cnt[s]):
            row = W[in_ids[s, p]]
            v = in_vals[s, p]
            if all_active:
                for q in range(k):
                    z[q] += row[q] * v
            else:
                for q in range(k):
                    z[q] += row[ids[q]] * v
        for q in range(k):
            z[q] = _activate(z[q], activation)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def add_true_labels(out_ids, out_cnt, rows, label_ptr, label_ids, mark_scratch):
    """Append each sample's true labels to its active output neurons if missing.

    A hashed output layer must always train its true labels: they carry the
    positive gradient. The lists have room for the most labels any row has.
    """
    for s in prange(out_cnt.shape[0]):
        mark = mark_scratch[numba.get_thread_id()]
        ids = out_ids[s]
        n = out_cnt[s]
        for q in range(n):
            mark[ids[q]] = 1
        r = rows[s]
        for e in range(label_ptr[r], label_ptr[r + 1]):
            j = label_ids[e]
            if mark[j] == 0:
                mark[j] = 1
                ids[n] = j
                n += 1
        for q in range(n):
            mark[ids[q]] = 0
        out_cnt[s] = n


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def output_loss_and_delta(out_ids, logits, out_cnt, rows, label_ptr, label_ids, label_vals,
                          sample_weight, weight_sum, softmax, target_scratch, exp_scratch, delta,
                          loss):
    """Turn the active output logits into probabilities, log loss and deltas.

    Sample s's targets are ``label_vals`` at ``label_ids`` over the CSR row
    ``rows[s]`` of the label matrix (0 elsewhere). The softmax, or the per-output
    logistic, covers the active outputs only (all of them for a dense output
    layer): with a hashed output layer it is a sampled softmax over the true
    labels, the hard negatives the selection found and random ones.
    ``delta = (p - y) * w_s / sum(w)`` so that the weight gradients are those
    of the weighted mean loss, as in sklearn's MLP. ``loss[s]`` is sample s's
    unweighted log loss (summed over the active outputs), in float64. Returns
    the sum of the samples' losses times their weights, added in sample order
    (the same on any number of threads). ``target_scratch`` (by label id) and
    ``exp_scratch`` (float64, by position) are per-thread scratch rows.
    """
    eps = np.finfo(np.float32).eps
    for s in prange(out_cnt.shape[0]):
        tid = numba.get_thread_id()
        y_of, exps = target_scratch[tid], exp_scratch[tid]
        r = rows[s]
        for e in range(label_ptr[r], label_ptr[r + 1]):
            y_of[label_ids[e]] = label_vals[e]
        ids = out_ids[s]
        z = logits[s]
        k = out_cnt[s]
        scale = sample_weight[s] / weight_sum
        total = 0.0
        if softmax:
            top = z[0]
            for q in range(1, k):
                top = max(top, z[q])
            norm = 0.0
            for q in range(k):
                exps[q] = np.exp(np.float64(z[q] - top))  # kept: the second exp cost a third
                norm += exps[q]
            for q in range(k):
                p = exps[q] / norm
                y = y_of[ids[q]]
                if y != 0:
                    total -= y * np.log(min(max(p, eps), 1 - eps))
                delta[s, q] = (p - y) * scale
        else:
            # a 0 or 1 target's term is -log(pc) or -log(1 - pc): one logarithm per
            # LOG_PRODUCT_TERMS of them, of their product
            product, n_factors = 1.0, 0
            for q in range(k):
                p = 1.0 / (1.0 + np.exp(-np.float64(z[q])))
                y = y_of[ids[q]]
                pc = min(max(p, eps), 1 - eps)
                if y == 0 or y == 1:
                    product *= pc if y == 1 else 1 - pc
                    n_factors += 1
                    if n_factors == LOG_PRODUCT_TERMS:
                        total -= np.log(product)
                        product, n_factors = 1.0, 0
                else:
                    total -= y * np.log(pc) + (1 - y) * np.log(1 - pc)
                delta[s, q] = (p - y) * scale
            total -= np.log(product)
        loss[s] = total
        for e in range(label_ptr[r], label_ptr[r + 1]):
            y_of[label_ids[e]] = 0
    weighted = 0.0
    for s in range(out_cnt.shape[0]):
        weighted += loss[s] * sample_weight[s]
    return weighted


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def backward_layer(W, in_ids, in_vals, in_cnt, out_ids, out_cnt, all_active, block_width,
                   out_delta, in_activation, in_delta, claims):
    """Deltas of the layer's active inputs from the deltas of its active neurons.

    Training sends a layer whose neurons are all active to ``backward_all_active``;
    the ``all_active`` case here, summed in order, is the reference that
    ``backward_dense_grouped`` is tested against. With ``block_width`` above 0
    (a layer split into column blocks, whose active lists are grouped by block),
    each block's terms are summed apart and the sums added in block order, as
    ``_block_kernels.backward_blocks`` adds them.
    The samples are shared among the workers of ``claims`` (``_work_sharing``).
    """
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, in_cnt.shape[0], SAMPLE_CHUNK, 0)
        while first < stop:
            for s in range(first, stop):
                k = out_cnt[s]
                ids = out_ids[s]
                delta = out_delta[s]
                for p in range(in_cnt[s]):
                    row = W[in_ids[s, p]]
                    acc = row[0] * 0
                    if all_active:
                        for q in range(k):
                            acc += row[q] * delta[q]
                    elif block_width > 0:
                        block_sum = row[0] * 0
                        block_end = block_width * (ids[0] // block_width + 1) if k > 0 else 0
                        for q in range(k):
                            j = ids[q]
                            if j >= block_end:  # the next block's run
                                acc += block_sum
                                block_sum = row[0] * 0
                                block_end = block_width * (j // block_width + 1)
                            block_sum += row[j] * delta[q]
                        acc += block_sum
                    else:
                        for q in range(k):
                            acc += row[ids[q]] * delta[q]
                    in_delta[s, p] = acc * _derivative(in_vals[s, p], in_activation)
            first, stop, share = next_chunk(claims, worker, in_cnt.shape[0], SAMPLE_CHUNK, share)


@njit(nogil=True, parallel=True, cache=True, fastmath=DOT_MATH, error_model="numpy")
def backward_all_active(W, in_ids, in_vals, in_cnt, out_delta, in_activation, in_delta, claims):
    """backward_layer of an input-major layer whose neurons are all active (a dense
    output layer): one contiguous dot product per active input, vectorised. The
    sums are reassociated, so they differ from backward_layer's in the last bits;
    a dense output layer of 983 labels took 1.4 s of a 4.9 s fit without it
    (Delicious, benchmarks/study_hidden_sparsity.py)."""
    n_out = W.shape[1]
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, in_cnt.shape[0], SAMPLE_CHUNK, 0)
        while first < stop:
            for s in range(first, stop):
                delta = out_delta[s]
                for p in range(in_cnt[s]):
                    row = W[in_ids[s, p]]
                    acc = row[0] * 0
                    for q in range(n_out):
                        acc += row[q] * delta[q]
                    in_delta[s, p] = acc * _derivative(in_vals[s, p], in_activation)
            first, stop, share = next_chunk(claims, worker, in_cnt.shape[0], SAMPLE_CHUNK, share)


@njit(nogil=True, parallel=True, cache=True, fastmath=DOT_MATH, error_model="numpy")
def forward_layer_by_neuron(Wt, b, in_ids, in_vals, in_cnt, out_ids, out_cnt, activation, out_vals):
    """forward_layer for neuron-major weights ``Wt`` (n_out, n_in): one short dot
    product per active neuron over its contiguous row, instead of one scattered
    read per (input, neuron) pair. Used where no workspace has grouped the
    batch by neuron (``_diagnostics.selection_recall``); training calls
    forward_layer_grouped."""
    n_in = Wt.shape[1]
    for s in prange(in_cnt.shape[0]):
        ids = out_ids[s]
        x_ids, x_vals = in_ids[s], in_vals[s]
        for q in range(out_cnt[s]):
            row = Wt[ids[q]]
            acc = b[ids[q]]
            if in_cnt[s] == n_in:  # every input active: ids are 0..n_in-1, a contiguous dot
                for p in range(n_in):
                    acc += row[p] * x_vals[p]
            else:
                for p in range(in_cnt[s]):
                    acc += row[x_ids[p]] * x_vals[p]
            out_vals[s, q] = _activate(acc, activation)


@njit(nogil=True, parallel=True, cache=True, fastmath=DOT_MATH, error_model="numpy")
def forward_layer_grouped(Wt, b, in_ids, in_vals, in_cnt, touched, n_touched, row_start,
                          row_sample, row_pos, activation, out_vals, claims):
    """forward_layer_by_neuron over the whole batch at once, neuron by neuron.

    ``touched``, ``row_start``, ``row_sample`` and ``row_pos`` group the batch's
    active (sample, position) pairs by neuron (``invert_lists`` of the output
    lists), so each active neuron's row is read from memory once per batch and
    reused, from cache, for every sample that activated it. Each (sample,
    position) belongs to one neuron: threads never write the same output.
    Whole input rows go two samples per pass over the weight row, which loads
    each weight once for both (1.3x faster in cache, the same sums). The
    neurons are shared among the workers of ``claims`` (``_work_sharing``).
    """
    n_in = Wt.shape[1]
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, n_touched, ROW_CHUNK, 0)
        while first < stop:
            for r in range(first, stop):
                j = touched[r]
                row = Wt[j]
                e, pairs_end = row_start[j], row_start[j + 1]
                while (e + 2 <= pairs_end and in_cnt[row_sample[e]] == n_in
                       and in_cnt[row_sample[e + 1]] == n_in):
                    s0, s1 = row_sample[e], row_sample[e + 1]
                    x0, x1 = in_vals[s0], in_vals[s1]
                    acc0, acc1 = b[j], b[j]
                    for p in range(n_in):
                        acc0 += row[p] * x0[p]
                        acc1 += row[p] * x1[p]
                    out_vals[s0, row_pos[e]] = _activate(acc0, activation)
                    out_vals[s1, row_pos[e + 1]] = _activate(acc1, activation)
                    e += 2
                for e in range(e, pairs_end):
                    s = row_sample[e]
                    x_ids, x_vals = in_ids[s], in_vals[s]
                    acc = b[j]
                    if in_cnt[s] == n_in:  # every input active: a contiguous dot
                        for p in range(n_in):
                            acc += row[p] * x_vals[p]
                    else:
                        for p in range(in_cnt[s]):
                            acc += row[x_ids[p]] * x_vals[p]
                    out_vals[s, row_pos[e]] = _activate(acc, activation)
            first, stop, share = next_chunk(claims, worker, n_touched, ROW_CHUNK, share)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def backward_layer_by_neuron(Wt, in_ids, in_vals, in_cnt, out_ids, out_cnt, out_delta,
                             in_activation, in_delta):
    """backward_layer for neuron-major weights ``Wt`` (n_out, n_in)."""
    for s in prange(in_cnt.shape[0]):
        acc = in_delta[s]
        x_ids = in_ids[s]
        for p in range(in_cnt[s]):
            acc[p] = 0
        for q in range(out_cnt[s]):
            row = Wt[out_ids[s, q]]
            d = out_delta[s, q]
            if in_cnt[s] == Wt.shape[1]:  # every input active: contiguous
                for p in range(in_cnt[s]):
                    acc[p] += row[p] * d
            else:
                for p in range(in_cnt[s]):
                    acc[p] += row[x_ids[p]] * d
        for p in range(in_cnt[s]):
            acc[p] *= _derivative(in_vals[s, p], in_activation)


# A layer with every neuron active whose input level is sparse (a dense output
# layer after hashed neurons) runs its forward and backward passes grouped by
# input row when it has at most GROUPED_MAX_WIDTH neurons: each thread then
# reads and writes mostly the weight rows it updates (the passes share the rows
# out by id, the update by position among the touched rows: nearly the same
# split). Split by sample, the rows went to and fro between the cores every
# batch. MNIST, one hidden layer of 16384 at 0.02, two threads, the output
# layer's three kernels: 1.78-2.00 ms a batch -> 1.09-1.18 with the virtual
# CPUs 327-342 ns apart, 0.92-1.10 -> 0.89-0.94 with them near; on one thread
# the grouped backward pass, which reads and writes each pair's entries
# scattered, costs 0.03 ms more (4096).
GROUPED_MAX_WIDTH = 64
# The forward pass sums a sample's terms over GROUPED_PARTS fixed ranges of
# input ids apart, then adds the ranges in order: the logits depend neither on
# the number of threads nor on the other rows of the batch. The ranges are
# shared out among the threads (so at most GROUPED_PARTS of them work), and
# each costs a pass over the batch's logits (with 16, the 4096 network's
# forward pass took 0.054-0.073 ms a batch, 0.055-0.067 with 4).
GROUPED_PARTS = 4


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def forward_dense_grouped(W, b, in_vals, n_rows, row_start, row_sample, row_pos, activation,
                          partial, out_vals):
    """forward_layer of an input-major layer whose neurons are all active, by input row.

    ``row_start``, ``row_sample`` and ``row_pos`` group the batch's active inputs
    by id (``invert_lists`` of the input level). Input ids are cut into
    ``partial.shape[0]`` equal ranges; range k adds each sample's terms into
    ``partial[k]`` (``partial`` is (parts, >= n_rows, >= n_out), zeroed here),
    and the ranges are added in order at the end.
    """
    n_parts, n_in, n_out = partial.shape[0], W.shape[0], W.shape[1]
    for k in prange(n_parts):
        sums = partial[k]
        sums[:n_rows] = 0
        for i in range(n_in * k // n_parts, n_in * (k + 1) // n_parts):
            row = W[i]
            for e in range(row_start[i], row_start[i + 1]):
                s = row_sample[e]
                v = in_vals[s, row_pos[e]]
                z = sums[s]
                for q in range(n_out):
                    z[q] += row[q] * v
    for s in prange(n_rows):
        for q in range(n_out):
            acc = b[q]
            for k in range(n_parts):
                acc += partial[k, s, q]
            out_vals[s, q] = _activate(acc, activation)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def backward_dense_grouped(W, in_vals, touched, n_touched, row_start, row_sample, row_pos,
                           out_delta, in_activation, in_delta):
    """backward_layer of an input-major layer whose neurons are all active, by input
    row (the index of ``invert_lists``): the same sums, in the same order."""
    n_out = W.shape[1]
    for r in prange(n_touched):
        i = touched[r]
        row = W[i]
        for e in range(row_start[i], row_start[i + 1]):
            s, p = row_sample[e], row_pos[e]
            delta = out_delta[s]
            acc = row[0] * 0
            for q in range(n_out):
                acc += row[q] * delta[q]
            in_delta[s, p] = acc * _derivative(in_vals[s, p], in_activation)


@njit(nogil=True, cache=True, error_model="numpy")
def invert_lists(ids, cnt, n_ids, row_start, row_sample, row_pos, touched_rows):
    """Group the (sample, position) pairs of id lists by id: a counting sort.

    Applied to a layer's input lists, it tells for each input i the samples where
    i was active: ``row_sample[row_start[i]:row_start[i + 1]]`` (in sample order)
    at positions ``row_pos[...]``. Returns the number of ids present in at least
    one sample, listed in ``touched_rows``.
    """
    row_start[: n_ids + 1] = 0
    for s in range(cnt.shape[0]):
        for q in range(cnt[s]):
            row_start[ids[s, q] + 1] += 1
    n_touched = 0
    for i in range(n_ids):
        if row_start[i + 1] > 0:
            touched_rows[n_touched] = i
            n_touched += 1
        row_start[i + 1] += row_start[i]
    # fill using row_start[i] as id i's cursor; afterwards every cursor sits at
    # the next id's start, so shift the array back by one
    for s in range(cnt.shape[0]):
        for q in range(cnt[s]):
            i = ids[s, q]
            e = row_start[i]
            row_sample[e] = s
            row_pos[e] = q
            row_start[i] = e + 1
    for i in range(n_ids, 0, -1):
        row_start[i] = row_start[i - 1]
    row_start[0] = 0
    return n_touched


# Columns of the ``layout`` rows of invert_levels: where a level's arrays start
# in the flat arrays, its list width and its number of ids.
IDS_AT, WIDTH, N_IDS, STARTS_AT, PAIRS_AT, TOUCHED_AT = range(6)


@njit(nogil=True, cache=True)
def _deal_levels(pairs, n_threads, owner):
    """Give level k (``pairs[k]`` pairs to group) to thread ``owner[k]``: the
    largest first, each to the thread with the fewest pairs so far."""
    load = np.zeros(n_threads, np.int64)
    for k in np.argsort(-pairs, kind="mergesort"):
        owner[k] = np.argmin(load)
        load[owner[k]] += pairs[k]


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def invert_levels(levels, n_rows, layout, ids, cnt, row_start, row_sample, row_pos, touched_rows,
                  n_touched, n_threads):
    """``invert_lists`` of each level in ``levels``, the levels shared among ``n_threads``
    threads (numba.get_num_threads(): called in here, it would keep numba from caching).

    A counting sort is serial, but levels are independent: on two threads the
    3 x 1000 network's four levels took 0.29 ms a batch instead of 0.60. Each
    level's arrays are segments of the flat arrays, starting where
    ``layout[level]`` says (columns IDS_AT ... TOUCHED_AT): its ids lists
    (batch, WIDTH), and its index (``row_start`` of N_IDS + 1 entries,
    ``row_sample`` and ``row_pos``, ``touched_rows``); ``cnt`` is (levels, batch),
    of which the first ``n_rows`` samples count. ``n_touched[level]`` receives
    invert_lists' result. A level's index is the same whichever thread makes it.
    """
    batch = cnt.shape[1]
    pairs = np.empty(levels.shape[0], np.int64)
    for k in range(levels.shape[0]):
        pairs[k] = 0
        for s in range(n_rows):
            pairs[k] += cnt[levels[k], s]
    owner = np.empty(levels.shape[0], np.int64)
    _deal_levels(pairs, n_threads, owner)
    for t in prange(n_threads):
        for k in range(levels.shape[0]):
            if owner[k] != t:
                continue
            at = layout[levels[k]]
            n_pairs, n_ids = batch * at[WIDTH], at[N_IDS]
            level_ids = ids[at[IDS_AT]: at[IDS_AT] + n_pairs].reshape((batch, at[WIDTH]))
            starts, pairs_at, touched_at = at[STARTS_AT], at[PAIRS_AT], at[TOUCHED_AT]
            n_touched[levels[k]] = invert_lists(
                level_ids, cnt[levels[k], :n_rows], n_ids, row_start[starts: starts + n_ids + 1],
                row_sample[pairs_at: pairs_at + n_pairs], row_pos[pairs_at: pairs_at + n_pairs],
                touched_rows[touched_at: touched_at + n_ids])


@njit(cache=True, inline="always")
def _pair_span(spans, has_spans, s0, s1, width):
    """The columns [first, stop) that cover the non-zeros of whole rows s0 and s1
    (all ``width`` of them without spans)."""
    if not has_spans:
        return 0, width
    return min(spans[s0, 0], spans[s1, 0]), max(spans[s0, 1], spans[s1, 1])


@njit(cache=True, inline="always", error_model="numpy")
def _weight_row_gradient(i, width, row_start, row_sample, row_pos, row_vals, col_ids, col_cnt,
                         col_vals, col_spans, grad, mark, cols):
    """Sum the batch gradient of weight row i into the dense scratch ``grad``.

    The gradient of weight (input, neuron) is the sum over samples of input
    value times neuron delta. Row i's samples and positions come from
    ``invert_lists``; ``row_vals`` holds the row owner's factor and ``col_*`` the
    lists of the other side: for input-major weights the row is an input
    (row_vals = input values, columns = active neurons and their deltas), for
    neuron-major weights a neuron (row_vals = deltas, columns = active inputs).
    Returns (n_cols, first, stop): the number of columns touched, listed in
    ``cols``, and (0, width); or -1 when a sample listed every column (ids
    0..width-1): then summing contiguously is several times faster, ``mark``
    flags the touched columns and all of them lie in [first, stop). Whole
    dense input rows (``col_spans`` given, not ``NO_SPANS``, and then every row
    is whole) list their zeros too: those columns are not touched, exactly as
    when the row lists its non-zeros only, and each row is summed over the span
    of its non-zeros.
    """
    skip_zero_columns = col_spans.shape[0] > 0
    n_cols = 0
    full = False
    first, stop_at = width, 0  # the union of the whole rows' spans
    e, stop = row_start[i], row_start[i + 1]
    while e < stop:
        s = row_sample[e]
        a = row_vals[s, row_pos[e]]
        ids = col_ids[s]
        delta = col_vals[s]
        if col_cnt[s] == width:
            full = True
            if e + 1 < stop and col_cnt[row_sample[e + 1]] == width:
                # two whole rows per pass: grad and mark are loaded and stored
                # once for both (the update ran 1.05-1.12x faster on MNIST rows,
                # measured when the pair's terms were summed first); still
                # added one sample at a time (see _column_union)
                s1 = row_sample[e + 1]
                a1 = row_vals[s1, row_pos[e + 1]]
                delta1 = col_vals[s1]
                lo, hi = _pair_span(col_spans, skip_zero_columns, s, s1, width)
                for k in range(hi - lo):
                    # an unsigned index needs no check for negative indices, which
                    # kept LLVM from vectorising a loop from lo (17-19x slower)
                    q = np.uint64(lo + k)
                    grad[q] = (grad[q] + a * delta[q]) + a1 * delta1[q]
                    if skip_zero_columns:
                        mark[q] |= (delta[q] != 0) | (delta1[q] != 0)
                    else:
                        mark[q] = 1
                first, stop_at = min(first, lo), max(stop_at, hi)
                e += 2
                continue
            lo, hi = _pair_span(col_spans, skip_zero_columns, s, s, width)
            for k in range(hi - lo):
                q = np.uint64(lo + k)
                grad[q] += a * delta[q]
                if skip_zero_columns:
                    mark[q] |= delta[q] != 0
                else:
                    mark[q] = 1
            first, stop_at = min(first, lo), max(stop_at, hi)
            e += 1
            continue
        for q in range(col_cnt[s]):
            j = ids[q]
            # branch-free "append j if new": a branch here mispredicts half the time
            cols[n_cols] = j
            n_cols += 1 - mark[j]
            mark[j] = 1
            grad[j] += a * delta[q]
        e += 1
    if full:
        return -1, first, max(first, stop_at)
    return n_cols, 0, width


@njit(cache=True, inline="always")
def mark_words(n_columns):
    """Words of 64 bits that hold one touched mark per column (compact sums)."""
    return (n_columns + 63) >> 6


# not inlined: inside a parallel kernel, numba would run each of its slice
# assignments as a parallel loop of its own (the update ran 1.5x slower on 2 threads)
@njit(nogil=True, cache=True, error_model="numpy")
def _column_union(col_ids, col_cnt, col_vals, width, skip_zero_columns, n_rows, n_pairs, compact):
    """Prepare the compact gradient sums of ``_compact_row_gradient``, or return -1.

    Summing a row's gradient sample by sample scatters each delta into the row
    (a load, add and store per active column). Where the batch's column lists
    together name few distinct columns, it is faster to copy the lists once
    into dense (sample, column) arrays over those columns only and add whole
    rows of them, vectorised: on MNIST with three hidden layers of 1000 at
    0.05, a batch named about 200 of 1000 columns, 50 per sample, and the
    update ran 1.8-2.4x faster. It pays off when the union is at most
    COMPACT_UNION_FACTOR times a sample's list (the vectorised sums against
    the scattered ones), and when writing each of the ``n_rows`` rows' sums
    back to its columns costs no more than scattering its samples' lists
    (``n_pairs`` (row, sample) pairs in all): not so for 20 Newsgroups' words,
    each in a few documents of a batch (fits ran 1.07x slower).
    ``compact`` = (slot, union_ids, dense_delta,
    dense_bits, acc_grad, acc_bits): ``slot`` (-1 everywhere between calls)
    maps a column to its place in ``union_ids``, which lists the columns
    ascending; ``dense_*`` hold the copies, the marks as bits (64 columns a
    word), and ``acc_*`` a thread's sums.
    Returns the number of columns, or -1 when the lists are whole rows
    (summed contiguously anyway) or name too many columns.
    Every way of summing adds the samples' terms one at a time, in sample
    order, so the sums do not depend on the way chosen: a layer split into
    column blocks chooses per block (``_block_kernels``) and must sum as the
    one matrix does.
    """
    slot, union_ids, dense_delta, dense_bits = compact[0], compact[1], compact[2], compact[3]
    B = col_cnt.shape[0]
    if skip_zero_columns or B == 0:
        return -1
    n_listed = 0
    for s in range(B):
        if col_cnt[s] == width:
            return -1
        n_listed += col_cnt[s]
    n_union = 0
    for s in range(B):
        for q in range(col_cnt[s]):
            j = col_ids[s, q]
            # branch-free "append j if new", as in _weight_row_gradient
            union_ids[n_union] = j
            n_union += slot[j] < 0
            slot[j] = 0
    if (n_union > dense_delta.shape[1] or n_union * B > COMPACT_UNION_FACTOR * n_listed
            or n_union * n_rows * B > n_pairs * n_listed):
        for u in range(n_union):
            slot[union_ids[u]] = -1
        return -1
    # ascending columns: each row's update then visits its entries in order
    union_ids[:n_union].sort()
    for u in range(n_union):
        slot[union_ids[u]] = u
    n_words = mark_words(n_union)
    for s in range(B):
        dense_delta[s, :n_union] = 0
        dense_bits[s, :n_words] = 0
        for q in range(col_cnt[s]):
            u = slot[col_ids[s, q]]
            dense_delta[s, u] = col_vals[s, q]
            dense_bits[s, u >> 6] |= np.uint64(1) << np.uint64(u & 63)
    for u in range(n_union):
        slot[union_ids[u]] = -1
    return n_union


@njit(cache=True, inline="always", error_model="numpy")
def _compact_sums(i, row_start, row_sample, row_pos, row_vals, n_union, compact, tid):
    """Row i's batch gradient from the dense copies made by ``_column_union``,
    summed over the n_union columns (four samples a pass) into thread tid's
    accumulators ``compact[4][tid]``, with their touched marks in ``compact[5][tid]``."""
    dense_delta, dense_bits = compact[2], compact[3]
    acc_grad, acc_bits = compact[4][tid], compact[5][tid]
    # marks as bits, OR-ed a word at a time: as bytes beside the sums (numba
    # widens byte arithmetic to 64 bits) they took as long as the sums
    n_words = mark_words(n_union)
    e, stop = row_start[i], row_start[i + 1]
    # four samples a pass: each pass loads and stores the sums once, and half
    # as many passes as two a pass halve their set-up, which counts in a
    # column block's shorter lists
    while e + 4 <= stop:
        s0, s1, s2, s3 = row_sample[e], row_sample[e + 1], row_sample[e + 2], row_sample[e + 3]
        a0, a1 = row_vals[s0, row_pos[e]], row_vals[s1, row_pos[e + 1]]
        a2, a3 = row_vals[s2, row_pos[e + 2]], row_vals[s3, row_pos[e + 3]]
        delta0, delta1, delta2, delta3 = dense_delta[s0], dense_delta[s1], dense_delta[s2], dense_delta[s3]
        for u in range(n_union):
            sum_01 = (acc_grad[u] + a0 * delta0[u]) + a1 * delta1[u]
            acc_grad[u] = (sum_01 + a2 * delta2[u]) + a3 * delta3[u]
        bits0, bits1, bits2, bits3 = dense_bits[s0], dense_bits[s1], dense_bits[s2], dense_bits[s3]
        for word in range(n_words):
            acc_bits[word] |= (bits0[word] | bits1[word]) | (bits2[word] | bits3[word])
        e += 4
    while e < stop:
        s0 = row_sample[e]
        a0 = row_vals[s0, row_pos[e]]
        delta0, bits0 = dense_delta[s0], dense_bits[s0]
        for u in range(n_union):
            acc_grad[u] += a0 * delta0[u]
        for word in range(n_words):
            acc_bits[word] |= bits0[word]
        e += 1


@njit(cache=True, inline="always")
def _union_touched(acc_bits, u):
    """Did any sample add to compact column u (its mark bit)?"""
    return np.uint8((acc_bits[u >> 6] >> np.uint64(u & 63)) & np.uint64(1))


@njit(cache=True, inline="always", error_model="numpy")
def _compact_row_gradient(i, row_start, row_sample, row_pos, row_vals, n_union, compact, tid,
                          grad, mark, cols):
    """Row i's compact sums (``_compact_sums``) written to the touched columns of
    ``grad`` and ``mark`` and listed ascending in ``cols``. Returns their
    number, as ``_weight_row_gradient`` does."""
    _compact_sums(i, row_start, row_sample, row_pos, row_vals, n_union, compact, tid)
    union_ids, acc_grad, acc_bits = compact[1], compact[4][tid], compact[5][tid]
    n_cols = 0
    for u in range(n_union):
        j = union_ids[u]
        touched = _union_touched(acc_bits, u)
        grad[j] = acc_grad[u]  # 0 where unmarked: only marked entries were added to
        mark[j] = touched
        cols[n_cols] = j
        n_cols += touched
        acc_grad[u] = 0
    for word in range(mark_words(n_union)):
        acc_bits[word] = 0
    return n_cols


@njit(cache=True, inline="always", error_model="numpy")
def _row_gradient(i, width, row_start, row_sample, row_pos, row_vals, col_ids, col_cnt, col_vals,
                  col_spans, n_union, compact, tid, grad, mark, cols):
    """Row i's batch gradient into ``grad``: over the compact copies when
    ``_column_union`` made them (n_union >= 0), else sample by sample.
    Returns (n_cols, first, stop) as ``_weight_row_gradient``."""
    if n_union >= 0:
        n_cols = _compact_row_gradient(i, row_start, row_sample, row_pos, row_vals, n_union,
                                       compact, tid, grad, mark, cols)
        return n_cols, 0, width
    return _weight_row_gradient(i, width, row_start, row_sample, row_pos, row_vals, col_ids,
                                col_cnt, col_vals, col_spans, grad, mark, cols)


@njit(cache=True, inline="always", error_model="numpy")
def _bias_gradient(out_ids, out_cnt, out_delta, grad, mark, cols):
    """Sum the batch gradient of the biases into ``grad``; returns touched count."""
    n_cols = 0
    for s in range(out_cnt.shape[0]):
        for q in range(out_cnt[s]):
            j = out_ids[s, q]
            cols[n_cols] = j
            n_cols += 1 - mark[j]
            mark[j] = 1
            grad[j] += out_delta[s, q]
    return n_cols


@njit(cache=True, inline="always", error_model="numpy")
def _adam_constants(beta_1, beta_2):
    """float32 (beta_1, beta_2, 1 - beta_1, 1 - beta_2), each complement taken before
    rounding, as sklearn's float32 arrays times Python floats round them:
    1 - float32(0.999) is 1.3e-5 off 0.001, and the steps drifted from MLPClassifier's."""
    return (np.float32(beta_1), np.float32(beta_2), np.float32(1.0 - beta_1),
            np.float32(1.0 - beta_2))


@njit(cache=True, inline="always", error_model="numpy")
def _adam_rule(w, m, v, g, step_size, beta_1, beta_2, keep_1, keep_2, epsilon):
    """One entry's Adam step: new (w, m, v) from the old ones and gradient g."""
    m_new = beta_1 * m + keep_1 * g
    v_new = beta_2 * v + keep_2 * g * g
    return w - step_size * m_new / (np.sqrt(v_new) + epsilon), m_new, v_new


@njit(cache=True, inline="always", error_model="numpy")
def _adam_apply(w, m, v, grad, mark, cols, n_cols, first, stop, l2, step_size, beta_1, beta_2,
                epsilon):
    """sklearn's Adam rule on the marked entries, listed in ``cols[:n_cols]``
    (unlisted when n_cols is -1, and all in columns [first, stop)); clears the scratch."""
    b1, b2, keep_1, keep_2 = _adam_constants(beta_1, beta_2)
    if n_cols < 0 or n_cols * DENSE_ROW_FRACTION > w.shape[0]:
        # the whole row, keeping unmarked entries by a select rather than a
        # branch, so that the loop is vectorised. The old values are loaded
        # once, before any store: re-reading m[j] in the select after the store
        # to w[j] (which LLVM cannot prove apart) made the select a conditional
        # load, and the loop ran 1.7-2x slower. The scratch is cleared before
        # the first select's store: else LLVM sees that its unmarked entries
        # store what was just loaded and makes it a masked store, which Zen 1
        # runs so slowly that the sweep took 1.2x as long.
        for k in range(stop - first):
            j = np.uint64(first + k)  # unsigned: vectorised (see _weight_row_gradient)
            w_old, m_old, v_old = w[j], m[j], v[j]
            w_new, m_new, v_new = _adam_rule(w_old, m_old, v_old, grad[j] + l2 * w_old,
                                             step_size, b1, b2, keep_1, keep_2, epsilon)
            touched = mark[j] != 0
            grad[j] = 0
            mark[j] = 0
            m[j] = m_new if touched else m_old
            v[j] = v_new if touched else v_old
            w[j] = w_new if touched else w_old
        return
    for c in range(n_cols):
        j = cols[c]
        w[j], m[j], v[j] = _adam_rule(w[j], m[j], v[j], grad[j] + l2 * w[j], step_size,
                                      b1, b2, keep_1, keep_2, epsilon)
        grad[j] = 0
        mark[j] = 0


@njit(cache=True, inline="always", error_model="numpy")
def _sgd_rule(w, vel, g, learning_rate, momentum, nesterov):
    """One entry's SGD-with-momentum step: new (w, velocity)."""
    vel_new = momentum * vel - learning_rate * g
    if nesterov:
        return w + (momentum * vel_new - learning_rate * g), vel_new
    return w + vel_new, vel_new


@njit(cache=True, inline="always", error_model="numpy")
def _sgd_apply(w, vel, grad, mark, cols, n_cols, first, stop, l2, learning_rate, momentum,
               nesterov):
    """sklearn's SGD-with-momentum rule on the marked entries, listed in
    ``cols[:n_cols]`` (unlisted when n_cols is -1, and all in columns [first,
    stop)); clears the scratch."""
    if n_cols < 0 or n_cols * DENSE_ROW_FRACTION > w.shape[0]:
        # the whole row, vectorised by a select (see _adam_apply)
        for k in range(stop - first):
            j = np.uint64(first + k)
            w_old, vel_old = w[j], vel[j]
            w_new, vel_new = _sgd_rule(w_old, vel_old, grad[j] + l2 * w_old, learning_rate,
                                       momentum, nesterov)
            touched = mark[j] != 0
            grad[j] = 0  # first, as in _adam_apply
            mark[j] = 0
            vel[j] = vel_new if touched else vel_old
            w[j] = w_new if touched else w_old
        return
    for c in range(n_cols):
        j = cols[c]
        w[j], vel[j] = _sgd_rule(w[j], vel[j], grad[j] + l2 * w[j], learning_rate, momentum,
                                 nesterov)
        grad[j] = 0
        mark[j] = 0


@njit(cache=True, inline="always")
def _union_step(n_union, width):
    """Step a row over the batch's compact columns alone? (UNION_STEP_FRACTION)"""
    return n_union >= 0 and n_union * UNION_STEP_FRACTION <= width


@njit(cache=True, inline="always", error_model="numpy")
def _adam_union(w, m, v, n_union, compact, tid, l2, step_size, beta_1, beta_2, epsilon):
    """sklearn's Adam rule on the touched ones of the batch's compact columns of
    row w, from thread tid's sums (``_compact_sums``), which it clears. The same
    arithmetic as ``_adam_apply``, entry by entry, so results do not depend on
    the way chosen."""
    union_ids, acc_grad, acc_bits = compact[1], compact[4][tid], compact[5][tid]
    b1, b2, keep_1, keep_2 = _adam_constants(beta_1, beta_2)
    for u in range(n_union):
        j = union_ids[u]
        w_old, m_old, v_old = w[j], m[j], v[j]
        w_new, m_new, v_new = _adam_rule(w_old, m_old, v_old, acc_grad[u] + l2 * w_old, step_size,
                                         b1, b2, keep_1, keep_2, epsilon)
        touched = _union_touched(acc_bits, u) != 0  # a select, not a branch
        m[j] = m_new if touched else m_old
        v[j] = v_new if touched else v_old
        w[j] = w_new if touched else w_old
        acc_grad[u] = 0
    for word in range(mark_words(n_union)):
        acc_bits[word] = 0


@njit(cache=True, inline="always", error_model="numpy")
def _sgd_union(w, vel, n_union, compact, tid, l2, learning_rate, momentum, nesterov):
    """``_adam_union`` for SGD with momentum (the arithmetic of ``_sgd_apply``)."""
    union_ids, acc_grad, acc_bits = compact[1], compact[4][tid], compact[5][tid]
    for u in range(n_union):
        j = union_ids[u]
        w_old, vel_old = w[j], vel[j]
        w_new, vel_new = _sgd_rule(w_old, vel_old, acc_grad[u] + l2 * w_old, learning_rate,
                                   momentum, nesterov)
        touched = _union_touched(acc_bits, u) != 0
        vel[j] = vel_new if touched else vel_old
        w[j] = w_new if touched else w_old
        acc_grad[u] = 0
    for word in range(mark_words(n_union)):
        acc_bits[word] = 0


@njit(cache=True, inline="always", error_model="numpy")
def _adam_row(w, m, v, i, width, row_start, row_sample, row_pos, row_vals, col_ids, col_cnt,
              col_vals, col_spans, n_union, compact, tid, grad, mark, cols, l2, step_size,
              beta_1, beta_2, epsilon):
    """Row i's batch gradient and Adam step on its weights ``w`` and moments
    (``width`` columns of them in use)."""
    if _union_step(n_union, width):
        _compact_sums(i, row_start, row_sample, row_pos, row_vals, n_union, compact, tid)
        _adam_union(w, m, v, n_union, compact, tid, l2, step_size, beta_1, beta_2, epsilon)
        return
    n_cols, first, stop = _row_gradient(i, width, row_start, row_sample, row_pos, row_vals, col_ids,
                                        col_cnt, col_vals, col_spans, n_union, compact, tid, grad,
                                        mark, cols)
    _adam_apply(w, m, v, grad, mark, cols, n_cols, first, stop, l2, step_size, beta_1, beta_2,
                epsilon)


@njit(cache=True, inline="always", error_model="numpy")
def _sgd_row(w, vel, i, width, row_start, row_sample, row_pos, row_vals, col_ids, col_cnt,
             col_vals, col_spans, n_union, compact, tid, grad, mark, cols, l2,
             learning_rate, momentum, nesterov):
    """Row i's batch gradient and SGD step on its weights ``w`` and velocities
    (``width`` columns of them in use)."""
    if _union_step(n_union, width):
        _compact_sums(i, row_start, row_sample, row_pos, row_vals, n_union, compact, tid)
        _sgd_union(w, vel, n_union, compact, tid, l2, learning_rate, momentum, nesterov)
        return
    n_cols, first, stop = _row_gradient(i, width, row_start, row_sample, row_pos, row_vals, col_ids,
                                        col_cnt, col_vals, col_spans, n_union, compact, tid, grad,
                                        mark, cols)
    _sgd_apply(w, vel, grad, mark, cols, n_cols, first, stop, l2, learning_rate, momentum,
               nesterov)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def adam_update(
    W, b, m_W, v_W, m_b, v_b, touched_rows, n_touched, row_start, row_sample, row_pos,
    row_vals, col_ids, col_cnt, col_vals, col_spans, out_ids, out_cnt, out_delta, l2,
    step_size, beta_1, beta_2, epsilon, grad_scratch, mark_scratch, cols_scratch, compact, claims,
):
    """Lazy Adam: update only the weights and biases the batch touched.

    Rows of W (inputs, or neurons for neuron-major W) are shared among the
    workers of ``claims`` (``_work_sharing``), see ``_weight_row_gradient``
    (``col_spans``: the spans of whole dense input rows, or ``NO_SPANS``); the
    biases follow the active neurons ``out_ids`` and their deltas. ``l2`` is
    alpha / sum(sample weights) (no penalty on biases, as sklearn); ``step_size``
    is the bias-corrected learning rate of sklearn's AdamOptimizer for this step.
    """
    n_union = _column_union(col_ids, col_cnt, col_vals, W.shape[1], col_spans.shape[0] > 0,
                            n_touched, row_start[W.shape[0]], compact)
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        grad, mark, cols = grad_scratch[worker], mark_scratch[worker], cols_scratch[worker]
        first, stop, share = next_chunk(claims, worker, n_touched, ROW_CHUNK, 0)
        while first < stop:
            for r in range(first, stop):
                i = touched_rows[r]
                _adam_row(W[i], m_W[i], v_W[i], i, W.shape[1], row_start, row_sample, row_pos,
                          row_vals, col_ids, col_cnt, col_vals, col_spans, n_union, compact, worker,
                          grad, mark, cols, l2, step_size, beta_1, beta_2, epsilon)
            first, stop, share = next_chunk(claims, worker, n_touched, ROW_CHUNK, share)
    grad, mark, cols = grad_scratch[0], mark_scratch[0], cols_scratch[0]
    n_cols = _bias_gradient(out_ids, out_cnt, out_delta, grad, mark, cols)
    _adam_apply(b, m_b, v_b, grad, mark, cols, n_cols, 0, b.shape[0], l2 * 0, step_size, beta_1,
                beta_2, epsilon)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def sgd_update(
    W, b, vel_W, vel_b, touched_rows, n_touched, row_start, row_sample, row_pos,
    row_vals, col_ids, col_cnt, col_vals, col_spans, out_ids, out_cnt, out_delta, l2,
    learning_rate, momentum, nesterov, grad_scratch, mark_scratch, cols_scratch, compact, claims,
):
    """Lazy SGD with (Nesterov) momentum on the weights and biases the batch touched
    (arguments as ``adam_update``)."""
    n_union = _column_union(col_ids, col_cnt, col_vals, W.shape[1], col_spans.shape[0] > 0,
                            n_touched, row_start[W.shape[0]], compact)
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        grad, mark, cols = grad_scratch[worker], mark_scratch[worker], cols_scratch[worker]
        first, stop, share = next_chunk(claims, worker, n_touched, ROW_CHUNK, 0)
        while first < stop:
            for r in range(first, stop):
                i = touched_rows[r]
                _sgd_row(W[i], vel_W[i], i, W.shape[1], row_start, row_sample, row_pos, row_vals,
                         col_ids, col_cnt, col_vals, col_spans, n_union, compact, worker, grad,
                         mark, cols, l2, learning_rate, momentum, nesterov)
            first, stop, share = next_chunk(claims, worker, n_touched, ROW_CHUNK, share)
    grad, mark, cols = grad_scratch[0], mark_scratch[0], cols_scratch[0]
    n_cols = _bias_gradient(out_ids, out_cnt, out_delta, grad, mark, cols)
    _sgd_apply(b, vel_b, grad, mark, cols, n_cols, 0, b.shape[0], l2 * 0, learning_rate, momentum,
               nesterov)
