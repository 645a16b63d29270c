"""HashMLPClassifier: scikit-learn's MLPClassifier, trained sparsely through LSH tables."""

import os
import warnings
import weakref
from contextlib import contextmanager
from numbers import Integral, Real

import numba
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer, label_binarize
from sklearn.utils import check_random_state, shuffle
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _kernels
from ._blocks import half_joined, machine_cores
from ._inference import as_float_input, hashed_logit_chunks, logit_chunks, output_probabilities
from ._inputs import Targets, check_sparse_indices, kernel_input
from ._lsh import RehashSchedule, table_shapes
from ._network import Network, active_counts, glorot_init
from ._optim import SparseOptimizer
from ._runtime import kernels_ready, threading_layer
from ._select import SELECT_EXACT, SELECT_LSH, SELECT_LSH_RERANK, SELECT_RANDOM, SELECTION_MODES
from ._train import TrainingRun

# selection='auto': layers up to this width score every neuron exactly (a few
# contiguous AXPYs per active input), wider ones retrieve candidates from the
# hash tables first. Chosen from benchmarks/bench_speed.py and study_selection.py.
AUTO_EXACT_MAX_WIDTH = 16384

# sparse_layers='auto': the output layer is sparse too when it has at least this
# many outputs. A judgement, not a measured optimum: below it a dense output layer
# costs little next to hidden layers of similar width, and the sampled softmax is
# not exact. Smaller label sets can still gain: Bibtex (159 labels) and Delicious
# (983) trained 2.6x and 2.4x faster than MLPClassifier with sparse_layers='output'
# (benchmarks/bench_extreme.py).
AUTO_SPARSE_OUTPUT_MIN_WIDTH = 4096

_OPTIMIZER_PARAMS = (
    "solver", "learning_rate", "learning_rate_init", "power_t", "momentum",
    "nesterovs_momentum", "beta_1", "beta_2", "epsilon",
)

# a fit whose loss, or validation outputs, stopped being finite
_DIVERGED = ("Training diverged: the loss or the network's outputs are no longer finite. "
             "Lower learning_rate_init, or scale the input data.")

# an odd 64-bit constant (the golden ratio's fraction): distinct sample counts
# times it stay distinct modulo a power of two, spread over the seed range
_ODD_64 = 0x9E3779B97F4A7C15

# each fitted estimator's network for predict_mode='hashed', with the key it was
# built for (HashMLPClassifier._prediction_network); dropped with the estimator
_PREDICTION_NETWORKS = weakref.WeakKeyDictionary()

# parameters that shape the network predict_mode='hashed' selects through
_SELECTION_PARAMS = (
    "activation", "K", "L", "hash_function", "sparsity", "min_active", "sparse_layers", "selection",
    "rerank_factor", "n_probes",
)


# Below this many multiply-adds per batch, one thread is faster: every parallel
# region costs a fork/join, and on a busy machine a descheduled worker stalls it.
_SERIAL_WORK_PER_BATCH = 2_000_000


def _same_key(held, key):
    """Do two ``_prediction_key`` results name the same arrays, parameters and contents?"""
    (held_arrays, held_params, held_prints), (arrays, params, prints) = held, key
    return (len(held_arrays) == len(arrays) and all(a is b for a, b in zip(held_arrays, arrays))
            and held_params == params and held_prints == prints)


def _tables_fit(saved, i, layer_sizes, K, L, mips):
    """Were layer i's saved hash tables made for these sizes, K and L? (Only
    K * L would match K=6, L=10 after a set_params(K=5, L=12), whose kernels
    would then read and write past the saved tables.)"""
    planes = saved["hyperplanes"][i]
    if planes is None or planes.shape != (layer_sizes[i] + 1 + int(mips), K * L):
        return False
    offsets_shape, ids_shape = table_shapes(layer_sizes[i + 1], K, L)
    return saved["offsets"][i].shape == offsets_shape and saved["neuron_ids"][i].shape == ids_shape


def _number(value):
    """A NumPy scalar parameter as a Python number: arithmetic with an np.float16
    alpha or tol would otherwise run in float16 (a loss curve starting at inf)."""
    return value.item() if isinstance(value, np.generic) else value


def _writeable(a):
    """``a`` without a copy where it can be: a read-only array (a memory-mapped
    model) is copied, as the kernels are compiled for writeable ones."""
    return a if a.flags.writeable else a.copy()


def _writeable_float32(a):
    """``_writeable`` as float32."""
    return _writeable(np.asarray(a, dtype=np.float32))


@contextmanager
def _numba_threads(n_jobs, work_per_batch):
    """Run the block with the threads ``n_jobs`` asks for, then restore the count.

    None means every core numba sees, unless OMP_NUM_THREADS says fewer (joblib's
    workers, e.g. under GridSearchCV(n_jobs=...), set it to avoid
    oversubscription), and a single thread for small batches.
    """
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        n_threads = available
        limit = os.environ.get("OMP_NUM_THREADS", "")
        if limit.isdigit() and int(limit) > 0:
            n_threads = min(available, int(limit))
        if work_per_batch < _SERIAL_WORK_PER_BATCH:
            n_threads = 1
    elif n_jobs < 0:
        n_threads = max(1, available + 1 + n_jobs)
    else:
        n_threads = min(n_jobs, available)
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _asynchronous_workers(asynchronous):
    """Threads for asynchronous training (1: train synchronously): no more than the
    cores, as a worker descheduled mid-batch later applies a stale step (8 workers
    on 2 cores: 3 x 1000 on MNIST 0.41-0.82 accurate against 0.86)."""
    n_threads = min(numba.get_num_threads(), machine_cores())
    if not asynchronous or n_threads == 1:
        return 1
    layer = threading_layer()
    if layer not in ("omp", "tbb"):
        warnings.warn(
            f"asynchronous=True needs numba's 'omp' or 'tbb' threading layer, not "
            f"{layer!r}, to run kernels from several threads at once; "
            "training synchronously.",
            UserWarning,
        )
        return 1
    return n_threads


class HashMLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained sparsely with locality-sensitive hashing.

    Each hidden layer keeps, per sample, only ``ceil(sparsity * n)`` of its ``n``
    neurons (at least ``min_active``, all of a narrower layer): with
    ``selection='lsh'``, the ones that collide most often with the sample's input
    in ``L`` SimHash tables of ``K`` bits (Spring & Shrivastava, KDD 2017); by
    default (``'auto'``), layers of up to 16384 neurons take the exact top-k of
    their pre-activations, scored over the sample's active inputs. Forward pass,
    backward pass and the optimizer step touch only those neurons. Exact scoring
    reads every neuron's weights for each active input, so the multiply-adds of
    a fit (``flop_fraction_``) are well above the ``sparsity`` fraction of dense
    training's (digits scaled to [0, 1], one layer of 1000 at 0.05: 0.23);
    hashing comes closer to it. With many classes the output layer is hashed
    too (``sparse_layers``): each sample trains its true labels plus the
    selected outputs, under a softmax over that active set. Prediction keeps
    each hidden layer's ``k`` largest activations per row
    (``predict_mode='topk'``), as the net was trained, and scores every output.

    Parameters shared with :class:`~sklearn.neural_network.MLPClassifier` have
    its names, defaults and meaning; ``solver='lbfgs'`` is not available.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Hidden-layer activation.
    solver : {'adam', 'sgd'}, default='adam'
        Sparse (lazy) Adam, or SGD with momentum; only touched weights move.
    alpha : float, default=1e-4
        L2 penalty, applied to the weights a batch touches.
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        SGD learning-rate schedule, as in MLPClassifier.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Number of epochs.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Accepted so that MLPClassifier's parameters carry over (its L-BFGS
        solver's bound on loss evaluations); unused, there is no 'lbfgs' solver.
    K : int, default=6
        Hash bits per table: more bits give smaller buckets (fewer, closer
        candidates per table).
    L : int, default=10
        Tables per hashed layer: more tables retrieve more candidates and rank
        them better, at ``K * L`` projections per sample and layer.
    sparsity : float in (0, 1], default=0.05
        Fraction of each sparse layer's neurons active per sample. 1.0 trains
        the dense network (no hashing).
    min_active : int >= 1, default=32
        Fewest neurons a sparse hidden layer keeps active per sample (every
        neuron of a layer no wider): the fraction ``sparsity`` of a small layer
        is too few to learn from (MLPClassifier's default of 100 neurons at
        0.05 would keep 5; on iris that scored 0.76 against MLPClassifier's
        0.97, and 0.97 with 32: benchmarks/bench_small_sets.py). Wide layers
        keep ``ceil(sparsity * n)`` (50 of 1000 at 0.05). A sparse output
        layer is not held to it; 1 keeps exactly ``ceil(sparsity * n)``
        everywhere.
    sparse_layers : {'auto', 'hidden', 'output', 'both'}, default='auto'
        Which layers keep only ``sparsity`` of their neurons per sample.
        'hidden': every hidden layer, the output layer stays dense. 'output':
        only the output layer (each sample's true labels are always among its
        active outputs; the softmax or logistic loss covers the active outputs
        only). 'both': hidden and output layers. 'auto': 'both' when there are
        at least 4096 outputs (AUTO_SPARSE_OUTPUT_MIN_WIDTH), else 'hidden'.
    multilabel_loss : {'logistic', 'softmax'}, default='logistic'
        Loss for multilabel targets. 'logistic': one sigmoid per label, as
        MLPClassifier. 'softmax': one softmax over the labels with the target
        spread evenly over a sample's true labels (as SLIDE trains extreme
        multilabel sets); ``predict_proba`` rows then sum to 1 and rank the
        labels, and ``predict`` returns the labels more than half as probable as
        the row's most probable one (so always that one).
    hash_function : {'srp', 'srp_mips'}, default='srp'
        Signed random projections of ``[w, b]`` against ``[x, 1]`` (cosine), or
        with the asymmetric MIPS transform applied to the neurons first.
    selection : {'auto', 'lsh', 'lsh_rerank', 'exact', 'random'}, default='auto'
        How a sparse layer picks its active neurons. 'lsh': the neurons
        returned by most of the L tables (the paper's method). 'lsh_rerank':
        the retrieved neurons with the largest exact pre-activation (one dot
        product over the active inputs per retrieved neuron). 'exact': the
        true top-k of all neurons, scored with a few AXPYs over the active
        inputs' weight rows (n * nnz(input) multiply-adds). 'random': random
        neurons (a reference). 'auto': 'exact' for layers of up to
        16384 neurons (AUTO_EXACT_MAX_WIDTH), where it measured both more accurate and
        faster than hashing, 'lsh_rerank' for wider hidden layers, and 'random'
        for a sparse output layer (uniform negatives trained as well as exact
        ones or better than hash-retrieved ones, at no scoring cost;
        docs/extreme.md). With another strategy, a sparse output layer picks
        half its active outputs that way and half at random.
    rerank_factor : float >= 1, default=4.0
        With 'lsh_rerank', at most ``rerank_factor * k`` retrieved neurons (those
        with most collisions) are scored exactly.
    n_probes : int, default=1
        Buckets read per table and sample: the sample's own, plus (multi-probe
        LSH) the n_probes - 1 neighbours that flip its least certain bits, one
        bit each: K + 1 probes at most (larger values act as K + 1).
    rehash_interval : int, default=50
        Batches before the tables are first rebuilt from the drifting weights.
    rehash_growth : float >= 1, default=1.1
        Each rebuild multiplies the interval by this factor.
    predict_mode : {'topk', 'hashed', 'dense', 'auto'}, default='topk'
        'topk' keeps each hidden layer's largest activations per row, as many
        as training kept, computed exactly and densely; 'dense' keeps all
        (a network trained sparsely never saw that, and scores worse);
        'hashed' picks them as training did (the fit's counts, the
        ``selection`` set, and hash tables rebuilt from the final weights; a K
        or L set after the fit draws new tables), which suits models trained
        with selection='lsh' on some data (digits, before min_active: 83%
        against 71% with 'topk') but not on others (MNIST: 88.6% against
        92.5%), and saves multiply-adds on very wide layers. 'auto' is 'hashed'
        when some hidden layer trained through hash tables, else 'topk'. Every
        mode scores all outputs (a sparse output layer's training selection is
        mostly random negatives).
        All are deterministic per row.
    n_jobs : int or None, default=None
        Threads for the training kernels. None uses every core numba sees (capped
        by OMP_NUM_THREADS when set), or one thread when a batch is too small for
        threads to pay; -1 uses every core. Results do not depend on it, unless
        ``asynchronous``. (Exactly scored layers are split into one block of
        neurons per core the process may use, which changes the last bits of
        the sums: so a different core count gives a different fit, in deep
        networks as different as another seed's; see docs/how_it_works.md.)
    asynchronous : bool, default=False
        With more than one thread, train that many batches at once, each thread
        updating the shared weights without locks (HOGWILD!, as in the paper)
        instead of splitting every batch between the threads. It has no barrier
        per kernel, but streams two batches' weight rows at once: on MNIST, two
        threads fit three hidden layers of 1000 1.80-1.84x faster than one
        (1.64-1.72x synchronously), one of 4096 1.62-1.75x (1.60-1.97x); see
        docs/performance.md.
        A fit is then no longer reproducible: results depend on thread timing.
        No effect with one thread, nor with numba's workqueue threading layer,
        which cannot run kernels from two threads at once (a warning says so).

    Attributes
    ----------
    classes_, coefs_, intercepts_, loss_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, n_iter_, t_, n_layers_,
    n_outputs_, out_activation_, n_features_in_, feature_names_in_
        As in MLPClassifier; ``coefs_[i]`` has shape (fan_in, fan_out), float32.
    flop_fraction_ : float
        Multiply-adds of the last fit or partial_fit call (selection, hashing
        and rehashing included) divided by those of dense training of the same
        network on the same batches.
    active_fraction_ : ndarray of shape (n_layers_ - 1,)
        Mean fraction of each layer's neurons active per training sample in the
        last call (1.0 for a dense output layer; a sparse one counts the true
        labels added to its active set).
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "K": [Interval(Integral, 1, 24, closed="both")],
        "L": [Interval(Integral, 1, None, closed="left")],
        "sparsity": [Interval(Real, 0, 1, closed="right")],
        "min_active": [Interval(Integral, 1, None, closed="left")],
        "sparse_layers": [StrOptions({"auto", "hidden", "output", "both"})],
        "multilabel_loss": [StrOptions({"logistic", "softmax"})],
        "hash_function": [StrOptions({"srp", "srp_mips"})],
        "selection": [StrOptions(set(SELECTION_MODES) | {"auto"})],
        "rerank_factor": [Interval(Real, 1, None, closed="left")],
        "n_probes": [Interval(Integral, 1, None, closed="left")],
        "rehash_interval": [Interval(Integral, 1, None, closed="left")],
        "rehash_growth": [Interval(Real, 1, None, closed="left")],
        "predict_mode": [StrOptions({"auto", "topk", "dense", "hashed"})],
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
        "asynchronous": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        K=6,
        L=10,
        sparsity=0.05,
        min_active=32,
        sparse_layers="auto",
        multilabel_loss="logistic",
        hash_function="srp",
        selection="auto",
        rerank_factor=4.0,
        n_probes=1,
        rehash_interval=50,
        rehash_growth=1.1,
        predict_mode="topk",
        n_jobs=None,
        asynchronous=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.K = K
        self.L = L
        self.sparsity = sparsity
        self.min_active = min_active
        self.sparse_layers = sparse_layers
        self.multilabel_loss = multilabel_loss
        self.hash_function = hash_function
        self.selection = selection
        self.rerank_factor = rerank_factor
        self.n_probes = n_probes
        self.rehash_interval = rehash_interval
        self.rehash_growth = rehash_growth
        self.predict_mode = predict_mode
        self.n_jobs = n_jobs
        self.asynchronous = asynchronous

    # ------------------------------------------------------------------ fitting

    def _validate_params(self):
        if self.solver == "lbfgs":
            raise InvalidParameterError(
                "The 'solver' parameter of HashMLPClassifier must be 'adam' or 'sgd'. "
                "Got 'lbfgs' instead: L-BFGS takes full-batch steps over every weight, "
                "which defeats training only the hashed active neurons."
            )
        super()._validate_params()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels, or a label-indicator matrix for multilabel targets.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : HashMLPClassifier
        """
        return self._atomic(self._fit, X, y, sample_weight, False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train one epoch over (X, y), keeping the optimizer and hash state.

        ``classes`` (all labels that will ever be seen) is required on the first
        call and may be omitted afterwards.
        """
        return self._atomic(self._partial_fit, X, y, sample_weight, classes)

    def _partial_fit(self, X, y, sample_weight, classes):
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _atomic(self, method, *args):
        """Run a fitting method; if it fails, restore the model as it was.

        Fitting replaces arrays and never writes into a fitted model's arrays, so
        restoring the attribute dict undoes a failed call completely; the lists
        that training appends to (loss_curve_, validation_scores_) are copied.
        """
        saved = {name: list(value) if isinstance(value, list) else value
                 for name, value in self.__dict__.items()}
        try:
            with kernels_ready():
                return method(*args)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if any(not isinstance(s, Integral) and not float(s).is_integer() for s in sizes):
            raise ValueError(f"hidden_layer_sizes must hold integers, got {sizes}.")
        if np.any(np.array(sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
        return [int(s) for s in sizes]

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
            dtype=(np.float64, np.float32), reset=reset,
        )
        X = check_sparse_indices(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y.toarray() if sp.issparse(y) else y, warn=True)
        if (y.ndim == 2 and y.dtype.kind in "ui" and y.dtype.itemsize < 8
                and type_of_target(y) == "multilabel-indicator"):
            # scikit-learn's LabelBinarizer (1.9) moves the labels of a uint8
            # indicator past column 255 (Delicious' 983 labels): bool keeps them
            y = y.astype(bool)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            fitted_multilabel = self._label_binarizer.y_type_.startswith("multilabel")
            if type_of_target(y).startswith("multilabel") != fitted_multilabel:
                # LabelBinarizer's messages, as MLPClassifier raises them
                raise ValueError("The object was fitted with multilabel input." if fitted_multilabel
                                 else "The object was not fitted with multilabel input.")
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        # sparse one-hot rows: a dense (n_samples, n_classes) array could be huge
        Y = label_binarize(y, classes=self.classes_, sparse_output=True).tocsr()
        return X, y, Y

    def _fit(self, X, y, sample_weight, incremental):
        _PREDICTION_NETWORKS.pop(self, None)  # its tables and arrays would outlive the old model
        hidden_sizes = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
            if (sample_weight < 0).any():
                # they would flip a sample's gradient (MLPClassifier takes them):
                # refused, with scikit-learn's message for non-negative weights
                raise ValueError("Negative values in data passed to `sample_weight`")
        else:
            sample_weight = np.ones(X.shape[0], np.float32)
        layer_sizes = [X.shape[1]] + hidden_sizes + [Y.shape[1]]
        random_state = check_random_state(self.random_state)

        if first_pass:
            self._initialize(layer_sizes)
        else:
            fitted_sizes = [c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]]
            if fitted_sizes != layer_sizes:
                raise ValueError(
                    f"The network's layer sizes changed since the last fit ({fitted_sizes} vs "
                    f"{layer_sizes}); fit again without warm_start."
                )
            self._track_progress_like(self.early_stopping)
        network = self._load_network(layer_sizes, random_state, fresh_weights=first_pass)
        # like MLPClassifier, every fit call (warm_start included) starts a new
        # optimizer; partial_fit continues the previous one
        optimizer = self._load_optimizer(network, reset=not incremental)

        with _numba_threads(self.n_jobs, _work_per_batch(network, X, self.batch_size)):
            self._fit_stochastic(network, optimizer, X, y, Y, sample_weight, random_state, incremental)

        if not all(np.isfinite(W).all() and np.isfinite(b).all()
                   for W, b in zip(network.weights, network.biases)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        self._store_network(network, optimizer)
        return self

    def _initialize(self, layer_sizes):
        """Reset the fitted attributes that describe training progress."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = layer_sizes[-1]
        self.n_layers_ = len(layer_sizes)
        y_type = self._label_binarizer.y_type_
        if y_type == "multiclass" or (y_type.startswith("multilabel") and self.multilabel_loss == "softmax"):
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        for name in ("coefs_", "intercepts_", "_optimizer_state", "_hash_state", "_rehash_state"):
            self.__dict__.pop(name, None)

    def _track_progress_like(self, early_stopping):
        """Start tracking validation scores (or the training loss) if an earlier
        fit, with early_stopping set the other way, did not."""
        if early_stopping and self.validation_scores_ is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        elif not early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf

    def _load_network(self, layer_sizes, random_state, fresh_weights, copy=True, n_active=None):
        """A working Network: new weights on a first pass, else the fitted ones,
        copied unless ``copy`` is False (a network that is only read).
        ``n_active``: the neurons kept per layer, by default as the parameters say."""
        n_layers = len(layer_sizes) - 1
        if fresh_weights:
            pairs = [glorot_init(random_state, layer_sizes[i], layer_sizes[i + 1], self.activation)
                     for i in range(n_layers)]
            weights = [W for W, _ in pairs]
            biases = [b for _, b in pairs]
        elif copy:
            weights = [np.array(c, dtype=np.float32, order="C") for c in self.coefs_]
            biases = [np.array(b, dtype=np.float32) for b in self.intercepts_]
        else:
            weights = [_writeable_float32(c) for c in self.coefs_]
            biases = [_writeable_float32(b) for b in self.intercepts_]
        if n_active is None:
            n_active = self._active_counts(layer_sizes)
        network = Network(
            weights, biases, n_active, self.activation,
            softmax=self.out_activation_ == "softmax", K=self.K, L=self.L,
            mips=self.hash_function == "srp_mips",
            selection=self._selection_modes(layer_sizes),
            rerank_factor=_number(self.rerank_factor), n_probes=self.n_probes,
            hyperplanes=[None] * n_layers, offsets=[None] * n_layers, neuron_ids=[None] * n_layers,
        )
        saved = getattr(self, "_hash_state", None)
        for i in range(n_layers):
            if not network.uses_tables(i):
                continue  # no random draws either: K and L then change nothing
            if saved is not None and _tables_fit(saved, i, layer_sizes, network.K, network.L, network.mips):
                # copied if read-only (a memory-mapped model): the kernels are compiled for
                # writeable arrays, and a read-only one would compile another version
                network.hyperplanes[i] = _writeable(saved["hyperplanes"][i])
                network.offsets[i] = np.array(saved["offsets"][i])
                network.neuron_ids[i] = np.array(saved["neuron_ids"][i])
            else:
                network.hash_tables_for(i, random_state)
            # (re)build now: the weights may have changed since the tables were saved
            network.rehash_flops += network.rebuild_tables(i)
        return network

    def _prediction_network(self, layer_sizes):
        """The fitted network with tables rebuilt from its final weights, for
        predict_mode='hashed'.

        Kept until the model or a parameter that shapes it changes: the rebuild
        costs far more than predicting a few rows (benchmarks/bench_predict.py:
        one row through a 16384-wide LSH layer, about 70 ms for the first call,
        10 ms for the next, most of it the fingerprint of ``_prediction_key``).
        It is kept beside the estimator, not in it, as predict must not change a
        model's attributes (nor its pickle). A read-only (memory-mapped) model is
        not cached: the kernels would need a copy of its weights, kept as long
        as the model.
        """
        key = self._prediction_key()
        cached = _PREDICTION_NETWORKS.get(self)
        if key is not None and cached is not None and _same_key(cached[0], key):
            return cached[1]
        # the fit's counts, as 'topk' keeps them, whatever sparsity was set since
        network = self._load_network(layer_sizes, check_random_state(0), fresh_weights=False,
                                     copy=False, n_active=self._fitted_counts())
        # prediction scores every output; done once here, as a sparse output layer's
        # neuron-major weights are copied to the input-major layout for it
        network = network.with_dense_output()
        if key is not None:
            _PREDICTION_NETWORKS[self] = (key, network)
        return network

    def _prediction_key(self):
        """What the prediction network depends on: the fitted arrays themselves
        (compared by identity, so no id can be reused), the selection parameters,
        and a fingerprint of the arrays' contents, which an edit in place
        changes; None for read-only arrays."""
        arrays = [*self.coefs_, *self.intercepts_]
        if not all(np.asarray(a).flags.writeable for a in arrays):
            return None
        words = [np.ravel(np.asarray(a, np.float32), order="K").view(np.uint32) for a in arrays]
        prints = [_kernels.fingerprint(w) for w in words]
        params = [getattr(self, name) for name in _SELECTION_PARAMS]
        return [*arrays, self._hash_state], params, prints

    def _fitted_counts(self):
        """The neurons each layer kept in the last fit, as plain ints: prediction and
        diagnostics use them whatever sparsity or min_active was set since."""
        return [int(k) for k in self._n_active]

    def _active_counts(self, layer_sizes):
        """Neurons kept per sample in each layer, as ``sparse_layers`` decides."""
        which = self.sparse_layers
        if which == "auto":
            which = "both" if layer_sizes[-1] >= AUTO_SPARSE_OUTPUT_MIN_WIDTH else "hidden"
        return active_counts(layer_sizes, _number(self.sparsity), sparse_hidden=which in ("hidden", "both"),
                             sparse_output=which in ("output", "both"), min_hidden=int(self.min_active))

    def _selection_modes(self, layer_sizes):
        """The selection kernel mode of each layer ('auto' decides by width).

        Hidden layers: exact up to AUTO_EXACT_MAX_WIDTH neurons, hash tables and
        re-ranking above. A sparse output layer gets uniform random negatives
        (besides the true labels): scoring every output exactly costs a dense
        forward pass (Delicious: 1.3-3.4x slower fits for 0.2-0.4 points of P@1), and
        hash-retrieved negatives trained worse than random ones (generated
        50k classes: P@1 0.010 against 0.106; docs/extreme.md).
        """
        if self.selection != "auto":
            return [SELECTION_MODES[self.selection]] * (len(layer_sizes) - 1)
        modes = [SELECT_EXACT if n <= AUTO_EXACT_MAX_WIDTH else SELECT_LSH_RERANK for n in layer_sizes[1:]]
        if self._active_counts(layer_sizes)[-1] < layer_sizes[-1]:
            modes[-1] = SELECT_RANDOM
        return modes

    def _load_optimizer(self, network, reset):
        params = {name: _number(getattr(self, name)) for name in _OPTIMIZER_PARAMS}
        state = getattr(self, "_optimizer_state", None)
        key = "m_W" if self.solver == "adam" else "vel_W"
        if reset or state is None or key not in state:
            state = SparseOptimizer.new_state(params, network.weights, network.biases)
            state["params"] = params
        else:
            state = SparseOptimizer.copied_state(state, network.weights)
            # as MLPClassifier's partial_fit, a continued optimizer keeps the
            # settings it was made with (a learning_rate_init set in between is not used)
            params = state.get("params", params)
        return SparseOptimizer(params, state)

    def _store_network(self, network, optimizer):
        self.coefs_ = list(network.weights)
        self.intercepts_ = list(network.biases)
        self._n_active = np.array(network.n_active, dtype=np.int64)
        self._hash_state = {
            "hyperplanes": network.hyperplanes,
            "offsets": network.offsets,
            "neuron_ids": network.neuron_ids,
        }
        self._optimizer_state = optimizer.state

    def _fit_stochastic(self, network, optimizer, X, y, Y, sample_weight, random_state, incremental):
        early_stopping = self.early_stopping
        if early_stopping:
            # as MLPClassifier: stratify single-output (binary) targets only
            stratify = y if self.n_outputs_ == 1 else None
            X, X_val, y, y_val, Y, _, sample_weight, sw_val = train_test_split(
                X, y, Y, sample_weight, random_state=random_state,
                test_size=self.validation_fraction, stratify=stratify,
            )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going "
                    "to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        schedule = RehashSchedule(self.rehash_interval, self.rehash_growth,
                                  *getattr(self, "_rehash_state", (None, None)))
        # selection randomness: one draw per call, none for an all-dense network,
        # which then shuffles exactly as MLPClassifier does
        any_sparse = any(network.is_sparse(i) for i in range(network.n_layers))
        seed = int(random_state.randint(0, 2**31 - 1)) if any_sparse else 0
        if any_sparse and self.t_:
            # like MLPClassifier's shuffles, an int random_state draws the same
            # seed in every call; the samples seen before this one make each
            # call's random neurons its own (a sparse output layer fed one
            # mini-batch a call otherwise trained the same few negatives)
            seed = (seed + self.t_ * _ODD_64) % 2**62
        # softmax over labels: a multilabel sample's target is spread over its labels
        targets = Targets.from_indicator(Y, spread=network.softmax)
        run = TrainingRun(network, optimizer, kernel_input(X), targets, sample_weight, batch_size,
                          _number(self.alpha), schedule, seed, network.rehash_flops,
                          _asynchronous_workers(self.asynchronous))
        self._best_weights = None
        sample_idx = np.arange(n_samples)
        try:
            self.n_iter_ = 0  # as MLPClassifier: epochs of this call only
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=random_state)
                self.loss_ = run.epoch(sample_idx)
                if not np.isfinite(self.loss_):
                    # MLPClassifier trains on and fails on its weights; early stopping
                    # here could hand back finite weights of 1e20 that predict NaN
                    raise ValueError(_DIVERGED)
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                if early_stopping:
                    self._track_validation(network, X_val, y_val, sw_val)
                else:
                    self._track_training_loss()
                optimizer.iteration_ends(self.t_)

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = (
                            "Validation score did not improve more than tol=%f for %d "
                            "consecutive epochs." % (self.tol, self.n_iter_no_change)
                        )
                    else:
                        msg = (
                            "Training loss did not improve more than tol=%f for %d "
                            "consecutive epochs." % (self.tol, self.n_iter_no_change)
                        )
                    if optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            if half_joined(network, optimizer):
                raise  # the weights are in pieces: the call fails and the model is restored
            warnings.warn("Training interrupted by user.")

        if early_stopping and self._best_weights is not None:
            network.weights = [W.copy(order="K") for W in self._best_weights[0]]
            network.biases = [b.copy() for b in self._best_weights[1]]
            network.rebuild_all_tables()
        self._best_weights = None
        self._rehash_state = (schedule.batches_left, schedule.interval)
        self.flop_fraction_ = run.flop_fraction()
        self.active_fraction_ = run.active_fraction()

    def _track_training_loss(self):
        if self.loss_curve_[-1] > self.best_loss_ - _number(self.tol):
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _track_validation(self, network, X_val, y_val, sw_val):
        y_pred = self._predict_validated(X_val, network)
        score = accuracy_score(y_val, y_pred, sample_weight=sw_val)
        self.validation_scores_.append(score)
        if self.verbose:
            print("Validation score: %f" % score)
        if score < self.best_validation_score_ + _number(self.tol):
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_weights = ([W.copy(order="K") for W in network.weights],
                                  [b.copy() for b in network.biases])

    # --------------------------------------------------------------- prediction

    def _validate_for_predict(self, X):
        check_is_fitted(self)
        return check_sparse_indices(validate_data(self, X, accept_sparse=["csr", "csc"],
                                                  dtype=(np.float64, np.float32), reset=False))

    def _probability_chunks(self, X, network=None):
        """Yield (first row, output probabilities) for row chunks of validated X,
        with the resolved predict_mode; memory stays bounded however many classes.

        ``network`` is the working network during fit (early stopping); by default
        the fitted model is used.
        """
        if network is None:
            layer_sizes = [X.shape[1]] + [c.shape[1] for c in self.coefs_]
            mode = self._resolved_predict_mode(layer_sizes, self._n_active)
        else:
            layer_sizes = network.layer_sizes
            mode = self._resolved_predict_mode(layer_sizes, network.n_active)
        if mode == "hashed":
            chunks = self._hashed_logit_chunks(X, layer_sizes, network)
        else:
            if network is None:
                weights = [np.asarray(c, dtype=np.float32) for c in self.coefs_]
                biases, n_active = self.intercepts_, self._n_active
            else:
                weights, biases, n_active = network.weights, network.biases, network.n_active
            # float64 input is predicted in float64, as MLPClassifier does (but for
            # the first layer of sparse input, see logit_chunks)
            dtype = np.float64 if X.dtype == np.float64 else np.float32
            chunks = logit_chunks(weights, biases, n_active, self.activation,
                                  as_float_input(X, dtype), mode)
        for start, logits in chunks:
            probabilities = output_probabilities(logits, self.out_activation_ == "softmax")
            # an infinite logit can still give a probability of 0 or 1, as in MLPClassifier
            if np.isnan(probabilities).any():
                raise ValueError(_DIVERGED if network is not None else (
                    "The network's outputs overflowed on this input in the "
                    f"{'hashed (float32)' if mode == 'hashed' else str(X.dtype)} forward pass: "
                    "X holds values too large for it, or the model's weights are (a fit that "
                    "diverged: see loss_curve_). Scale the features, or lower learning_rate_init."))
            yield start, probabilities

    def _hashed_logit_chunks(self, X, layer_sizes, network):
        """``hashed_logit_chunks`` through the fitted model's tables, or in validation
        through the training network's weights; its kernels run in parallel."""
        with kernels_ready():
            if network is None:
                network = self._prediction_network(layer_sizes)
            else:  # validation scores the tables the fitted model will have
                network = network.with_current_tables()
            yield from hashed_logit_chunks(network, X)

    def _labels_from_probabilities(self, probabilities):
        if self.n_outputs_ == 1:
            probabilities = probabilities.ravel()
        elif self.out_activation_ == "softmax" and self._label_binarizer.y_type_.startswith("multilabel"):
            # labels more than half as probable as the row's most probable one: the
            # softmax ranks labels well, but trained over sampled outputs its
            # absolute values are not calibrated for a fixed threshold
            probabilities = probabilities / probabilities.max(axis=1, keepdims=True)
        return self._label_binarizer.inverse_transform(probabilities)

    def _predict_validated(self, X, network=None):
        parts = [self._labels_from_probabilities(p) for _, p in self._probability_chunks(X, network)]
        if not parts:
            return self._labels_from_probabilities(np.zeros((0, self.n_outputs_)))
        if sp.issparse(parts[0]):
            return sp.vstack(parts, format="csr")
        return np.concatenate(parts)

    def _resolved_predict_mode(self, layer_sizes, n_active):
        """'auto' predicts through the tables if some sparse layer trained with them
        (``n_active``: the neurons each layer kept in training, the fit's counts
        whatever sparsity or min_active was set since)."""
        if self.predict_mode != "auto":
            return self.predict_mode
        modes = self._selection_modes(layer_sizes)
        for n, k, mode in zip(layer_sizes[1:-1], n_active, modes):  # hidden layers only
            if k < n and mode in (SELECT_LSH, SELECT_LSH_RERANK):
                return "hashed"
        return "topk"

    def predict(self, X):
        """Predict class labels (or label-indicator rows for multilabel targets)."""
        return self._predict_validated(self._validate_for_predict(X))

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        X = self._validate_for_predict(X)
        # float32 input gives float32 probabilities, as MLPClassifier fitted on it
        out = np.empty((X.shape[0], max(2, self.n_outputs_)), dtype=X.dtype)
        for start, probabilities in self._probability_chunks(X):
            rows = slice(start, start + probabilities.shape[0])
            if self.n_outputs_ == 1:
                out[rows, 0] = 1 - probabilities[:, 0]
                out[rows, 1] = probabilities[:, 0]
            else:
                out[rows] = probabilities
        return out

    def predict_log_proba(self, X):
        """Log of ``predict_proba``."""
        probabilities = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(probabilities, out=probabilities)

    def __setstate__(self, state):
        # a model pickled before min_active existed kept ceil(sparsity * n) neurons;
        # max_fun (unused) came later too
        super().__setstate__({"min_active": 1, "max_fun": 15000, **state})

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        # HOGWILD! threads race on the weights: two fits with one seed differ
        tags.non_deterministic = bool(self.asynchronous)
        return tags


def _work_per_batch(network, X, batch_size):
    """Rough multiply-adds of one training batch, to decide whether threads pay."""
    n_rows = X.shape[0]
    batch = min(200, n_rows) if batch_size == "auto" else min(batch_size, n_rows)
    nnz = X.nnz if sp.issparse(X) else X.size
    width = nnz / max(1, n_rows)
    work = 0.0
    for i in range(network.n_layers):
        n_out = network.weights[i].shape[1]
        if not network.is_sparse(i) or network.selection[i] == SELECT_RANDOM:
            selection = 0
        elif network.selection[i] == SELECT_LSH:
            selection = network.K * network.L
        else:
            selection = n_out  # exact scoring of (up to) every neuron
        work += width * (3 * network.n_active[i] + selection)
        width = network.n_active[i]
    return batch * work
