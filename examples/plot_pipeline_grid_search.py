"""Grid-search the sparsity of a HashMLPClassifier inside a Pipeline.

HashMLPClassifier drops in where MLPClassifier stood: here a StandardScaler and the
classifier form a Pipeline, GridSearchCV searches the active fraction (sparsity)
and the selection strategy (exact top-k or the paper's hash tables) with two
workers, and the best model is compared with a
dense MLPClassifier of the same size on held-out digits.

    python examples/plot_pipeline_grid_search.py
"""

import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_hashdl import HashMLPClassifier

warnings.simplefilter("ignore", ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
common = dict(hidden_layer_sizes=(512,), max_iter=20, batch_size=64, random_state=0)

pipeline = make_pipeline(StandardScaler(), HashMLPClassifier(**common))
grid = {
    "hashmlpclassifier__sparsity": [0.05, 0.1, 0.2],
    "hashmlpclassifier__selection": ["auto", "lsh"],
}
search = GridSearchCV(pipeline, grid, cv=3, n_jobs=2)
start = time.perf_counter()
search.fit(X_train, y_train)
print(f"grid search: {time.perf_counter() - start:.1f} s for {len(search.cv_results_['params'])} settings")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  {params}: cv accuracy {score:.3f}")
print("best:", search.best_params_)

best = search.best_estimator_
hashed = best.named_steps["hashmlpclassifier"]
print(f"HashMLPClassifier test accuracy {best.score(X_test, y_test):.3f}, "
      f"flop_fraction_ {hashed.flop_fraction_:.3f}")

dense = make_pipeline(StandardScaler(), MLPClassifier(**common)).fit(X_train, y_train)
print(f"MLPClassifier     test accuracy {dense.score(X_test, y_test):.3f}")
