"""Stage report: the study's report (params.paths.reports/report.md) and figures over every experiment,
and the headline metrics (params.paths.headline, the one DVC metrics file: reporting/headline.py).

    python -m stages.report

What it reads and writes: stages/lib/reporting/report.py.
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.core.cli import run_stage
from stages.lib.core.params import load_params
from stages.lib.reporting.headline import write_headline
from stages.lib.reporting.report import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    return run_stage("report", _run)


def _run() -> None:
    """report.md, its figures, and the headline metrics (the only DVC metric)."""
    params = load_params()
    path = build_report(params)
    headline = write_headline(params)
    print(f"report: {path}; headline metrics: {headline}")


if __name__ == "__main__":
    sys.exit(main())
