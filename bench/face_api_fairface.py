"""The `face_api` port's gender accuracy on the FairFace sample in ../shared, overall and by race x gender:
the check that its framing is face-api.js' (the issue measured 83.2% on 2,000 FairFace faces with the
original). Each 224-px FairFace image (0.25 padding) is the face box, as `--precropped` takes it.

    python bench/face_api_fairface.py --weights data/raw/weights [--shared ../shared] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.backbones.face_api import load  # noqa: E402

CHUNK = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--limit", type=int, help="only the first N faces by file number")
    args = parser.parse_args(argv)
    folder = args.shared / "datasets" / "fairface-sample"
    with (folder / "fairface_label_val.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(Path(row["file"]).stem))[: args.limit]
    model, correct = load(args.weights), []
    for start in range(0, len(rows), CHUNK):
        photos = [cv2.imread(str(folder / row["file"])) for row in rows[start:start + CHUNK]]
        boxes = np.array([[0.0, 0.0, photo.shape[1], photo.shape[0]] for photo in photos])
        p_female = model.predict(photos, boxes).p_female
        correct += [(p > 0.5) == (row["gender"] == "Female") for p, row in zip(p_female, rows[start:start + CHUNK])]
    groups = defaultdict(list)
    for row, right in zip(rows, correct):
        groups[(row["race"], row["gender"])].append(right)
    print(f"face_api on {len(rows)} FairFace faces: gender accuracy {np.mean(correct):.1%}")
    for (race, gender), values in sorted(groups.items()):
        print(f"  {race:<16} {gender:<6} n={len(values):>4}  {np.mean(values):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
