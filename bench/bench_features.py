"""Is the features pass bound by the model or by reading images?

Measures, in one process and on the same generated JPEGs:
  model     the trunk alone on decoded, resized uint8 tensors already in memory (the upper bound)
  pipeline  tf.data read + decode + resize + the trunk (stages.lib.features.image_dataset)
  stage     the whole chunked pass: pipeline + float16 memmap writes + progress records, and its
            per-call setup (graph tracing, memmap creation), which small --images runs magnify
and prints images/s and the ratio pipeline/model (goal >= 0.9: the input pipeline keeps the model busy).

    .venv/bin/python bench/bench_features.py                      # tiny: 64 px, widths 8..32 (~1 min on 2 CPUs)
    .venv/bin/python bench/bench_features.py --real --images 256  # the real network: 224 px, widths 64..512
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.backbones.vgg_face import (backbone_trunk, build_vgg_face, flat_features_fn, resize_uint8,  # noqa: E402
                                 set_precision_for_device)
from stages.lib.backbones.store import Crops, FeaturePass, extract_features, image_dataset  # noqa: E402


def write_jpegs(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """Smooth random images (JPEG sizes like real face crops, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), (5, 5), 0)
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def best_rates(count: int, runs: dict, repeats: int) -> dict[str, float]:
    """Images/s of each run's fastest of `repeats` timings, after one untimed warm-up each.

    The runs take turns, so a burst of load from other processes hits them alike.
    """
    for run in runs.values():
        run()
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: count / seconds for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--conv-widths", type=int, nargs=5, default=[8, 16, 32, 32, 32])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="224 px and the real widths 64, 128, 256, 512, 512")
    args = parser.parse_args(argv)
    if args.real:
        args.input_size, args.conv_widths = 224, [64, 128, 256, 512, 512]

    policy = set_precision_for_device()
    trunk = backbone_trunk(build_vgg_face(args.input_size, args.conv_widths, fc_width=8, classes=2, seed=0))
    infer = flat_features_fn(trunk)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images, args.input_size)
        rows = list(range(len(paths)))
        decoded = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        tensors = resize_uint8(np.stack(decoded), args.input_size)  # what the pipeline feeds the model

        def model_only():
            for start in range(0, len(paths), args.batch_size):
                infer(tensors[start:start + args.batch_size]).numpy()

        def pipeline():
            for _, images in image_dataset(paths, rows, args.input_size, args.batch_size):
                infer(images).numpy()

        def stage():
            out = Path(tmp) / "features"
            (out / "progress.json").unlink(missing_ok=True)  # a fresh pass every time
            plan = FeaturePass(work_dir=out, fingerprint="bench", input_size=args.input_size, batch_size=args.batch_size,
                               feature_dim=int(np.prod(trunk.output.shape[1:])), chunk_rows=4 * args.batch_size)
            extract_features(lambda images, margins: infer(images).numpy(), Crops(paths, np.full(len(paths), np.nan)),
                             plan, show_progress=False)

        rates = best_rates(len(paths), {"model": model_only, "pipeline": pipeline, "stage": stage}, args.repeats)
        model_rate, pipeline_rate, stage_rate = rates["model"], rates["pipeline"], rates["stage"]

    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"device {device} (load average {os.getloadavg()[0]:.1f}), precision {policy}, "
          f"{args.images} images {args.input_size}px, "
          f"widths {args.conv_widths}, batch {args.batch_size}, best of {args.repeats}")
    print(f"model on pre-decoded tensors  {model_rate:9.1f} images/s")
    print(f"pipeline (read+decode+model)  {pipeline_rate:9.1f} images/s   "
          f"ratio {pipeline_rate / model_rate:.2f} (goal >= 0.9)")
    print(f"stage (pipeline+memmap+chunks){stage_rate:9.1f} images/s   ratio {stage_rate / model_rate:.2f}")


if __name__ == "__main__":
    main()
