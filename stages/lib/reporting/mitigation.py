"""The report's mitigation section: can a fix downstream of the embedding close the gap?

Inputs are tidy tables: every experiment's worst_groups rows (stages/lib/evaluation/worst_groups.py:
overall and worst-group error, the race × gender gap, and the change of each against its twin, the
`reference` column (reporting/twins.py), on the same faces, with paired bootstrap intervals), and the probe stage's
`probes.csv` (linear probes of race and gender per backbone) and `balanced.csv` (plain against
balanced heads per backbone). Every sentence is generated from an interval: a change is called a
rise or a fall only when its interval lies on one side of zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stages.lib.core.params import Params
from stages.lib.evaluation.intervals import Bootstrap, direction, paired_mean_gap
from stages.lib.evaluation.probes import BALANCED_FILE, PROBES_FILE
from stages.lib.evaluation.results import bootstrap_from, load_worst_groups
from stages.lib.evaluation.worst_groups import REFERENCE, adjust_changes
from stages.lib.reporting.figures import distinct_colours, save_figure, separate_labels
from stages.lib.reporting.forest import bonferroni_confidence, forest_figure, forest_rows
from stages.lib.reporting.markdown import Markdown, number, p_value_text, percent, with_interval
from stages.lib.reporting.twins import saved_mismatches, twin_summary

# metric row of the figure -> (overall statistic, worst-group statistic, axis label, as an error)
FIGURE_METRICS = {
    "mae": ("mae", "worst_group_mae", "MAE (years)", False),
    "gender": ("gender_accuracy", "worst_group_accuracy", "gender error rate", True),
}
# statistic -> (what it is called, unit: years | points, the words for a fall and a rise)
WORDING = {
    "mae": ("overall MAE", "years", "falls", "rises"),
    "worst_group_mae": ("the worst group's MAE", "years", "falls", "rises"),
    "mae_gap": ("the race × gender MAE gap", "years", "narrows", "widens"),
    "gender_accuracy": ("overall gender accuracy", "points", "falls", "rises"),
    "worst_group_accuracy": ("the worst group's gender accuracy", "points", "falls", "rises"),
    "accuracy_gap": ("the race × gender accuracy gap", "points", "narrows", "widens"),
}


def _scaled(value, unit: str) -> float:
    return float(value) * (100 if unit == "points" else 1)


def signed_change(change, low, high, as_points: bool = False) -> str:
    """'+0.82 [+0.64, +0.98]' (years) or '+1.5 pts [+0.3, +2.7]' (accuracy in percentage points)."""
    if change is None or pd.isna(change):
        return ""
    scale, digits, unit = (100, 1, " pts") if as_points else (1, 2, "")
    text = f"{scale * change:+.{digits}f}{unit}"
    return text if pd.isna(low) else f"{text} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def change_phrase(statistic: str, change, low, high, *, adjusted: pd.Series | None = None) -> str:
    """What the paired interval of a change supports: a fall / rise when it lies on one side of zero,
    else that no change is shown. With `adjusted` (the row's change_significant, change_p_adjusted and
    change_tests: evaluation.worst_groups.adjust_changes), a fall or rise must also survive the
    adjustment for the comparisons in its family; one that does not is said to be unshown after it."""
    name, unit, fall, rise = WORDING[statistic]
    if pd.isna(change):
        return f"{name}: no paired interval"
    size = f"{abs(_scaled(change, unit)):.2f} {unit}"
    interval = f"[{_scaled(low, unit):+.2f}, {_scaled(high, unit):+.2f}]"
    side = direction(low, high)
    if side == "no interval":
        return f"{name}: {_scaled(change, unit):+.2f} {unit}, without an interval"
    if side not in ("above", "below"):
        return f"{name}: no change shown ({_scaled(change, unit):+.2f} {unit}, {interval} holds 0)"
    word = rise if side == "above" else fall
    if adjusted is None:
        return f"{name} {word} by {size} {interval}"
    tests, p_adjusted = int(adjusted["change_tests"]), _adjusted_p(adjusted)
    if not bool(adjusted["change_significant"]):
        return (f"{name}: no change shown after adjusting for the {tests} comparisons "
                f"({_scaled(change, unit):+.2f} {unit}, raw {interval}, {p_adjusted})")
    return f"{name} {word} by {size} {interval} ({p_adjusted} over {tests} comparisons)"


ADJUSTED = ["change_significant", "change_p_adjusted", "change_tests"]
# How each adjustment is named beside its p-value (multiplicity.adjust_families: Holm controls the
# family-wise error rate, Benjamini–Hochberg, used past ten tests, the false discovery rate)
P_NAMES = {"holm": "Holm-adjusted p", "bh": "FDR-adjusted p"}


def _adjusted_p(adjusted: pd.Series) -> str:
    """'Holm-adjusted p 0.012', 'FDR-adjusted p 0.037' (Benjamini–Hochberg), or 'adjusted p 0.012' where the
    row does not say which adjustment it had."""
    name = P_NAMES.get(str(adjusted.get("change_adjustment", "")), "adjusted p")
    return f"{name} {p_value_text(adjusted['change_p_adjusted'])}"


def _adjusted(row: pd.Series) -> pd.Series | None:
    """The row's adjustment (adjust_changes' columns), or None where the summary was not adjusted."""
    if not all(column in row.index for column in ADJUSTED):
        return None
    return row[[*ADJUSTED, *(["change_adjustment"] if "change_adjustment" in row.index else [])]]


def reference_of(row: pd.Series) -> str:
    """The experiment a worst_groups or band_changes row is measured against: its `reference` column, else
    `retrained` (the evaluate stage's worst_groups rows, and band_changes written before it had the column)."""
    value = row.get("reference") if "reference" in row.index else None
    return value if isinstance(value, str) and value else REFERENCE


def verdict(rows: pd.DataFrame, reference_worst: Mapping[str, str] | None = None) -> str:
    """One sentence on one experiment and test set, from its worst_groups rows; where its worst group is
    not its reference's (`reference_worst`: statistic -> group), the sentence says the two differ."""
    by = rows.set_index("statistic")
    first = rows.iloc[0]
    reference = reference_of(first)
    if by["change"].isna().all():
        return (f"**{first['experiment']}** on {first['dataset']}: tested on other faces than {reference}, "
                "so no paired change can be given.")
    parts = [change_phrase(s, *by.loc[s, ["change", "change_ci_low", "change_ci_high"]], adjusted=_adjusted(by.loc[s]))
             + _other_group(s, by, reference_worst or {}, reference)
             for s in WORDING if s in by.index and pd.notna(by.loc[s, "value"])]
    return f"**{first['experiment']}** on {first['dataset']}, against {reference}: " + "; ".join(parts) + "."


def _other_group(statistic: str, by: pd.DataFrame, reference_worst: Mapping[str, str], reference: str) -> str:
    if not statistic.startswith("worst_group") or statistic not in reference_worst:
        return ""
    own = by.loc[statistic, "worst_group"]
    if own == reference_worst[statistic]:
        return ""
    return (f" (its worst group is {own}, {reference}'s {reference_worst[statistic]}: two groups; "
            "*Δ at the reference's worst group* in the table holds one fixed)")


def summary_display(summary: pd.DataFrame, metric: str, confidence: float, *,
                    fixed: Mapping[str, str] | None = None, flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per experiment and test set: the overall, worst-group and gap values with intervals, and
    each one's change against the reference (the reference itself: `reference`), for `mae` or `gender`;
    `fixed` adds the change at the reference's worst group ({experiment: text}), `flags` a note on
    training that did not move from its start."""
    statistics = {"mae": ("mae", "worst_group_mae", "mae_gap"),
                  "gender": ("gender_accuracy", "worst_group_accuracy", "accuracy_gap")}[metric]
    as_percent = metric == "gender"
    ci = f"{confidence:.0%} CI"
    rows = []
    for (dataset, experiment), group in summary.groupby(["dataset", "experiment"], sort=False):
        by = group.set_index("statistic")
        if statistics[0] not in by.index or pd.isna(by.loc[statistics[0], "value"]):   # no MAE where ages are bands
            continue
        reference = "" if experiment == REFERENCE else reference_of(group.iloc[0])
        row = {"test set": dataset, "experiment": experiment, "against": reference or "(the study's reference)"}
        same = experiment == REFERENCE or _same_as_reference(group)
        for statistic, title in zip(statistics, ("overall", "worst group", "gap")):
            entry = by.loc[statistic]
            label = f" ({entry['worst_group']})" if title == "worst group" else ""
            row[f"{title} [{ci}]"] = with_interval(entry["value"], entry["ci_low"], entry["ci_high"],
                                                   as_percent=as_percent) + label
            column = f"Δ {title}" + (" (groups may differ)" if title == "worst group" else "")
            row[column] = (_reference_cell(experiment, reference) if same else signed_change(
                entry["change"], entry["change_ci_low"], entry["change_ci_high"], as_points=as_percent))
        if fixed is not None:
            row["Δ at the reference's worst group"] = (_reference_cell(experiment, reference) if same
                                                       else fixed.get((dataset, experiment), ""))
        if flags:
            row["training"] = flags.get(experiment, "")
        rows.append(row)
    return pd.DataFrame(rows)


REFERENCE_CELL = "reference"


def _same_as_reference(rows: pd.DataFrame) -> bool:
    """Every change and its interval exactly 0: the experiment predicted what the reference did."""
    changes = rows[["change", "change_ci_low", "change_ci_high"]].to_numpy(dtype=float)
    return bool(np.isfinite(changes).all() and (changes == 0).all())


def _reference_cell(experiment: str, reference: str) -> str:
    return REFERENCE_CELL if experiment == REFERENCE else f"same predictions as {reference}"


def _reference_worst(summary: pd.DataFrame, dataset: str, reference: str) -> dict[str, str]:
    found = {s: reference_worst_group(summary, dataset, s, reference) for s in ("worst_group_mae", "worst_group_accuracy")}
    return {s: group for s, group in found.items() if group}


def reference_worst_group(summary: pd.DataFrame, dataset: str, statistic: str, reference: str = REFERENCE) -> str | None:
    """`reference`'s worst race × gender group on `dataset` for `statistic` (worst_group_mae | _accuracy)."""
    rows = summary[(summary["dataset"] == dataset) & (summary["experiment"] == reference)
                   & (summary["statistic"] == statistic)]
    return None if rows.empty or not isinstance(rows["worst_group"].iloc[0], str) else rows["worst_group"].iloc[0]


def fixed_group_changes(predictions: Mapping[str, pd.DataFrame], group: str, metric: str,
                        bootstrap: Bootstrap, *, reference: str = REFERENCE) -> dict[str, str]:
    """Each experiment's change against `reference` on the faces of ONE group (the reference's worst),
    paired by face id with a bootstrap interval: {experiment: '+0.82 [+0.64, +0.98]'}. Experiments
    tested on other faces are left out."""
    if reference not in predictions:
        return {}
    race, gender = group.split("*")
    outcome = _absolute_error if metric == "mae" else _correct

    def faces(frame: pd.DataFrame) -> pd.DataFrame:
        chosen = frame[(frame["race"] == race) & (frame["gender"] == gender)]
        return pd.DataFrame({"id": chosen["id"].to_numpy(), "outcome": outcome(chosen)})

    reference_faces = faces(predictions[reference])
    changes = {}
    for name, frame in predictions.items():
        other = faces(frame)
        if name == reference or frame.empty or sorted(other["id"]) != sorted(reference_faces["id"]):
            continue
        paired = reference_faces.merge(other, on="id", suffixes=("_reference", ""))
        gap = paired_mean_gap(paired["outcome"], paired["outcome_reference"], bootstrap, f"fixed:{name}:{group}")
        changes[name] = signed_change(gap.difference, gap.difference_ci_low, gap.difference_ci_high,
                                      as_points=metric != "mae")
    return changes


def _absolute_error(rows: pd.DataFrame) -> np.ndarray:
    return (rows["age_pred"].astype(float) - rows["age"].astype(float)).abs().to_numpy()


def _correct(rows: pd.DataFrame) -> np.ndarray:
    return (rows["gender_pred"].astype(object) == rows["gender"].astype(object)).to_numpy(dtype=float)


def stalled_heads(history: pd.DataFrame | None) -> dict[str, int]:
    """{head: epochs run} for the heads whose best validation epoch is the first: the weights kept
    barely moved from their start."""
    if history is None or history.empty or "epoch" not in history.columns:
        return {}
    stalled = {}
    for column in [c for c in history.columns if c.startswith("val_") and "loss" in c]:
        values = history[column].dropna()
        if len(values) > 1 and values.idxmin() == values.index[0]:
            stalled[column.removeprefix("val_").removesuffix("_loss").removesuffix("loss") or "heads"] = len(values)
    return stalled


def stall_flags(histories: Mapping[str, pd.DataFrame | None]) -> dict[str, str]:
    """{experiment: 'age: best val epoch is its first of 21; ...'} for stalled trainings."""
    flags = {}
    for name, history in histories.items():
        heads = stalled_heads(history)
        if heads:
            flags[name] = ("; ".join(f"{head}: best val epoch is its first of {epochs:,}" for head, epochs in heads.items())
                           + ": the kept weights barely moved from their start")
    return flags


MARKERS = "os^vPX*h<>p"
BASELINES = (REFERENCE, "plain")
LABELLED_POINTS = 4   # panels with more points than this rely on the legend: their labels would collide


FIGURE_COLUMNS = 3   # panels per row: with FIGURE_WIDTH inches the figure stays legible at 1,600 px
FIGURE_WIDTH = 14.0


def tradeoff_figure(panels: Mapping[str, pd.DataFrame], confidence: float) -> Figure:
    """Overall against worst-group error, one point per experiment with both intervals as whiskers;
    one panel per test set (of one backbone) and metric (MAE, gender error) that has points: a panel
    with nothing to draw (no worst group, or ages that are bands) is left out, not drawn empty."""
    drawn = [(title, metric, points) for title, frame in panels.items() for metric in FIGURE_METRICS
             for points in [_points(frame, metric).dropna(subset=["x", "y"])] if len(points)]
    count = max(len(drawn), 1)
    columns = min(count, FIGURE_COLUMNS)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(FIGURE_WIDTH, FIGURE_WIDTH / columns * 0.9 * rows))
    names = [e for e in dict.fromkeys(e for _, _, p in drawn for e in p.index) if e not in BASELINES]
    styles = {name: (colour, MARKERS[i % len(MARKERS)]) for i, (name, colour) in enumerate(zip(names, distinct_colours(len(names))))}
    styles.update({name: ("black", "D") for name in BASELINES})   # what every other point is measured against
    for axis, (title, metric, points) in zip(axes.flat, drawn):
        axis.set_title(f"{title}: {FIGURE_METRICS[metric][2]}", fontsize=10)
        _draw_panel(axis, points, styles, FIGURE_METRICS[metric][2])
    for axis in list(axes.flat)[len(drawn):]:
        axis.remove()
    handles = {h.get_label(): h for axis in figure.axes for h in axis.get_legend_handles_labels()[0]}
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6),
                      bbox_to_anchor=(0.5, -0.03 - 0.03 * (-(-len(handles) // 6))), fontsize=9)
    figure.suptitle(f"Overall against worst-group error, whiskers: {confidence:.0%} CI "
                    "(dotted, where in view: worst group = overall)", fontsize=12)
    figure.tight_layout()
    separate_labels(figure)
    return figure


def _draw_panel(axis, points: pd.DataFrame, styles: Mapping[str, tuple], label: str) -> None:
    for experiment, point in points.iterrows():
        colour, marker = styles[experiment]
        axis.errorbar(point["x"], point["y"], xerr=_whisker(point, "x"), yerr=_whisker(point, "y"), fmt=marker,
                      color=colour, capsize=3, markersize=7, label=experiment)
        if len(points) <= LABELLED_POINTS:
            axis.annotate(experiment, (point["x"], point["y"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    limits = [_padded(points[[a, f"{a}_low", f"{a}_high"]].to_numpy(dtype=float)) for a in ("x", "y")]
    low, high = max(limits[0][0], limits[1][0]), min(limits[0][1], limits[1][1])
    if low < high:
        axis.plot([low, high], [low, high], linestyle=":", color="grey", linewidth=1)
    axis.set(xlim=limits[0], ylim=limits[1], xlabel=f"overall {label}", ylabel=f"worst group's {label}")


def _padded(values: np.ndarray) -> tuple[float, float]:
    low, high = np.nanmin(values), np.nanmax(values)
    pad = 0.08 * (high - low) if high > low else 0.5
    return float(low - pad), float(high + pad)


def _points(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """x (overall) and y (worst group) with their intervals per experiment; errors for gender."""
    overall, worst, _, as_error = FIGURE_METRICS[metric]
    columns = {}
    for axis, statistic in (("x", overall), ("y", worst)):
        rows = frame[frame["statistic"] == statistic].set_index("experiment")
        values = rows[["value", "ci_low", "ci_high"]].astype(float)
        if as_error:
            values = pd.DataFrame({"value": 1 - values["value"], "ci_low": 1 - values["ci_high"],
                                   "ci_high": 1 - values["ci_low"]})
        columns.update({axis: values["value"], f"{axis}_low": values["ci_low"], f"{axis}_high": values["ci_high"]})
    return pd.DataFrame(columns)


def _whisker(point: pd.Series, axis: str):
    if pd.isna(point[f"{axis}_low"]):
        return None
    return [[max(point[axis] - point[f"{axis}_low"], 0)], [max(point[f"{axis}_high"] - point[axis], 0)]]


def probe_display(probes: pd.DataFrame, balanced: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per backbone and test set: each probe's balanced accuracy (chance), and the MAE and
    accuracy gaps of plain and balanced heads with the change."""
    ci = f"{confidence:.0%} CI"
    rows = []
    for (backbone, dataset), group in probes.groupby(["backbone", "dataset"], sort=False):
        row = {"backbone": backbone, "test set": dataset}
        for probe in group.itertuples():
            row[f"{probe.attribute} probe [{ci}] (chance)"] = (
                with_interval(probe.balanced_accuracy, probe.ci_low, probe.ci_high, as_percent=True)
                + f" ({percent(probe.chance)})")
        heads = balanced[(balanced["backbone"] == backbone) & (balanced["dataset"] == dataset)]
        for statistic, as_percent in (("mae_gap", False), ("accuracy_gap", True)):
            plain = heads[(heads["experiment"] == "plain") & (heads["statistic"] == statistic)]
            after = heads[(heads["experiment"] == "balanced") & (heads["statistic"] == statistic)]
            if plain.empty or after.empty or pd.isna(after["value"].iloc[0]):
                continue
            p, b = plain.iloc[0], after.iloc[0]
            name = "MAE gap" if statistic == "mae_gap" else "accuracy gap"
            row[f"{name} plain"] = with_interval(p["value"], p["ci_low"], p["ci_high"], as_percent=as_percent)
            row[f"{name} balanced"] = with_interval(b["value"], b["ci_low"], b["ci_high"], as_percent=as_percent)
            row[f"Δ {name}"] = signed_change(b["change"], b["change_ci_low"], b["change_ci_high"], as_points=as_percent)
        rows.append(row)
    return pd.DataFrame(rows)


def embedding_sentence(backbone: str, dataset: str, probes: pd.DataFrame, balanced: pd.DataFrame) -> str:
    """What the probe and the balanced heads' intervals say about one backbone's embedding."""
    parts = []
    for probe in probes.itertuples():
        holds = ("holds it above chance" if direction(probe.ci_low - probe.chance, probe.ci_high - probe.chance) == "above"
                 else "does not show it above chance")
        parts.append(f"a linear probe reads {probe.attribute} at {percent(probe.balanced_accuracy)} balanced "
                     f"accuracy [{percent(probe.ci_low)}, {percent(probe.ci_high)}] (chance {percent(probe.chance)}): "
                     f"the embedding {holds}")
    gap = balanced[(balanced["experiment"] == "balanced") & (balanced["statistic"] == "mae_gap")]
    if not gap.empty and pd.notna(gap["value"].iloc[0]):
        g = gap.iloc[0]
        left = "a gap remains" if direction(g["ci_low"], g["ci_high"]) == "above" else "the gap's interval reaches 0"
        parts.append(f"heads trained on race × gender-balanced data leave a MAE gap of {number(g['value'])} years "
                     f"[{number(g['ci_low'])}, {number(g['ci_high'])}] ({g['worst_group']} vs {g['best_group']}): "
                     f"{left}; against plain heads, "
                     f"{change_phrase('mae_gap', g['change'], g['change_ci_low'], g['change_ci_high'], adjusted=_adjusted(g))}")
    return f"**{backbone}** on {dataset}: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class MitigationInputs:
    """What the section shows beside the worst_groups summary and the probes."""

    figure_path: Path | None
    backbone: str
    confidence: float
    fixed: Mapping[str, Mapping] = field(default_factory=dict)   # metric -> {(dataset, experiment): change text}
    flags: Mapping[str, str] = field(default_factory=dict)       # experiment -> stalled-training note
    confounds: tuple[str, ...] = ()
    named: Mapping[str, str] = field(default_factory=dict)       # experiment -> the twin params name for it
    mismatches: Mapping[str, list[str]] = field(default_factory=dict)   # experiment -> how its saved twin differs
    forest_path: Path | None = None
    forest_caption: str = ""


def twins_paragraph(named: Mapping[str, str], mismatches: Mapping[str, list[str]]) -> str:
    """Which experiment each is measured against, and any pair whose saved heads are not twins."""
    by_twin: dict[str, list[str]] = {}
    for name, twin in named.items():
        by_twin.setdefault(twin, []).append(name)
    pairs = "; ".join(f"{', '.join(names)} against **{twin}**" for twin, names in by_twin.items())
    text = (f"Each experiment is measured against its twin, named in params.yaml (`reference`) and checked there to "
            "differ from it only in its treatment (the mitigation, the oversampling or re-weighting, the split): the "
            "same cached features, start, head shape, training budget and split. "
            + (f"Twins: {pairs}. " if pairs else "")
            + f"The others, which name none, are measured against {REFERENCE}, the study's reference, from which "
            "they may differ in more than one respect.")
    for name, differences in mismatches.items():
        text += (f" **Not twins as saved:** {name}'s heads differ from {named.get(name, REFERENCE)}'s in "
                 f"{'; '.join(differences)} (models/<experiment>/mitigation.json): re-run both train stages.")
    return text


def mitigation_section(md: Markdown, summary: pd.DataFrame, probes: pd.DataFrame, balanced: pd.DataFrame, *,
                       inputs: MitigationInputs, level: int = 2) -> None:
    """The section: the twins, the forest of paired changes, the figure, the two tables, a sentence per
    experiment, then the probes."""
    md.heading("Mitigation side by side: can a fix downstream of the embedding close the gap?", level)
    if summary.empty:
        md.paragraph("No experiment has a worst_groups.csv yet: run the evaluate stages.")
        return
    confidence = inputs.confidence
    md.paragraph(twins_paragraph(inputs.named, inputs.mismatches))
    md.paragraph("Worst and best groups are race × gender groups with enough test faces, named from each experiment's "
                 "own estimates; each change is against the experiment's reference (the *against* column) on the same "
                 f"test faces, with paired, group-stratified bootstrap {confidence:.0%} intervals. A change is called a "
                 "rise or a fall only where its interval excludes 0 and its p-value survives the adjustment for the "
                 "experiments compared on that test set and statistic (Holm; Benjamini–Hochberg, which controls the "
                 "false discovery rate, past ten); the intervals in the tables are raw. An experiment's worst group may "
                 "differ from its reference's: *Δ at the reference's worst group* holds that one group fixed, so it "
                 "says whether the group worst served by the reference is served better.")
    if inputs.forest_path is not None:
        md.figure(inputs.forest_path, inputs.forest_caption)
    md.figure(inputs.figure_path, f"Overall against worst-group error per experiment ({inputs.backbone}); "
                                  f"whiskers: {confidence:.0%} CI.")
    for metric, caption in (("mae", "Age: MAE in years"), ("gender", "Gender: accuracy")):
        table = summary_display(summary, metric, confidence, fixed=inputs.fixed.get(metric), flags=inputs.flags)
        if not table.empty:
            md.table(table, f"{caption}, overall, for the worst race × gender group and the gap (how far it trails the best), "
                            "and each one's change against its reference (*against*)")
    md.bullets(verdict(rows, _reference_worst(summary, dataset, reference_of(rows.iloc[0])))
               + (f" *Training did not move: {inputs.flags[experiment]}.*" if experiment in inputs.flags else "")
               for (dataset, experiment), rows in summary.groupby(["dataset", "experiment"], sort=False)
               if experiment != REFERENCE)
    probe_section(md, probes, balanced, inputs=inputs, level=level + 1)


def probe_section(md: Markdown, probes: pd.DataFrame, balanced: pd.DataFrame, *, inputs: MitigationInputs,
                  level: int) -> None:
    """What a linear probe reads from each embedding, with its confounds; no claim beyond the probe."""
    md.heading("What each embedding holds: linear probes", level)
    if probes.empty:
        md.paragraph("The probe stage has not run (`dvc repro probe`).")
        return
    md.paragraph("A linear probe (one softmax layer on the standardised features, class-balanced loss) fitted on "
                 "the finetune dataset's train split, judged on each test set by balanced accuracy; and, per "
                 "backbone, heads from the same random start trained on the train split as it is (plain) and "
                 "rebalanced to equal race × gender counts (balanced). A probe that reads race above chance shows "
                 "that race is linearly decodable from the features; it does not show that the heads' errors come "
                 "from it, nor that another embedding holding more race would be more biased.")
    md.table(probe_display(probes, balanced, inputs.confidence), "What each backbone's features hold, and the gap "
                                                                 "left after balanced retraining")
    md.bullets(embedding_sentence(backbone_, dataset, rows, balanced[(balanced["backbone"] == backbone_)
                                                                      & (balanced["dataset"] == dataset)])
               for (backbone_, dataset), rows in probes.groupby(["backbone", "dataset"], sort=False))
    unheaded = [b for b in dict.fromkeys(probes["backbone"]) if balanced.empty or b not in set(balanced["backbone"])]
    if unheaded:
        md.paragraph(f"No plain or balanced heads were trained by the probe stage for {', '.join(unheaded)}: the "
                     f"experiments `{REFERENCE}` and the balanced mitigation trained them already, from the same "
                     "start; their gaps and changes are in the tables above.")
    if inputs.confounds:
        md.paragraph("Confounds: the backbones differ in more than their embedding.")
        md.bullets(inputs.confounds)


def probe_confounds(specs: Mapping[str, Mapping], cluster_embedding: str | None) -> tuple[str, ...]:
    """What besides the embedding differs between the probed backbones (from the compare stage's specs)."""
    confounds = []
    sizes = {label: spec["spec"]["input_size"] for label, spec in specs.items()}
    if len(set(sizes.values())) > 1:
        confounds.append("input size: " + ", ".join(f"{label} {size} px" for label, size in sizes.items())
                         + " (a smaller input holds less of the face's detail)")
    alignment = {label: spec["spec"].get("alignment") for label, spec in specs.items()}
    if len(set(alignment.values())) > 1:
        confounds.append("alignment: " + ", ".join(f"{label} {how}" for label, how in alignment.items()))
    if cluster_embedding:
        users = [label for label, spec in specs.items() if spec["spec"]["name"] == cluster_embedding]
        if users:
            confounds.append(f"{', '.join(users)} also defines the split's look-alike clusters ({cluster_embedding}): "
                             "its test faces are kept far from the training faces in its own space, which the other "
                             "backbones' are not")
    return tuple(confounds)


def figure_panels(summary: pd.DataFrame, balanced: pd.DataFrame, backbone: str) -> dict[str, pd.DataFrame]:
    """The figure's panels: every experiment per test set, then plain against balanced heads per
    probed backbone and test set."""
    panels = {f"{backbone}, {dataset}": rows for dataset, rows in summary.groupby("dataset", sort=False)}
    if not balanced.empty:
        for (label, dataset), rows in balanced.groupby(["backbone", "dataset"], sort=False):
            panels[f"{label} (random start), {dataset}"] = rows
    return panels


def mitigation_report(md: Markdown, params: Params, test_rows: Mapping[str, pd.DataFrame],
                      specs: Mapping[str, Mapping] | None = None, *, twins: pd.DataFrame | None = None) -> None:
    """Measure every evaluated experiment against its twin (reporting/twins.py; `twins`: that summary
    computed already), read the histories and the probe stage's tables, draw the figures, write the
    section. `test_rows`: each experiment's test predictions on the main test set."""
    evaluated = [name for name in params.experiments
                 if not load_worst_groups(params.paths.experiments / name / "evaluation").empty]
    summary = twin_summary(params, evaluated) if twins is None else twins[twins["experiment"].isin(evaluated)]
    alpha = 1 - params.evaluate.confidence
    summary = adjust_changes(summary, alpha) if not summary.empty else summary
    probe_folder = params.paths.probe
    probes, balanced = (pd.read_csv(probe_folder / name) if (probe_folder / name).exists() else pd.DataFrame()
                        for name in (PROBES_FILE, BALANCED_FILE))
    balanced = adjust_changes(balanced, alpha) if not balanced.empty else balanced
    named = {name: params.experiments[name].reference for name in evaluated if params.experiments[name].reference}
    figure_path, forest_path, forest_caption = None, None, ""
    if not summary.empty:
        panels = figure_panels(summary, balanced, params.backbone.name)
        figure_path = save_figure(tradeoff_figure(panels, params.evaluate.confidence),
                                  params.paths.figures / "mitigation.png")
        forest_path, forest_caption = _forest(params, evaluated, named)
    histories = {name: _history(params.paths.models / name / "history.csv") for name in params.experiments
                 if name != REFERENCE and not params.experiments[name].is_baseline}
    clusters = params.split.clusters
    inputs = MitigationInputs(figure_path, params.backbone.name, params.evaluate.confidence,
                              _fixed_changes(summary, test_rows, bootstrap_from(params)), stall_flags(histories),
                              probe_confounds(specs or {}, clusters.embedding if clusters else None), named,
                              saved_mismatches(params, named), forest_path, forest_caption)
    mitigation_section(md, summary, probes, balanced, inputs=inputs)


def _forest(params: Params, evaluated: list[str], named: Mapping[str, str]) -> tuple[Path | None, str]:
    """The forest plot of the experiments that name a twin, at Bonferroni-adjusted confidence, and its caption."""
    drawn = [name for name in named if name in evaluated]
    if not drawn:
        return None, ""
    confidence = bonferroni_confidence(params.evaluate.confidence, len(drawn))
    rows = forest_rows(twin_summary(params, drawn, confidence=confidence), named)
    if rows.empty:
        return None, ""
    path = save_figure(forest_figure(rows, confidence=params.evaluate.confidence),
                       params.paths.figures / "mitigation_forest.png")
    return path, (f"Each experiment's paired change against its twin (*against*), per statistic, as a change of error "
                  f"(left is better); whiskers: Bonferroni-adjusted intervals, each at {confidence:.1%} so that the "
                  f"{len(drawn)} compared on a test set and statistic hold together at {params.evaluate.confidence:.0%}; "
                  "hollow where the interval holds 0. These whiskers control the family-wise error, as Holm does in the "
                  "text; past ten comparisons the text's verdicts control the false discovery rate (Benjamini–Hochberg), "
                  "which is less strict, so a change the text calls a rise or fall there may have a whisker that reaches 0.")


def _fixed_changes(summary: pd.DataFrame, test_rows: Mapping[str, pd.DataFrame], bootstrap: Bootstrap) -> dict:
    """metric -> {(dataset, experiment): change at its reference's worst group} on the main test set."""
    fixed = {}
    if summary.empty or not test_rows:
        return fixed
    main = _dataset_of(test_rows)
    for metric, statistic in (("mae", "worst_group_mae"), ("gender", "worst_group_accuracy")):
        found = {}
        for (dataset, reference), rows in summary.groupby(["dataset", summary["reference"].map(
                lambda r: r or REFERENCE)], sort=False):
            group = reference_worst_group(summary, dataset, statistic, reference)
            if group is None or str(dataset) != main:
                continue
            changes = fixed_group_changes(test_rows, group, metric, bootstrap, reference=reference)
            found.update({(dataset, name): changes[name] for name in rows["experiment"] if name in changes
                          and reference_of(rows[rows["experiment"] == name].iloc[0]) == reference})
        fixed[metric] = found
    return fixed


def _history(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _dataset_of(test_rows: Mapping[str, pd.DataFrame]) -> str | None:
    """The one dataset the test rows hold (they are the main test set's)."""
    datasets = {str(d) for frame in test_rows.values() if not frame.empty for d in frame["dataset"].unique()}
    return next(iter(datasets)) if len(datasets) == 1 else None
