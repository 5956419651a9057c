"""The FaceRes pass's throughput (faces/s): the backbone's `embed` as the features stage runs it
(authors' framing, cv2 resize, the TFJS graph in TensorFlow: embedding and published outputs in one
call), on real face chips read once into memory (RGB uint8, 224 px, whole: a ready crop).

    .venv/bin/python bench/bench_faceres.py --weights ~/.cache/face-bias-study/published/weights \\
        --faces ../shared/datasets/utkface-aligned-sample [--images 256] [--batch-size 64]

Prints faces/s (best of --repeats) and the implied rate in G multiply-adds/s at FaceRes' ~0.57 G
multiply-adds a face (MobileNet v1 at 224 px).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.backbones.faceres import embedder  # noqa: E402

GMAC_PER_FACE = 0.57  # MobileNet v1 (width 1) at 224 px; the dense layers add ~0.3 M


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="folder with faceres_graph.json and faceres_weights.bin")
    parser.add_argument("--faces", type=Path, required=True, help="a folder of face chips (JPEG)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    files = sorted(args.faces.glob("*.jpg"))[:args.images]
    images = np.stack([cv2.resize(cv2.imread(str(f)), (224, 224), interpolation=cv2.INTER_LINEAR)[..., ::-1]
                       for f in files])
    margins = np.full(len(images), np.nan)
    embed = embedder(args.weights)
    embed(images[:args.batch_size], margins[:args.batch_size])   # warm-up: graph tracing

    def run() -> None:
        for start in range(0, len(images), args.batch_size):
            embed(images[start:start + args.batch_size], margins[start:start + args.batch_size])

    best = min(_timed(run) for _ in range(args.repeats))
    rate = len(images) / best
    print(f"faceres embed: {len(images)} faces in {best:.2f} s = {rate:.1f} faces/s "
          f"(~{rate * GMAC_PER_FACE:.0f} G multiply-adds/s at ~{GMAC_PER_FACE} a face)")


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
