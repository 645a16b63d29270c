"""The first hidden layer's training kernels alone, on one realistic batch: how far from
the memory system's limit each runs.

A fit's wall time on a shared machine moves by 10-20% from run to run, which hides
the kernel changes worth making. This script times the kernels of one batch in
isolation instead: the first 128 MNIST training rows as whole rows, a hidden layer
of ``--hidden`` neurons with Gaussian weights, and for each sample ``--sparsity``
of them active, drawn from a random ``--touched`` share of the layer (LSH
selection on MNIST touches about 60% of the neurons per batch). Before every
call a 64 MB buffer is swept, so that weights and moments come from memory, as
they do in training where the update streams them through the caches.

It prints milliseconds per call (median of ``--repeats``), for one and two threads:

- ``adam_update``: the first layer's lazy Adam step (the kernel training runs);
- its two halves: the gradient sums alone, and the Adam sweep of the touched rows alone;
- a bare Adam sweep over the same rows, with the bytes it moves per second: the
  memory system's limit for this work (the weight and both moments, read and written);
- ``forward_layer_grouped``: the layer's forward pass;
- ``select_active``: LSH selection (K=6, L=10) on the rows' non-zeros;
- ``rehash products``: the layer's bucket codes for its tables (``neuron_codes``),
  its matrix products a chunk of neurons per thread.

    python benchmarks/bench_kernels.py --hidden 4096
    python benchmarks/bench_kernels.py --hidden 16384 --repeats 20
"""

import argparse
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from sklearn_hashdl import _kernels, _lsh, _select
from sklearn_hashdl._network import layer_codes
from sklearn_hashdl._workspace import _thread_scratch, compact_scratch
from sklearn_hashdl._work_sharing import new_claims
from sklearn_hashdl.compare import load_dataset

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"
BATCH = 128
ADAM = (np.float32(1e-3), np.float32(0.9), np.float32(0.999), np.float32(1e-8))


@njit(parallel=True, error_model="numpy")
def gradient_sums_only(W, index, row_vals, col_ids, col_cnt, col_vals, col_spans, grad_scratch,
                       mark_scratch, cols_scratch):
    """The gradient half of adam_update: each touched row's sums, then cleared."""
    touched, n_touched, row_start, row_sample, row_pos = index
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        grad, mark = grad_scratch[tid], mark_scratch[tid]
        _kernels._weight_row_gradient(touched[r], W.shape[1], row_start, row_sample, row_pos,
                                      row_vals, col_ids, col_cnt, col_vals, col_spans, grad, mark,
                                      cols_scratch[tid])
        grad[: W.shape[1]] = 0
        mark[: W.shape[1]] = 0


@njit(parallel=True, error_model="numpy")
def adam_sweep_only(W, m, v, touched, n_touched, grad_scratch, mark_scratch, cols_scratch,
                    step_size, beta_1, beta_2, epsilon):
    """The sweep half of adam_update: every entry of each touched row marked, gradient 0."""
    for r in prange(n_touched):
        tid = numba.get_thread_id()
        i = touched[r]
        mark = mark_scratch[tid]
        mark[: W.shape[1]] = 1
        _kernels._adam_apply(W[i], m[i], v[i], grad_scratch[tid], mark, cols_scratch[tid], -1, 0, W.shape[1],
                             np.float32(0), step_size, beta_1, beta_2, epsilon)


@njit(parallel=True, error_model="numpy")
def bare_adam_sweep(W, m, v, touched, n_touched, g, step_size, beta_1, beta_2, epsilon):
    """Adam on every entry of the touched rows, with no marks or scratch: the bandwidth floor."""
    keep_1, keep_2 = np.float32(1) - beta_1, np.float32(1) - beta_2
    for r in prange(n_touched):
        w, m_row, v_row = W[touched[r]], m[touched[r]], v[touched[r]]
        for j in range(w.shape[0]):
            w[j], m_row[j], v_row[j] = _kernels._adam_rule(w[j], m_row[j], v_row[j], g[j], step_size,
                                                           beta_1, beta_2, keep_1, keep_2, epsilon)


def make_batch(X, n_neurons, sparsity, touched_share, seed=0):
    """Weights, moments, a batch's whole input rows and active lists, and the kernels' lists."""
    rng = np.random.default_rng(seed)
    n_in = X.shape[1]
    k = max(1, int(round(sparsity * n_neurons)))
    pool = rng.choice(n_neurons, max(k, int(touched_share * n_neurons)), replace=False)
    b = dict(
        W=(rng.standard_normal((n_neurons, n_in)) * 0.01).astype(np.float32),
        bias=np.zeros(n_neurons, np.float32),
        out_ids=np.array([rng.choice(pool, k, replace=False) for _ in range(BATCH)], np.int32),
        out_cnt=np.full(BATCH, k, np.int32),
        delta=(rng.standard_normal((BATCH, k)) * 0.01).astype(np.float32),
        out_vals=np.zeros((BATCH, k), np.float32),
    )
    for name in ("m", "v", "m_b", "v_b"):
        b[name] = np.zeros_like(b["W"] if len(name) == 1 else b["bias"])
    row_start = np.zeros(n_neurons + 1, np.int64)
    row_sample, row_pos = np.zeros(BATCH * k, np.int32), np.zeros(BATCH * k, np.int32)
    touched = np.zeros(n_neurons, np.int32)
    n_touched = _kernels.invert_lists(b["out_ids"], b["out_cnt"], n_neurons, row_start, row_sample,
                                      row_pos, touched)
    b["index"] = (touched, n_touched, row_start, row_sample, row_pos)
    n_threads = numba.config.NUMBA_NUM_THREADS
    # indexed by neuron (the biases) and by input (a weight row's columns)
    b["scratch"] = tuple(_thread_scratch(n_threads, max(n_neurons, n_in), dtype)
                         for dtype in (np.float32, np.uint8, np.int32))
    b["compact"] = compact_scratch(n_threads, BATCH, max(n_neurons, n_in))
    # the kernels that share their items out: a worker for each of the thread counts timed
    b["claims"] = new_claims(min(2, n_threads))
    # the whole rows and their non-zero lists, as the batch loader writes them in training
    for name, dtype in (("x_ids", np.int32), ("x_vals", np.float32), ("nz_ids", np.int32),
                        ("nz_vals", np.float32)):
        b[name] = np.zeros((BATCH, n_in), dtype)
    b["x_cnt"], b["nnz"] = np.zeros(BATCH, np.int32), np.zeros(BATCH, np.int32)
    b["x_spans"] = np.zeros((BATCH, 2), np.int32)
    _kernels.dense_rows_to_full_lists(np.ascontiguousarray(X[:BATCH], np.float32),
                                      np.arange(BATCH, dtype=np.int64), b["x_ids"], b["x_vals"],
                                      b["x_cnt"], b["nnz"], b["nz_ids"], b["nz_vals"], b["x_spans"])
    return b


def selection_call(b, K=6, L=10):
    """select_active's arguments for LSH selection of the batch's neurons."""
    n_neurons, n_in = b["W"].shape
    hyperplanes = _lsh.make_hyperplanes(np.random.RandomState(0), n_in, K, L)
    codes = _lsh.neuron_codes(b["W"].T, b["bias"], hyperplanes, K, L)
    offsets, neuron_ids = _lsh.new_tables(n_neurons, K, L)
    _lsh.build_tables(codes, K, offsets, neuron_ids)
    T = numba.config.NUMBA_NUM_THREADS
    k = b["out_cnt"][0]
    out_ids, out_cnt = np.zeros_like(b["out_ids"]), np.zeros_like(b["out_cnt"])
    scratch = [_thread_scratch(T, w, dtype) for w, dtype in (
        (n_neurons, np.int32), (n_neurons, np.int32), (n_neurons, np.int32), (L + 1, np.int32),
        (K * L, np.float32), (n_neurons, np.int32), (n_neurons, np.float32),
        (n_neurons, np.float32))]
    return (_select.SELECT_LSH, b["nz_ids"], b["nz_vals"], b["nnz"], b["nnz"], b["W"], True, b["bias"],
            hyperplanes, n_in, K, L, offsets, neuron_ids, k, k, 1, np.uint64(1),
            np.arange(1, BATCH + 1, dtype=np.uint64), out_ids, out_cnt,
            np.zeros(BATCH, np.int64), False, 0, 0, b["out_vals"], *scratch, b["claims"])


def rehash_planes(b, K=6, L=10):
    """(hyperplanes, K, L) of the layer's LSH tables."""
    return _lsh.make_hyperplanes(np.random.RandomState(0), b["W"].shape[1], K, L), K, L


def kernel_calls(b):
    """(name, kernel, arguments) of every kernel timed."""
    touched, n_touched = b["index"][:2]
    scratch = b["scratch"]
    gradient_lists = (b["delta"], b["x_ids"], b["x_cnt"], b["x_vals"], b["x_spans"])
    update = (b["W"], b["bias"], b["m"], b["v"], b["m_b"], b["v_b"], *b["index"], *gradient_lists,
              b["out_ids"], b["out_cnt"], b["delta"], np.float32(0), *ADAM, *scratch,
              b["compact"], b["claims"])
    g = np.full(b["W"].shape[1], 1e-3, np.float32)
    return [
        ("adam_update", _kernels.adam_update, update),
        ("  gradient sums only", gradient_sums_only,
         (b["W"], b["index"], *gradient_lists, *scratch)),
        ("  Adam sweep only", adam_sweep_only,
         (b["W"], b["m"], b["v"], touched, n_touched, *scratch, *ADAM)),
        ("bare Adam sweep", bare_adam_sweep, (b["W"], b["m"], b["v"], touched, n_touched, g, *ADAM)),
        ("forward_layer_grouped", _kernels.forward_layer_grouped,
         (b["W"], b["bias"], b["x_ids"], b["x_vals"], b["x_cnt"], *b["index"], 3, b["out_vals"],
          b["claims"])),
        ("select_active (lsh)", _select.select_active, selection_call(b)),
        ("rehash products", layer_codes, (b["W"].T, b["bias"], *rehash_planes(b))),
    ]


def time_kernels(calls, repeats, n_threads, evict):
    """Median seconds per call of each kernel, taking turns so that drifts hit all alike."""
    numba.set_num_threads(n_threads)
    seconds = {name: [] for name, _, _ in calls}
    for _, kernel, args in calls:
        kernel(*args)  # compile
    for _ in range(repeats):
        for name, kernel, args in calls:
            evict += 1
            start = time.perf_counter()
            kernel(*args)
            seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(times)) for name, times in seconds.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--sparsity", type=float, default=0.02)
    parser.add_argument("--touched", type=float, default=0.6,
                        help="share of the layer's neurons the batch's active lists are drawn from")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"skipped: MNIST not found at {args.data}")
        return 0
    X, _, _, _ = load_dataset(npz=args.data, max_train_rows=BATCH, seed=0)
    b = make_batch(X, args.hidden, args.sparsity, args.touched)
    calls = kernel_calls(b)
    evict = np.zeros(64 * 2**20 // 4, np.float32)
    thread_counts = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    medians = {n: time_kernels(calls, args.repeats, n, evict) for n in thread_counts}
    n_touched = b["index"][1]
    sweep_bytes = n_touched * b["W"].shape[1] * 3 * 4 * 2  # weight and 2 moments, read and written
    print(f"hidden {args.hidden}, sparsity {args.sparsity}, {BATCH} MNIST rows, {n_touched} rows "
          f"touched ({n_touched / args.hidden:.0%}), {b['out_cnt'].sum() / n_touched:.2f} samples "
          f"per touched row; ms per call, median of {args.repeats}")
    header = "".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>12s}" for n in thread_counts)
    print(f"{'kernel':26s}{header}{'speed-up':>10s}")
    for name, _, _ in calls:
        times = [medians[n][name] for n in thread_counts]
        line = f"{name:26s}" + "".join(f"{t * 1e3:12.3f}" for t in times)
        if len(times) > 1:
            line += f"{times[0] / times[1]:9.2f}x"
        if name == "bare Adam sweep":
            line += "   " + ", ".join(f"{sweep_bytes / t / 1e9:.0f}" for t in times) + " GB/s"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
