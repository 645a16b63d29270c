"""The training workspace: reusing a level's inverted index within a batch (made
with the other levels' in one call) trains exactly as rebuilding it alone for every
kernel that needs it; per-thread scratch
keeps each thread's row on pages of its own."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from sklearn_hashdl import HashMLPClassifier
from sklearn_hashdl._blocks import PAGE_BYTES
from sklearn_hashdl._workspace import Workspace, _thread_scratch


def _fit(params, X, y):
    return HashMLPClassifier(max_iter=3, batch_size=32, random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("params", [
    # neuron-major hidden layers: their forward pass and both neighbouring
    # updates group the same level
    dict(hidden_layer_sizes=(64, 48), sparsity=0.2, min_active=1, selection="lsh"),
    dict(hidden_layer_sizes=(80,), sparsity=0.1, min_active=1, selection="lsh_rerank", solver="sgd"),
    # input-major layers: every update groups a different level
    dict(hidden_layer_sizes=(40, 30), sparsity=0.3, min_active=1, selection="exact"),
    # a selected output layer: its selection must not forget the level below
    dict(hidden_layer_sizes=(64,), sparsity=0.3, min_active=1, selection="lsh", sparse_layers="both"),
])
def test_reused_inverted_index_trains_like_a_fresh_one(params, monkeypatch):
    X, y = make_classification(n_samples=150, n_features=20, n_informative=10, n_classes=3,
                               random_state=0)
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # some zero inputs
    reused = _fit(params, X, y)

    inverted = Workspace.inverted

    def always_fresh(self, level):
        self.lists_changed()  # forget every level, whatever the workspace thinks
        return inverted(self, level)

    monkeypatch.setattr(Workspace, "inverted", always_fresh)
    fresh = _fit(params, X, y)
    for a, b in zip(reused.coefs_ + reused.intercepts_, fresh.coefs_ + fresh.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert reused.loss_curve_ == fresh.loss_curve_


@pytest.mark.parametrize("width, dtype", [(1000, np.float32), (1, np.uint8), (4096, np.int32),
                                          (7, np.uint64)])
def test_thread_scratch_rows_have_pages_of_their_own(width, dtype):
    # a thread sweeping its row must not run into the next thread's row: rows on
    # their own pages, a free page between them (hardware prefetchers stop at pages)
    scratch = _thread_scratch(3, width, dtype)
    assert scratch.dtype == dtype and scratch.flags.c_contiguous and scratch.flags.writeable
    assert scratch.shape[0] == 3 and scratch.shape[1] >= width and not scratch.any()
    assert scratch.ctypes.data % PAGE_BYTES == 0 and scratch.strides[0] % PAGE_BYTES == 0
    assert scratch.strides[0] - width * scratch.itemsize >= PAGE_BYTES


def test_batch_counts_sum_each_layers_pairs_active_neurons_and_selection_cost():
    from sklearn_hashdl import _kernels

    rng = np.random.RandomState(0)
    n_layers, B, n_rows = 3, 16, 11  # rows past n_rows are stale and must not count
    cnt = rng.randint(0, 50, size=(n_layers + 1, B)).astype(np.int32)
    nnz0 = rng.randint(0, 30, size=B).astype(np.int32)
    select_cost = rng.randint(0, 10**6, size=(n_layers, B)).astype(np.int64)
    pairs, active, selected = (np.full(n_layers, -1, np.int64) for _ in range(3))
    passes, selecting = np.array([2, 3, 1], np.int64), np.array([True, False, True])
    total = _kernels.batch_counts(cnt, nnz0, select_cost, n_rows, passes, selecting, pairs, active,
                                  selected)
    inputs = np.vstack([nnz0, cnt[1:n_layers]]).astype(np.int64)[:, :n_rows]
    np.testing.assert_array_equal(pairs, (cnt[1:, :n_rows] * inputs).sum(axis=1))
    np.testing.assert_array_equal(active, cnt[1:, :n_rows].sum(axis=1))
    np.testing.assert_array_equal(selected, select_cost[:, :n_rows].sum(axis=1))
    assert total == np.dot(passes, pairs) + selected[selecting].sum()


@pytest.mark.parametrize("sparse_layers", ["hidden", "both"])
def test_softmax_scratch_holds_the_widest_output_list(sparse_layers, monkeypatch):
    # the loss kernel keeps a sample's exponentials by position: its per-thread
    # scratch must be as wide as the output level's lists (past one page of it,
    # 1024 float64, a narrower one would write on)
    made = []
    init = Workspace.__init__
    monkeypatch.setattr(Workspace, "__init__", lambda self, *a, **k: made.append(self) or init(self, *a, **k))
    rng = np.random.RandomState(0)
    X, y = rng.randn(300, 8), np.arange(300) % 1100  # more classes than rows: 300 of them seen
    y[:3] = [1099, 1098, 1097]
    classes = np.arange(1100)
    model = HashMLPClassifier((16,), sparse_layers=sparse_layers, sparsity=0.95, max_iter=1, random_state=0)
    model.partial_fit(X, y, classes=classes)
    assert made
    for ws in made:
        assert ws.ids[-1].shape[1] > 1024
        assert ws.exps.shape[1] >= ws.ids[-1].shape[1]
