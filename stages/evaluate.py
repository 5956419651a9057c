"""Stage evaluate@EXPERIMENT: the breakdown of one experiment's test predictions, per test set.

    python -m stages.evaluate EXPERIMENT

Reads `<reports>/<exp>/predictions.parquet` (written by train@exp), keeps the test split, and writes
the evaluation folder, DVC plot data and the headline metrics (laid out in
stages/lib/evaluation/results.py).
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.core.params import ParamsError, load_params
from stages.lib.core.timing import start_timing
from stages.lib.core.schema import SchemaError
from stages.lib.evaluation.results import evaluate_experiment, headline_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment named in params.yaml `experiments`")
    args = parser.parse_args(argv)
    timing = start_timing("evaluate", key=args.experiment)
    try:
        params = load_params()
        params.experiment(args.experiment)
        overall = evaluate_experiment(args.experiment, params)
    except (ParamsError, SchemaError, FileNotFoundError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    for dataset, figures in overall.items():
        print(f"{args.experiment} on {dataset}: n={figures['n']:,} {headline_line(figures)}")
    timing.finish(faces=sum(figures["n"] for figures in overall.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
