"""Where the time goes: the last run of every stage, from the timing files the stages write.

    python bench/where_time_goes.py [FOLDER]

Reads FOLDER (default: params.yaml's paths.timing, i.e. reports/timing/ of this checkout; each stage
writes <stage>[@<key>].json there when it succeeds, see stages/lib/core/timing.py) and prints a
markdown table: per stage wall seconds, share of the summed wall time, CPU seconds, the share of the
cores kept busy, faces processed and faces/s, slowest first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.core.timing import read_timings, timing_folder, timing_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="the timing folder (default: params paths.timing)")
    folder = parser.parse_args(argv).folder or timing_folder()
    records = read_timings(folder) if folder is not None and Path(folder).is_dir() else []
    if not records:
        print(f"where_time_goes: no timing files in {folder}: run the pipeline first (`dvc exp run`)", file=sys.stderr)
        return 2
    print(timing_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
