"""Gender accuracy of published models on the shared FairFace sample, to check their framing against
the issue's figures (measured with the original code on 2,000 FairFace faces: dlib/Cydral 83.6%,
Levi-Hassner 74.4%; Black women 73.7% and 49.6%).

    python bench/published_fairface_accuracy.py [--models dlib_cydral levi_hassner] [--faces 2000]
                                                [--weights ~/.cache/face-bias-study/published/weights]

The first N faces of the sample's label file, each whole as the face box (a ready crop, as the audit
feeds FairFace's faces), and, for comparison, inside the box OpenCV's SSD finds (largest; where it
finds one on the photo). Prints accuracy with a 95% Wilson interval, overall and for Black women.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.backbones import cards, published  # noqa: E402
from stages.lib.faces.detect import SsdDetector  # noqa: E402
from stages.lib.faces.geometry import largest_first  # noqa: E402

BATCH = 100


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    centre, spread = (hits + z * z / 2) / (n + z * z), z * math.sqrt(hits * (n - hits) / n + z * z / 4) / (n + z * z)
    return centre - spread, centre + spread


def line(label: str, correct: np.ndarray) -> str:
    low, high = wilson(int(correct.sum()), len(correct))
    return f"{label:<34} {100 * correct.mean():5.1f}% [{100 * low:.1f}, {100 * high:.1f}]  n={len(correct)}"


def p_female(model, photos: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict(photos[i:i + BATCH], boxes[i:i + BATCH]).p_female
                           for i in range(0, len(photos), BATCH)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dlib_cydral", "levi_hassner"])
    parser.add_argument("--faces", type=int, default=2000)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--weights", type=Path, default=Path.home() / ".cache" / "face-bias-study" / "published" / "weights")
    args = parser.parse_args()
    folder = args.shared / "fairface-sample"
    with (folder / "fairface_label_val.csv").open() as labels:
        rows = list(csv.DictReader(labels))[:args.faces]
    photos = [cv2.imread(str(folder / row["file"])) for row in rows]
    female = np.array([row["gender"] == "Female" for row in rows])
    black_women = female & np.array([row["race"] == "Black" for row in rows])
    whole = cards.whole_image_boxes(photos)
    ssd = SsdDetector(args.weights / "ssd_face.pb", args.weights / "ssd_face_config.pbtxt")
    found = [largest_first(ssd.detect(photo)) for photo in photos]
    has_box = np.array([bool(faces) for faces in found])
    ssd_boxes = np.array([faces[0].box for faces in found if faces], dtype=float).reshape(-1, 4)
    print(f"{len(rows)} FairFace faces; the SSD finds a face on {100 * has_box.mean():.1f}% of them")
    for name in args.models:
        model = published.load(name, args.weights)
        correct = (p_female(model, photos, whole) >= 0.5) == female
        print(line(f"{name} whole photo", correct))
        print(line(f"{name} whole photo, Black women", correct[black_women]))
        kept = [photo for photo, keep in zip(photos, has_box) if keep]
        in_box = (p_female(model, kept, ssd_boxes) >= 0.5) == female[has_box]
        print(line(f"{name} SSD box (where found)", in_box))
    return 0


if __name__ == "__main__":
    sys.exit(main())
