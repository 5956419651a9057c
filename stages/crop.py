"""DVC stage `crop`: a square face crop of every prepared row of the active datasets.

    python -m stages.crop [--no-progress]

Reads data/interim/<dataset>/manifest.parquet for each active dataset and writes
data/crops/<dataset>/<file>.jpg, data/crops/manifest.parquet (the kept rows + crop_path, crop_box,
detector, faces_found), data/crops/rejects.csv and data/crops/quality.json (who got lost, by group).
How each row is cropped (its own box, a ready crop, or a detector) is described in stages/lib/faces/crop.py.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from stages.lib.faces.crop import CropSettings, crop_manifest
from stages.lib.faces.stats import crop_quality, precropped_detection
from stages.lib.sources.plan import weight_path
from stages.lib.core.files import write_json
from stages.lib.core.params import Params, load_params
from stages.lib.core.cli import run_stage
from stages.lib.core.schema import read_manifest, write_manifest, write_rejects



def settings_from(params: Params) -> CropSettings:
    """The crop settings; the YuNet model is where the download stage puts `weights.yunet`, the SSD's
    files where it puts `weights.ssd_face` and `weights.ssd_face_config`."""
    used = (params.crop.detector, *params.crop.detect_precropped)
    model = weight_path(params, "yunet") if "yunet" in used and "yunet" in params.weights else None
    ssd = None
    if "ssd" in used and {"ssd_face", "ssd_face_config"} <= set(params.weights):
        ssd = (weight_path(params, "ssd_face"), weight_path(params, "ssd_face_config"))
    return CropSettings(
        detector=params.crop.detector, margin=params.crop.margin, size=params.crop.size,
        min_score=params.crop.min_score, yunet_model=model, ssd_files=ssd,
        detect_precropped=tuple(params.crop.detect_precropped),
    )


def read_prepared(params: Params) -> pd.DataFrame:
    """The active datasets' prepared manifests, concatenated in params order."""
    frames = [read_manifest(params.paths.interim / name / "manifest.parquet") for name in params.active_datasets]
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.crop", description=__doc__.splitlines()[0])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return run_stage("crop", lambda: _run(args))


def _run(args) -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    params = load_params()
    manifest = read_prepared(params)
    result = crop_manifest(
        manifest, params.paths.crops, settings_from(params), workers=params.crop.workers,
        progress=False if args.no_progress else None,
    )
    write_manifest(result.manifest, params.paths.crops_manifest)
    write_rejects(result.rejects, params.paths.crops / "rejects.csv")
    quality = {
        "settings": params.crop.model_dump(),
        "datasets": crop_quality(manifest, result.outcomes, params.age_bands),
    }
    for name, entry in precropped_detection(result.manifest, params.crop.detect_precropped, params.age_bands).items():
        quality["datasets"][name]["detection_on_precropped"] = entry
    write_json(quality, params.paths.crops_quality)
    for name, entry in quality["datasets"].items():
        rejected = ", ".join(f"{code} {n:,}" for code, n in entry["rejected_by_reason"].items()) or "none"
        line = f"crop: {name}: {entry['kept']:,} of {entry['rows_in']:,} kept (rejected: {rejected})"
        detection = entry.get("detection")
        if detection and detection["rate"] is not None:
            line += f"; {detection['detector']} found a face in {detection['rate']:.1%} of {detection['attempted']:,} photos"
        for detector, measured in entry.get("detection_on_precropped", {}).items():
            line += f"; {detector} finds {measured['rate']:.1%} of its {measured['attempted']:,} ready crops"
        print(line)
    return len(manifest)


if __name__ == "__main__":
    sys.exit(main())
