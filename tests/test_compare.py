"""The comparison tool, the recall diagnostic and the shared-data benchmarks."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl._blocks import machine_cores
from sklearn_hashdl._diagnostics import selection_recall
from sklearn_hashdl.compare import compare, format_table, load_dataset, main

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MNIST = SHARED / "mnist" / "mnist.npz"


def test_compare_trains_both_models_on_digits():
    X_train, y_train, X_test, y_test = load_dataset("digits")
    assert X_train.dtype == np.float32 and X_train.max() <= 1.0
    rows = compare(X_train[:400], y_train[:400], X_test, y_test, hidden_layer_sizes=(64,),
                   sparsity=0.25, K=3, L=8, epochs=10, batch_size=32)
    assert [r["model"] for r in rows] == ["MLPClassifier", "HashMLPClassifier"]
    assert rows[0]["flop_fraction"] == 1.0 and 0 < rows[1]["flop_fraction"] < 1
    assert all(0.3 < r["accuracy"] <= 1 for r in rows)  # chance is 0.1
    assert rows[0]["speedup"] == 1.0
    table = format_table(rows)
    assert "HashMLPClassifier" in table and "flop_fraction" in table


def test_compare_command_line(capsys):
    assert main(["--dataset", "synthetic", "--hidden", "256", "--epochs", "1",
                 "--sparsity", "0.25", "--K", "3", "--max-train-rows", "500"]) == 0
    out = capsys.readouterr().out
    assert "MLPClassifier" in out and "train (500, 100)" in out


@pytest.mark.parametrize("argument, message", [
    (["--hidden", "10,abc"], "comma-separated list of sizes"),
    (["--max-train-rows", "-5"], "not a positive integer"),
    (["--selection", "foo"], "invalid choice"),
    (["--npz", "no-such-file.npz"], "no file"),
    (["--sparsity", "2"], "sparsity"),
])
def test_compare_command_line_refuses_bad_arguments_before_any_work(argument, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argument)
    assert exit_.value.code == 2  # argparse's usage error
    assert message in capsys.readouterr().err


def test_selection_recall_brackets_the_references():
    X_train, y_train, X_test, _ = load_dataset("digits")
    recalls = {}
    for selection in ("exact", "random", "lsh_rerank"):
        model = HashMLPClassifier((200,), min_active=1, sparsity=0.1, max_iter=3, random_state=0, K=3,
                                  selection=selection).fit(X_train, y_train)
        recalls[selection] = selection_recall(model, X_test)[0]
    assert recalls["exact"] == 1.0
    assert recalls["random"] < 0.25  # about the active fraction, 0.1
    assert recalls["random"] < recalls["lsh_rerank"] <= 1.0


def _mnist_rows(bench, n_train=600):
    X_train, y_train, X_test, y_test = bench.load_dataset(npz=str(MNIST), max_train_rows=n_train, seed=0)
    return X_train, y_train, X_test[:500], y_test[:500]


@pytest.mark.skipif(not MNIST.exists(),
                    reason="needs ../shared/data/mnist/mnist.npz (shared data folder absent)")
def test_bench_mnist_runs_short_on_real_data(capsys, monkeypatch):
    bench = _load_benchmark("bench_mnist")
    assert bench.main(["--train-rows", "1500", "--epochs", "1",
                       "--configs", "dense-1x1000,hash-1x1000-0.05"]) == 0
    out = capsys.readouterr().out
    assert "hash-1x1000-0.05" in out and "train (1500, 784)" in out and "Adam 0.001" in out
    # --learning-rate reaches run(), and run() gives it to both models: a bigger
    # one changes what they learn
    given = []
    monkeypatch.setattr(bench, "run", lambda *args: given.append(args[-1]) or [])
    monkeypatch.setattr(bench, "format_rows", lambda rows: "")
    assert bench.main(["--train-rows", "600", "--epochs", "1", "--configs", "hash-1x1000-0.05",
                       "--learning-rate", "0.03"]) == 0
    assert given == [0.03] and "Adam 0.03" in capsys.readouterr().out
    monkeypatch.undo()
    rows = [bench.run(["dense-1x1000", "hash-1x1000-0.05"], _mnist_rows(bench), 1, 0, ["auto"], {}, rate)
            for rate in (1e-3, 3e-2)]
    assert all(slow["accuracy"] != fast["accuracy"] for slow, fast in zip(*rows))


def _load_benchmark(name):
    """Import benchmarks/<name>.py as module ``name``. Registered in sys.modules:
    numba's disk cache records the module of each compiled kernel, and one
    recorded as unnamed could not be loaded by a later run of the script."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not MNIST.exists(),
                    reason="needs ../shared/data/mnist/mnist.npz (shared data folder absent)")
def test_bench_speed_threads_and_kernel_profiles_run_short_on_real_data(capsys):
    speed = _load_benchmark("bench_speed")
    assert speed.main(["--train-rows", "600", "--hidden", "64", "--sparsity", "0.1",
                       "--selection", "auto,lsh", "--memory", "--repeats", "2",
                       "--asynchronous", "--n-jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "MLPClassifier" in out and "Hash sparsity=0.1 lsh" in out and "update" in out
    assert "Hash sparsity=0.1 lsh async" in out and "asynchronous workers are not timed" in out
    assert "2 repeat(s)" in out and "range" in out
    # the cores' placement, measured when there are two of them
    assert ("cores' round trip" in out) == (numba.config.NUMBA_NUM_THREADS >= 2)
    threads = _load_benchmark("bench_threads")
    assert threads.main(["--train-rows", "300", "--epochs", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "(16384,) 0.02 lsh" in out and "weights differ" not in out
    assert "2 async" in out and "2 processes" in out
    assert "round trip" in out and " ns " in out and "near" in out and "steal s" in out
    assert re.search(r"1.7x faster than 1 thread \(unrounded\), of 3: 2 sync [0-3], 2 async [0-3], "
                     r"2 processes [0-3]", out)
    # counted before rounding: 1.698x prints as 1.70x but falls short
    timings = {"1": 9.232, "sync": 5.436, "async": 4.0, "pair": 9.232}
    assert [threads._reaching([timings], key) for key in ("sync", "async", "pair")] == [0, 1, 1]
    assert threads.main(["--train-rows", "300", "--epochs", "1", "--repeats", "1", "--hidden", "4096"]) == 0
    out = capsys.readouterr().out
    assert "(4096,) 0.02 lsh" in out and "(16384,)" not in out and "(1000, 1000, 1000)" not in out
    profile = _load_benchmark("profile_kernels")
    assert profile.main(["--train-rows", "300", "--hidden", "64", "--sparsity", "0.1",
                         "--n-jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "adam_update" in out and "rows touched per grouping of 64 ids" in out
    kernels = _load_benchmark("bench_kernels")
    assert kernels.main(["--hidden", "64", "--sparsity", "0.1", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "gradient sums only" in out and "bare Adam sweep" in out and "GB/s" in out


@pytest.mark.skipif(not MNIST.exists(),
                    reason="needs ../shared/data/mnist/mnist.npz (shared data folder absent)")
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_replay_update_parts_leave_the_scratch_zeroed(capsys):
    replay = _load_benchmark("replay_update")
    X, y, _, _ = load_dataset(npz=str(MNIST), max_train_rows=300, seed=0)
    assert replay.capture_last_update(X, y, layer=0)[0].shape == (784, 1000)
    n_union, args = replay.part_arguments(replay.capture_last_update(X, y, layer=1))
    assert args[0].shape == (1000, 1000) and -1 <= n_union <= 1000  # -1: not compacted
    W, grad, mark = args[0], args[17], args[18]  # weights, the per-thread gradient and marks
    W_before = W.copy()
    # the parts run on the kernel's scratch, which the kernels expect zeroed
    for part in (replay.GRADIENT, replay.GRADIENT_COPIES_MADE, replay.SWEEP):
        replay._update_part(part, n_union, *args)
        assert not grad.any() and not mark.any()
    # the sweep of unmarked entries keeps every weight, and the sums write none
    np.testing.assert_array_equal(W, W_before)
    assert replay.main(["--train-rows", "300", "--rounds", "1", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert "gradient sums, copies made once" in out and "round trip" in out
    assert "after both threads read the rows" in out and "after thread 0 alone" in out


def test_replay_update_per_cpu_summary_groups_rounds_by_placement_and_cpu_speeds():
    replay = _load_benchmark("replay_update")
    rounds = [(70, [100.0, 104.0], 55.0), (80, [100.0, 150.0], 80.0), (340, [90.0, 95.0], 60.0),
              (75, [103.0, 102.0], 57.0)]
    lines = replay.per_cpu_summary(rounds).splitlines()[1:]
    assert len(lines) == 3  # apart and alike; near and alike; near with one CPU slower
    assert lines[0].startswith("  apart alike") and "1 rounds" in lines[0]
    assert "(1.50x the faster)" in lines[0]
    # near and alike: medians of two rounds, 101 us on the faster CPU and 56 on two threads
    assert "2 rounds" in lines[1] and "101 us" in lines[1] and "(1.80x the faster)" in lines[1]
    assert "one CPU slower" in lines[2] and "150 on the slower" in lines[2]


@pytest.mark.skipif(not MNIST.exists(),
                    reason="needs ../shared/data/mnist/mnist.npz (shared data folder absent)")
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2 or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two numba threads and two cores (column blocks per core)")
def test_replay_selection_captures_a_blocked_layer_and_replays_it(capsys):
    replay = _load_benchmark("replay_selection")
    X, y, _, _ = load_dataset(npz=str(MNIST), max_train_rows=300, seed=0)
    selection = replay.capture_last_selection(X, y, layer=1)
    Wb, out_ids, out_cnt = selection[0], selection[9], selection[11]
    assert Wb.shape[0] >= 2 and Wb.shape[2] * Wb.shape[0] >= 1000  # blocks of the 1000 neurons
    replay._block_kernels.select_exact_blocks(*selection)
    picked = out_ids.copy()
    assert (out_cnt == 50).all()  # 5% of 1000, distinct neurons
    assert all(len(set(row[:50])) == 50 and 0 <= row[:50].min() and row[:50].max() < 1000
               for row in picked)
    out_ids[:] = -1
    replay._block_kernels.select_exact_blocks(*selection)  # every replay picks the same
    np.testing.assert_array_equal(out_ids, picked)
    assert replay.main(["--train-rows", "300", "--rounds", "1", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert "round trip" in out and "2 threads" in out and "medians" in out


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to pin to")
def test_replay_update_pinned_timing_restores_the_affinity():
    replay = _load_benchmark("replay_update")
    allowed = os.sched_getaffinity(0)
    cpus_seen = []
    us = replay._pinned_us(lambda: cpus_seen.append(os.sched_getaffinity(0)), max(allowed), 2)
    assert us > 0 and cpus_seen and all(seen == {max(allowed)} for seen in cpus_seen)
    assert os.sched_getaffinity(0) == allowed


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_split_layouts_update_the_same_weights_every_way(capsys):
    layouts = _load_benchmark("split_layouts")
    W, M, V, G, rows, blocks = layouts.make_layer()
    by_rows = [A.copy() for A in (W, M, V)]
    layouts.update_rows(*by_rows, G, rows)
    layouts.update_columns(W, M, V, G, rows)
    layouts.update_blocks(*blocks[0], *blocks[1], rows)
    before = layouts.make_layer()
    for k, (A, by_row, left, right) in enumerate(zip((W, M, V), by_rows, blocks[0], blocks[1])):
        assert not np.allclose(by_row[rows], before[k][rows])  # the touched rows moved
        np.testing.assert_array_equal(np.delete(by_row, rows, axis=0),
                                      np.delete(before[k], rows, axis=0))  # no other row did
        # the same arithmetic, vectorised from other starting columns: equal to rounding
        np.testing.assert_allclose(A, by_row, rtol=1e-6)
        np.testing.assert_allclose(np.hstack([left, right]), by_row, rtol=1e-6)
    assert layouts.main(["--rounds", "1", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert "column blocks" in out and "round trip" in out


@pytest.mark.skipif(not MNIST.exists(),
                    reason="needs ../shared/data/mnist/mnist.npz (shared data folder absent)")
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_bench_layouts_times_both_layouts_on_real_data(capsys):
    bench = _load_benchmark("bench_layouts")
    assert bench.main(["--train-rows", "2560", "--rounds", "1", "--stretch", "5"]) == 0
    out = capsys.readouterr().out
    # 20 batches in stretches of 5: ten timed in each layout
    assert "one matrix" in out and "apart / one matrix" in out and "round trip" in out
    assert "nan" not in out
    from sklearn_hashdl import _train
    assert _train.LayoutChooser is bench._blocks.LayoutChooser  # put back


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_core_round_trip_is_measured_and_gives_up_on_one_thread():
    latency = _load_benchmark("core_latency")
    ns = latency.round_trip_ns(n_trips=2000)
    assert 1 < ns < 1e6  # a cache line between two cores: tens to hundreds of ns
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        # both halves of the ping-pong on one thread: each would wait for the other
        counter = np.zeros(16, np.int64)
        latency._ping_pong(counter, 100)
        assert counter[latency._ABORT] == 1
    finally:
        numba.set_num_threads(previous)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_core_handoff_times_reads_by_either_thread(capsys):
    latency = _load_benchmark("core_latency")
    own, other = latency.handoff_us(n_calls=5)
    assert 0 < own < 1e5 and 0 < other < 1e5  # 512 KB: tens of microseconds
    # the reading thread sums every row once into its own row of sums
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    sums = np.zeros((2, 2), np.float32)
    latency._sum_rows(rows, 1, np.array([2, 0, 1]), sums)
    np.testing.assert_array_equal(sums, [[0, 0], [6, 9]])
    own, other = latency.rewrite_us(n_calls=5)
    assert 0 < own < 1e5 and 0 < other < 1e5
    assert latency.main(["--seconds", "0.01", "--handoff", "--rewrite"]) == 0
    out = capsys.readouterr().out
    assert "by thread 1" in out and "after thread 1" in out


def test_bench_predict_times_every_mode_on_generated_data(capsys):
    bench = _load_benchmark("bench_predict")
    assert bench.main(["--hidden", "64", "--train-rows", "300", "--rows", "40", "--calls", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [" ".join(row[1:-3]) for row in rows] == [
        "hash topk", "hash hashed", "hash dense", "MLPClassifier"]
    assert all(float(ms) > 0 for row in rows for ms in row[-3:])


@pytest.mark.skipif(not (SHARED / "tabular-pmlb" / "letter.npz").exists()
                    or not (SHARED / "multilabel-extra" / "enron_X.npz").exists(),
                    reason="needs ../shared/data/tabular-pmlb and multilabel-extra (shared data folder absent)")
def test_bench_small_sets_runs_short_on_real_data(capsys):
    bench = _load_benchmark("bench_small_sets")
    X_train, y_train, X_test, y_test, multilabel = bench.load_set(SHARED, "letter", max_rows=2000)
    assert X_train.shape == (1500, 16) and not multilabel and len(np.unique(y_train)) == 26
    np.testing.assert_allclose(X_train.mean(axis=0), 0, atol=1e-5)  # standardised
    X_train, y_train, _, _, multilabel = bench.load_set(SHARED, "enron", max_rows=2000)
    assert multilabel and y_train.shape == (1276, 53)
    assert bench.main(["--sets", "letter,enron", "--hidden", "32", "--epochs", "2",
                       "--max-rows", "800", "--variants", "0.25@0.003"]) == 0
    out = capsys.readouterr().out
    assert out.count("HashMLP sparsity 0.25, lr 0.003") == 2
    assert "balanced" in out and "micro-F1" in out


def test_bench_small_sets_compares_min_active_on_scikit_learns_sets(capsys):
    bench = _load_benchmark("bench_small_sets")
    assert bench.parse_variants("0.05@0.001@1,0.2@0.003") == [(0.05, 0.001, 1), (0.2, 0.003, None)]
    assert bench.main(["--sets", "iris,digits", "--hidden", "100", "--epochs", "2",
                       "--variants", "0.05@0.001@1,0.05@0.001"]) == 0
    out = capsys.readouterr().out
    assert "epochs" not in out.split("\n", 1)[1]
    assert "iris (112 train rows, 4 features)" in out and "digits (1347 train rows" in out
    assert out.count("HashMLP sparsity 0.05, lr 0.001, 5 active") == 2
    assert out.count("HashMLP sparsity 0.05, lr 0.001, 32 active") == 2
    assert bench.main(["--sets", "wine", "--hidden", "100", "--epochs", "30", "--early-stopping",
                       "--n-iter-no-change", "2", "--variants", "0.05@0.001"]) == 0
    out = capsys.readouterr().out
    trained = [int(n) for n in re.findall(r"(\d+) epochs$", out, re.M)]
    assert len(trained) == 2 and all(1 <= n <= 30 for n in trained)


def _study_hidden_sparsity(monkeypatch):
    # the study imports the loaders of bench_extreme.py, its neighbour
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return _load_benchmark("study_hidden_sparsity")


class _FittedLayer:
    """Just what top_k_spread reads of a fitted model: one ReLU hidden layer keeping k."""

    activation = "relu"

    def __init__(self, W, b, k):
        self.coefs_, self.intercepts_, self._k = [W], [b], k

    def _fitted_counts(self):
        return [self._k, 1]


def test_top_k_spread_counts_the_neurons_kept_and_the_most_kept_share(monkeypatch):
    import scipy.sparse as sp

    study = _study_hidden_sparsity(monkeypatch)
    n, k = 8, 2
    # identity weights: row r's pre-activations peak at neurons r and r + 4
    W = np.zeros((4, n), np.float32)
    W[np.arange(4), np.arange(4)] = W[np.arange(4), np.arange(4) + 4] = 1.0
    X = np.eye(4, dtype=np.float32)
    for rows in (X, sp.csr_matrix(X)):
        assert study.top_k_spread(_FittedLayer(W, np.zeros(n, np.float32), k), rows) == (8, 0.25)
    # a bias that dwarfs the input: every row keeps neurons 6 and 7
    bias = np.zeros(n, np.float32)
    bias[6:] = 10.0
    assert study.top_k_spread(_FittedLayer(W, bias, k), X) == (2, 1.0)
    # an all-zero row has one positive pre-activation (neuron 0), and the zero its
    # top-2 also keeps is not counted: 9 kept values, 2 of them neuron 0's
    negative = np.full(n, -0.5, np.float32)
    negative[0] = 0.25
    X_more = np.vstack([X, np.zeros((1, 4), np.float32)])
    picked, share = study.top_k_spread(_FittedLayer(W, negative, k), X_more)
    assert picked == 8 and share == pytest.approx(3 / 9)
    # a layer that keeps every neuron counts its positive activations: neuron 0 never is
    dead = np.zeros(n, np.float32)
    dead[0] = -5.0
    assert study.top_k_spread(_FittedLayer(W, dead, n), X) == (7, 1.0)


@pytest.mark.skipif(not (SHARED / "bibtex" / "bibtex_X.npz").exists(),
                    reason="needs ../shared/data/bibtex (shared data folder absent)")
def test_study_hidden_sparsity_runs_short_on_bibtex(monkeypatch, capsys):
    study = _study_hidden_sparsity(monkeypatch)
    rows = study.main(["--dataset", "bibtex", "--hidden", "64", "--epochs", "1",
                       "--configs", "{}", '{"sparse_layers": "output"}'])
    out = capsys.readouterr().out
    assert "MLPClassifier" in out and "top-k share" in out and "P@5" in out
    mlp, defaults, output = rows
    assert (mlp["model"], defaults["model"], output["model"]) == ("MLPClassifier", "defaults",
                                                                  "sparse_layers=output")
    # the defaults keep min_active=32 of 64 neurons; the hidden layer of 'output' is dense
    assert (defaults["active"], output["active"]) == (32, 64)
    assert all(0 <= row["P@1"] <= 1 for row in rows)
    # the same counts, recounted from the fitted weights with an argsort
    _, _, X_test, _ = study.load("bibtex", SHARED)
    for row, config in ((defaults, {}), (output, {"sparse_layers": "output"})):
        model = HashMLPClassifier((64,), batch_size=128, max_iter=1, random_state=0, tol=0,
                                  n_iter_no_change=2, **config).fit(*study.load("bibtex", SHARED)[:2])
        k = row["active"]
        A = np.maximum(np.asarray(X_test @ model.coefs_[0]) + model.intercepts_[0], 0)
        kept = np.take_along_axis(A, np.argsort(-A, axis=1, kind="stable")[:, :k], axis=1) > 0
        ids = np.argsort(-A, axis=1, kind="stable")[:, :k][kept]
        counts = np.sort(np.bincount(ids, minlength=64))[::-1]
        assert row["picked"] == (counts > 0).sum()
        assert row["share"] == pytest.approx(counts[:k].sum() / counts.sum(), abs=1e-3)


def test_warm_up_readies_the_prediction_kernels():
    # compare() times predict after warm_up; in a fresh install the top-k and the
    # content keys of 'hashed' prediction compiled inside that timing (1.6 s)
    kernels = "keep_top_k_rows, content_keys"
    code = ("from sklearn_hashdl.compare import warm_up; warm_up(); "
            "from sklearn_hashdl._select import keep_top_k_rows; "
            "from sklearn_hashdl._random import content_keys; "
            f"print([len(k.signatures) for k in ({kernels})])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[2, 1]"  # the top-k for float32 and float64 rows


@pytest.mark.skipif(machine_cores() < 2 or numba.config.NUMBA_NUM_THREADS < 2,
                    reason="column blocks are stored apart only with two cores and threads")
def test_warm_up_readies_the_column_block_kernels():
    # a fit on two threads calls these only once its layout chooser tries the
    # blocks apart; the benchmarks time fits after warm_up, so it must have them
    # ready (in a new process: this one may have compiled them in other tests)
    kernels = "select_exact_blocks, backward_blocks, adam_update_blocks, sgd_update_blocks"
    code = ("from sklearn_hashdl.compare import warm_up; warm_up(); "
            f"from sklearn_hashdl._block_kernels import {kernels}; "
            f"print([len(k.signatures) for k in ({kernels})])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[1, 1, 1, 1]"


def test_host_load_counts_other_processes_cpu_time_not_its_own(monkeypatch):
    host_load = _load_benchmark("host_load")
    if host_load._machine_ticks() is None:
        pytest.skip("needs Linux's /proc/stat")
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    with host_load.HostLoad() as load:
        subprocess.run([sys.executable, "-c", burn], check=True)
    assert 0.4 < load.other_seconds < 5 and load.steal_seconds >= 0
    # the machine was busy 2 s and stolen from 0.5 s, of which this process used 1.5 s
    ticks = iter([(1000, 50), (1000 + 2 * host_load._TICKS_PER_SECOND,
                                50 + host_load._TICKS_PER_SECOND // 2)])
    own = iter([10.0, 11.5])
    monkeypatch.setattr(host_load, "_machine_ticks", lambda: next(ticks))
    monkeypatch.setattr(host_load, "_own_cpu_seconds", lambda: next(own))
    with host_load.HostLoad() as load:
        pass
    assert load.other_seconds == pytest.approx(0.5) and load.steal_seconds == pytest.approx(0.5)
    monkeypatch.undo()
    monkeypatch.setattr(host_load, "_machine_ticks", lambda: None)  # not Linux
    with host_load.HostLoad() as load:
        pass
    assert np.isnan(load.steal_seconds) and np.isnan(load.other_seconds)


def _prototype(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return _load_benchmark("prototype_topk_training")


def _multilabel_rows(rng, n_rows, n_features=12, n_labels=5):
    import scipy.sparse as sp

    X = sp.random(n_rows, n_features, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = 1.0
    Y = (np.asarray(X[:, :n_labels].todense()) > 0).astype(np.int64)
    Y[Y.sum(axis=1) == 0, 0] = 1
    return X, Y


def test_prototype_keeps_k_a_row_and_moves_only_weights_with_a_gradient(monkeypatch):
    import scipy.sparse as sp

    prototype = _prototype(monkeypatch)
    rng = np.random.RandomState(0)
    X, Y = _multilabel_rows(rng, 40)
    model = prototype.TopKLayerModel(12, 16, 5, np.random.RandomState(1))
    bound = np.sqrt(6 / (12 + 16))  # Glorot-uniform, as MLPClassifier's
    assert np.abs(model.params[0]).max() <= bound and np.abs(model.params[0]).max() > 0.9 * bound
    Z = model.pre_activations(X)
    assert np.array_equal(model.kept(Z, 4, False).sum(axis=1), np.full(40, 4.0))
    mixed = model.kept(Z, 4, False, random_fill=2, rng=rng)
    assert np.array_equal(mixed.sum(axis=1), np.full(40, 4.0))
    top_two = np.argsort(-Z, axis=1)[:, :2]
    assert np.take_along_axis(mixed, top_two, axis=1).all()
    # a neuron far above the rest for every row wins every row, unless ranks are centred
    model.params[1][3] += 100.0
    Z = model.pre_activations(X)
    assert model.kept(Z, 1, False)[:, 3].all()
    model.centre = Z.mean(axis=0)
    assert not model.kept(Z, 1, True)[:, 3].all()
    model.params[1][3] -= 100.0
    model.centre = None
    # lazy Adam: after a batch with feature 11, a batch without it leaves its weights
    # where they are (a dense Adam would move them by their first moment)
    model.train_batch(X, Y.astype(np.float32), 4, False, 1e-2)
    without_11 = (X @ sp.diags(np.r_[np.ones(11), 0]).astype(np.float32)).tocsr()
    without_11.eliminate_zeros()
    row_11 = model.params[0][11].copy()
    assert np.abs(model.first_moments[0][11]).max() > 0
    model.train_batch(without_11, Y.astype(np.float32), 4, False, 1e-2)
    assert np.array_equal(model.params[0][11], row_11)


def test_prototype_with_every_neuron_kept_trains_the_dense_network(monkeypatch):
    prototype = _prototype(monkeypatch)
    X, Y = _multilabel_rows(np.random.RandomState(2), 60)
    dense = prototype.run(X, Y, X, Y, "dense", 8, 8, epochs=3)
    every_neuron = prototype.run(X, Y, X, Y, "topk", 8, 8, epochs=3)
    assert dense == every_neuron
    assert 1 <= dense[1] <= 8
    # training learns: P@1 on the training rows rises with the epochs, to above chance
    untrained = prototype.run(X, Y, X, Y, "dense", 8, 8, epochs=0)
    trained = prototype.run(X, Y, X, Y, "dense", 8, 8, epochs=40, lr=1e-2)
    assert trained[0] > max(untrained[0], Y.mean(axis=0).max())
    assert prototype.run(X, Y, X, Y, "centred", 8, 2, epochs=3) == prototype.run(X, Y, X, Y, "centred", 8, 2,
                                                                                  epochs=3)

def test_bench_topk_loss_times_both_kernels_and_checks_its_shapes(capsys):
    bench = _load_benchmark("bench_topk_loss")
    threads = numba.get_num_threads()
    assert bench.main(["--shapes", "40:8,100:32", "--fresh-rows", "50", "--reused-rows", "10",
                       "--loss-rows", "8", "--outputs", "30"]) == 0
    out = capsys.readouterr().out
    assert "8 of     40" in out and "32 of    100" in out
    assert "logistic" in out and "softmax" in out
    assert numba.get_num_threads() == threads  # restored after timing on one thread
    for shapes in ("100:0", "10:20", "100", "a:b"):
        with pytest.raises(SystemExit):
            bench.main(["--shapes", shapes])
        assert "--shapes" in capsys.readouterr().err
