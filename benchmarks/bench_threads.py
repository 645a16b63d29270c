"""Thread scaling: fit time of HashMLPClassifier with n_jobs=1 against n_jobs=2.

On real MNIST, for the networks of bench_speed.py: (1000, 1000, 1000) at sparsity
0.05 with the default selection, and (4096,) and (16384,) at 0.02 with LSH. Two
threads are timed both ways: synchronous (each batch split between the
threads; the weights must equal the one-thread fit's, which the script checks)
and ``asynchronous=True`` (HOGWILD!: each thread trains its own batches on the
shared weights), whose test accuracy is printed next to the synchronous one.

The last column runs two one-thread fits at the same time, each in its own
process with its own weights, and compares their combined throughput with one
fit alone (2 x alone / slower of the pair). Below 2, the cores slow each other
down through what they share (caches, memory). It is not a bound for the
synchronous fit, whose threads split one batch's weight rows between them.

Each measurement is repeated (``--repeats``, taking turns) and the fastest kept,
since these machines are shared.

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --train-rows 60000 --epochs 1 --repeats 3
"""

import argparse
from pathlib import Path

import numpy as np

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl.compare import concurrent_fit_seconds, load_dataset, timed, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
CONFIGS = [((1000, 1000, 1000), 0.05, "auto"), ((4096,), 0.02, "lsh"), ((16384,), 0.02, "lsh")]


def model_params(config, epochs, n_jobs, asynchronous=False):
    hidden, sparsity, selection = config
    return dict(hidden_layer_sizes=hidden, sparsity=sparsity, selection=selection,
                max_iter=epochs, batch_size=128, random_state=0, tol=0.0,
                n_iter_no_change=epochs + 1, n_jobs=n_jobs, asynchronous=asynchronous)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    data = dict(npz=args.data, max_train_rows=args.train_rows, seed=0)
    X, y, X_test, y_test = load_dataset(**data)
    warm_up()
    print(f"MNIST {X.shape[0]} rows, {args.epochs} epoch(s), batch 128, best of {args.repeats}; "
          "s/epoch, speed-ups against 1 thread")
    print(f"{'network':28s} {'1 thread':>8s} {'2 sync':>7s} {'speed-up':>8s} {'2 async':>7s} "
          f"{'speed-up':>8s} {'accuracy sync/async':>19s} {'2 processes':>11s}")
    for config in CONFIGS:
        best = {"1": np.inf, "sync": np.inf, "async": np.inf, "pair": np.inf}
        weights, accuracy = {}, {}
        for _ in range(args.repeats):
            for name, n_jobs, asynchronous in (("1", 1, False), ("sync", 2, False), ("async", 2, True)):
                model = HashMLPClassifier(**model_params(config, args.epochs, n_jobs, asynchronous))
                _, seconds = timed(model.fit, X, y)
                best[name] = min(best[name], seconds / args.epochs)
                weights[name] = model.coefs_
                accuracy[name] = model.score(X_test, y_test)
            pair = concurrent_fit_seconds(model_params(config, args.epochs, n_jobs=1), data)
            best["pair"] = min(best["pair"], pair / args.epochs)
        same = all(np.array_equal(a, b) for a, b in zip(weights["1"], weights["sync"]))
        hidden, sparsity, selection = config
        label = f"{hidden} {sparsity} {selection}"
        one = best["1"]
        print(f"{label:28s} {one:8.3f} {best['sync']:7.3f} {one / best['sync']:7.2f}x "
              f"{best['async']:7.3f} {one / best['async']:7.2f}x "
              f"{accuracy['sync']:>10.4f}/{accuracy['async']:.4f} {2 * one / best['pair']:10.2f}x"
              + ("" if same else "  (weights differ!)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
