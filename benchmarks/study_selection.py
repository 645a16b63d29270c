"""How should a hashed layer pick its active neurons? A study on real MNIST.

Trains HashMLPClassifier with several selection strategies on the same data and
seed, next to a dense MLPClassifier with the same hidden sizes, epochs, batch size
and learning rate, and prints one table per (hidden sizes, sparsity):
test accuracy, flop_fraction_ (every multiply-add of selection, hashing,
re-ranking and rehashing counted), fit seconds, and the recall of the exact top-k
(the fraction of each hidden layer's true top-k activations the strategy picked,
measured after training on test rows, averaged over hidden layers).

    python benchmarks/study_selection.py                      # full study (~30 min)
    python benchmarks/study_selection.py --train-rows 10000 --epochs 3 --configs 1000x3@0.05

Fit times are from one run on a shared machine: compare them within a table.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl._diagnostics import selection_recall
from sklearn_hashdl.compare import format_columns, load_dataset, timed, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"

# name -> HashMLPClassifier parameters (on top of the common ones)
STRATEGIES = {
    "exact top-k (reference)": dict(selection="exact"),
    "random (reference)": dict(selection="random"),
    "SRP-LSH K=6 L=10 (paper)": dict(selection="lsh", K=6, L=10),
    "SRP-LSH K=5 L=20": dict(selection="lsh", K=5, L=20),
    "SRP-LSH MIPS K=6 L=10": dict(selection="lsh", K=6, L=10, hash_function="srp_mips"),
    "SRP-LSH 3-probe": dict(selection="lsh", K=6, L=10, n_probes=3),
    "SRP-LSH rehash every 10": dict(selection="lsh", K=6, L=10, rehash_interval=10, rehash_growth=1.0),
    "LSH + rerank 4k": dict(selection="lsh_rerank", K=6, L=10, rerank_factor=4),
    "LSH + rerank all": dict(selection="lsh_rerank", K=6, L=10, rerank_factor=1e6),
    "LSH 2-probe + rerank all": dict(selection="lsh_rerank", K=6, L=10, rerank_factor=1e6, n_probes=2),
    "LSH K=4 + rerank all": dict(selection="lsh_rerank", K=4, L=10, rerank_factor=1e6),
}

CONFIGS = ["1000x3@0.05", "1000x3@0.1", "1000x1@0.05", "1000x1@0.1"]


def parse_config(text):
    """'1000x3@0.05' -> ((1000, 1000, 1000), 0.05)."""
    layers, sparsity = text.split("@")
    width, depth = layers.split("x")
    return (int(width),) * int(depth), float(sparsity)


def run_config(hidden, sparsity, strategies, data, epochs, seed):
    X_train, y_train, X_test, y_test = data
    common = dict(hidden_layer_sizes=hidden, max_iter=epochs, batch_size=128,
                  learning_rate_init=1e-3, random_state=seed, tol=0.0, n_iter_no_change=epochs + 1)
    dense = MLPClassifier(**common)
    _, seconds = timed(dense.fit, X_train, y_train)
    rows = [dict(strategy="MLPClassifier (dense)", accuracy=dense.score(X_test, y_test),
                 flop_fraction=1.0, recall=1.0, fit_seconds=seconds)]
    for name in strategies:
        model = HashMLPClassifier(sparsity=sparsity, **common, **STRATEGIES[name])
        _, seconds = timed(model.fit, X_train, y_train)
        rows.append(dict(
            strategy=name, accuracy=model.score(X_test, y_test),
            flop_fraction=model.flop_fraction_, fit_seconds=seconds,
            recall=float(np.mean(selection_recall(model, X_test, max_rows=1000, seed=seed))),
        ))
        print(f"  done: {name}", flush=True)
    return rows


def format_rows(rows):
    return format_columns(rows, [
        ("strategy", "strategy", "s"), ("accuracy", "accuracy", ".4f"),
        ("flop_fraction", "flop frac", ".4f"), ("fit_seconds", "fit s", ".1f"),
        ("recall", "top-k recall", ".3f"),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="path to mnist.npz")
    parser.add_argument("--train-rows", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated WIDTHxDEPTH@SPARSITY, e.g. 1000x3@0.05")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma-separated names from the STRATEGIES table")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data} (see ../shared/data/README.md)")
        return 0
    strategies = [s.strip() for s in args.strategies.split(",")]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    data = load_dataset(npz=args.data, max_train_rows=args.train_rows)
    print(f"MNIST: {len(data[0])} training rows, {len(data[2])} test rows, {args.epochs} epochs, "
          f"batch 128, Adam 1e-3, seed {args.seed}; kernels compiled before timing")
    warm_up()
    results = {}
    for config in args.configs.split(","):
        hidden, sparsity = parse_config(config)
        print(f"\nhidden {hidden}, sparsity {sparsity}", flush=True)
        rows = run_config(hidden, sparsity, strategies, data, args.epochs, args.seed)
        print(format_rows(rows), flush=True)
        results[config] = rows
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
