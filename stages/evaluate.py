"""Stage evaluate@EXPERIMENT: the breakdown of one experiment's test predictions, per test set.

    python -m stages.evaluate EXPERIMENT

Reads `<reports>/<exp>/predictions.parquet` (written by train@exp), keeps the test split, and writes
the evaluation folder, DVC plot data and the headline metrics (laid out in
stages/lib/evaluation/results.py).
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.core.params import load_params
from stages.lib.core.cli import run_stage
from stages.lib.evaluation.results import evaluate_experiment, headline_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment named in params.yaml `experiments`")
    args = parser.parse_args(argv)
    return run_stage("evaluate", lambda: _run(args), key=args.experiment)


def _run(args) -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    params = load_params()
    params.experiment(args.experiment)
    overall = evaluate_experiment(args.experiment, params)
    for dataset, figures in overall.items():
        print(f"{args.experiment} on {dataset}: n={figures['n']:,} {headline_line(figures)}")
    return sum(figures["n"] for figures in overall.values())


if __name__ == "__main__":
    sys.exit(main())
