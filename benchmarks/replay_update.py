"""The lazy Adam update of one real batch, replayed on one and two threads, whole and in parts.

Fits (1000, 1000, 1000) at sparsity 0.05 (exact selection) on MNIST rows for one
epoch, every layer in the one weight matrix and its update split by rows (no
column blocks stored apart, ``sklearn_hashdl/_blocks.py``), keeps a copy of what
the last batch passed to ``_kernels.adam_update`` for one layer (``--layer``: 0
the first, 1 and 2 the hidden-to-hidden layers), and times on one and two threads:

- ``adam_update``: the kernel as training runs it;
- ``gradient sums``: its serial prelude (``_column_union``, the compact copies of
  the batch's deltas) and each row's gradient sums, without the Adam step;
- ``gradient sums, copies made once``: the same sums over copies made before the
  timing, so that no call writes anything the other thread reads;
- ``Adam sweep``: the Adam step over the touched rows alone, with zero gradients, as
  whole-row sweeps (the kernel itself steps a row over the batch's columns alone
  when they are at most a third of it, ``_kernels.UNION_STEP_FRACTION``, so for
  such batches the parts add up to more than ``adam_update``);
- ``adam_update after both threads read the rows`` and ``... after thread 0 alone
  read them``: before each call (untimed), 64 parallel iterations read every touched
  weight row, as the forward and backward passes of a fit do sample by sample,
  on both threads or on thread 0 only.

Every call sees the same rows on the same thread. Each round prints the round
trip of a cache line between the two cores before and after it
(``core_latency.py``): the host moves its virtual CPUs about, and the far
placements cost two threads much of their gain (docs/performance.md, Zen 1).

With ``--per-cpu`` each round also times ``adam_update`` on one thread pinned to
each CPU in turn, and the run ends with a summary by placement and by whether
the CPUs ran it alike: a virtual CPU can run the same work much slower for a
while (its host core busy with other work, say), and two threads then wait for
the slower one (docs/performance.md, Zen 4 sixth session).

    python benchmarks/replay_update.py --layer 1 --rounds 6
    python benchmarks/replay_update.py --layer 0 --rounds 60 --per-cpu
"""

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from sklearn_hashdl import HashMLPClassifier, _kernels, _train
from sklearn_hashdl._kernels import _adam_apply, _column_union, _row_gradient
from sklearn_hashdl.compare import load_dataset, warm_up

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_latency import round_trip_ns  # noqa: E402
from split_layouts import mean_us, read_rows  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
GRADIENT, GRADIENT_COPIES_MADE, SWEEP = 0, 1, 2
# round trips above this are "apart" in the --per-cpu summary (near: 60-100 ns here)
APART_NS = 200
# CPUs whose one-thread times differ by more than this factor ran the work unalike
UNALIKE = 1.2


@njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def _update_part(part, n_union, W, m_W, v_W, touched_rows, n_touched, row_start, row_sample,
                 row_pos, row_vals, col_ids, col_cnt, col_vals, col_spans, step_size,
                 beta_1, beta_2, epsilon, grad_scratch, mark_scratch, cols_scratch, compact):
    """One part of adam_update's weight loop (see the module docstring); the
    scratch is left zeroed, as the kernel leaves it."""
    if part == GRADIENT:
        n_union = _column_union(col_ids, col_cnt, col_vals, W.shape[1], col_spans.shape[0] > 0,
                                n_touched, row_start[W.shape[0]], compact)
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        grad, mark, cols = grad_scratch[tid], mark_scratch[tid], cols_scratch[tid]
        i = touched_rows[r]
        if part == SWEEP:
            _adam_apply(W[i], m_W[i], v_W[i], grad, mark, cols, -1, 0, W.shape[1], np.float32(0),
                        step_size, beta_1, beta_2, epsilon)
            continue
        _row_gradient(i, W.shape[1], row_start, row_sample, row_pos, row_vals, col_ids, col_cnt,
                      col_vals, col_spans, n_union, compact, tid, grad, mark, cols)
        for j in range(W.shape[1]):
            grad[j] = 0
            mark[j] = 0


def captured_calls(module, name, fit):
    """Run ``fit()`` with ``module.name`` (a kernel) wrapped to keep a copy of the
    arguments of each call (the workspace arrays are reused by later calls);
    returns the copies in call order."""
    calls = []
    kernel = getattr(module, name)

    def capturing(*args):
        calls.append(tuple(_copy(a) for a in args))
        return kernel(*args)

    setattr(module, name, capturing)
    try:
        fit()
    finally:
        setattr(module, name, kernel)
    return calls


def capture_last_update(X, y, layer):
    """Fit the network and return a copy of adam_update's arguments for ``layer``
    in the last batch."""
    model = HashMLPClassifier(hidden_layer_sizes=(1000, 1000, 1000), sparsity=0.05, max_iter=1,
                              batch_size=128, random_state=0, tol=0.0, n_iter_no_change=2)
    # every layer in the one matrix, its update split by rows: the update this
    # script studies (two threads may store exactly scored layers' blocks apart)
    layers_apart = _train.layers_stored_apart
    _train.layers_stored_apart = lambda network: []
    try:
        calls = captured_calls(_kernels, "adam_update", lambda: model.fit(X, y))
    finally:
        _train.layers_stored_apart = layers_apart
    # the last batch updates its layers last first: output, 2, 1, 0
    return calls[len(calls) - 1 - layer]


def part_arguments(update_args):
    """From adam_update's arguments: the number of columns of the compact copies
    (made now, in the scratch) and the arguments of ``_update_part`` after it."""
    (W, b, m_W, v_W, m_b, v_b, touched, n_touched, row_start, row_sample, row_pos, row_vals,
     col_ids, col_cnt, col_vals, spans, out_ids, out_cnt, out_delta, l2, step_size, beta_1, beta_2,
     epsilon, grad, mark, cols, compact, _claims) = update_args
    n_union = _column_union(col_ids, col_cnt, col_vals, W.shape[1], spans.shape[0] > 0, n_touched,
                            row_start[W.shape[0]], compact)
    return n_union, (W, m_W, v_W, touched, n_touched, row_start, row_sample, row_pos, row_vals,
                     col_ids, col_cnt, col_vals, spans, step_size, beta_1, beta_2, epsilon, grad,
                     mark, cols, compact)


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


def replay_parser(doc, train_rows, rounds, calls):
    """The options of a replay of one captured call on MNIST rows (``doc``: its
    module docstring; the rest: defaults)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=train_rows)
    parser.add_argument("--layer", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--calls", type=int, default=calls)
    return parser


def parse_replay_args(parser, argv):
    """The parsed options, or None (with the reason printed) when MNIST is absent."""
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return None
    return args


def main(argv=None):
    parser = replay_parser(__doc__, train_rows=6400, rounds=4, calls=20)
    parser.add_argument("--per-cpu", action="store_true",
                        help="also time adam_update on one thread pinned to each CPU in turn")
    args = parse_replay_args(parser, argv)
    if args is None:
        return 0
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("skipped: needs two threads")
        return 0
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.per_cpu and len(cpus) < 2:
        print("skipped: --per-cpu needs two CPUs to pin to")
        return 0
    X, y, _, _ = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=0)
    warm_up()
    full = capture_last_update(X, y, args.layer)
    n_union, shared = part_arguments(full)
    parts = {
        "adam_update": lambda: _kernels.adam_update(*full),
        "gradient sums": lambda: _update_part(GRADIENT, n_union, *shared),
        "gradient sums, copies made once": lambda: _update_part(GRADIENT_COPIES_MADE, n_union,
                                                                *shared),
        "Adam sweep": lambda: _update_part(SWEEP, n_union, *shared),
    }
    W, n_touched = shared[0], shared[4]
    rows, sums = shared[3][:n_touched].astype(np.int64), np.zeros(64, np.float32)
    readers = {"adam_update after both threads read the rows": 2,
               "adam_update after thread 0 alone read them": 1}
    print(f"layer {args.layer}: weights {W.shape}, {n_touched} rows touched, "
          f"{n_union} columns in the batch's lists (-1: not compacted); "
          f"microseconds per call: the fastest of 5 means over {args.calls} calls "
          f"(after reads: one mean over {args.calls} calls)")
    previous = numba.get_num_threads()
    pinned_rounds = []  # (round trip, one thread on each CPU, two threads), in us
    try:
        for _ in range(args.rounds):
            before = round_trip_ns()
            lines = []
            if args.per_cpu:
                one = [_pinned_us(parts["adam_update"], cpu, args.calls) for cpu in cpus[:2]]
                two = _fastest_us(parts["adam_update"], 2, args.calls)
                pinned_rounds.append((before, one, two))
                lines.append(f"  {'adam_update, one thread on CPU ' + ' / '.join(map(str, cpus[:2])):44s} "
                             f"{one[0]:7.0f} / {one[1]:.0f}  2 threads {two:7.0f}  "
                             f"{min(one) / two:5.2f}x the faster CPU")
            for name, call in parts.items():
                us = [_fastest_us(call, n_threads, args.calls) for n_threads in (1, 2)]
                lines.append(_line(name, us))
            for name, n_readers in readers.items():
                us = [mean_us(functools.partial(read_rows, W, rows, sums), n_readers,
                              parts["adam_update"], n_threads, args.calls)
                      for n_threads in (1, 2)]
                lines.append(_line(name, us))
            print(f"round trip {before:.0f} ns before, {round_trip_ns():.0f} ns after")
            print("\n".join(lines), flush=True)
    finally:
        numba.set_num_threads(previous)
    if pinned_rounds:
        print(per_cpu_summary(pinned_rounds))
    return 0


def per_cpu_summary(rounds):
    """Median times of --per-cpu rounds ((round trip ns, [us on each CPU], us on two
    threads)), grouped by placement and by whether the CPUs ran the update alike."""
    groups = {}
    for trip, one, two in rounds:
        placement = "apart" if trip > APART_NS else "near"
        alike = "alike" if max(one) <= UNALIKE * min(one) else "one CPU slower"
        groups.setdefault((placement, alike), []).append((min(one), max(one), two))
    lines = [f"summary (medians; near: a round trip up to {APART_NS} ns; alike: CPUs within "
             f"{UNALIKE}x of each other)"]
    for (placement, alike), times in sorted(groups.items()):
        fast, slow, two = np.median(np.array(times), axis=0)
        lines.append(f"  {placement:5s} {alike:14s} {len(times):3d} rounds: one thread {fast:6.0f} us on "
                     f"the faster CPU, {slow:6.0f} on the slower; two threads {two:6.0f} "
                     f"({fast / two:.2f}x the faster)")
    return "\n".join(lines)


def _pinned_us(call, cpu, n_calls):
    """``_fastest_us`` on one thread, the calling thread pinned to ``cpu`` meanwhile."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return _fastest_us(call, 1, n_calls)
    finally:
        os.sched_setaffinity(0, allowed)


def _line(name, us):
    return f"  {name:44s} 1 thread {us[0]:7.0f}  2 threads {us[1]:7.0f}  {us[0] / us[1]:5.2f}x"


def _fastest_us(call, n_threads, n_calls):
    numba.set_num_threads(n_threads)
    call()
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n_calls):
            call()
        best = min(best, (time.perf_counter() - start) / n_calls)
    return best * 1e6


if __name__ == "__main__":
    raise SystemExit(main())
