"""The report's section "Skin colour and photo quality": why a group is worse, read against apparent
skin colour (L*, h*) and photo quality, for every experiment and every audited published model.

Reads the measure stage's table (params.paths.measurements/measurements.parquet: one row per crop,
keyed by `id`), the split manifest (the pooled evaluation faces, their resampling clusters, their crop
files), each experiment's predictions and each audited model's predictions, and the analysis of each
model on each test set that the stage which predicted it wrote (skin_analysis.py: evaluate@<experiment>
in <experiments>/<model>/evaluation/<dataset>/skin/, audit_models in <audit>/<model>/evaluation/<dataset>/skin/);
nothing is analysed or copied here. Writes <reports>/skin/bands.csv, measured.csv and
quality_correlations.csv, and the section's figures. Without the measurement table, the section is one line saying how to make it.

A test set on which a model's figures are in-sample (the published weights trained on it; an audited
model's card says `yes` or `partly`) is analysed and flagged, and kept out of the findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from stages.lib.core.labels import GENDERS
from stages.lib.core.params import Params
from stages.lib.evaluation.adjusted_gaps import QUALITY_TERMS, race_gender
from stages.lib.evaluation.audit_results import FROM_PASS
from stages.lib.evaluation.skin import LIGHTNESS, SYMBOLS, SkinBands, band_names
from stages.lib.evaluation.skin_analysis import (SkinAnalysis, SkinInputs, analysis_folder, measured_counts,
                                                 quality_correlations, skin_inputs)
from stages.lib.reporting import fidelity
from stages.lib.reporting.figures import distinct_colours, save_figure
from stages.lib.reporting.headline import PUBLISHED
from stages.lib.reporting.markdown import Markdown, difference, number, p_value_text, percent
from stages.lib.reporting.published_models import load_audited

IN_SAMPLE_FLAGS = ("yes", "partly")
CONTACT_FACES = 36
THUMBNAIL = 96
MIN_BIN_FACES = 10    # reliability points from fewer faces are not drawn
CAVEAT = ("What the adjustment can and cannot mean: photo quality may confound a gap (one group's photos are "
          "worse for reasons that have nothing to do with the faces) and may also mediate it (cameras' "
          "auto-exposure is tuned to light skin, so darker faces get worse photos): an adjusted gap is the part "
          "of the gap these measures do not carry, not \"the real\" gap. Skin colour is not a confounder of race "
          "but another description of the same faces, so it is never a covariate of a race gap: it has its own "
          "slopes, within each labelled group.")
OUTCOME_WORDS = {"abs_error": ("absolute age errors", False), "wrong_gender": ("wrong gender calls", True)}


@dataclass(frozen=True)
class ModelRun:
    """One model's test predictions on one test set, joined with the measurements, and the folder of
    their analysis."""

    model: str
    dataset: str
    in_sample: bool
    rows: pd.DataFrame
    analysis: Path
    same_as: str | None = None   # the experiment whose answers these are, face for face (the backbone's audit row)

    @property
    def minors(self) -> bool:
        return are_minors(self.rows["age"])


def are_minors(ages: pd.Series) -> bool:
    """Every face under 18: a sentence's groups are girls and boys."""
    return bool(len(ages)) and bool(ages.max() < 18)


@dataclass
class SkinStudy:
    bands: SkinBands
    pooled: pd.DataFrame                       # the evaluation faces, with their measurements and crop files
    runs: list[ModelRun]
    analyses: dict[tuple[str, str], SkinAnalysis] = field(default_factory=dict)

    def run(self, model: str, dataset: str) -> ModelRun:
        return next(r for r in self.runs if (r.model, r.dataset) == (model, dataset))


def _experiment_runs(params: Params, inputs: SkinInputs) -> list[ModelRun]:
    runs = []
    for name, spec in params.experiments.items():
        path = params.paths.experiments / name / "predictions.parquet"
        if not path.exists():
            continue
        test = pd.read_parquet(path).query("split == 'test'")
        for dataset, rows in inputs.measured_runs(test).items():
            inside = fidelity.test_set_label(params, spec.init, dataset) != dataset
            evaluation = params.paths.experiments / name / "evaluation"
            runs.append(ModelRun(name, dataset, inside, rows, analysis_folder(evaluation, dataset)))
    return runs


def _audited_runs(params: Params, inputs: SkinInputs) -> list[ModelRun]:
    models, _ = load_audited(params)
    return [ModelRun(model.name, dataset, bool(rows["in_sample"].isin(IN_SAMPLE_FLAGS).any()), rows,
                     analysis_folder(params.paths.audit / model.name / "evaluation", dataset),
                     same_as=PUBLISHED if model.card.get("read_from") == FROM_PASS else None)
            for model in models
            for dataset, rows in inputs.measured_runs(model.predictions.drop(columns=["problem"])).items()]


def skin_study(params: Params, models: Sequence[str] | None = None) -> SkinStudy | None:
    """Every model's skin breakdowns on every test set that has measured faces, and the slopes, adjusted
    gaps and threshold-free metrics of `models` (None: every model that has them; evaluate writes none for
    controls and mitigations), as the stages that predicted them wrote them; None without measurements."""
    inputs = skin_inputs(params)
    if inputs is None:
        return None
    runs = _experiment_runs(params, inputs) + _audited_runs(params, inputs)
    study = SkinStudy(bands=inputs.bands, pooled=inputs.pooled, runs=runs)
    folder = skin_folder(params)
    for run in runs:
        study.analyses[(run.model, run.dataset)] = SkinAnalysis.read(
            run.analysis, breakdown_only=models is not None and run.model not in models)
    study.bands.table().to_csv(folder / "bands.csv", index=False)
    measured_counts(study.pooled).to_csv(folder / "measured.csv", index=False)
    quality_correlations(study.pooled).to_csv(folder / "quality_correlations.csv", index=False)
    return study


def analyses_text(params: Params) -> str:
    """Where evaluate and audit_models write each model's analyses, for the captions."""
    return (f"{params.paths.experiments}/<experiment>/evaluation/<test set>/skin (audited models: "
            f"{params.paths.audit}/<model>/evaluation/<test set>/skin)")


def skin_folder(params: Params) -> Path:
    folder = params.paths.reports / "skin"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------------------------------
# Findings: adjusted results only, never an in-sample run


def _stacked(study: SkinStudy, table: str) -> pd.DataFrame:
    frames = [getattr(study.analyses[(r.model, r.dataset)], table).assign(
                  model=r.model, dataset=r.dataset, in_sample=r.in_sample, same_as=r.same_as, minors=r.minors)
              for r in study.runs if not getattr(study.analyses[(r.model, r.dataset)], table).empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _group_words(group: str, possessive: bool = False, *, minors: bool = False) -> str:
    race, gender = group.split("*")
    people = {(False, "female"): "women", (False, "male"): "men", (True, "female"): "girls", (True, "male"): "boys"}
    word = people[(bool(minors), gender)]
    return f"{race.capitalize()} {word}{('’' if word.endswith('s') else '’s') if possessive else ''}"


def gap_sentence(row: pd.Series) -> str:
    word, points = OUTCOME_WORDS[row["outcome"]]
    before = difference(row["before"], row["before_ci_low"], row["before_ci_high"], points=points)
    after = difference(row["after"], row["after_ci_low"], row["after_ci_high"], points=points)
    held = "remains" if row["significant"] else "is no longer distinguishable from zero"
    group, reference = (_group_words(row[name], True, minors=row["minors"]) for name in ("group", "reference"))
    return (f"**{row['model']} on {row['dataset']}**: {group} {word} exceed {reference} by {before} (Holm p "
            f"{p_value_text(row['before_p_holm'])}) with age band and dataset held equal, and by {after} (Holm p "
            f"{p_value_text(row['after_p_holm'])}) with photo quality also held equal: the gap {held}.")


def slope_sentence(rows: pd.DataFrame, groups: int) -> str:
    """The significant slopes of one run, outcome and measure, summarised by the largest."""
    top = rows.loc[rows["slope"].abs().idxmax()]
    word, points = OUTCOME_WORDS[top["outcome"]]
    slope = difference(top["slope"], top["ci_low"], top["ci_high"], points=points)
    return (f"**{top['model']} on {top['dataset']}**: {word} move with skin {SYMBOLS[top['measure']]} within "
            f"{len(rows)} of {groups} race × gender groups (Holm across the groups; the other colour measure held); "
            f"the steepest, within {_group_words(top['group'], minors=top['minors'])}: {slope} per 10 units (Holm p "
            f"{p_value_text(top['p_holm'])}).")


def findings(study: SkinStudy, models: Sequence[str] | None = None) -> list[str]:
    """Out-of-sample runs of `models` (None: all) only. Per run and outcome, the largest race × gender gap
    that survives Holm before the quality adjustment, with its adjusted value (it remains, or the
    adjustment takes it away, both judged by Holm); per run, outcome and measure, the slopes that survive Holm."""
    gaps, slopes = (_shown(_stacked(study, table), models) for table in ("adjusted_gaps", "slopes"))
    lines = []
    if not gaps.empty:
        judged = held_before(gaps)
        for _, rows in judged.groupby(["model", "dataset", "outcome"], sort=False):
            lines.append(gap_sentence(rows.loc[rows["before"].idxmax()]))
    if not slopes.empty:
        judged = slopes[~slopes["small"]]
        for _, rows in judged.groupby(["model", "dataset", "outcome", "measure"], sort=False):
            if rows["significant"].any():
                lines.append(slope_sentence(rows[rows["significant"]], len(rows)))
    return lines


def _said_once(study: SkinStudy, models: Sequence[str] | None) -> str:
    """"; faceres: ..." where an audited model's answers are an experiment's and its lines would repeat it."""
    pairs = {(r.model, r.same_as) for r in study.runs if r.same_as and (models is None or r.same_as in models)}
    return "".join(f"; {model}'s answers are {same}'s, face for face, and are said once, as {same}"
                   for model, same in sorted(pairs))


def held_before(gaps: pd.DataFrame) -> pd.DataFrame:
    """The gaps above zero that survive Holm before the quality adjustment, so that "no longer
    distinguishable" is said only of a gap that was distinguishable under the same adjustment."""
    return gaps[~gaps["small"] & (gaps["before"] > 0) & gaps["significant_before"].astype(bool)]


def _shown(table: pd.DataFrame, models: Sequence[str] | None) -> pd.DataFrame:
    """The out-of-sample rows of the models shown, each model's answers once (an audited model whose
    answers are an experiment's, face for face, is said under that experiment's name)."""
    if table.empty:
        return table
    shown = table["model"].isin(models) if models is not None else pd.Series(True, index=table.index)
    twice = table["same_as"].notna() & table["same_as"].isin(table.loc[shown, "model"])
    return table[~table["in_sample"] & shown & ~twice]


def headline_lines(study: SkinStudy | None, models: Sequence[str] | None = None) -> list[str]:
    """Lines for the report's first screen, at most one per outcome: the largest out-of-sample race ×
    gender gap that is significant before the quality adjustment, stated with its adjusted value and
    whether it remains (Holm). Nothing where no such gap was adjusted."""
    gaps = _shown(_stacked(study, "adjusted_gaps"), models) if study is not None else pd.DataFrame()
    if gaps.empty:
        return []
    judged = held_before(gaps)
    judged = judged[judged["after_p_holm"].notna()]
    if judged.empty:
        return []
    return [f"Skin colour and photo quality: {gap_sentence(rows.loc[rows['before'].idxmax()])}"
            for _, rows in judged.groupby("outcome", sort=False)]


# ---------------------------------------------------------------------------------------------------
# Tables


def _main_runs(study: SkinStudy, dataset: str, models: Sequence[str] | None) -> list[ModelRun]:
    """Each shown model's run on the report's main test set, else on its first test set."""
    chosen = {}
    for run in (r for r in study.runs if models is None or r.model in models):
        if run.model not in chosen or (run.dataset == dataset and chosen[run.model].dataset != dataset):
            chosen[run.model] = run
    return list(chosen.values())


def _label(run: ModelRun) -> str:
    return f"{run.dataset} (in-sample)" if run.in_sample else run.dataset


def slopes_table(study: SkinStudy, runs: Sequence[ModelRun]) -> pd.DataFrame:
    rows = []
    for run in runs:
        slopes = study.analyses[(run.model, run.dataset)].slopes
        if slopes.empty:
            continue
        for (outcome, group), cell in slopes[~slopes["small"]].groupby(["outcome", "group"], sort=False):
            _, points = OUTCOME_WORDS[outcome]
            by = cell.set_index("measure")
            rows.append({"model": run.model, "test set": _label(run), "outcome": OUTCOME_WORDS[outcome][0],
                         "group": group, "n": int(by["n"].iloc[0]),
                         **{f"per 10 {SYMBOLS[m]} [CI]": difference(by.loc[m, "slope"], by.loc[m, "ci_low"],
                                                                  by.loc[m, "ci_high"], points=points)
                            + ("" if by.loc[m, "significant"] else " (n.s.)") for m in by.index}})
    return pd.DataFrame(rows)


def quality_verdict(row: pd.Series) -> str:
    """Whether photo quality takes a gap away, judged by Holm before and after the adjustment."""
    if not row["significant_before"]:
        return "no gap to explain (Holm)"
    return "no: it remains" if row["significant"] else "its gap is no longer distinguishable from zero"


def focus_table(study: SkinStudy, group: str, runs: Sequence[ModelRun]) -> pd.DataFrame:
    """One row per run: `group`'s wrong-gender gap to the best-served group before and after photo
    quality (Holm p each), whether the adjustment takes it away, and its within-group slopes on L* and h*."""
    rows = []
    for run in runs:
        analysis = study.analyses[(run.model, run.dataset)]
        gaps, slopes = analysis.adjusted_gaps, analysis.slopes
        gap = gaps[(gaps["outcome"] == "wrong_gender") & (gaps["group"] == group)] if not gaps.empty else gaps
        if gap.empty or bool(gap["small"].iloc[0]):
            continue
        gap = gap.iloc[0]
        row = {"model": run.model, "test set": _label(run), "n": int(gap["n"]), "against": gap["reference"],
               "before quality [CI]": difference(gap["before"], gap["before_ci_low"], gap["before_ci_high"], points=True)
               + f" (Holm p {p_value_text(gap['before_p_holm'])})",
               "after quality [CI]": difference(gap["after"], gap["after_ci_low"], gap["after_ci_high"], points=True)
               + f" (Holm p {p_value_text(gap['after_p_holm'])})",
               "explained by photo quality?": quality_verdict(gap)}
        own = slopes[(slopes["outcome"] == "wrong_gender") & (slopes["group"] == group) & ~slopes["small"]] \
            if not slopes.empty else slopes
        for _, slope in own.iterrows():
            row[f"per 10 {SYMBOLS[slope['measure']]} [CI]"] = (
                difference(slope["slope"], slope["ci_low"], slope["ci_high"], points=True)
                + ("" if slope["significant"] else " (n.s.)"))
        rows.append(row)
    return pd.DataFrame(rows)


def gaps_table(study: SkinStudy, runs: Sequence[ModelRun]) -> pd.DataFrame:
    """The gaps whose interval before the quality adjustment lies above zero (all: adjusted_gaps.csv)."""
    rows = []
    for run in runs:
        gaps = study.analyses[(run.model, run.dataset)].adjusted_gaps
        for _, row in (gaps[gaps["before_ci_low"] > 0].iterrows() if not gaps.empty else ()):
            word, points = OUTCOME_WORDS[row["outcome"]]
            rows.append({"model": run.model, "test set": _label(run), "outcome": word,
                         "group − reference": f"{row['group']} − {row['reference']}", "n": int(row["n"]),
                         "raw": difference(row["raw"], None, None, points=points),
                         "before quality [CI]": difference(row["before"], row["before_ci_low"], row["before_ci_high"],
                                                           points=points),
                         "Holm p (before)": p_value_text(row["before_p_holm"]),
                         "after quality [CI]": difference(row["after"], row["after_ci_low"], row["after_ci_high"],
                                                          points=points),
                         "Holm p (after)": p_value_text(row["after_p_holm"])})
    return pd.DataFrame(rows)


def auc_table(study: SkinStudy, runs: Sequence[ModelRun]) -> pd.DataFrame:
    rows = []
    for run in runs:
        auc = study.analyses[(run.model, run.dataset)].gender_auc
        for _, row in auc[auc["auc"].notna()].iterrows():
            rows.append({"model": run.model, "test set": _label(run), "race": row["race"], "n": int(row["n"]),
                         "AUC [CI]": f"{number(row['auc'], 3)} [{number(row['auc_ci_low'], 3)}, "
                                     f"{number(row['auc_ci_high'], 3)}]", "ECE": number(row["ece"], 3)})
    return pd.DataFrame(rows)


def threshold_table(study: SkinStudy, runs: Sequence[ModelRun]) -> pd.DataFrame:
    """Where the model's own threshold moves a group's accuracy by at least a point."""
    rows = []
    for run in runs:
        calls = study.analyses[(run.model, run.dataset)].gender_calls
        moved = calls[(calls["accuracy_own_threshold"] - calls["accuracy_at_half"]).abs() >= 0.01]
        rows += [{"model": run.model, "test set": _label(run), "group": r["group"], "n": int(r["n"]),
                  "accuracy (own calls)": percent(r["accuracy_own_threshold"]),
                  "accuracy at p = 0.5": percent(r["accuracy_at_half"]),
                  "mean p(labelled gender)": number(r["mean_p_true_gender"], 3)} for _, r in moved.iterrows()]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Figures


def gender_shades_figure(study: SkinStudy, runs: Sequence[ModelRun], confidence: float) -> Figure:
    """Gender accuracy by skin-lightness band (the run's quintiles) for women and men, one panel per
    model, Wilson intervals drawn; bands under the minimum group size drawn hollow."""
    names = band_names(study.bands.edges[LIGHTNESS]["quintile"])
    columns = min(4, len(runs))
    rows_count = int(np.ceil(len(runs) / columns))
    figure, axes = plt.subplots(rows_count, columns, squeeze=False, sharey=True, layout="constrained",
                                figsize=(3.6 * columns + 0.5, 3.2 * rows_count + 0.6))
    colours = dict(zip(GENDERS, ("#1f77b4", "#d62728")))
    for axis, run in zip(axes.flat, runs):
        breakdown = study.analyses[(run.model, run.dataset)].breakdown
        groups = breakdown.groups if breakdown is not None else pd.DataFrame(columns=["attribute"])
        cells = groups[groups["attribute"] == "lightness_quintile*gender"]
        for offset, gender in zip((-0.08, 0.08), GENDERS):
            mine = cells[cells["group"].str.endswith(f"*{gender}")]
            band = mine["group"].str.rsplit("*", n=1).str[0]
            x = np.array([names.index(b) for b in band]) + offset
            value = mine["gender_accuracy"].to_numpy(dtype=float)
            error = np.vstack([value - mine["gender_accuracy_ci_low"], mine["gender_accuracy_ci_high"] - value])
            axis.errorbar(x, value, yerr=error, marker="o", capsize=3, color=colours[gender],
                          label="women" if gender == "female" else "men",
                          markerfacecolor="white" if mine["small"].all() and len(mine) else colours[gender])
        axis.set_title(f"{run.model}\non {_label(run)}", fontsize=9)
        axis.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        axis.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(runs):]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    figure.supxlabel("skin lightness L* band (darker → lighter; quintiles of the evaluation faces)", fontsize=9)
    figure.supylabel(f"gender accuracy ({confidence:.0%} CI)", fontsize=9)
    return figure


def reliability_figure(study: SkinStudy, runs: Sequence[ModelRun]) -> Figure:
    """Observed share of women against mean predicted p(female), per race, one panel per model (bins of
    at least MIN_BIN_FACES faces)."""
    shown = [r for r in runs if not study.analyses[(r.model, r.dataset)].reliability.empty]
    columns = max(1, min(4, len(shown)))
    rows_count = max(1, int(np.ceil(len(shown) / columns)))
    figure, axes = plt.subplots(rows_count, columns, squeeze=False, layout="constrained",
                                figsize=(3.4 * columns + 0.5, 3.2 * rows_count + 0.5))
    for axis, run in zip(axes.flat, shown):
        curves = study.analyses[(run.model, run.dataset)].reliability
        races = list(dict.fromkeys(curves["race"]))
        for colour, race in zip(distinct_colours(len(races)), races):
            curve = curves[(curves["race"] == race) & (curves["n"] >= MIN_BIN_FACES)]
            axis.plot(curve["predicted"], curve["observed"], marker="o", markersize=3, color=colour, label=race)
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set_title(f"{run.model}\non {_label(run)}", fontsize=9)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
    for axis in list(axes.flat)[len(shown):]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    figure.supxlabel("mean predicted p(female) in the bin", fontsize=9)
    figure.supylabel("observed share of women", fontsize=9)
    return figure


def worst_misgendered(study: SkinStudy, runs: Sequence[ModelRun], min_group_size: int) -> tuple[str, pd.DataFrame]:
    """The race × gender group the out-of-sample runs misgender most often (pooled over them, groups of
    at least `min_group_size` faces), and its faces misgendered by the most of those runs."""
    calls = pd.concat([r.rows.assign(wrong=(r.rows["gender_pred"] != r.rows["gender"]).astype(float),
                                     group=race_gender(r.rows))
                       for r in runs if not r.in_sample and r.rows["gender_pred"].notna().any()] or [pd.DataFrame()])
    if calls.empty or calls["group"].isna().all():
        return "", pd.DataFrame()
    rates = calls.groupby("group")["wrong"].agg(["mean", "size"])
    rates = rates[rates["size"] >= min_group_size]
    if rates.empty:
        return "", pd.DataFrame()
    worst = str(rates["mean"].idxmax())
    faces = calls[calls["group"] == worst].groupby("id")["wrong"].agg(["sum", "size"])
    faces = faces[faces["sum"] > 0].sort_values("sum", ascending=False).head(CONTACT_FACES)
    return worst, faces.rename(columns={"sum": "wrong_by", "size": "models"})


def contact_sheet(faces: pd.DataFrame, crops: pd.Series, title: str) -> Figure | None:
    """A grid of the faces' crops, each captioned by how many models misgendered it."""
    shown = [(face, row) for face, row in faces.iterrows() if face in crops.index and Path(crops[face]).exists()]
    if not shown:
        return None
    columns = min(9, len(shown))
    rows_count = int(np.ceil(len(shown) / columns))
    figure, axes = plt.subplots(rows_count, columns, squeeze=False, layout="constrained",
                                figsize=(1.3 * columns, 1.65 * rows_count + 0.35))
    for axis, (face, row) in zip(axes.flat, shown):
        with Image.open(crops[face]) as image:
            axis.imshow(image.convert("RGB").resize((THUMBNAIL, THUMBNAIL)))
        axis.set_title(f"{int(row['wrong_by'])}/{int(row['models'])} wrong", fontsize=7)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(f"{title}: misgendered faces, with how many models got each wrong", fontsize=9)
    return figure


# ---------------------------------------------------------------------------------------------------
# The section


def skin_section(md: Markdown, params: Params, study: SkinStudy | None, *, dataset: str,
                 models: Sequence[str] | None = None) -> None:
    """Write the section and its figures (params.paths.figures); `dataset`: the report's main test set;
    `models`: the experiments and audited models the section shows (None: all; the files hold all)."""
    md.heading("Skin colour and photo quality", 2)
    if study is None:
        md.paragraph("No per-face measurements of skin colour and photo quality: run the measure stage "
                     "(`dvc repro measure`); then this section reads every model's error against them.")
        return
    if not study.runs:
        md.paragraph("The measurement table holds no face of any evaluated model's test sets.")
        return
    confidence, min_group = params.evaluate.confidence, params.evaluate.min_group_size
    lines = findings(study, models)
    md.paragraph("**Findings** (out-of-sample runs only; each gap is an average marginal effect against the "
                 "best-served race × gender group, with a cluster-robust "
                 f"{confidence:.0%} interval; a gap is listed only where its Holm-adjusted p-value before the "
                 f"quality adjustment is below {1 - confidence:.2f}, and \"remains\" only where its Holm-adjusted "
                 "p-value after it is too" + _said_once(study, models) + "):")
    md.bullets(lines or ["No gap or slope survives the adjustment on an out-of-sample run."])
    md.paragraph(CAVEAT)
    runs = _main_runs(study, dataset, models)
    worst, faces = worst_misgendered(study, runs, min_group)
    focus = focus_table(study, worst, [r for r in study.runs if models is None or r.model in models]) if worst \
        else pd.DataFrame()
    if not focus.empty:
        md.table(focus, f"The most misgendered group, {_group_words(worst)}, model by model: is its misgendering "
                        "explained by photo quality, and does it move with skin colour within the group? Its "
                        "wrong-gender gap to the best-served group with age band and dataset held (before) and "
                        "with photo quality also held (after), Holm across the groups; the change per 10 units of "
                        "L* and of h* within the group (both in one model; (n.s.): not after Holm). Percentage points")
    figures = params.paths.figures
    md.figure(save_figure(gender_shades_figure(study, runs, confidence), figures / "skin_gender_accuracy.png"),
              f"Gender accuracy by skin-lightness band for women and men, one panel per model; whiskers: "
              f"{confidence:.0%} Wilson intervals; hollow: fewer than {min_group} faces.")
    md.table(study.bands.table(), "Skin bands: quintile edges chosen once for this run from the pooled evaluation "
                                  "faces, beside the fixed cut-offs of Thong et al. (2023), L* 60 and h* 55. Per "
                                  f"model and test set, both breakdowns × gender are in {analyses_text(params)}, skin_groups.csv "
                                  "(adjusted as the race × gender tables: skin_significance.csv)")
    slopes = slopes_table(study, runs)
    if not slopes.empty:
        md.table(slopes, "Within each race × gender group: the change in error per 10 units of skin lightness L* "
                         "and of hue h*, both in one linear model, cluster-robust intervals; (n.s.): not significant "
                         "after Holm across the groups. Accuracy in percentage points")
    gaps = gaps_table(study, runs)
    if slopes.empty and gaps.empty:
        md.paragraph(f"No race × gender group has {min_group} measured faces on a shown model's test set: no slopes "
                     "within groups and no adjusted gaps.")
    if not gaps.empty:
        left_out = sorted({g for a in study.analyses.values() if not a.adjusted_gaps.empty
                           for g in a.adjusted_gaps["left_out"].dropna() if g})
        md.table(gaps, "Race × gender gaps against the best-served group, where the gap before the quality "
                       "adjustment is above zero (every group: " + analyses_text(params) + ", adjusted_gaps.csv): raw (difference of means), before (age "
                       "band and dataset held) and after photo quality is also held (" + ", ".join(QUALITY_TERMS)
                       + "); average marginal effects on the outcome's own scale (years; percentage points), "
                         "logistic for gender, linear for age")
        if left_out:
            md.paragraph("Quality measures left out of the adjustment: " + "; ".join(left_out) + ".")
    auc = auc_table(study, runs)
    if not auc.empty:
        md.table(auc, "Threshold-free gender metrics per race: AUC of p(female) (cluster-bootstrap interval) and "
                      "expected calibration error (10 bins)")
        md.figure(save_figure(reliability_figure(study, runs), figures / "skin_gender_reliability.png"),
                  f"Reliability of p(female) per race, one panel per model (bins of at least {MIN_BIN_FACES} faces): "
                  "the diagonal is perfect calibration.")
        moved = threshold_table(study, runs)
        if not moved.empty:
            md.table(moved, "Groups whose accuracy moves by a point or more between the model's own calls and a "
                            "threshold of 0.5")
    md.table(measured_counts(study.pooled), "Evaluation faces measured, and the reason each unmeasured face got, "
                                            "per race × gender")
    correlations = quality_correlations(study.pooled)
    md.table(correlations.assign(spearman_with_lightness=correlations["spearman_with_lightness"].map(
        lambda v: number(v, 2))), "Each photo-quality measure's rank correlation with skin L* (evaluation faces)")
    crops = study.pooled.set_index("id")["crop_path"] if "crop_path" in study.pooled else pd.Series(dtype=object)
    sheet = contact_sheet(faces, crops, _group_words(worst)) if not faces.empty else None
    if sheet is not None:
        md.figure(save_figure(sheet, figures / "skin_misgendered_contact_sheet.png"),
                  f"The {len(faces)} faces of the most misgendered group ({worst}) that the most out-of-sample "
                  "runs misgender, with how many did: a reader can judge whether the label or the model is wrong.")
