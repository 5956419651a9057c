"""The report's mitigation section (reporting/mitigation.py): the reference shown as `reference`, never
as a difference from itself; changes called a rise or a fall only where their paired interval lies on
one side of zero; stalled refits flagged; panels with nothing to draw left out."""

import numpy as np
import pandas as pd

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.worst_groups import summarise_experiments
from stages.lib.reporting.markdown import Markdown
from stages.lib.reporting.mitigation import (MitigationInputs, change_phrase, figure_panels, fixed_group_changes,
                                             mitigation_section, probe_confounds, save_figure, signed_change,
                                             stall_flags, stalled_heads, summary_display, tradeoff_figure, verdict)
from tests.evaluation.test_worst_groups import faces

BOOT = Bootstrap(resamples=400, confidence=0.95, seed=1)


# ----- mitigation: reference, stalled refits, the reference's worst group ------------------------------

def _faces(mae_by_group: dict, seed: int, n: int = 40) -> pd.DataFrame:
    rng, rows = np.random.default_rng(seed), []
    for (race, gender), mae in mae_by_group.items():
        for i in range(n):
            age = 40.0
            rows.append({"id": f"{race}{gender}{i}", "dataset": "utkface", "split": "test", "age": age,
                         "age_pred": age + mae * rng.choice([-1, 1]), "race": race, "gender": gender,
                         "gender_pred": gender})
    return pd.DataFrame(rows)


def test_mitigation_table_shows_the_reference_and_the_change_at_its_worst_group():
    reference = _faces({("black", "female"): 10.0, ("white", "male"): 2.0, ("asian", "male"): 3.0}, seed=0)
    moved = _faces({("black", "female"): 4.0, ("white", "male"): 2.0, ("asian", "male"): 6.0}, seed=0)
    summary, _ = summarise_experiments({"retrained": reference, "group_dro": moved}, "retrained", BOOT, 30)
    fixed = fixed_group_changes({"retrained": reference, "group_dro": moved}, "black*female", "mae", BOOT)
    assert fixed["group_dro"].startswith("-6.00")            # black women, not group_dro's own worst (asian men)
    table = summary_display(summary, "mae", 0.95, fixed={("utkface", "group_dro"): fixed["group_dro"]},
                            flags={"group_dro": "stalled"})
    by = table.set_index("experiment")
    assert (by.loc["retrained"].filter(like="Δ") == "reference").all()
    assert "+0.00 [+0.00, +0.00]" not in table.to_string()
    assert by.loc["group_dro", "Δ at the reference's worst group"].startswith("-6.00")
    assert by.loc["group_dro", "training"] == "stalled" and by.loc["retrained", "training"] == ""


def test_a_refit_whose_best_epoch_is_its_first_is_flagged():
    stalled = pd.DataFrame({"epoch": range(1, 22), "val_age_loss": [1.0] + [1.1] * 20,
                            "val_gender_loss": np.linspace(1, 0.5, 21)})
    moving = pd.DataFrame({"epoch": range(1, 22), "val_age_loss": np.linspace(2, 1, 21)})
    flags = stall_flags({"last_layer": stalled, "balanced": moving, "absent": None})
    assert set(flags) == {"last_layer"} and flags["last_layer"].startswith("age:") and "of 21" in flags["last_layer"]
    shorter = stalled.assign(val_age_loss=[1.0, 1.2, 1.3] + [np.nan] * 18)       # a refit phase of 3 epochs
    assert "first of 3" in stall_flags({"last_layer": shorter})["last_layer"]


def test_mitigation_figure_drops_empty_panels():
    reference = _faces({("black", "female"): 10.0, ("white", "male"): 2.0}, seed=0)
    banded = reference.assign(age=np.nan, dataset="fairface")     # no MAE: its MAE panel has nothing to draw
    summary, _ = summarise_experiments({"retrained": pd.concat([reference, banded])}, "retrained", BOOT, 30)
    figure = tradeoff_figure(figure_panels(summary, pd.DataFrame(), "vgg"), 0.95)
    titles = [axis.get_title() for axis in figure.axes]
    assert len(figure.axes) == 3 and not any("fairface: MAE" in t for t in titles)


# ----- the report section ------------------------------------------------------------------------------

def test_change_phrases_claim_only_what_the_interval_supports():
    assert change_phrase("worst_group_mae", -2.0, -3.0, -1.0) == "the worst group's MAE falls by 2.00 years [-3.00, -1.00]"
    assert change_phrase("mae_gap", 1.0, 0.5, 1.5) == "the race × gender MAE gap widens by 1.00 years [+0.50, +1.50]"
    assert "no change shown" in change_phrase("accuracy_gap", -0.02, -0.05, 0.01)
    assert "[-5.00, +1.00]" in change_phrase("accuracy_gap", -0.02, -0.05, 0.01)   # accuracies in points
    assert signed_change(0.8234, 0.64, 0.98) == "+0.82 [+0.64, +0.98]"
    assert signed_change(0.015, -0.003, 0.027, as_points=True) == "+1.5 pts [-0.3, +2.7]"


def test_the_section_has_the_figure_tables_and_a_sentence_per_method(tmp_path):
    reference = faces({("black", "female"): 10.0}, {("black", "male"): 10}, seed=0)
    fixed = faces({("black", "female"): 4.0}, {("black", "male"): 10}, seed=0)
    summary, _ = summarise_experiments({"retrained": reference, "group_dro": fixed}, "retrained", BOOT, 30)
    probes = pd.DataFrame([{"backbone": "vgg", "attribute": "race", "dataset": "utkface", "n": 165, "classes": 3,
                            "chance": 1 / 3, "balanced_accuracy": 0.9, "ci_low": 0.85, "ci_high": 0.95}])
    balanced, _ = summarise_experiments({"plain": reference, "balanced": fixed}, "plain", BOOT, 30)
    balanced = balanced.assign(backbone="vgg")
    figure = tradeoff_figure(figure_panels(summary, balanced, "vgg"), 0.95)
    assert len(figure.axes) == 4                                    # (experiments, vgg plain/balanced) x (MAE, gender)
    path = save_figure(figure, tmp_path / "mitigation.png")
    md = Markdown(tmp_path)
    mitigation_section(md, summary, probes, balanced, inputs=MitigationInputs(path, "vgg", 0.95))
    text = md.text()
    assert "![Overall against worst-group error" in text and "(mitigation.png)" in text
    assert "**group_dro** on utkface, against retrained: " in text and "the worst group's MAE falls by" in text
    assert "the worst group's gender accuracy: no change shown" in text
    assert "a linear probe reads race at 90.0% balanced accuracy [85.0%, 95.0%] (chance 33.3%): the embedding holds it" in text
    assert "a gap remains" in text
    age_table = summary_display(summary, "mae", 0.95)
    assert age_table["worst group [95% CI]"].str.endswith("(black*female)").all()
    assert verdict(summary[summary["experiment"] == "group_dro"]).startswith("**group_dro**")


# ----- more of the section on small fixtures ------------------------------------------------------------

def test_an_experiment_that_predicted_what_the_reference_did_is_said_to_be_so_not_given_a_zero_change():
    reference = faces({("black", "female"): 10.0}, seed=0)
    banded = reference.assign(dataset="fairface", age_band_source="20-29")   # no MAE on a set labelled with bands
    summary, _ = summarise_experiments({"retrained": pd.concat([reference, banded]),
                                        "copy": pd.concat([reference, banded])}, "retrained", BOOT, 30)
    ages = summary_display(summary, "mae", 0.95, fixed={("utkface", "copy"): "-1.00 [-2.00, -0.50]"})
    assert ages["test set"].tolist() == ["utkface", "utkface"]                # fairface: no MAE row, not an empty one
    changes = ages.set_index("experiment").filter(like="Δ")
    assert (changes.loc["retrained"] == "reference").all()
    assert (changes.loc["copy"] == "same predictions as retrained").all()
    genders = summary_display(summary, "gender", 0.95)
    assert genders["test set"].tolist() == ["utkface", "utkface", "fairface", "fairface"]
    assert genders["overall [95% CI]"].str.endswith("%]").all()


def test_a_change_without_an_interval_or_without_a_pair_claims_nothing():
    assert change_phrase("mae", 0.5, np.nan, np.nan) == "overall MAE: +0.50 years, without an interval"
    assert change_phrase("mae", np.nan, np.nan, np.nan) == "overall MAE: no paired interval"
    assert change_phrase("gender_accuracy", 0.03, 0.01, 0.05) == "overall gender accuracy rises by 3.00 points [+1.00, +5.00]"
    assert (signed_change(np.nan, 0, 1), signed_change(-0.5, np.nan, np.nan)) == ("", "-0.50")


def _rows(experiment: str, worst: str, change: float) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "utkface", "experiment": experiment,
                         "statistic": ["mae", "worst_group_mae"], "value": [6.0, 9.0], "worst_group": [None, worst],
                         "change": change, "change_ci_low": change - 0.5, "change_ci_high": change + 0.5})


def test_the_verdict_says_when_the_worst_group_is_another_than_the_references():
    same = verdict(_rows("balanced", "black*female", -1.0), {"worst_group_mae": "black*female"})
    assert same == ("**balanced** on utkface, against retrained: overall MAE falls by 1.00 years [-1.50, -0.50]; "
                    "the worst group's MAE falls by 1.00 years [-1.50, -0.50].")
    other = verdict(_rows("balanced", "asian*male", -1.0), {"worst_group_mae": "black*female"})
    assert "(its worst group is asian*male, retrained's black*female: two groups;" in other
    unpaired = verdict(_rows("naive_split", "asian*male", np.nan))
    assert unpaired == ("**naive_split** on utkface: tested on other faces than retrained, so no paired change "
                        "can be given.")


def test_the_fixed_group_change_pairs_the_groups_faces_and_leaves_out_experiments_missing_one():
    reference = faces({("black", "female"): 10.0}, seed=0)
    helped = faces({("black", "female"): 7.0}, seed=0)
    fewer = helped.drop(index=helped.index[helped["id"] == "black-female-0"])   # lacks one of the group's faces
    other_group = helped.drop(index=helped.index[helped["id"] == "white-male-0"])  # lacks a face of another group
    changes = fixed_group_changes({"retrained": reference, "helped": helped, "fewer": fewer, "other": other_group},
                                  "black*female", "mae", BOOT)
    assert set(changes) == {"helped", "other"} and changes["helped"].startswith("-3.00 [")
    assert fixed_group_changes({"helped": helped}, "black*female", "mae", BOOT) == {}


def test_a_refit_without_validation_losses_is_not_flagged_and_a_single_loss_is_called_heads():
    assert stalled_heads(None) == {} and stalled_heads(pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0]})) == {}
    assert stalled_heads(pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [1.0, 1.2, 1.1]})) == {"heads": 3}
    assert stalled_heads(pd.DataFrame({"epoch": [1], "val_loss": [1.0]})) == {}          # one epoch: nothing to judge


def test_an_empty_summary_says_to_run_the_evaluate_stages(tmp_path):
    md = Markdown(tmp_path)
    mitigation_section(md, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), inputs=MitigationInputs(None, "vgg", 0.95))
    assert md.text().endswith("No experiment has a worst_groups.csv yet: run the evaluate stages.\n")


def test_probe_confounds_name_what_besides_the_embedding_differs():
    specs = {"vgg": {"spec": {"name": "vgg_face", "input_size": 224, "alignment": "none"}},
             "wrn": {"spec": {"name": "wide_resnet", "input_size": 64, "alignment": "none"}}}
    confounds = probe_confounds(specs, "vgg_face")
    assert confounds[0].startswith("input size: vgg 224 px, wrn 64 px")
    assert len(confounds) == 2 and confounds[1].startswith("vgg also defines the split's look-alike clusters (vgg_face)")
    alike = {label: {"spec": {**spec["spec"], "input_size": 224}} for label, spec in specs.items()}
    assert probe_confounds(alike, None) == ()


def test_a_change_whose_interval_excludes_zero_is_called_only_if_it_survives_the_adjustment():
    survives = pd.Series({"change_significant": True, "change_p_adjusted": 0.0004, "change_tests": 11})
    assert change_phrase("mae_gap", -2.0, -3.0, -1.0, adjusted=survives) == (
        "the race × gender MAE gap narrows by 2.00 years [-3.00, -1.00] (adjusted p < 0.001 over 11 comparisons)")
    falls = pd.Series({"change_significant": False, "change_p_adjusted": 0.068, "change_tests": 11})
    phrase = change_phrase("mae_gap", -0.8, -1.5, -0.1, adjusted=falls)
    assert "narrows" not in phrase and phrase == (
        "the race × gender MAE gap: no change shown after adjusting for the 11 comparisons "
        "(-0.80 years, raw [-1.50, -0.10], adjusted p 0.068)")
    # an interval holding 0 needs no adjustment to say nothing
    assert "holds 0" in change_phrase("mae_gap", -0.2, -1.0, 0.5, adjusted=falls)
    # where the row says how it was adjusted, the sentence names it: FDR is called FDR
    holm = survives.copy()
    holm["change_adjustment"] = "holm"
    assert change_phrase("mae_gap", -2.0, -3.0, -1.0, adjusted=holm).endswith(
        "(Holm-adjusted p < 0.001 over 11 comparisons)")
    fdr = pd.Series({"change_significant": True, "change_p_adjusted": 0.0496, "change_tests": 12,
                     "change_adjustment": "bh"})
    assert change_phrase("mae_gap", -2.0, -3.0, -1.0, adjusted=fdr).endswith(
        "(FDR-adjusted p 0.0496 over 12 comparisons)")   # four decimals on the threshold


def test_the_overall_against_worst_panels_print_no_label_on_another():
    """Four experiments on one spot: their labels are moved until no two texts of the figure meet."""
    from stages.lib.reporting.figures import overlapping_texts

    rows = [{"experiment": name, "dataset": "utkface", "statistic": statistic, "value": value, "ci_low": value - 0.2,
             "ci_high": value + 0.2}
            for name in ("retrained", "balanced", "group_dro", "last_layer")
            for statistic, value in (("mae", 6.0), ("worst_group_mae", 9.0))]
    figure = tradeoff_figure({"utkface": pd.DataFrame(rows)}, 0.95)
    assert len(figure.axes[0].texts) == 4
    assert overlapping_texts(figure) == []
