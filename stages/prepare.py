"""Stage `prepare`: every active dataset's raw files -> one manifest, its rejects and a quality summary.

    python -m stages.prepare                 the datasets params.yaml's roles use
    python -m stages.prepare --only utkface  just these (any dataset defined in params.yaml)

Reads `data/raw/<dataset>/` (the download stage's output) with the dataset's adapter and writes
`data/interim/<dataset>/manifest.parquet`, `rejects.csv` and `quality.json`. An adapter that makes
its own images (synthetic) draws them into `data/interim/<dataset>/images/`: inside this stage's
output, so that no stage writes into another's (data/raw belongs to download).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from stages.lib.core.files import write_json
from stages.lib.core.errors import UserError
from stages.lib.datasets import ADAPTERS, AdapterResult, parse_options, read_dataset
from stages.lib.sources.plan import MANUAL_DOWNLOAD
from stages.lib.core.params import Params, ParamsError, load_params
from stages.lib.core.cli import run_stage
from stages.lib.datasets.quality import summarise
from stages.lib.core.schema import SchemaError, manifest_frame, rejects_frame, write_manifest, write_rejects

GENERATED_IMAGES = "images"


class PrepareError(UserError, RuntimeError):
    """A dataset this stage cannot prepare; the message says what to do."""


def source_root(name: str, adapter: str, raw_root: Path, interim_root: Path) -> Path:
    """Where the adapter reads (or, for a generating adapter, draws) the dataset's images."""
    if ADAPTERS[adapter].generates:
        return interim_root / name / GENERATED_IMAGES
    return raw_root / name


def missing_raw_message(name: str, adapter: str, root: Path) -> str:
    how = MANUAL_DOWNLOAD.get(adapter, "")
    return (
        f"{root} not found: the raw files of dataset {name!r} go there. Run `dvc repro download` "
        f"(or `python -m stages.download --only {name}`), or put the files there yourself."
        + (f" {how}" if how else "")
    )


def result_tables(result: AdapterResult) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The manifest, the rejects as written (contract columns) and the rejects with any labels read."""
    manifest = manifest_frame(result.rows)
    duplicated = manifest["id"][manifest["id"].duplicated()]
    if len(duplicated):
        raise SchemaError(f"manifest ids must be unique; repeated: {', '.join(duplicated.head(5))}")
    labelled_rejects = pd.DataFrame(result.rejects) if result.rejects else rejects_frame([])
    return manifest, rejects_frame(result.rejects), labelled_rejects


def prepare_dataset(name: str, params: Params, raw_root: Path | None = None, interim_root: Path | None = None) -> dict:
    """Run one dataset's adapter, write its three outputs, and return its quality summary."""
    raw_root, interim_root = raw_root or params.paths.raw, interim_root or params.paths.interim
    dataset = params.datasets[name]
    options = parse_options(dataset.adapter, name, dataset.options, params.labels)
    root = source_root(name, dataset.adapter, raw_root, interim_root)
    if not ADAPTERS[dataset.adapter].generates and not root.is_dir():
        raise PrepareError(missing_raw_message(name, dataset.adapter, root))
    result = read_dataset(dataset.adapter, root, name, options, labels=params.labels)
    manifest, rejects, labelled_rejects = result_tables(result)
    out = interim_root / name
    write_manifest(manifest, out / "manifest.parquet")
    write_rejects(rejects, out / "rejects.csv")
    quality = summarise(name, manifest, labelled_rejects, params.age_bands)
    write_json(quality, out / "quality.json")
    return quality


def format_summary(quality: dict, out: Path) -> str:
    reasons = ", ".join(f"{code} {n:,}" for code, n in quality["rejected_by_reason"].items())
    return (f"{quality['dataset']}: {quality['rows_in']:,} rows -> {quality['kept']:,} kept, "
            f"{quality['rejected']:,} rejected{f' ({reasons})' if reasons else ''} -> {out}/")


def chosen_datasets(params: Params, only: list[str] | None) -> list[str]:
    if not only:
        return params.active_datasets
    unknown = [name for name in only if name not in params.datasets]
    if unknown:
        known = ", ".join(sorted(params.datasets))
        raise ParamsError(f"--only {' '.join(unknown)}: not a dataset in params; known: {known}")
    return list(dict.fromkeys(only))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="DATASET", help="prepare just these datasets")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    return run_stage("prepare", lambda: _run(args))


def _run(args) -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    params = load_params(args.params)
    names = chosen_datasets(params, args.only)
    for name in names:  # every dataset's options are checked before any work is done
        parse_options(params.datasets[name].adapter, name, params.datasets[name].options, params.labels)
    for name in names:
        quality = prepare_dataset(name, params)
        print(format_summary(quality, params.paths.interim / name))
    return None


if __name__ == "__main__":
    sys.exit(main())
