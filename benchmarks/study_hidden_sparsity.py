"""A sparse hidden layer on sparse text-like input: how its settings change accuracy,
and how evenly its top-k picks spread over the neurons.

On Bibtex (binary word features) the defaults make one hidden layer of 256 sparse,
32 neurons a sample, and score far below MLPClassifier after 10 epochs. This script
fits the configurations given against MLPClassifier, in one run, and prints for
each hashed model how many of the first hidden layer's neurons its prediction-time
top-k (``predict_mode='topk'``, the default) ever keeps with a non-zero activation
over the test rows ("picked") and the share of those kept values that the k neurons
kept most often hold ("top-k share": 1.0 would mean every row keeps the same k
neurons; an even spread gives about k / n). A dense layer counts its positive
activations.

    python benchmarks/study_hidden_sparsity.py --dataset bibtex
    python benchmarks/study_hidden_sparsity.py --dataset bibtex --hidden 1024 \\
        --configs '{}' '{"sparsity": 0.25}' '{"learning_rate_init": 0.01}' \\
        '{"sparsity": 0.1, "sparse_layers": "output"}'

Each ``--configs`` entry is a JSON object of HashMLPClassifier parameters on top of
the common ones (hidden sizes, batch 128, Adam 1e-3, epochs, seed); ``{}`` is the
defaults. Each hashed model's line also gives the seconds of each training phase
(``_train.PhaseTimer``, as bench_speed.py breaks a fit down).
``--dense-learning-rates 0.001,0.003`` fits MLPClassifier at each rate, so that a
hashed model trained at a higher rate meets a dense one trained at that rate too.
Datasets load as in bench_extreme.py.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier

from bench_extreme import DEFAULT_DATA, FILES, load, scores
from sklearn_hashdl import HashMLPClassifier, _train
from sklearn_hashdl._inference import as_float_input, logit_chunks
from sklearn_hashdl.compare import format_columns, measure_fit, warm_up

DEFAULT_CONFIGS = ['{}', '{"selection": "random"}', '{"min_active": 64}', '{"min_active": 128}',
                   '{"sparsity": 0.1, "sparse_layers": "output"}']


def top_k_spread(model, X):
    """(neurons ever kept, share of the kept values held by the k most kept neurons)
    for the first hidden layer's 'topk' prediction (its fit's k) over the rows of X.

    The kept activations come from prediction's own code (``logit_chunks``), read
    through an identity layer put after the first hidden layer; a kept zero (a row
    with fewer than k positive activations) counts for nothing.
    """
    k = model._fitted_counts()[0]
    n = model.coefs_[0].shape[1]
    identity = [np.eye(n, dtype=np.float32), np.zeros(n, np.float32)]
    counts = np.zeros(n, np.int64)
    for _, kept in logit_chunks([model.coefs_[0], identity[0]], [model.intercepts_[0], identity[1]],
                                [k, n], model.activation, as_float_input(X, np.float32)):
        counts += (kept != 0).sum(axis=0)
    counts = np.sort(counts)[::-1]
    return int((counts > 0).sum()), float(counts[:k].sum() / max(counts.sum(), 1))


def parse_configs(parser, texts, common):
    """The --configs entries as dicts, each checked by building its model before any fit."""
    configs = []
    for text in texts:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            parser.error(f"--configs entry {text!r} is not JSON: {error}")
        if not isinstance(config, dict):
            parser.error(f"--configs entry {text!r} is not a JSON object")
        try:
            HashMLPClassifier(**{**common, **config})._validate_params()
        except (TypeError, ValueError) as error:
            parser.error(f"--configs entry {text!r}: {error}")
        configs.append(config)
    return configs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="bibtex", choices=["20news", "bibtex", "delicious"])
    parser.add_argument("--hidden", default="256", help="hidden sizes, comma separated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--dense-learning-rates", default="0.001",
                        help="MLPClassifier's learning_rate_init, one fit per comma-separated value")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not all((data / f).exists() for f in FILES[args.dataset]):
        print(f"skipped {args.dataset}: {', '.join(FILES[args.dataset])} not found under {data}")
        return []
    hidden = tuple(int(h) for h in args.hidden.split(","))
    common = dict(hidden_layer_sizes=hidden, batch_size=128, learning_rate_init=1e-3,
                  max_iter=args.epochs, random_state=0, tol=0, n_iter_no_change=args.epochs + 1)
    configs = parse_configs(parser, args.configs, common)
    warm_up()
    X_train, y_train, X_test, y_test = load(args.dataset, data)
    print(f"{args.dataset}: {X_train.shape[0]} train / {X_test.shape[0]} test rows, hidden {hidden}, "
          f"{args.epochs} epochs", flush=True)
    rows = []
    for rate in (float(text) for text in args.dense_learning_rates.split(",")):
        dense = MLPClassifier(**{**common, "learning_rate_init": rate})
        _, dense_fit, _ = measure_fit(dense.fit, X_train, y_train)
        at_default = rate == common["learning_rate_init"]
        name = "MLPClassifier" + ("" if at_default else f", learning_rate_init={rate}")
        rows.append({"model": name, **scores(dense, X_test, y_test), "fit s": dense_fit,
                     "active": hidden[0], "picked": None, "share": None})
    for config in configs:
        model = HashMLPClassifier(**{**common, **config})
        _train.phase_timer = timer = _train.PhaseTimer()  # where the fit's time goes
        try:
            _, fit, _ = measure_fit(model.fit, X_train, y_train)
        finally:
            _train.phase_timer = None
        picked, share = top_k_spread(model, X_test)
        rows.append({"model": ", ".join(f"{name}={value}" for name, value in config.items()) or "defaults",
                     **scores(model, X_test, y_test), "fit s": fit,
                     "active": model._fitted_counts()[0], "picked": picked, "share": share,
                     "phases": {phase: round(seconds, 2) for phase, seconds in
                                sorted(timer.seconds.items(), key=lambda item: -item[1])}})
        print(rows[-1], flush=True)
    score_keys = [key for key in ("acc", "P@1", "P@5") if key in rows[0]]
    columns = ([("model", "model", "s")] + [(key, key, ".4f") for key in score_keys]
               + [("fit s", "fit s", ".1f"), ("active", "active", "d"), ("picked", "picked", "d"),
                  ("share", "top-k share", ".3f")])
    print(format_columns(rows, columns), flush=True)
    return rows


if __name__ == "__main__":
    main()
