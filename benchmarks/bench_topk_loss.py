"""The exact top-k and the output loss kernel alone, on one thread.

Top-k: ``_select._top_by_score`` (the cut, then ``_order_top``) per sample, over
rows of random scores, for several (neurons, kept) shapes. It is timed twice:
over many fresh rows, as training sees them, and over a few rows used again and
again, which lets a branch predictor learn them (a quickselect measured that way
looked three times faster than it ran in fits: docs/performance.md, Zen 4
fourteenth session). A kernel without data-dependent branches times the same
either way.

Loss: ``_kernels.output_loss_and_delta`` on a batch of dense outputs (many labels),
logistic and softmax.

    python benchmarks/bench_topk_loss.py
    python benchmarks/bench_topk_loss.py --fresh-rows 5000 --shapes 100:32,1000:50 --outputs 983
"""

import argparse
import time

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit

from sklearn_hashdl import _kernels, _select
from sklearn_hashdl._inputs import Targets


@njit(cache=True)
def _top_k_rows(S, k, passes, ids, row, kept, scores):
    """``_top_by_score`` of each row of S, ``passes`` times over; a checksum."""
    n = S.shape[1]
    total = 0
    for _ in range(passes):
        for s in range(S.shape[0]):
            scores[:] = S[s]
            total += _select._top_by_score(ids, scores, n, k, row, kept, 0) + row[0]
    return total


@njit(cache=True)
def _copy_rows(S, passes, scores):
    """The copying alone, to subtract."""
    total = 0.0
    for _ in range(passes):
        for s in range(S.shape[0]):
            scores[:] = S[s]
            total += scores[0]
    return total


def time_top_k(n, k, n_rows, passes, rng):
    """Microseconds a sample for the top k of n random scores, over n_rows rows."""
    S = rng.normal(size=(n_rows, n)).astype(np.float32)
    ids = np.arange(n, dtype=np.int32)
    row, kept, scores = np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.float32)
    _top_k_rows(S, k, 1, ids, row, kept, scores)  # compiled, and caches warm
    _copy_rows(S, 1, scores)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        _top_k_rows(S, k, passes, ids, row, kept, scores)
        middle = time.perf_counter()
        _copy_rows(S, passes, scores)
        best = min(best, (middle - start) - (time.perf_counter() - middle))
    return best / (passes * n_rows) * 1e6


def time_loss(n_rows, n_out, softmax, rng, calls=50):
    """Milliseconds a call of the loss kernel on (n_rows, n_out) dense outputs."""
    ids = np.tile(np.arange(n_out, dtype=np.int32), (n_rows, 1))
    counts = np.full(n_rows, n_out, np.int32)
    logits = rng.normal(-3, 2, (n_rows, n_out)).astype(np.float32)
    labels = sp.csr_matrix((rng.rand(n_rows, n_out) < 0.02).astype(np.float32))
    targets = Targets(labels.indptr.astype(np.int64), labels.indices.astype(np.int32), labels.data)
    rows = np.arange(n_rows, dtype=np.int64)
    weights = np.ones(n_rows, np.float32)
    n_threads = numba.config.NUMBA_NUM_THREADS
    target_scratch = np.zeros((n_threads, n_out), np.float32)
    exp_scratch = np.zeros((n_threads, n_out))
    delta, loss = np.zeros((n_rows, n_out), np.float32), np.zeros(n_rows)
    args = (ids, logits, counts, rows, *targets, weights, float(n_rows), softmax, target_scratch,
            exp_scratch, delta, loss)
    _kernels.output_loss_and_delta(*args)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            _kernels.output_loss_and_delta(*args)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def parse_shapes(parser, text):
    try:
        shapes = [tuple(int(v) for v in item.split(":")) for item in text.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or not 0 < s[1] <= s[0] for s in shapes):
        parser.error(f"--shapes: neurons:kept pairs with 0 < kept <= neurons, got {text!r}")
    return shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="100:32,256:32,1000:50,4096:82",
                        help="comma-separated neurons:kept pairs")
    parser.add_argument("--fresh-rows", type=int, default=5000)
    parser.add_argument("--reused-rows", type=int, default=200)
    parser.add_argument("--loss-rows", type=int, default=200)
    parser.add_argument("--outputs", type=int, default=983, help="outputs of the loss batch")
    args = parser.parse_args(argv)
    shapes = parse_shapes(parser, args.shapes)
    if min(args.fresh_rows, args.reused_rows, args.loss_rows, args.outputs) < 1:
        parser.error("row and output counts must be at least 1")
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        rng = np.random.RandomState(0)
        print(f"top-k, us a sample: {args.fresh_rows} fresh rows / {args.reused_rows} rows reused")
        for n, k in shapes:
            passes = max(1, args.fresh_rows // args.reused_rows)
            fresh = time_top_k(n, k, args.fresh_rows, 1, rng)
            reused = time_top_k(n, k, args.reused_rows, passes, rng)
            print(f"  {k:5d} of {n:6d}   {fresh:7.3f} / {reused:7.3f}")
        print(f"loss kernel, ms a call: {args.loss_rows} rows of {args.outputs} outputs, one thread")
        for softmax in (False, True):
            name = "softmax" if softmax else "logistic"
            print(f"  {name:9s} {time_loss(args.loss_rows, args.outputs, softmax, rng):.3f}")
    finally:
        numba.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
