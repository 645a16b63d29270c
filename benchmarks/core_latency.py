"""How far apart the two cores are: the round trip of a cache line between two threads.

One thread bumps a shared counter and waits until the other has bumped it
back; each round trip moves the counter's cache line from one core to the
other and back. On a virtual machine the host may move the two virtual CPUs
between its own cores, every few seconds: sharing a last-level cache, the
round trip takes about 100 ns on these machines, in other placements about
300 ns or 400-1100 ns, and every cache line of weights that one thread writes
and the other then reads pays that trip. Two threads of a synchronous fit gain
less in those states (see docs/performance.md), so bench_threads.py prints this
figure beside its timings.

    python benchmarks/core_latency.py --seconds 30
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("skipped: needs two threads")
        return 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        print(f"{time.perf_counter() - start:6.1f} s  {round_trip_ns():6.0f} ns", flush=True)
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
