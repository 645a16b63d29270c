"""Signed-random-projection (SimHash) tables in which each sample finds its likely active neurons.

A layer with ``n`` neurons has ``L`` tables of ``K`` random hyperplanes each.
Neuron j is hashed as the vector ``[w_j, b_j]`` and a sample's layer input as
``[x, 1]``, so a collision means a small angle, hence a likely large activation.
Each table is stored flat: ``offsets[t]`` (bucket starts, one more than the
buckets) and ``neuron_ids[t]`` (neuron ids sorted by bucket), built by a counting
sort. A table has 2**K buckets, one per code, unless that is far more than its
neurons need (``bucket_bits``): then the K-bit codes are hashed into fewer
buckets, so that memory stays proportional to the neurons (K=24 with 10 tables
took 640 MB per layer). ``_select`` queries the tables; ``RehashSchedule`` says
when to rebuild them.
"""

import numpy as np
from numba import njit, prange

from ._random import GOLDEN


def make_hyperplanes(random_state, n_inputs, K, L, mips=False):
    """Random Gaussian hyperplanes, one column per (table, bit); row n_inputs is the bias.

    With ``mips`` an extra row holds the coordinate added by the asymmetric MIPS
    transform (see ``neuron_codes``).
    """
    n_rows = n_inputs + 1 + (1 if mips else 0)
    return random_state.standard_normal((n_rows, K * L)).astype(np.float32)


# neurons hashed per matrix product: each chunk's product runs on one thread, so
# the codes do not depend on how many threads share the chunks out
CODE_CHUNK = 1024


def neuron_codes(W, b, hyperplanes, K, L, mips=False):
    """Bucket code of every neuron in every table, shape (n_neurons, L), int32.

    sign([W.T, b] @ hyperplanes) for input-major W (d, n), by matrix products over
    chunks of CODE_CHUNK neurons shared among numba's threads (``_chunk_codes``;
    the caller keeps BLAS on one thread). With ``mips``, rows are first scaled by
    the largest row norm and extended by sqrt(1 - |row|^2) (the asymmetric MIPS
    transform); the query side then appends a 0.
    """
    d, n = W.shape
    if mips:
        norms = np.sqrt(np.einsum("ij,ij->j", W, W) + b * b)
        scale = norms.max() if n and norms.max() > 0 else 1.0
        extra = np.sqrt(np.maximum(0.0, 1.0 - (norms / scale) ** 2)).astype(np.float32)
        extra_plane = hyperplanes[d + 1]
    else:
        scale, extra, extra_plane = 1.0, np.zeros(n, np.float32), np.zeros(K * L, np.float32)
    codes = np.empty((n, L), np.int32)
    _chunk_codes(np.ascontiguousarray(W.T), b, np.ascontiguousarray(hyperplanes[:d]), hyperplanes[d],
                 np.float32(1 / scale), extra, extra_plane, K, CODE_CHUNK, codes)
    return codes


@njit(nogil=True, parallel=True, cache=True)
def _chunk_codes(rows, b, planes, bias_plane, inv_scale, extra, extra_plane, K, chunk, codes):
    """codes[j, t]: bit k set where (rows[j] @ planes + b[j] bias_plane) * inv_scale
    + extra[j] extra_plane is positive in column t * K + k. One matrix product per
    chunk of neurons, on numba's threads: Python threads lost their gain to
    numba's worker, which spins for a while after each training kernel."""
    n, L = codes.shape
    for c in prange((n + chunk - 1) // chunk):
        lo = c * chunk
        hi = min(n, lo + chunk)
        products = np.dot(rows[lo:hi], planes)
        for j in range(hi - lo):
            bias, extra_j = b[lo + j], extra[lo + j]
            for t in range(L):
                code = 0
                for k in range(K):
                    p = t * K + k
                    z = (products[j, p] + bias * bias_plane[p]) * inv_scale + extra_j * extra_plane[p]
                    if z > 0:
                        code |= 1 << k
                codes[lo + j, t] = code


# a table keeps at most 2**SPARE_BUCKET_BITS buckets per neuron (rounded up to a
# power of two); codes of more bits are hashed down to that many buckets, and a
# query then also meets, per table, at most 1/8 of a neuron with another code
SPARE_BUCKET_BITS = 3


def bucket_bits(n_neurons, K):
    """Bits of the bucket index of a table of ``n_neurons``: K, or fewer when 2**K
    buckets would far outnumber the neurons."""
    return min(K, int(np.ceil(np.log2(max(n_neurons, 1)))) + SPARE_BUCKET_BITS)


@njit(cache=True, inline="always")
def _bucket_shift(K, offsets):
    """64 - bucket bits when a table's codes are hashed into fewer buckets, else 0."""
    n_buckets = offsets.shape[1] - 1
    if n_buckets >= 1 << K:
        return 0
    shift = 64
    while n_buckets > 1:
        n_buckets >>= 1
        shift -= 1
    return shift


@njit(cache=True, inline="always")
def _bucket(code, shift):
    """The bucket of a code: itself, or the top bits of a multiplicative hash of it."""
    if shift == 0:
        return code
    return np.int64((np.uint64(code) * GOLDEN) >> np.uint64(shift))


@njit(nogil=True, cache=True)
def build_tables(codes, K, offsets, neuron_ids):
    """Counting sort of neurons by bucket, per table, into ``offsets`` and ``neuron_ids``."""
    n_neurons, L = codes.shape
    n_buckets = offsets.shape[1] - 1
    shift = _bucket_shift(K, offsets)
    for t in range(L):
        off = offsets[t]
        off[:] = 0
        for j in range(n_neurons):
            off[_bucket(codes[j, t], shift) + 1] += 1
        for c in range(n_buckets):
            off[c + 1] += off[c]
        cursor = off[:n_buckets].copy()
        for j in range(n_neurons):
            c = _bucket(codes[j, t], shift)
            neuron_ids[t, cursor[c]] = j
            cursor[c] += 1


def table_shapes(n_neurons, K, L):
    """Shapes of a layer's (offsets, neuron_ids): L tables of bucket starts and ids."""
    return (L, (1 << bucket_bits(n_neurons, K)) + 1), (L, n_neurons)


def new_tables(n_neurons, K, L):
    """Empty table arrays for ``build_tables``."""
    offsets_shape, ids_shape = table_shapes(n_neurons, K, L)
    return np.zeros(offsets_shape, np.int32), np.zeros(ids_shape, np.int32)


class RehashSchedule:
    """Rebuild tables after ``interval`` batches, the interval growing by ``growth``.

    The state (batches left, current interval) is two floats kept on the estimator
    so that partial_fit and warm_start continue the same schedule.
    """

    def __init__(self, interval, growth, batches_left=None, current_interval=None):
        # capped far beyond any fit's batch count: float(10**400) would overflow
        self.interval = float(min(interval, 2**62) if current_interval is None else current_interval)
        self.growth = float(growth)
        self.batches_left = self.interval if batches_left is None else float(batches_left)

    def step(self):
        """Count one batch; True when the tables are due for a rebuild."""
        self.batches_left -= 1
        if self.batches_left > 0:
            return False
        self.interval *= self.growth
        self.batches_left = self.interval
        return True
