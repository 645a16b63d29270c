"""Prediction latency: one row and a batch of rows, per predict_mode, against MLPClassifier.

Trains one short epoch on generated MNIST-shaped data (784 features, 10 classes)
for each hidden width, then times ``predict`` on a single row (median of
``--calls`` calls, the first call excluded: it builds the hashed mode's tables)
and on ``--rows`` rows (median of 3). MLPClassifier gets the same network, fitted
on the same rows for one epoch; only its predict is timed.

    python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --hidden 4096,16384 --rows 5000
"""

import argparse
import copy
import time
import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier


def median_seconds(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def latencies(model, X, calls):
    """(first single-row call, median later single-row call, median batch call), seconds."""
    first = median_seconds(lambda: model.predict(X[:1]), 1)
    one_row = median_seconds(lambda: model.predict(X[1:2]), calls)
    batch = median_seconds(lambda: model.predict(X), 3)
    return first, one_row, batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", default="4096,16384", help="hidden widths, one network each")
    parser.add_argument("--sparsity", type=float, default=0.02)
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=5000, help="rows of the batch predict")
    parser.add_argument("--calls", type=int, default=20, help="single-row calls timed")
    args = parser.parse_args(argv)
    X, y = make_classification(args.train_rows + args.rows, 784, n_informative=50, n_classes=10,
                               random_state=0)
    X = X.astype(np.float32)
    X_train, y_train, X_test = X[: args.train_rows], y[: args.train_rows], X[args.train_rows :]
    print(f"{'hidden':>8} {'model':>22} {'first row ms':>13} {'one row ms':>11} "
          f"{args.rows} rows ms")
    for width in [int(w) for w in args.hidden.split(",")]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            hashed = HashMLPClassifier((width,), sparsity=args.sparsity, selection="lsh",
                                       max_iter=1, random_state=0).fit(X_train, y_train)
            dense = MLPClassifier((width,), max_iter=1, random_state=0).fit(X_train, y_train)
        models = [(f"hash {mode}", copy.copy(hashed).set_params(predict_mode=mode))
                  for mode in ("topk", "hashed", "dense")] + [("MLPClassifier", dense)]
        for name, model in models:
            first, one_row, batch = latencies(model, X_test, args.calls)
            print(f"{width:>8} {name:>22} {first * 1e3:>13.1f} {one_row * 1e3:>11.2f} "
                  f"{batch * 1e3:>12.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
