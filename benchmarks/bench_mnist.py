"""HashMLPClassifier against MLPClassifier on real MNIST (60k / 10k), in one run.

Configurations (same epochs, batch size 128, Adam, learning rate (1e-3 unless
``--learning-rate``), seed):
  dense 784-1000-1000-1000-10 (MLPClassifier)
  hash  784-1000-1000-1000-10 at sparsity 0.05 and 0.10
  dense 784-1000-10 (MLPClassifier)
  hash  784-1000-10 at sparsity 0.05
Each hash row's time ratio is against the dense model with the same hidden sizes
from this run. Kernels are compiled before anything is timed.

    python benchmarks/bench_mnist.py                          # full: 60k rows, 10 epochs
    python benchmarks/bench_mnist.py --train-rows 10000 --epochs 2
    python benchmarks/bench_mnist.py --selection auto,lsh     # one hash row per selection
    python benchmarks/bench_mnist.py --configs hash-3x1000-0.05 --epochs 1 --learning-rate 0.003
"""

import argparse
import json
import sys
from pathlib import Path

from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl.compare import format_columns, load_dataset, timed, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"

CONFIGS = {
    "dense-3x1000": ("dense", (1000, 1000, 1000), None),
    "hash-3x1000-0.05": ("hash", (1000, 1000, 1000), 0.05),
    "hash-3x1000-0.10": ("hash", (1000, 1000, 1000), 0.10),
    "dense-1x1000": ("dense", (1000,), None),
    "hash-1x1000-0.05": ("hash", (1000,), 0.05),
}


def run(config_names, data, epochs, seed, selections, hash_params, learning_rate=1e-3):
    X_train, y_train, X_test, y_test = data
    rows, dense_seconds = [], {}
    for name in config_names:
        kind, hidden, sparsity = CONFIGS[name]
        common = dict(hidden_layer_sizes=hidden, max_iter=epochs, batch_size=128,
                      learning_rate_init=learning_rate, random_state=seed, tol=0.0,
                      n_iter_no_change=epochs + 1)
        if kind == "dense":
            models = [(name, MLPClassifier(**common))]
        else:
            models = [(f"{name} {selection}",
                       HashMLPClassifier(sparsity=sparsity, selection=selection, **common,
                                         **hash_params))
                      for selection in selections]
        for label, model in models:
            _, seconds = timed(model.fit, X_train, y_train)
            accuracy = model.score(X_test, y_test)
            if kind == "dense":
                dense_seconds[hidden] = seconds
            rows.append(dict(config=label, accuracy=accuracy, fit_seconds=seconds,
                             flop_fraction=float(getattr(model, "flop_fraction_", 1.0)),
                             speedup=dense_seconds[hidden] / seconds if hidden in dense_seconds
                             else None))
            print(f"  done: {label}", flush=True)
    return rows


def format_rows(rows):
    return format_columns(rows, [
        ("config", "config", "s"), ("accuracy", "accuracy", ".4f"), ("fit_seconds", "fit s", ".1f"),
        ("speedup", "dense/hash time", ".2f"), ("flop_fraction", "flop_fraction", ".4f"),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="path to mnist.npz")
    parser.add_argument("--train-rows", type=int, default=None, help="default: all 60000")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {list(CONFIGS)}")
    parser.add_argument("--selection", default="auto",
                        help="comma-separated HashMLPClassifier selections, one row each")
    parser.add_argument("--predict-mode", help="HashMLPClassifier predict_mode (default: its default)")
    parser.add_argument("--K", type=int)
    parser.add_argument("--L", type=int)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="learning_rate_init of every model")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data} (see ../shared/data/README.md)")
        return 0
    names = [c.strip() for c in args.configs.split(",")]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}")
    hash_params = {k: v for k, v in (("K", args.K), ("L", args.L),
                                     ("predict_mode", args.predict_mode)) if v is not None}
    selections = [s.strip() for s in args.selection.split(",")]
    data = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=args.seed)
    print(f"MNIST: train {data[0].shape}, test {data[2].shape}, {args.epochs} epochs, batch 128, "
          f"Adam {args.learning_rate:g}, seed {args.seed}, selections {selections}, "
          f"options {hash_params or 'defaults'}; "
          "kernels compiled before timing", flush=True)
    warm_up()
    rows = run(names, data, args.epochs, args.seed, selections, hash_params, args.learning_rate)
    print(format_rows(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
