"""Stage report: the study's report (params.paths.reports/report.md) and figures over every experiment.

    python -m stages.report

What it reads and writes: stages/lib/reporting/report.py.
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.core.params import load_params
from stages.lib.core.cli import run_stage
from stages.lib.reporting.report import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    return run_stage("report", _run)


def _run() -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    path = build_report(load_params())
    print(f"report: {path}")
    return None


if __name__ == "__main__":
    sys.exit(main())
