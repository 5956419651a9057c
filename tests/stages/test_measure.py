"""The measure stage on drawn demo faces: prepare, crop and measure in a scratch project; every crop
gets a row keyed by its id, drawn faces need no dlib, and the stage's throughput is timed."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages import crop, measure, params, prepare
from stages.lib.core.schema import MEASUREMENT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def demo(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "demo"
    raw["datasets"]["synthetic"]["options"] = {"n": 24}
    raw["profiles"]["demo"]["crop"]["workers"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_drawn_crop_is_measured_from_its_own_landmarks(demo, capsys):
    for stage in (params, prepare, crop):
        assert stage.main([] if stage is not crop else ["--no-progress"]) == 0
    assert measure.main(["--no-progress"]) == 0
    table = pd.read_parquet(demo / "data/measurements/measurements.parquet")
    crops = pd.read_parquet(demo / "data/crops/manifest.parquet")
    assert list(table.columns) == MEASUREMENT_COLUMNS
    assert list(table["id"]) == list(crops["id"]) and len(table) == 24
    assert crops["landmarks"].notna().all()  # drawn, carried from the generator through prepare and crop
    assert table["problem"].isna().all(), table["problem"].dropna().tolist()
    assert table["skin_lightness"].between(20, 95).all() and table["face_size"].gt(0).all()
    by_race = table.assign(race=crops["race"]).groupby("race")["skin_lightness"].mean()
    assert by_race["black"] < by_race["indian"] < by_race["white"]
    timing = json.loads((demo / "reports/timing/measure.json").read_text())
    assert timing["faces"] == 24
    assert "measure: skin colour of 24 of 24 faces" in capsys.readouterr().out
