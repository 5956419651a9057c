"""DVC stage `download`: fetch the active datasets' sources and the needed model files into data/raw/.

    python -m stages.download               everything this run needs (see stages/lib/sources/plan.py)
    python -m stages.download --only yunet  just the named datasets or weights
    python -m stages.download --only dlib_cydral   a published model's weights (its name in --list-models)

Every file is checked before its sha256 is recorded in downloads.lock.yaml (commit it): an archive is
extracted only when its listing is safe and complete, and a weight file whose checksum params do not
pin must be laid out as the published file (HDF5) or load as a YuNet model (ONNX).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from stages.lib.backbones import published
from stages.lib.backbones.h5weights import PUBLISHED_OUTPUT_CLASSES, check_published_file
from stages.lib.backbones.registry import describe
from stages.lib.backbones.wide_resnet import check_published_file as check_wide_resnet_file
from stages.lib.core.files import write_json
from stages.lib.core.params import ParamsError, load_params
from stages.lib.core.cli import say_mistake
from stages.lib.core.errors import USER_MISTAKES
from stages.lib.core.timing import start_timing
from stages.lib.core.workspace import project_root
from stages.lib.faces.detect import check_ssd_model, check_yunet_model
from stages.lib.sources.fetch import Fetcher, format_missing, format_summary
from stages.lib.sources.intake import FileCheck
from stages.lib.sources.plan import needed_weights, plan_fetches


def weight_checks() -> dict[str, FileCheck]:
    """The structure check of each weight file the pipeline reads, by its key in params' `weights`."""
    checks: dict[str, FileCheck] = {name: partial(check_published_file, name=name) for name in PUBLISHED_OUTPUT_CLASSES}
    checks["yunet"] = check_yunet_model
    checks["wide_resnet_imdb"] = check_wide_resnet_file
    checks["ssd_face"] = check_ssd_model
    return checks


def audit_weights(models: list[str]) -> list[str]:
    """The weights keys of the published models params' `audit_models` lists; ParamsError naming the
    registered models for a name that is not one."""
    unknown = [name for name in models if name not in published.names()]
    if unknown:
        raise ParamsError(f"params.yaml: audit_models: {unknown[0]!r} is not a published model; "
                          f"registered: {', '.join(published.names())}")
    return [key for name in models for key in published.card(name).weights]


def expand_models(names: list[str] | None) -> list[str] | None:
    """--only's names, a published model's name replaced by its weights keys."""
    if names is None:
        return None
    registered = published.names()
    return list(dict.fromkeys(key for name in names
                              for key in (published.card(name).weights if name in registered else (name,))))


def write_weights_receipt(folder: Path, names: list[str]) -> None:
    """Name the model files this run needs in `needed.json`, so the weights folder always exists.

    Later stages depend on `data/raw/weights` whatever the profile (DVC has no conditional deps), and
    DVC cannot restore an empty folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_json({"needed": names}, folder / "needed.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.download", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these datasets or weights")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    timing = start_timing("download")
    try:
        params = load_params()
        backbone_weights = [*describe(params.backbone).weights, *audit_weights(params.audit_models)]
        items = plan_fetches(params, backbone_weights, only=expand_models(args.only))
        fetcher = Fetcher(params.paths.raw, params.paths.lock, base_dir=project_root(Path.cwd()),
                          progress=not args.no_progress,
                          checks=weight_checks())
    except USER_MISTAKES as mistake:
        return say_mistake("download", mistake)
    report = fetcher.fetch_all(items)
    write_weights_receipt(params.paths.weights, needed_weights(params, backbone_weights))
    print(format_summary(report), flush=True)
    if report.missing:
        print(format_missing(report.missing, sorted(params.profiles)), file=sys.stderr)
    if report.errors:
        return 1
    timing.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
