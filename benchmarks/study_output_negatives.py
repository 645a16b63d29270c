"""Which negatives should a sparse output layer train? A study on generated data.

10,000 classes over 50,000 sparse features (make_prototype_classification, 3 training
rows and 1 test row per class), hidden (128,), 5 epochs, output sparsity 0.02. Every
sparse output layer trains each sample's true labels; the other active outputs are
uniform random ('random', the default) or half chosen by exact scores or the hash
tables and half random. Prints test P@1 (= accuracy) and fit seconds, and
MLPClassifier's with --dense.

    python benchmarks/study_output_negatives.py --dense
"""

import argparse

import numpy as np
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier, make_prototype_classification
from sklearn_hashdl.compare import format_columns, timed, warm_up


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dense", action="store_true", help="also fit MLPClassifier")
    args = parser.parse_args()
    X, y = make_prototype_classification(n_samples=4 * args.classes, n_classes=args.classes,
                                         n_features=50_000, n_active_prototype=6, shuffle=False,
                                         random_state=0)
    test = np.zeros(len(y), bool)
    test[3::4] = True  # rows come grouped by class: one test row per class
    X_train, y_train, X_test, y_test = X[~test], y[~test], X[test], y[test]
    common = dict(hidden_layer_sizes=(128,), batch_size=128, max_iter=args.epochs, random_state=0,
                  tol=0, n_iter_no_change=args.epochs + 1)
    warm_up()
    rows = []
    if args.dense:
        dense = MLPClassifier(**common)
        _, seconds = timed(dense.fit, X_train, y_train)
        rows.append({"model": "MLPClassifier", "P@1": dense.score(X_test, y_test), "fit s": seconds})
    for selection in ("random", "exact", "lsh_rerank", "lsh"):
        model = HashMLPClassifier(sparse_layers="output", sparsity=0.02, selection=selection, **common)
        _, seconds = timed(model.fit, X_train, y_train)
        rows.append({"model": f"negatives: {selection}", "P@1": model.score(X_test, y_test),
                     "fit s": seconds})
        print(rows[-1], flush=True)
    print(format_columns(rows, [("model", "model", "s"), ("P@1", "test P@1", ".4f"),
                                ("fit s", "fit s", ".1f")]))


if __name__ == "__main__":
    main()
