"""Sparse Adam and SGD: optimizer state as arrays, and sklearn's learning-rate rules.

The per-weight arithmetic lives in the update kernels of ``_kernels.py``; this
module owns the state (moment or velocity arrays shaped like the
weights, a step counter, the current SGD learning rate) and the epoch-level
rules copied in meaning from sklearn's ``_stochastic_optimizers``.
"""

import numpy as np

from . import _block_kernels, _kernels


# the state arrays shaped like the weights, per solver
_WEIGHT_STATE = {"adam": ("m_W", "v_W"), "sgd": ("vel_W",)}


class SparseOptimizer:
    """Optimizer state for a list of weight matrices (input- or neuron-major) and biases.

    ``state`` is a plain dict of arrays and scalars, so the estimator can keep it
    as a fitted attribute (it pickles and memory-maps like the weights).
    """

    def __init__(self, params, state):
        self.solver = params["solver"]
        self.params = params
        self.state = state
        # the rule's constants as the kernels take them, made once (not per batch)
        if self.solver == "adam":
            # the betas as float64: the kernels take their complements before rounding
            self._constants = (float(params["beta_1"]), float(params["beta_2"]),
                               np.float32(params["epsilon"]))
        else:
            self._constants = (np.float32(params["momentum"]), bool(params["nesterovs_momentum"]))

    @property
    def weight_state(self):
        """Names of the state arrays shaped like the weights."""
        return _WEIGHT_STATE["adam" if self.solver == "adam" else "sgd"]

    @property
    def bias_state(self):
        """Names of the state arrays shaped like the biases."""
        return ("m_b", "v_b") if self.solver == "adam" else ("vel_b",)

    @staticmethod
    def copied_state(state, weights):
        """A copy of a saved ``state`` to continue on ``weights``, the arrays shaped
        like the weights in their memory order: a layer whose layout changed since
        (another selection, sparsity or min_active) would otherwise make numba
        compile the update kernels again for the other order."""
        weight_shaped = {name for names in _WEIGHT_STATE.values() for name in names}
        return {name: ([np.array(a, order=_order(W)) for a, W in zip(value, weights)]
                       if name in weight_shaped
                       else [np.array(a) for a in value] if isinstance(value, list) else value)
                for name, value in state.items()}

    @classmethod
    def new_state(cls, params, weights, biases):
        if params["solver"] == "adam":
            state = {
                "m_W": [_zeros_like(W) for W in weights],
                "v_W": [_zeros_like(W) for W in weights],
                "m_b": [_zeros_like(b) for b in biases],
                "v_b": [_zeros_like(b) for b in biases],
            }
        else:
            state = {
                "vel_W": [_zeros_like(W) for W in weights],
                "vel_b": [_zeros_like(b) for b in biases],
            }
        state["step"] = 0
        state["learning_rate"] = float(params["learning_rate_init"])
        return state

    def begin_batch(self):
        """Advance the step counter; returns the step size for this batch."""
        self.state["step"] += 1
        if self.solver != "adam":
            return self.state["learning_rate"]
        t = self.state["step"]
        p = self.params
        return (
            p["learning_rate_init"]
            * np.sqrt(1 - p["beta_2"] ** t)
            / (1 - p["beta_1"] ** t)
        )

    def update_layer(self, layer, W, b, step_size, l2, index, row_vals, columns, outputs, scratch,
                     neuron_major=False, col_spans=_kernels.NO_SPANS):
        """Apply the batch gradient of one layer to the weights it touched.

        ``W`` is the C-contiguous weight matrix as the kernels see it (rows are
        inputs, or neurons when ``neuron_major``); ``index`` groups the batch by
        row (see ``_kernels.invert_lists``) and ``row_vals`` holds each row
        owner's factor; ``columns`` are the other side's lists (ids, counts,
        values) and ``outputs`` the layer's active neurons (ids, counts, deltas)
        for the biases; ``col_spans`` the spans of the non-zeros when the
        columns are whole dense input rows; ``scratch`` = (grad, mark, cols,
        compact sums, claims). See ``_kernels._weight_row_gradient``.
        """
        grad, mark, cols, compact, claims = scratch
        s = self.state
        # moments are stored like the weights: kernels see them the same way
        weight_state = [s[name][layer].T if neuron_major else s[name][layer]
                        for name in self.weight_state]
        update = _kernels.adam_update if self.solver == "adam" else _kernels.sgd_update
        bias_state = [s[name][layer] for name in self.bias_state]
        update(W, b, *weight_state, *bias_state, *index, row_vals, *columns, col_spans, *outputs,
               np.float32(l2), np.float32(step_size), *self._constants, grad, mark, cols, compact,
               claims)

    def update_blocked_layer(self, layer, blocked, b, step_size, l2, index, row_vals, outputs,
                             scratch):
        """``update_layer`` for a layer on column blocks (``blocked``, a
        ``_blocks.BlockedLayer``): ``index`` groups the batch by input, whose
        values are ``row_vals``; ``outputs`` = (ids within their block, runs per
        block, deltas) of the active neurons; ``scratch`` = (grad, mark, cols,
        block lists, block compact sums, union sizes, block claims), see
        ``_block_kernels.adam_update_blocks``."""
        touched_rows, n_touched, row_start, row_sample, row_pos = index
        local_ids, block_ptr, out_delta = outputs
        n_pairs = row_start[blocked.layout.n_rows]
        update = (_block_kernels.adam_update_blocks if self.solver == "adam"
                  else _block_kernels.sgd_update_blocks)
        update(blocked.W, *(blocked.state[name] for name in self.weight_state), blocked.layout.starts,
               b, *(self.state[name][layer] for name in self.bias_state), touched_rows, n_touched,
               n_pairs, row_start, row_sample, row_pos, row_vals, local_ids, out_delta, block_ptr,
               np.float32(l2), np.float32(step_size), *self._constants, *scratch)

    def iteration_ends(self, samples_seen):
        """End-of-epoch learning-rate rule ('invscaling' for SGD, as sklearn)."""
        p = self.params
        if self.solver == "sgd" and p["learning_rate"] == "invscaling":
            self.state["learning_rate"] = float(
                p["learning_rate_init"] / (samples_seen + 1) ** p["power_t"]
            )

    def trigger_stopping(self, msg, verbose):
        """No improvement for a while: stop, or for adaptive SGD divide the rate by 5."""
        if self.solver != "sgd" or self.params["learning_rate"] != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.state["learning_rate"] <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.state["learning_rate"] /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.state["learning_rate"])
        return False


def _zeros_like(A):
    """Zeros of A's shape, dtype and memory order.

    np.zeros_like writes every byte, on one thread, before training starts
    (0.13 s of a 16384-wide network's fit); np.zeros takes large arrays as
    fresh pages, which the OS zeroes at their first write, made by the
    training kernels on their own threads.
    """
    return np.zeros(A.shape, A.dtype, order=_order(A))


def _order(A):
    """A's memory order: 'F' for the transpose of a C-contiguous matrix (a
    neuron-major layer's weights), else 'C'."""
    return "F" if A.flags.f_contiguous and A.ndim > 1 and not A.flags.c_contiguous else "C"
