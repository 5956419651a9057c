"""The identity pass (dlib) in worker processes: the same descriptors, bit for bit, as in one process."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from stages.lib.datasets.synthetic import Face, draw_face

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None,
    reason='the dlib extra is not installed (pip install -e ".[dlib]")')

SIZE = 224


def drawn_faces(count: int) -> list[np.ndarray]:
    """Synthetic faces of both genders and several ages and races, RGB, as the crop stage writes them."""
    faces = [Face(i, age, gender, race, age) for i, (age, gender, race) in enumerate(
        [(25, "male", "white"), (40, "female", "black"), (60, "male", "asian"), (8, "female", "indian"),
         (33, "male", "others"), (71, "female", "white")][:count])]
    return [cv2.cvtColor(draw_face(face, SIZE, seed=7)[0], cv2.COLOR_BGR2RGB) for face in faces]


def test_two_workers_give_the_one_process_descriptors():
    from stages.lib.backbones.dlib_resnet import PooledEmbedder, load_dlib_models, margin_embedder

    images = np.stack(drawn_faces(6))
    margins = np.array([0.4, np.nan, 0.4, 0.25, np.nan, 0.4])  # two framings: detected and ready-made crops
    alone = margin_embedder(load_dlib_models())(images, margins)
    pooled = PooledEmbedder(2)
    try:
        together = pooled(images, margins)
        reversed_order = pooled(images[::-1], margins[::-1])
        empty = pooled(images[:0], margins[:0])
    finally:
        pooled.close()
    assert together.dtype == np.float32 and together.shape == (6, 128)
    assert np.array_equal(together, alone)
    assert np.array_equal(reversed_order, alone[::-1])  # rows stay with their faces across the chunks
    assert empty.shape == (0, 128)
    assert len({row.tobytes() for row in alone}) == 6  # six different faces: equality is not trivial
