"""HSE FaceRes (backbones/faceres.py): the authors' framing and readings without weights; then, on real
faces (skipped without ../shared or the package index), the graph port against the JS original
(tests/fixtures/fidelity/faceres.json, bench/fidelity/faceres_reference.py) and one answer per face
whichever path asks: `predict --model faceres`, the features pass (`published`) and the audit."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from stages.lib.backbones import faceres, published
from stages.lib.backbones.cards import whole_image_boxes
from stages.lib.backbones.store import Features, cv2_batches
from stages.lib.evaluation.published_audit import predict_crops, stored_predictions
from stages.lib.faces.images import read_image
from tests.published_weights import SHARED, faceres_weights  # noqa: F401 (a fixture)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity" / "faceres.json"
real = pytest.mark.skipif(not (SHARED / "fairface-sample").is_dir(), reason=f"real photos not found in {SHARED}")


def test_the_face_is_cut_with_ten_pixels_each_side_clipped_and_a_whole_photo_whole():
    photo = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3)
    assert faceres.face_region(photo, (20.7, 30.2, 40.0, 50.0)).shape == (70, 60, 3)   # int(x)=20 -> 10..70
    assert np.array_equal(faceres.face_region(photo, (20.7, 30.2, 40.0, 50.0)), photo[20:90, 10:70])
    assert np.array_equal(faceres.face_region(photo, (5, 3, 70, 90)), photo[0:100, 0:80])  # clipped at the borders
    assert faceres.face_region(photo, (0, 0, 80, 100)) is photo                           # a ready crop: no margin


def test_the_input_is_the_bgr_face_resized_with_inter_linear_minus_imagenet_means():
    photo = np.random.default_rng(0).integers(0, 256, (60, 50, 3), dtype=np.uint8)
    expected = cv2.resize(photo, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    expected -= np.float32([103.939, 116.779, 123.68])
    np.testing.assert_array_equal(faceres.net_input(photo, (0, 0, 50, 60)), expected)


def test_both_age_readings_and_the_published_row():
    probs = np.zeros((2, 100))
    probs[0, [29, 39]] = [0.3, 0.1]     # the authors': top two renormalised: 1 + (29 * .75 + 39 * .25)
    probs[0, 0] = 0.6                   # ... but index 0 is the likeliest: top two are 0 and 29
    probs[1, 49] = 1.0
    assert faceres.authors_age(probs)[0] == pytest.approx(1 + 29 * 0.3 / 0.9)
    assert faceres.expected_age(probs).tolist() == pytest.approx([0.6 * 1 + 0.3 * 30 + 0.1 * 40, 50.0])
    row = faceres.published_row(probs, np.array([0.7, 0.2]))
    assert row.shape == (2, faceres.PUBLISHED_OUTPUTS) and row[:, 2].tolist() == [0, 0]
    assert row[:, :2].ravel().tolist() == pytest.approx([0.3, 0.7, 0.8, 0.2])
    assert (row[:, 3:] @ np.arange(1, 101)).tolist() == pytest.approx(faceres.expected_age(probs).tolist())


def test_male_at_point_six_on_the_card():
    card = published.card("faceres")
    assert card.male_at == 0.6 and "expected value" in card.age_reading and "authors'" in card.age_reading
    p_male = np.array([0.59, 0.6, 0.61, 0.5, np.nan])
    assert card.genders(1.0 - p_male).tolist() == ["female", "male", "male", "female", None]


@pytest.fixture(scope="module")
def fixture_faces():
    return json.loads(FIXTURE.read_text())["faces"]


@real
def test_the_graph_port_answers_as_the_js_original_on_real_faces(faceres_weights, fixture_faces):  # noqa: F811
    photos = [read_image(str(SHARED / face["photo"]), upright=True) for face in fixture_faces]
    inputs = np.stack([faceres.net_input(p, b) for p, b in zip(photos, whole_image_boxes(photos))])
    for face, one in zip(fixture_faces, inputs):   # the same input tensors the JS original was fed
        assert float(one.astype(np.float64).sum()) == pytest.approx(face["input_sum"], abs=1e-3)
    embedding, age_probs, p_male = faceres.FaceResNet(faceres_weights)(inputs)
    js_age = np.array([face["age_probs"] for face in fixture_faces])
    np.testing.assert_allclose(age_probs, js_age, atol=1e-5)
    np.testing.assert_allclose(p_male, [face["p_male"] for face in fixture_faces], atol=1e-5)
    np.testing.assert_allclose(embedding[:, :16], [face["embedding_head"] for face in fixture_faces], atol=1e-4)
    np.testing.assert_allclose(faceres.expected_age(age_probs), faceres.expected_age(js_age), atol=1e-3)


@real
def test_predict_features_and_audit_give_one_answer_per_face(faceres_weights, fixture_faces, tmp_path):  # noqa: F811
    """The three paths on the same ready crops (224 px, as the crop stage writes them): <= 1e-4 years,
    the same gender calls by the card's rule."""
    paths = []
    for position, face in enumerate(fixture_faces):
        image = cv2.resize(read_image(str(SHARED / face["photo"]), upright=True), (224, 224), interpolation=cv2.INTER_AREA)
        paths.append(tmp_path / f"{position}.jpg")
        cv2.imwrite(str(paths[-1]), image)
    model = published.load("faceres", faceres_weights)
    photos = [read_image(str(path), upright=True) for path in paths]
    predicted = model.predict(photos, whole_image_boxes(photos))                     # predict --model --precropped
    margins = np.full(len(paths), np.nan)
    audited = predict_crops(model, [str(p) for p in paths], margins)                 # audit_models, re-run
    rows, images = next(cv2_batches(paths, list(range(len(paths))), 224, len(paths)))
    embedded = faceres.embedder(faceres_weights)(images, margins[rows])              # the features pass
    features = Features(embedded[:, :faceres.EMBEDDING_DIM], pd.Series(range(len(paths)), index=[str(i) for i in rows]),
                        embedded[:, faceres.EMBEDDING_DIM:])
    stored = stored_predictions(features, [str(i) for i in rows])                    # published / audit from the pass
    for age in (audited["age"], stored["age"]):
        np.testing.assert_allclose(np.asarray(age, dtype=float), predicted.age, atol=1e-4)
    calls = model.card.genders(predicted.p_female).tolist()
    assert model.card.genders(audited["p_female"].to_numpy(float)).tolist() == calls
    assert model.card.genders(stored["p_female"].to_numpy(float)).tolist() == calls
