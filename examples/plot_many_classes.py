"""Many classes: a sparse output layer against MLPClassifier.

With thousands of classes a dense network spends most of its time in the output
layer. ``sparse_layers='output'`` trains, per sample, only its true label and a
``sparsity`` share of the other outputs, drawn at random, and scores every output
when it predicts. This example generates 1,000 classes over 10,000 sparse binary
features (``make_prototype_classification``, no download), trains both models with
the same hidden layer, batch size, epochs and seed, and prints test accuracy, fit
time and the multiply-adds of the hashed fit relative to dense training.

    python examples/plot_many_classes.py
"""

import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier, make_prototype_classification


def main(n_classes=1000, rows_per_class=10, epochs=10):
    """Fit both models; returns {model name: (test accuracy, fit seconds)}."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    # each row: 4 of its class's 20 prototype features and 10 random ones
    X, y = make_prototype_classification(n_samples=rows_per_class * n_classes, n_classes=n_classes,
                                         n_features=10 * n_classes, n_active_prototype=4,
                                         n_noise_features=10, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    common = dict(hidden_layer_sizes=(128,), batch_size=128, max_iter=epochs, random_state=0,
                  learning_rate_init=1e-3, tol=0, n_iter_no_change=epochs + 1)
    models = {"MLPClassifier": MLPClassifier(**common),
              "HashMLPClassifier, sparse output": HashMLPClassifier(sparse_layers="output", sparsity=0.02,
                                                                    **common)}
    print(f"{n_classes} classes, {X_train.shape[0]} training rows, {X.shape[1]} sparse features, "
          f"hidden (128,), {epochs} epochs")
    results = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        results[name] = (model.score(X_test, y_test), seconds)
        flops = f", flop_fraction_ {model.flop_fraction_:.3f}" if hasattr(model, "flop_fraction_") else ""
        print(f"{name:34s} accuracy {results[name][0]:.3f}, fit {seconds:.1f} s{flops}")
    return results


if __name__ == "__main__":
    main()
