"""A NumPy model of one sparse hidden layer trained with each row's top-k, to try
selection rules and schedules the library does not have.

The network is close to HashMLPClassifier's on multilabel data: one ReLU hidden
layer, a logistic output per label, a Glorot-uniform start, batch 128 and lazy Adam,
written densely with a 0/1 mask of the kept neurons, so it is slow but short. It
differs from the library in two ways: it has no L2 penalty (the library's ``alpha``,
1e-4), and its lazy Adam moves only weights whose batch gradient is not zero (the
library also moves, by their moments, the weights of kept neurons whose activation
was zero). Rules (``--rules``):

* ``topk``: keep each row's k largest pre-activations, in training and prediction
  (the library's exact selection);
* ``centred``: rank by pre-activation minus the neuron's moving average over the
  training batches (kept for prediction), so that a neuron high for every row does
  not win every row;
* ``dense``: train the dense network, then predict with each row's top k;
* ``mixed``: in training keep each row's top k / 2 and k / 2 other neurons at random
  (exploration), predict with the top k.

``--warm-up N`` trains the first N epochs dense (every rule). It prints P@1 on the
test rows and how many neurons the prediction-time top-k ever keeps.

    python benchmarks/prototype_topk_training.py --dataset bibtex
    python benchmarks/prototype_topk_training.py --dataset bibtex --warm-up 2 --rules topk
    python benchmarks/prototype_topk_training.py --dataset bibtex --hidden 1024 --k 52
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.special import expit

from bench_extreme import DEFAULT_DATA, FILES, load
from sklearn_hashdl import precision_at_k

RULES = ("topk", "centred", "dense", "mixed")
CENTRE_MOMENTUM = 0.99  # exponential moving average of each neuron's batch-mean pre-activation


class TopKLayerModel:
    """One hidden layer keeping k neurons a row, logistic outputs, lazy Adam."""

    def __init__(self, n_features, n_hidden, n_labels, rng):
        def glorot(fan_in, fan_out, shape):
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-bound, bound, shape).astype(np.float32)

        self.params = [glorot(n_features, n_hidden, (n_features, n_hidden)),
                       glorot(n_features, n_hidden, n_hidden),
                       glorot(n_hidden, n_labels, (n_hidden, n_labels)),
                       glorot(n_hidden, n_labels, n_labels)]
        self.first_moments = [np.zeros_like(p) for p in self.params]
        self.second_moments = [np.zeros_like(p) for p in self.params]
        self.steps = 0
        self.centre = None  # per neuron, for the 'centred' rule

    def pre_activations(self, X):
        return np.asarray(X @ self.params[0]) + self.params[1]

    def kept(self, Z, k, centred, random_fill=0, rng=None):
        """0/1 mask of each row's k highest-ranked neurons (all of them if k >= n),
        or of its k - random_fill highest and random_fill others drawn at random."""
        if k >= Z.shape[1]:
            return np.ones_like(Z)
        ranks = Z - self.centre if centred else Z
        n_top = k - random_fill
        top = np.argpartition(-ranks, n_top - 1, axis=1)[:, :n_top]
        mask = np.zeros_like(Z)
        np.put_along_axis(mask, top, 1.0, axis=1)
        if random_fill:
            for row in mask:
                row[rng.choice(np.flatnonzero(row == 0), random_fill, replace=False)] = 1.0
        return mask

    def train_batch(self, X, Y, k, centred, lr, random_fill=0, rng=None):
        Z = self.pre_activations(X)
        if centred:
            batch_mean = Z.mean(axis=0)
            self.centre = batch_mean if self.centre is None else (
                CENTRE_MOMENTUM * self.centre + (1 - CENTRE_MOMENTUM) * batch_mean)
        mask = self.kept(Z, k, centred, random_fill, rng)
        hidden = np.maximum(Z, 0) * mask
        probabilities = expit(hidden @ self.params[2] + self.params[3])
        d_out = (probabilities - Y) / X.shape[0]
        d_hidden = (d_out @ self.params[2].T) * mask * (Z > 0)
        grads = [np.asarray(X.T @ d_hidden), d_hidden.sum(axis=0), hidden.T @ d_out, d_out.sum(axis=0)]
        self.steps += 1
        step = lr * np.sqrt(1 - 0.999 ** self.steps) / (1 - 0.9 ** self.steps)
        for p, g, m, v in zip(self.params, grads, self.first_moments, self.second_moments):
            moved = g != 0  # lazy: entries whose batch gradient is zero keep moments and value
            m[moved] = 0.9 * m[moved] + 0.1 * g[moved]
            v[moved] = 0.999 * v[moved] + 0.001 * g[moved] ** 2
            p[moved] -= step * m[moved] / (np.sqrt(v[moved]) + 1e-8)

    def logits_and_kept(self, X, k, centred):
        """Output logits with each row's top k kept, and a 0/1 mask of the kept
        neurons with a non-zero activation (a kept zero counts for nothing)."""
        Z = self.pre_activations(X)
        hidden = np.maximum(Z, 0) * self.kept(Z, k, centred)
        return hidden @ self.params[2] + self.params[3], (hidden != 0).astype(np.float32)


def run(X_train, Y_train, X_test, Y_test, rule, n_hidden, k, epochs, warm_up=0, lr=1e-3, seed=0,
        batch_size=128):
    """(test P@1, neurons the prediction-time top-k ever keeps) for one rule."""
    rng = np.random.RandomState(seed)
    model = TopKLayerModel(X_train.shape[1], n_hidden, Y_train.shape[1], rng)
    centred = rule == "centred"
    for epoch in range(epochs):
        k_train = n_hidden if rule == "dense" or epoch < warm_up else k
        random_fill = k_train // 2 if rule == "mixed" and k_train < n_hidden else 0
        order = rng.permutation(X_train.shape[0])
        for first in range(0, len(order), batch_size):
            rows = order[first: first + batch_size]
            model.train_batch(X_train[rows], Y_train[rows].astype(np.float32), k_train, centred, lr,
                              random_fill, rng)
    logits, nonzero_kept = model.logits_and_kept(X_test, k, centred)
    return precision_at_k(Y_test, logits, k=1), int((nonzero_kept.sum(axis=0) > 0).sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="bibtex", choices=["bibtex", "delicious"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--k", type=int, default=32,
                        help="neurons kept a row (the library's default: 32 of 256)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=0, help="dense epochs first")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    args = parser.parse_args(argv)
    if not 1 <= args.k <= args.hidden or args.epochs < 1 or args.learning_rate <= 0:
        parser.error("need 1 <= --k <= --hidden, --epochs >= 1 and --learning-rate > 0")
    rules = args.rules.split(",")
    unknown = [rule for rule in rules if rule not in RULES]
    if unknown:
        parser.error(f"unknown rules {unknown}; choose among {list(RULES)}")
    data = Path(args.data)
    if not all((data / f).exists() for f in FILES[args.dataset]):
        print(f"skipped {args.dataset}: {', '.join(FILES[args.dataset])} not found under {data}")
        return []
    X_train, Y_train, X_test, Y_test = load(args.dataset, data)
    results = []
    for rule in rules:
        p_at_1, picked = run(X_train, Y_train, X_test, Y_test, rule, args.hidden, args.k, args.epochs,
                             args.warm_up, args.learning_rate)
        results.append((rule, p_at_1, picked))
        print(f"{args.dataset} hidden {args.hidden}, k {args.k}, {args.epochs} epochs, "
              f"warm-up {args.warm_up}, lr {args.learning_rate}: {rule:8s} P@1 {p_at_1:.4f}, "
              f"neurons picked {picked}", flush=True)
    return results


if __name__ == "__main__":
    main()
