"""The report's section "Skin colour and photo quality" (reporting/skin_section.py) on a toy project:
two experiments' predictions with a planted skin-colour effect, a split manifest with crops, and a
measurement table in the measure stage's contract."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from stages.lib.core.params import load_params
from stages.lib.core.schema import MANIFEST_COLUMNS
from stages.lib.evaluation.results import skin_breakdown_only, write_skin_analyses
from stages.lib.evaluation.skin_analysis import SkinAnalysis
from stages.lib.reporting.markdown import Markdown
from stages.lib.reporting.skin_section import (_shown, focus_table, gap_sentence, headline_lines, held_before,
                                                quality_verdict, skin_section, skin_study, worst_misgendered)
from tests.evaluation.skin_frames import planted
from tests.reporting.test_report import ROOT


def toy_project(folder, *, measured: bool = True, n: int = 600):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["bootstrap"] = 30
    raw["roles"] = {"pretrain": "wiki", "finetune": "utkface", "evaluate": ["utkface"]}
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    predictions, measurements = planted(n=n, skin_effect=1.5, seed=3)
    predictions = predictions.assign(id=predictions["id"].str.replace("toy/", "utkface/"), dataset="utkface")
    measurements = measurements.assign(id=predictions["id"])
    for experiment, noise in (("published", 2.0), ("retrained", 1.0)):
        path = folder / "reports" / "experiments" / experiment / "predictions.parquet"
        path.parent.mkdir(parents=True)
        rng = np.random.default_rng(noise.__hash__())
        predictions.assign(age_pred=predictions["age_pred"] + rng.normal(0, noise, len(predictions)),
                           experiment=experiment).to_parquet(path)
    crops = folder / "data" / "crops"
    crops.mkdir(parents=True)
    paths = []
    for position, lightness in enumerate(measurements["skin_lightness"]):
        path = crops / f"{position}.png"
        if position < 300:
            Image.new("RGB", (24, 24), (int(2.4 * lightness),) * 3).save(path)
        paths.append(str(path.relative_to(folder)))
    manifest = predictions[["id", "dataset", "age", "gender", "race"]].assign(
        path=paths, identity=None, box=None, cropped=True, source_meta="", split="test", crop_path=paths)
    manifest_path = folder / "data" / "processed" / "manifest.parquet"
    manifest_path.parent.mkdir(parents=True)
    manifest[MANIFEST_COLUMNS + ["split", "crop_path"]].to_parquet(manifest_path)
    if measured:
        (folder / "data" / "measurements").mkdir(parents=True)
        measurements.to_parquet(folder / "data" / "measurements" / "measurements.parquet")
    evaluate_skin(load_params())


def evaluate_skin(params):
    """What evaluate@<experiment> writes for the section: each experiment's analysis per test set."""
    for name, spec in params.experiments.items():
        path = params.paths.experiments / name / "predictions.parquet"
        if path.exists():
            write_skin_analyses(pd.read_parquet(path).query("split == 'test'"), params, path.parent / "evaluation",
                                breakdown_only=skin_breakdown_only(name, spec))


def test_the_section_reads_every_model_against_skin_colour_and_photo_quality(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy_project(tmp_path)
    params = load_params()
    study = skin_study(params)
    assert {(run.model, run.dataset) for run in study.runs} == {("published", "utkface"), ("retrained", "utkface")}
    assert all(run.in_sample is False for run in study.runs)       # utkface: no published_in_sample
    md = Markdown(params.paths.reports)
    skin_section(md, params, study, dataset="utkface")
    text = md.text()
    assert text.index("**Findings**") < text.index("What the adjustment can and cannot mean")
    assert "move with skin L* within" in text and "with photo quality also held equal" in text
    assert "’s wrong gender calls exceed" in text
    assert "Race × gender gaps against the best-served group" in text and "| before quality [CI] |" in text
    assert "per 10 L* [CI]" in text and "AUC [CI]" in text
    for figure in ("skin_gender_accuracy", "skin_gender_reliability", "skin_misgendered_contact_sheet"):
        assert (params.paths.figures / f"{figure}.png").exists(), figure
    assert "| L* | paper | 60 |" in text and "| h* | paper | 55 |" in text
    written = params.paths.experiments / "retrained" / "evaluation" / "utkface" / "skin" / "skin_groups.csv"
    assert written.exists() and not (params.paths.reports / "skin" / "retrained").exists()   # read, not copied
    groups = pd.read_csv(written)
    darkest = groups[groups["attribute"] == "lightness_quintile"].iloc[0]
    assert darkest["group"].startswith("< ") and darkest["mae"] > groups[groups["attribute"] == "all"]["mae"].item()
    assert headline_lines(study)[0].startswith("Skin colour and photo quality: **")
    # the most misgendered group gets its own answer, model by model: explained by photo quality or not
    worst, _ = worst_misgendered(study, study.runs, params.evaluate.min_group_size)
    focus = focus_table(study, worst, study.runs)
    assert f"The most misgendered group, {worst.split('*')[0].capitalize()}" in text
    assert set(focus["model"]) == {"published", "retrained"}
    assert set(focus["explained by photo quality?"]) <= {
        "no gap to explain (Holm)", "no: it remains", "its gap is no longer distinguishable from zero"}
    assert focus["per 10 L* [CI]"].notna().all() and focus["before quality [CI]"].str.contains("Holm p").all()


def test_a_gap_is_said_to_go_away_only_if_it_survived_holm_before_the_adjustment():
    gaps = pd.DataFrame({"small": [False, False, False, True], "before": [10.0, 8.0, 5.0, 20.0],
                         "significant_before": [True, True, False, True], "significant": [True, False, False, False]})
    held = held_before(gaps)
    assert list(held.index) == [0, 1]            # not the one that was never distinguishable, nor a small group
    assert [quality_verdict(row) for _, row in gaps.iloc[:3].iterrows()] == [
        "no: it remains", "its gap is no longer distinguishable from zero", "no gap to explain (Holm)"]


def gap_row(**fields) -> pd.Series:
    row = {"outcome": "wrong_gender", "before": 0.12, "before_ci_low": 0.05, "before_ci_high": 0.19, "after": 0.11,
           "after_ci_low": 0.04, "after_ci_high": 0.18, "significant": True, "significant_before": True, "small": False,
           "model": "published", "dataset": "utkface", "group": "black*female", "reference": "white*male",
           "before_p_holm": 0.001, "after_p_holm": 0.002, "in_sample": False, "same_as": None, "minors": False}
    return pd.Series({**row, **fields})


def test_the_groups_of_a_test_set_of_children_are_girls_and_boys():
    assert "Black women’s wrong gender calls exceed White men’s" in gap_sentence(gap_row())
    assert "Black girls’ wrong gender calls exceed White boys’" in gap_sentence(gap_row(minors=True))


def test_a_model_whose_answers_are_an_experiments_is_said_once_under_the_experiments_name():
    table = pd.DataFrame([gap_row(), gap_row(model="faceres", same_as="published"), gap_row(model="gear")])
    assert list(_shown(table, ["published", "faceres", "gear"])["model"]) == ["published", "gear"]
    assert list(_shown(table, ["faceres"])["model"]) == ["faceres"]   # said where published is not shown


def test_an_in_sample_run_is_flagged_and_kept_out_of_the_findings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy_project(tmp_path, n=300)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["datasets"]["utkface"]["published_in_sample"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params()
    study = skin_study(params)
    assert {run.model for run in study.runs if run.in_sample} == {"published"}
    md = Markdown(params.paths.reports)
    skin_section(md, params, study, dataset="utkface")
    findings = md.text().split("What the adjustment")[0]
    assert "**published on" not in findings and "**retrained on utkface**" in findings
    assert "utkface (in-sample)" in md.text()


def test_without_measurements_the_section_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy_project(tmp_path, measured=False, n=40)
    params = load_params()
    assert skin_study(params) is None and headline_lines(None) == []
    md = Markdown(params.paths.reports)
    skin_section(md, params, None, dataset="utkface")
    assert "`dvc repro measure`" in md.text()


def test_the_section_reads_the_analyses_the_evaluate_stage_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy_project(tmp_path, n=200)
    params = load_params()
    study = skin_study(params)
    written = SkinAnalysis.read(params.paths.experiments / "retrained" / "evaluation" / "utkface" / "skin")
    pd.testing.assert_frame_equal(study.analyses[("retrained", "utkface")].slopes, written.slopes)
    shown = skin_study(params, ["retrained"])
    assert shown.analyses[("published", "utkface")].slopes.empty
    assert not shown.analyses[("retrained", "utkface")].slopes.empty
    shutil.rmtree(params.paths.experiments / "retrained" / "evaluation")
    with pytest.raises(FileNotFoundError, match="evaluate@<experiment>"):
        skin_study(params)
