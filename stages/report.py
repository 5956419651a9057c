"""Stage report: the study's report (params.paths.reports/report.md) and figures over every experiment.

    python -m stages.report

What it reads and writes: stages/lib/reporting/report.py.
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.core.params import ParamsError, load_params
from stages.lib.core.timing import start_timing
from stages.lib.reporting.report import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    timing = start_timing("report")
    try:
        path = build_report(load_params())
    except ParamsError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    timing.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
