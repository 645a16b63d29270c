"""How far apart the two cores are: the round trip of a cache line between two threads.

One thread bumps a shared counter and waits until the other has bumped it
back; each round trip moves the counter's cache line from one core to the
other and back. On a virtual machine the host may move the two virtual CPUs
between its own cores, every few seconds: sharing a last-level cache, the
round trip takes about 100 ns on these machines, in other placements about
300 ns or 400-1100 ns. Two threads of a synchronous fit gain less in those
states (see docs/performance.md), so bench_threads.py prints this figure beside
its timings.

With ``--handoff`` each line also times one thread summing the rows of a
512 KB array (128 rows in a shuffled order, as the update reads a batch's
copies) that the same thread, or the other, has just written: a stream of
lines that one core hands to the other. ``--rewrite`` times thread 0 writing
the array again after the same thread, or the other, has read it.

    python benchmarks/core_latency.py --seconds 30
    python benchmarks/core_latency.py --seconds 120 --handoff --rewrite
"""

import argparse
import time

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def _item_pointer(context, builder, signature, args):
    """LLVM pointer to array[index] for an intrinsic called with (array, index, ...)."""
    view = context.make_array(signature.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, signature.args[0], view, [args[1]])


@intrinsic
def _load_acquire(typingctx, array, index):
    """array[index] read atomically (a plain load could be hoisted out of a spin loop)."""
    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature, args)
        return builder.load_atomic(pointer, "acquire", 8)
    return types.int64(array, index), codegen


@intrinsic
def _store_release(typingctx, array, index, value):
    """array[index] = value, atomically, visible to the other thread at once."""
    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature, args)
        builder.store_atomic(args[2], pointer, "release", 8)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


# a thread that waits this many reads gives up: with work-stealing threads
# (TBB) both halves of the ping-pong may land on one thread, which would wait forever
MAX_SPINS = 50_000_000
_PING, _ABORT = 0, 8  # counter slots on separate cache lines


@njit(parallel=True, cache=True)
def _ping_pong(counter, n_trips):
    """Thread 0 makes the counter odd, thread 1 makes it even again, n_trips times."""
    for worker in prange(2):
        for trip in range(n_trips):
            odd = 2 * trip + 1
            if worker == 0:
                _store_release(counter, _PING, odd)
            awaited = odd + 1 if worker == 0 else odd
            spins = 0
            while _load_acquire(counter, _PING) != awaited and spins < MAX_SPINS:
                spins += 1
                if _load_acquire(counter, _ABORT) != 0:
                    spins = MAX_SPINS
            if spins == MAX_SPINS:
                _store_release(counter, _ABORT, 1)
                break
            if worker == 1:
                _store_release(counter, _PING, odd + 1)


def round_trip_ns(n_trips=20000):
    """Median nanoseconds per round trip over 5 runs of ``n_trips``; NaN when the
    two threads did not run at once (needs NUMBA_NUM_THREADS >= 2)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        counter = np.zeros(16, np.int64)
        times = []
        for _ in range(6):
            counter[:] = 0
            start = time.perf_counter()
            _ping_pong(counter, n_trips)
            times.append(np.nan if counter[_ABORT] else (time.perf_counter() - start) / n_trips * 1e9)
        return float(np.median(times[1:]))  # the first run includes waking the threads
    finally:
        numba.set_num_threads(previous)


@njit(parallel=True, cache=True)
def _write_rows(rows, writer, value):
    """Thread ``writer`` (0 or 1) fills every row; the other does nothing."""
    for worker in prange(2):
        if worker == writer:
            for i in range(rows.shape[0]):
                row = rows[i]
                for j in range(row.shape[0]):
                    row[j] = value + j


@njit(parallel=True, cache=True)
def _sum_rows(rows, reader, order, sums):
    """Thread ``reader`` adds the rows, in ``order``, into its row of ``sums``."""
    for worker in prange(2):
        if worker == reader:
            out = sums[worker]
            for r in range(order.shape[0]):
                row = rows[order[r]]
                for j in range(row.shape[0]):
                    out[j] += row[j]


def _median_us_per_reader(step, n_calls):
    """For reader 0 then 1: the median microseconds of ``step(rows, reader, order,
    sums, call)``'s timed part, over n_calls calls on a 512 KB array of rows."""
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        rows = np.zeros((128, 1000), np.float32)
        order = np.random.RandomState(0).permutation(len(rows))
        sums = np.zeros((2, rows.shape[1]), np.float32)
        return tuple(float(np.median([step(rows, reader, order, sums, call)
                                      for call in range(n_calls)])) * 1e6
                     for reader in (0, 1))
    finally:
        numba.set_num_threads(previous)


def _seconds(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def handoff_us(n_calls=300):
    """Median microseconds for a thread to sum 512 KB of rows that thread 0 has
    just written: (read by thread 0, read by thread 1)."""
    def step(rows, reader, order, sums, call):
        _write_rows(rows, 0, float(call))
        return _seconds(_sum_rows, rows, reader, order, sums)
    return _median_us_per_reader(step, n_calls)


def rewrite_us(n_calls=300):
    """Median microseconds for thread 0 to write 512 KB of rows again after a
    thread has read them: (read by thread 0, read by thread 1). After thread 1
    reads them, each line thread 0 writes must first be taken back from the
    other core's cache, as the update's serial preparation does with the rows
    the other thread read in the previous batch."""
    def step(rows, reader, order, sums, call):
        _write_rows(rows, 0, float(call))
        _sum_rows(rows, reader, order, sums)
        return _seconds(_write_rows, rows, 0, float(call) + 0.5)
    return _median_us_per_reader(step, n_calls)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--handoff", action="store_true",
                        help="also time reading 512 KB written by the same or the other thread")
    parser.add_argument("--rewrite", action="store_true",
                        help="also time thread 0 writing 512 KB again after the same or the "
                             "other thread read it")
    args = parser.parse_args(argv)
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("skipped: needs two threads")
        return 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        line = f"{time.perf_counter() - start:6.1f} s  {round_trip_ns():6.0f} ns"
        if args.handoff:
            own, other = handoff_us()
            line += f"  512 KB written by thread 0, read by it {own:5.0f} us, by thread 1 {other:5.0f} us"
        if args.rewrite:
            own, other = rewrite_us()
            line += f"  rewritten by thread 0 after it read it {own:5.0f} us, after thread 1 {other:5.0f} us"
        print(line, flush=True)
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
