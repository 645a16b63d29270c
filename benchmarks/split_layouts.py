"""Three ways to split a layer's Adam step between two threads, after the reads a fit makes.

The 3 x 1000 network's forward and backward passes read each touched weight row on
both threads (they are split by sample), and the update then writes each row on
one thread. With the two cores far apart, writing a line that the other core holds
costs an invalidation across the fabric, and the update gains nothing from the
second thread (docs/performance.md, Zen 1 third session). This script measures,
on a 1000 x 1000 layer with 300 touched rows, the Adam step of those rows
(weights and both moments) after untimed reads of them:

- ``1 thread``: one thread reads and updates every row (a one-thread fit);
- ``rows``: both threads read every row, each updates half of the rows (today's split);
- ``columns``: each thread reads and updates its half of every row's columns, in
  the one matrix: the halves are neighbours in memory, so each thread's sweeps run
  into the other's half (the prefetchers, and a shared line at each row's end);
- ``column blocks``: the same split, with each thread's columns stored as a matrix
  of its own (the layout a column-owner design would need).

Each round prints the round trip between the cores (``core_latency.py``); the host
moves its virtual CPUs about, so run several rounds.

    python benchmarks/split_layouts.py --rounds 6
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_latency import round_trip_ns  # noqa: E402

N_NEURONS, N_TOUCHED = 1000, 300
SPLIT = 496  # a multiple of 16 floats: no cache line holds columns of both halves
N_READERS = 64  # parallel iterations of the untimed reads, like a batch's samples


@njit(inline="always", error_model="numpy")
def _adam_columns(w, m, v, g, lo, hi):
    for j in range(lo, hi):
        m_new = np.float32(0.9) * m[j] + np.float32(0.1) * g[j]
        v_new = np.float32(0.999) * v[j] + np.float32(0.001) * g[j] * g[j]
        m[j], v[j] = m_new, v_new
        w[j] -= np.float32(1e-3) * m_new / (np.sqrt(v_new) + np.float32(1e-8))


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def update_rows(W, M, V, G, rows):
    for r in prange(rows.shape[0]):
        i = rows[r]
        _adam_columns(W[i], M[i], V[i], G[r % G.shape[0]], 0, W.shape[1])


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def update_columns(W, M, V, G, rows):
    for half in prange(2):
        lo, hi = (0, SPLIT) if half == 0 else (SPLIT, W.shape[1])
        for r in range(rows.shape[0]):
            i = rows[r]
            _adam_columns(W[i], M[i], V[i], G[r % G.shape[0]], lo, hi)


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def update_blocks(W0, M0, V0, G0, W1, M1, V1, G1, rows):
    """Weights, moments and gradients of each half's columns, as matrices of their own."""
    for half in prange(2):
        W, M, V, G = (W0, M0, V0, G0) if half == 0 else (W1, M1, V1, G1)
        for r in range(rows.shape[0]):
            i = rows[r]
            _adam_columns(W[i], M[i], V[i], G[r % G.shape[0]], 0, W.shape[1])


@njit(nogil=True, parallel=True, cache=True)
def read_rows(W, rows, sums):
    """Every iteration reads a word of each cache line of the rows (a sample's reads)."""
    for k in prange(sums.shape[0]):
        total = np.float32(0)
        for r in range(rows.shape[0]):
            w = W[rows[r]]
            for j in range(0, w.shape[0], 16):
                total += w[j]
        sums[k] = total


@njit(nogil=True, parallel=True, cache=True)
def read_columns(W, rows, sums):
    """Each half's thread reads its columns of the rows, as often as read_rows does."""
    for half in prange(2):
        lo, hi = (0, SPLIT) if half == 0 else (SPLIT, W.shape[1])
        total = np.float32(0)
        for _ in range(sums.shape[0] // 2):
            for r in range(rows.shape[0]):
                w = W[rows[r]]
                for j in range(lo, hi, 16):
                    total += w[j]
        sums[half] = total


@njit(nogil=True, parallel=True, cache=True)
def read_blocks(W0, W1, rows, sums):
    for half in prange(2):
        W = W0 if half == 0 else W1
        total = np.float32(0)
        for _ in range(sums.shape[0] // 2):
            for r in range(rows.shape[0]):
                w = W[rows[r]]
                for j in range(0, w.shape[0], 16):
                    total += w[j]
        sums[half] = total


def make_layer(seed=0):
    """Weights, moments and gradients of a layer, its touched rows, and per half of the
    columns (weights, moments, gradients) copied into matrices of their own."""
    rng = np.random.default_rng(seed)
    W, M, V = (rng.random((N_NEURONS, N_NEURONS), dtype=np.float32) for _ in range(3))
    G = rng.random((16, N_NEURONS), dtype=np.float32) * np.float32(1e-3)
    rows = np.sort(rng.choice(N_NEURONS, N_TOUCHED, replace=False)).astype(np.int64)
    blocks = tuple(tuple(np.ascontiguousarray(A[:, columns]) for A in (W, M, V, G))
                   for columns in (slice(0, SPLIT), slice(SPLIT, None)))
    return W, M, V, G, rows, blocks


def splits(W, M, V, G, rows, blocks):
    """name -> (untimed reads, their threads, timed update, its threads)."""
    sums = np.zeros(N_READERS, np.float32)
    return {
        "1 thread": (lambda: read_rows(W, rows, sums), 1,
                     lambda: update_rows(W, M, V, G, rows), 1),
        "rows": (lambda: read_rows(W, rows, sums), 2,
                 lambda: update_rows(W, M, V, G, rows), 2),
        "columns": (lambda: read_columns(W, rows, sums), 2,
                    lambda: update_columns(W, M, V, G, rows), 2),
        "column blocks": (lambda: read_blocks(blocks[0][0], blocks[1][0], rows, sums), 2,
                          lambda: update_blocks(*blocks[0], *blocks[1], rows), 2),
    }


def mean_us(read, read_threads, update, update_threads, n_calls):
    """Mean microseconds of ``update``, each call after an untimed ``read``."""
    seconds = 0.0
    for _ in range(n_calls):
        numba.set_num_threads(read_threads)
        read()
        numba.set_num_threads(update_threads)
        start = time.perf_counter()
        update()
        seconds += time.perf_counter() - start
    return seconds / n_calls * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("skipped: needs two threads")
        return 0
    cases = splits(*make_layer())
    previous = numba.get_num_threads()
    print(f"Adam step of {N_TOUCHED} rows of a {N_NEURONS} x {N_NEURONS} layer after reads; "
          f"microseconds per call (mean of {args.calls}) and speed-up against 1 thread")
    try:
        for case in cases.values():
            mean_us(*case, n_calls=1)  # compile, warm
        for _ in range(args.rounds):
            before = round_trip_ns()
            us = {name: mean_us(*case, n_calls=args.calls) for name, case in cases.items()}
            one = us["1 thread"]
            print(f"round trip {before:4.0f} ns before, {round_trip_ns():4.0f} ns after | "
                  + " | ".join(f"{name} {t:5.0f} ({one / t:.2f}x)" for name, t in us.items()),
                  flush=True)
    finally:
        numba.set_num_threads(previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
