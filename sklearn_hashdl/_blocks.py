"""Column blocks: an exactly scored layer's neurons split between threads.

Split by sample in the forward and backward passes and by weight row in the
update, two threads read every weight line that a batch touches and then write
each on one of them. When the host places the two cores far apart, each such
write costs an invalidation across the fabric, and the 3 x 1000 network's update
gained nothing from the second thread (docs/performance.md, Zen 1 third session).
Column blocks keep every weight line on one core instead: each block of a
layer's neurons (columns of its input-major weights) is scored, back-propagated
through and updated by one thread. The blocks must be stored apart: as column
ranges of the one matrix they share cache lines and prefetched pages, and the
update ran 4-5x slower than split by rows (``benchmarks/split_layouts.py``).
Left in the one matrix, the blocks cost nothing, and the kernels do the same
arithmetic block by block; a fit on several threads measures which layout is
faster (``LayoutChooser``).

A layer gets one block per core of the machine (the cores this process may run
on), whatever a fit's ``n_jobs`` or numba's thread count, at most
MAX_COLUMN_BLOCKS and each at least MIN_BLOCK_WIDTH neurons wide. Results do not
depend on the layout (blocks stored apart or in the one matrix) nor on the
number of threads; the number of blocks changes their last bits, and which of
several neurons whose scores tie exactly at the selection's cut is picked (the
cut's groups are made within blocks, ``_select._layer_bound``).
"""

import contextlib
import os
from typing import NamedTuple

import numpy as np

# the memory page: the unit that hardware prefetchers do not cross
PAGE_BYTES = 4096
MAX_COLUMN_BLOCKS = 8
MIN_BLOCK_WIDTH = 256


def machine_cores():
    """Cores this process may run on (not NUMBA_NUM_THREADS, which joblib's workers
    lower: a fit in a GridSearchCV worker must train as in the main process)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def n_column_blocks(n_columns):
    """Blocks of a layer of ``n_columns`` neurons."""
    return max(1, min(machine_cores(), MAX_COLUMN_BLOCKS, n_columns // MIN_BLOCK_WIDTH))


def gap_rows(width, dtype):
    """Rows of ``width`` entries that together span at least a page."""
    return -(-PAGE_BYTES // (width * np.dtype(dtype).itemsize))


def stacked_apart(n_blocks, n_rows, width, dtype):
    """Zeroed (n_blocks, n_rows + gap, width) array: a page or more of unused rows
    after each block's ``n_rows``, so that no line or page holds two blocks' data."""
    return np.zeros((n_blocks, n_rows + gap_rows(width, dtype), width), dtype)


class ColumnBlocks:
    """Where the columns of an (n_rows, n_columns) matrix go when split into blocks.

    Block t holds the ``width`` columns ``starts[t]:starts[t + 1]`` (fewer in
    the last block) as rows of ``width`` entries; the last block's spare
    entries stay 0, as no neuron owns them. (Rows padded to whole cache lines
    made the update slower, not faster: 512 floats against 500.)
    """

    def __init__(self, n_rows, n_columns, n_blocks=None):
        n_blocks = n_column_blocks(n_columns) if n_blocks is None else n_blocks
        self.n_rows = n_rows
        self.width = max(1, -(-n_columns // n_blocks))
        self.starts = np.minimum(np.arange(n_blocks + 1) * self.width, n_columns).astype(np.int32)

    @property
    def n_blocks(self):
        return len(self.starts) - 1

    def split(self, A):
        """A's columns as blocks, in an array of ``stacked_apart``."""
        blocked = stacked_apart(self.n_blocks, self.n_rows, self.width, A.dtype)
        for t, (lo, hi) in enumerate(zip(self.starts[:-1], self.starts[1:])):
            blocked[t, : self.n_rows, : hi - lo] = A[:, lo:hi]
        return blocked

    def join(self, blocked, out):
        """Write the blocks back into the columns of ``out``."""
        for t, (lo, hi) in enumerate(zip(self.starts[:-1], self.starts[1:])):
            out[:, lo:hi] = blocked[t, : self.n_rows, : hi - lo]

    def joined(self, blocked):
        """The blocks as a new (n_rows, n_columns) C-contiguous matrix."""
        out = np.empty((self.n_rows, self.starts[-1]), blocked.dtype)
        self.join(blocked, out)
        return out


class BlockedLayer(NamedTuple):
    """A layer's weights and their optimizer state (name -> array), split by columns."""

    layout: ColumnBlocks
    W: np.ndarray
    state: dict


class SplitAway:
    """Stands in for a matrix while its column blocks are stored apart: its shape
    and size, all that training reads of it then. The matrix itself is let go
    (kept, it doubled the blocked layers' memory: 3 x 1000 fit peak 72 MB against
    38), and reading its values fails loudly."""

    def __init__(self, matrix):
        self.shape, self.size, self.dtype = matrix.shape, matrix.size, matrix.dtype


@contextlib.contextmanager
def column_blocks(network, optimizer, layers):
    """Store the blocks of ``layers`` apart for the duration: yields {layer: BlockedLayer}.

    The network's weights and the optimizer's state of those layers are split
    (as ``network.column_blocks[layer]`` says) on entry, ``SplitAway`` standing
    in for them meanwhile, and joined into new matrices on exit, whether the
    block ended normally or not.
    """
    blocked = {}
    try:
        for i in layers:
            layout = network.column_blocks[i]
            state = {name: layout.split(optimizer.state[name][i]) for name in optimizer.weight_state}
            blocked[i] = BlockedLayer(layout, layout.split(network.weights[i]), state)
            network.weights[i] = SplitAway(network.weights[i])
            for name in state:
                optimizer.state[name][i] = SplitAway(optimizer.state[name][i])
        yield blocked
    finally:
        while blocked:  # one layer's arrays at a time exist twice
            i, layer = blocked.popitem()
            network.weights[i] = layer.layout.joined(layer.W)
            for name in list(layer.state):
                optimizer.state[name][i] = layer.layout.joined(layer.state.pop(name))


def half_joined(network, optimizer):
    """Did joining the column blocks stop half-way (an interrupt in ``column_blocks``'
    exit), leaving a ``SplitAway`` where a matrix should be?"""
    state = [array for name in optimizer.weight_state for array in optimizer.state[name]]
    return any(isinstance(array, SplitAway) for array in [*network.weights, *state])


class LayoutChooser:
    """Whether a synchronous fit on several threads stores its column blocks apart,
    batch by batch, chosen by measuring.

    Results are the same in either layout; speed is not, and which layout is
    faster depends on the machine, and on a virtual machine on where the host
    places its virtual CPUs, which can change every few minutes (Zen 1, 3 x 1000
    at 0.05 on MNIST, two threads: blocks apart trained batches 13% faster with
    the cores far apart, 0-10% slower with them near; benchmarks/bench_layouts.py,
    docs/performance.md).
    So training times ``probe`` batches in each layout, then trains ``exploit``
    batches in the faster one, and measures again. The first ``warm_up``
    batches after the weights change layout are not timed: they move the
    weights into the caches of the threads that own them now. Splitting the
    arrays and joining them back costs about as much as copying them three
    times (3 x 1000: about 18 ms, two batches).
    The host may also move the virtual CPUs while a choice holds: when the median
    of a ``window`` of batches exceeds ``drift`` times the median that made the
    choice, training measures again at once (Zen 4, 3 x 1000: the one matrix,
    chosen with the CPUs near at 3.5 ms a batch, then took 6.1-6.4 ms apart, the
    blocks apart 4.2-4.4; 5 of some 60 fits met this, one-off script).
    The first ``settle`` batches of a fit train in the one matrix, untimed: a
    new network's first batches are slower in either layout, and probing
    them favoured the layout probed second (3 x 1000 on MNIST: batches 0-9
    took 10-11 ms, 10-19 about 7.8 and later ones 7.1-7.5).
    """

    def __init__(self, probe=8, exploit=256, warm_up=2, settle=20, window=16, drift=1.3):
        self.probe, self.exploit, self.warm_up = probe, exploit, warm_up
        self.window, self.drift = window, drift
        self.seconds = ([], [])  # batch times measured in the one matrix, and apart
        # the choice, and batches left to train with it before measuring again
        self.apart, self.left = False, settle
        self.expected = None  # the median batch time that made the choice
        self.last = None  # the layout given for the last batch
        self.restart()

    def restart(self):
        """The weights were just put in the layout (e.g. split again for an epoch)."""
        self.in_layout = 0  # batches trained since
        self.recent = []  # a window begins after the warm-up batches

    def layout(self):
        """Store the blocks apart for the next batch?"""
        if self.left == 0:
            # the layout trained in first: probing it needs no switch (a switch
            # costs about two batches, and warm-up batches after it)
            for apart in (self.apart, not self.apart):
                if len(self.seconds[apart]) < self.probe:
                    return self._switch(apart)
            in_one_matrix, apart = (np.median(seconds) for seconds in self.seconds)
            self.apart, self.left = bool(apart < in_one_matrix), self.exploit
            self.expected, self.recent = min(in_one_matrix, apart), []
            self.seconds = ([], [])
        return self._switch(self.apart)

    def _switch(self, apart):
        if apart != self.last:
            self.last = apart
            self.restart()
        return apart

    def record(self, apart, seconds):
        """Training the batch took ``seconds`` (in the layout ``apart`` that
        ``layout`` gave for it)."""
        self.in_layout += 1
        if self.left > 0:
            self.left -= 1
            if self.expected is not None and self.in_layout > self.warm_up:
                self._watch(seconds)
        elif self.in_layout > self.warm_up:
            self.seconds[apart].append(seconds)

    def _watch(self, seconds):
        """Measure again now if the chosen layout's batches have turned much slower."""
        self.recent.append(seconds)
        if len(self.recent) == self.window:
            if np.median(self.recent) > self.drift * self.expected:
                self.left = 0
            self.recent = []
