"""Compare HashMLPClassifier with scikit-learn's dense MLPClassifier on one dataset.

Both models get the same hidden sizes, epochs, batch size, Adam learning rate and
seed, and float32 data; the table shows test accuracy, fit and predict seconds,
``flop_fraction_`` and the fit speed-up over the dense model. Kernels are
compiled before anything is timed.

Command line::

    python -m sklearn_hashdl.compare                       # digits, ships with scikit-learn
    python -m sklearn_hashdl.compare --dataset synthetic
    python -m sklearn_hashdl.compare --npz ../shared/data/mnist/mnist.npz --hidden 1000,1000,1000
    python -m sklearn_hashdl.compare --openml mnist_784    # needs a network

Python::

    from sklearn_hashdl.compare import compare, format_table, load_dataset
    print(format_table(compare(*load_dataset("digits"))))
"""

import argparse
import multiprocessing
import os
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from ._blocks import MIN_BLOCK_WIDTH, machine_cores
from ._classifier import AUTO_EXACT_MAX_WIDTH, HashMLPClassifier


def load_dataset(name="digits", npz=None, openml=None, max_train_rows=None, seed=0):
    """Return float32 (X_train, y_train, X_test, y_test) for a named dataset.

    ``npz`` is a file with keys X_train, y_train, X_test, y_test (uint8 pixels
    are scaled to [0, 1]); ``openml`` a dataset name for ``fetch_openml``.
    """
    if npz is not None:
        data = np.load(npz)
        parts = [data[key] for key in ("X_train", "y_train", "X_test", "y_test")]
        scale = 255.0 if parts[0].dtype == np.uint8 else 1.0
        parts[0] = parts[0].astype(np.float32) / scale
        parts[2] = parts[2].astype(np.float32) / scale
    else:
        if openml is not None:
            from sklearn.datasets import fetch_openml

            X, y = fetch_openml(openml, return_X_y=True, as_frame=False)
            X = X.astype(np.float32)
            X /= max(float(np.abs(X).max()), 1.0)
        elif name == "digits":
            X, y = load_digits(return_X_y=True)
            X = X.astype(np.float32) / 16
        elif name == "synthetic":
            X, y = make_classification(n_samples=6000, n_features=100, n_informative=40,
                                       n_classes=8, n_clusters_per_class=2, random_state=seed)
            X = X.astype(np.float32)
        else:
            raise ValueError(f"unknown dataset {name!r}; use 'digits', 'synthetic', npz or openml")
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                            random_state=seed, stratify=y)
        parts = [X_train, y_train, X_test, y_test]
    if max_train_rows is not None:
        parts[0], parts[1] = parts[0][:max_train_rows], parts[1][:max_train_rows]
    return tuple(parts)


def timed(function, *args):
    """Call function(*args) with ConvergenceWarning silenced; return (result, seconds)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = function(*args)
    return result, time.perf_counter() - start


def measure_fit(function, *args):
    """Like ``timed``, also returning the peak resident memory the call added, in bytes
    (None where Linux's /proc interface to reset the peak is missing)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        start_rss = _proc_status_kb("VmRSS")
    except OSError:
        start_rss = None
    result, seconds = timed(function, *args)
    if start_rss is None:
        return result, seconds, None
    return result, seconds, (_proc_status_kb("VmHWM") - start_rss) * 1024


def traced_peak_memory(function, *args):
    """Peak bytes allocated through Python and NumPy during function(*args), by tracemalloc.

    Unlike the resident size, it is not hidden by memory the process freed earlier
    and reuses; it misses allocations made inside numba kernels and BLAS scratch
    (both small here). Slows the call: time it separately.
    """
    tracemalloc.start()
    try:
        timed(function, *args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def warm_up():
    """Compile (or load from the on-disk cache) the kernels of fit and predict before timing.

    On several cores that includes the kernels of column blocks stored apart
    (``_blocks``), which a fit on several threads calls only once its layout
    chooser tries them (after some 30 batches): two hidden layers wide enough for
    two blocks each, trained in 50 batches. Without them, a 3 x 1000 fit's
    first repeat in a fresh checkout compiled them for 35 s inside its timing.
    """
    rng = np.random.RandomState(0)
    X, y = rng.rand(200, 10).astype(np.float32), rng.randint(0, 3, 200)
    for solver in ("adam", "sgd"):
        for selection in ("lsh", "exact"):
            model, _ = timed(HashMLPClassifier((40,), max_iter=1, sparsity=0.2, selection=selection,
                                               solver=solver).fit, X, y)
            # prediction's own kernels too (the top-k for float32 and float64 input, the
            # content keys of 'hashed'): compare() times predict, and a fresh install
            # compiled them inside it
            model.predict(X)
            model.predict(X.astype(np.float64))
            if selection == "lsh":
                model.set_params(predict_mode="hashed").predict(X)
        if machine_cores() > 1:
            width = 2 * MIN_BLOCK_WIDTH
            timed(HashMLPClassifier((width, width), max_iter=1, sparsity=0.05, selection="exact",
                                    solver=solver, batch_size=4, n_jobs=2).fit, X, y)


def _fit_after_barrier(params, data, barrier):
    """Worker of ``concurrent_fit_seconds``: seconds of one fit, started with the others."""
    X, y, _, _ = load_dataset(**data)
    warm_up()
    model = HashMLPClassifier(**params)
    barrier.wait(timeout=600)  # a sibling that failed breaks the barrier instead of hanging it
    return timed(model.fit, X, y)[1]


def concurrent_fit_seconds(params, data, n_processes=2):
    """Seconds of the slowest of ``n_processes`` fits run at the same time, each in
    its own process, of HashMLPClassifier(**params) on load_dataset(**data).

    With n_jobs=1 in ``params`` it shows how much the cores slow each other
    through what they share (caches, memory) when the work itself shares nothing.
    """
    spawn = multiprocessing.get_context("spawn")  # never fork after numba's threads start
    with spawn.Manager() as manager, spawn.Pool(n_processes) as pool:
        barrier = manager.Barrier(n_processes)
        seconds = pool.starmap(_fit_after_barrier, [(params, data, barrier)] * n_processes)
    return max(seconds)


def compare(X_train, y_train, X_test, y_test, hidden_layer_sizes=(1000,), K=6, L=10,
            sparsity=0.05, epochs=20, batch_size=128, learning_rate_init=1e-3, random_state=0,
            n_jobs=None, **hash_params):
    """Fit both models and return one dict per model (dense first).

    Keys: model, accuracy, fit_seconds, predict_seconds, flop_fraction, speedup
    (dense fit seconds / this model's fit seconds). Extra keyword arguments go to
    HashMLPClassifier (e.g. selection='exact').
    """
    warm_up()
    common = dict(hidden_layer_sizes=hidden_layer_sizes, max_iter=epochs, batch_size=batch_size,
                  learning_rate_init=learning_rate_init, random_state=random_state,
                  solver="adam", tol=0.0, n_iter_no_change=epochs + 1)
    models = [
        ("MLPClassifier", MLPClassifier(**common)),
        ("HashMLPClassifier", HashMLPClassifier(K=K, L=L, sparsity=sparsity, n_jobs=n_jobs,
                                                **common, **hash_params)),
    ]
    rows = []
    for name, model in models:
        _, fit_seconds = timed(model.fit, X_train, y_train)
        predictions, predict_seconds = timed(model.predict, X_test)
        rows.append(dict(
            model=name, accuracy=float(np.mean(predictions == y_test)), fit_seconds=fit_seconds,
            predict_seconds=predict_seconds,
            flop_fraction=float(getattr(model, "flop_fraction_", 1.0)),
        ))
    for row in rows:
        row["speedup"] = rows[0]["fit_seconds"] / row["fit_seconds"]
    return rows


def format_columns(rows, columns):
    """A plain-text table: ``columns`` is a list of (key, header, format spec).

    The first column is left-aligned text; a value of None prints as '-'.
    """
    widths = [max(len(header), 8) for _, header, _ in columns]
    widths[0] = max([widths[0]] + [len(str(r[columns[0][0]])) for r in rows])
    header = " ".join(f"{h:{w}s}" if i == 0 else f"{h:>{w}s}"
                      for i, ((_, h, _), w) in enumerate(zip(columns, widths)))
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = []
        for i, ((key, _, spec), w) in enumerate(zip(columns, widths)):
            value = r[key]
            text = "-" if value is None else format(value, spec)
            cells.append(f"{text:{w}s}" if i == 0 else f"{text:>{w}s}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def format_table(rows):
    """A plain-text table of compare()'s rows."""
    return format_columns(rows, [
        ("model", "model", "s"), ("accuracy", "accuracy", ".4f"), ("fit_seconds", "fit s", ".2f"),
        ("predict_seconds", "predict s", ".3f"), ("flop_fraction", "flop_fraction", ".4f"),
        ("speedup", "fit speed-up", ".2f"),
    ])


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _sizes(text):
    try:
        return tuple(_positive_int(size) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes") from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_hashdl.compare",
        description="Compare HashMLPClassifier with a dense MLPClassifier.")
    parser.add_argument("--dataset", default="digits", choices=["digits", "synthetic"])
    parser.add_argument("--npz", help="npz file with X_train, y_train, X_test, y_test")
    parser.add_argument("--openml", help="an OpenML dataset name (needs a network)")
    parser.add_argument("--hidden", default=(1000,), type=_sizes, help="hidden sizes, e.g. 1000,1000,1000")
    parser.add_argument("--K", type=int, default=6, help="hash bits per table")
    parser.add_argument("--L", type=int, default=10, help="hash tables per layer")
    parser.add_argument("--sparsity", type=float, default=0.05)
    parser.add_argument("--selection", default=None, choices=["auto", "lsh", "lsh_rerank", "exact", "random"],
                        help="default: the estimator's")
    parser.add_argument("--epochs", type=_positive_int, default=20)
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train-rows", type=_positive_int, default=None)
    args = parser.parse_args(argv)
    if args.npz is not None and not os.path.exists(args.npz):
        parser.error(f"--npz: no file {args.npz}")
    hidden = args.hidden
    extra = {} if args.selection is None else {"selection": args.selection}
    try:  # bad settings are reported before anything is loaded or compiled
        HashMLPClassifier(hidden, K=args.K, L=args.L, sparsity=args.sparsity,
                          learning_rate_init=args.learning_rate, **extra)._validate_params()
    except ValueError as error:
        parser.error(str(error))

    X_train, y_train, X_test, y_test = load_dataset(
        args.dataset, npz=args.npz, openml=args.openml, max_train_rows=args.max_train_rows,
        seed=args.seed)
    source = args.npz or args.openml or args.dataset
    print(f"dataset {source}: train {X_train.shape}, test {X_test.shape}, "
          f"{len(np.unique(y_train))} classes")
    hashed = args.selection in ("lsh", "lsh_rerank") or (
        args.selection in (None, "auto") and max(hidden) > AUTO_EXACT_MAX_WIDTH)
    hashing = f", K={args.K}, L={args.L}" if hashed else ""
    print(f"hidden {hidden}, sparsity {args.sparsity}{hashing}, "
          f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.learning_rate}, "
          f"seed {args.seed} (kernels compiled before timing)\n")
    rows = compare(X_train, y_train, X_test, y_test, hidden_layer_sizes=hidden, K=args.K,
                   L=args.L, sparsity=args.sparsity, epochs=args.epochs,
                   batch_size=args.batch_size, learning_rate_init=args.learning_rate,
                   random_state=args.seed, **extra)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
