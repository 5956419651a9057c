"""The optional dlib ResNet backbone: crop geometry and the missing-extra message always; embeddings
of real UTKFace faces when the dlib extra and ../shared are present (skipped, saying which, if not)."""

from __future__ import annotations

import importlib.util
import sys
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.lib.backbones import dlib_resnet
from stages.lib.backbones.dlib_resnet import (
    CHIP_SIZE,
    FEATURE_DIM,
    INSTALL_HINT,
    PRECROPPED_FACE_FRACTION,
    BackboneUnavailable,
    DlibEmbedder,
    crop_face_fraction,
    face_rect,
    load_dlib_models,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
UTKFACE = SHARED / "datasets" / "utkface-aligned-sample"
CROP_SIZE = 224
SAME_FACE = 0.4


# --------------------------------------------------------------------------------------------------
# Pure


@pytest.mark.parametrize("side, fraction, expected", [
    (224, 1.0, (0, 0, 223, 223)),
    (224, 0.5, (56, 56, 167, 167)),
    (224, 1 / 1.8, (50, 50, 173, 173)),  # margin 0.4: the face is 124 of 224 pixels
    (225, 0.5, (56, 56, 167, 167)),  # 112.5 rounds to 112 (to even); the odd pixel left over goes right
    (3, 0.01, (1, 1, 1, 1)),  # never empty
])
def test_face_rect_is_the_central_square_with_inclusive_corners(side, fraction, expected):
    assert face_rect(side, fraction) == expected
    left, top, right, bottom = expected
    assert right - left == bottom - top and left + right in (side - 1, side - 2)


@pytest.mark.parametrize("side, fraction", [(0, 0.5), (224, 0.0), (224, 1.2), (224, -0.5)])
def test_face_rect_refuses_impossible_geometry(side, fraction):
    with pytest.raises(ValueError):
        face_rect(side, fraction)


def test_face_fraction_follows_the_crop_convention():
    assert crop_face_fraction(0.4) == pytest.approx(1 / 1.8)
    assert crop_face_fraction(0.0) == 1.0
    assert crop_face_fraction(None) == PRECROPPED_FACE_FRACTION
    with pytest.raises(ValueError):
        crop_face_fraction(-0.1)


def test_missing_dlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(BackboneUnavailable) as raised:
        load_dlib_models()
    assert isinstance(raised.value, ImportError)
    assert INSTALL_HINT in str(raised.value)
    assert 'pip install -e ".[dlib]"  (dlib-bin and face_recognition_models)' in str(raised.value)


def test_missing_model_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(dlib_resnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneUnavailable, match="face_recognition_models is not installed"):
        dlib_resnet.model_files()


# --------------------------------------------------------------------------------------------------
# Real faces


def _extra_missing() -> str | None:
    if importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None:
        return 'the dlib extra is not installed (pip install -e ".[dlib]")'
    if not UTKFACE.is_dir():
        return f"real photos not found in {UTKFACE}"
    return None


real = pytest.mark.skipif(_extra_missing() is not None, reason=_extra_missing() or "")


def _adults_of_each_group(n: int = 8) -> list[np.ndarray]:
    """The first adult (20-60) of each race x gender, as the crop stage makes them: 224x224 RGB.

    Adults of different groups: different people, and far apart (babies crowd together).
    """
    chosen: dict[tuple[str, str], Path] = {}
    for path in sorted(UTKFACE.glob("*.jpg")):
        fields = path.name.split("_")
        if len(fields) == 4 and fields[2].isdigit() and 20 <= int(fields[0]) <= 60:
            chosen.setdefault((fields[1], fields[2]), path)
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in list(chosen.values())[:n]]
    return [cv2.resize(image, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA) for image in images]


@pytest.fixture(scope="module")
def embedder() -> DlibEmbedder:
    return DlibEmbedder(load_dlib_models(), crop_face_fraction(None))


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    return _adults_of_each_group()


@real
def test_embeddings_are_deterministic_finite_float32_rows(embedder, faces):
    first = embedder.embed(faces)
    assert CHIP_SIZE == 150 and first.shape == (len(faces), FEATURE_DIM) == (8, 128)
    assert first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embedder.embed(np.stack(faces)))


@real
def test_same_face_is_close_and_different_people_are_far(embedder, faces):
    shifted = [np.roll(face, 1, axis=1) for face in faces]  # one pixel to the right
    rescaled = [cv2.resize(cv2.resize(face, (210, 210), interpolation=cv2.INTER_AREA), (CROP_SIZE, CROP_SIZE))
                for face in faces]
    original = embedder.embed(faces)
    for variant in (shifted, rescaled):
        assert (np.linalg.norm(embedder.embed(variant) - original, axis=1) < SAME_FACE).all()
    apart = [np.linalg.norm(original[i] - original[j]) for i, j in combinations(range(len(faces)), 2)]
    assert np.mean(np.array(apart) > SAME_FACE) >= 0.9


@real
def test_non_square_or_non_uint8_crops_are_refused(embedder, faces):
    with pytest.raises(ValueError, match="square uint8 RGB"):
        embedder.embed([faces[0][:, :200]])
    with pytest.raises(ValueError, match="square uint8 RGB"):
        embedder.embed([faces[0].astype(np.float32)])
    assert embedder.embed([]).shape == (0, FEATURE_DIM)


@real
def test_margin_embedder_aligns_each_crop_by_its_own_margin(embedder, faces):
    from stages.lib.backbones.dlib_resnet import margin_embedder

    embed = margin_embedder(embedder.models)
    mixed = embed(np.stack(faces[:2]), np.array([np.nan, 0.4]))
    np.testing.assert_array_equal(mixed[0], embedder.embed(faces[:1])[0])   # NaN: the dataset's own crop
    tight = DlibEmbedder(embedder.models, crop_face_fraction(0.4)).embed(faces[1:2])[0]
    np.testing.assert_array_equal(mixed[1], tight)
