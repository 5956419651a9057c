"""`stages.predict` over many photos: faces embedded in batches across photos give what one photo at a
time gives, in the same order, every photo accounted for."""

from __future__ import annotations

import cv2
import numpy as np

from stages.lib.backbones.registry import load
from stages.lib.faces.geometry import Detection
from stages.lib.heads.inference import Cutting, predict_photos
from stages.lib.heads.model import build_head
from tests.backbones.test_store import make_params

CROP_SIZE = 32  # = tests.test_features.BACKBONE's input_size


class FacesByWidth:
    """Two faces in wide photos, one in narrow ones, none in tiny ones: blocks mix 0, 1 and 2 faces."""

    name = "by_width"

    def detect(self, image):
        boxes = {160: [(10, 10, 20, 20), (60, 30, 50, 40)], 120: [(20, 20, 60, 60)]}.get(image.shape[1], [])
        return [Detection(tuple(map(float, box)), 0.9) for box in boxes]


def test_batched_predictions_equal_one_photo_at_a_time(tmp_path):
    params = make_params()
    spec, embed = load(params.backbone, params.seed, tmp_path / params.paths.weights)
    heads = {"age": build_head(spec.feature_dim, 16, 101, 0.5, name="age", seed=1),
             "gender": build_head(spec.feature_dim, 16, 2, 0.5, name="gender", seed=2)}
    rng = np.random.default_rng(0)
    paths = []
    for number, width in enumerate([160, 120, 40, 160, 120, 160, 40]):
        path = tmp_path / f"{number}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (120, width, 3), dtype=np.uint8))
        paths.append(path)
    paths.insert(3, tmp_path / "missing.jpg")
    one_by_one, found = predict_photos(paths, Cutting(FacesByWidth(), 0.4, CROP_SIZE), (spec, embed), heads,
                                       batch_size=1)
    batched, _ = predict_photos(paths, Cutting(FacesByWidth(), 0.4, CROP_SIZE), (spec, embed), heads, batch_size=3)
    unkept = predict_photos(paths, Cutting(FacesByWidth(), 0.4, CROP_SIZE), (spec, embed), heads, batch_size=3,
                            keep_found=False)[1]
    assert len(batched) == 3 * 2 + 2 * 1 + 2 + 1  # faces, plus one row per photo without a face or unreadable
    assert batched["photo"].tolist() == one_by_one["photo"].tolist()
    assert batched["photo"].drop_duplicates().tolist() == [str(path) for path in paths]
    np.testing.assert_allclose(batched["age"].astype(float), one_by_one["age"].astype(float), rtol=1e-4, equal_nan=True)
    np.testing.assert_allclose(batched["p_female"].astype(float), one_by_one["p_female"].astype(float), rtol=1e-4,
                               equal_nan=True)
    assert batched["problem"].fillna("").tolist() == one_by_one["problem"].fillna("").tolist()
    assert len(found) == len(paths) - 1 and unkept == {}
