"""Training over mini-batches: select, forward, loss, backward, sparse update.

``train_batch`` runs the kernels layer by layer on one batch, in the buffers of
a ``_workspace.Workspace``, and counts the multiply-adds done against those of
dense training of the same network. ``TrainingRun`` is one fit call's loop over
the batches, on one thread's kernels or on several, or asynchronously.
``forward_batch``, ``select_layer`` and ``compute_layer`` also serve hashed
prediction (``_inference``) and the selection's recall (``_diagnostics``).
"""

import contextlib
import math
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from . import _block_kernels, _kernels, _select
from ._blocks import LayoutChooser, column_blocks
from ._inputs import input_width
# called by these names (not through _layer_roles): benchmarks and tests replace them here
from ._layer_roles import layers_stored_apart, selection_computes_activations
from ._workspace import Workspace


class PhaseTimer:
    """Wall time per training phase, for benchmarks (benchmarks/bench_speed.py)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._last = time.perf_counter()

    def start(self):
        self._last = time.perf_counter()

    def mark(self, phase):
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now


class _NoTimer:
    def start(self):
        pass

    def mark(self, phase):
        pass


# Set to a PhaseTimer to record where training time goes (benchmarks only).
# Marks separate kernel calls only; they add a few microseconds per batch.
phase_timer = None


def forward_batch(network, ws, n_rows, seed, row_keys, timer=_NoTimer(), labels=None, blocks=None):
    """Select and compute every layer's active neurons for the batch in ``ws`` level 0.

    Returns the levels as (ids, values, counts) views; the last level holds the
    output logits. Layer i's selection costs go to ``ws.select_cost[i]``.
    In training, ``labels`` = (``_inputs.Targets``, batch rows): a sparse output layer then
    always includes each sample's true labels. ``blocks`` ({layer: BlockedLayer},
    from ``_blocks.column_blocks``) holds the layers whose blocks are stored apart.
    """
    blocks = blocks or {}
    views = ws.views(n_rows)
    levels = views.levels
    for i in range(network.n_layers):
        out_ids, out_vals, out_cnt = levels[i + 1]
        is_output = i == network.n_layers - 1
        computed = False
        if i in blocks:
            computed = select_blocks(network, ws, i, levels[i], levels[i + 1], blocks,
                                     views.select_cost[i])
        elif network.is_sparse(i):
            computed = select_layer(network, ws, i, levels[i], levels[i + 1], network.selection[i],
                                    network.n_selected(i), np.uint64(seed + i), row_keys,
                                    views.select_cost[i])
        if network.is_sparse(i):
            if network.n_selected(i) < network.n_active[i]:
                _select.add_random(out_ids, out_cnt, network.n_active[i], network.layer_sizes[i + 1],
                                   np.uint64(seed + i + 500), row_keys, ws.mark)
            if is_output and labels is not None:
                targets, rows = labels
                _kernels.add_true_labels(out_ids, out_cnt, rows, targets.ptr, targets.ids, ws.mark)
            timer.mark("select (hash, query, score)")
        if not computed:
            compute_layer(network, i, levels[i], levels[i + 1], ws)
            timer.mark("forward")
    return levels


def select_blocks(network, ws, i, inputs, outputs, blocks, cost):
    """Exact selection of the column-blocked layer i (``blocks[i]``): the ids,
    activations and per-block runs of its active neurons into ``outputs``."""
    in_ids, in_vals, in_cnt = inputs
    out_ids, out_vals, out_cnt = outputs
    ws.lists_changed(i + 1)
    scratch, layer = ws.block_scratch(network, blocks), blocks[i]
    in_nnz = ws.nnz0[: in_cnt.shape[0]] if i == 0 else in_cnt
    block_ptr, local_ids = scratch.runs(in_cnt.shape[0])[i + 1]
    _block_kernels.select_exact_blocks(
        layer.W, layer.layout.starts, network.biases[i], in_ids, in_vals, in_cnt, in_nnz,
        network.n_active[i], network.activation_code, out_ids, out_vals, out_cnt,
        block_ptr, local_ids, cost, scratch.scores, scratch.bounds, *scratch.kept, scratch.all_ids,
        ws.scores, ws.ties, ws.pool, ws.claims,
    )
    return True


def select_layer(network, ws, i, inputs, outputs, mode, n_select, seed, row_keys, cost):
    """Write the n_select neurons of layer i that ``mode`` picks for each sample of
    ``inputs`` into the id lists of ``outputs`` (see _select.select_active). Returns
    whether it wrote their activations too (``selection_computes_activations``)."""
    in_ids, in_vals, in_cnt = inputs
    out_ids, out_vals, out_cnt = outputs
    write_values = selection_computes_activations(network, i, mode) and n_select == network.n_active[i]
    ws.lists_changed(i + 1)
    hyperplanes, offsets, neuron_ids = network.tables(i)
    in_nnz = ws.nnz0[: in_cnt.shape[0]] if i == 0 else in_cnt
    if i == 0 and ws.nonzeros is not None and mode in (_select.SELECT_LSH, _select.SELECT_RANDOM):
        # hashing skips zeros: the lists of non-zeros save a test per column
        # (selection 1.13x faster on MNIST); scoring modes keep the contiguous rows
        in_ids, in_vals, in_cnt = ws.nonzeros
    _select.select_active(
        mode, in_ids, in_vals, in_cnt, in_nnz, network.kernel_weights(i), network.neuron_major[i],
        network.biases[i], hyperplanes, network.layer_sizes[i], network.K, network.L, offsets,
        neuron_ids, n_select, network.rerank_pool(i), network.n_probes, seed, row_keys, out_ids,
        out_cnt, cost, write_values, network.block_width(i), network.activation_code, out_vals,
        ws.count, ws.cand, ws.ties, ws.hist, ws.proj, ws.pool, ws.scores, ws.cand_scores, ws.claims,
    )
    return write_values


def compute_layer(network, i, inputs, outputs, ws=None):
    """Activations of layer i's active neurons (listed in ``outputs``) from ``inputs``,
    both levels as (ids, values, counts); the output layer gives logits."""
    in_ids, in_vals, in_cnt = inputs
    out_ids, out_vals, out_cnt = outputs
    W, b = network.kernel_weights(i), network.biases[i]
    activation = 0 if i == network.n_layers - 1 else network.activation_code
    if network.neuron_major[i] and ws is not None:
        _kernels.forward_layer_grouped(W, b, in_ids, in_vals, in_cnt, *ws.inverted(i + 1),
                                       activation, out_vals, ws.claims)
    elif ws is not None and i in ws.grouped:
        _, _, row_start, row_sample, row_pos = ws.inverted(i)
        _kernels.forward_dense_grouped(W, b, in_vals, in_cnt.shape[0], row_start, row_sample, row_pos,
                                       activation, ws.partial_sums, out_vals)
    elif network.neuron_major[i]:
        _kernels.forward_layer_by_neuron(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt,
                                         activation, out_vals)
    else:
        _kernels.forward_layer(W, b, in_ids, in_vals, in_cnt, out_ids, out_cnt,
                               not network.is_sparse(i), activation, out_vals)


def train_batch(network, ws, optimizer, targets, rows, sample_weight, alpha, seed, flops,
                timer=_NoTimer(), step_size=None, blocks=None, weight_sum=None):
    """One step of sparse training on the batch already loaded in ``ws`` level 0.

    ``rows`` are the batch's rows of ``targets`` (int64), ``sample_weight``
    their weights. Returns the batch's weighted mean log loss (without the L2
    term); adds the multiply-adds done and those of dense training to ``flops``
    ('sparse', 'dense'); ``timer`` is marked after each phase. ``step_size``
    is the optimizer's, from ``optimizer.begin_batch()`` when not given.
    ``blocks`` ({layer: BlockedLayer}, from ``_blocks.column_blocks``) holds the
    layers whose column blocks are stored apart. ``weight_sum``: the sum of
    ``sample_weight``, when the caller has it.
    """
    B = len(rows)
    n_layers = network.n_layers
    blocks = blocks or {}
    views = ws.views(B)
    if blocks:
        block_scratch = ws.block_scratch(network, blocks)
        runs = block_scratch.runs(B)  # per level, (block_ptr, local_ids)
    levels = forward_batch(network, ws, B, seed, views.row_keys, timer, (targets, rows), blocks)
    if weight_sum is None:
        weight_sum = float(sample_weight.sum(dtype=np.float64))

    delta = views.delta
    out_delta = delta[n_layers]
    out_ids, logits, out_cnt = levels[n_layers]
    loss = _kernels.output_loss_and_delta(
        out_ids, logits, out_cnt, rows, targets.ptr, targets.ids, targets.values,
        sample_weight, weight_sum, network.softmax, ws.target, ws.exps, out_delta, views.loss,
    ) / weight_sum
    timer.mark("loss")

    for i in range(n_layers - 1, 0, -1):
        in_ids, in_vals, in_cnt = levels[i]
        out_ids, _, out_cnt = levels[i + 1]
        lists = (in_ids, in_vals, in_cnt, out_ids, out_cnt)
        if i in blocks:
            block_ptr, local_ids = runs[i + 1]
            _block_kernels.backward_blocks(
                blocks[i].W, in_ids, in_vals, in_cnt, local_ids, block_ptr, delta[i + 1],
                network.activation_code, block_scratch.partial, delta[i], ws.claims)
        elif i in ws.grouped:
            _kernels.backward_dense_grouped(network.kernel_weights(i), in_vals, *ws.inverted(i),
                                            delta[i + 1], network.activation_code, delta[i])
        elif network.neuron_major[i]:
            _kernels.backward_layer_by_neuron(network.kernel_weights(i), *lists, delta[i + 1],
                                              network.activation_code, delta[i])
        elif not network.is_sparse(i):  # every neuron active: never blocked, never neuron-major
            _kernels.backward_all_active(network.kernel_weights(i), in_ids, in_vals, in_cnt, delta[i + 1],
                                         network.activation_code, delta[i], ws.claims)
        else:
            _kernels.backward_layer(network.kernel_weights(i), *lists, not network.is_sparse(i),
                                    network.block_width(i), delta[i + 1],
                                    network.activation_code, delta[i], ws.claims)
    timer.mark("backward")

    if step_size is None:
        step_size = optimizer.begin_batch()
    l2 = alpha / weight_sum
    scratch = (ws.grad, ws.mark, ws.cols, ws.compact, ws.claims)
    # each layer's update groups the batch by weight row: by input (level i),
    # or by neuron (level i + 1) for neuron-major W; all levels at once
    row_levels = [i + 1 if network.neuron_major[i] else i for i in range(n_layers)]
    ws.invert_levels(row_levels)
    # last layer first: the backward pass has just read its weights, still in
    # cache (a 4096-wide net's output update 0.50-0.53 -> 0.47 ms on one thread)
    for i in reversed(range(n_layers)):
        b = network.biases[i]
        in_ids, in_vals, in_cnt = levels[i]
        inputs = (in_ids, in_cnt, in_vals)
        outputs = (levels[i + 1][0], levels[i + 1][2], delta[i + 1])  # ids, counts, deltas
        if network.neuron_major[i]:
            (_, _, row_vals), columns = outputs, inputs
        else:
            (_, _, row_vals), columns = inputs, outputs
        index = ws.inverted(row_levels[i])
        if i in blocks:
            block_ptr, local_ids = runs[i + 1]
            optimizer.update_blocked_layer(i, blocks[i], b, step_size, l2, index, row_vals,
                                           (local_ids, block_ptr, outputs[2]),
                                           block_scratch.update_scratch(blocks[i]))
        else:
            optimizer.update_layer(i, network.kernel_weights(i), b, step_size, l2, index, row_vals,
                                   columns, outputs, scratch, network.neuron_major[i],
                                   ws.whole_row_spans(i))
    timer.mark("update")

    dense_passes, sparse_passes, selecting = ws.flop_passes
    flops["dense"] += B * dense_passes
    flops["sparse"] += _kernels.batch_counts(ws._cnt, ws.nnz0, ws.select_cost, B, sparse_passes,
                                             selecting, ws.pairs, ws.active, ws.selected)
    timer.mark("bookkeeping")
    return loss


class TrainingRun:
    """The batch loop of one fit call: a workspace, the data, and running counts.

    ``epoch(order)`` trains one pass over the rows in ``order`` and returns the
    epoch loss as MLPClassifier reports it: the mean batch log loss plus the L2
    penalty 0.5 * alpha * |W|^2 per batch (computed once, at the epoch's end).

    With ``n_workers`` > 1 the batches are trained asynchronously (HOGWILD!):
    each worker thread takes the next batch and trains it with single-threaded
    kernels on the shared weights, without locks, while the others do the
    same. The threads meet only where the hash tables are rebuilt (tables are
    rewritten in place, so nobody may query them meanwhile). Results then
    depend on thread timing.
    """

    def __init__(self, network, optimizer, X, targets, sample_weight, batch_size, alpha, schedule,
                 seed, initial_flops=0, n_workers=1):
        self.network, self.optimizer, self.schedule = network, optimizer, schedule
        self.X, self.targets, self.sample_weight = X, targets, sample_weight
        # most fits weigh every sample 1: their batches need neither gathering
        # nor summing of weights
        self.unit_weights = bool((sample_weight == 1).all())
        self.some_weights_zero = not sample_weight.all()  # else batches need no filtering
        self._ones = np.ones(batch_size, np.float32)
        self.batch_size, self.alpha = batch_size, alpha
        width, max_labels = input_width(X), targets.max_per_row()
        # Two threads sweeping the same weight rows in the same order fall into
        # step, the follower writing lines still in the leader's cache; opposite
        # directions cross twice per sweep. Measured on MNIST with 2 threads:
        # 3 x 1000 at 0.05 fits 15-20% faster, 4096 at 0.02 with LSH the same.
        self.workspaces = [Workspace(network, batch_size, width, max_labels, descending=k % 2 == 1)
                           for k in range(n_workers)]
        self.seed = seed
        self.n_batches = 0
        self.flops = {"sparse": initial_flops, "dense": 0}
        self.active_sum = np.zeros(network.n_layers)
        self.layer_widths = np.array([W.shape[1] for W in network.weights])
        self.n_trained = 0
        self.timer = phase_timer if phase_timer is not None else _NoTimer()
        self._lock = threading.Lock()
        self.blocks = {}  # the column-blocked layers stored apart, during an epoch
        # which layout is faster for them depends on the machine: measure (_blocks)
        threaded = n_workers == 1 and numba.get_num_threads() > 1
        self.layout_chooser = LayoutChooser() if threaded and layers_stored_apart(network) else None

    def _rebuild_tables(self):
        self.flops["sparse"] += self.network.rebuild_all_tables()

    def _rebuild_tables_on_one_thread(self):
        """The rebuild between asynchronous rounds: on several threads, numba's
        worker would spin on after it (GOMP_SPINCOUNT, see __init__.py), taking a
        core from the workers' next batches (4096 at 0.02 on MNIST: two workers
        1.24-1.27x faster than one thread, against 1.60-1.72x)."""
        n_threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            self._rebuild_tables()
        finally:
            numba.set_num_threads(n_threads)

    def epoch(self, order):
        self._loss_sum = 0.0
        self._l2_batches = 0.0  # sum over batches of batch_size / sum(batch weights)
        batches = [order[start: start + self.batch_size].astype(np.int64)
                   for start in range(0, len(order), self.batch_size)]
        self.workspaces[0].n_threads = numba.get_num_threads()
        if len(self.workspaces) > 1:
            self._train_asynchronously(batches)
        elif self.layout_chooser is None:
            for rows in batches:
                self._train_batch(rows)
        else:
            self._train_choosing_layouts(batches)
        squared_norm = sum(_kernels.sum_of_squares(W.ravel(order="K")) for W in self.network.weights)
        return (self._loss_sum + 0.5 * self.alpha * squared_norm * self._l2_batches) / len(order)

    def _train_batch(self, rows, apart=None):
        """Train one batch synchronously; rebuild the tables when due. Its time goes
        to the layout chooser when the blocks are stored ``apart`` (True) or not
        (False)."""
        start = time.perf_counter()
        trained = self._train(self.workspaces[0], rows, self.flops, self.timer)
        if trained and apart is not None:
            self.layout_chooser.record(apart, time.perf_counter() - start)
        if trained and self.schedule.step():
            self._rebuild_tables()
        self.timer.mark("rehash and batch loop")

    def _train_choosing_layouts(self, batches):
        """Train ``batches`` with the column blocks stored apart or in the one matrix,
        batch by batch as ``layout_chooser`` says (the same results either way),
        switching layouts only where its choice changes."""
        layers = layers_stored_apart(self.network)
        self.layout_chooser.restart()
        try:
            with contextlib.ExitStack() as layout:
                apart_now = None
                for rows in batches:
                    apart = self.layout_chooser.layout()
                    if apart != apart_now:
                        layout.close()  # joins the blocks stored apart, if any
                        self.blocks = layout.enter_context(
                            column_blocks(self.network, self.optimizer, layers if apart else []))
                        apart_now = apart
                    self._train_batch(rows, apart)
        finally:
            self.blocks = {}

    def _train(self, ws, rows, flops, timer, lock=contextlib.nullcontext()):
        """Train one batch in workspace ``ws``, updating the shared counts under ``lock``;
        False when there is nothing to learn from it (all sample weights zero)."""
        n_rows = len(rows)
        if self.unit_weights:
            weights, weight_sum = self._ones[:n_rows], float(n_rows)
        else:
            weights = self.sample_weight[rows]
            if self.some_weights_zero and not weights.all():
                # rows of weight 0 would still pick active neurons, whose lazy Adam
                # step (decay, L2) moves them although their gradient is 0
                rows, weights = rows[weights > 0], weights[weights > 0]
            # in float64: float32 weights can sum past float32's range
            weight_sum = float(weights.sum(dtype=np.float64))
            if weight_sum <= 0:
                return False
        timer.start()
        with lock:
            # a distinct seed per batch, spread far apart for the per-layer offsets
            seed = self.seed + 1000 * self.n_batches
            self.n_batches += 1
            step_size = self.optimizer.begin_batch()
        ws.load_inputs(self.X, rows)
        timer.mark("load batch")
        loss = train_batch(self.network, ws, self.optimizer, self.targets, rows, weights,
                           self.alpha, seed, flops, timer, step_size, self.blocks, weight_sum)
        with lock:
            # the batch's weighted mean loss counts for the whole batch, as in MLPClassifier
            self._loss_sum += loss * n_rows
            self._l2_batches += n_rows / weight_sum
            self.n_trained += len(rows)
            self.active_sum += ws.active / self.layer_widths
        return True

    def _train_asynchronously(self, batches):
        """HOGWILD! over ``batches``, in rounds that end where the tables are due a rebuild."""
        stop = threading.Event()

        def work(ws, flops, queue):
            """Train batches from ``queue`` until it is empty; returns how many trained."""
            numba.set_num_threads(1)  # thread-local: this thread's kernels run inline
            ws.n_threads = 1
            n_trained = 0
            try:
                while not stop.is_set():
                    with self._lock:
                        if not queue:
                            break
                        rows = queue.pop()
                    n_trained += self._train(ws, rows, flops, _NoTimer(), self._lock)
            except BaseException:
                stop.set()  # the other workers end their batch and stop
                raise
            return n_trained

        start = 0
        with ThreadPoolExecutor(len(self.workspaces)) as pool:
            try:
                while start < len(batches):
                    # the schedule rebuilds after ceil(batches_left) more batches
                    size = min(len(batches) - start, max(1, math.ceil(self.schedule.batches_left)))
                    queue = batches[start: start + size][::-1]  # popped from the end, in order
                    start += size
                    worker_flops = [{"sparse": 0, "dense": 0} for _ in self.workspaces]
                    jobs = [pool.submit(work, ws, flops, queue)
                            for ws, flops in zip(self.workspaces, worker_flops)]
                    n_trained = sum(job.result() for job in jobs)
                    for flops in worker_flops:
                        for key in flops:
                            self.flops[key] += flops[key]
                    if any([self.schedule.step() for _ in range(n_trained)]):
                        self._rebuild_tables_on_one_thread()
            finally:
                stop.set()  # after an interrupt, too

    def flop_fraction(self):
        return self.flops["sparse"] / max(self.flops["dense"], 1)

    def active_fraction(self):
        return self.active_sum / max(1, self.n_trained)
