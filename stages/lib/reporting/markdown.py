"""Markdown reports: a small builder plus the sections every evaluation report shares.

Pure text: the callers pass the evaluation (tidy frames from `stages.lib.evaluation.groups`) and the paths of the
figures they wrote; links are made relative to the report's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from stages.lib.core.labels import RACES, band_labels
from stages.lib.evaluation.curves import pivot
from stages.lib.evaluation.disaggregation import age_standardised_mae
from stages.lib.evaluation.groups import Evaluation
from stages.lib.evaluation.source_bands import ages_are_bands

STUDY_PARTS = ("R10", "R11", "R12")
ATTRIBUTE_TITLES = {
    "all": "all faces", "race": "race", "gender": "gender", "age_band": "age band",
    "race*gender": "race × gender", "race*age_band": "race × age band", "gender*age_band": "gender × age band",
}


class Markdown:
    """Accumulates markdown blocks; `figure` links an image relative to the report's own folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.blocks: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append("#" * level + " " + text)

    def paragraph(self, text: str) -> None:
        self.blocks.append(text)

    def bullets(self, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            self.blocks.append("\n".join(f"- {item}" for item in items))

    def table(self, frame: pd.DataFrame, caption: str | None = None) -> None:
        if caption:
            self.blocks.append(f"*{caption}*")
        self.blocks.append(markdown_table(frame))

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None:
            return
        link = Path(os.path.relpath(Path(path), self.folder)).as_posix()
        self.blocks.append(f"![{caption}]({link})\n\n*{caption}*")

    def text(self) -> str:
        return "\n\n".join(self.blocks) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table; cells are already formatted text (see `formatted`)."""
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    """A table cell: counts with thousands separators, missing values empty, pipes escaped."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return f"{int(value):,}"
    return str(value).replace("|", "\\|")


THRESHOLDS = ("0.010", "0.050", "0.100")   # levels a reader compares a p-value with


def p_value_text(p) -> str:
    """A p-value for a sentence: three decimals (four where three would round it onto a usual threshold,
    so that 0.0496 does not read as 0.050), `< 0.001` below that, empty when missing."""
    if p is None or pd.isna(p):
        return ""
    if float(p) < 0.001:
        return "< 0.001"
    text = f"{float(p):.3f}"
    return f"{float(p):.4f}" if text in THRESHOLDS else text


def number(value, digits: int = 2) -> str:
    """A float with `digits` decimals, '' for missing."""
    if value is None or pd.isna(value):
        return ""
    return f"{float(value):.{digits}f}"


def percent(value, digits: int = 1) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f}%"


def difference(value, low, high, points: bool = False) -> str:
    """A signed difference with its interval: '+1.20 [+0.40, +2.00]', or in percentage points
    ('−4.5 [−7.0, −2.0] pts') for a difference of proportions; the value alone without an interval."""
    if value is None or pd.isna(value):
        return ""
    show = (lambda v: f"{100 * float(v):+.1f}") if points else (lambda v: f"{float(v):+.2f}")
    unit = " pts" if points else ""
    if low is None or pd.isna(low):
        return show(value) + unit
    return f"{show(value)} [{show(low)}, {show(high)}]{unit}"


def with_interval(value, low, high, digits: int = 2, *, as_percent: bool = False) -> str:
    """'10.07 [9.94, 10.21]' (or percentages); the value alone when there is no interval."""
    show = (lambda v: percent(v, digits - 1)) if as_percent else (lambda v: number(v, digits))
    if value is None or pd.isna(value):
        return ""
    if low is None or pd.isna(low):
        return show(value)
    return f"{show(value)} [{show(low)}, {show(high)}]"


# ---------------------------------------------------------------------------------------------------
# Sections


def overall_table(overall: Mapping, confidence: float) -> pd.DataFrame:
    """The headline figures as a two-column table."""
    ci = f"{confidence:.0%} CI"
    rows = [("faces", f"{overall['n']:,}"),
            (f"MAE, years [{ci}]", with_interval(overall["mae"], overall["mae_ci_low"], overall["mae_ci_high"])),
            (f"RMSE, years [{ci}]", with_interval(overall["rmse"], overall["rmse_ci_low"], overall["rmse_ci_high"])),
            (f"mean (predicted − true), years [{ci}]",
             with_interval(overall["mean_error"], overall["mean_error_ci_low"], overall["mean_error_ci_high"]))]
    if ages_are_bands(overall):
        rows = [rows[0]] + [(f"{label} (ages are band midpoints: not the model's error)", value)
                            for label, value in rows[1:]]
    if "mae_argmax" in overall:
        rows += [("MAE of the argmax prediction, years", number(overall["mae_argmax"])),
                 ("RMSE of the argmax prediction, years", number(overall["rmse_argmax"]))]
    if overall.get("gender_accuracy") is not None:
        rows += [(f"gender accuracy [{ci}] (n={overall['n_gender']:,})",
                  with_interval(overall["gender_accuracy"], overall["gender_accuracy_ci_low"],
                                overall["gender_accuracy_ci_high"], 2, as_percent=True))]
    if overall.get("age_band_accuracy") is not None:
        rows += [(f"age-band accuracy (n={overall['n_age_band']:,})", percent(overall["age_band_accuracy"]))]
    return pd.DataFrame(rows, columns=["measure", "value"])


def groups_display(groups: pd.DataFrame, attribute: str, confidence: float, verdicts: pd.DataFrame) -> pd.DataFrame:
    """One attribute's groups as report rows: n, MAE [CI], RMSE, signed error, accuracy, and the verdicts,
    each on the interval of a difference (MAE: the group's − the rest's; bias: the mean signed error)."""
    rows = groups[groups["attribute"] == attribute]
    verdicts = _adjusted_verdicts(verdicts)
    mae_verdict = _against_the_rest(verdicts, attribute, "mae")
    sign_verdict = _verdicts(verdicts, attribute, "mean_error", {"above": "over-estimated", "below": "under-estimated"})
    not_judged = rows["small"].to_numpy()
    table = pd.DataFrame({
        "group": rows["group"] + np.where(rows["small"], " (small)", ""),
        "n": rows["n"].map(lambda n: f"{n:,}"),
        f"MAE [{confidence:.0%} CI]": [with_interval(v, lo, hi) for v, lo, hi in
                                       zip(rows["mae"], rows["mae_ci_low"], rows["mae_ci_high"])],
        "RMSE": rows["rmse"].map(number),
        "mean (pred − true)": rows["mean_error"].map(number),
        f"MAE − the rest [{confidence:.0%} CI]": np.where(not_judged, "not judged",
                                                          rows["group"].map(mae_verdict).fillna("")),
        "bias": np.where(not_judged, "not judged", rows["group"].map(sign_verdict).fillna("")),
    })
    standardised = age_standardised_mae(groups, attribute) if attribute in ("race", "gender") else pd.Series(dtype=float)
    if standardised.notna().any():
        table["MAE at the overall age mix"] = rows["group"].map(standardised).map(number).to_numpy()
    if rows["gender_accuracy"].notna().any():
        table[f"gender accuracy [{confidence:.0%} CI]"] = [
            with_interval(v, lo, hi, 2, as_percent=True) for v, lo, hi in
            zip(rows["gender_accuracy"], rows["gender_accuracy_ci_low"], rows["gender_accuracy_ci_high"])]
    return table.reset_index(drop=True)


def _against_the_rest(verdicts: pd.DataFrame, attribute: str, metric: str) -> dict:
    """{group: '+1.20 [+0.40, +2.00] worse'}: the difference to the rest of the breakdown, its raw interval
    and the word the adjusted test earns (`worse`/`better` only where it is significant); where the raw
    interval excludes zero and the adjusted test does not pass, 'n.s. (adjusted p 0.09)'."""
    rows = verdicts[(verdicts["attribute"] == attribute) & (verdicts["metric"] == metric)]
    higher_is_worse = metric != "gender_accuracy"
    words = {"above": "worse" if higher_is_worse else "better", "below": "better" if higher_is_worse else "worse",
             "n.s.": "n.s."}
    cells = {}
    for _, row in rows.iterrows():
        shown = difference(row["difference"], row["difference_ci_low"], row["difference_ci_high"], not higher_is_worse)
        cells[row["group"]] = f"{shown} {words.get(row['verdict'], '')}{_failed_adjustment(row)}".strip()
    return cells


def _failed_adjustment(row: pd.Series) -> str:
    """' (adjusted p 0.09)' where the raw interval excludes zero but the adjusted test is not significant."""
    if row["verdict"] != "n.s." or row.get("raw_verdict", "n.s.") == "n.s." or pd.isna(row.get("p_adjusted", np.nan)):
        return ""
    return f" (adjusted p {p_value_text(row['p_adjusted'])})"


def _verdicts(verdicts: pd.DataFrame, attribute: str, metric: str, words: Mapping[str, str]) -> dict:
    rows = verdicts[(verdicts["attribute"] == attribute) & (verdicts["metric"] == metric)]
    return {row["group"]: words.get(row["verdict"], "n.s." if row["verdict"] == "n.s." else "") + _failed_adjustment(row)
            for _, row in rows.iterrows()}


def gaps_display(gaps: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The gaps table as report rows: worst and best, their difference with its raw and its adjusted
    interval (Bonferroni over the pairs of groups compared), the ratio, the verdict (on the adjusted
    interval) and the omnibus test of all groups equal."""
    accuracy = gaps["metric"] == "gender_accuracy"
    show = lambda values: [percent(v) if a else number(v) for v, a in zip(values, accuracy)]  # noqa: E731
    ci = f"raw {confidence:.0%} CI"
    return pd.DataFrame({
        "breakdown": gaps["attribute"].map(lambda a: ATTRIBUTE_TITLES.get(a, a)),
        "metric": gaps["metric"],
        "worst group (n)": [f"{g} ({n:,})" for g, n in zip(gaps["worst_group"], gaps["worst_n"])],
        "worst": show(gaps["worst"]),
        "best group (n)": [f"{g} ({n:,})" for g, n in zip(gaps["best_group"], gaps["best_n"])],
        "best": show(gaps["best"]),
        f"worst − best [{ci}]": [difference(v, lo, hi, a) for v, lo, hi, a in zip(
            gaps["difference"], gaps["difference_ci_low"], gaps["difference_ci_high"], accuracy)],
        "adjusted CI (Bonferroni over the pairs)": _adjusted_gap_intervals(gaps, accuracy),
        f"worst / best [{ci}]": [with_interval(v, lo, hi) for v, lo, hi in zip(
            gaps["ratio"], gaps["ratio_ci_low"], gaps["ratio_ci_high"])],
        "verdict": gaps["verdict"].fillna(""),
        "groups compared": gaps["groups_compared"],
        "small groups left out": gaps["small_left_out"],
        "all groups equal? Q (df): raw p, Holm-adjusted p": _all_equal(gaps),
    })


def _adjusted_gap_intervals(gaps: pd.DataFrame, accuracy: pd.Series) -> list[str]:
    """'[low, high] (98.3%, 3 pairs)' per gap, where the evaluate stage wrote the adjusted interval."""
    if "difference_adjusted_ci_low" not in gaps.columns:
        return ["not computed"] * len(gaps)
    return [difference(v, lo, hi, a).split(" ", 1)[-1] + f" ({level:.1%}, {int(tests)} pairs)"
            for v, lo, hi, a, level, tests in zip(gaps["difference"], gaps["difference_adjusted_ci_low"],
                                                  gaps["difference_adjusted_ci_high"], accuracy,
                                                  gaps["adjusted_confidence"], gaps["tests"])]


def _all_equal(gaps: pd.DataFrame) -> list[str]:
    """The omnibus test that all groups are equal, where the evaluate stage wrote it."""
    if "p_all_equal" not in gaps.columns or "omnibus_statistic" not in gaps.columns:
        return ["not computed"] * len(gaps)
    return [f"{number(q, 1)} ({int(df)}): {p_value_text(p)}, {p_value_text(a)}" if pd.notna(p) else "not computed"
            for q, df, p, a in zip(gaps["omnibus_statistic"], gaps["omnibus_df"], gaps["p_all_equal"],
                                   gaps["p_all_equal_adjusted"])]


def pivot_display(values: pd.DataFrame, counts: pd.DataFrame, formatter=number, *, min_count: int = 0,
                  intervals: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """A pivot with 'value (n)' cells ('value [low, high] (n)' with `intervals`, (low, high) tables shaped
    like `values`), for markdown; cells under `min_count` faces marked *small*."""
    cells = pd.DataFrame(index=values.index, columns=values.columns, dtype=object)
    for row in values.index:
        for column in values.columns:
            value, count = values.at[row, column], counts.at[row, column]
            mark = ", *small*" if count < min_count else ""
            shown = formatter(value)
            if intervals is not None and pd.notna(intervals[0].at[row, column]):
                shown += f" [{formatter(intervals[0].at[row, column])}, {formatter(intervals[1].at[row, column])}]"
            cells.at[row, column] = "" if pd.isna(value) else f"{shown} ({int(count):,}{mark})"
    cells = cells.reset_index()
    cells.columns = [str(values.index.name or "")] + [str(c) for c in values.columns]
    return cells


def significance_bullets(evaluation: Evaluation, min_group_size: int) -> tuple[list[str], list[str]]:
    """(what is significant, what is not), judged groups only: MAE and gender accuracy against the rest of
    the breakdown, mean signed error against zero, each by the interval of that difference."""
    verdicts = _adjusted_verdicts(evaluation.significance)
    judged = verdicts[~verdicts["small"]]
    significant, not_significant = [], []
    for metric, above, below in (("mae", "larger MAE than the rest", "smaller MAE than the rest"),
                                 ("gender_accuracy", "higher gender accuracy than the rest",
                                  "lower gender accuracy than the rest"),
                                 ("mean_error", "over-estimated on average", "under-estimated on average")):
        rows = judged[judged["metric"] == metric]
        if rows.empty:
            continue
        for verdict, words in (("above", above), ("below", below)):
            hits = rows[rows["verdict"] == verdict]
            if not hits.empty:
                listed = ", ".join(_judged_group(metric, row) for _, row in hits.iterrows())
                significant.append(f"**{words}**: {listed}")
        unclear = rows[rows["verdict"] == "n.s."]
        holds_zero = unclear["raw_verdict"] == "n.s."
        if holds_zero.any():
            not_significant.append(f"{metric.replace('_', ' ')}: {', '.join(unclear.loc[holds_zero, 'group'])} "
                                   "(the raw interval of the difference holds zero)")
        if (~holds_zero).any():
            failed = ", ".join(f"{row['group']}{_failed_adjustment(row)}" for _, row in unclear[~holds_zero].iterrows())
            not_significant.append(f"{metric.replace('_', ' ')}: {failed} (the raw interval excludes zero, "
                                   "but the difference does not survive the multiplicity adjustment)")
    small = verdicts.loc[verdicts["small"], "group"].unique()
    if len(small):
        not_significant.append(f"not judged, fewer than {min_group_size} faces: {', '.join(small)}")
    return significant, not_significant


def _adjustment(verdicts: pd.DataFrame) -> str | None:
    """How the significance table was adjusted for multiplicity, or None where it carries no adjusted column."""
    if "significant" not in verdicts.columns or verdicts.empty:
        return None
    methods = sorted(set(verdicts["adjustment"].dropna().astype(str)) - {""}) if "adjustment" in verdicts.columns else []
    named = ", ".join(ADJUSTMENTS.get(m, m) for m in methods)
    return ("multiplicity adjustment within each breakdown × metric" + (f": {named}" if named else "")
            + "; each claim shows its raw interval, labelled raw, and its p-value after adjustment")


def _adjusted_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The significance table with `verdict` n.s. wherever the multiplicity-adjusted test is not
    significant (where the table has the adjusted `significant` column; else as it is), and the raw
    interval's own verdict as `raw_verdict` (the evaluation's `verdict_raw` where it wrote one)."""
    raw = verdicts["verdict_raw"] if "verdict_raw" in verdicts.columns else verdicts["verdict"]
    if "significant" not in verdicts.columns:
        return verdicts.assign(raw_verdict=raw)
    kept = verdicts["significant"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return verdicts.assign(raw_verdict=raw, verdict=verdicts["verdict"].where(kept | (verdicts["verdict"] == "n.s."), "n.s."))


# How a family's p-values were adjusted, as a reader needs it said (multiplicity.py)
ADJUSTMENTS = {"holm": "Holm: family-wise error rate, up to ten tests",
               "bh": "Benjamini–Hochberg: false discovery rate (FDR), past ten tests"}


def _judged_group(metric: str, row: pd.Series) -> str:
    """'black (12.3; +4.10 [+3.20, +5.00] raw against the rest, adjusted p 0.002 (Holm))'; for the mean
    signed error the value is the difference."""
    shown = difference(row["difference"], row["difference_ci_low"], row["difference_ci_high"],
                       metric == "gender_accuracy")
    adjusted = ""
    if pd.notna(row.get("p_adjusted", np.nan)):
        method = {"holm": "Holm", "bh": "Benjamini–Hochberg, FDR"}.get(str(row.get("adjustment")), "adjusted")
        adjusted = f", adjusted p {p_value_text(row['p_adjusted'])} ({method})"
    if metric == "mean_error":
        return f"{row['group']} ({shown} years raw{adjusted})"
    return f"{row['group']} ({_value(metric, row['value'])}; {shown} raw against the rest{adjusted})"


def _value(metric: str, value) -> str:
    return percent(value) if metric == "gender_accuracy" else number(value, 1)


def evaluation_sections(md: Markdown, evaluation: Evaluation, figures: Mapping[str, Path], confidence: float,
                        *, min_group_size: int, level: int = 2, parts: tuple[str, ...] = STUDY_PARTS) -> None:
    """The breakdown of one predictions table: headline, figures, group tables, gaps, the study tables
    named in `parts`, what is significant. `figures` maps names (as written by `stages.audit.write_figures`)
    to PNGs."""
    md.heading("Overall", level)
    md.table(overall_table(evaluation.overall, confidence))
    md.figure(figures.get("predicted_vs_actual"),
              "Mean predicted age against true age; the dashed line is a perfect prediction.")
    md.figure(figures.get("share_by_age_gender"), "Share of faces by age and gender.")
    md.figure(figures.get("error_by_age_gender"), "Error across age, by gender (R7).")
    md.figure(figures.get("error_by_age_race"), "Error across age, by race (R8).")

    md.heading("Groups", level)
    md.paragraph(f"Every group with its size n; MAE, RMSE and mean signed error carry {confidence:.0%} bootstrap "
                 "intervals, accuracies Wilson intervals (which, unlike a bootstrap, do not shrink to nothing for a "
                 f"small group that happens to be all right). Groups under {min_group_size} faces are marked "
                 "*(small)*: shown, not judged. *MAE − the rest*: the group's MAE minus that of the breakdown's "
                 "other faces, with the raw interval of that difference; *worse* or *better* only where the "
                 "difference survives the correction for multiplicity that *What is significant and what is not* "
                 "names (where the raw interval excludes zero but the corrected test does not pass, the cell says "
                 "n.s. with the corrected p-value). *bias*: its mean signed error differs from zero, judged the "
                 "same way. *MAE at the overall "
                 "age mix*: the group's MAE in each age band, weighted by the age bands' shares of all faces, so "
                 "that a group is not judged by how old its members are (blank when it lacks a band).")
    for attribute in [a for a in evaluation.groups["attribute"].unique() if a != "all"]:
        title = ATTRIBUTE_TITLES.get(attribute, attribute)
        md.heading(title, level + 1)
        kind = "cells: MAE and n" if attribute == "race*age_band" else f"bars: MAE, whiskers: {confidence:.0%} CI"
        md.figure(figures.get(f"mae_by_{attribute.replace('*', '_x_')}"), f"MAE by {title} ({kind}).")
        md.table(groups_display(evaluation.groups, attribute, confidence, evaluation.significance))

    if not evaluation.gaps.empty:
        md.heading("Gaps", level)
        md.paragraph("Worst and best group per breakdown (small groups left out when two or more others "
                     "remain), with the intervals of their difference and of their ratio (accuracy: Newcombe's, "
                     "from the two Wilson intervals). The two are the extremes of their breakdown, so the more groups "
                     "compared, the more easily a gap this size arises by chance: beside the raw interval stands the "
                     "difference's interval after Bonferroni's adjustment over every pair of the groups compared "
                     "(k groups, k (k − 1) / 2 pairs), and the verdict rests on it: *worse* where it excludes zero, "
                     "*n.s.* only where it holds zero. The last column tests all groups of the breakdown at once "
                     "(a Wald test of heterogeneity, Cochran's Q, with each group's variance from the cluster "
                     "bootstrap; χ² with k − 1 df; Holm's adjustment over the breakdowns of a metric).")
        md.table(gaps_display(evaluation.gaps, evaluation.confidence))

    study_tables(md, evaluation, figures, level, parts=parts, min_count=min_group_size)

    md.heading("What is significant and what is not", level)
    significant, not_significant = significance_bullets(evaluation, min_group_size)
    adjusted = _adjustment(evaluation.significance)
    md.paragraph(f"Significant ({adjusted}):" if adjusted else
                 "Significant (the raw interval of the difference excludes zero; no multiplicity adjustment: "
                 "this run's significance.csv has no column for it):")
    md.bullets(significant or ["nothing"])
    md.paragraph("Not significant or not judged:")
    md.bullets(not_significant or ["nothing"])


def study_tables(md: Markdown, evaluation: Evaluation, figures: Mapping[str, Path], level: int, *,
                 parts: tuple[str, ...] = STUDY_PARTS, min_count: int = 0) -> None:
    """R10 (signed error by predicted band × race × gender), R11 and R12 (gender accuracy), those named
    in `parts`; cells of fewer than `min_count` faces are marked small (greyed in the figures)."""
    bands = band_labels(evaluation.edges)
    signed = evaluation.tables.get("signed_error_by_predicted_band")
    small = f"; *small*: under {min_count} faces, not judged" if min_count else ""
    if "R10" in parts and signed is not None and not signed.empty:
        md.heading("Mean (predicted − true) by predicted-age band (R10)", level)
        columns = [c for c in ("race", "gender") if c in signed.columns]
        if columns:
            values, counts = pivot(signed, "predicted_band", columns, "mean_error", index_order=bands)
            md.figure(figures.get("signed_error_by_predicted_band"),
                      "Mean (predicted − true) by band of the predicted age; red: over-, blue: under-estimated.")
            md.table(pivot_display(values, counts, min_count=min_count),
                     f"cells: mean (predicted − true) in years (n){small}")
            true_age_view(md, evaluation.groups)
    groups = evaluation.groups
    race_gender = groups[(groups["attribute"] == "race*gender") & groups["gender_accuracy"].notna()]
    if "R11" in parts and not race_gender.empty:
        md.heading("Gender accuracy by race × gender (R11)", level)
        split = race_gender.assign(race=race_gender["group"].str.split("*").str[0],
                                   gender=race_gender["group"].str.split("*").str[1])
        values, counts = pivot(split, "race", ["gender"], "gender_accuracy", index_order=list(RACES))
        bounds = tuple(pivot(split, "race", ["gender"], f"gender_accuracy_ci_{end}", index_order=list(RACES))[0]
                       .reindex_like(values) for end in ("low", "high"))
        md.figure(figures.get("gender_accuracy_race_gender"), "Gender accuracy by race and gender (R11).")
        md.table(pivot_display(values, counts, percent, min_count=min_count, intervals=bounds),
                 f"cells: accuracy [{evaluation.confidence:.0%} Wilson interval] (n){small}")
    women = evaluation.tables.get("women_gender_accuracy")
    if "R12" in parts and women is not None and not women.empty:
        by_band = women[women["attribute"] == "race*age_band"]
        if not by_band.empty:
            md.heading("Gender accuracy for women by age band × race (R12)", level)
            split = by_band.assign(race=by_band["group"].str.split("*").str[0],
                                   age_band=by_band["group"].str.split("*").str[1])
            values, counts = pivot(split, "age_band", ["race"], "gender_accuracy", index_order=bands)
            md.figure(figures.get("women_gender_accuracy"), "Gender accuracy for women by age band and race (R12).")
            md.table(pivot_display(values, counts, percent, min_count=min_count),
                     f"cells: accuracy among women (n){small}")


REGRESSION_TO_THE_MEAN = ("Grouped by true age, even a well-calibrated estimate looks biased: any estimate from "
                          "uncertain evidence is pulled toward the average age, so the oldest faces' errors lean "
                          "negative and the youngest's positive (regression to the mean). Grouped by predicted age, "
                          "that pull builds no bias in, so that view comes first.")


def true_age_view(md: Markdown, groups: pd.DataFrame) -> None:
    """Beside R10: the mean (predicted − true) by TRUE age band, with the line on regression to the mean."""
    bands = groups[(groups["attribute"] == "age_band") & groups["mean_error"].notna()]
    if bands.empty:
        return
    interval = "mean_error_ci_low" in bands.columns
    md.paragraph("By true age band instead: " + "; ".join(
        f"{row['group']}: " + (with_interval(row["mean_error"], row["mean_error_ci_low"], row["mean_error_ci_high"])
                               if interval else number(row["mean_error"])) + f" (n={int(row['n']):,})"
        for _, row in bands.iterrows()) + ". " + REGRESSION_TO_THE_MEAN)


def correction_display(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    return pd.DataFrame({
        "model": table["model"],
        "fitted on": table["n_fit"].map(lambda n: f"{n:,}" if n else "—"),
        "judged on": table["n_judged"].map(lambda n: f"{n:,}"),
        "MAE": table["mae"].map(number),
        "RMSE": table["rmse"].map(number),
        f"MAE change [raw {confidence:.0%} CI]": [
            "—" if m == "none" else with_interval(v, lo, hi)
            for m, v, lo, hi in zip(table["model"], table["mae_change"], table["mae_change_ci_low"],
                                    table["mae_change_ci_high"])],
        "p (Holm-adjusted over the models)": (table["p_adjusted"].map(p_value_text) if "p_adjusted" in table
                                               else "not computed"),
        "verdict": table["verdict"],
    })


def correction_section(md: Markdown, table: pd.DataFrame, protocol: str, confidence: float, *, level: int = 2) -> None:
    """R9: each correction model against no correction, with the paired interval of the MAE change."""
    md.heading("Post-hoc correction on (predicted age, gender, race) (R9)", level)
    md.paragraph(f"{protocol} Each model learns true − predicted age from the predicted age, gender and race; "
                 "*better* means the whole raw interval of the MAE change is below zero and its p-value after Holm's "
                 "adjustment over the correction models compared is under the test level. Like the study, it uses "
                 "the true gender and race, which a deployed system would not have.")
    md.table(correction_display(table, confidence))
    winners = table[table["verdict"] == "better"]
    if winners.empty:
        md.paragraph("No correction model beats the uncorrected predictions (the study's finding too).")
    else:
        best = winners.loc[winners["mae"].idxmin()]
        how = (f"each after Holm's adjustment over the {len(table) - 1} models" if "p_adjusted" in table
               else "raw intervals: this table carries no adjusted p-values")
        adjusted = f" (adjusted p {p_value_text(best['p_adjusted'])})" if "p_adjusted" in table else ""
        md.paragraph(f"**{len(winners)} of {len(table) - 1} models beat no correction** ({how}); the best, "
                     f"{best['model']}, changes MAE by {number(best['mae_change'])} years{adjusted}. "
                     "The study found none did.")
