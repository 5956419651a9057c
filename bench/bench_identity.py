"""The identity pass: dlib's own descriptor against dlib's network rebuilt in Keras, on the same faces, in one run.

    python bench/bench_identity.py [--faces 256] [--folder ../shared/datasets/utkface-aligned-sample]

Reads the first --faces photos of --folder (real UTKFace chips by default), resizes them to the identity
pass's 224 px and describes each face twice, from the same landmarks: with dlib's
`compute_face_descriptor` (dlib-bin: one thread, no BLAS) and with the pass's own embedder (dlib's
landmarks and chip, then the Keras network on every core, in batches of 64 as the features store feeds
them). Prints both rates (faces/s), their ratio, the load average (other work lowers both) and the
largest distance between the two descriptors of a face.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.backbones.dlib_resnet import (PRECROPPED_FACE_FRACTION, face_rect, load_dlib_models,  # noqa: E402
                                              margin_embedder, model_files)
from stages.lib.splitting.identity import IDENTITY_BATCH_SIZE, IDENTITY_INPUT_SIZE  # noqa: E402

DEFAULT_FOLDER = ROOT.parent / "shared" / "datasets" / "utkface-aligned-sample"


def load_faces(folder: Path, count: int) -> np.ndarray:
    paths = sorted(folder.glob("*.jpg"))[:count]
    if not paths:
        raise SystemExit(f"bench_identity: no .jpg photos in {folder}: pass --folder")
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]
    size = (IDENTITY_INPUT_SIZE, IDENTITY_INPUT_SIZE)
    return np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images])


def dlib_pass(images: np.ndarray) -> tuple[np.ndarray, float]:
    """(descriptors, wall s) of dlib's own compute_face_descriptor, one face at a time."""
    import dlib

    models = load_dlib_models()
    recognizer = dlib.face_recognition_model_v1(str(model_files()[0]))
    rect = models.rectangle(*face_rect(images.shape[1], PRECROPPED_FACE_FRACTION))
    start = time.perf_counter()
    rows = [np.asarray(recognizer.compute_face_descriptor(image, models.shape_predictor(image, rect), 0))
            for image in images]
    return np.stack(rows).astype(np.float32), time.perf_counter() - start


def keras_pass(images: np.ndarray) -> tuple[np.ndarray, float]:
    """(descriptors, wall s) of the identity pass's embedder over batches of the pass's size (warmed up first)."""
    embed = margin_embedder(load_dlib_models())
    margins = np.full(len(images), np.nan)
    embed(images[:IDENTITY_BATCH_SIZE], margins[:IDENTITY_BATCH_SIZE])   # builds TensorFlow's functions
    start = time.perf_counter()
    rows = [embed(images[i:i + IDENTITY_BATCH_SIZE], margins[i:i + IDENTITY_BATCH_SIZE])
            for i in range(0, len(images), IDENTITY_BATCH_SIZE)]
    return np.concatenate(rows), time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=256)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    images = load_faces(args.folder, args.faces)
    theirs, dlib_wall = dlib_pass(images)
    ours, keras_wall = keras_pass(images)
    print(f"{len(images)} faces from {args.folder}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"dlib compute_face_descriptor: {len(images) / dlib_wall:6.1f} faces/s")
    print(f"Keras rebuild (the pass):     {len(images) / keras_wall:6.1f} faces/s")
    print(f"ratio {dlib_wall / keras_wall:.2f}; largest distance between a face's two descriptors "
          f"{np.linalg.norm(ours - theirs, axis=1).max():.2e} (descriptor norms about "
          f"{np.linalg.norm(theirs, axis=1).mean():.2f})")


if __name__ == "__main__":
    main()
