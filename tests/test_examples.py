"""The examples run and say what they claim (small sizes where they take any)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_grid_search_example_runs_and_compares_with_mlpclassifier():
    done = subprocess.run([sys.executable, str(EXAMPLES / "plot_pipeline_grid_search.py")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "best: {" in done.stdout and "cv accuracy" in done.stdout
    assert "HashMLPClassifier test accuracy" in done.stdout and "MLPClassifier     test accuracy" in done.stdout


def test_many_classes_example_trains_both_models_above_chance(capsys):
    spec = importlib.util.spec_from_file_location("plot_many_classes", EXAMPLES / "plot_many_classes.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(n_classes=40, rows_per_class=10, epochs=50)
    assert set(results) == {"MLPClassifier", "HashMLPClassifier, sparse output"}
    for accuracy, seconds in results.values():
        assert 0.25 < accuracy <= 1 and seconds > 0  # chance is 1/40
    out = capsys.readouterr().out
    assert "40 classes, 320 training rows" in out and "flop_fraction_" in out
