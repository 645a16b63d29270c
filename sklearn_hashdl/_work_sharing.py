"""Sharing a parallel loop's items between threads: each its own share first, then the others'.

numba's ``prange`` gives each thread a fixed, equal share of the items. On a
virtual machine one virtual CPU can run the same work 1.5x slower than the other
for seconds at a time (its host core busy with other work), and the faster
thread then waits at the end of every kernel: replaying one batch's first-layer
update of the 3 x 1000 network on MNIST, two threads ran 1.33x faster than the
faster CPU alone in such rounds and 1.84x in the others (docs/performance.md,
Zen 4 sixth session; ``benchmarks/replay_update.py --per-cpu`` times each CPU).

Here each of a kernel's workers (``prange(n_workers(claims))``, one per thread)
takes its own share of the items in chunks, counting them off with an atomic
counter, and when that is done takes chunks of the other shares, so that a
thread that is ahead finishes a slower one's items (1.71x in those rounds,
unchanged in the others). A worker's own share is about what ``prange`` would
have given its thread (with numba's OpenMP and workqueue layers, which tie an
iteration to a thread), so the rows an update writes mostly stay on the core that
wrote them in the batch before. Items are computed the same way whichever worker
takes them: results do not depend on how the work was shared.

A kernel gets ``claims = new_claims(workers)`` (``Workspace.claims``), calls
``reset_claims`` before its parallel loop, and in it::

    for worker in prange(n_workers(claims)):
        first, stop, share = next_chunk(claims, worker, n_items, CHUNK, 0)
        while first < stop:
            for item in range(first, stop):
                ...  # per-worker scratch indexed by worker
            first, stop, share = next_chunk(claims, worker, n_items, CHUNK, share)

Column blocks (``_block_kernels``) have a share per block, each numbered from 0,
and their workers go through the shares themselves, their own first, taking
chunks with ``take_chunk``: a block's views are then made once per worker. There
another worker may take items only while more than a few are left (the block's
weights live in its owner's cache), and where they need data the owner prepares
first (the block's lists), only once the owner has called ``mark_ready``:
``share_ready`` tells, and a worker passes over a share not yet ready rather than
wait for it (with fewer threads than workers, its owner may run after).

Rules: per-worker scratch needs at least ``n_workers(claims)`` rows; two kernels
running at once (asynchronous training's threads) need claims of their own, since
each resets and advances its counters; the loop body must not rebind ``worker``,
``first``, ``stop`` or ``share``.
"""

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Spacing of the workers' counters, in int64s: 128 bytes, so that no cache line,
# nor pair of lines fetched together, holds two counters
CLAIM_STRIDE = 16
# Items a claim takes: weight rows of the update and neurons of the grouped
# forward pass take about a microsecond each, a sample's selection or backward
# pass several; an uncontended claim takes a few nanoseconds
ROW_CHUNK = 4
SAMPLE_CHUNK = 2
# a share's ready flag (mark_ready): in the second line of its counter's 128 bytes
READY_AT = CLAIM_STRIDE // 2


def new_claims(workers):
    """Claim counters for kernels shared among ``workers`` workers."""
    return np.zeros(max(1, workers) * CLAIM_STRIDE, np.int64)


def _counter_pointer(context, builder, signature, args):
    """LLVM pointer to array[index] for an intrinsic called with (array, index, ...)."""
    view = context.make_array(signature.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, signature.args[0], view, [args[1]])


def _is_counter_array(array):
    return isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.int64


@intrinsic
def _fetch_add(typingctx, array, index, value):
    """array[index] += value atomically (array: 1-D int64); returns the value before."""
    if not _is_counter_array(array):
        return None

    def codegen(context, builder, signature, args):
        pointer = _counter_pointer(context, builder, signature, args)
        return builder.atomic_rmw("add", pointer, args[2], "monotonic")
    return types.int64(array, types.intp, types.int64), codegen


@intrinsic
def _load_relaxed(typingctx, array, index):
    """array[index], read atomically (another worker may be adding to it)."""
    if not _is_counter_array(array):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_counter_pointer(context, builder, signature, args), "monotonic", 8)
    return types.int64(array, types.intp), codegen


@intrinsic
def _store_release(typingctx, array, index, value):
    """array[index] = value, ordered after every write before it (array: 1-D int64)."""
    if not _is_counter_array(array):
        return None

    def codegen(context, builder, signature, args):
        pointer = _counter_pointer(context, builder, signature, args)
        builder.store_atomic(args[2], pointer, "release", 8)
        return context.get_dummy_value()
    return types.void(array, types.intp, types.int64), codegen


@intrinsic
def _load_acquire(typingctx, array, index):
    """array[index], read before every read after it: what a ``_store_release``
    published is then seen with everything written before it."""
    if not _is_counter_array(array):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_counter_pointer(context, builder, signature, args), "acquire", 8)
    return types.int64(array, types.intp), codegen


@njit(cache=True, inline="always")
def n_workers(claims):
    return claims.shape[0] // CLAIM_STRIDE


@njit(cache=True, inline="always")
def reset_claims(claims):
    """Every share unclaimed (a loop: a slice assignment would be a parallel loop)."""
    for c in range(claims.shape[0]):
        claims[c] = 0


@njit(cache=True, inline="always")
def mark_ready(claims, worker):
    """Other workers may take the worker's share now: what its items need is written."""
    _store_release(claims, worker * CLAIM_STRIDE + READY_AT, 1)


@njit(cache=True, inline="always")
def next_chunk(claims, worker, n_items, chunk, share):
    """The next chunk [first, stop) of up to ``chunk`` items for ``worker``, from its
    own share or, once that is taken, from the next worker's, and so on. ``share``
    counts the shares past its own that the worker has reached: 0 at first, then
    what the call before returned. Returns (first, stop, share), with first == stop
    when all are taken."""
    n = n_workers(claims)
    while share < n:
        owner = (worker + share) % n
        start, stop = n_items * owner // n, n_items * (owner + 1) // n
        # a read first: on many cores, every worker looks at every share at the
        # end, and atomic adds on shares already taken would queue on their lines
        if start + _load_relaxed(claims, owner * CLAIM_STRIDE) < stop:
            first = start + _fetch_add(claims, owner * CLAIM_STRIDE, chunk)
            if first < stop:
                return first, min(first + chunk, stop), share
        share += 1
    return n_items, n_items, share


@njit(cache=True, inline="always")
def share_ready(claims, owner):
    """Has ``owner`` marked its share ready (``mark_ready``)?"""
    return _load_acquire(claims, owner * CLAIM_STRIDE + READY_AT) != 0


@njit(cache=True, inline="always")
def take_chunk(claims, owner, share_size, chunk, leave):
    """Up to ``chunk`` items [first, stop) of ``owner``'s share, items 0 to
    ``share_size`` - 1 of its own (a column block's rows), not yet taken; first ==
    stop when none are. A caller other than the owner passes ``leave`` > 0: it
    starts no chunk within the share's last ``leave`` items, though a chunk it
    begins before them may run into them (the owner passes 0)."""
    if _load_relaxed(claims, owner * CLAIM_STRIDE) < share_size - leave:
        first = _fetch_add(claims, owner * CLAIM_STRIDE, chunk)
        # the owner may have taken items meanwhile: a chunk claimed is the
        # caller's to compute, whether in the last items or not
        if first < share_size:
            return first, min(first + chunk, share_size)
    return share_size, share_size

