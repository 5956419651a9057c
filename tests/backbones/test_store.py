"""The features stage on ~40 tiny generated crops: alignment, resume after a kill, determinism, errors."""

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from stages.lib.backbones.vgg_face import backbone_trunk, build_vgg_face, preprocess
from stages.lib.backbones.store import (
    FEATURES_FILE,
    INDEX_FILE,
    META_FILE,
    PROGRESS_FILE,
    FeaturesError,
    chunk_bounds,
    partial_dir,
    read_features,
    run_features,
)
from stages.lib.core.params import validate
from stages.lib.core.schema import MANIFEST_COLUMNS
from tests.backbones.keras2_files import write_keras2_weights

ROOT = Path(__file__).resolve().parents[2]
N_CROPS = 40
BACKBONE = {"weights": "random", "input_size": 32, "conv_widths": [4, 4, 8, 8, 8], "fc_width": 16, "batch_size": 8}
CHUNK_ROWS = 8  # 5 chunks of one batch each


def make_params(seed: int = 42, **backbone):
    with (ROOT / "params.yaml").open() as handle:
        raw = yaml.safe_load(handle)
    raw["seed"] = seed
    raw["profile"] = "full"
    raw["backbone"] = {**raw["backbone"], **BACKBONE, **backbone}
    return validate(raw)


def write_crops(root: Path, n: int = N_CROPS) -> pd.DataFrame:
    """n distinct small JPEGs (sizes vary, so the pipeline resizes) and a manifest in shuffled order."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        side = 32 + 8 * (i % 3)
        base = np.zeros((side, side, 3), np.uint8)
        base[:] = rng.integers(0, 256, 3, dtype=np.uint8)  # a distinct colour per image ...
        base[: side // 2, : side // (1 + i % 4)] = rng.integers(0, 256, 3, dtype=np.uint8)  # ... and layout
        crop = Path("data/crops/synthetic") / f"face_{i:03d}.jpg"
        (root / crop).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / crop), cv2.cvtColor(base, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append({
            "id": f"synthetic/face_{i:03d}.jpg", "dataset": "synthetic", "path": str(crop), "age": 20 + i,
            "gender": "male" if i % 2 else "female", "race": "white", "identity": None, "box": None,
            "cropped": True, "source_meta": "test", "crop_path": str(crop), "split": "train",
        })
    manifest = pd.DataFrame(rows)[MANIFEST_COLUMNS + ["crop_path", "split"]]
    return manifest.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.fixture()
def crops(tmp_path):
    return tmp_path, write_crops(tmp_path)


class Killed(Exception):
    """Stands in for the process being killed between chunks."""


def kill_after(n_chunks: int, seen: list):
    def on_chunk_done(chunk: int) -> None:
        seen.append(chunk)
        if len(seen) == n_chunks:
            raise Killed

    return on_chunk_done


def run(root, manifest, out="features", params=None, **kwargs):
    return run_features(manifest, params or make_params(), root / out, root=root, chunk_rows=CHUNK_ROWS,
                        show_progress=False, **kwargs)


def test_outputs_are_row_aligned_with_the_manifest(crops):
    root, manifest = crops
    meta = run(root, manifest)
    store = read_features(root / "features")
    assert store.values.dtype == np.float16 and store.values.shape == (N_CROPS, 1 * 1 * 8)
    assert meta["shape"] == [N_CROPS, 8] and meta["spec"]["name"] == "vgg_face" and meta["spec"]["feature_dim"] == 8
    assert meta["backbone"]["conv_widths"] == [4, 4, 8, 8, 8] and meta["weights_sha256"] is None
    assert list(store.index["id"]) == list(manifest["id"]) and list(store.index["row"]) == list(range(N_CROPS))
    assert not partial_dir(root / "features").exists()
    throughput = meta["throughput"]
    assert throughput["images"] == N_CROPS and throughput["images_per_second"] > 0

    # Row i is manifest row i's crop, computed independently (OpenCV decode, shared preprocess).
    trunk = backbone_trunk(build_vgg_face(32, (4, 4, 8, 8, 8), 16, seed=42))
    images = [cv2.cvtColor(cv2.imread(str(root / p)), cv2.COLOR_BGR2RGB) for p in manifest["crop_path"]]
    expected = trunk(preprocess(images, 32)).numpy().reshape(N_CROPS, -1)
    np.testing.assert_allclose(store.values.astype(np.float32), expected, rtol=2e-2, atol=2e-2)
    distances = np.abs(expected[:, None, :] - store.values[None, :, :].astype(np.float32)).sum(axis=2)
    assert (distances.argmin(axis=0) == np.arange(N_CROPS)).all()  # each row nearest its own crop


def test_resume_after_a_kill_skips_finished_chunks_and_matches_an_uninterrupted_run(crops):
    root, manifest = crops
    seen = []
    with pytest.raises(Killed):
        run(root, manifest, on_chunk_done=kill_after(2, seen))
    assert json.loads((partial_dir(root / "features") / PROGRESS_FILE).read_text())["done"] == [0, 1]
    assert partial_dir(root / "features") == root / ".features-partial"
    assert not (root / "features" / META_FILE).exists()
    with pytest.raises(FeaturesError, match="no finished features pass"):
        read_features(root / "features")

    resumed = []
    throughput = run(root, manifest, on_chunk_done=resumed.append)["throughput"]
    assert resumed == [2, 3, 4]  # the two finished chunks were not recomputed
    run(root, manifest, out="uninterrupted")
    np.testing.assert_array_equal(
        read_features(root / "features").values, read_features(root / "uninterrupted").values
    )
    assert throughput["images"] == N_CROPS  # counted over both calls


def test_a_previous_pass_stays_whole_until_the_next_one_finishes(crops):
    """Outside DVC the old outputs stay readable during a new pass; under DVC, which deletes a
    stage's outputs before running it, the scratch folder (not an output) still resumes."""
    root, manifest = crops
    run(root, manifest)
    old = np.array(read_features(root / "features").values)
    with pytest.raises(Killed):
        run(root, manifest, params=make_params(seed=7), on_chunk_done=kill_after(2, []))
    np.testing.assert_array_equal(read_features(root / "features").values, old)
    assert read_features(root / "features").meta["seed"] == 42
    for name in (FEATURES_FILE, INDEX_FILE, META_FILE):
        (root / "features" / name).unlink()  # what `dvc repro` does before running the stage
    resumed = []
    meta = run(root, manifest, params=make_params(seed=7), on_chunk_done=resumed.append)
    assert resumed == [2, 3, 4] and meta["seed"] == 7
    assert not np.array_equal(read_features(root / "features").values, old)


def test_kill_after_the_last_chunk_resumes_with_nothing_to_compute(crops):
    root, manifest = crops
    with pytest.raises(Killed):
        run(root, manifest, on_chunk_done=kill_after(5, []))
    resumed = []
    run(root, manifest, on_chunk_done=resumed.append)
    assert resumed == []
    assert read_features(root / "features").values.shape == (N_CROPS, 8)


def test_changed_inputs_restart_the_pass(crops):
    root, manifest = crops
    with pytest.raises(Killed):
        run(root, manifest, on_chunk_done=kill_after(3, []))
    again = []
    run(root, manifest.iloc[::-1].reset_index(drop=True), on_chunk_done=again.append)  # another row order
    assert again == [0, 1, 2, 3, 4]

    with pytest.raises(Killed):
        run(root, manifest, on_chunk_done=kill_after(3, []))
    again = []
    run(root, manifest, params=make_params(seed=7), on_chunk_done=again.append)  # another random init
    assert again == [0, 1, 2, 3, 4]


@pytest.fixture()
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_as_on_a_gpu_is_close_and_never_resumes_a_float32_pass(crops, restore_policy):
    root, manifest = crops
    run(root, manifest, out="float32")
    with pytest.raises(Killed):
        run(root, manifest, on_chunk_done=kill_after(2, []))
    keras.mixed_precision.set_global_policy("mixed_float16")
    recomputed = []
    meta = run(root, manifest, on_chunk_done=recomputed.append)
    assert recomputed == [0, 1, 2, 3, 4] and meta["precision"] == "mixed_float16"
    mixed, full = read_features(root / "features").values, read_features(root / "float32").values
    assert mixed.dtype == np.float16
    np.testing.assert_allclose(mixed.astype(np.float32), full.astype(np.float32), rtol=2e-2, atol=2e-3)


def test_same_seed_same_features_other_seed_other_features(crops):
    root, manifest = crops
    run(root, manifest, out="a")
    run(root, manifest, out="b")
    run(root, manifest, out="c", params=make_params(seed=7))
    a, b, c = (np.load(root / name / FEATURES_FILE) for name in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (root / "a" / META_FILE).read_text() == (root / "b" / META_FILE).read_text()


def test_chunks_are_whole_batches():
    assert chunk_bounds(40, 8, 8) == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    assert chunk_bounds(21, 10, 8) == [(0, 16), (16, 21)]  # rounded up to two batches
    assert chunk_bounds(5, 1, 8) == [(0, 5)]


def test_published_weights_are_loaded_from_data_raw_weights(crops):
    root, manifest = crops
    params = make_params(weights="vgg_face")
    with pytest.raises(FileNotFoundError, match="dvc repro download"):
        run(root, manifest, params=params)
    source = build_vgg_face(32, (4, 4, 8, 8, 8), 16, seed=99)
    weights = root / "data/raw/weights/vgg_face.h5"
    write_keras2_weights(weights, [(f"conv2d_{i}", layer.get_weights())
                                   for i, layer in enumerate((l for l in source.layers if l.weights), start=1)])
    meta = run(root, manifest, params=params)
    assert meta["spec"]["weights_file"] == "vgg_face.h5" and len(meta["weights_sha256"]) == 64
    images = [cv2.cvtColor(cv2.imread(str(root / p)), cv2.COLOR_BGR2RGB) for p in manifest["crop_path"][:4]]
    expected = backbone_trunk(source)(preprocess(images, 32)).numpy().reshape(4, -1)
    np.testing.assert_allclose(read_features(root / "features").values[:4].astype(np.float32), expected,
                               rtol=2e-2, atol=2e-2)


def test_bad_inputs_name_the_file_and_the_fix(crops):
    root, manifest = crops
    (root / manifest["crop_path"][5]).unlink()
    with pytest.raises(FeaturesError, match=r"1 of 40 crops are missing.*face_.*dvc repro crop"):
        run(root, manifest)
    (root / manifest["crop_path"][5]).write_bytes(b"not a jpeg")
    with pytest.raises(FeaturesError, match=rf"{manifest['crop_path'][5]} \(manifest row 5\) is not a readable image"):
        run(root, manifest)
    with pytest.raises(FeaturesError, match="no `crop_path`"):
        run(root, manifest.drop(columns="crop_path"))
    with pytest.raises(FeaturesError, match="repeats ids"):
        run(root, pd.concat([manifest, manifest.iloc[:1]], ignore_index=True))
    with pytest.raises(FeaturesError, match="no rows"):
        run(root, manifest.iloc[:0])


def test_stage_module_end_to_end(crops, monkeypatch):
    from stages import features as stage

    root, manifest = crops
    with (ROOT / "params.yaml").open() as handle:
        raw = yaml.safe_load(handle)
    raw["backbone"] = {**raw["backbone"], **BACKBONE}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    (root / "data/crops").mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(root / "data/crops/manifest.parquet", index=False)
    monkeypatch.chdir(root)
    stage.main(["--no-progress", "--chunk-rows", "16"])
    store = read_features(root / "data/features")
    assert store.values.shape == (N_CROPS, 8) and store.meta["precision"] == "float32"
    assert pd.read_parquet(root / "data/features" / INDEX_FILE)["id"].tolist() == manifest["id"].tolist()


def test_a_finished_pass_with_the_same_inputs_is_kept_not_recomputed(crops, monkeypatch):
    """What lets the compare stage keep the other backbones' features across runs."""
    import os

    from stages.lib.backbones import store as features_module

    root, manifest = crops
    first = run(root, manifest)
    written = (root / "features" / FEATURES_FILE).stat().st_mtime_ns
    monkeypatch.setattr(features_module, "load", lambda *a, **k: pytest.fail("the backbone ran again"))
    assert run(root, manifest) == {key: value for key, value in first.items() if key != "throughput"}
    assert (root / "features" / FEATURES_FILE).stat().st_mtime_ns == written
    monkeypatch.undo()
    crop = root / manifest["crop_path"][0]
    os.utime(crop, ns=(crop.stat().st_atime_ns, crop.stat().st_mtime_ns + 10**9))  # a re-crop
    done = []
    run(root, manifest, on_chunk_done=done.append)
    assert done  # computed again
