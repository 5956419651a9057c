"""Fault injection: each kind of bad input gets its named outcome, and the counts reconcile.

1. The lock pins only what passed every check; a refused file leaves it as it was and says how to recover.
2. Truncated and corrupt photos are rejected with a named reason (crop), or a problem line (predict).
3. Expected mistakes (bad tables, bad --out, bad params) are one named line and a non-zero exit.
4. Implausible input to the audit is rejected or noted, and a re-run leaves no stale outputs.
"""

import contextlib
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from stages import download as download_stage
from stages.lib.backbones.h5weights import N_CONV_LAYERS
from stages.lib.core.schema import manifest_frame
from stages.lib.faces.crop import CropSettings, crop_manifest
from stages.lib.faces.images import FaceRejected, read_image
from stages.lib.sources.intake import RefusedError, read_lock
from stages.lib.sources.plan import Fetch
from tests.sources.test_fetch import file_member, make_fetcher, server, url_fetch, write_tar  # noqa: F401 (fixture)
from tests.heads.test_inference import project  # noqa: F401 (fixture)
from tests.backbones.keras2_files import write_keras2_weights

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# 1. The lock pins only what passed every check


def published_like(path: Path, classes: int) -> bytes:
    """A tiny file laid out as the published weight files: 13 convs, fc6, fc7, an output of `classes`."""
    layers = [(f"conv2d_{i + 1}", [np.zeros((3, 3, 1, 1)), np.zeros(1)]) for i in range(N_CONV_LAYERS)]
    layers += [("fc6", [np.zeros((1, 1, 1, 1)), np.zeros(1)]), ("fc7", [np.zeros((1, 1, 1, 1)), np.zeros(1)]),
               ("predictions", [np.zeros((1, 1, 1, classes)), np.zeros(classes)])]
    write_keras2_weights(path, [("zero_padding2d_1", []), *layers])
    return path.read_bytes()


@pytest.fixture()
def download_project(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_garbage_weights_file_is_refused_and_the_good_one_that_follows_is_accepted(download_project, capsys):
    target = download_project / "data/raw/weights/vgg_face.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html>404</html>\n")
    assert download_stage.main(["--only", "vgg_face", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "not a usable vgg_face file: not an HDF5 file" in out
    assert "moved aside to" in out and "python -m stages.download --only vgg_face" in out
    assert "weights/vgg_face.h5" not in read_lock(download_project / "downloads.lock.yaml")
    assert not target.exists() and list(target.parent.glob("vgg_face.h5.bad-*"))

    good = published_like(target, 2622)  # the advice followed: a good copy put where it goes
    assert download_stage.main(["--only", "vgg_face", "--no-progress"]) == 0
    assert "verified" in capsys.readouterr().out
    assert read_lock(download_project / "downloads.lock.yaml")["weights/vgg_face.h5"]["sha256"] == sha(good)


def test_a_weights_file_of_the_wrong_model_is_refused(download_project, capsys):
    target = download_project / "data/raw/weights/age.h5"
    target.parent.mkdir(parents=True)
    published_like(target, 2)  # the gender file saved under the age name
    assert download_stage.main(["--only", "age", "--no-progress"]) == 1
    assert "output layer has 2 classes where the published age file has 101" in capsys.readouterr().out


def test_a_lock_entry_that_pinned_a_broken_file_is_dropped_so_the_good_file_gets_in(download_project, capsys):
    """What the old code left behind: the garbage file's sha256 in the lock (and no way out but editing it)."""
    target = download_project / "data/raw/weights/vgg_face.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html>404</html>\n")
    (download_project / "downloads.lock.yaml").write_text(yaml.safe_dump({"weights/vgg_face.h5": {
        "source": "x", "sha256": sha(b"<html>404</html>\n"), "size": 17}}))
    assert download_stage.main(["--only", "vgg_face", "--no-progress"]) == 1
    assert "which pinned this very file, was removed" in capsys.readouterr().out
    good = published_like(target, 2622)
    assert download_stage.main(["--only", "vgg_face", "--no-progress"]) == 0
    assert read_lock(download_project / "downloads.lock.yaml")["weights/vgg_face.h5"]["sha256"] == sha(good)


def test_a_yunet_model_without_a_pinned_checksum_must_load(download_project, capsys):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["weights"]["yunet"] = {"path": "manual/yunet.onnx"}
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    Path("manual").mkdir()
    Path("manual/yunet.onnx").write_bytes(b"<html>404</html>")
    assert download_stage.main(["--only", "yunet", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "not a usable yunet file: OpenCV cannot load it as a YuNet ONNX model" in out
    assert "It was left where it is" in out and f"replace {Path('manual/yunet.onnx').resolve()}" in out
    assert read_lock(Path("downloads.lock.yaml")) == {}
    assert Path("manual/yunet.onnx").exists()  # the user's file is never moved


def test_a_truncated_download_is_not_pinned_and_the_good_file_that_follows_is_accepted(server, tmp_path):
    good = tmp_path / "good.tar.gz"
    write_tar(good, [file_member("wiki/a.jpg", os.urandom(30_000)), file_member("wiki/b.jpg", os.urandom(30_000))])
    server.files["/wiki.tar.gz"] = good.read_bytes()[:20_000]  # the server sends a truncated file
    item = url_fetch(server.url + "/wiki.tar.gz")
    with pytest.raises(RefusedError) as caught:
        make_fetcher(tmp_path).fetch(item)
    message = str(caught.value)
    assert "truncated or not a valid archive" in message and "run `python -m stages.download --only wiki`" in message
    assert read_lock(tmp_path / "downloads.lock.yaml") == {}

    server.files["/wiki.tar.gz"] = good.read_bytes()  # fixed upstream: the advice, followed, recovers
    [result] = make_fetcher(tmp_path).fetch(item)
    assert result.action == "downloaded, extracted 2 members"
    assert read_lock(tmp_path / "downloads.lock.yaml")["wiki/wiki.tar.gz"]["sha256"] == sha(good.read_bytes())


def test_an_uncompressed_tar_cut_at_a_member_boundary_is_refused(tmp_path):
    archive = tmp_path / "manual" / "faces.tar"
    archive.parent.mkdir()
    write_tar(archive, [file_member("a.jpg", b"a" * 512), file_member("b.jpg", b"b" * 512)])
    archive.write_bytes(archive.read_bytes()[:1024])  # exactly the first member: looks like a valid tar
    with pytest.raises(RefusedError, match="no end-of-archive marker"):
        make_fetcher(tmp_path).fetch(Fetch("utkface", "datasets.utkface.sources[0]", path="manual/faces.tar"))
    assert read_lock(tmp_path / "downloads.lock.yaml") == {}


def test_a_hostile_local_archive_is_not_pinned_and_its_replacement_is_accepted(tmp_path):
    archive = tmp_path / "manual" / "UTKFace.tar.gz"
    archive.parent.mkdir()
    write_tar(archive, [file_member("UTKFace/1_0_0_1.jpg"), file_member("../escape.txt")])
    item = Fetch("utkface", "datasets.utkface.sources[0]", path="manual/UTKFace.tar.gz")
    with pytest.raises(RefusedError) as caught:
        make_fetcher(tmp_path).fetch(item)
    assert "'../escape.txt'" in str(caught.value) and f"replace {archive.resolve()}" in str(caught.value)
    assert read_lock(tmp_path / "downloads.lock.yaml") == {} and not (tmp_path / "escape.txt").exists()

    write_tar(archive, [file_member("UTKFace/1_0_0_1.jpg")])
    [result] = make_fetcher(tmp_path).fetch(item)
    assert result.action == "extracted 1 members"
    assert read_lock(tmp_path / "downloads.lock.yaml")["utkface/UTKFace.tar.gz"]["sha256"] == sha(archive.read_bytes())


def test_a_lock_file_that_is_not_yaml_is_one_line_naming_the_fix(download_project, capsys):
    Path("downloads.lock.yaml").write_text("<<<<<<< HEAD\nweights/yunet.onnx: {sha256: [\n")  # a merge gone wrong
    assert download_stage.main(["--only", "yunet", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "downloads.lock.yaml is not a lock file this stage wrote" in err and "restore it from git" in err


# ---------------------------------------------------------------------------------------------------------
# 2. Truncated and corrupt photos


def jpeg_bytes(seed: int = 0, side: int = 96) -> bytes:
    """A real JPEG of a textured image (so its scan is long enough to cut or damage in the middle)."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def damaged(data: bytes, how: str) -> bytes:
    middle = len(data) // 2
    if how == "truncated":
        return data[:middle]
    if how == "zeros":
        return data[:middle] + bytes(200) + data[middle + 200:]
    raise ValueError(how)


def test_opencv_alone_would_accept_the_first_half_of_a_jpeg(tmp_path):
    """Why images.read_image checks: cv2.imread fills the missing half with grey and goes on."""
    path = tmp_path / "half.jpg"
    path.write_bytes(damaged(jpeg_bytes(), "truncated"))
    assert cv2.imread(str(path)) is not None
    with pytest.raises(FaceRejected, match=r"^image_truncated: .*half.jpg is cut short"):
        read_image(str(path), upright=True)


@pytest.mark.parametrize("how, code", [("truncated", "image_truncated"), ("zeros", "image_corrupt")])
def test_damaged_jpegs_are_refused_with_a_named_reason(tmp_path, how, code):
    path = tmp_path / "face.jpg"
    path.write_bytes(damaged(jpeg_bytes(), how))
    with pytest.raises(FaceRejected) as caught:
        read_image(str(path), upright=True)
    assert caught.value.code == code


def test_a_truncated_png_is_refused(tmp_path):
    data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    (tmp_path / "face.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FaceRejected, match="^image_truncated"):
        read_image(str(tmp_path / "face.png"), upright=True)


def test_whole_images_with_bytes_after_the_end_marker_are_read(tmp_path):
    data = jpeg_bytes()
    (tmp_path / "tail.jpg").write_bytes(data + b"camera data appended after EOI")
    np.testing.assert_array_equal(read_image(str(tmp_path / "tail.jpg"), upright=True),
                                  cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def test_the_crop_stage_rejects_damaged_photos_by_name_and_every_row_is_accounted_for(tmp_path):
    photos = {"whole": jpeg_bytes(1), "truncated": damaged(jpeg_bytes(2), "truncated"),
              "zeros": damaged(jpeg_bytes(3), "zeros"), "empty": b""}
    rows = []
    for name, data in photos.items():
        (tmp_path / f"{name}.jpg").write_bytes(data)
        rows.append({"id": f"utkface/{name}", "dataset": "utkface", "path": str(tmp_path / f"{name}.jpg"), "age": 30,
                     "gender": "female", "race": "black", "identity": None, "box": None, "cropped": True,
                     "source_meta": ""})
    manifest = manifest_frame(rows)
    result = crop_manifest(manifest, tmp_path / "crops", CropSettings("haar", 0.4, 32, 0.6), progress=False)
    assert len(manifest) == len(result.manifest) + len(result.rejects)  # in = kept + rejected
    assert list(result.manifest["id"]) == ["utkface/whole"]
    codes = {Path(path).stem: reason.split(":")[0]
             for path, reason in zip(result.rejects["path"], result.rejects["reason"])}
    assert codes == {"truncated": "image_truncated", "zeros": "image_corrupt", "empty": "image_empty"}


@pytest.mark.shared
def test_half_a_real_utkface_chip_is_refused():
    photos = sorted((SHARED / "datasets" / "utkface-aligned-sample").glob("*.jpg"))[:20]
    if not photos:
        pytest.skip(f"{SHARED / 'datasets' / 'utkface-aligned-sample'} is absent (real photos beside the repo)")
    for path in photos:
        read_image(str(path), upright=True)  # the whole photos are read
    cut = Path(os.environ.get("TMPDIR", "/tmp")) / f"half-{os.getpid()}.jpg"
    try:
        for path in photos:
            cut.write_bytes(damaged(path.read_bytes(), "truncated"))
            with pytest.raises(FaceRejected, match="^image_truncated"):
                read_image(str(cut), upright=True)
    finally:
        cut.unlink(missing_ok=True)


def test_predict_gives_a_truncated_photo_a_problem_line_not_an_age(project, capsys):
    from stages import predict as predict_stage

    cv2.imwrite("whole.jpg", np.random.default_rng(5).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    Path("half.jpg").write_bytes(damaged(Path("whole.jpg").read_bytes(), "truncated"))
    assert predict_stage.main(["whole.jpg", "half.jpg", "--precropped", "--json"]) == 0
    records = {record["photo"]: record for record in json.loads(capsys.readouterr().out)}
    assert records["whole.jpg"]["problem"] is None and records["whole.jpg"]["age"] is not None
    assert records["half.jpg"]["problem"].startswith("image_truncated") and records["half.jpg"]["age"] is None


# ---------------------------------------------------------------------------------------------------------
# 3. Expected mistakes: one named line, a non-zero exit, no traceback


def audit_run(argv: list[str]) -> str | int:
    """What `python -m stages.audit` ends with: the one line it printed for a mistake (exit 2), or 0."""
    from stages import audit

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        code = audit.main(argv)
    sys.stderr.write(said.getvalue())   # notes stay where capsys reads them
    if code == 0:
        return 0
    assert code == 2 and said.getvalue().count("\n") == 1, said.getvalue()
    return said.getvalue().rstrip("\n")


def predictions_csv(path: Path, n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, n)
    table = pd.DataFrame({"age": ages, "age_pred": np.clip(ages + rng.normal(0, 5, n), 0, None).round(1),
                          "gender": rng.choice(["male", "female"], n), "race": rng.integers(0, 5, n)})
    table.to_csv(path, index=False)
    return table


BAD_TABLES = {
    "empty": (lambda path: path.write_bytes(b""), "is empty (no header, no rows)"),
    "photo": (lambda path: path.write_bytes(jpeg_bytes()), "is not a text table"),
    "ragged": (lambda path: path.write_text("age,age_pred\n30,31\n40,41,9,9\n"),
               "is not a readable table (Expected 2 fields in line 3, saw 4)"),
    "header only": (lambda path: path.write_text("age,age_pred,gender\n"),
                    "has a header (age, age_pred, gender) but no rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_a_table_the_audit_cannot_use_is_one_line_naming_it(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    write, expected = BAD_TABLES[case]
    write(tmp_path / "table.csv")
    message = audit_run(["table.csv", "--out", "out", "--no-figures"])
    assert message.startswith("audit: table.csv ") and expected in message and "\n" not in message


@pytest.mark.parametrize("out, expected", [
    ("taken", "audit: --out taken is a file: give a folder (it is created when missing)"),
    ("taken/sub", "audit: --out taken/sub: taken is a file, so no folder can be made under it; give another --out"),
])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, monkeypatch, out, expected):
    monkeypatch.chdir(tmp_path)
    predictions_csv(tmp_path / "p.csv")
    Path("taken").write_text("a file the user keeps")
    assert audit_run(["p.csv", "--out", out, "--no-figures", "--bootstrap", "10"]) == expected
    assert Path("taken").read_text() == "a file the user keeps"


def test_a_read_only_out_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    predictions_csv(tmp_path / "p.csv")
    Path("locked").mkdir()
    Path("locked").chmod(0o555)
    if os.access("locked", os.W_OK):
        pytest.skip("running as root: a read-only folder is writable anyway")
    message = audit_run(["p.csv", "--out", "locked/out", "--no-figures"])
    assert message.startswith("audit: --out locked/out cannot be created")
    assert audit_run(["p.csv", "--out", "locked", "--no-figures"]) == (
        "audit: --out locked is not writable: give a folder you can write to")


@pytest.fixture()
def stage_project(tmp_path, monkeypatch):
    """A project folder with the repository's params.yaml, to be spoilt by each test."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spoil_params(**sections) -> None:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    for section, values in sections.items():
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    Path("params.yaml").write_text(yaml.safe_dump(raw))


@pytest.mark.parametrize("change, key", [
    ({"split": {"train": 0.8, "val": 0.2, "test": 0.3}}, "split: train + val + test must be 1, got 1.3"),
    ({"experiments": {"x2": {"init": "backbone", "oversample": [{"min_age": 60, "factor": 0}]}}},
     "experiments.x2.oversample.0.factor"),
])
def test_the_features_stage_names_bad_params_in_one_line(stage_project, capsys, change, key):
    from stages import features as features_stage

    spoil_params(**change)
    assert features_stage.main(["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("features: params.yaml is not valid") and key in err and "Traceback" not in err


def test_an_unknown_backbone_fails_in_the_first_stages_before_any_work(stage_project, capsys):
    from stages import features as features_stage
    from stages import params as params_stage

    spoil_params(backbone={"name": "resnet_nope"})
    expected = "backbone.name: 'resnet_nope' is not a registered backbone; allowed: dlib_resnet, faceres, vgg_face"
    for stage in (params_stage, download_stage, features_stage):
        assert stage.main(["--no-progress"] if stage is not params_stage else []) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert not (stage_project / "data").exists()  # nothing fetched, nothing written


def test_an_unknown_compared_backbone_fails_in_the_first_stage(stage_project, capsys):
    from stages import params as params_stage

    spoil_params(compare_backbones={"other": {"name": "resnet_nope"}})
    assert params_stage.main([]) == 2
    assert "'resnet_nope' is not a registered backbone" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# 4. Plausibility


def test_impossible_true_ages_are_rejected_not_evaluated(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = predictions_csv(tmp_path / "clean.csv")
    spoilt = table.copy()
    spoilt.loc[[3, 7], "age"] = [150, 200]
    spoilt.to_csv("spoilt.csv", index=False)
    audit_run(["clean.csv", "--out", "clean", "--no-figures", "--bootstrap", "10"])
    audit_run(["spoilt.csv", "--out", "spoilt", "--no-figures", "--bootstrap", "10"])
    clean = json.loads(Path("clean/metrics.json").read_text())
    spoilt_metrics = json.loads(Path("spoilt/metrics.json").read_text())
    rejects = pd.read_csv("spoilt/rejects.csv")
    assert rejects["row"].tolist() == [3, 7]
    assert rejects["reason"].str.contains("not a plausible human age").all()
    assert spoilt_metrics["rows_read"] == spoilt_metrics["n"] + spoilt_metrics["rows_rejected"]  # in = kept + rejected
    kept = table.drop(index=[3, 7])
    assert spoilt_metrics["rmse"] == pytest.approx(np.sqrt(((kept["age_pred"] - kept["age"]) ** 2).mean()), abs=1e-6)
    assert clean["n"] == spoilt_metrics["n"] + 2


def test_duplicate_rows_are_evaluated_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = predictions_csv(tmp_path / "p.csv")
    pd.concat([table, table.iloc[:4]]).to_csv("p.csv", index=False)
    audit_run(["p.csv", "--out", "out", "--no-figures", "--bootstrap", "10"])
    note = "4 rows repeat an earlier row exactly"
    assert note in capsys.readouterr().err and note in Path("out/report.md").read_text()
    assert json.loads(Path("out/metrics.json").read_text())["n"] == len(table) + 4


def test_a_second_audit_into_the_same_out_leaves_nothing_of_the_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    predictions_csv(tmp_path / "p.csv")
    audit_run(["p.csv", "--out", "out", "--bootstrap", "10", "--correction"])
    assert list(Path("out/figures").glob("*.png")) and Path("out/correction.csv").exists()
    Path("out/mine.txt").write_text("the user's own file")
    audit_run(["p.csv", "--out", "out", "--bootstrap", "10", "--no-figures"])
    assert not list(Path("out/figures").glob("*.png")) and not Path("out/correction.csv").exists()
    assert Path("out/report.md").exists() and Path("out/mine.txt").read_text() == "the user's own file"
