"""The `face_api` port's faces/s against the original face-api.js' (node, tfjs' pure-JS cpu backend),
on the same faces in one run (bench/face_api_reference.py's list: 36 real faces, 6 with odd boxes).

    python bench/bench_face_api.py --weights data/raw/weights [--node-modules DIR] [--shared ../shared]

The original: `extractFaceTensors` + `predictAgeAndGender` per face, timed inside node after a warm-up
(model loading and image decoding excluded), on tfjs' pure-JS cpu backend (the fidelity fixture's) and
its wasm backend (the fastest that installs offline; tfjs-node's native binary needs a download). The port: `FaceApi.predict` on photos decoded once, timed
per face (one face a call, like the original) and as one call over all faces (how the audit runs it),
each the best of `--repeats` after a warm-up. Prints faces/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from face_api_reference import ROOT, face_list, run_original  # noqa: E402

from stages.lib.backbones.face_api import load  # noqa: E402


def best_seconds(run, repeats: int) -> float:
    run()  # warm-up: graph tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="the folder holding face_api_age_gender.bin")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--node-modules", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    faces = face_list(args.shared)
    photos = [cv2.imread(str(args.shared / "datasets" / photo)) for photo, _ in faces]
    boxes = np.array([box or (0.0, 0.0, photo.shape[1], photo.shape[0]) for (_, box), photo in zip(faces, photos)])
    original = {}
    for backend in ("cpu", "wasm"):
        with tempfile.TemporaryDirectory(prefix="face-api-") as work:
            seconds = run_original(args.shared, args.node_modules, Path(work), backend)["predict_seconds"]
        original[backend] = len(faces) / seconds
    model = load(args.weights)
    single = len(faces) / best_seconds(lambda: [model.predict([p], b[None]) for p, b in zip(photos, boxes)], args.repeats)
    batched = len(faces) / best_seconds(lambda: model.predict(photos, boxes), args.repeats)
    print(f"{len(faces)} faces, faces/s: face-api.js under node, tfjs cpu {original['cpu']:.1f}, "
          f"tfjs wasm {original['wasm']:.1f}; the port, one face a call {single:.1f} "
          f"({single / original['wasm']:.1f}x wasm's), all in one call {batched:.1f} ({batched / original['wasm']:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
