"""Start-up cost: the first fit in a new process, with a cold and a warm numba cache.

Runs two small fits (default exact selection, and LSH, whose neuron-major kernels
differ) twice in a fresh Python process; the first pair's extra time over the
second is the start-up overhead (compiling or loading the kernels). The cold
case points NUMBA_CACHE_DIR at an empty folder; the warm case reuses it.

    python benchmarks/bench_startup.py
"""

import argparse
import os
import subprocess
import sys
import tempfile

CHILD = """
import time
t0 = time.perf_counter()
from sklearn.datasets import load_digits
from sklearn_hashdl import HashMLPClassifier
X, y = load_digits(return_X_y=True)
t1 = time.perf_counter()
times = []
for _ in range(2):
    start = time.perf_counter()
    for selection in ("auto", "lsh"):
        HashMLPClassifier((200,), max_iter=1, selection=selection, random_state=0).fit(X, y).predict(X)
    times.append(time.perf_counter() - start)
print(f"{t1 - t0:.2f} {times[0]:.2f} {times[1]:.2f}")
"""


def run_child(cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return [float(v) for v in out]


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    with tempfile.TemporaryDirectory() as cache_dir:
        for label in ("cold cache", "warm cache"):
            imports, first, second = run_child(cache_dir)
            print(f"{label}: imports {imports:.2f} s, first fit {first:.2f} s, second fit "
                  f"{second:.2f} s -> start-up overhead {first - second:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
