"""Guards around numba's threading layer (``_runtime``): forked processes and
callers on several threads at once."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl._runtime import threading_layer


def _fit_and_score(seed):
    rng = np.random.RandomState(0)
    X, y = rng.rand(200, 20).astype(np.float32), rng.randint(0, 3, 200)
    model = HashMLPClassifier((64,), min_active=1, max_iter=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        model.fit(X, y)
    return model.score(X, y)


def _predict(model, X):
    return model.predict(X)


def _gnu_openmp():
    if threading_layer() != "omp":
        return False
    from numba.np.ufunc import omppool

    return omppool.openmp_vendor == "GNU"


def _run_under_workqueue(script):
    """Run a Python script on numba's 'workqueue' layer with two threads; its output."""
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is not available on this platform")
def test_a_worker_forked_after_the_kernels_ran_fails_clearly_instead_of_hanging():
    # GNU OpenMP's threads do not survive fork(): numba ended such a worker at its
    # first parallel kernel, and the pool waited for its result forever
    _fit_and_score(0)  # the kernels start their threads in this process
    rng = np.random.RandomState(0)
    X, y = rng.rand(200, 20).astype(np.float32), rng.randint(0, 3, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        topk = HashMLPClassifier((64,), min_active=1, max_iter=1, random_state=0).fit(X, y)
        hashed = HashMLPClassifier((64,), min_active=1, selection="lsh", predict_mode="hashed", max_iter=1,
                                   random_state=0).fit(X, y)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        fitted = pool.apply_async(_fit_and_score, (1,))
        through_tables = pool.apply_async(_predict, (hashed, X))
        # 'topk' prediction runs BLAS and serial kernels only: it works anywhere
        np.testing.assert_array_equal(pool.apply(_predict, (topk, X)), topk.predict(X))
        if _gnu_openmp():
            for result in (fitted, through_tables):
                with pytest.raises(RuntimeError, match="'spawn' or 'forkserver'"):
                    result.get(timeout=120)
        else:  # TBB and other OpenMP runtimes survive fork()
            assert 0 <= fitted.get(timeout=120) <= 1
            np.testing.assert_array_equal(through_tables.get(timeout=120), hashed.predict(X))


def test_threads_share_the_workqueue_layer_one_call_at_a_time():
    # numba's fallback layer ends the process when two threads launch kernels
    # at once (a threaded grid search, predictions from a thread pool)
    script = textwrap.dedent("""
        import warnings
        from concurrent.futures import ThreadPoolExecutor

        import numba
        import numpy as np

        from sklearn_hashdl import HashMLPClassifier

        warnings.simplefilter("ignore")
        rng = np.random.RandomState(0)
        X, y = rng.rand(300, 20).astype(np.float32), rng.randint(0, 3, 300)

        def fit(seed):
            return HashMLPClassifier((256,), min_active=1, selection="lsh", predict_mode="hashed", max_iter=2,
                                     random_state=seed, n_jobs=2).fit(X, y)

        with ThreadPoolExecutor(4) as pool:
            models = list(pool.map(fit, range(4)))
            together = list(pool.map(lambda model: model.predict_proba(X), models * 3))
        alone = [model.predict_proba(X) for model in models * 3]
        assert all(np.array_equal(a, b) for a, b in zip(together, alone))
        print(numba.threading_layer())
    """)
    assert _run_under_workqueue(script) == "workqueue"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is not available on this platform")
def test_a_process_forked_while_another_thread_fits_can_fit_under_workqueue():
    # workqueue survives fork(), but the child once inherited the turn-taking
    # lock held by the parent's fitting thread, and waited for it forever
    script = textwrap.dedent("""
        import multiprocessing, threading, time, warnings

        import numpy as np

        from sklearn_hashdl import HashMLPClassifier

        warnings.simplefilter("ignore")
        rng = np.random.RandomState(0)
        X, y = rng.rand(20000, 50).astype(np.float32), rng.randint(0, 3, 20000)

        def fit(rows):
            HashMLPClassifier((256,), min_active=1, max_iter=1, batch_size=32,
                              random_state=0).fit(X[:rows], y[:rows])

        fit(100)  # the layer starts
        busy = threading.Thread(target=fit, args=(20000,))
        busy.start()
        time.sleep(0.5)  # the busy thread holds the lock
        child = multiprocessing.get_context("fork").Process(target=fit, args=(100,), daemon=True)
        child.start()
        child.join(120)
        busy.join()
        print(child.exitcode)
    """)
    assert _run_under_workqueue(script) == "0"
