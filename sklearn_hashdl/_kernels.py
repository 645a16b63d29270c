"""Numba kernels for sparse training over flat arrays.

Every layer's input and output for a batch is held as three arrays per "level":
``ids`` (n_samples, width) int32, ``vals`` (n_samples, width) float32 and
``cnt`` (n_samples,) int32: sample ``s`` has ``cnt[s]`` active units whose indices
are ``ids[s, :cnt[s]]`` and whose values are ``vals[s, :cnt[s]]``. Level 0 is the
network input (the non-zeros of each row), level ``l`` the output of layer ``l``.
Weights are neuron-major: ``W[j]`` is the contiguous input-weight row of neuron j.

Parallel loops write only to what their iteration owns (a sample's row in the
forward and backward passes, a neuron's row in the update), so results do not
depend on the number of threads. Per-thread scratch is indexed by
``numba.get_thread_id()`` and always left zeroed.
"""

import numba
import numpy as np
from numba import njit, prange

ACTIVATION_CODES = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3}


@njit(cache=True, inline="always")
def _activate(z, code):
    if code == 3:
        return z if z > 0 else z * 0
    if code == 2:
        return np.tanh(z)
    if code == 1:
        return 1 / (1 + np.exp(-z))
    return z


@njit(cache=True, inline="always")
def _derivative(a, code):
    # derivative of the activation written in terms of its output, as sklearn does
    if code == 3:
        return a * 0 + 1 if a > 0 else a * 0
    if code == 2:
        return 1 - a * a
    if code == 1:
        return a * (1 - a)
    return a * 0 + 1


@njit(cache=True)
def dense_rows_to_lists(X, rows, ids, vals, cnt):
    """Copy the non-zeros of ``X[rows]`` (dense) into level-0 lists."""
    for s in range(rows.shape[0]):
        r = rows[s]
        m = 0
        for i in range(X.shape[1]):
            v = X[r, i]
            if v != 0:
                ids[s, m] = i
                vals[s, m] = v
                m += 1
        cnt[s] = m


@njit(cache=True)
def csr_rows_to_lists(data, indices, indptr, rows, ids, vals, cnt):
    """Copy the non-zeros of CSR rows ``rows`` into level-0 lists."""
    for s in range(rows.shape[0]):
        r = rows[s]
        m = 0
        for e in range(indptr[r], indptr[r + 1]):
            v = data[e]
            if v != 0:
                ids[s, m] = indices[e]
                vals[s, m] = v
                m += 1
        cnt[s] = m


@njit(parallel=True, cache=True)
def forward_layer(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt, activation, out_vals):
    """out_vals[s, q] = act(W[j] . input_s + b[j]) for each active neuron j = out_ids[s, q]."""
    for s in prange(in_cnt.shape[0]):
        m = in_cnt[s]
        for q in range(out_cnt[s]):
            j = out_ids[s, q]
            row = W[j]
            z = b[j]
            for p in range(m):
                z += row[in_ids[s, p]] * in_vals[s, p]
            out_vals[s, q] = _activate(z, activation)


@njit(parallel=True, cache=True)
def output_loss_and_delta(logits, Y, sample_weight, weight_sum, softmax, delta, loss):
    """Turn output logits into probabilities, per-sample log loss and output deltas.

    ``delta = (p - y) * w_s / sum(w)`` so that the weight gradients below are the
    gradient of the weighted mean loss, as in sklearn's MLP. ``loss[s]`` is the
    unweighted log loss of sample s (summed over outputs), computed in float64.
    """
    n_out = logits.shape[1]
    eps = np.finfo(np.float32).eps
    for s in prange(logits.shape[0]):
        scale = sample_weight[s] / weight_sum
        total = 0.0
        if softmax:
            top = logits[s, 0]
            for c in range(1, n_out):
                top = max(top, logits[s, c])
            norm = 0.0
            for c in range(n_out):
                norm += np.exp(np.float64(logits[s, c] - top))
            for c in range(n_out):
                p = np.exp(np.float64(logits[s, c] - top)) / norm
                y = Y[s, c]
                if y != 0:
                    total -= y * np.log(min(max(p, eps), 1 - eps))
                delta[s, c] = (p - y) * scale
        else:
            for c in range(n_out):
                p = 1.0 / (1.0 + np.exp(-np.float64(logits[s, c])))
                y = Y[s, c]
                pc = min(max(p, eps), 1 - eps)
                total -= y * np.log(pc) + (1 - y) * np.log(1 - pc)
                delta[s, c] = (p - y) * scale
        loss[s] = total


@njit(parallel=True, cache=True)
def backward_layer(W, in_ids, in_vals, in_cnt, out_ids, out_cnt, out_delta, in_activation, in_delta):
    """Deltas of the layer's active inputs from the deltas of its active neurons."""
    for s in prange(in_cnt.shape[0]):
        m = in_cnt[s]
        for p in range(m):
            in_delta[s, p] = 0
        for q in range(out_cnt[s]):
            d = out_delta[s, q]
            if d == 0:
                continue
            row = W[out_ids[s, q]]
            for p in range(m):
                in_delta[s, p] += row[in_ids[s, p]] * d
        for p in range(m):
            in_delta[s, p] *= _derivative(in_vals[s, p], in_activation)


@njit(cache=True)
def invert_active(out_ids, out_cnt, n_neurons, row_start, row_sample, row_pos, touched_rows):
    """Group (sample, position) pairs by neuron: a counting sort by neuron id.

    After the call, the samples where neuron j was active are
    ``row_sample[row_start[j]:row_start[j + 1]]`` (in sample order) at positions
    ``row_pos[...]``; returns the number of neurons active in at least one sample,
    listed in ``touched_rows``.
    """
    row_start[: n_neurons + 1] = 0
    for s in range(out_cnt.shape[0]):
        for q in range(out_cnt[s]):
            row_start[out_ids[s, q] + 1] += 1
    n_touched = 0
    for j in range(n_neurons):
        if row_start[j + 1] > 0:
            touched_rows[n_touched] = j
            n_touched += 1
        row_start[j + 1] += row_start[j]
    # fill using row_start[j] as neuron j's cursor; afterwards every cursor sits
    # at the next neuron's start, so shift the array back by one
    for s in range(out_cnt.shape[0]):
        for q in range(out_cnt[s]):
            j = out_ids[s, q]
            e = row_start[j]
            row_sample[e] = s
            row_pos[e] = q
            row_start[j] = e + 1
    for j in range(n_neurons, 0, -1):
        row_start[j] = row_start[j - 1]
    row_start[0] = 0
    return n_touched


@njit(cache=True, inline="always")
def _row_gradient(j, row_start, row_sample, row_pos, in_ids, in_vals, in_cnt, out_delta, grad, mark, cols):
    """Sum neuron j's weight gradient over the batch into the dense scratch ``grad``.

    Returns (number of touched input columns listed in ``cols``, bias gradient).
    """
    n_cols = 0
    bias_grad = 0.0
    for e in range(row_start[j], row_start[j + 1]):
        s = row_sample[e]
        d = out_delta[s, row_pos[e]]
        bias_grad += d
        for p in range(in_cnt[s]):
            i = in_ids[s, p]
            # branch-free "append i if new": the branch mispredicted half the time
            cols[n_cols] = i
            n_cols += 1 - mark[i]
            mark[i] = 1
            grad[i] += d * in_vals[s, p]
    return n_cols, bias_grad


@njit(parallel=True, cache=True)
def adam_update_rows(
    W, b, m_W, v_W, m_b, v_b, touched_rows, n_touched, row_start, row_sample, row_pos,
    in_ids, in_vals, in_cnt, out_delta, l2, step_size, beta_1, beta_2, epsilon,
    grad_scratch, mark_scratch, cols_scratch,
):
    """Lazy Adam: update only the (neuron, input) weights the batch touched.

    ``l2`` is alpha / sum(sample weights); ``step_size`` is the bias-corrected
    learning rate of sklearn's AdamOptimizer for the current step.
    """
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        grad = grad_scratch[tid]
        mark = mark_scratch[tid]
        cols = cols_scratch[tid]
        j = touched_rows[r]
        n_cols, bias_grad = _row_gradient(
            j, row_start, row_sample, row_pos, in_ids, in_vals, in_cnt, out_delta, grad, mark, cols
        )
        w_row, m_row, v_row = W[j], m_W[j], v_W[j]
        for c in range(n_cols):
            i = cols[c]
            g = grad[i] + l2 * w_row[i]
            m_row[i] = beta_1 * m_row[i] + (1 - beta_1) * g
            v_row[i] = beta_2 * v_row[i] + (1 - beta_2) * g * g
            w_row[i] -= step_size * m_row[i] / (np.sqrt(v_row[i]) + epsilon)
            grad[i] = 0
            mark[i] = 0
        m_b[j] = beta_1 * m_b[j] + (1 - beta_1) * bias_grad
        v_b[j] = beta_2 * v_b[j] + (1 - beta_2) * bias_grad * bias_grad
        b[j] -= step_size * m_b[j] / (np.sqrt(v_b[j]) + epsilon)


@njit(parallel=True, cache=True)
def sgd_update_rows(
    W, b, vel_W, vel_b, touched_rows, n_touched, row_start, row_sample, row_pos,
    in_ids, in_vals, in_cnt, out_delta, l2, learning_rate, momentum, nesterov,
    grad_scratch, mark_scratch, cols_scratch,
):
    """Lazy SGD with (Nesterov) momentum, sklearn's SGDOptimizer rule per touched weight."""
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        grad = grad_scratch[tid]
        mark = mark_scratch[tid]
        cols = cols_scratch[tid]
        j = touched_rows[r]
        n_cols, bias_grad = _row_gradient(
            j, row_start, row_sample, row_pos, in_ids, in_vals, in_cnt, out_delta, grad, mark, cols
        )
        w_row, vel_row = W[j], vel_W[j]
        for c in range(n_cols):
            i = cols[c]
            g = grad[i] + l2 * w_row[i]
            vel_row[i] = momentum * vel_row[i] - learning_rate * g
            if nesterov:
                w_row[i] += momentum * vel_row[i] - learning_rate * g
            else:
                w_row[i] += vel_row[i]
            grad[i] = 0
            mark[i] = 0
        vel_b[j] = momentum * vel_b[j] - learning_rate * bias_grad
        if nesterov:
            b[j] += momentum * vel_b[j] - learning_rate * bias_grad
        else:
            b[j] += vel_b[j]
