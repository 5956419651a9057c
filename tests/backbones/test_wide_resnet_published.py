"""`wide_resnet_imdb` as a published model (backbones/wide_resnet_published.py): framed as the pipeline
frames faces (a 40% margin, squared, 224 px, RGB; a ready crop whole); on real faces where ../shared
and the weights are at hand."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.lib.backbones import cards, published
from stages.lib.backbones.wide_resnet_published import CROP_SIDE, framed_crop, is_whole_photo

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- wide_resnet_imdb, real faces
SHARED_UTKFACE = ROOT.parent / "shared" / "datasets" / "utkface-aligned-sample"


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_UTKFACE.is_dir(), reason=f"{SHARED_UTKFACE} absent: no real faces to test on")
def test_wide_resnet_imdb_frames_faces_as_the_pipeline_does(tmp_path, wide_resnet_weights):
    """Whole photos as the crop stage takes ready chips, boxes as it cuts detected faces (40%, 224 px):
    the entry's answers are the published outputs the backbone gives those crops."""
    from stages.lib.backbones.vgg_face import resize_uint8
    from stages.lib.backbones.wide_resnet import FEATURE_DIM, PUBLISHED_OUTPUTS, WEIGHTS_FILE
    from stages.lib.faces.geometry import Detection
    from stages.lib.heads.inference import photo_faces

    class Boxes:
        name = "boxes"

        def __init__(self, box):
            self.box = box

        def detect(self, image):
            return [Detection(self.box, 1.0)]

    (tmp_path / WEIGHTS_FILE).symlink_to(wide_resnet_weights)
    model = published.load("wide_resnet_imdb", tmp_path)
    embed = model._embed  # the backbone's own embedder, as the features pass builds it (one load of 196 MB)
    photos = [cv2.imread(str(path)) for path in sorted(SHARED_UTKFACE.glob("*.jpg"))[:12]]
    box = (50.0, 40.0, 100.0, 120.0)
    for boxes, detector, margin in ((cards.whole_image_boxes(photos), None, np.nan),
                                    (np.array([box] * len(photos)), Boxes(box), 0.4)):
        crops = [photo_faces(photo, detector, 0.0 if detector is None else 0.4, 224)[0].crop_rgb for photo in photos]
        rows = embed(resize_uint8(np.stack(crops), 224), np.full(len(crops), margin))
        outputs = rows[:, FEATURE_DIM:FEATURE_DIM + PUBLISHED_OUTPUTS]   # [features | published outputs | flatten]
        got = model.predict(photos, boxes)
        np.testing.assert_allclose(got.age, outputs[:, 2:] @ np.arange(101), atol=1e-3)
        np.testing.assert_allclose(got.p_female, outputs[:, 0], atol=1e-4)
    assert got.band_probs is None and not np.allclose(got.age, model.predict(photos, cards.whole_image_boxes(photos)).age)


def test_a_box_covering_the_photo_is_a_ready_crop():
    photo = np.zeros((100, 80, 3), np.uint8)
    assert is_whole_photo(photo, (0, 0, 80, 100)) and is_whole_photo(photo, (-2, -1, 90, 110))
    assert not is_whole_photo(photo, (0, 0, 80, 99)) and not is_whole_photo(photo, (1, 0, 80, 100))


def test_a_face_is_cut_with_a_40_percent_margin_squared_and_turned_rgb():
    photo = np.zeros((300, 300, 3), np.uint8)
    photo[80:170, 80:170] = (255, 0, 0)                            # blue in BGR: the box's 40%-grown square
    crop, margin = framed_crop(photo, (100, 100, 50, 50))          # 50 px box: a 90 px square at (80, 80)
    assert crop.shape == (CROP_SIDE, CROP_SIDE, 3) and margin == 0.4
    assert (crop == (0, 0, 255)).all()                             # all of it, and blue in RGB


def test_a_ready_crop_is_taken_whole_and_a_face_at_the_edge_is_padded_black():
    photo = np.full((50, 40, 3), 90, np.uint8)
    whole, margin = framed_crop(photo, (0, 0, 40, 50))
    assert np.isnan(margin) and whole[:, :20].mean() == 0 and whole[:, 30:-30].min() == 90   # squared about its centre
    edge, _ = framed_crop(photo, (0, 0, 20, 20))                   # grown past the top-left corner
    assert edge[0, 0].tolist() == [0, 0, 0] and edge[-1, -1].tolist() == [90, 90, 90]


def test_the_answers_are_read_from_the_published_outputs_between_the_features_and_the_flatten():
    """The backbone's embed row is [pooled features | P(female), P(male), P(age 0..100) | flatten_1]:
    the entry must read the middle part, not the row's tail."""
    from stages.lib.backbones.wide_resnet import AGE_CLASSES, FEATURE_DIM, FULL_DIM
    from stages.lib.backbones.wide_resnet_published import WideResnetImdb

    ages = np.zeros((2, AGE_CLASSES))
    ages[0, 30], ages[1, [20, 60]] = 1.0, 0.5
    outputs = np.hstack([[[0.8, 0.2], [0.1, 0.9]], ages])
    seen = {}

    def embed(crops, margins):
        seen.update(crops=crops, margins=margins)
        flatten = np.full((len(crops), FULL_DIM), 7.0)             # what a wrong slice would read
        return np.hstack([np.full((len(crops), FEATURE_DIM), 3.0), outputs, flatten]).astype(np.float32)

    entry = WideResnetImdb.__new__(WideResnetImdb)
    entry._embed = embed
    photo = np.zeros((100, 80, 3), np.uint8)
    found = entry.predict([photo, photo], np.array([[0, 0, 80, 100], [20, 20, 30, 30]]))
    np.testing.assert_allclose(found.age, [30.0, 40.0], atol=1e-5)
    np.testing.assert_allclose(found.p_female, [0.8, 0.1], atol=1e-6)
    assert found.band_probs is None and seen["crops"].shape == (2, CROP_SIDE, CROP_SIDE, 3)
    assert seen["crops"].dtype == np.uint8 and np.isnan(seen["margins"][0]) and seen["margins"][1] == 0.4
