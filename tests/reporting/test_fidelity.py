"""Where the pipeline follows the study, checked against the study's own published prediction tables
(../shared/reference/published-predictions beside the repo; skipped, saying so, when absent)."""

from pathlib import Path

import pytest
import yaml

from stages.lib.core.params import validate
from stages.lib.evaluation.predictions import normalise_predictions, read_table

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT.parent / "shared" / "reference" / "published-predictions"


def published(name: str):
    path = PUBLISHED / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the study's published prediction tables live in "
                    "../shared/reference/published-predictions beside the repo")
    return read_table(path)


def full_profile():
    return validate({**yaml.safe_load((ROOT / "params.yaml").read_text()), "profile": "full"})


@pytest.mark.shared
@pytest.mark.parametrize("name", ["utk_uncropped_age_predictions.csv", "error_wiki_test_utk_adam.csv"])
def test_the_in_the_wild_age_floor_is_the_studys(name):
    """The study's in-the-wild tables start at 17 (no 16-year-olds at all): so does our utkface_wild."""
    ages = published(name)["age"]
    params = full_profile()
    assert int(ages.min()) == params.datasets["utkface_wild"].options["min_age"] == 17


@pytest.mark.shared
def test_the_studys_young_women_are_utkfaces_men():
    """Its R7 says young women are over-estimated more than men. Its notebooks decode UTKFace's gender
    code 0 as woman, but 0 is male: read with UTKFace's coding, its own retrained predictions show the
    young men (code 0) over-estimated more."""
    table = published("error_wiki_test_utk_adam.csv")
    frame = normalise_predictions(table, {"age_pred": "Weighted_Avg"}, gender_codes="utkface").frame
    assert dict(zip(table["gender"].head(3), frame["gender"].head(3))) == {0.0: "male"}  # code 0 read as male
    young = frame[frame["age"].between(17, 30)]
    signed = (young["age_pred"] - young["age"]).groupby(young["gender"]).mean()
    assert signed["male"] > signed["female"] + 1.0


# ---------------------------------------------------------------- what the report says about it


def test_the_published_models_wiki_figures_are_marked_in_sample_and_imdb_is_the_held_out_one():
    from stages.lib.reporting.fidelity import in_sample_note, test_set_label

    params = full_profile()
    assert test_set_label(params, "published", "wiki") == "wiki (in-sample)"
    assert test_set_label(params, "vgg_face", "wiki") == "wiki"  # retrained heads never saw wiki
    assert test_set_label(params, "published", "imdb") == "imdb"
    assert test_set_label(params, "published", "all") == "all (holds in-sample wiki)"
    note = in_sample_note(params, ["wiki", "imdb", "utkface_wild"])
    assert "70%" in note and "imdb was never used by those weights" in note
    assert in_sample_note(params, ["utkface_wild"]) is None


def test_the_protocol_table_sets_the_studys_training_against_this_runs():
    from stages.lib.reporting.fidelity import protocol_table

    table = protocol_table(full_profile()).set_index("")
    assert table.loc["optimiser", "the study"].startswith("Adam, learning rate 1e-3")
    assert table.loc["optimiser", "this run"] == "Adam, learning rate 0.0001"
    assert table.loc["checkpoint kept", "the study"] == "the lowest loss on the test split"
    assert table.loc["split", "this run"] == "60% train / 10% val / 30% test"
    assert "utkface_wild 17–100" in table.loc["ages", "this run"] and "utkface 1–100" in table.loc["ages", "this run"]
    assert "dlib descriptors" in table.loc["one person on both sides", "this run"]


def test_the_report_shows_how_much_picking_on_test_flatters(tmp_path):
    import json

    from stages.lib.reporting.fidelity import protocol_section, selection_table
    from stages.lib.reporting.markdown import Markdown

    params = full_profile()
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"models": tmp_path})})
    assert selection_table(params).empty
    live = tmp_path / "study_protocol" / "live"
    live.mkdir(parents=True)
    selection = {"age": {"metric": "mae", "epoch_picked_on_test": 180, "epoch_picked_on_val": 140,
                         "test_mae_picked_on_test": 8.1, "test_mae_picked_on_val": 8.45, "flattery": 0.35},
                 "gender": {"metric": "accuracy", "epoch_picked_on_test": 90, "epoch_picked_on_val": 95,
                            "test_accuracy_picked_on_test": 0.9, "test_accuracy_picked_on_val": 0.89,
                            "flattery": 0.01}}
    (live / "metrics.json").write_text(json.dumps({"init": "backbone", "protocol": "study", "selection": selection}))
    rows = selection_table(params).set_index("head")
    assert rows.loc["age", "checkpoint picked on test (the study's)"] == "8.10 (epoch 180)"
    assert rows.loc["age", "flattery"] == "0.35 years" and rows.loc["gender", "flattery"] == "1.0 pts"
    md = Markdown(tmp_path)
    protocol_section(md, params)
    assert "8.45 (epoch 140)" in md.text() and "not measured" not in md.text()


def r7_frame(men_over: float, women_over: float):
    import numpy as np
    import pandas as pd

    ages = np.tile(np.arange(17, 60), 20)
    gender = np.where(np.arange(len(ages)) % 2, "female", "male")
    offset = np.where(ages <= 30, np.where(gender == "male", men_over, women_over), 0.0)
    return pd.DataFrame({"age": ages, "gender": gender, "age_pred": ages + offset})


@pytest.mark.parametrize("men, women, says", [
    (8.0, 6.0, "young men are over-estimated more, as the study's predictions show once decoded right"),
    (5.0, 7.0, "young women are over-estimated more, as the study's text says, against its own predictions"),
    (6.0, 6.0, "neither gender is shown to be over-estimated more: the interval holds zero"),
])
def test_the_report_says_where_our_r7_differs_from_the_studys_text_and_why(men, women, says):
    from stages.lib.evaluation.groups import evaluate
    from stages.lib.evaluation.intervals import Bootstrap
    from stages.lib.reporting.fidelity import gender_coding_section
    from stages.lib.reporting.markdown import Markdown

    params = full_profile()
    frame = r7_frame(men, women).assign(gender_pred=lambda f: f["gender"], gender_prob_female=0.5, race=None)
    evaluation = evaluate(frame, params.age_bands, Bootstrap(resamples=10), 30, series="x")
    md = Markdown(Path("."))
    gender_coding_section(md, params, "oversample_x3", "utkface_wild", test_rows=frame, evaluation=evaluation, bootstrap=Bootstrap(resamples=200))
    text = md.text()
    assert "decode gender code 0 as woman" in text and says in text
    assert f"{men:.2f} years for men and {women:.2f} for women; men − women {men - women:+.2f}".replace("+", "") in text
    assert "R11 here" in text and "may be swapped" in text


def test_identical_splits_are_said_not_compared():
    from stages.lib.reporting.comparisons import leakage_section
    from stages.lib.reporting.markdown import Markdown

    summary = {"clusters": None, "clusters_skipped": None,
               "datasets": {"utkface": {"naive_equals_grouped": True}}}
    md = Markdown(Path("."))
    leakage_section(md, summary, {"utkface": object()}, {"utkface": object()})
    text = md.text()
    assert "naive split is identical to the grouped one" in text and "nothing to compare" in text
    assert "by chance alone" not in text and "|" not in text  # no comparison table
    skipped = {**summary, "clusters_skipped": "split.clusters asks for dlib_resnet, but the identity stage made no pass"}
    md = Markdown(Path("."))
    leakage_section(md, skipped, None, None)
    assert "identity stage made no pass" in md.text()
