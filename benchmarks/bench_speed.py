"""Fit time of HashMLPClassifier against dense baselines, with a time breakdown.

For each hidden configuration, in one run on real MNIST: MLPClassifier (and
PyTorch's CPU build when it is importable; it is not a dependency), then
HashMLPClassifier at each sparsity and selection, all with batch 128, Adam 1e-3,
the same epochs and seed. Prints seconds per epoch, the dense/hash time ratio,
test accuracy, flop_fraction_, and where the hashed fit spent its time; with
``--memory``, also the peak memory of a one-epoch fit of each scikit-learn model
(tracemalloc, in a separate untimed fit; not for PyTorch).

    python benchmarks/bench_speed.py                                   # all configs
    python benchmarks/bench_speed.py --hidden 16384 --sparsity 0.02 --selection lsh_rerank,exact
    python benchmarks/bench_speed.py --train-rows 10000 --epochs 1 --n-jobs 1
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier, _train
from sklearn.base import clone

from sklearn_hashdl.compare import load_dataset, measure_fit, traced_peak_memory, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
HIDDEN = ["1000,1000,1000", "4096", "16384"]


def torch_fit_seconds(hidden, data, epochs, seed):
    """Seconds to train the same MLP with PyTorch on the CPU, or None without torch."""
    try:
        import torch
    except ImportError:
        return None, None
    X_train, y_train, X_test, y_test = data
    torch.manual_seed(seed)
    sizes = [X_train.shape[1], *hidden, int(y_train.max()) + 1]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, y = torch.from_numpy(X_train), torch.from_numpy(y_train.astype(np.int64))
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            rows = order[i: i + 128]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(X[rows]), y[rows]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    return seconds, accuracy


def _peak(model, X, y):
    """Peak traced memory of a one-epoch fit of a fresh copy of model."""
    return traced_peak_memory(clone(model).set_params(max_iter=1).fit, X, y)


def _megabytes(n_bytes):
    """Peak memory of a fit, as a table cell."""
    return f"{'-':>11s}" if n_bytes is None else f"{n_bytes / 2**20:11.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", default=";".join(HIDDEN), help="';'-separated, e.g. 4096;16384")
    parser.add_argument("--sparsity", default="0.05,0.02")
    parser.add_argument("--selection", default="auto", help="comma-separated selections")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense baselines")
    parser.add_argument("--memory", action="store_true", help="also measure peak fit memory")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    data = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=args.seed)
    X_train, y_train, X_test, y_test = data
    print(f"MNIST {X_train.shape[0]} rows, {args.epochs} epoch(s), batch 128, Adam 1e-3, "
          f"n_jobs={args.n_jobs}; kernels compiled before timing")
    warm_up()
    for hidden_text in args.hidden.split(";"):
        hidden = tuple(int(h) for h in hidden_text.split(","))
        common = dict(hidden_layer_sizes=hidden, max_iter=args.epochs, batch_size=128,
                      learning_rate_init=1e-3, random_state=args.seed, tol=0.0,
                      n_iter_no_change=args.epochs + 1)
        print(f"\nhidden {hidden}")
        print(f"{'model':38s} {'s/epoch':>8s} {'dense/this':>10s} {'accuracy':>8s} {'flop frac':>9s} "
              f"{'fit peak MB':>11s}")
        dense_seconds = None
        if not args.no_dense:
            dense = MLPClassifier(**common)
            _, seconds, _ = measure_fit(dense.fit, X_train, y_train)
            dense_seconds = seconds
            peak = _peak(dense, X_train, y_train) if args.memory else None
            print(f"{'MLPClassifier':38s} {seconds / args.epochs:8.2f} {1:9.2f}x "
                  f"{dense.score(X_test, y_test):8.4f} {1:9.4f} {_megabytes(peak)}")
            torch_seconds, torch_accuracy = torch_fit_seconds(hidden, data, args.epochs, args.seed)
            if torch_seconds is not None:
                print(f"{'PyTorch CPU':38s} {torch_seconds / args.epochs:8.2f} "
                      f"{dense_seconds / torch_seconds:9.2f}x {torch_accuracy:8.4f} {1:9.4f}")
        for sparsity in (float(s) for s in args.sparsity.split(",")):
            for selection in args.selection.split(","):
                model = HashMLPClassifier(sparsity=sparsity, selection=selection, n_jobs=args.n_jobs,
                                          **common)
                _train.phase_timer = timer = _train.PhaseTimer()
                _, seconds, _ = measure_fit(model.fit, X_train, y_train)
                _train.phase_timer = None
                peak = _peak(model, X_train, y_train) if args.memory else None
                ratio = f"{dense_seconds / seconds:9.2f}x" if dense_seconds else f"{'-':>10s}"
                name = f"Hash sparsity={sparsity} {selection}"
                print(f"{name:38s} {seconds / args.epochs:8.2f} {ratio} "
                      f"{model.score(X_test, y_test):8.4f} {model.flop_fraction_:9.4f} {_megabytes(peak)}")
                phases = dict(timer.seconds)
                phases["outside the batch loop"] = seconds - sum(phases.values())
                print("    " + ", ".join(f"{k} {v / seconds:.0%}" for k, v in
                                         sorted(phases.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
