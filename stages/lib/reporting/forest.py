"""The mitigation section's forest plot: each experiment's paired change against its twin, one row per
experiment and statistic, with intervals adjusted for the experiments drawn.

Every change is drawn as an error so that left is better in every panel: MAE in years; gender as the
error rate in points (the change of accuracy with its sign turned; the accuracy gap, best − worst, is
already the error gap). The intervals are Bonferroni-adjusted percentile intervals: at confidence
1 − α/m, m the experiments compared on that test set and statistic, so that all m hold together at
1 − α. A filled marker's interval excludes 0; a hollow one's holds it.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# panel -> [(statistic, label, sign that turns the change into a change of error)], x-axis label
PANELS = {
    "mae": ([("mae", "overall", 1), ("worst_group_mae", "worst group", 1), ("mae_gap", "gap", 1)],
            "change of MAE (years)"),
    "gender": ([("gender_accuracy", "overall", -1), ("worst_group_accuracy", "worst group", -1),
                ("accuracy_gap", "gap", 1)], "change of gender error (points)"),
}
STYLES = {"overall": ("#1f77b4", "o"), "worst group": ("#d62728", "s"), "gap": ("#2ca02c", "D")}
ROW_HEIGHT = 0.24   # inches per drawn row
OFFSETS = (-0.25, 0.0, 0.25)


def bonferroni_confidence(confidence: float, comparisons: int) -> float:
    """The per-interval confidence at which `comparisons` intervals hold together at `confidence`."""
    return 1 - (1 - confidence) / max(comparisons, 1)


def forest_rows(summary: pd.DataFrame, named: Mapping[str, str]) -> pd.DataFrame:
    """The drawable rows of `summary` (twins.twin_summary at the adjusted confidence): the experiments
    of `named` (experiment -> twin) with a paired change, as changes of error (`PANELS`' signs):
    dataset, panel, experiment, reference, label, change, low, high."""
    rows = []
    for panel, (statistics, _) in PANELS.items():
        for statistic, label, sign in statistics:
            chosen = summary[(summary["statistic"] == statistic) & summary["experiment"].isin(list(named))
                             & summary["change"].notna()]
            for row in chosen.itertuples():
                scale = sign * (100 if panel == "gender" else 1)
                low, high = sorted((scale * row.change_ci_low, scale * row.change_ci_high))
                rows.append({"dataset": row.dataset, "panel": panel, "experiment": row.experiment,
                             "reference": named[row.experiment], "label": label, "change": scale * row.change,
                             "low": low, "high": high})
    return pd.DataFrame(rows, columns=["dataset", "panel", "experiment", "reference", "label", "change", "low", "high"])


def forest_figure(rows: pd.DataFrame, *, confidence: float) -> Figure:
    """One row of panels per test set, one column per metric (MAE, gender error); per experiment a band
    of its three statistics, the whiskers `rows`' (adjusted) intervals, a dotted line at no change."""
    datasets = list(dict.fromkeys(rows["dataset"]))
    experiments = list(dict.fromkeys(rows["experiment"]))
    panel_height = max(2.0, ROW_HEIGHT * 3 * len(experiments) + 0.9)
    figure, axes = plt.subplots(max(len(datasets), 1), len(PANELS), squeeze=False,
                                figsize=(13, panel_height * max(len(datasets), 1) + 1.0))
    for axes_row, dataset in zip(axes, datasets):
        for axis, panel in zip(axes_row, PANELS):
            drawn = rows[(rows["dataset"] == dataset) & (rows["panel"] == panel)]
            if drawn.empty:
                axis.set_axis_off()
                continue
            _draw(axis, drawn, experiments)
            axis.set_title(f"{dataset}: {PANELS[panel][1]}", fontsize=10)
            axis.set_xlabel(f"{PANELS[panel][1]}, ← better", fontsize=9)
    handles = [plt.Line2D([], [], color=colour, marker=marker, linestyle="", label=label)
               for label, (colour, marker) in STYLES.items()]
    handles.append(plt.Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="",
                              label="interval holds 0 (hollow)"))
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9)
    figure.suptitle(f"Paired change against each twin; whiskers: {confidence:.0%} intervals, Bonferroni-adjusted "
                    "over the experiments drawn", fontsize=11)
    bottom = 0.55 / figure.get_figheight()
    figure.tight_layout(rect=(0, bottom, 1, 1 - 0.35 / figure.get_figheight()))
    return figure


def _draw(axis, rows: pd.DataFrame, experiments: list[str]) -> None:
    ticks, names = [], []
    for position, experiment in enumerate(reversed(experiments)):
        own = rows[rows["experiment"] == experiment]
        if own.empty:
            continue
        ticks.append(position)
        names.append(f"{experiment} vs {own['reference'].iloc[0]}")
        for offset, (label, (colour, marker)) in zip(OFFSETS, STYLES.items()):
            for row in own[own["label"] == label].itertuples():
                holds_zero = row.low <= 0 <= row.high
                axis.errorbar(row.change, position - offset, xerr=[[row.change - row.low], [row.high - row.change]],
                              fmt=marker, color=colour, markerfacecolor="white" if holds_zero else colour,
                              capsize=2, markersize=5)
    axis.axvline(0, color="grey", linestyle=":", linewidth=1)
    axis.set_yticks(ticks, names, fontsize=8)
    axis.set_ylim(-0.7, len(experiments) - 0.3)
    axis.grid(axis="x", linewidth=0.3, alpha=0.5)
    spans = rows[["low", "high"]].to_numpy(dtype=float)
    if np.isfinite(spans).any():
        low, high = np.nanmin(spans), np.nanmax(spans)
        pad = 0.08 * (high - low) if high > low else 0.5
        axis.set_xlim(min(low, 0) - pad, max(high, 0) + pad)
