"""Stage `features`: the frozen backbone (VGG-Face by default) over every crop, cached as float16.

    python -m stages.features [--chunk-rows N] [--no-progress]

Resumable: kill it and run it again, it skips the chunks already written (see stages/lib/backbones/store.py).
Writes params.paths.features and the pass's throughput (params.paths.throughput, a DVC metric).
Progress: a bar on a terminal, otherwise a line every 30 s with the rate and the time left; --no-progress
shows neither. Bad params or missing inputs are one line naming the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.backbones.registry import describe
from stages.lib.backbones.store import DEFAULT_CHUNK_ROWS, run_features
from stages.lib.backbones.vgg_face import set_precision_for_device
from stages.lib.core.files import write_json
from stages.lib.core.cli import run_stage
from stages.lib.core.params import load_params
from stages.lib.core.schema import read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                        help="rows per resumable chunk (rounded up to whole batches)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    args = parser.parse_args(argv)
    return run_stage("features", lambda: _run(args))


def _run(args) -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    params = load_params()
    describe(params.backbone)  # an unknown backbone.name fails here, before anything is read
    paths = params.paths
    policy = set_precision_for_device()
    manifest = read_manifest(paths.crops_manifest)
    meta = run_features(manifest, params, paths.features, chunk_rows=args.chunk_rows,
                        show_progress=False if args.no_progress else None)
    paths.throughput.parent.mkdir(parents=True, exist_ok=True)
    write_json(meta["throughput"], paths.throughput)
    print(f"features: {meta['shape'][0]} crops -> {paths.features / meta['file']} {tuple(meta['shape'])} float16 "
          f"({params.backbone.name}, {meta['device']}, {policy}, {meta['throughput']['images_per_second']} images/s)")
    return meta["shape"][0]


if __name__ == "__main__":
    sys.exit(main())
