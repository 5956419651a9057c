"""The measure stage's per-face work on real faces, in 1 and in N worker processes.

    python bench/bench_measure.py [--faces 500] [--workers 2] [--shared ../shared/datasets]

Takes the first --faces/2 photos of the shared UTKFace (aligned) and FairFace samples, resizes each to
a 224-pixel crop as the crop stage does for ready face crops (written to a temporary folder as JPEG),
then measures them as the stage does (`measure_faces`: decode, dlib's 68 landmarks from the face
square, skin colour, photo quality, pose) in one process and in --workers processes. Prints each rate
in faces/s, worker start-up included (the stage pays it too), the CPU seconds per wall second, the load
average (other work on the machine lowers the rates), the faces per CPU second (what N idle cores
multiply) and whether the rows are identical. Goal: >= 40
faces/s on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.core.timing import cpu_seconds  # noqa: E402
from stages.lib.faces.measure import FaceToMeasure, MeasureSettings, measure_faces  # noqa: E402

CROP_SIZE = 224
FOLDERS = ("utkface-aligned-sample", "fairface-sample/val")


def write_crops(shared: Path, count: int, out: Path) -> list[FaceToMeasure]:
    faces = []
    for folder in FOLDERS:
        photos = sorted((shared / folder).glob("*.jpg"))[:count // len(FOLDERS)]
        if not photos:
            raise SystemExit(f"bench_measure: no photos in {shared / folder}: pass --shared")
        for photo in photos:
            target = out / f"{len(faces)}.jpg"
            image = cv2.resize(cv2.imread(str(photo)), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            faces.append(FaceToMeasure(str(target), math.nan))
    return faces


def timed(faces: list[FaceToMeasure], workers: int) -> tuple[list[dict], float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    rows = measure_faces(faces, MeasureSettings(), workers=workers, progress=False)
    return rows, time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        faces = write_crops(args.shared, args.faces, Path(folder))
        one, wall_one, cpu_one = timed(faces, 1)
        many, wall_many, cpu_many = timed(faces, args.workers)
    print(f"{len(faces)} faces, {CROP_SIZE}-px crops, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, wall, cpu in (("1 process:  ", wall_one, cpu_one), (f"{args.workers} processes:", wall_many, cpu_many)):
        print(f"{label} {len(faces) / wall:6.1f} faces/s ({cpu / wall:.2f} CPU s per s; "
              f"{len(faces) / cpu:.1f} faces per CPU second)")
    print(f"rows identical: {one == many}; skin colour measured: {sum(r['skin_lightness'] is not None for r in one)}")


if __name__ == "__main__":
    main()
