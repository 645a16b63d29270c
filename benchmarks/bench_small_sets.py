"""Small networks on the shared tabular and multi-label sets (and scikit-learn's own
small sets), against MLPClassifier.

Each set is split 75/25 (seeded, stratified where every class has two rows);
tabular features are standardised on the training part, as an MLP needs. Both
models get the same hidden sizes, epochs, batch size and seed. HashMLPClassifier
runs once per ``--variants`` entry, ``sparsity@learning_rate_init`` or
``sparsity@learning_rate_init@min_active``: with few neurons active, each step
moves fewer weights, so at the default learning rate a sparse net can need more
epochs than the dense one to fit the same data, and with very few (a 256-wide
layer at 0.05 keeps 13 at ``min_active=1``; by default 32) it learns less.

Scores: test accuracy and balanced accuracy (tabular), micro-F1 (multi-label).
``fit x`` is MLPClassifier's fit time over this model's.

    python benchmarks/bench_small_sets.py
    python benchmarks/bench_small_sets.py --sets letter,enron --epochs 50 --variants 0.05@0.001,0.2@0.001
    python benchmarks/bench_small_sets.py --sets iris,wine,breast_cancer,digits --hidden 100 --epochs 200
    python benchmarks/bench_small_sets.py --sets letter --hidden 100 --epochs 300 --early-stopping

With ``--early-stopping`` both models hold out 10% of the training rows and stop once
the validation score has not improved for ``--n-iter-no-change`` epochs (at most
``--epochs``); the epochs each trained are printed.
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl.compare import timed, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TABULAR = ["letter", "shuttle", "connect_4", "fars", "sleep", "kddcup"]
MULTILABEL = ["enron", "langlog", "slashdot", "ohsumed"]
BUILTIN = ["iris", "wine", "breast_cancer", "digits"]  # scikit-learn's, always there


def load_set(data_dir, name, max_rows, seed=0):
    """(X_train, y_train, X_test, y_test, multilabel) for one shared set, or None if absent."""
    if name in BUILTIN:
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        X = X.astype(np.float32)
    elif name in TABULAR:
        path = data_dir / "tabular-pmlb" / f"{name}.npz"
        if not path.exists():
            return None
        data = np.load(path)
        X, y = data["X"].astype(np.float32), data["y"]
    else:
        folder = data_dir / "multilabel-extra"
        if not (folder / f"{name}_X.npz").exists():
            return None
        X = sp.load_npz(folder / f"{name}_X.npz").tocsr().astype(np.float32)
        y = sp.load_npz(folder / f"{name}_Y.npz").toarray()
    rng = np.random.RandomState(seed)
    if X.shape[0] > max_rows:
        keep = np.sort(rng.choice(X.shape[0], max_rows, replace=False))
        X, y = X[keep], y[keep]
    multilabel = y.ndim == 2
    stratify = None
    if not multilabel and np.unique(y, return_counts=True)[1].min() >= 2:
        stratify = y
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed,
                                                        stratify=stratify)
    if not multilabel:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, y_train, X_test, y_test, multilabel


def scores(model, X_test, y_test, multilabel):
    predicted = model.predict(X_test)
    if multilabel:
        predicted = predicted.toarray() if sp.issparse(predicted) else predicted
        return f"micro-F1 {f1_score(y_test, predicted, average='micro', zero_division=0):.3f}"
    with warnings.catch_warnings():  # a rare class predicted but absent from the test part
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_test, predicted)
    return f"accuracy {np.mean(predicted == y_test):.4f}  balanced {balanced:.3f}"


def parse_variants(text):
    """'0.05@0.001@1,0.2@0.001' -> [(0.05, 0.001, 1), (0.2, 0.001, None)]: sparsity,
    learning rate and min_active (None: the default)."""
    variants = []
    for part in text.split(","):
        sparsity, learning_rate, *min_active = part.split("@")
        variants.append((float(sparsity), float(learning_rate), int(min_active[0]) if min_active else None))
    return variants


def _epochs(model, args):
    """The epochs a fit trained, where early stopping decides them."""
    return f"  {model.n_iter_} epochs" if args.early_stopping else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--sets", default=",".join(TABULAR + MULTILABEL))
    parser.add_argument("--hidden", default="256")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-rows", type=int, default=40000, help="rows drawn from larger sets")
    parser.add_argument("--early-stopping", action="store_true")
    parser.add_argument("--n-iter-no-change", type=int, default=10)
    parser.add_argument("--variants", default="0.05@0.001@1,0.05@0.001,0.05@0.003,0.2@0.001",
                        help="HashMLPClassifier runs, each sparsity@learning_rate_init[@min_active]")
    args = parser.parse_args(argv)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    print(f"hidden {hidden}, {args.epochs} epochs, batch 128 (or every row of a smaller set)")
    warm_up()  # the kernels are compiled or loaded before anything is timed
    for name in args.sets.split(","):
        loaded = load_set(Path(args.data), name, args.max_rows)
        if loaded is None:
            print(f"{name}: skipped, not found under {args.data}")
            continue
        X_train, y_train, X_test, y_test, multilabel = loaded
        common = dict(hidden_layer_sizes=hidden, max_iter=args.epochs, random_state=0,
                      batch_size=min(128, X_train.shape[0]), early_stopping=args.early_stopping,
                      n_iter_no_change=args.n_iter_no_change)
        dense, dense_seconds = timed(MLPClassifier(**common).fit, X_train, y_train)
        print(f"{name} ({X_train.shape[0]} train rows, {X_train.shape[1]} features)")
        print(f"  {'MLPClassifier':46s} {scores(dense, X_test, y_test, multilabel)}  "
              f"fit {dense_seconds:6.2f} s{_epochs(dense, args)}")
        for sparsity, learning_rate, min_active in parse_variants(args.variants):
            floor = {} if min_active is None else {"min_active": min_active}
            model = HashMLPClassifier(sparsity=sparsity, learning_rate_init=learning_rate, **floor, **common)
            _, seconds = timed(model.fit, X_train, y_train)
            label = f"HashMLP sparsity {sparsity:g}, lr {learning_rate:g}, {model._n_active[0]} active"
            print(f"  {label:46s} {scores(model, X_test, y_test, multilabel)}  "
                  f"fit {seconds:6.2f} s ({dense_seconds / seconds:4.1f}x){_epochs(model, args)}", flush=True)
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        raise SystemExit(main())
