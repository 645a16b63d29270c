"""Where the milliseconds of one HashMLPClassifier fit go, kernel by kernel.

Puts a timer around every numba kernel that the training loop calls (the
functions of ``sklearn_hashdl._kernels``, ``._lsh``, ``._select`` and
``._block_kernels``), fits once on MNIST and prints milliseconds per batch for
each kernel, split by the shape of its first argument (the weights, for the
layer kernels), with its number of calls; the time outside the kernels (Python,
and NumPy: set-up and the rehash's matrix product); and how many distinct rows
each grouping of the batch touched on average (``invert_lists`` and
``invert_levels``: for a hidden level, the neurons whose weights and moments the
update sweeps). The timers add about a microsecond per call.
Compare thread counts in one run with ``--n-jobs 1,2``.

    python benchmarks/profile_kernels.py --hidden 4096 --sparsity 0.02 --selection lsh --n-jobs 1,2
    python benchmarks/profile_kernels.py --hidden 1000,1000,1000 --sparsity 0.05 --selection auto
"""

import argparse
import time
from pathlib import Path

import numpy as np
from numba.core.registry import CPUDispatcher

from sklearn_hashdl import HashMLPClassifier, _block_kernels, _kernels, _lsh, _select
from sklearn_hashdl.compare import load_dataset, timed, warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"


class KernelTimers:
    """Replaces the kernels of the given modules by timed wrappers while active."""

    def __init__(self, modules):
        # each module's own kernels (not those it imports), and not the helpers
        # that kernels call (private or inlined): wrapped, they would no longer compile
        self.kernels = [(module, name, getattr(module, name)) for module in modules
                        for name in dir(module) if isinstance(getattr(module, name), CPUDispatcher)
                        and getattr(module, name).py_func.__module__ == module.__name__
                        and not name.startswith("_")
                        and getattr(module, name).targetoptions.get("inline") != "always"]
        self.seconds, self.calls, self.touched = {}, {}, {}

    def _wrap(self, name, kernel):
        def timed_kernel(*args):
            start = time.perf_counter()
            result = kernel(*args)
            spent = time.perf_counter() - start
            # weights (a matrix, or column blocks) as first argument tell the layers apart
            first = args[0] if args else None
            key = name if getattr(first, "ndim", 0) < 2 else f"{name} {first.shape}"
            self.seconds[key] = self.seconds.get(key, 0.0) + spent
            self.calls[key] = self.calls.get(key, 0) + 1
            if name == "invert_lists":  # args[2] ids grouped, result: how many occur
                self.touched.setdefault(int(args[2]), []).append(result)
            if name == "invert_levels":  # each level grouped: its ids, and how many occur
                levels, layout, n_touched = args[0], args[2], args[9]
                for level in levels:
                    n_ids = int(layout[level, _kernels.N_IDS])
                    self.touched.setdefault(n_ids, []).append(int(n_touched[level]))
            return result
        return timed_kernel

    def __enter__(self):
        for module, name, kernel in self.kernels:
            setattr(module, name, self._wrap(name, kernel))
        return self

    def __exit__(self, *exc):
        for module, name, kernel in self.kernels:
            setattr(module, name, kernel)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-rows", type=int, default=30000)
    parser.add_argument("--hidden", default="4096")
    parser.add_argument("--sparsity", type=float, default=0.02)
    parser.add_argument("--selection", default="lsh")
    parser.add_argument("--n-jobs", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    X, y, _, _ = load_dataset(npz=args.data, max_train_rows=args.train_rows, seed=0)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    warm_up()
    n_batches = -(-len(X) // 128)
    print(f"MNIST {len(X)} rows, hidden {hidden}, sparsity {args.sparsity}, {args.selection}, "
          f"one epoch of {n_batches} batches of 128; ms per batch")
    for n_jobs in (int(n) for n in args.n_jobs.split(",")):
        model = HashMLPClassifier(hidden, sparsity=args.sparsity, selection=args.selection,
                                  batch_size=128, max_iter=1, random_state=0, n_jobs=n_jobs)
        with KernelTimers([_kernels, _lsh, _select, _block_kernels]) as timers:
            _, seconds = timed(model.fit, X, y)
        in_kernels = sum(timers.seconds.values())
        print(f"\nn_jobs={n_jobs}: fit {seconds / n_batches * 1e3:.3f}, in kernels "
              f"{in_kernels / n_batches * 1e3:.3f}, outside them "
              f"{(seconds - in_kernels) / n_batches * 1e3:.3f}")
        for name, spent in sorted(timers.seconds.items(), key=lambda item: -item[1]):
            print(f"    {name:40s} {spent / n_batches * 1e3:7.3f}  ({timers.calls[name]} calls)")
        for n_ids, counts in sorted(timers.touched.items()):
            print(f"    rows touched per grouping of {n_ids} ids: {np.mean(counts) / n_ids:.1%} on "
                  f"average, {np.mean(counts[:10]) / n_ids:.1%} in the first 10 calls, "
                  f"{np.mean(counts[-10:]) / n_ids:.1%} in the last 10")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
