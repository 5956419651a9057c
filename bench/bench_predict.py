"""`python -m stages.predict` over a folder of photos against the features stage, on the same faces.

    python bench/bench_predict.py [--photos 256] [--real] [--folder ../shared/datasets/utkface-aligned-sample]

The first --photos chips of --folder (real UTKFace aligned faces by default: one face per photo, taken
whole, as predict does for heads trained on chips) go through, in one process and on the same seeded
random VGG-Face (the demo's widths at 64 px; --real: 224 px, widths 64..512) and random heads:
  features      the features stage's pass (tf.data read + decode + resize, the backbone in batches)
  predict x1    stages.predict one photo at a time (batch_size 1: what it did before batching)
  predict       stages.predict in blocks of --batch-size photos (the backbone's batch size)
Prints each one's faces/s, CPU seconds per wall second (2.0: both cores busy) and predict's rate as a
share of the features stage's (goal: about 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.backbones.registry import load  # noqa: E402
from stages.lib.backbones.store import image_dataset  # noqa: E402
from stages.lib.core.params import Backbone  # noqa: E402
from stages.lib.core.timing import cpu_seconds  # noqa: E402
from stages.lib.heads.inference import predict_photos  # noqa: E402
from stages.lib.heads.model import build_head  # noqa: E402

DEFAULT_FOLDER = ROOT.parent / "shared" / "datasets" / "utkface-aligned-sample"


def measured(run) -> tuple[float, float]:
    """(wall s, CPU s) of one call of `run`."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--real", action="store_true", help="224 px and the real widths 64, 128, 256, 512, 512")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    paths = sorted(args.folder.glob("*.jpg"))[:args.photos]
    if not paths:
        raise SystemExit(f"bench_predict: no .jpg photos in {args.folder}: pass --folder")
    size, widths = (224, [64, 128, 256, 512, 512]) if args.real else (64, [8, 16, 32, 32, 32])
    config = Backbone(weights="random", input_size=size, conv_widths=widths, fc_width=64, batch_size=args.batch_size)
    spec, embed = load(config, 0, ROOT / "unused-weights")
    heads = {"age": build_head(spec.feature_dim, 64, 101, 0.5, "age", seed=1),
             "gender": build_head(spec.feature_dim, 64, 2, 0.5, "gender", seed=2)}
    margins = np.full(len(paths), np.nan)

    def features():
        for rows, images in image_dataset(paths, list(range(len(paths))), size, args.batch_size):
            embed(images, margins[rows.numpy()])

    def predict(batch_size):
        return lambda: predict_photos(paths, None, 0.0, size, embed, size, heads, batch_size=batch_size,
                                      keep_found=False)

    runs = {"features": features, "predict x1": predict(1), f"predict x{args.batch_size}": predict(args.batch_size)}
    predict_photos(paths[:2], None, 0.0, size, embed, size, heads)  # graphs traced, not timed
    features()
    print(f"{len(paths)} photos from {args.folder}, {size} px, widths {widths}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    rates = {}
    for name, run in runs.items():
        wall, cpu = measured(run)
        rates[name] = len(paths) / wall
        print(f"{name:<12} {rates[name]:8.1f} faces/s  {cpu / wall:.2f} CPU s per wall s")
    print(f"predict x{args.batch_size} / features: {rates[f'predict x{args.batch_size}'] / rates['features']:.2f}; "
          f"batching gained x{rates[f'predict x{args.batch_size}'] / rates['predict x1']:.1f}")


if __name__ == "__main__":
    main()
