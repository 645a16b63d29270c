"""Batch times of a two-thread fit with column blocks stored apart and in the one matrix.

HashMLPClassifier splits its exactly scored hidden layers into blocks of neurons,
one per core, and a synchronous fit on several threads may store the blocks
apart or leave them in the one weight matrix: the same results either way, not
the same speed (``sklearn_hashdl/_blocks.py``). Training measures both and
trains in the faster; this script shows the two side by side. It fits
(1000, 1000, 1000) at sparsity 0.05 on MNIST on two threads, switching layout
every ``--stretch`` batches, and prints each layout's median batch time (the
first batches after each switch left out, as the training's own measurements
leave them out), with the round trip of a cache line between the two cores
(``core_latency.py``) before and after the fit.

    python benchmarks/bench_layouts.py --rounds 4
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

from sklearn.exceptions import ConvergenceWarning

from sklearn_hashdl import HashMLPClassifier, _blocks, _train
from sklearn_hashdl.compare import load_dataset, warm_up

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_latency import round_trip_ns  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
WARM_UP = 3  # batches after each switch left out
# a new network's first batches, slower in either layout, are left out as the
# LayoutChooser leaves them out (at most a quarter of a short fit's batches)
SETTLE = 20


class Stretches(_blocks.LayoutChooser):
    """Alternates the layout every ``stretch`` batches and keeps every batch time."""

    def __init__(self, stretch, settle=SETTLE):
        super().__init__()
        self.stretch, self.settle, self.batches = stretch, settle, 0
        self.times = ([], [])  # seconds per batch: in the one matrix, apart

    def layout(self):
        return (self.batches // self.stretch) % 2 == 1

    def record(self, apart, seconds):
        if self.batches >= self.settle and self.batches % self.stretch >= WARM_UP:
            self.times[apart].append(seconds)
        self.batches += 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stretch", type=int, default=16)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.stretch <= WARM_UP:
        parser.error(f"--rounds must be at least 1 and --stretch above {WARM_UP}")
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("skipped: needs two threads")
        return 0
    X, y, _, _ = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=0)
    warm_up()
    choosers = []
    settle = min(SETTLE, -(-len(X) // 128) // 4)

    def stretches():
        choosers.append(Stretches(args.stretch, settle))
        return choosers[-1]

    print(f"MNIST {len(X)} rows, (1000, 1000, 1000) at 0.05, two threads, layouts switched every "
          f"{args.stretch} batches; median ms per batch (quartiles)")
    chooser = _train.LayoutChooser
    _train.LayoutChooser = stretches
    try:
        for _ in range(args.rounds):
            before = round_trip_ns()
            model = HashMLPClassifier(hidden_layer_sizes=(1000, 1000, 1000), sparsity=0.05,
                                      max_iter=1, batch_size=128, random_state=0, tol=0.0,
                                      n_iter_no_change=2, n_jobs=2)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch, on purpose
                model.fit(X, y)
            seconds = time.perf_counter() - start
            one, apart = (np.array(t) * 1e3 for t in choosers[-1].times)
            quartiles = [np.percentile(t, [25, 50, 75]) for t in (one, apart)]
            print(f"round trip {before:4.0f} ns before, {round_trip_ns():4.0f} after | fit {seconds:.2f} s "
                  + " | ".join(f"{name} {q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})"
                               for name, q in zip(("one matrix", "apart"), quartiles))
                  + f" | apart / one matrix {quartiles[1][1] / quartiles[0][1]:.3f}", flush=True)
    finally:
        _train.LayoutChooser = chooser
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
