"""Run the ORIGINAL face-api.js under node on a fixed list of real faces and store its outputs as the
fixture the `face_api` port is tested against (tests/fixtures/face_api_reference.json).

    python bench/face_api_reference.py [--shared ../shared] [--node-modules DIR] [--out FILE]

Without --node-modules, `npm install`s @vladmandic/face-api@1.7.15, @tensorflow/tfjs@4.22.0 and
@tensorflow/tfjs-backend-wasm@4.22.0 (pure JS/wasm from the npm registry; face-api's node-wasm build
needs the latter, its pure-JS cpu backend runs) into a temporary folder. The node side is
bench/face_api_reference.cjs; it runs the library's model files (the tarball's `model/`).

Faces: 15 UTKFace chips and 15 FairFace faces (every k-th of the sorted file names), each with the whole
image as the face box (--precropped), plus 6 of them again with non-square, fractional boxes, two past
the border (face-api.js clips, floors and pads those). Photos are decoded once here (cv2) and handed to
node as raw RGB bytes, so both sides see the same pixels. Also stored: the 112x112 network input's sum
and a few pixels per face, and tfjs' resize of a small non-square random image (see `RESIZE_*`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = ROOT / "bench" / "face_api_reference.cjs"
FIXTURE = ROOT / "tests" / "fixtures" / "face_api_reference.json"
NPM_PACKAGES = ("@vladmandic/face-api@1.7.15", "@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0")
PER_DATASET = 15
EXTRA_BOXES = ((12.7, 5.2, 150.4, 181.9), (-8.5, 20.3, 120.0, 90.6), (30.0, 0.0, 250.0, 150.0),
               (40.2, 60.9, 101.3, 60.2), (0.0, 0.0, 57.5, 199.0), (100.5, 100.5, 150.0, 150.0))
PIXELS = ((0, 0, 0), (0, 111, 1), (111, 0, 2), (111, 111, 0), (56, 56, 1), (20, 90, 2), (90, 20, 0),
          (33, 77, 1), (77, 33, 2), (1, 55, 0), (55, 1, 1), (110, 64, 2))
RESIZE_SHAPE, RESIZE_SMALL, RESIZE_STEP = (23, 30), (9, 13), 5  # non-square: padToSquare pads 3 + 4 rows


def face_list(shared: Path) -> list[tuple[str, tuple[float, ...] | None]]:
    """(photo path relative to shared/datasets, box or None for the whole image), deterministic."""
    datasets = shared / "datasets"
    utk = sorted(p.name for p in (datasets / "utkface-aligned-sample").glob("*.jpg"))
    fair = sorted((p.name for p in (datasets / "fairface-sample" / "val").glob("*.jpg")), key=lambda n: int(n[:-4]))
    photos = [f"utkface-aligned-sample/{name}" for name in utk[:: len(utk) // PER_DATASET][:PER_DATASET]]
    photos += [f"fairface-sample/val/{name}" for name in fair[:: len(fair) // PER_DATASET][:PER_DATASET]]
    return [(photo, None) for photo in photos] + [(photos[i * 5], box) for i, box in enumerate(EXTRA_BOXES)]


def resize_image() -> np.ndarray:
    return np.random.default_rng(19).integers(0, 256, size=(*RESIZE_SHAPE, 3), dtype=np.uint8)


def write_jobs(shared: Path, folder: Path, model_dir: Path) -> Path:
    faces = []
    for index, (photo, box) in enumerate(face_list(shared)):
        rgb = np.ascontiguousarray(cv2.imread(str(shared / "datasets" / photo))[..., ::-1])
        raw = folder / f"{index}.rgb"
        raw.write_bytes(rgb.tobytes())
        height, width = rgb.shape[:2]
        faces.append({"photo": photo, "raw": str(raw), "height": height, "width": width,
                      "box": list(box) if box else [0.0, 0.0, float(width), float(height)]})
    image = resize_image()
    jobs = {"model_dir": str(model_dir), "faces": faces, "pixels": [list(p) for p in PIXELS],
            "resize": {"image": image.ravel().tolist(), "height": RESIZE_SHAPE[0], "width": RESIZE_SHAPE[1],
                       "small": list(RESIZE_SMALL)}}
    path = folder / "jobs.json"
    path.write_text(json.dumps(jobs))
    return path


def npm_install(folder: Path) -> Path:
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(folder), *NPM_PACKAGES],
                   check=True)
    return folder / "node_modules"


def run_original(shared: Path, node_modules: Path | None, work: Path, backend: str = "cpu") -> dict:
    """face-api.js' outputs on `face_list(shared)` with tfjs' `backend` (the node script's JSON)."""
    modules = node_modules or npm_install(work / "npm")
    jobs = write_jobs(shared, work, modules / "@vladmandic" / "face-api" / "model")
    out = work / "out.json"
    subprocess.run(["node", str(NODE_SCRIPT), str(modules), str(jobs), str(out), backend], check=True)
    return json.loads(out.read_text())


def fixture(result: dict) -> dict:
    """The committed fixture: per face, its outputs and input checks; tfjs' resize of a small image."""
    batch = np.asarray(result["resize"]["to_batch_tensor_112"], dtype=np.float32).reshape(112, 112, 3)
    return {
        "generated_by": "bench/face_api_reference.py (node, the original face-api.js)",
        "face_api": result["face_api"], "tfjs": result["tfjs"], "backend": result["backend"],
        "pixels": [list(p) for p in PIXELS],
        "faces": [{key: face[key] for key in ("photo", "box", "age", "p_female", "input_sum", "input_pixels")}
                  for face in result["faces"]],
        "resize": {"seed": 19, "shape": list(RESIZE_SHAPE), "image": resize_image().ravel().tolist(),
                   "to_batch_tensor_112_step": RESIZE_STEP,
                   "to_batch_tensor_112": batch[::RESIZE_STEP, ::RESIZE_STEP].ravel().tolist(),
                   "to_batch_tensor_112_sum": float(batch.astype(np.float64).sum()),
                   "small_shape": list(RESIZE_SMALL), "resize_bilinear_small": result["resize"]["resize_bilinear_small"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--node-modules", type=Path, help="a node_modules holding the npm packages above")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="face-api-") as work:
        result = run_original(args.shared, args.node_modules, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture(result), indent=1) + "\n")
    print(f"{args.out}: {len(result['faces'])} faces, face-api {result['face_api']}, tfjs {result['tfjs']} "
          f"({result['backend']}), {len(result['faces']) / result['predict_seconds']:.1f} faces/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
