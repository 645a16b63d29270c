"""Plot the accuracy / compute front from study_selection.py's JSON output.

    python benchmarks/study_selection.py --out benchmarks/results/study_selection.json
    python benchmarks/plot_selection_study.py benchmarks/results/study_selection.json docs/selection_front.png
"""

import argparse
import json


def plot(results, path):
    import matplotlib  # needs the "examples" extra: pip install -e ".[examples]"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    configs = list(results)
    n_cols = 2
    n_rows = (len(configs) + 1) // n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(6 * n_cols, 4.6 * n_rows), squeeze=False)
    for ax, config in zip(axes.ravel(), configs):
        rows = results[config]
        dense = next(r for r in rows if r["strategy"].startswith("MLPClassifier"))
        ax.axhline(dense["accuracy"], color="k", lw=1, ls="--", label="MLPClassifier (dense)")
        ax.axhline(dense["accuracy"] - 0.01, color="k", lw=0.5, ls=":", label="dense - 1 point")
        for r in rows:
            if r is dense:
                continue
            ax.scatter(r["flop_fraction"], r["accuracy"], s=30)
            ax.annotate(r["strategy"], (r["flop_fraction"], r["accuracy"]), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("flop_fraction_ (log scale)")
        ax.set_ylabel("test accuracy")
        ax.set_title(config, fontsize=9)
        low = min(r["accuracy"] for r in rows if not r["strategy"].startswith("random"))
        ax.set_ylim(max(0.0, low - 0.05), 1.0)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="study_selection.py's JSON output")
    parser.add_argument("image", help="where to write the plot (PNG)")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        plot(json.load(f), args.image)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
