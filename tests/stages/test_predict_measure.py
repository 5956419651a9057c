"""predict --measure from a fresh project (params.yaml only: no run, no weights, no heads): the
measurements alone, one record per face, a problem per unreadable photo, exit 0."""

import json
from pathlib import Path

import cv2
import pytest

from stages import predict
from stages.lib.datasets.synthetic import Face, draw_face
from stages.lib.faces.measure import PREDICT_FIELDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fresh(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    image, _, _ = draw_face(Face(0, 30, "female", "indian", 30), 96, 0)
    cv2.imwrite(str(tmp_path / "face.png"), image)
    (tmp_path / "broken.jpg").write_text("not a photo")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_measurements_alone_without_heads_or_weights(fresh, capsys):
    assert predict.main(["--measure", "--precropped", "--json", "face.png", "broken.jpg"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["photo"] for record in records] == ["face.png", "broken.jpg"]
    face, broken = records
    assert set(PREDICT_FIELDS) <= set(face) and face["face"] == 1
    assert set(face["exposure"]) == {"clipped_dark", "clipped_bright"}
    assert broken["problem"].startswith("image_unreadable") and broken["skin_lightness"] is None


def test_the_table_names_each_face_and_detection_needs_no_download(fresh, capsys):
    assert predict.main(["--measure", "face.png"]) == 0
    captured = capsys.readouterr()
    assert "faces found by haar" in captured.err
    assert captured.out.splitlines()[0].split()[:4] == ["photo", "face", "L*", "h*"]
