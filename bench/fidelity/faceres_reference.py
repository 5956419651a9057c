"""Make the FaceRes fidelity fixture: the JS original of the graph (tfjs under node, the model files of
@vladmandic/human 3.3.6) on 24 real faces fed the authors' input tensors, stored in
tests/fixtures/fidelity/faceres.json for tests/backbones/test_faceres.py.

    python bench/fidelity/faceres_reference.py NODE_MODULES [--shared ../shared/datasets]

NODE_MODULES: a folder outside the project where `npm install @tensorflow/tfjs@4.22.0` ran. The model
files are the download stage's (`python -m stages.download --only faceres_graph faceres_weights`,
or the tests' cache). The faces: 12 FairFace (every 200th of the sample's label file) and 12 UTKFace
(every 333rd of the sorted names), each whole (a ready crop, as `--precropped` takes it); the input
tensor is stages/lib/backbones/faceres.net_input's, the authors' recipe. Stored per face: its input's
sum and four pixels (so the test sees the same input), the 100 age probabilities, P(male), the first
16 values and the sum of the pooled embedding.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from make_fixtures import chosen_faces  # noqa: E402
from stages.lib.backbones.faceres import GRAPH_FILE, WEIGHTS_FILE, net_input  # noqa: E402
from stages.lib.backbones.cards import whole_image_boxes  # noqa: E402
from stages.lib.faces.images import read_image  # noqa: E402
from tests.published_weights import CACHE  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "fidelity" / "faceres.json"
PIXELS = ((0, 0, 0), (57, 101, 1), (112, 112, 2), (223, 223, 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("node_modules", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--weights", type=Path, default=CACHE / "weights")
    args = parser.parse_args()
    names = chosen_faces(args.shared)
    names = names[:12] + names[15:27]
    photos = [read_image(str(args.shared / name), upright=True) for name in names]
    inputs = np.stack([net_input(photo, box) for photo, box in zip(photos, whole_image_boxes(photos))])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(args.weights / GRAPH_FILE, tmp / "faceres.json")
        shutil.copy(args.weights / WEIGHTS_FILE, tmp / "faceres.bin")
        inputs.astype("<f4").tofile(tmp / "inputs.f32")
        subprocess.run(["node", str(HERE / "faceres_reference.cjs"), str(args.node_modules), str(tmp),
                        str(tmp / "inputs.f32"), str(len(names)), str(tmp / "out.json")], check=True)
        result = json.loads((tmp / "out.json").read_text())
    faces = [{"photo": name, "input_sum": float(inputs[i].astype(np.float64).sum()),
              "input_pixels": [float(inputs[i][p]) for p in PIXELS],
              "age_probs": [float(f"{v:.7g}") for v in face["age_probs"]], "p_male": face["p_male"],
              "embedding_head": [float(f"{v:.7g}") for v in face["embedding_head"]],
              "embedding_sum": face["embedding_sum"]}
             for i, (name, face) in enumerate(zip(names, result["faces"]))]
    OUT.write_text(json.dumps({"made_by": "bench/fidelity/faceres_reference.py", "tfjs": result["tfjs"],
                               "backend": result["backend"], "pixels": PIXELS, "faces": faces}, indent=1) + "\n")
    print(f"{OUT}: {len(faces)} faces, {OUT.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
