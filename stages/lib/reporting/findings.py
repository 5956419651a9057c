"""The report's first screen: what was run, what it found, and the study's figures beside this run's.

Every finding is a sentence generated from an interval and written only where the interval supports
it; where the evaluate stage wrote multiplicity-adjusted columns (gaps.csv / significance.csv
`significant`, band_changes.csv `p_adjusted`), a group difference is claimed only when the adjusted
test holds, and the sentence says which. What could not be said is listed as such, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.params import Params
from stages.lib.evaluation.groups import Evaluation
from stages.lib.evaluation.source_bands import ages_are_bands
from stages.lib.evaluation.gains import paired_absolute_errors
from stages.lib.evaluation.intervals import (Bootstrap, binomial_interval, direction, mean_interval, paired_mean_gap,
                                             proportion_gap)
from stages.lib.evaluation.multiplicity import holm
from stages.lib.reporting.fidelity import men_minus_women, young_signed_errors
from stages.lib.reporting.markdown import Markdown, difference, number, p_value_text, percent, with_interval
from stages.lib.reporting.mitigation import reference_of
from stages.lib.reporting.populations import pooled_from_one, r10_views, study_r2
from stages.lib.reporting.roles import Selection, selection_sentence

STUDY_AGE = 17            # the study's tables hold no one younger (reference/study.md)
STUDY_BUSY_AGES = (20, 35)  # R5: "most faces 20–35"

# What stands in for the study's published model, per backbone name (the study's own is VGG-Face).
PUBLISHED_MODELS = {
    "vgg_face": "serengil's VGG-Face age and gender models (the study's own published weights)",
    "wide_resnet_imdb": (
        "yu4u's WideResNet-16-8 (age-gender-estimation), standing in for the study's VGG-Face: the study's "
        "VGG-Face age and gender weights cannot be fetched here, and yu4u's model is the closest published "
        "one: also trained on IMDB-Wiki, its age head also a 101-way softmax read as an expected value"),
    "faceres": (
        "HSE FaceRes (Savchenko), built the study's way: an identity network (MobileNet on VGGFace2) whose last "
        "dense layers were trained for age and gender on IMDB-Wiki, fed as its authors' code feeds it (age read "
        "here as the softmax's expected value, as the study read it; male where P(male) >= 0.6, its authors' rule)"),
    "dlib_resnet": "dlib's ResNet face descriptor with heads trained here (dlib publishes no age or gender head)",
}


@dataclass
class Facts:
    """What the findings and the study table are computed from (filled by report.build_report)."""

    params: Params
    dataset: str                                         # the fine-tuning (main) test set
    published: str | None = None
    published_evaluations: Mapping[str, Evaluation] = field(default_factory=dict)
    published_test: pd.DataFrame | None = None           # the published model's test rows on `dataset`
    reference: str | None = None                         # the plain retrained model (R4)
    evaluations: Mapping[str, Mapping[str, Evaluation]] = field(default_factory=dict)
    selection: Selection | None = None
    excluded: list[str] = field(default_factory=list)    # experiments that could not be "best"
    gains: pd.DataFrame = field(default_factory=pd.DataFrame)
    band_changes: Mapping[str, pd.DataFrame] = field(default_factory=dict)   # experiment -> band_changes.csv
    worst_groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    mitigations: list[str] = field(default_factory=list)
    crops: Mapping = field(default_factory=dict)
    correction: pd.DataFrame | None = None
    shares: pd.DataFrame | None = None                   # the main dataset's faces (age, gender): R5
    best_test: pd.DataFrame | None = None                # the best study model's test rows on `dataset`: R7
    published_rows: pd.DataFrame | None = None           # the published model's test rows on every test set: R2
    samples: str = ""                                    # how much of each published dataset was read
    more_findings: list[str] = field(default_factory=list)   # other sections' headline lines (skin colour, ...)


def bootstrap_of(params: Params) -> Bootstrap:
    return Bootstrap(resamples=params.evaluate.bootstrap, confidence=params.evaluate.confidence, seed=params.seed)


# ---------------------------------------------------------------------------------------------------
# What was run


def run_paragraph(facts: Facts) -> str:
    params = facts.params
    backbone = params.backbone
    model = PUBLISHED_MODELS.get(backbone.name, f"the `{backbone.name}` backbone's published heads")
    if backbone.name == "vgg_face" and backbone.weights == "random":
        model = ("VGG-Face with seeded random weights (a demo: no published weights, so every figure below "
                 "shows the pipeline at work, not the study's models)")
    text = (f"**What was run.** The published model is {model}. It meets {facts.dataset} as published "
            f"(`{facts.published or 'no published experiment'}`); its heads are then retrained on "
            f"{facts.dataset}'s train split, plainly and rebalanced (the study's models), and beside them "
            "mitigations and controls.")
    if facts.excluded:
        text += f" Controls and mitigations ({', '.join(facts.excluded)}) are never called the best model."
    return text + (f" {facts.samples}" if facts.samples else "")


# ---------------------------------------------------------------------------------------------------
# Findings: one function per sentence, None where nothing is supported


def _significant(row: pd.Series) -> bool:
    """Whether a gaps row is a gap: its adjusted interval excludes 0 (gaps.csv `significant`), else, for a
    table written without adjusted columns, its raw verdict (the sentence then says it is unadjusted)."""
    if "significant" in row.index and pd.notna(row["significant"]):
        return str(row["significant"]).lower() in ("true", "1", "1.0")
    return row.get("verdict") == "worse"


def gap_claim(row: pd.Series, *, points: bool = False) -> str:
    """A worst − best gap as a sentence says it: the difference with its raw interval, labelled raw, and
    beside it the adjusted interval (Bonferroni over the pairs of groups compared) and the omnibus test
    of all groups equal with its Holm-adjusted p-value; a table without them says it is unadjusted."""
    raw = difference(row["difference"], row["difference_ci_low"], row["difference_ci_high"], points)
    if pd.isna(row.get("difference_adjusted_ci_low", np.nan)):
        return f"{raw} (raw interval; this run's gaps.csv carries no multiplicity adjustment)"
    adjusted = difference(row["difference"], row["difference_adjusted_ci_low"], row["difference_adjusted_ci_high"],
                          points).split(" ", 1)[1]
    text = (f"{raw} (raw interval; adjusted {float(row['adjusted_confidence']):.1%} interval {adjusted}, "
            f"Bonferroni over the {int(row['tests'])} pairs of the {int(row['groups_compared'])} groups compared")
    if pd.notna(row.get("p_all_equal_adjusted", np.nan)):
        text += (f"; all {int(row['groups_compared'])} groups equal: Q = {number(row['omnibus_statistic'], 1)} "
                 f"({int(row['omnibus_df'])} df), Holm-adjusted p {p_value_text(row['p_all_equal_adjusted'])}")
    return text + ")"


def _gap_row(evaluation: Evaluation | None, attribute: str, metric: str) -> pd.Series | None:
    if evaluation is None or evaluation.gaps.empty:
        return None
    rows = evaluation.gaps[(evaluation.gaps["attribute"] == attribute) & (evaluation.gaps["metric"] == metric)]
    return None if rows.empty else rows.iloc[0]


def gender_gap_sentence(evaluation: Evaluation | None, model: str, dataset: str) -> str | None:
    """A model's race × gender gap in gender accuracy, where its adjusted interval excludes 0."""
    row = _gap_row(evaluation, "race*gender", "gender_accuracy")
    if row is None or not _significant(row):
        return None
    return (f"{model} gets gender right for {percent(row['worst'])} of "
            f"{row['worst_group'].replace('*', ' ')} faces on {dataset} (n={int(row['worst_n']):,}) against "
            f"{percent(row['best'])} of {row['best_group'].replace('*', ' ')} faces: "
            f"{gap_claim(row, points=True)}.")


def published_gender_finding(facts: Facts) -> str | None:
    return gender_gap_sentence(facts.published_evaluations.get(facts.dataset), "The published model", facts.dataset)


def retrained_gender_finding(facts: Facts) -> str | None:
    """The retrained model's race × gender gap in gender accuracy, beside the published model's."""
    evaluation = facts.evaluations.get(facts.reference or "", {}).get(facts.dataset)
    sentence = gender_gap_sentence(evaluation, f"Retrained ({facts.reference})", facts.dataset)
    published = _gap_row(facts.published_evaluations.get(facts.dataset), "race*gender", "gender_accuracy")
    if sentence and published is not None:
        sentence += (f" The published model's gap on the same test set: "
                     f"{difference(published['difference'], None, None, True)}.")
    return sentence


def published_age_finding(facts: Facts) -> str | None:
    evaluation = facts.published_evaluations.get(facts.dataset)
    if evaluation is None or ages_are_bands(evaluation.overall) or evaluation.overall.get("mae") is None:
        return None
    overall = evaluation.overall
    text = (f"The published model ({facts.published}) has an age MAE of "
            f"{with_interval(overall['mae'], overall['mae_ci_low'], overall['mae_ci_high'])} years on {facts.dataset} "
            f"(n={overall['n']:,})")
    adult = study_population_mae(facts)
    if adult is not None:
        text += f", {with_interval(*adult[:3])} on the {adult[3]:,} faces aged {STUDY_AGE}+ (the study's population)"
    row = _gap_row(evaluation, "age_band", "mae")
    if row is not None and _significant(row):
        text += (f"; it is worst for ages {row['worst_group']} (MAE {number(row['worst'])}, n={int(row['worst_n']):,}) "
                 f"and best for {row['best_group']} ({number(row['best'])}): {gap_claim(row)} years")
    return text + "."


def study_population_mae(facts: Facts) -> tuple[float, float, float, int] | None:
    """The published model's MAE on test faces aged STUDY_AGE+ with its interval, where the test set
    holds younger faces (else the figure above is already the study's population)."""
    rows = facts.published_test
    if rows is None or rows.empty or rows["age"].min() >= STUDY_AGE:
        return None
    adults = rows[rows["age"] >= STUDY_AGE]
    if adults.empty:
        return None
    errors = (adults["age_pred"] - adults["age"]).abs().to_numpy(dtype=float)
    low, high = mean_interval(errors, bootstrap_of(facts.params), "study-population")
    return float(errors.mean()), low, high, len(errors)


def retraining_finding(facts: Facts) -> str | None:
    rows = facts.gains[facts.gains["step"] == "retraining"] if not facts.gains.empty else facts.gains
    if rows.empty:
        return None
    row = rows.iloc[0]
    change = difference(row["change"], row["change_ci_low"], row["change_ci_high"])
    if row["verdict"] == "better":
        return (f"Retraining the heads on {facts.dataset} ({row['after']}) cuts MAE from {number(row['mae_before'])} "
                f"to {number(row['mae_after'])} years on the same {int(row['n']):,} test faces ({change}; "
                f"{percent(row['cut_share'])} of the published model's error).")
    if row["verdict"] == "worse":
        return (f"Retraining the heads ({row['after']}) raises MAE from {number(row['mae_before'])} to "
                f"{number(row['mae_after'])} years on the same test faces ({change}).")
    return (f"Retraining ({row['after']}) is not shown to change MAE ({change}; adjusted p "
            f"{p_value_text(row.get('p_adjusted'))} over the {len(facts.gains)} changes credited).")


REBALANCING_WORDS = {"better": "cuts", "worse": "raises", "no clear difference": "is not shown to change",
                     "no interval": "changes, without an interval,"}


def rebalancing_finding(facts: Facts) -> str | None:
    rows = facts.gains[facts.gains["step"] == "rebalancing"] if not facts.gains.empty else facts.gains
    if rows.empty:
        return None
    said = "; ".join(f"{r['after']} {REBALANCING_WORDS.get(r['verdict'], 'changes')} overall MAE "
                     f"({difference(r['change'], r['change_ci_low'], r['change_ci_high'])} years)"
                     for _, r in rows.iterrows())
    text = f"Against {rows.iloc[0]['before']} on the same test faces, {said}."
    bands, tests = band_change_phrases(facts.band_changes, facts.dataset, 1 - facts.params.evaluate.confidence)
    if bands:
        text += (f" By age band (paired; raw intervals; significant after Holm's adjustment over all {tests} band "
                 "tests of the experiments above): " + "; ".join(bands) + ".")
    return text


def band_change_family(band_changes: Mapping[str, pd.DataFrame], dataset: str) -> pd.DataFrame:
    """Every band test of every experiment on `dataset` (band_changes.csv rows, with `experiment`), their
    p-values Holm-adjusted together (`p_family`): a sentence or table that lists the bands of several
    experiments draws from all their tests, so they are one family, not one per experiment."""
    tables = [(table[table["dataset"] == dataset] if "dataset" in table.columns else table).assign(experiment=name)
              for name, table in band_changes.items()
              if isinstance(table, pd.DataFrame) and not table.empty and "p_value" in table.columns]
    if not tables:
        return pd.DataFrame(columns=["experiment", "band", "p_value", "p_family"])
    rows = pd.concat(tables, ignore_index=True)
    return rows.assign(p_family=holm(rows["p_value"].to_numpy(dtype=float)))


def band_change_phrases(band_changes: Mapping[str, pd.DataFrame], dataset: str,
                        alpha: float) -> tuple[list[str], int]:
    """(per experiment, its age bands whose paired change survives Holm's adjustment over every band test
    of every experiment on `dataset` (`band_change_family`); the number of those tests)."""
    rows = band_change_family(band_changes, dataset)
    if rows.empty:
        return [], 0
    sides = np.array([direction(low, high) for low, high in zip(rows["ci_low"], rows["ci_high"])])
    hits = rows[(rows["p_family"] < alpha) & np.isin(sides, ["above", "below"])]
    phrases = [f"{experiment} (against {reference_of(found.iloc[0])}): " + ", ".join(
        f"{r['band']} {difference(r['delta'], r['ci_low'], r['ci_high'])} (adjusted p {p_value_text(r['p_family'])})"
        for _, r in found.iterrows()) for experiment, found in hits.groupby("experiment", sort=False)]
    return phrases, int(rows["p_value"].notna().sum())


ADJUSTMENT_NAMES = {"holm": "Holm's (family-wise)", "bh": "Benjamini–Hochberg's (false discovery rate)"}


def mitigation_finding(facts: Facts) -> str | None:
    summary = facts.worst_groups
    if summary.empty or not facts.mitigations:
        return None
    rows = summary[(summary["dataset"] == facts.dataset) & summary["experiment"].isin(facts.mitigations)
                   & summary["statistic"].isin(["mae_gap", "accuracy_gap"]) & summary["change_ci_low"].notna()]
    if rows.empty:
        return None
    below = np.array([direction(lo, hi) == "below" for lo, hi in zip(rows["change_ci_low"], rows["change_ci_high"])])
    survives = (rows["change_significant"].fillna(False).astype(bool).to_numpy() if "change_significant" in rows
                else np.zeros(len(rows), bool))
    narrowed = rows[below & survives]
    tests = int(rows["change_tests"].max()) if "change_tests" in rows else rows["experiment"].nunique()
    if narrowed.empty:
        return (f"No mitigation ({', '.join(dict.fromkeys(rows['experiment']))}) is shown to narrow the race × gender "
                f"gap on {facts.dataset}: every change against its twin ({_twins_named(rows, facts)}) holds 0, lies "
                f"above it, or does not survive the adjustment for the {tests} experiments compared.")
    gaps = {"mae_gap": "MAE gap, years", "accuracy_gap": "gender-accuracy gap"}
    return (f"Against their twins ({_twins_named(narrowed, facts)}) on the same test faces, these mitigations narrow "
            "the race × gender gap: "
            + "; ".join(f"{r['experiment']} ({gaps[r['statistic']]} "
                        f"{difference(r['change'], r['change_ci_low'], r['change_ci_high'], r['statistic'] == 'accuracy_gap')}, "
                        f"adjusted p {p_value_text(r['change_p_adjusted'])})"
                        for _, r in narrowed.iterrows())
            + f" (paired raw intervals; each change survives {ADJUSTMENT_NAMES.get(narrowed['change_adjustment'].iloc[0], 'the')} "
              f"adjustment for the {tests} experiments compared with their references).")


def _twins_named(rows: pd.DataFrame, facts: Facts) -> str:
    """'balanced vs plain, ...': each mitigation's reference (reporting/twins.py's `reference` column)."""
    references = rows["reference"] if "reference" in rows.columns else pd.Series(facts.reference, index=rows.index)
    return ", ".join(dict.fromkeys(f"{e} vs {r or facts.reference}" for e, r in zip(rows["experiment"], references)))


def detector_finding(facts: Facts) -> str | None:
    """Two detectors on ready crops: their overall detection rates and the interval of the difference."""
    entry = facts.crops.get("datasets", {}).get(facts.dataset, {}).get("detection_on_precropped", {})
    if len(entry) < 2:
        return None
    (first, a), (second, b) = list(entry.items())[:2]
    gap = proportion_gap(a["found"], a["attempted"], b["found"], b["attempted"], confidence=facts.params.evaluate.confidence)
    side = direction(gap.difference_ci_low, gap.difference_ci_high)
    if side not in ("above", "below"):
        return (f"The detectors {first} and {second} are not shown to differ on {facts.dataset}'s ready crops "
                f"({difference(gap.difference, gap.difference_ci_low, gap.difference_ci_high, points=True)}).")
    text = (f"On {facts.dataset}'s ready crops {first} finds a face in {percent(a['found'] / a['attempted'])} and "
            f"{second} in {percent(b['found'] / b['attempted'])} "
            f"({difference(gap.difference, gap.difference_ci_low, gap.difference_ci_high, points=True)})")
    params = facts.params
    worst = _lowest_group(b if side == "above" else a, params.evaluate.min_group_size, params.evaluate.confidence)
    if worst:
        text += f"; {second if side == 'above' else first}'s lowest rate of the race × gender groups is for {worst}"
    return text + "."


def _lowest_group(measured: Mapping, min_size: int, confidence: float) -> str | None:
    """The race × gender group with the lowest detection rate (point estimate), with its Wilson interval:
    named, not claimed to differ from the next one."""
    counts = {g: (r["found"], r["in"]) for g, r in measured.get("by", {}).get("race_gender", {}).items()
              if r["in"] >= min_size}
    if not counts:
        return None
    group = min(counts, key=lambda g: counts[g][0] / counts[g][1])
    found, n = counts[group]
    low, high = binomial_interval(found, n, confidence)
    return f"{group.replace('*', ' ')} ({with_interval(found / n, low, high, as_percent=True)} found, n={n:,})"


def findings(facts: Facts) -> tuple[list[str], list[str]]:
    """(sentences the intervals support, what could not be established)."""
    said, unsaid = [], []
    for function, missing in (
            (published_age_finding, "the published model's age error: not evaluated on the main test set"),
            (published_gender_finding, "a race × gender gender-accuracy gap of the published model: none "
                                       "shown by its interval after adjustment (or not evaluated)"),
            (retrained_gender_finding, "a race × gender gender-accuracy gap of the retrained model: none "
                                       "shown by its interval after adjustment (or not evaluated)"),
            (retraining_finding, "what retraining changes: needs the published and the retrained test predictions"),
            (rebalancing_finding, "what rebalancing changes: no rebalanced experiment evaluated"),
            (mitigation_finding, "whether a mitigation narrows the gap: no mitigation paired with the reference"),
            (detector_finding, "how the detectors differ: fewer than two detectors measured on ready crops")):
        sentence = function(facts)
        (said if sentence else unsaid).append(sentence or missing)
    if facts.selection is not None:
        said.append(selection_sentence(facts.selection, facts.excluded))
    else:
        unsaid.append("the best of the study's models: no candidate has val predictions")
    if not any(isinstance(t, pd.DataFrame) and "significant" in t.columns for t in facts.band_changes.values()):
        unsaid.append("per-age-band paired changes of rebalancing: not computed in this run (no band_changes.csv)")
    return said, unsaid


# ---------------------------------------------------------------------------------------------------
# The study's figures beside this run's


def _mae_of(evaluations: Mapping[str, Evaluation], dataset: str) -> str:
    evaluation = evaluations.get(dataset)
    if evaluation is None or ages_are_bands(evaluation.overall):
        return ""
    overall = evaluation.overall
    return f"MAE {with_interval(overall['mae'], overall['mae_ci_low'], overall['mae_ci_high'])}"


def _group_accuracy(evaluation: Evaluation | None, group: str) -> str:
    if evaluation is None:
        return ""
    rows = evaluation.groups[(evaluation.groups["group"] == group) & evaluation.groups["gender_accuracy"].notna()]
    if rows.empty:
        return ""
    r = rows.iloc[0]
    return (f"{with_interval(r['gender_accuracy'], r['gender_accuracy_ci_low'], r['gender_accuracy_ci_high'], as_percent=True)}"
            f" (n={int(r['n']):,})")


def aligned_sets(params: Params, evaluated: Mapping[str, Evaluation], main: str) -> list[str]:
    """R2's test sets: the evaluated UTKFace-aligned sets (the main one first where it is aligned), never
    one cut to children (options.max_age under STUDY_AGE: evaluated apart, not the study's population);
    the main set alone where none is aligned."""
    def aligned(name: str) -> bool:
        options = params.datasets[name].options if name in params.datasets else {}
        young = options.get("max_age") is not None and int(options["max_age"]) < STUDY_AGE
        return options.get("version") == "aligned" and not young
    found = [d for d in [main, *evaluated] if d in evaluated and aligned(d) and _mae_of(evaluated, d)]
    found = list(dict.fromkeys(found))
    return found or ([main] if _mae_of(evaluated, main) else [])


def study_rows(facts: Facts) -> list[dict]:
    """R1–R14: the study's number, this run's, and the model (by role) it comes from."""
    params, dataset = facts.params, facts.dataset
    published, best = facts.published_evaluations, facts.selection.best if facts.selection else None
    held_out = [d for d in published if d in params.datasets and params.datasets[d].adapter == "imdb_wiki"]
    rows = [("R1", "IMDB-Wiki held out: MAE 5.3", "; ".join(f"{d}: {_mae_of(published, d)}" for d in held_out)
             or "not run: no IMDB-Wiki test set in this profile", facts.published)]
    rows.append(("R2", "UTKFace aligned: much worse, older people worst", _r2(facts), facts.published))
    adult = study_population_mae(facts)
    r3 = _mae_of(published, dataset)
    if adult is not None:
        r3 += f"; aged {STUDY_AGE}+: MAE {with_interval(*adult[:3])} (n={adult[3]:,})"
    rows.append(("R3", f"UTKFace, age ≥ {STUDY_AGE}: MAE ≈ 10", r3, facts.published))
    reference = facts.evaluations.get(facts.reference or "", {})
    rows.append(("R4", "retrained: test MAE 8.4", _mae_of(reference, dataset), facts.reference))
    rows.append(("R5", "most faces 20–35", _busy_share(facts.shares), "(the data)"))
    oversampled = [name for name, e in params.experiments.items() if e.oversample and name in facts.evaluations]
    rows.append(("R6", "oversampling 60+: 8.4 → 7.9 (×2) → 7.8 (×3)",
                 " → ".join([_mae_of(reference, dataset)] + [f"{n}: {_mae_of(facts.evaluations[n], dataset)}"
                                                             for n in oversampled]), ", ".join(oversampled)))
    rows.append(("R7", "young women over-estimated more than men (its gender decoding swapped: see below)",
                 _young_men_minus_women(facts), best))
    best_eval = facts.evaluations.get(best or "", {}).get(dataset)
    race_gap = _gap_row(best_eval, "race", "mae")
    rows.append(("R8", "Asian erratic at older ages",
                 "" if race_gap is None else f"race MAE gap {race_gap['worst_group']} − {race_gap['best_group']} "
                 f"{difference(race_gap['difference'], race_gap['difference_ci_low'], race_gap['difference_ci_high'])}",
                 best))
    rows.append(("R9", "no correction model beats the uncorrected one", _correction_count(facts.correction), best))
    rows.append(("R10", "the old under-estimated",
                 r10_views(facts.best_test, params.age_bands, bootstrap_of(params)) or _oldest_bias(best_eval), best))
    main_published = published.get(dataset)
    rows.append(("R11", "99% (IMDB-Wiki) vs 78% (UTKFace); Black women 46%",
                 f"{dataset}: {_overall_accuracy(main_published)}; black women "
                 f"{_group_accuracy(main_published, 'black*female')}" if main_published else "", facts.published))
    rows.append(("R12", "women's accuracy falls with age; Black women lowest at every age",
                 "see the published model's R12 table (cells under "
                 f"{params.evaluate.min_group_size} faces greyed)" if main_published else "", facts.published))
    rows.append(("R13", "retrained better by 10–20% on casual photos",
                 "not run: the study's personal photo set is not public, and no casual-photo test set is "
                 "configured", ""))
    r14 = _r14(facts)
    rows.append(("R14", "retraining + rebalancing cut MAE by 24% (10 → 7.8)", r14[0], r14[1]))
    return [{"#": r[0], "the study": r[1], "this run": r[2] or "not measured", "model (role)": r[3] or ""}
            for r in rows]


def _r2(facts: Facts) -> str:
    """R2 on the study's population, UTKFace aligned from age 1: the aligned sets cut from one folder by
    age pooled where the run has them (never the 17+ figure of R3 alone), else each aligned set's MAE."""
    published = facts.published_evaluations
    sets = aligned_sets(facts.params, published, facts.dataset)
    pooled = pooled_from_one(facts.params, list(published), sets[0]) if sets else []
    if len(pooled) > 1:
        text = study_r2(facts.published_rows, pooled, bootstrap_of(facts.params))
        if text:
            return text
    return "; ".join(f"{d}: {_mae_of(published, d)}" for d in sets)


def _young_men_minus_women(facts: Facts) -> str:
    """R7: the best model's mean signed error of young men minus young women, with its interval."""
    rows = facts.best_test
    if rows is None or rows.empty:
        return ""
    band, signed = young_signed_errors(rows, facts.params.age_bands)
    if not {"male", "female"} <= set(signed) or min(len(v) for v in signed.values()) < 2:
        return ""
    gap = men_minus_women(signed, bootstrap_of(facts.params))
    return (f"aged {band}: mean (predicted − true), men − women "
            f"{difference(gap.difference, gap.difference_ci_low, gap.difference_ci_high)} years")


def _overall_accuracy(evaluation: Evaluation | None) -> str:
    overall = evaluation.overall if evaluation else {}
    if overall.get("gender_accuracy") is None:
        return ""
    return with_interval(overall["gender_accuracy"], overall["gender_accuracy_ci_low"],
                         overall["gender_accuracy_ci_high"], as_percent=True)


def _busy_share(shares: pd.DataFrame | None) -> str:
    if shares is None or shares.empty:
        return ""
    low, high = STUDY_BUSY_AGES
    inside = shares["age"].between(low, high).mean()
    return f"{percent(inside)} of {len(shares):,} faces aged {low}–{high}"


def _correction_count(table: pd.DataFrame | None) -> str:
    """R9: how many correction models beat none, each judged after Holm's adjustment over all of them."""
    if table is None or table.empty:
        return ""
    better = table[table["verdict"] == "better"]
    if "p_adjusted" not in table.columns:
        return f"{len(better)} of {len(table) - 1} correction models better (raw intervals, no multiplicity adjustment)"
    smallest = table.loc[table["model"] != "none", "p_adjusted"].min()
    return (f"{len(better)} of {len(table) - 1} correction models better (paired; Holm over the {len(table) - 1}: "
            f"smallest adjusted p {p_value_text(smallest)})")


def _oldest_bias(evaluation: Evaluation | None) -> str:
    if evaluation is None:
        return ""
    bands = evaluation.groups[evaluation.groups["attribute"] == "age_band"]
    if bands.empty or "mean_error_ci_low" not in bands.columns:
        return ""
    oldest = bands.iloc[-1]
    return (f"mean (predicted − true) at {oldest['group']}: "
            f"{with_interval(oldest['mean_error'], oldest['mean_error_ci_low'], oldest['mean_error_ci_high'])} "
            f"years (n={int(oldest['n']):,})")


def _r14(facts: Facts) -> tuple[str, str]:
    """R14: what retraining alone cut, and what the best of the study's models cuts from the published
    model's MAE, each a paired share with its interval."""
    parts, models = [], []
    rows = facts.gains[facts.gains["step"] == "retraining"] if not facts.gains.empty else facts.gains
    if not rows.empty:
        row = rows.iloc[0]
        parts.append(f"retraining alone: {_cut(row['cut_share'], row['cut_share_ci_low'], row['cut_share_ci_high'])}"
                     f" ({number(row['mae_before'])} → {number(row['mae_after'])})")
        models.append(f"{row['before']} → {row['after']}")
    best = facts.selection.best if facts.selection else None
    if best and best != facts.reference and facts.published_test is not None and facts.best_test is not None \
            and not facts.published_test.empty and not facts.best_test.empty:
        before, after = paired_absolute_errors(facts.published_test, facts.best_test)
        gap = paired_mean_gap(after, before, bootstrap_of(facts.params), f"r14:{best}")
        parts.append(f"published → {best} (the best, chosen on val): "
                     f"{_cut(1 - gap.ratio, 1 - gap.ratio_ci_high, 1 - gap.ratio_ci_low)} "
                     f"({number(before.mean())} → {number(after.mean())})")
        models.append(f"{facts.published} → {best}")
    return "; ".join(parts), "; ".join(models)


def _cut(share, low, high) -> str:
    return with_interval(share, low, high, as_percent=True)


def first_screen(md: Markdown, facts: Facts) -> None:
    """What was run, the findings, and the study's figures beside this run's."""
    md.paragraph(run_paragraph(facts))
    md.heading("Findings", 2)
    said, unsaid = findings(facts)
    md.bullets([*said, *facts.more_findings])
    if unsaid:
        md.paragraph("Not established by this run: " + "; ".join(unsaid) + ".")
    md.heading("The study's figures beside this run's (R1–R14)", 2)
    md.paragraph(f"Intervals {facts.params.evaluate.confidence:.0%}. The study's numbers are point estimates "
                 "(reference/study.md); the model column names the experiment by its role. One figure can carry "
                 "slightly different intervals in different sections of this report: each section resamples in "
                 "its own way (look-alike clusters for a group's figures, race × gender strata for paired changes, "
                 "Wilson and Newcombe intervals for accuracies and their differences, its own seed), so their ends "
                 "may differ in the last digit while the point values are the same.")
    md.table(pd.DataFrame(study_rows(facts)))

