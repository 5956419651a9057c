"""Stage `features`: the frozen backbone (VGG-Face by default) over every crop, cached as float16 in data/features/.

    python -m stages.features [--chunk-rows N] [--no-progress]

Resumable: kill it and run it again, it skips the chunks already written (see stages/lib/backbones/store.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.backbones.vgg_face import set_precision_for_device
from stages.lib.backbones.store import DEFAULT_CHUNK_ROWS, run_features
from stages.lib.core.params import load_params
from stages.lib.core.schema import read_manifest

MANIFEST = Path("data/crops/manifest.parquet")
OUT_DIR = Path("data/features")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                        help="rows per resumable chunk (rounded up to whole batches)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    params = load_params()
    policy = set_precision_for_device()
    manifest = read_manifest(MANIFEST)
    meta = run_features(manifest, params, OUT_DIR, chunk_rows=args.chunk_rows,
                        show_progress=False if args.no_progress else None)
    print(f"features: {meta['shape'][0]} crops -> {OUT_DIR / meta['file']} {tuple(meta['shape'])} float16 "
          f"({params.backbone.name}, {meta['device']}, {policy})")


if __name__ == "__main__":
    main()
