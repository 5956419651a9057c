"""DVC stage `split`: train/val/test for every cropped face, per dataset, identity-disjoint.

    python -m stages.split

Reads data/crops/manifest.parquet, adds `split` (fractions from params split.*, seeded by params
seed, stratified by params age_bands; see stages/lib/split.py) and writes
data/processed/manifest.parquet and data/processed/split.json (rows per split x dataset x age band,
identities per split).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stages.lib.params import ParamsError, load_params
from stages.lib.schema import read_manifest, write_manifest
from stages.lib.split import split_manifest, split_summary

CROPS = Path("data/crops/manifest.parquet")
OUT = Path("data/processed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.split", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        params = load_params()
        manifest = read_manifest(CROPS)
    except (ParamsError, FileNotFoundError) as exc:
        print(f"split: {exc}", file=sys.stderr)
        return 2
    fractions = params.split.model_dump()
    manifest["split"] = split_manifest(manifest, fractions, params.age_bands, params.seed)
    write_manifest(manifest, OUT / "manifest.parquet")
    summary = {"seed": params.seed, "fractions": fractions, "datasets": split_summary(manifest, params.age_bands)}
    (OUT / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, entry in summary["datasets"].items():
        rows = ", ".join(f"{split} {n}" for split, n in entry["rows"].items())
        print(f"split: {name}: {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
