"""Extreme classification: HashMLPClassifier against MLPClassifier on sparse text-like data.

In one run per dataset, with the same hidden sizes, batch 128, Adam 1e-3, epochs
and seed: test accuracy (single-label) or P@1 / P@5 (multilabel), fit seconds,
the dense/hash fit-time ratio, flop_fraction_ and the peak memory each fit adds.

* ``20news``: 20 Newsgroups word counts (130k sparse features, 20 classes), rows L2-normalised;
* ``bibtex`` (159 labels) and ``delicious`` (983 labels): multilabel, seeded 67/33 split;
* ``generated``: make_prototype_classification with 50k classes over 50k sparse
  features, 3 training rows and 1 test row per class. MLPClassifier cannot hold
  its one-hot targets for all rows here (150k x 50k), so it is trained with
  partial_fit on row chunks, timed on ``--dense-rows`` rows and extrapolated.

    python benchmarks/bench_extreme.py                       # everything, about 15 minutes
    python benchmarks/bench_extreme.py --datasets bibtex,delicious --epochs 20
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import normalize

from sklearn_hashdl import HashMLPClassifier, make_prototype_classification, precision_at_k
from sklearn_hashdl.compare import format_columns, measure_fit, warm_up

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def load(name, seed=0):
    """(X_train, y_train, X_test, y_test) as float32 CSR and labels or indicator matrices."""
    if name == "20news":
        d = np.load(DATA / "20newsgroups" / "20news_bydate_counts.npz")
        n = int(d["n_features"])
        parts = []
        for part in ("train", "test"):
            X = sp.csr_matrix((d[f"X_{part}_data"], d[f"X_{part}_indices"], d[f"X_{part}_indptr"]),
                              shape=(len(d[f"y_{part}"]), n))
            parts += [normalize(X.astype(np.float32)), d[f"y_{part}"].astype(np.int64)]
        return tuple(parts)
    if name in ("bibtex", "delicious"):
        X = sp.load_npz(DATA / name / f"{name}_X.npz").astype(np.float32).tocsr()
        Y = sp.load_npz(DATA / name / f"{name}_Y.npz").tocsr().astype(np.int64)
        X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.33, random_state=seed)
        return X_train, Y_train.toarray(), X_test, Y_test.toarray()
    if name == "generated":
        n_classes = 50_000
        X, y = make_prototype_classification(n_samples=4 * n_classes, n_classes=n_classes,
                                             n_features=50_000, n_active_prototype=5,
                                             shuffle=False, random_state=seed)
        test = np.zeros(len(y), bool)
        test[3::4] = True  # rows come grouped by class: one test row per class
        order = np.random.RandomState(seed).permutation(int((~test).sum()))
        return X[~test][order], y[~test][order], X[test], y[test]
    raise ValueError(name)


def scores(model, X, y):
    """Accuracy for labels, P@1 and P@5 for indicator targets (chunked predict_proba)."""
    proba = np.vstack([model.predict_proba(X[s: s + 2000]) for s in range(0, X.shape[0], 2000)])
    if np.ndim(y) == 1:
        return {"acc": float(np.mean(model.classes_[proba.argmax(axis=1)] == y))}
    return {"P@1": precision_at_k(y, proba, k=1), "P@5": precision_at_k(y, proba, k=5)}


def dense_chunked_fit(model, X, y, epochs, max_rows, chunk=2000, seed=0):
    """partial_fit over row chunks; stops after max_rows rows and returns the seconds
    per epoch measured (extrapolated when max_rows < rows)."""
    classes = np.unique(y)
    rng = np.random.RandomState(seed)
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(X.shape[0])
        for s in range(0, len(order), chunk):
            rows = order[s: s + chunk]
            model.partial_fit(X[rows], y[rows], classes=classes)
            seen += len(rows)
            if seen >= max_rows:
                return (time.perf_counter() - start) / seen * X.shape[0], seen
    return (time.perf_counter() - start) / epochs, seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="20news,bibtex,delicious,generated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--generated-epochs", type=int, default=3)
    parser.add_argument("--dense-rows", type=int, default=12_000,
                        help="rows MLPClassifier trains on the generated set before extrapolating")
    args = parser.parse_args()
    warm_up()
    settings = {  # hidden sizes, hashed configurations
        "20news": ((256,), [dict(sparsity=0.05)]),
        "bibtex": ((256,), [dict(sparsity=0.1, sparse_layers="output"),
                            dict(sparsity=0.1, sparse_layers="output", multilabel_loss="softmax"),
                            dict(sparsity=0.1, sparse_layers="both")]),
        "delicious": ((256,), [dict(sparsity=0.05, sparse_layers="output"),
                               dict(sparsity=0.05, sparse_layers="output", multilabel_loss="softmax"),
                               dict(sparsity=0.1, sparse_layers="output", multilabel_loss="softmax")]),
        "generated": ((128,), [dict(sparsity=0.005, sparse_layers="output"),
                               dict(sparsity=0.005, sparse_layers="output", selection="random"),
                               dict(sparsity=0.01, sparse_layers="output")]),
    }
    for name in args.datasets.split(","):
        X_train, y_train, X_test, y_test = load(name)
        hidden, configs = settings[name]
        epochs = args.generated_epochs if name == "generated" else args.epochs
        common = dict(hidden_layer_sizes=hidden, batch_size=128, learning_rate_init=1e-3,
                      max_iter=epochs, random_state=0, tol=0, n_iter_no_change=epochs + 1)
        print(f"\n{name}: {X_train.shape[0]} train / {X_test.shape[0]} test rows, "
              f"{X_train.shape[1]} features, {epochs} epochs, hidden {hidden}", flush=True)
        rows = []
        dense = MLPClassifier(**common)
        if name == "generated":
            (seconds, seen), _, peak = measure_fit(
                dense_chunked_fit, MLPClassifier(**{**common, "max_iter": 1}), X_train, y_train,
                epochs, args.dense_rows)
            dense_fit = seconds * epochs
            rows.append({"model": f"MLPClassifier (timed on {seen} rows, extrapolated)",
                         "fit s": dense_fit, "ratio": 1.0, "flop frac": 1.0,
                         "peak MB": peak / 2**20})
        else:
            _, dense_fit, peak = measure_fit(dense.fit, X_train, y_train)
            rows.append({"model": "MLPClassifier", **scores(dense, X_test, y_test), "fit s": dense_fit,
                         "ratio": 1.0, "flop frac": 1.0, "peak MB": peak / 2**20})
        print(rows[-1], flush=True)
        for config in configs:
            model = HashMLPClassifier(**common, **config)
            _, fit, peak = measure_fit(model.fit, X_train, y_train)
            label = ", ".join(f"{k}={v}" for k, v in config.items())
            rows.append({"model": f"Hash {label}", **scores(model, X_test, y_test), "fit s": fit,
                         "ratio": dense_fit / fit, "flop frac": model.flop_fraction_,
                         "peak MB": peak / 2**20})
            print(rows[-1], flush=True)
        columns = [("model", "model", "s")] + [
            (key, key, ".4f") for key in ("acc", "P@1", "P@5") if key in rows[-1]] + [
            ("fit s", "fit s", ".1f"), ("ratio", "MLP/this", ".2f"), ("flop frac", "flop frac", ".4f"),
            ("peak MB", "fit peak MB", ".0f")]
        print(format_columns([{key: r.get(key) for key, _, _ in columns} for r in rows], columns),
              flush=True)


if __name__ == "__main__":
    main()
