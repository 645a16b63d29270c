"""Random numbers inside the kernels: splitmix64 streams seeded per sample.

Each sample's random choices (ties, random neurons) come from a stream seeded by
the batch's seed and the sample's own key, never from a thread's state, so they
do not depend on the number of threads. ``content_keys`` makes such a key from a
row's contents, for prediction.
"""

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, inline="always")
def next_random(state):
    """splitmix64: returns (new state, 64 random bits)."""
    state = state + GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def random_below(state, n):
    """A random integer in [0, n) for n < 2**32: the high bits of 32 random bits
    times n (a multiply and a shift, where a 64-bit modulo takes tens of cycles)."""
    state, z = next_random(state)
    return state, np.int64(((z >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(nogil=True, cache=True)
def content_keys(ids, value_bits, cnt, keys):
    """A 64-bit hash of each row's (index, value) pairs, so that a row's random
    choices at prediction time depend on the row alone, not on its position.
    Zero values are left out: a whole dense row lists them, a CSR row does not,
    and both must draw the same choices."""
    for s in range(cnt.shape[0]):
        h = GOLDEN
        for p in range(cnt[s]):
            if value_bits[s, p] & 0x7FFFFFFF == 0:  # +0.0 or -0.0
                continue
            word = (np.uint64(ids[s, p]) << np.uint64(32)) | np.uint64(value_bits[s, p])
            h, _ = next_random(h ^ word)
        keys[s] = h | np.uint64(1)
