"""The wide_resnet_imdb backbone's features throughput against the bare published model's, in one run.

Measures, in one process and on the same real face chips decoded once into memory (uint8, 224 px):
  bare      the whole published model (Keras `predict_on_batch`) on inputs already framed, resized to
            64 and turned BGR: the upper bound
  backbone  the backbone's `embed`: framing + cv2 resize + BGR inside, the grid and both outputs in one
            call, then the 4x4 pooling in numpy (what the features stage runs per batch)
and prints images/s of each and their ratio.

    .venv/bin/python bench/bench_wide_resnet.py --weights data/raw/weights/wide_resnet_imdb.hdf5 \
        --faces ../shared/datasets/utkface-aligned-sample [--images 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.backbones.vgg_face import resize_uint8  # noqa: E402
from stages.lib.backbones.wide_resnet import embedder, load_published_model, model_input  # noqa: E402


def best_rate(count: int, run, repeats: int) -> float:
    run()  # warm-up: graph tracing
    return count / min(_timed(run) for _ in range(repeats))


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--faces", type=Path, required=True, help="a folder of face chips (JPEG)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    files = sorted(args.faces.glob("*.jpg"))[:args.images]
    images = np.stack([resize_uint8(tf.io.decode_image(tf.io.read_file(str(p)), channels=3), 224).numpy()
                       for p in files])
    margins = np.full(len(images), np.nan)
    model = load_published_model(args.weights)
    embed = embedder(model)
    framed = model_input(images, margins)
    batches = range(0, len(images), args.batch_size)
    bare = best_rate(len(images), lambda: [model.predict_on_batch(framed[i:i + args.batch_size]) for i in batches],
                     args.repeats)
    backbone = best_rate(len(images), lambda: [embed(images[i:i + args.batch_size], margins[i:i + args.batch_size])
                                               for i in batches], args.repeats)
    print(f"{len(images)} faces, batch {args.batch_size}, best of {args.repeats}:")
    print(f"  bare published model  {bare:7.1f} images/s")
    print(f"  wide_resnet_imdb      {backbone:7.1f} images/s  ({backbone / bare:.2f} of bare)")


if __name__ == "__main__":
    main()
