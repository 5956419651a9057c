"""`dlib_cydral` (backbones/dlib_cydral.py) without its weights: the package's dlib rectangle, the chips
cut from the RGB photo at 64 and 32 px, the nets' input, and the decoding of their outputs; dlib and
the ONNX nets replaced by recording doubles (fidelity to the package on real faces:
test_published_fidelity.py)."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from stages.lib.backbones.dlib_cydral import (AGE_CHIP, CHIP_PADDING, FILES, GENDER_CHIP, INSTALL_HINT, DlibCydral,
                                              dlib_rectangle, expected_age, network_input)


def test_dlib_rectangles_are_inclusive_and_a_whole_photo_is_the_packages_predict_face():
    assert dlib_rectangle((0, 0, 224, 200)) == (0, 0, 223, 199)
    assert dlib_rectangle((10.4, 20.6, 50, 60)) == (10, 21, 59, 80)


def test_dlib_input_is_rgb_nchw_mean_subtracted_over_256_and_age_is_the_weighted_expectation():
    chips = np.zeros((1, 2, 2, 3), np.uint8)
    chips[0, 0, 0] = (255, 0, 128)
    values = network_input(chips)
    assert values.shape == (1, 3, 2, 2) and values.dtype == np.float32
    np.testing.assert_allclose(values[0, :, 0, 0], (np.array([255, 0, 128]) - [122.782, 117.001, 104.298]) / 256,
                               atol=1e-5)
    probs = np.zeros((2, 81))
    probs[0, 0], probs[1, 30:32] = 1, 0.5
    np.testing.assert_allclose(expected_age(probs), [0.25, 30.5])


class FakeDlib:
    """dlib's calls as the entry makes them, recorded; a chip is the photo's top-left `size` square."""

    def __init__(self):
        self.calls = []

    def rectangle(self, *corners):
        self.calls.append(("rectangle", corners))
        return corners

    def get_face_chip_details(self, shape, size, padding):
        self.calls.append(("details", size, padding))
        return shape, size

    def extract_image_chip(self, image, details):
        (photo, _), size = details
        assert photo is image
        return image[:size, :size]


class FakeSession:
    """An ONNX session answering fixed outputs and keeping the input it was given."""

    def __init__(self, output):
        self.output, self.seen = np.asarray(output, dtype=np.float32), []

    def get_inputs(self):
        return [SimpleNamespace(name="input")]

    def run(self, names, feeds):
        assert names is None and list(feeds) == ["input"]
        self.seen.append(feeds["input"])
        return [self.output]


def model(age_probs, gender_probs) -> tuple[DlibCydral, FakeDlib]:
    entry, fake = DlibCydral.__new__(DlibCydral), FakeDlib()
    entry._dlib = fake
    entry._landmarks = lambda rgb, rectangle: (rgb, rectangle)
    entry._age, entry._gender = FakeSession(age_probs), FakeSession(gender_probs)
    return entry, fake


def test_each_net_gets_its_own_chip_from_the_rgb_photo_and_its_outputs_are_decoded():
    photo = np.zeros((80, 70, 3), np.uint8)
    photo[..., 0], photo[..., 2] = 200, 10                        # BGR: blue 200, red 10
    age_probs = np.zeros((2, 81))
    age_probs[0, 40], age_probs[1, [0, 80]] = 1.0, 0.5
    entry, fake = model(age_probs, [[0.9, 0.1], [0.2, 0.8]])       # [female, male]
    found = entry.predict([photo, photo], np.array([[5, 6, 40, 50], [0, 0, 70, 80]]))
    np.testing.assert_allclose(found.age, [40.0, 40.125])
    np.testing.assert_allclose(found.p_female, [0.9, 0.2])
    assert found.band_probs is None
    assert fake.calls[:3] == [("rectangle", (5, 6, 44, 55)), ("details", AGE_CHIP, CHIP_PADDING),
                              ("details", GENDER_CHIP, CHIP_PADDING)]
    assert fake.calls[3] == ("rectangle", (0, 0, 69, 79))         # the whole photo: the package's predict_face
    [age_input], [gender_input] = entry._age.seen, entry._gender.seen
    assert age_input.shape == (2, 3, AGE_CHIP, AGE_CHIP) and gender_input.shape == (2, 3, GENDER_CHIP, GENDER_CHIP)
    np.testing.assert_allclose(age_input[0, :, 0, 0], (np.array([10, 0, 200]) - [122.782, 117.001, 104.298]) / 256,
                               atol=1e-5)                           # channel 0 is red: the chip is RGB


def test_no_photos_give_empty_predictions_without_running_the_nets():
    entry, fake = model(np.zeros((0, 81)), np.zeros((0, 2)))
    found = entry.predict([], np.empty((0, 4)))
    assert found.age.shape == found.p_female.shape == (0,) and fake.calls == [] and entry._age.seen == []


def test_missing_weights_are_named_before_the_missing_runtime(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)                 # as without the `audit` extra
    with pytest.raises(FileNotFoundError, match="dlib_cydral_age.onnx not found"):
        DlibCydral(tmp_path)
    for file_name in FILES.values():
        (tmp_path / file_name).write_bytes(b"x")
    with pytest.raises(ImportError) as caught:
        DlibCydral(tmp_path)
    assert str(caught.value) == INSTALL_HINT and "[audit]" in INSTALL_HINT
