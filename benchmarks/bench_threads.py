"""Thread scaling: fit time of HashMLPClassifier with n_jobs=1 against n_jobs=2.

On real MNIST, for the networks of bench_speed.py: (1000, 1000, 1000) at sparsity
0.05 with the default selection, and (4096,) and (16384,) at 0.02 with LSH. Each
fit is repeated (``--repeats``, alternating the thread counts) and the fastest
time is kept, since these machines are shared. The weights do not depend on the
number of threads, which the script checks.

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --train-rows 10000 --epochs 2 --repeats 3
"""

import argparse
from pathlib import Path

import numpy as np

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl.compare import load_dataset, timed, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
CONFIGS = [((1000, 1000, 1000), 0.05, "auto"), ((4096,), 0.02, "lsh"), ((16384,), 0.02, "lsh")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    X, y, _, _ = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=0)
    warm_up()
    print(f"MNIST {X.shape[0]} rows, {args.epochs} epochs, batch 128, best of {args.repeats}")
    print(f"{'network':34s} {'1 thread s/epoch':>16s} {'2 threads':>10s} {'speed-up':>9s}")
    for hidden, sparsity, selection in CONFIGS:
        best = {1: np.inf, 2: np.inf}
        weights = {}
        for _ in range(args.repeats):
            for n_jobs in (1, 2):
                model = HashMLPClassifier(hidden, sparsity=sparsity, selection=selection,
                                          max_iter=args.epochs, batch_size=128, random_state=0,
                                          tol=0.0, n_iter_no_change=args.epochs + 1, n_jobs=n_jobs)
                _, seconds = timed(model.fit, X, y)
                best[n_jobs] = min(best[n_jobs], seconds / args.epochs)
                weights[n_jobs] = model.coefs_
        same = all(np.array_equal(a, b) for a, b in zip(weights[1], weights[2]))
        name = f"{hidden} {sparsity} {selection}"
        print(f"{name:34s} {best[1]:16.3f} {best[2]:10.3f} {best[1] / best[2]:8.2f}x"
              + ("" if same else "  (weights differ!)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
