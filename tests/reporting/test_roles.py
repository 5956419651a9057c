"""Which experiment each section of the report describes (reporting/roles.py): chosen by its role and
on the val split, never by its test score, and never a control."""

import numpy as np
import pandas as pd

from stages.lib.core.params import Experiment
from stages.lib.evaluation.intervals import Gap
from stages.lib.reporting.roles import (Selection, controls, outsider_kinds, published_model, select_best,
                                        selection_sentence, study_models, with_outsiders)
from tests.reporting.toy_experiments import BOOT, params, predictions


# ----- roles: the best model is chosen on val and is never a control ----------------------------------

def test_controls_are_marked_in_params_and_are_never_candidates():
    experiments = params().experiments
    assert set(controls(experiments)) == {"retrained_random", "naive_split", "study_protocol"}
    candidates = study_models(experiments)
    assert "naive_split" not in candidates and "published" not in candidates and "balanced" not in candidates
    assert {"retrained", "oversample_x2", "oversample_x3"} <= set(candidates)


def test_a_control_with_the_lowest_test_mae_never_becomes_best():
    experiments = params().experiments
    frames = {"retrained": predictions(6, 6, seed=1), "oversample_x2": predictions(7, 7, seed=2),
              "naive_split": predictions(1, 1, seed=3)}          # the control wins on both splits
    selection = select_best(frames, study_models(experiments), "utkface", BOOT)
    assert selection.best == "retrained" and selection.runner_up == "oversample_x2"


def test_best_is_chosen_on_val_not_test_with_the_interval_of_its_lead():
    frames = {"retrained": predictions(3, 9, seed=1), "oversample_x2": predictions(8, 2, seed=2)}
    selection = select_best(frames, ["retrained", "oversample_x2"], "utkface", BOOT)
    assert selection.best == "retrained"                         # best on val, worst on test
    assert selection.shared_faces == 100 and selection.lead.difference < 0
    assert selection.lead.difference_ci_low <= selection.lead.difference <= selection.lead.difference_ci_high
    assert selection.lead_supported()
    close = select_best({"a": predictions(5, 5, seed=1), "b": predictions(5, 5, seed=2)}, ["a", "b"], "utkface", BOOT)
    assert not close.lead_supported()                            # no "better" where the interval holds 0
    assert select_best({"a": predictions(5, 5, seed=1).query("split == 'test'")}, ["a"], "utkface", BOOT) is None


# ----- roles on small hand-made fixtures ----------------------------------------------------------------

def test_the_published_model_is_the_first_experiment_that_keeps_the_published_heads():
    baseline = Experiment(init="published", protocol="none")
    retrained, control = Experiment(init="backbone"), Experiment(init="random", control=True)
    experiments = {"retrained": retrained, "published": baseline, "copy": baseline, "naive": control}
    assert published_model(experiments) == "published"
    assert published_model({"retrained": retrained}) is None
    assert study_models(experiments) == ["retrained"] and controls(experiments) == ["naive"]


def _rows(errors: dict, *, split: str = "val", dataset: str = "utkface") -> pd.DataFrame:
    """One row per face id with the given absolute error (age 40)."""
    return pd.DataFrame({"id": list(errors), "dataset": dataset, "split": split, "age": 40.0,
                         "age_pred": [40.0 + e for e in errors.values()]})


def test_val_mae_counts_only_the_datasets_val_faces_with_a_prediction_and_the_lead_only_shared_faces():
    a = pd.concat([_rows({"f1": 1, "f2": -1, "f3": 1, "f4": -1}),
                   _rows({"f1": 0, "f2": 0}, split="test"),            # its test split: never looked at
                   _rows({"g1": 0}, dataset="fairface"),               # another set's val faces
                   _rows({"f9": 0}).assign(age_pred=np.nan)])          # no prediction: not a zero error
    b = _rows({"f1": 2, "f2": 2, "f3": -2, "f4": 2, "f5": 2})          # f5: a face a did not predict
    selection = select_best({"a": a, "b": b, "c": None}, ["b", "a", "c"], "utkface", BOOT)
    assert (selection.best, selection.runner_up) == ("a", "b")
    assert selection.val_mae == {"a": (1.0, 4), "b": (2.0, 5)}
    assert selection.shared_faces == 4 and selection.lead.difference == -1.0
    assert selection.lead_supported()                                  # 1 year lower on every shared face


def test_a_tie_goes_to_the_candidate_listed_first_and_a_lone_candidate_has_no_lead():
    same = _rows({"f1": 1, "f2": 3})
    assert select_best({"x": same, "y": same}, ["y", "x"], "utkface", BOOT).best == "y"
    alone = select_best({"x": same, "y": same.iloc[:0]}, ["x", "y"], "utkface", BOOT)
    assert (alone.best, alone.runner_up, alone.lead, alone.shared_faces) == ("x", None, None, 0)


def _selection(lead: Gap | None, runner_up: str | None = "b") -> Selection:
    return Selection("a", runner_up, {"a": (5.123, 1200), "b": (5.456, 1100)}, lead, 1000, "utkface")


def test_the_selection_sentence_says_lower_only_where_the_interval_lies_below_zero():
    supported = selection_sentence(_selection(Gap(-0.33, -0.5, -0.1, 0.9, 0.85, 0.98)), ["naive_split", "balanced"])
    assert supported.startswith("**a** is the study's model with the lowest MAE on utkface's val split "
                                "(5.12 years, n=1,200); chosen there, never on the test split. Runner-up: b (5.46).")
    assert "on the 1,000 val faces both predicted: -0.33 [-0.50, -0.10] years (lower)." in supported
    assert supported.endswith("Not candidates: naive_split, balanced (controls and mitigations are not the "
                              "study's models).")
    unclear = selection_sentence(_selection(Gap(-0.33, -0.6, 0.1, 0.9, 0.8, 1.02)), [])
    assert "(not shown to be lower: the interval holds 0, so either would do)" in unclear and "Not candidates" not in unclear
    bare = selection_sentence(_selection(Gap(-0.33, np.nan, np.nan, 0.9, np.nan, np.nan)), [])
    assert bare.endswith("Best − runner-up: -0.33 years, without an interval.")
    assert "Runner-up" not in selection_sentence(_selection(None, runner_up=None), [])


def test_a_control_or_mitigation_below_the_best_on_val_is_named_with_its_paired_interval():
    frames = {"retrained": predictions(6, 6, seed=1), "oversample_x2": predictions(7, 5, seed=2),
              "group_dro": predictions(3, 6, seed=3), "naive_split": predictions(9, 1, seed=4),
              "published": predictions(1, 1, seed=5)}
    experiments = {name: e for name, e in params().experiments.items() if name in frames}
    selection = with_outsiders(select_best(frames, study_models(experiments), "utkface", BOOT), frames,
                               outsider_kinds(experiments), BOOT)
    assert selection.best == "retrained" and selection.candidates == ("retrained", "oversample_x2")
    assert [o.name for o in selection.outsiders] == ["group_dro"]    # the naive split's val MAE is higher; published is no rival
    text = selection_sentence(selection, ["group_dro", "naive_split"])
    assert "study's model (candidates: retrained, oversample_x2) with the lowest MAE" in text
    assert "**group_dro** (a mitigation, not a candidate) has a lower val MAE than retrained" in text
    assert "group_dro − retrained on the 100 val faces both predicted: -" in text
    assert "lower: the best of the study's models is not the best head this run trained)." in text
