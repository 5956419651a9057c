"""The measurement table of a crops manifest: face squares, given landmarks moved into the crop, the
face's size in its source photo, and the reasons merged."""

import math

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.schema import MEASUREMENT_COLUMNS
from stages.lib.faces.measurements import (NO_SOURCE_SIZE, face_size, faces_to_measure, landmarks_in_crop,
                                           measurement_table, problem_counts)


def crops():
    return pd.DataFrame({
        "id": ["a/1", "a/2", "b/3"],
        "crop_path": ["c/1.jpg", "c/2.jpg", "c/3.jpg"],
        "detector": ["dataset_box", "yunet", "precropped"],
        "box": [[10.0, 20.0, 30.0, 40.0], None, None],
        "crop_box": [[-13, 4, 72, 72], [0, 0, 90, 90], [0, 0, 200, 200]],
        "landmarks": [[[10.0, 20.0], [46.0, 58.0]], None, None],
    })


def test_given_landmarks_move_into_the_crops_pixels():
    moved = landmarks_in_crop([[10.0, 20.0], [46.0, 58.0]], [-13, 4, 72, 72], 36)
    np.testing.assert_allclose(moved, [[11.5, 8.0], [29.5, 27.0]])
    assert landmarks_in_crop(None, [0, 0, 10, 10], 36) is None


def test_each_route_gets_its_face_square_and_landmarks():
    faces = faces_to_measure(crops(), margin=0.4, crop_size=36)
    assert [face.margin for face in faces[:2]] == [0.4, 0.4] and math.isnan(faces[2].margin)
    assert faces[0].landmarks is not None and faces[1].landmarks is None and faces[2].landmarks is None


def test_face_size_is_the_box_height_in_the_source_photo():
    assert face_size([10, 20, 30, 40], [-13, 4, 72, 72], "dataset_box", 0.4) == 40.0
    assert face_size(None, [0, 0, 90, 90], "yunet", 0.4) == pytest.approx(50.0)
    assert face_size(None, [0, 0, 200, 200], "precropped", 0.4) is None


def test_the_table_follows_the_contract_and_joins_reasons():
    rows = [{column: 1.0 for column in MEASUREMENT_COLUMNS if column not in ("id", "face_size", "problem")}
            | {"problem": None} for _ in range(3)]
    rows[2]["problem"] = "grey-scale photo: no hue"
    table = measurement_table(crops(), rows, 0.4)
    assert list(table.columns) == MEASUREMENT_COLUMNS
    assert list(table["id"]) == ["a/1", "a/2", "b/3"]
    assert table["problem"].tolist() == [None, None, f"grey-scale photo: no hue; {NO_SOURCE_SIZE}"]
    assert table["face_size"].tolist()[:2] == [40.0, pytest.approx(50.0)] and np.isnan(table["face_size"][2])
    assert problem_counts(table) == {"grey-scale photo: no hue": 1, NO_SOURCE_SIZE: 1}
