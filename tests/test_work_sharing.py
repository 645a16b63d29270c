"""Sharing a parallel loop's items among workers (sklearn_hashdl/_work_sharing.py)."""

import numba
import numpy as np
import pytest
from numba import njit, prange

from sklearn_hashdl._workspace import Workspace
from sklearn_hashdl._work_sharing import (CLAIM_STRIDE, mark_ready, n_workers, new_claims, next_chunk,
                                          reset_claims, share_ready, take_chunk)

from test_blocks import SIZES, _network_and_optimizer
from test_optimizer_kernels import FEW_COLUMNS, _batch, _kernel_lists, _random_layer, _update


@njit(parallel=True)
def _take_every_item(claims, n_items, chunk, times_taken, taken_by):
    reset_claims(claims)
    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, n_items, chunk, 0)
        while first < stop:
            for item in range(first, stop):
                times_taken[item] += 1
                taken_by[item] = worker
            first, stop, share = next_chunk(claims, worker, n_items, chunk, share)


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
@pytest.mark.parametrize("n_items", [0, 1, 7, 100])
@pytest.mark.parametrize("chunk", [1, 3])
def test_every_item_is_taken_once_whatever_the_threads(workers, n_items, chunk):
    claims = new_claims(workers)
    for _ in range(2):  # the kernel resets the claims of the call before
        times_taken, taken_by = np.zeros(n_items, np.int64), np.full(n_items, -1, np.int64)
        _take_every_item(claims, n_items, chunk, times_taken, taken_by)
        assert (times_taken == 1).all()
        assert ((0 <= taken_by) & (taken_by < workers)).all()


def test_a_worker_takes_its_own_share_first_then_the_others():
    claims = new_claims(2)
    chunks = []  # worker 0 alone, as when it is far ahead of worker 1
    first, stop, share = next_chunk(claims, 0, 10, 3, 0)
    while first < stop:
        chunks.append((first, stop, share))
        first, stop, share = next_chunk(claims, 0, 10, 3, share)
    # its share is items 0-4, worker 1's 5-9; a chunk never crosses into another share
    assert chunks == [(0, 3, 0), (3, 5, 0), (5, 8, 1), (8, 10, 1)]
    assert next_chunk(claims, 1, 10, 3, 0)[:2] == (10, 10)  # nothing left for worker 1
    reset_claims(claims)
    assert next_chunk(claims, 1, 10, 3, 0) == (5, 8, 0)


def _taken(claims, owner, share_size, chunk, leave):
    """Every chunk ``take_chunk`` gives, in order, until it gives none."""
    chunks = [take_chunk(claims, owner, share_size, chunk, leave)]
    while chunks[-1][0] < chunks[-1][1]:
        chunks.append(take_chunk(claims, owner, share_size, chunk, leave))
    return chunks[:-1]


def test_another_worker_leaves_the_owner_its_last_items():
    claims = new_claims(2)
    # another worker takes block 1's items 0-9 but the last 4; the owner the rest
    assert _taken(claims, 1, 10, 3, 4) == [(0, 3), (3, 6)]
    assert _taken(claims, 1, 10, 3, 0) == [(6, 9), (9, 10)]
    assert _taken(claims, 0, 10, 3, 0) == [(0, 3), (3, 6), (6, 9), (9, 10)]  # shares apart
    reset_claims(claims)
    assert _taken(claims, 1, 10, 4, 3) == [(0, 4), (4, 8)]  # a chunk may run into the last items


def test_a_share_is_ready_once_marked_until_reset():
    claims = new_claims(3)
    mark_ready(claims, 2)
    assert [share_ready(claims, owner) for owner in range(3)] == [False, False, True]
    assert _taken(claims, 2, 5, 2, 0) == [(0, 2), (2, 4), (4, 5)]  # the mark is not a claim
    reset_claims(claims)
    assert not share_ready(claims, 2)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_the_update_does_not_depend_on_how_many_workers_share_it(solver):
    rng = np.random.RandomState(3)
    rows, cols = _batch(rng, FEW_COLUMNS * 4)
    W, b, state = _random_layer(rng)
    results = []
    for workers in (1, 2, 3, 8):  # the scratch has rows for 8 workers
        arrays = [a.copy() for a in [W, b] + state]
        lists, scratch = _kernel_lists(rows, cols)
        scratch = scratch[:-1] + (new_claims(workers),)
        _update(solver, arrays, lists, scratch)
        results.append(arrays)
    assert not np.array_equal(results[0][0], W)  # the batch moved the weights
    for arrays in results[1:]:
        for got, expected in zip(arrays, results[0]):
            np.testing.assert_array_equal(got, expected)


def test_workspace_claims_follow_its_thread_count():
    # a worker per thread, and never more than the per-thread scratch has rows
    network, _ = _network_and_optimizer("adam")
    ws = Workspace(network, 16, SIZES[0])
    assert ws.claims.shape == (numba.get_num_threads() * CLAIM_STRIDE,)
    ws.n_threads = 1
    assert ws.claims.shape == (CLAIM_STRIDE,)
    ws.n_threads = numba.config.NUMBA_NUM_THREADS + 3
    assert ws.claims.shape == (numba.config.NUMBA_NUM_THREADS * CLAIM_STRIDE,)
    assert ws.grad.shape[0] == numba.config.NUMBA_NUM_THREADS
