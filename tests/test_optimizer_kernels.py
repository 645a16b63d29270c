"""The lazy Adam and SGD kernels against a NumPy reference of the same rules.

A weight row is updated either by visiting its touched entries one by one or,
when many are touched, by a vectorised sweep of the whole row that keeps the
untouched entries by a select. Both paths must apply sklearn's rule to exactly
the touched entries and leave every other weight and moment bit for bit alone,
whether the columns come as lists (their gradient scattered sample by sample,
or summed over compact dense copies of the batch's lists) or as whole rows with
their zeros (as a neuron-major first layer sees dense input; their gradient
sums two rows a pass). When the batch names few columns, the compact sums step
each row over those columns alone: a third path with the same duty.
"""

import numba
import numpy as np
import pytest

from sklearn_hashdl import _kernels
from sklearn_hashdl._optim import SparseOptimizer
from sklearn_hashdl._workspace import _thread_scratch, compact_scratch
from sklearn_hashdl._work_sharing import new_claims

N_ROWS, WIDTH = 4, 100
# (sample, input rows with values, active columns): row 0 meets 73 columns and
# row 1 meets 70 (whole-row sweeps), row 2 meets 2 (the one-by-one path), row 3 none;
# 73 columns in all, more than the 64 of one word of the compact sums' marks
SAMPLES = [({0: 0.5, 1: -1.5}, list(range(70))), ({0: 2.0}, [75, 76, 97]), ({2: 1.25}, [5, 7])]
# 19 columns in all, at most 1 in UNION_STEP_FRACTION of the 100: rows 0, 1 and 2
# meet 18, 15 and 2 of them
FEW_COLUMNS = [({0: 0.5, 1: -1.5}, list(range(0, 30, 2))), ({0: 2.0}, [3, 5, 27]), ({2: 1.25}, [5, 7])]
# as whole rows, columns 0-69, 75-97 and 5-7 span the non-zeros (row 0 sums two of
# them in one pass over their union), and a sample with no columns is a row of zeros
WITH_ZERO_ROW = SAMPLES + [({3: 1.0, 2: 0.5}, [])]


def _batch(rng, samples=SAMPLES):
    B = len(samples)
    row_ids = np.zeros((B, WIDTH), np.int32)
    row_vals = np.zeros((B, WIDTH), np.float32)
    row_cnt = np.zeros(B, np.int32)
    col_ids = np.zeros((B, WIDTH), np.int32)
    col_vals = np.zeros((B, WIDTH), np.float32)
    col_cnt = np.zeros(B, np.int32)
    for s, (inputs, columns) in enumerate(samples):
        row_cnt[s], col_cnt[s] = len(inputs), len(columns)
        row_ids[s, : len(inputs)] = list(inputs)
        row_vals[s, : len(inputs)] = list(inputs.values())
        col_ids[s, : len(columns)] = columns
        col_vals[s, : len(columns)] = rng.randn(len(columns))
    return (row_ids, row_vals, row_cnt), (col_ids, col_vals, col_cnt)


def _reference_gradients(rows, cols):
    """Dense float64 gradients and touched masks of W and b."""
    (row_ids, row_vals, row_cnt), (col_ids, col_vals, col_cnt) = rows, cols
    grad_W, touched_W = np.zeros((N_ROWS, WIDTH)), np.zeros((N_ROWS, WIDTH), bool)
    grad_b, touched_b = np.zeros(WIDTH), np.zeros(WIDTH, bool)
    for s in range(len(row_cnt)):
        ids, deltas = col_ids[s, : col_cnt[s]], col_vals[s, : col_cnt[s]].astype(np.float64)
        grad_b[ids] += deltas
        touched_b[ids] = True
        for i, x in zip(row_ids[s, : row_cnt[s]], row_vals[s, : row_cnt[s]]):
            grad_W[i, ids] += float(x) * deltas
            touched_W[i, ids] = True
    return (grad_W, touched_W), (grad_b, touched_b)


def _whole_rows(col_ids, col_vals, col_cnt):
    """The column lists as whole dense rows, zeros included, as the batch loader
    writes them for a neuron-major first layer: ((ids, counts, values), spans)."""
    B = len(col_cnt)
    dense = np.zeros((B, WIDTH), np.float32)
    for s in range(B):
        dense[s, col_ids[s, : col_cnt[s]]] = col_vals[s, : col_cnt[s]]
    ids, vals, nz_ids, nz_vals = (np.zeros((B, WIDTH), dtype) for dtype in (np.int32, np.float32) * 2)
    cnt, nnz, spans = np.zeros(B, np.int32), np.zeros(B, np.int32), np.zeros((B, 2), np.int32)
    _kernels.dense_rows_to_full_lists(dense, np.arange(B, dtype=np.int64), ids, vals, cnt, nnz, nz_ids,
                                      nz_vals, spans)
    return (ids, cnt, vals), spans


def _kernel_lists(rows, cols, whole_rows=False, compact=True):
    """The kernels' arguments; with ``whole_rows`` the columns are given as whole
    rows, zeros included (as a neuron-major first layer sees its dense input).
    Column lists are summed over compact dense copies, or without ``compact``
    scattered sample by sample."""
    (row_ids, row_vals, row_cnt), (col_ids, col_vals, col_cnt) = rows, cols
    n = row_ids.size
    row_start, row_sample, row_pos = np.zeros(N_ROWS + 1, np.int64), np.zeros(n, np.int32), np.zeros(n, np.int32)
    touched = np.zeros(N_ROWS, np.int32)
    n_touched = _kernels.invert_lists(row_ids, row_cnt, N_ROWS, row_start, row_sample, row_pos, touched)
    scratch = tuple(_thread_scratch(8, WIDTH, dtype) for dtype in (np.float32, np.uint8, np.int32))
    scratch += (compact_scratch(8, len(col_cnt), WIDTH, WIDTH if compact else 0),
                new_claims(min(8, numba.get_num_threads())))  # a worker per scratch row at most
    columns, spans = (col_ids, col_cnt, col_vals), _kernels.NO_SPANS
    if whole_rows:
        columns, spans = _whole_rows(col_ids, col_vals, col_cnt)
    # the biases follow the column lists either way
    lists = (touched, n_touched, row_start, row_sample, row_pos, row_vals, *columns, spans,
             col_ids, col_cnt, col_vals)
    return lists, scratch


@pytest.mark.parametrize("whole_rows, compact, samples, touched_per_row", [
    (False, True, SAMPLES, [73, 70, 2, 0]), (False, False, SAMPLES, [73, 70, 2, 0]),
    (True, False, SAMPLES, [73, 70, 2, 0]), (False, True, FEW_COLUMNS, [18, 15, 2, 0]),
    (True, False, WITH_ZERO_ROW, [73, 70, 2, 0])],
    ids=["compact column lists", "scattered column lists", "whole rows", "compact, few columns",
         "whole rows, one of zeros"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "sgd_nesterov"])
def test_update_kernels_apply_the_rule_to_touched_entries_only(solver, whole_rows, compact, samples,
                                                               touched_per_row):
    rng = np.random.RandomState(0)
    # the compact sums pay off when each row meets many samples: repeat the batch
    rows, cols = _batch(rng, samples * 4 if compact else samples)
    if not whole_rows:
        # a listed column whose delta is 0 is touched all the same (its moments
        # decay), as in a dense step; whole rows cannot tell it from an absent one
        col_ids, col_vals, col_cnt = cols
        col_vals[(col_cnt == 2) & (col_ids[:, 1] == 7), 1] = 0
    (grad_W, touched_W), (grad_b, touched_b) = _reference_gradients(rows, cols)
    assert touched_W.sum(axis=1).tolist() == touched_per_row
    n_columns = len(np.unique(np.concatenate([c for _, c in samples])))
    assert (n_columns * _kernels.UNION_STEP_FRACTION <= WIDTH) == (samples is FEW_COLUMNS)
    W, b, state = _random_layer(rng)
    before = [a.copy() for a in [W, b] + state]
    # as whole rows, row 0 sums its two samples in one pass, rows 1 and 2 one sample
    lists, scratch = _kernel_lists(rows, cols, whole_rows, compact)
    l2, lr = 0.01, 0.05
    if solver == "adam":
        beta_1, beta_2, eps = 0.9, 0.999, 1e-8
        _kernels.adam_update(W, b, *state, *lists, np.float32(l2), np.float32(lr), np.float32(beta_1),
                             np.float32(beta_2), np.float32(eps), *scratch)
    else:
        momentum, nesterov = 0.9, solver == "sgd_nesterov"
        _kernels.sgd_update(W, b, state[0], state[2], *lists, np.float32(l2), np.float32(lr),
                            np.float32(momentum), nesterov, *scratch)
    for name, new, old, grad, touched, decay in (
        ("W", W, before[0], grad_W, touched_W, l2), ("b", b, before[1], grad_b, touched_b, 0.0)
    ):
        first, second = (state[0], state[1]) if name == "W" else (state[2], state[3])
        first_old, second_old = (before[2], before[3]) if name == "W" else (before[4], before[5])
        w, g = old.astype(np.float64), grad + decay * old
        if solver == "adam":
            m = beta_1 * first_old + (1 - beta_1) * g
            v = beta_2 * second_old + (1 - beta_2) * g * g
            expected = [w - lr * m / (np.sqrt(v) + eps), m, v]
            got, olds = [new, first, second], [old, first_old, second_old]
        else:
            velocity = momentum * first_old - lr * g
            step = momentum * velocity - lr * g if nesterov else velocity
            expected, got, olds = [w + step, velocity], [new, first], [old, first_old]
        for exp, out, prev in zip(expected, got, olds):
            np.testing.assert_allclose(out[touched], exp[touched], rtol=2e-5, atol=1e-6, err_msg=name)
            np.testing.assert_array_equal(out[~touched], prev[~touched], err_msg=name)
    # the scratch is left cleared for the next layer
    slot, _, _, _, acc_grad, acc_bits = scratch[3]
    assert not scratch[0].any() and not scratch[1].any()
    assert (slot == -1).all() and not acc_grad.any() and not acc_bits.any()
    # the compact sums ran exactly when asked for: they leave their dense copies
    assert scratch[3][3].any() == compact


@pytest.mark.parametrize("n_rows", [0, 1, 5, 64])
def test_invert_lists_groups_pairs_by_id_in_sample_order(n_rows):
    rng = np.random.default_rng(n_rows)
    n_ids, width = 40, 12
    cnt = rng.integers(0, width + 1, n_rows).astype(np.int32)
    ids = np.zeros((n_rows, width), np.int32)
    for s in range(n_rows):
        ids[s, : cnt[s]] = rng.choice(n_ids, cnt[s], replace=False)
    row_start, touched = np.full(n_ids + 1, -1, np.int64), np.full(n_ids, -1, np.int32)
    row_sample, row_pos = np.full(max(1, cnt.sum()), -1, np.int32), np.full(max(1, cnt.sum()), -1, np.int32)
    n_touched = _kernels.invert_lists(ids, cnt, n_ids, row_start, row_sample, row_pos, touched)
    pairs = sorted((ids[s, q], s, q) for s in range(n_rows) for q in range(cnt[s]))
    listed = [(i, row_sample[e], row_pos[e]) for i in range(n_ids)
              for e in range(row_start[i], row_start[i + 1])]
    assert listed == pairs
    assert row_start[0] == 0 and row_start[n_ids] == len(pairs)
    present = sorted({i for i, _, _ in pairs})
    assert n_touched == len(present) and touched[:n_touched].tolist() == present


@pytest.mark.parametrize("n_threads", [1, 2])
def test_invert_levels_groups_each_level_as_invert_lists_does(n_threads):
    # levels of different widths, id counts and sizes, in flat arrays at the
    # starts of a layout; the levels not asked for stay untouched
    rng = np.random.default_rng(n_threads)
    batch, n_rows = 6, 5
    shapes = [(12, 40), (3, 7), (9, 9), (5, 300)]  # (width, number of ids) per level
    layout, ends, level_ids = [], np.zeros(4, np.int64), []
    cnt = np.zeros((len(shapes), batch), np.int32)
    for level, (width, n_ids) in enumerate(shapes):
        ids = np.zeros((batch, width), np.int32)
        for s in range(batch):
            cnt[level, s] = rng.integers(0, width + 1)
            ids[s, : cnt[level, s]] = rng.choice(n_ids, cnt[level, s], replace=False)
        level_ids.append(ids)
        sizes = (batch * width, width, n_ids, n_ids + 1, batch * width, n_ids)
        at = ends.copy()  # ids, row_start, pairs, touched: where this level's segments start
        layout.append([at[0], width, n_ids, at[1], at[2], at[3]])
        ends += np.array([sizes[0], sizes[3] + 3, sizes[4] + 1, sizes[5]])  # some gaps
    flat_ids = np.zeros(ends[0], np.int32)
    for (at, *_), ids in zip(layout, level_ids):
        flat_ids[at: at + ids.size] = ids.ravel()
    row_start, touched = np.full(ends[1], -1, np.int64), np.full(ends[3], -1, np.int32)
    row_sample, row_pos = np.full(ends[2], -1, np.int32), np.full(ends[2], -1, np.int32)
    n_touched = np.full(len(shapes), -1, np.int64)
    numba.set_num_threads(n_threads)
    try:
        _kernels.invert_levels(np.array([3, 0, 2], np.int64), n_rows, np.array(layout, np.int64),
                               flat_ids, cnt, row_start, row_sample, row_pos, touched, n_touched,
                               numba.get_num_threads())
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for level in (0, 2, 3):
        width, n_ids = shapes[level]
        at = layout[level]
        expected = [np.full(n_ids + 1, -1, np.int64), np.full(batch * width, -1, np.int32),
                    np.full(batch * width, -1, np.int32), np.full(n_ids, -1, np.int32)]
        n_expected = _kernels.invert_lists(level_ids[level], cnt[level, :n_rows], n_ids, *expected[:3],
                                           expected[3])
        assert n_touched[level] == n_expected
        np.testing.assert_array_equal(row_start[at[3]: at[3] + n_ids + 1], expected[0])
        np.testing.assert_array_equal(row_sample[at[4]: at[4] + batch * width], expected[1])
        np.testing.assert_array_equal(row_pos[at[4]: at[4] + batch * width], expected[2])
        np.testing.assert_array_equal(touched[at[5]: at[5] + n_ids], expected[3])
    assert n_touched[1] == -1  # level 1 was not asked for
    at = layout[1]
    assert (row_start[at[3]: at[3] + shapes[1][1] + 1] == -1).all()
    assert (touched[at[5]: at[5] + shapes[1][1]] == -1).all()


def _random_layer(rng):
    """Random weights W (N_ROWS, WIDTH), biases b and four optimizer state arrays
    shaped as W, W, b, b."""
    W, b = rng.randn(N_ROWS, WIDTH).astype(np.float32), rng.randn(WIDTH).astype(np.float32)
    return W, b, [rng.rand(*a.shape).astype(np.float32) for a in (W, W, b, b)]


def _update(solver, arrays, lists, scratch):
    """One lazy Adam (l2 0.01, step 0.05) or Nesterov SGD step on ``arrays`` =
    [W, b, and the moments of W and b: m_W, v_W, m_b, v_b for Adam]."""
    if solver == "adam":
        _kernels.adam_update(*arrays, *lists, np.float32(0.01), np.float32(0.05), np.float32(0.9),
                             np.float32(0.999), np.float32(1e-8), *scratch)
    else:
        _kernels.sgd_update(arrays[0], arrays[1], arrays[2], arrays[4], *lists, np.float32(0.01),
                            np.float32(0.05), np.float32(0.9), True, *scratch)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_union_step_equals_the_other_paths_bit_for_bit(solver):
    # column blocks choose their path per block, the one matrix per layer: the
    # step over the batch's columns alone must give exactly what the others give
    rng = np.random.RandomState(1)
    rows, cols = _batch(rng, FEW_COLUMNS * 4)
    W, b, state = _random_layer(rng)
    results = []
    for compact in (True, False):  # the union step, and the sums sample by sample
        arrays = [a.copy() for a in [W, b] + state]
        lists, scratch = _kernel_lists(rows, cols, compact=compact)
        _update(solver, arrays, lists, scratch)
        assert scratch[3][3].any() == compact  # the compact copies were made, or not
        results.append(arrays)
    for with_union_step, sample_by_sample in zip(*results):
        np.testing.assert_array_equal(with_union_step, sample_by_sample)


def test_whole_row_spans_cover_each_rows_non_zeros():
    X = np.array([[0, 0, 1, 0, 2, 0], [0, 0, 0, 0, 0, 0], [3, 1, 1, 1, 1, 4], [0, 0, 0, 0, 0, 5]],
                 np.float32)
    B, n = X.shape
    ids, vals, nz_ids, nz_vals = (np.zeros((B, n), dtype) for dtype in (np.int32, np.float32) * 2)
    cnt, nnz, spans = np.zeros(B, np.int32), np.zeros(B, np.int32), np.zeros((B, 2), np.int32)
    _kernels.dense_rows_to_full_lists(X, np.arange(B, dtype=np.int64), ids, vals, cnt, nnz, nz_ids,
                                      nz_vals, spans)
    # a row of zeros spans nothing, as (n, 0): the union of spans by min and max skips it
    assert spans.tolist() == [[2, 5], [n, 0], [0, n], [5, 6]]
    np.testing.assert_array_equal(vals, X)
    assert cnt.tolist() == [n] * B and nnz.tolist() == [2, 0, 6, 1]


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_new_optimizer_state_is_zeros_laid_out_like_the_parameters(solver):
    # the kernels take a neuron-major layer's moments transposed, as its weights
    neuron_major = np.zeros((6, 5), np.float32, order="F")
    weights = [np.ones((3, 6), np.float32), neuron_major, np.ones((5, 1), np.float32)]
    biases = [np.ones(6, np.float32), np.ones(5, np.float32), np.ones(1, np.float32)]
    params = {"solver": solver, "learning_rate_init": 0.01}
    state = SparseOptimizer.new_state(params, weights, biases)
    for name in ("m_W", "v_W") if solver == "adam" else ("vel_W",):
        assert [A.flags.c_contiguous for A in state[name]] == [True, False, True]
        assert state[name][1].T.flags.c_contiguous
    for name, arrays in state.items():
        if isinstance(arrays, list):
            like = weights if name.endswith("W") else biases
            assert [(A.shape, A.dtype) for A in arrays] == [(B.shape, B.dtype) for B in like]
            assert all(not A.any() for A in arrays)
