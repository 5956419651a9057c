"""Stage `measure`: apparent skin colour, photo quality and head pose of every crop, for any model.

    python -m stages.measure [--no-progress]

Reads data/crops/manifest.parquet and the crops; writes data/measurements/measurements.parquet, one
row per crop keyed by `id` (core/schema.py's MEASUREMENT_COLUMNS): skin_lightness (L*) and skin_hue
(h*) by the ICCV 2023 "Beyond Skin Tone" method, the clipped shares, background luminance, contrast,
sharpness, the face's size in its source photo, yaw, pitch and roll, and `problem` where a measure
could not be taken. Landmarks start from the face square each crop is known to hold (no detector);
the work runs in crop.workers processes. What each column means: docs/measurements.md.
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.core.cli import run_stage
from stages.lib.core.params import load_params
from stages.lib.core.schema import read_manifest
from stages.lib.faces.measure import MeasureSettings, measure_faces
from stages.lib.faces.measurements import MEASUREMENTS_FILE, faces_to_measure, measurement_table, problem_counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.measure", description=__doc__.splitlines()[0])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    args = parser.parse_args(argv)
    return run_stage("measure", lambda: _run(args))


def _run(args) -> int:
    """Measure every crop; returns the faces measured."""
    params = load_params()
    crops = read_manifest(params.paths.crops_manifest)
    settings = MeasureSettings(**params.measure.model_dump())
    faces = faces_to_measure(crops, margin=params.crop.margin, crop_size=params.crop.size)
    progress = False if args.no_progress else None
    rows = measure_faces(faces, settings, workers=params.crop.workers, progress=progress)
    table = measurement_table(crops, rows, params.crop.margin)
    out = params.paths.measurements
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / MEASUREMENTS_FILE, index=False)
    measured = int(table["skin_lightness"].notna().sum())
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in problem_counts(table).items()) or "none"
    print(f"measure: skin colour of {measured:,} of {len(table):,} faces in {out / MEASUREMENTS_FILE} (reasons: {reasons})")
    return len(table)


if __name__ == "__main__":
    sys.exit(main())
