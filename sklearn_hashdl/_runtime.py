"""Where numba's parallel kernels can run: two guards around its threading layer.

- GNU OpenMP does not survive ``fork()``. In a process forked after numba had
  started its OpenMP threads (a multiprocessing pool's workers under the 'fork'
  start method, for instance), the first parallel kernel ends the process
  ("Terminating: fork() called from a process already using GNU OpenMP"), and a
  pool then waits forever for its result. ``kernels_ready`` raises a clear error
  there instead (fitting, and prediction through the hash tables; 'topk'
  prediction runs no parallel kernel and still works there).
- numba's fallback layer 'workqueue' (when neither OpenMP nor TBB is found) ends
  the process when two threads launch kernels at once (threaded grid searches,
  predictions from a thread pool). ``kernels_ready`` then lets one caller in at a
  time.
"""

import contextlib
import os
import threading

import numba
import numpy as np

_forked_from_gnu_openmp = False
# reentrant: a fit predicts its validation rows inside its own guard
_workqueue_lock = threading.RLock()
_starting_lock = threading.Lock()


def _started_layer():
    """numba's threading layer if a parallel kernel has run in this process, else None."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _note_fork():
    global _forked_from_gnu_openmp, _workqueue_lock, _starting_lock
    # a lock held by a thread of the parent would stay held in the child for good
    _workqueue_lock, _starting_lock = threading.RLock(), threading.Lock()
    if _started_layer() == "omp":
        from numba.np.ufunc import omppool

        if omppool.openmp_vendor == "GNU":
            _forked_from_gnu_openmp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork)


def threading_layer():
    """numba's threading layer, started by a tiny parallel kernel if need be."""
    layer = _started_layer()
    if layer is None:
        from ._kernels import transpose_into

        with _starting_lock:  # two threads starting it at once would be concurrent access
            if _started_layer() is None:  # not started by the thread we waited for
                transpose_into(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32))
        layer = numba.threading_layer()
    return layer


@contextlib.contextmanager
def kernels_ready():
    """Run the enclosed parallel kernels, or raise RuntimeError where they cannot run.

    Only code that launches parallel kernels needs it: prediction in 'topk' and
    'dense' modes (BLAS, and serial kernels) runs anywhere, forked workers included.
    """
    if _forked_from_gnu_openmp:
        raise RuntimeError(
            "This process was forked from one that had already run sklearn_hashdl's "
            "numba kernels on GNU OpenMP threads, which do not survive fork(). Start "
            "worker processes with the 'spawn' or 'forkserver' method instead (for "
            "example multiprocessing.get_context('spawn'), or joblib's default 'loky' "
            "backend)."
        )
    if threading_layer() == "workqueue":
        with _workqueue_lock:
            yield
    else:
        yield
