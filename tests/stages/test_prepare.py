"""The prepare stage end to end in a scratch project, and the data-quality summary."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from stages import prepare
from stages.lib.datasets.quality import reason_code, summarise
from stages.lib.core.schema import MANIFEST_COLUMNS, REJECT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
BANDS = [0, 16, 31, 46, 61]


# ---------------------------------------------------------------- quality summary (pure)


def test_summary_counts_reasons_by_code_and_groups_with_zeros():
    kept = pd.DataFrame({"age": [20, 25, 70], "gender": ["male", "female", "female"], "race": ["white", None, "black"]})
    rejects = pd.DataFrame({
        "dataset": "d", "path": ["a", "b", "c"], "stage": "prepare",
        "reason": ["age_out_of_range: age 120 is outside", "age_out_of_range: age 130 is outside",
                   "name_unparsed: 'x.jpg' has 3 of the 4 fields"],
        "age": [120, 130, None], "gender": ["female", "female", None], "race": ["black", "black", None],
    })
    summary = summarise("d", kept, rejects, BANDS)
    assert (summary["rows_in"], summary["kept"], summary["rejected"]) == (6, 3, 3)
    assert summary["rejected_by_reason"] == {"age_out_of_range": 2, "name_unparsed": 1}
    assert summary["kept_by"]["race"] == {"white": 1, "black": 1, "asian": 0, "indian": 0, "others": 0, "unknown": 1}
    assert summary["kept_by"]["age_band"] == {"0-15": 0, "16-30": 2, "31-45": 0, "46-60": 0, "61+": 1}
    assert summary["kept_by"]["race_x_gender"]["black*female"] == 1
    assert summary["rejected_by"]["age_band"]["61+"] == 2 and summary["rejected_by"]["age_band"]["unknown"] == 1
    assert summary["rejection_rate_by"]["race"]["black"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["rejection_rate_by"]["gender"] == {"male": 0.0, "female": 0.5}
    assert "unknown" not in summary["rejection_rate_by"]["race"]
    json.dumps(summary)  # plain types only


def test_summary_of_contract_only_rejects_and_empty_tables():
    rejects = pd.DataFrame({"dataset": ["d"], "path": ["a"], "stage": ["crop"], "reason": ["no_face: none found"]})
    kept = pd.DataFrame(columns=["age", "gender", "race"])
    summary = summarise("d", kept, rejects, BANDS, stage="crop")
    assert summary["stage"] == "crop" and summary["kept_share"] == 0.0
    assert "rejected_by" not in summary
    empty = summarise("d", kept, rejects.iloc[:0], BANDS)
    assert empty["rows_in"] == 0 and empty["kept_share"] is None and empty["rejected_by_reason"] == {}


def test_reason_code():
    assert reason_code("image_missing: val/7.jpg is not there: really") == "image_missing"


# ---------------------------------------------------------------- the stage


def write_params(project: Path, roles: dict, datasets: dict | None = None) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "full"
    params["roles"] = roles
    params["datasets"]["synthetic"]["options"] = {"n": 60, "image_size": 48, "seed": 1}
    for name, dataset in (datasets or {}).items():
        params["datasets"][name] = dataset
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def write_utkface(raw: Path) -> None:
    folder = raw / "utkface" / "UTKFace"
    folder.mkdir(parents=True)
    ok, jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    for name in ["26_0_1_20170116174525125.jpg.chip.jpg", "70_1_0_20170116174525126.jpg.chip.jpg",
                 "39_1_20170116174525125.jpg.chip.jpg", "110_0_0_20170116174525127.jpg.chip.jpg"]:
        (folder / name).write_bytes(jpg.tobytes())


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stage_writes_manifest_rejects_and_quality(project, capsys):
    write_utkface(project / "data" / "raw")
    write_params(project, {"pretrain": "synthetic", "finetune": "utkface", "evaluate": ["utkface"]})

    assert prepare.main([]) == 0

    out = capsys.readouterr().out
    assert "utkface: 4 rows -> 2 kept, 2 rejected (age_out_of_range 1, name_unparsed 1)" in out
    assert "synthetic: 60 rows -> 60 kept, 0 rejected" in out
    for name, kept in [("utkface", 2), ("synthetic", 60)]:
        folder = project / "data" / "interim" / name
        manifest = pd.read_parquet(folder / "manifest.parquet")
        rejects = pd.read_csv(folder / "rejects.csv")
        quality = json.loads((folder / "quality.json").read_text())
        assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
        assert list(rejects.columns) == REJECT_COLUMNS
        assert len(manifest) == quality["kept"] == kept and len(rejects) == quality["rejected"]
        assert manifest["id"].is_unique
        assert all((project / path).is_file() and not Path(path).is_absolute() for path in manifest["path"])
    utk = pd.read_parquet(project / "data/interim/utkface/manifest.parquet")
    assert utk["path"].str.startswith("data/raw/utkface/UTKFace/").all()
    synthetic = pd.read_parquet(project / "data/interim/synthetic/manifest.parquet")
    assert synthetic["path"].str.startswith("data/interim/synthetic/images/").all()
    assert not (project / "data" / "raw" / "synthetic").exists()  # data/raw belongs to the download stage


def test_second_run_gives_the_same_outputs(project):
    write_params(project, {"pretrain": "synthetic", "finetune": "synthetic", "evaluate": ["synthetic"]})
    assert prepare.main([]) == 0
    first = pd.read_parquet(project / "data/interim/synthetic/manifest.parquet")
    image = project / first["path"].iloc[0]
    before = image.read_bytes()
    assert prepare.main([]) == 0
    pd.testing.assert_frame_equal(first, pd.read_parquet(project / "data/interim/synthetic/manifest.parquet"))
    assert image.read_bytes() == before


def test_missing_raw_folder_says_to_run_download(project, capsys):
    write_params(project, {"pretrain": "synthetic", "finetune": "utkface", "evaluate": ["utkface"]})
    assert prepare.main([]) == 2
    error = capsys.readouterr().err
    assert "data/raw/utkface not found" in error and "dvc repro download" in error and "UTKFace.tar.gz" in error


def test_bad_options_fail_before_any_work(project, capsys):
    datasets = {"mine": {"adapter": "folder", "sources": [], "options": {"csv_file": "labels.csv"}}}
    write_params(project, {"pretrain": "synthetic", "finetune": "synthetic", "evaluate": ["mine"]}, datasets)
    assert prepare.main([]) == 2
    assert "datasets.mine.options.csv_file: unknown option" in capsys.readouterr().err
    assert not (project / "data" / "interim").exists()


def test_only_prepares_the_named_datasets(project, capsys):
    write_utkface(project / "data" / "raw")
    write_params(project, {"pretrain": "synthetic", "finetune": "synthetic", "evaluate": ["synthetic"]})
    assert prepare.main(["--only", "utkface"]) == 0
    assert sorted(p.name for p in (project / "data" / "interim").iterdir()) == ["utkface"]
    assert prepare.main(["--only", "nonesuch"]) == 2
    assert "--only nonesuch: not a dataset" in capsys.readouterr().err
