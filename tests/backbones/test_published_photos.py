"""Photos through a published model (backbones/published_photos.py): one record per face, largest
first, every photo accounted for, and the plain-text table; a fake model and detector stand in."""

import cv2
import numpy as np

from stages.lib.backbones import cards, published
from stages.lib.backbones.published_photos import (RECORD_FIELDS, band_names, face_records, format_cards,
                                                   format_records, photo_boxes, predict_photos)
from stages.lib.faces.geometry import Detection

YEARS = cards.ModelCard(name="years", family="f", source="s", trained_on="t", in_sample={}, age_bands=None,
                            weights=("w1", "w2"))


def test_a_band_models_band_is_its_most_probable_one_else_the_age_falls_in_params_bands():
    levi = published.card("levi_hassner")
    probs = np.eye(8)[[4, 7]]
    predictions = cards.FacePredictions(np.full(2, np.nan), probs, np.array([0.2, 0.9]))
    assert band_names(levi, predictions, [0, 16]) == ["25-32", "60-100"]
    years = cards.FacePredictions(np.array([12.0, 40.5]), None, np.array([0.2, 0.9]))
    assert band_names(published.card("dlib_cydral"), years, [0, 16, 31]) == ["0-15", "31+"]


def test_face_records_round_the_box_and_values_and_call_half_female():
    predictions = cards.FacePredictions(np.array([33.333, np.nan]), None, np.array([0.5, 0.49996]))
    records = face_records(YEARS, predictions, np.array([[10.4, 20.6, 30.5, 40.0], [0, 0, 5, 5]]), [0, 16, 31])
    assert records[0] == {"face": 1, "x": 10, "y": 21, "w": 30, "h": 40, "age": 33.33, "age_band": "31+",
                          "gender": "female", "p_female": 0.5, "problem": None}
    assert (records[1]["face"], records[1]["age"], records[1]["age_band"], records[1]["gender"]) == (2, None, None, "male")


class Boxes:
    """A detector that finds the given boxes in any photo."""

    name = "fake"

    def __init__(self, *boxes):
        self.boxes = boxes

    def detect(self, image):
        return [Detection(box, score) for box, score in self.boxes]


class Recorder:
    card = YEARS

    def __init__(self):
        self.calls = []

    def predict(self, photos, boxes):
        self.calls.append((len(photos), np.asarray(boxes).tolist()))
        n = len(photos)
        return cards.FacePredictions(np.arange(20.0, 20.0 + n), None, np.full(n, 0.8))


def test_boxes_come_largest_first_or_whole_for_a_ready_crop():
    image = np.zeros((30, 40, 3), np.uint8)
    assert photo_boxes(image, None).tolist() == [[0, 0, 40, 30]]
    found = photo_boxes(image, Boxes(((1, 1, 5, 5), 0.9), ((2, 2, 10, 10), 0.5), ((3, 3, 5, 5), 0.95)))
    assert found.tolist() == [[2, 2, 10, 10], [3, 3, 5, 5], [1, 1, 5, 5]]
    assert photo_boxes(image, Boxes()).shape == (0, 4)


def test_every_photo_is_accounted_for_one_record_per_face(tmp_path):
    cv2.imwrite(str(tmp_path / "two.png"), np.zeros((30, 40, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    model = Recorder()
    detector = Boxes(((1, 1, 5, 5), 0.9), ((2, 2, 10, 10), 0.5))
    records = predict_photos(model, [tmp_path / "two.png", tmp_path / "broken.jpg", tmp_path / "gone.jpg"], detector,
                             [0, 16])
    two = str(tmp_path / "two.png")
    assert [(r["photo"], r["face"], r["w"], r["age"]) for r in records[:2]] == [(two, 1, 10, 20.0), (two, 2, 5, 21.0)]
    assert model.calls == [(2, [[2, 2, 10, 10], [1, 1, 5, 5]])]      # one call per photo, its faces largest first
    assert records[2]["problem"].startswith("image_") and records[3]["problem"].startswith("image_missing")
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
    empty = predict_photos(model, [tmp_path / "two.png"], Boxes(), [0, 16])
    assert empty == [dict.fromkeys(RECORD_FIELDS) | {"photo": two, "problem": "no_face: fake found no face"}]


def test_the_table_has_a_line_per_face_or_problem_and_shortens_long_paths():
    long = "/data/" + "x" * 50 + "/photo.jpg"
    blank = dict.fromkeys(RECORD_FIELDS)
    rows = [blank | {"photo": "a.jpg", "face": 1, "x": 1, "y": 2, "w": 3, "h": 4, "age": None, "age_band": "25-32",
                     "gender": "male", "p_female": 0.1234},
            blank | {"photo": long, "problem": "no_face: yunet found no face"}]
    header, face, problem = format_records(rows).splitlines()
    assert header.split() == ["photo", "face", "box", "(x,", "y,", "w,", "h)", "age", "band", "gender", "P(female)"]
    assert face.split() == ["a.jpg", "1", "1,", "2,", "3,", "4", "-", "25-32", "male", "0.12"]
    assert problem.startswith("..." + long[-37:]) and problem.endswith("   - no_face: yunet found no face")


def test_the_model_list_says_what_each_predicts():
    bands = published.card("levi_hassner")
    text = format_cards([YEARS, bands])
    assert "years\n  family:     f\n  source:     s\n  trained on: t\n  predicts:   age in years, P(female)\n" \
           "  gender:     the more probable class (female on a tie)\n" \
           "  age:        the softmax's expected value over its ages (the study's reading)\n  weights:    w1, w2" in text
    faceres = format_cards([published.card("faceres"), published.card("gear")])
    assert "gender:     male where P(male) >= 0.6" in faceres and "audited as: in-sample contrast only" in faceres
    assert "predicts:   age bands 0-2, 4-6, 8-12, 15-20, 25-32, 38-43, 48-53, 60-100, P(female)" in text
