"""The crop stage's detection-rate pass (crop.detect_precropped): every ready crop shown to each
detector, recording whether it finds a face. Before and after on the same real faces, interleaved
(A, B, A, B rounds, best of each) so that a busy machine slows both alike:

  before  the photo decoded for the crop, then decoded again for the detectors (the old RowCropper)
  after   decoded once, the same pixels cropped and shown to the detectors (faces/crop.RowCropper)

It prints each detector's seconds per face, the pass's ratio after/before, and checks that every
face's `found_by_<detector>` count, hence every rate, is identical. It also measures, without
adopting it, YuNet on the crop shrunk to a smaller side: faster, but it changes some faces' answers,
so the rates would not be the same.

    python bench/bench_crop_detect.py --faces 500 --weights ~/.cache/face-bias-study/weights
        [--yunet /work/shared/models/face_detection_yunet.onnx]

Faces: half UTKFace aligned chips, half FairFace crops, from ../shared/datasets (read-only). The
SSD's files (ssd_face.pb, ssd_face_config.pbtxt) are read from --weights: `python -m stages.download
--only ssd_face ssd_face_config` puts them in data/raw/weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.faces.crop import CropSettings, CropTask, RowCropper, crop_row  # noqa: E402
from stages.lib.faces.images import read_image  # noqa: E402

SHARED = ROOT.parent / "shared"
DETECTORS = ("yunet", "haar", "ssd")


def ready_crops(count: int) -> list[Path]:
    utk = sorted((SHARED / "datasets" / "utkface-aligned-sample").glob("*.jpg"))
    fair = sorted((SHARED / "datasets" / "fairface-sample" / "val").glob("*.jpg"))
    if not utk or not fair:
        raise SystemExit(f"bench_crop_detect: no real faces under {SHARED / 'datasets'}")
    return utk[:count // 2] + fair[:count - count // 2]


def before(cropper: RowCropper, task: CropTask) -> dict[str, int]:
    """The old pass: crop (decoding the photo), then decode it again for the detectors."""
    crop_row(task, None, 0.0, cropper.settings.size)
    image = read_image(task.source, upright=True)
    return {name: len(cropper.detector(name).detect(image)) for name in cropper.settings.detect_precropped}


def after(cropper: RowCropper, task: CropTask) -> dict[str, int]:
    return cropper(task).found_by


def timed(run, cropper: RowCropper, tasks: list[CropTask]) -> tuple[float, list[dict[str, int]]]:
    start = time.perf_counter()
    found = [run(cropper, task) for task in tasks]
    return time.perf_counter() - start, found


def per_detector(cropper: RowCropper, images: list[np.ndarray]) -> dict[str, float]:
    """Seconds per face of each detector alone, on decoded pixels."""
    seconds = {}
    for name in cropper.settings.detect_precropped:
        start = time.perf_counter()
        for image in images:
            cropper.detector(name).detect(image)
        seconds[name] = (time.perf_counter() - start) / len(images)
    return seconds


def smaller_yunet(cropper: RowCropper, images: list[np.ndarray], side: int) -> tuple[float, int]:
    """(seconds per face, faces whose found-or-not changes) for YuNet on the crop shrunk to `side`."""
    yunet = cropper.detector("yunet")
    start = time.perf_counter()
    small = [len(yunet.detect(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))) > 0 for image in images]
    seconds = (time.perf_counter() - start) / len(images)
    full = [len(yunet.detect(image)) > 0 for image in images]
    return seconds, sum(a != b for a, b in zip(small, full))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of before and after (best kept)")
    parser.add_argument("--weights", type=Path, required=True, help="folder holding ssd_face.pb and ssd_face_config.pbtxt")
    parser.add_argument("--yunet", type=Path, default=SHARED / "models" / "face_detection_yunet.onnx")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)   # as in the crop stage's workers: one process per core
    settings = CropSettings(detector="yunet", margin=0.4, size=224, min_score=0.6, yunet_model=args.yunet,
                            ssd_files=(args.weights / "ssd_face.pb", args.weights / "ssd_face_config.pbtxt"),
                            detect_precropped=DETECTORS)
    cropper = RowCropper(settings)
    paths = ready_crops(args.faces)
    with tempfile.TemporaryDirectory() as out:
        tasks = [CropTask(i, str(p), f"{out}/{i}.jpg", "precropped", None) for i, p in enumerate(paths)]
        timings = {"before": [], "after": []}
        answers = {}
        for _ in range(args.rounds):
            for name, run in (("before", before), ("after", after)):
                seconds, answers[name] = timed(run, cropper, tasks)
                timings[name].append(seconds)
    images = [read_image(str(p), upright=True) for p in paths]
    best = {name: min(values) for name, values in timings.items()}
    print(f"{len(paths)} ready crops ({len(paths) // 2} UTKFace, {len(paths) - len(paths) // 2} FairFace), "
          f"one process, one OpenCV thread, best of {args.rounds} interleaved rounds")
    for name, seconds in per_detector(cropper, images).items():
        print(f"  {name:<6} {seconds * 1000:7.1f} ms/face")
    for name in ("before", "after"):
        print(f"  pass {name:<6} {best[name]:7.1f} s  ({best[name] / len(paths) * 1000:.1f} ms/face)")
    print(f"ratio after/before: {best['after'] / best['before']:.3f}")
    identical = answers["before"] == answers["after"]
    for name in DETECTORS:
        rate = np.mean([found[name] > 0 for found in answers["after"]])
        print(f"  found by {name}: {rate:.2%}")
    print(f"every face's found_by identical (hence every rate): {identical}")
    for side in (160, 128):
        seconds, changed = smaller_yunet(cropper, images, side)
        print(f"  not adopted: YuNet on the crop shrunk to {side} px, {seconds * 1000:.1f} ms/face, "
              f"{changed} of {len(images)} faces change found-or-not")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
