"""The published model `face_api`: face-api.js' AgeGenderNet ported to Keras. Its framing and tfjs' resize
against the original's own outputs (tests/fixtures/face_api_reference.json, written by
bench/face_api_reference.py running face-api.js under node), the weights manifest reader, the registry
entry, and, on real faces, the whole port against the original: age to 0.1 year, P(female) to 1e-3.
"""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from stages.lib.backbones import face_api, published
from stages.lib.core.params import load_params
from stages.lib.sources.packages import PackageError, download_tarball, extract_tar_member
from stages.lib.sources.plan import plan_fetches, weight_path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
CACHE = Path(os.environ.get("FACE_BIAS_CACHE", Path.home() / ".cache" / "face-bias-study"))
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "face_api_reference.json").read_text())
KEYS = (face_api.WEIGHTS_KEY, face_api.MANIFEST_KEY)


@pytest.fixture(scope="module")
def face_api_weights() -> Path:
    """The two model files from the npm tarball params.yaml pins, cached in FACE_BIAS_CACHE/face_api."""
    sources = yaml.safe_load((ROOT / "params.yaml").read_text())["weights"]
    folder = CACHE / "face_api"
    names = {key: folder / name for key, name in zip(KEYS, (face_api.WEIGHTS_FILE, face_api.MANIFEST_FILE))}
    if not all(path.is_file() for path in names.values()):
        folder.mkdir(parents=True, exist_ok=True)
        url, _, pin = sources[KEYS[0]]["package"]["requirement"].partition("#sha256=")
        try:
            tarball = download_tarball(url, folder, pin)
        except PackageError as exc:
            pytest.skip(f"face-api.js' weights are not in {folder} and the npm tarball could not be fetched: {exc}")
        for key, path in names.items():
            digest, _ = extract_tar_member(tarball, sources[key]["package"]["member"], path)
            assert digest == sources[key]["sha256"], f"{key}: the tarball's member differs from params.yaml's pin"
        tarball.unlink()
    return folder


# ----------------------------------------------------------------------------- framing and tfjs' resize


def reference_image() -> np.ndarray:
    resize = REFERENCE["resize"]
    return np.asarray(resize["image"], dtype=np.uint8).reshape(*resize["shape"], 3)


def test_the_network_input_matches_face_api_js_on_a_non_square_image():
    """23x30 random pixels: padded (3 rows above, 4 below: JS rounds half up) and resized by tfjs."""
    resize, image = REFERENCE["resize"], reference_image()
    step = resize["to_batch_tensor_112_step"]
    ours = face_api.net_input(image[..., ::-1], (0, 0, image.shape[1], image.shape[0]))  # BGR in
    expected = np.asarray(resize["to_batch_tensor_112"], dtype=np.float32)
    np.testing.assert_allclose(ours[::step, ::step].ravel(), expected, rtol=0, atol=1e-4)
    assert ours.astype(np.float64).sum() == pytest.approx(resize["to_batch_tensor_112_sum"], abs=1e-2)
    bilinear = cv2.resize(face_api.pad_to_square(image), (112, 112), interpolation=cv2.INTER_LINEAR)
    assert np.abs(bilinear[::step, ::step].ravel() - expected).max() > 10  # any other bilinear would fail


def test_tfjs_resize_bilinear_matches_tfjs_when_shrinking():
    resize = REFERENCE["resize"]
    ours = face_api.tfjs_resize_bilinear(reference_image(), tuple(resize["small_shape"]))
    np.testing.assert_allclose(ours.ravel(), resize["resize_bilinear_small"], rtol=0, atol=1e-4)


def test_pad_to_square_centres_the_image_and_puts_the_odd_row_after():
    padded = face_api.pad_to_square(np.full((2, 5, 3), 7, dtype=np.uint8))
    assert padded.shape == (5, 5, 3) and padded.dtype == np.float32
    assert [int(row.max()) for row in padded] == [0, 7, 7, 0, 0]


def test_the_face_box_is_clipped_at_the_borders_then_floored():
    photo = np.arange(10 * 8 * 3).reshape(10, 8, 3)
    assert face_api.face_slice(photo, (-2.5, 1.7, 6.9, 30.0)).shape == (8, 4, 3)  # x 0..4, y 1..9
    np.testing.assert_array_equal(face_api.face_slice(photo, (1.9, 2.2, 3.5, 4.9)), photo[2:6, 1:4])
    with pytest.raises(ValueError, match="outside"):
        face_api.face_slice(photo, (9.0, 0.0, 5.0, 5.0))


# ----------------------------------------------------------------------------- the weights manifest


def test_the_manifest_reader_dequantises_uint8_and_reads_float32_in_order():
    manifest = [{"paths": ["x.bin"], "weights": [
        {"name": "q", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "f", "shape": [3], "dtype": "float32"}]}]
    data = bytes([0, 1, 2, 255]) + np.array([1.5, -2.0, 3.25], dtype="<f4").tobytes()
    tensors = face_api.read_weights(manifest, data)
    np.testing.assert_array_equal(tensors["q"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_array_equal(tensors["f"], [1.5, -2.0, 3.25])
    with pytest.raises(face_api.WeightsManifestError, match="left over"):
        face_api.read_weights(manifest, data + b"\0\0\0\0")
    with pytest.raises(face_api.WeightsManifestError, match="f: the weights end"):
        face_api.read_weights(manifest, data[:-1])
    manifest[0]["weights"][0]["quantization"]["dtype"] = "float16"
    with pytest.raises(face_api.WeightsManifestError, match="q: dtype float32 stored as float16 is not supported"):
        face_api.read_weights(manifest, data)


# ----------------------------------------------------------------------------- registry and params


def test_face_api_is_registered_with_its_card():
    card = published.card("face_api")
    assert "face_api" in published.names()
    assert card.in_sample == {"utkface": "partly", "fairface": "no"} and card.age_bands is None
    assert card.weights == KEYS
    with pytest.raises(KeyError, match="face_api"):
        published.card("no_such_model")


def test_missing_weights_name_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m stages.download --only face_api_age_gender`"):
        published.load("face_api", tmp_path)


def test_params_fetch_both_files_from_the_npm_tarball_to_the_names_the_port_reads():
    params = load_params(ROOT / "params.yaml")
    fetches = plan_fetches(params, (), only=list(KEYS))
    assert [fetch.package.requirement.split("#")[0] for fetch in fetches] == [
        "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz"] * 2
    assert all(fetch.url is None and fetch.sha256 for fetch in fetches)
    assert [weight_path(params, key).name for key in KEYS] == [face_api.WEIGHTS_FILE, face_api.MANIFEST_FILE]


# ----------------------------------------------------------------------------- the port against the original


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent: the real faces live in ../shared")
def test_the_port_matches_face_api_js_on_real_faces(face_api_weights):
    faces = REFERENCE["faces"]
    photos = [cv2.imread(str(SHARED / face["photo"])) for face in faces]
    boxes = np.array([face["box"] for face in faces])
    for face, photo, box in zip(faces, photos, boxes):
        tensor = face_api.net_input(photo, box)
        assert [tensor[r, c, ch] for r, c, ch in REFERENCE["pixels"]] == pytest.approx(face["input_pixels"], abs=1e-3)
        assert tensor.astype(np.float64).sum() == pytest.approx(face["input_sum"], abs=0.5), face["photo"]
    predictions = published.load("face_api", face_api_weights).predict(photos, boxes)
    np.testing.assert_allclose(predictions.age, [face["age"] for face in faces], rtol=0, atol=0.1)
    np.testing.assert_allclose(predictions.p_female, [face["p_female"] for face in faces], rtol=0, atol=1e-3)
    assert np.isnan(predictions.age).sum() == 0 and predictions.band_probs is None
