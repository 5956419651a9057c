"""One face's measurements, and a reason (never a made-up value) for every face that cannot be measured."""

import math

import cv2
import numpy as np
import pytest

from stages.lib.datasets.synthetic import SKIN_LCH, Face, draw_face
from stages.lib.faces.geometry import cut_square, square_region
from stages.lib.faces.landmarks import FaceSquare
from stages.lib.faces.measure import MEASURED, FaceMeasurer, FaceToMeasure, MeasureSettings, measure_face, measure_faces

SETTINGS = MeasureSettings()
MARGIN, SIZE = 0.4, 64


def drawn_crop(face: Face):
    """A drawn face cut as the crop stage cuts it (box + margin, SIZE px): RGB crop and its landmarks."""
    image, box, points = draw_face(face, 96, 0)
    region = square_region(box, MARGIN)
    crop = cv2.cvtColor(cut_square(image, region, SIZE), cv2.COLOR_BGR2RGB)
    return crop, (np.array(points) - (region.x, region.y)) * SIZE / region.side


def measure(crop, points):
    return measure_face(crop, FaceSquare.central(SIZE, MARGIN), points, settings=SETTINGS, missing_landmarks="none")


def test_a_drawn_face_measures_close_to_the_colour_it_was_drawn_in():
    for race in ("white", "black", "indian"):
        row = measure(*drawn_crop(Face(1, 30, "female", race, 30)))
        lightness, _, hue = SKIN_LCH[race]
        assert row["problem"] is None
        assert row["skin_lightness"] == pytest.approx(lightness, abs=7)
        assert row["skin_hue"] == pytest.approx(hue, abs=7)
        assert abs(row["yaw"]) < 5 and abs(row["roll"]) < 5
        assert row["skin_pixels"] >= SETTINGS.min_skin_pixels


def test_darker_drawn_skin_measures_darker():
    light = measure(*drawn_crop(Face(2, 30, "male", "asian", 30, skin_offset=(8.0, 0.0))))
    dark = measure(*drawn_crop(Face(2, 30, "male", "asian", 30, skin_offset=(-8.0, 0.0))))
    assert light["skin_lightness"] - dark["skin_lightness"] == pytest.approx(16, abs=4)


@pytest.mark.parametrize("value, reason", [(0, "all-dark crop"), (255, "all-white crop")])
def test_an_all_dark_or_white_crop_keeps_its_exposure_and_gets_a_reason(value, reason):
    crop, points = drawn_crop(Face(3, 30, "female", "white", 30))
    row = measure(np.full_like(crop, value), points)
    assert row["problem"] == reason
    assert row["clipped_dark" if value == 0 else "clipped_bright"] == 1.0
    assert all(row[column] is None for column in ("skin_lightness", "skin_hue", "yaw", "contrast"))


def test_a_greyscale_photo_keeps_its_lightness_and_has_no_hue():
    crop, points = drawn_crop(Face(4, 30, "male", "white", 30))
    grey = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    row = measure(grey, points)
    assert row["problem"] == "grey-scale photo: no hue"
    assert row["skin_hue"] is None and 0 < row["skin_lightness"] < 100


def test_no_landmarks_keeps_photo_quality_and_says_why():
    crop, _ = drawn_crop(Face(5, 30, "male", "white", 30))
    row = measure_face(crop, FaceSquare.central(SIZE, MARGIN), None, settings=SETTINGS, missing_landmarks="no dlib")
    assert row["problem"] == "no landmarks (no dlib)"
    assert row["skin_lightness"] is None and row["yaw"] is None and row["sharpness"] > 0


def test_a_tiny_skin_mask_gets_a_reason():
    crop, points = drawn_crop(Face(6, 30, "female", "white", 30))
    centre = points.mean(axis=0)
    row = measure(crop, centre + (points - centre) * 0.1)
    assert row["problem"] == f"skin mask below {SETTINGS.min_skin_pixels} pixels"
    assert row["skin_lightness"] is None and row["skin_pixels"] < SETTINGS.min_skin_pixels


def test_an_unreadable_crop_gets_a_reason(tmp_path):
    (tmp_path / "bad.jpg").write_text("not a photo")
    row = FaceMeasurer(SETTINGS)(FaceToMeasure(str(tmp_path / "bad.jpg"), MARGIN, None))
    assert row["problem"] == "unreadable photo (image_unreadable)"
    assert all(row[column] is None for column in MEASURED)


def test_two_workers_give_the_rows_of_one(tmp_path):
    faces = []
    for index in range(6):
        crop, points = drawn_crop(Face(index, 20 + 9 * index, "female", "asian", 20 + 9 * index))
        path = tmp_path / f"{index}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        faces.append(FaceToMeasure(str(path), MARGIN, points))
    faces.append(FaceToMeasure(str(tmp_path / "missing.jpg"), math.nan, None))
    one = measure_faces(faces, SETTINGS, workers=1, progress=False)
    two = measure_faces(faces, SETTINGS, workers=2, progress=False)
    assert one == two
    assert one[-1]["problem"] == "unreadable photo (image_missing)"


def test_predictions_gain_their_faces_measurements_by_photo_and_face():
    from stages.lib.faces.measure import PREDICT_FIELDS, predict_fields, with_measurements

    row = {column: 0.5 for column in MEASURED} | {"problem": "grey-scale photo: no hue"}
    measured = [{"photo": "a.jpg", "face": 2, **predict_fields(row), "problem": row["problem"]}]
    records = [{"photo": "a.jpg", "face": 1, "age": 30}, {"photo": "a.jpg", "face": 2, "age": 40}]
    merged = with_measurements(records, measured)
    assert merged[0]["skin_lightness"] is None and merged[0]["measure_problem"] is None
    assert merged[1]["exposure"] == {"clipped_dark": 0.5, "clipped_bright": 0.5}
    assert merged[1]["measure_problem"] == "grey-scale photo: no hue" and merged[1]["age"] == 40
    assert set(PREDICT_FIELDS) <= set(merged[1])


def test_each_detected_face_of_a_photo_is_measured_largest_first():
    from stages.lib.faces.geometry import Detection

    class TwoFaces:
        name = "fixed"

        def detect(self, image):
            return [Detection((5.0, 5.0, 20.0, 20.0), 0.9), Detection((40.0, 30.0, 40.0, 48.0), 0.8)]

    image, _, _ = draw_face(Face(7, 30, "male", "white", 30), 96, 0)
    rows = FaceMeasurer(SETTINGS).measure_photo(image, TwoFaces(), margin=MARGIN, size=SIZE)
    assert [(row["face"], row["w"]) for row in rows] == [(1, 40.0), (2, 20.0)]
    assert all(row["clipped_dark"] is not None for row in rows)


def test_drawn_faces_need_no_dlib_and_real_ones_say_it_is_missing(tmp_path, monkeypatch):
    from stages.lib.faces import measure as measure_module
    from stages.lib.faces.landmarks import LandmarksUnavailable

    def no_dlib():
        raise LandmarksUnavailable("dlib is not importable")

    monkeypatch.setattr(measure_module, "Landmarker", no_dlib)
    crop, points = drawn_crop(Face(8, 30, "female", "black", 30))
    path = tmp_path / "face.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    measurer = FaceMeasurer(SETTINGS)
    drawn = measurer(FaceToMeasure(str(path), MARGIN, points))
    real = measurer(FaceToMeasure(str(path), MARGIN, None))
    assert drawn["problem"] is None and drawn["skin_lightness"] is not None
    assert real["problem"] == "no landmarks (dlib is not importable)" and real["sharpness"] is not None
