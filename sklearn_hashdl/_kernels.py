"""Numba kernels for sparse training over flat arrays.

Every layer's input and output for a batch is held as three arrays per "level":
``ids`` (n_samples, width) int32, ``vals`` (n_samples, width) float32 and
``cnt`` (n_samples,) int32: sample ``s`` has ``cnt[s]`` active units whose indices
are ``ids[s, :cnt[s]]`` and whose values are ``vals[s, :cnt[s]]``. Level 0 is the
network input (the non-zeros of each row), level ``l`` the output of layer ``l``.
Weights are input-major, as scikit-learn's ``coefs_``: ``W[i]`` (length n_out) is
the contiguous row of weights leaving input i, so a sparse input is a sum of a
few contiguous rows, and scoring every neuron of a layer is a few AXPYs.

Parallel loops write only to what their iteration owns (a sample's row in the
forward and backward passes, an input's weight row in the update), so results do
not depend on the number of threads. Per-thread scratch is indexed by
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
    """out_vals[s, q] = act(x_s . W[:, j] + b[j]) for each active neuron j = out_ids[s, q].

    A layer whose every neuron is active (out_cnt == n_out) has out_ids = 0..n-1
    and takes the contiguous, vectorisable path.
    """
    n_out = W.shape[1]
    for s in prange(in_cnt.shape[0]):
        k = out_cnt[s]
        z = out_vals[s]
        ids = out_ids[s]
        for q in range(k):
            z[q] = b[ids[q]]
        for p in range(in_cnt[s]):
            row = W[in_ids[s, p]]
            v = in_vals[s, p]
            if k == n_out:
                for q in range(k):
                    z[q] += row[q] * v
            else:
                for q in range(k):
                    z[q] += row[ids[q]] * v
        for q in range(k):
            z[q] = _activate(z[q], activation)


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
    n_out = W.shape[1]
    for s in prange(in_cnt.shape[0]):
        k = out_cnt[s]
        ids = out_ids[s]
        delta = out_delta[s]
        for p in range(in_cnt[s]):
            row = W[in_ids[s, p]]
            acc = row[0] * 0
            if k == n_out:
                for q in range(k):
                    acc += row[q] * delta[q]
            else:
                for q in range(k):
                    acc += row[ids[q]] * delta[q]
            in_delta[s, p] = acc * _derivative(in_vals[s, p], in_activation)


@njit(cache=True)
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


@njit(cache=True, inline="always")
def _weight_row_gradient(i, row_start, row_sample, row_pos, in_vals, out_ids, out_cnt,
                         out_delta, grad, mark, cols):
    """Sum the batch gradient of input i's weight row into the dense scratch ``grad``.

    Returns the number of neurons touched, listed in ``cols``.
    """
    n_cols = 0
    for e in range(row_start[i], row_start[i + 1]):
        s = row_sample[e]
        a = in_vals[s, row_pos[e]]
        ids = out_ids[s]
        delta = out_delta[s]
        for q in range(out_cnt[s]):
            j = ids[q]
            # branch-free "append j if new": a branch here mispredicts half the time
            cols[n_cols] = j
            n_cols += 1 - mark[j]
            mark[j] = 1
            grad[j] += a * delta[q]
    return n_cols


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def _adam_apply(w, m, v, grad, mark, cols, n_cols, l2, step_size, beta_1, beta_2, epsilon):
    """sklearn's Adam rule on the listed entries only; clears the scratch."""
    for c in range(n_cols):
        j = cols[c]
        g = grad[j] + l2 * w[j]
        m[j] = beta_1 * m[j] + (1 - beta_1) * g
        v[j] = beta_2 * v[j] + (1 - beta_2) * g * g
        w[j] -= step_size * m[j] / (np.sqrt(v[j]) + epsilon)
        grad[j] = 0
        mark[j] = 0


@njit(cache=True, inline="always")
def _sgd_apply(w, vel, grad, mark, cols, n_cols, l2, learning_rate, momentum, nesterov):
    """sklearn's SGD-with-momentum rule on the listed entries only; clears the scratch."""
    for c in range(n_cols):
        j = cols[c]
        g = grad[j] + l2 * w[j]
        vel[j] = momentum * vel[j] - learning_rate * g
        if nesterov:
            w[j] += momentum * vel[j] - learning_rate * g
        else:
            w[j] += vel[j]
        grad[j] = 0
        mark[j] = 0


@njit(parallel=True, cache=True)
def adam_update(
    W, b, m_W, v_W, m_b, v_b, touched_rows, n_touched, row_start, row_sample, row_pos,
    in_vals, out_ids, out_cnt, out_delta, l2, step_size, beta_1, beta_2, epsilon,
    grad_scratch, mark_scratch, cols_scratch,
):
    """Lazy Adam: update only the weights and biases the batch touched.

    Rows of W are split over threads by input; ``l2`` is alpha / sum(sample
    weights) (no penalty on biases, as sklearn); ``step_size`` is the
    bias-corrected learning rate of sklearn's AdamOptimizer for this step.
    """
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        grad, mark, cols = grad_scratch[tid], mark_scratch[tid], cols_scratch[tid]
        i = touched_rows[r]
        n_cols = _weight_row_gradient(i, row_start, row_sample, row_pos, in_vals, out_ids,
                                      out_cnt, out_delta, grad, mark, cols)
        _adam_apply(W[i], m_W[i], v_W[i], grad, mark, cols, n_cols, l2, step_size,
                    beta_1, beta_2, epsilon)
    grad, mark, cols = grad_scratch[0], mark_scratch[0], cols_scratch[0]
    n_cols = _bias_gradient(out_ids, out_cnt, out_delta, grad, mark, cols)
    _adam_apply(b, m_b, v_b, grad, mark, cols, n_cols, l2 * 0, step_size, beta_1, beta_2, epsilon)


@njit(parallel=True, cache=True)
def sgd_update(
    W, b, vel_W, vel_b, touched_rows, n_touched, row_start, row_sample, row_pos,
    in_vals, out_ids, out_cnt, out_delta, l2, learning_rate, momentum, nesterov,
    grad_scratch, mark_scratch, cols_scratch,
):
    """Lazy SGD with (Nesterov) momentum on the weights and biases the batch touched."""
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        grad, mark, cols = grad_scratch[tid], mark_scratch[tid], cols_scratch[tid]
        i = touched_rows[r]
        n_cols = _weight_row_gradient(i, row_start, row_sample, row_pos, in_vals, out_ids,
                                      out_cnt, out_delta, grad, mark, cols)
        _sgd_apply(W[i], vel_W[i], grad, mark, cols, n_cols, l2, learning_rate, momentum, nesterov)
    grad, mark, cols = grad_scratch[0], mark_scratch[0], cols_scratch[0]
    n_cols = _bias_gradient(out_ids, out_cnt, out_delta, grad, mark, cols)
    _sgd_apply(b, vel_b, grad, mark, cols, n_cols, l2 * 0, learning_rate, momentum, nesterov)
