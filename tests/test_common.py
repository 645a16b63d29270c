"""scikit-learn's estimator checks, on a few configurations.

EXPECTED_FAILED_CHECKS lists every check we expect to fail, with the reason.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_hashdl import HashMLPClassifier

_SAMPLE_WEIGHT_REASON = (
    "a weight of 2 against a repeated row: in float32 the two fits differ in the last "
    "bits (about 1.5e-7 to 3e-7 relative, above the check's 1e-7; MLPClassifier computes "
    "in float64 and passes), and with selection='lsh' the hash-count ties are broken by "
    "a row's position, so a repeated row may pick other neurons. The default "
    "configuration passes on some machines"
)
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON,
    "check_sample_weight_equivalence_on_sparse_data": _SAMPLE_WEIGHT_REASON,
}

CONFIGURATIONS = [
    HashMLPClassifier(random_state=0),  # defaults: hidden (100,), 32 active (min_active)
    # the paper's hashed selection, predicting through the same tables
    HashMLPClassifier(selection="lsh", K=4, predict_mode="hashed", random_state=0),
    # small sparse layers, 16 and 8 active
    HashMLPClassifier(hidden_layer_sizes=(64, 32), sparsity=0.25, min_active=1, K=4, L=8, solver="sgd",
                      activation="tanh", learning_rate_init=0.05, random_state=0),
    # every neuron active: the dense path (early stopping is left out because,
    # as in MLPClassifier, partial_fit refuses it)
    HashMLPClassifier(sparsity=1.0, predict_mode="dense", random_state=0),
]


@parametrize_with_checks(CONFIGURATIONS, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
