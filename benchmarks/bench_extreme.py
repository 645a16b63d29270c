"""Extreme classification: HashMLPClassifier against MLPClassifier on sparse text-like data.

In one run per dataset, with the same hidden sizes, batch 128, Adam 1e-3, epochs
and seed: test accuracy (single-label) or P@1 / P@5 (multilabel), fit seconds,
the dense/hash fit-time ratio, flop_fraction_ and the peak memory each fit adds.

* ``20news``: 20 Newsgroups word counts (130k sparse features, 20 classes), rows L2-normalised;
* ``bibtex`` (159 labels) and ``delicious`` (983 labels): multilabel, seeded 67/33 split;
* ``generated``: make_prototype_classification with 50k classes over 50k sparse
  features, 3 training rows and 1 test row per class. MLPClassifier cannot hold
  its one-hot targets for all rows here (150k x 50k), so it is trained with
  partial_fit on shuffled 2000-row chunks; every model is trained epoch by
  epoch with its test P@1 (= accuracy) after each ('best' is the best epoch).

    python benchmarks/bench_extreme.py                       # everything, about an hour
    python benchmarks/bench_extreme.py --datasets bibtex,delicious --epochs 20
"""

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import normalize

from sklearn_hashdl import HashMLPClassifier, make_precision_at_k_scorer, make_prototype_classification
from sklearn_hashdl.compare import format_columns, measure_fit, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# the files each dataset needs, under the data folder
FILES = {"20news": ["20newsgroups/20news_bydate_counts.npz"],
         "bibtex": ["bibtex/bibtex_X.npz", "bibtex/bibtex_Y.npz"],
         "delicious": ["delicious/delicious_X.npz", "delicious/delicious_Y.npz"],
         "generated": []}


def load(name, data, seed=0):
    """(X_train, y_train, X_test, y_test) as float32 CSR and labels or indicator matrices."""
    if name == "20news":
        d = np.load(data / "20newsgroups" / "20news_bydate_counts.npz")
        n = int(d["n_features"])
        parts = []
        for part in ("train", "test"):
            X = sp.csr_matrix((d[f"X_{part}_data"], d[f"X_{part}_indices"], d[f"X_{part}_indptr"]),
                              shape=(len(d[f"y_{part}"]), n))
            parts += [normalize(X.astype(np.float32)), d[f"y_{part}"].astype(np.int64)]
        return tuple(parts)
    if name in ("bibtex", "delicious"):
        X = sp.load_npz(data / name / f"{name}_X.npz").astype(np.float32).tocsr()
        Y = sp.load_npz(data / name / f"{name}_Y.npz").tocsr().astype(np.int64)
        X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.33, random_state=seed)
        return X_train, Y_train.toarray(), X_test, Y_test.toarray()
    if name == "generated":
        n_classes = 50_000
        X, y = make_prototype_classification(n_samples=4 * n_classes, n_classes=n_classes,
                                             n_features=50_000, n_active_prototype=6,
                                             shuffle=False, random_state=seed)
        test = np.zeros(len(y), bool)
        test[3::4] = True  # rows come grouped by class: one test row per class
        order = np.random.RandomState(seed).permutation(int((~test).sum()))
        return X[~test][order], y[~test][order], X[test], y[test]
    raise ValueError(name)


def scores(model, X, y):
    """Accuracy (= P@1) for labels, P@1 and P@5 for indicator targets; predict_proba
    runs on row chunks, so a 50k x 50k probability matrix is never held."""
    if np.ndim(y) == 1:
        return {"acc": make_precision_at_k_scorer(k=1)(model, X, y)}
    return {"P@1": make_precision_at_k_scorer(k=1)(model, X, y),
            "P@5": make_precision_at_k_scorer(k=5)(model, X, y)}


def train_by_epoch(model, X, y, X_test, y_test, epochs, chunk_rows=None, seed=0):
    """Train ``epochs`` passes with partial_fit, scoring the test set after each.

    ``chunk_rows`` feeds partial_fit row chunks of a shuffled epoch (MLPClassifier
    would otherwise hold one-hot targets for every row: 150k x 50k here).
    Returns (training seconds, peak memory a training call added, P@1 per epoch).
    """
    classes = np.unique(y)
    rng = np.random.RandomState(seed)
    seconds, peak, curve = 0.0, 0, []
    for _ in range(epochs):
        order = rng.permutation(X.shape[0]) if chunk_rows else np.arange(X.shape[0])
        step = chunk_rows or X.shape[0]
        for s in range(0, len(order), step):
            rows = order[s: s + step]
            _, fit, added = measure_fit(model.partial_fit, X[rows], y[rows], None, classes)
            seconds += fit
            peak = max(peak, added or 0)
        curve.append(scores(model, X_test, y_test)["acc"])
    return seconds, peak, curve


def _label(config):
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "defaults"


def generated_rows(rows, common, configs, X_train, y_train, X_test, y_test, epochs):
    """Epoch-by-epoch training of every model on the generated set, P@1 after each."""
    dense = MLPClassifier(**{**common, "max_iter": 1})
    dense_fit, peak, curve = train_by_epoch(dense, X_train, y_train, X_test, y_test, epochs, 2000)
    rows.append({"model": "MLPClassifier (partial_fit, 2000-row chunks)", "acc": curve[-1],
                 "best": max(curve), "fit s": dense_fit, "ratio": 1.0, "flop frac": 1.0,
                 "peak MB": peak / 2**20})
    print(rows[-1], "P@1 by epoch", np.round(curve, 4), flush=True)
    for config in configs:
        model = HashMLPClassifier(**{**common, "max_iter": 1}, **config)
        fit, peak, curve = train_by_epoch(model, X_train, y_train, X_test, y_test, epochs)
        rows.append({"model": f"Hash {_label(config)}", "acc": curve[-1], "best": max(curve),
                     "fit s": fit, "ratio": dense_fit / fit, "flop frac": model.flop_fraction_,
                     "peak MB": peak / 2**20})
        print(rows[-1], "P@1 by epoch", np.round(curve, 4), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="20news,bibtex,delicious,generated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--generated-epochs", type=int, default=4)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    args = parser.parse_args()
    names = args.datasets.split(",")
    unknown = [name for name in names if name not in FILES]
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose among {sorted(FILES)}")
    data = Path(args.data)
    missing = [name for name in names if not all((data / f).exists() for f in FILES[name])]
    for name in missing:
        print(f"skipped {name}: {', '.join(FILES[name])} not found under {data}")
    names = [name for name in names if name not in missing]
    if not names:
        return 0
    warm_up()
    settings = {  # hidden sizes, hashed configurations
        "20news": ((256,), [dict(sparsity=0.05, min_active=1), dict(sparsity=0.05), dict(sparsity=0.25),
                            dict(sparsity=1.0)]),
        "bibtex": ((256,), [dict(),  # the defaults: the hidden layer sparse (32 of 256)
                            dict(sparsity=0.1, sparse_layers="output"),
                            dict(sparsity=0.1, sparse_layers="output", multilabel_loss="softmax"),
                            dict(sparsity=0.1, sparse_layers="output", selection="exact"),
                            dict(sparsity=0.1, sparse_layers="both")]),
        "delicious": ((256,), [dict(sparsity=0.05, sparse_layers="output"),
                               dict(sparsity=0.05, sparse_layers="output", multilabel_loss="softmax"),
                               dict(sparsity=0.05, sparse_layers="output", selection="exact")]),
        "generated": ((128,), [dict(sparsity=0.005, sparse_layers="output"),
                               dict(sparsity=0.01, sparse_layers="output"),
                               dict(sparsity=0.005, sparse_layers="output", selection="lsh_rerank")]),
    }
    for name in names:
        X_train, y_train, X_test, y_test = load(name, data)
        hidden, configs = settings[name]
        epochs = args.generated_epochs if name == "generated" else args.epochs
        common = dict(hidden_layer_sizes=hidden, batch_size=128, learning_rate_init=1e-3,
                      max_iter=epochs, random_state=0, tol=0, n_iter_no_change=epochs + 1)
        print(f"\n{name}: {X_train.shape[0]} train / {X_test.shape[0]} test rows, "
              f"{X_train.shape[1]} features, {epochs} epochs, hidden {hidden}", flush=True)
        rows = []
        if name == "generated":
            generated_rows(rows, common, configs, X_train, y_train, X_test, y_test, epochs)
        else:
            dense = MLPClassifier(**common)
            _, dense_fit, peak = measure_fit(dense.fit, X_train, y_train)
            rows.append({"model": "MLPClassifier", **scores(dense, X_test, y_test), "fit s": dense_fit,
                         "ratio": 1.0, "flop frac": 1.0, "peak MB": peak / 2**20})
            print(rows[-1], flush=True)
            for config in configs:
                model = HashMLPClassifier(**common, **config)
                _, fit, peak = measure_fit(model.fit, X_train, y_train)
                rows.append({"model": f"Hash {_label(config)}", **scores(model, X_test, y_test),
                             "fit s": fit, "ratio": dense_fit / fit,
                             "flop frac": model.flop_fraction_, "peak MB": peak / 2**20})
                print(rows[-1], flush=True)
        columns = [("model", "model", "s")] + [
            (key, key, ".4f") for key in ("acc", "best", "P@1", "P@5") if key in rows[-1]] + [
            ("fit s", "fit s", ".1f"), ("ratio", "MLP/this", ".2f"), ("flop frac", "flop frac", ".4f"),
            ("peak MB", "fit peak MB", ".0f")]
        print(format_columns([{key: r.get(key) for key, _, _ in columns} for r in rows], columns),
              flush=True)


if __name__ == "__main__":
    main()
