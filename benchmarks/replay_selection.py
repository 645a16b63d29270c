"""The exact selection of one real batch over column blocks stored apart, replayed on one and two threads.

Fits (1000, 1000, 1000) at sparsity 0.05 on MNIST rows for one epoch on two
threads with every exactly scored layer's column blocks stored apart
(``sklearn_hashdl/_blocks.py``), keeps a copy of what the last batch passed to
``_block_kernels.select_exact_blocks`` for one layer (``--layer``: 0 the first,
1 and 2 the hidden ones), and times that call on one and two threads, round
after round, with the round trip of a cache line between the two cores before
each round (``core_latency.py``). Its inputs are written once, before the
timing, so what the kernel itself exchanges between the cores is what is
timed: each block's thread writes its scores of every sample and keeps those
above the cut, and each sample's pick then reads what every block kept. The run ends with the medians of the
rounds with the cores near and apart (docs/performance.md, Zen 4 seventh session).

    python benchmarks/replay_selection.py --layer 1 --rounds 40
"""

import sys
import time
from pathlib import Path

import numba
import numpy as np

from sklearn_hashdl import HashMLPClassifier, _block_kernels, _blocks
from sklearn_hashdl.compare import load_dataset, warm_up

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_latency import round_trip_ns  # noqa: E402
from replay_update import (APART_NS, _fastest_us, captured_calls, parse_replay_args,  # noqa: E402
                           replay_parser)


def capture_last_selection(X, y, layer):
    """Fit on two threads with the blocks always apart and return a copy of
    select_exact_blocks' arguments for ``layer`` in the last batch."""
    model = HashMLPClassifier(hidden_layer_sizes=(1000, 1000, 1000), sparsity=0.05, max_iter=1,
                              batch_size=128, random_state=0, tol=0.0, n_iter_no_change=2, n_jobs=2)
    choose = _blocks.LayoutChooser.layout
    _blocks.LayoutChooser.layout = lambda chooser: True
    try:
        calls = captured_calls(_block_kernels, "select_exact_blocks", lambda: model.fit(X, y))
    finally:
        _blocks.LayoutChooser.layout = choose
    # the last batch selects its hidden layers first to last
    return calls[len(calls) - 3 + layer]


def main(argv=None):
    args = parse_replay_args(replay_parser(__doc__, train_rows=12800, rounds=10, calls=10), argv)
    if args is None:
        return 0
    if numba.config.NUMBA_NUM_THREADS < 2 or _blocks.machine_cores() < 2:
        print("skipped: needs two threads and two cores (one block per core)")
        return 0
    X, y, _, _ = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=0)
    warm_up()
    selection = capture_last_selection(X, y, args.layer)
    call = lambda: _block_kernels.select_exact_blocks(*selection)  # noqa: E731
    print(f"layer {args.layer}: blocks {selection[0].shape}, {selection[2].shape[0]} neurons, "
          f"{len(selection[5])} samples; microseconds per call, the fastest of 5 means over "
          f"{args.calls} calls")
    previous = numba.get_num_threads()
    rounds = []  # (round trip, one thread, two threads)
    try:
        for _ in range(args.rounds):
            before = round_trip_ns()
            one, two = (_fastest_us(call, n_threads, args.calls) for n_threads in (1, 2))
            rounds.append((before, one, two))
            print(f"round trip {before:4.0f} ns  1 thread {one:7.0f}  2 threads {two:7.0f}  "
                  f"{one / two:5.2f}x", flush=True)
            time.sleep(0.5)  # the host's placement changes over seconds
    finally:
        numba.set_num_threads(previous)
    print(f"medians (apart: a round trip over {APART_NS} ns)")
    for name, kept in (("near", [r for r in rounds if r[0] <= APART_NS]),
                       ("apart", [r for r in rounds if r[0] > APART_NS])):
        if kept:
            one, two = np.median([r[1] for r in kept]), np.median([r[2] for r in kept])
            print(f"  {name:5s} {len(kept):3d} rounds: 1 thread {one:7.0f}  2 threads {two:7.0f}  "
                  f"{one / two:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
