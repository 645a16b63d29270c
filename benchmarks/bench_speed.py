"""Fit time of HashMLPClassifier against dense baselines, with a time breakdown.

For each hidden configuration, in one run on real MNIST: MLPClassifier (and
PyTorch's CPU build when it is importable; it is not a dependency), then
HashMLPClassifier at each sparsity and selection, all with batch 128, Adam 1e-3,
the same epochs and seed. Prints seconds per epoch, the dense/hash time ratio,
test accuracy, flop_fraction_, and where the hashed fit spent its time. With
``--repeats N`` every model is fitted N times, taking turns, and the table gives
median seconds and the median and range of the ratios paired within a repeat
(and the median PyTorch/hash ratio, when PyTorch ran); with
``--memory``, also the peak memory of a one-epoch fit of each scikit-learn model
(tracemalloc, in a separate untimed fit; not for PyTorch); with
``--asynchronous``, each hashed model is also fitted with asynchronous=True.
Below each table: the round trip of a cache line between the two cores
(``core_latency.py``), the slowest measured around each repeat's fits. A
virtual machine's host moves its virtual CPUs about, and with them far apart
(300 ns or more, against about 100 ns) two-thread fits run slower.

    python benchmarks/bench_speed.py                                   # all configs
    python benchmarks/bench_speed.py --hidden 16384 --sparsity 0.02 --selection lsh_rerank,exact
    python benchmarks/bench_speed.py --train-rows 10000 --epochs 1 --n-jobs 1
    python benchmarks/bench_speed.py --hidden 4096 --sparsity 0.02 --selection lsh --repeats 3
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from sklearn.neural_network import MLPClassifier

from sklearn_hashdl import HashMLPClassifier, _train
from sklearn.base import clone

from sklearn_hashdl.compare import load_dataset, measure_fit, traced_peak_memory, warm_up

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_latency import round_trip_ns  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
HIDDEN = ["1000,1000,1000", "4096", "16384"]


def torch_fit_seconds(hidden, data, epochs, seed):
    """Seconds to train the same MLP with PyTorch on the CPU, or None without torch."""
    try:
        import torch
    except ImportError:
        return None, None
    X_train, y_train, X_test, y_test = data
    torch.manual_seed(seed)
    sizes = [X_train.shape[1], *hidden, int(y_train.max()) + 1]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, y = torch.from_numpy(X_train), torch.from_numpy(y_train.astype(np.int64))
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            rows = order[i: i + 128]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(X[rows]), y[rows]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    return seconds, accuracy


def _peak(model, X, y):
    """Peak traced memory of a one-epoch fit of a fresh copy of model."""
    return traced_peak_memory(clone(model).set_params(max_iter=1).fit, X, y)


def _megabytes(n_bytes):
    """Peak memory of a fit, as a table cell."""
    return f"{'-':>11s}" if n_bytes is None else f"{n_bytes / 2**20:11.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", default=";".join(HIDDEN), help="';'-separated, e.g. 4096;16384")
    parser.add_argument("--sparsity", default="0.05,0.02")
    parser.add_argument("--selection", default="auto", help="comma-separated selections")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1,
                        help="fits of each model, taking turns; medians are reported")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense baselines")
    parser.add_argument("--memory", action="store_true", help="also measure peak fit memory")
    parser.add_argument("--asynchronous", action="store_true",
                        help="also fit each hashed model with asynchronous=True")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    data = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=args.seed)
    X_train, y_train, X_test, y_test = data
    print(f"MNIST {X_train.shape[0]} rows, {args.epochs} epoch(s), batch 128, Adam 1e-3, "
          f"n_jobs={args.n_jobs}; kernels compiled before timing")
    warm_up()
    for hidden_text in args.hidden.split(";"):
        hidden = tuple(int(h) for h in hidden_text.split(","))
        common = dict(hidden_layer_sizes=hidden, max_iter=args.epochs, batch_size=128,
                      learning_rate_init=1e-3, random_state=args.seed, tol=0.0,
                      n_iter_no_change=args.epochs + 1)
        models = []  # (name, scikit-learn model or None for PyTorch)
        if not args.no_dense:
            models.append(("MLPClassifier", MLPClassifier(**common)))
            models.append(("PyTorch CPU", None))
        for sparsity in (float(s) for s in args.sparsity.split(",")):
            for selection in args.selection.split(","):
                for asynchronous in (False, True) if args.asynchronous else (False,):
                    name = f"Hash sparsity={sparsity} {selection}" + (" async" if asynchronous else "")
                    models.append((name, HashMLPClassifier(
                        sparsity=sparsity, selection=selection, n_jobs=args.n_jobs,
                        asynchronous=asynchronous, **common)))
        runs = {name: [] for name, _ in models}
        round_trips = []  # per repeat, the slowest round trip around its fits
        # repeats take turns, so that each one's ratios compare fits run close in
        # time on this shared machine, whose speed drifts by tens of percent
        for _ in range(args.repeats):
            trips = [_cores_round_trip()]
            for name, model in models:
                run = _timed_run(model, hidden, data, args)
                if run is not None:
                    runs[name].append(run)
                trips.append(_cores_round_trip())
            # not measured (NaN: the two threads did not run at once) shows as nan
            round_trips.append(np.nan if np.isnan(trips).any() else max(trips))
        _print_table(hidden, models, runs, data, args)
        if numba.config.NUMBA_NUM_THREADS >= 2:
            print("    cores' round trip, the slowest around each repeat's fits: "
                  + ", ".join(f"{ns:.0f} ns" for ns in round_trips))
    return 0


def _cores_round_trip():
    """The round trip of a cache line between the two cores (ns); NaN on one."""
    return round_trip_ns() if numba.config.NUMBA_NUM_THREADS >= 2 else float("nan")


def _timed_run(model, hidden, data, args):
    """One timed fit: dict of seconds, accuracy, flop fraction and phase seconds
    (None when PyTorch is missing)."""
    X_train, y_train, X_test, y_test = data
    if model is None:
        seconds, accuracy = torch_fit_seconds(hidden, data, args.epochs, args.seed)
        return None if seconds is None else dict(seconds=seconds, accuracy=accuracy, flops=1.0)
    model = clone(model)
    is_hash = isinstance(model, HashMLPClassifier)
    _train.phase_timer = timer = _train.PhaseTimer() if is_hash else None
    try:
        _, seconds, _ = measure_fit(model.fit, X_train, y_train)
    finally:
        _train.phase_timer = None
    run = dict(seconds=seconds, accuracy=model.score(X_test, y_test),
               flops=model.flop_fraction_ if is_hash else 1.0)
    if is_hash:
        run["phases"] = dict(timer.seconds)
    return run


def _print_table(hidden, models, runs, data, args):
    """Median seconds per epoch, and the median and range over repeats of the
    paired ratio dense seconds / this model's seconds (the repeat's own
    MLPClassifier fit)."""
    X_train, y_train = data[0], data[1]
    print(f"\nhidden {hidden}, {args.repeats} repeat(s)")
    print(f"{'model':38s} {'s/epoch':>8s} {'dense/this':>10s} {'range':>13s} {'torch/this':>10s} "
          f"{'accuracy':>8s} {'flop frac':>9s} {'fit peak MB':>11s}")
    dense_runs = runs.get("MLPClassifier", [])
    torch_runs = runs.get("PyTorch CPU", [])
    for name, model in models:
        if not runs[name]:
            continue
        seconds = [run["seconds"] for run in runs[name]]
        ratio, spread, torch_ratio = f"{'-':>10s}", f"{'-':>13s}", f"{'-':>10s}"
        if dense_runs:
            ratios = [d["seconds"] / run["seconds"] for d, run in zip(dense_runs, runs[name])]
            ratio = f"{np.median(ratios):9.2f}x"
            spread = f"{min(ratios):5.2f}-{max(ratios):5.2f}x"
        if torch_runs and model is not None and not isinstance(model, MLPClassifier):
            ratios = [t["seconds"] / run["seconds"] for t, run in zip(torch_runs, runs[name])]
            torch_ratio = f"{np.median(ratios):9.2f}x"
        peak = _peak(model, X_train, y_train) if args.memory and model is not None else None
        last = runs[name][-1]
        memory = _megabytes(peak) if model is not None else ""
        print(f"{name:38s} {np.median(seconds) / args.epochs:8.2f} {ratio} {spread:>13s} "
              f"{torch_ratio} {last['accuracy']:8.4f} {last['flops']:9.4f} {memory}")
        if last.get("phases") == {}:
            print("    (no breakdown: the asynchronous workers are not timed)")
        elif "phases" in last:
            # where the fits' time went, summed over the repeats
            phases = {}
            for run in runs[name]:
                for phase, t in run["phases"].items():
                    phases[phase] = phases.get(phase, 0.0) + t
            total = sum(seconds)
            phases["outside the batch loop"] = total - sum(phases.values())
            print("    " + ", ".join(f"{k} {v / total:.0%}" for k, v in
                                     sorted(phases.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    raise SystemExit(main())
