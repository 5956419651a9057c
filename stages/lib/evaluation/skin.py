"""Breakdowns by apparent skin colour: error and gender accuracy by skin-lightness band × gender and
skin-hue band × gender, with the intervals, small-group flags and multiplicity adjustment of the
race × gender tables (groups.py judges the gaps; this module supplies other groupings and sums them).

Two band schemes side by side:
- `quintile`: edges chosen once per run from the pooled evaluation faces (`SkinBands.from_faces`),
  so that every model and test set is cut at the same values (the edges go into the report);
- `paper`: the fixed cut-offs of Thong, Joniak & Xiang (ICCV 2023), L* 60 and h* 55, so that runs
  (and other studies) can be compared.

A face without a measurement (its `problem` says why; a grey-scale photo has L* but no hue) is in no
band of that measure, never in a made-up one: it still counts in every other table.

Input: a predictions table (schema.PREDICTION_COLUMNS, optionally `cluster`) with `skin_lightness`
and `skin_hue` joined on `id` (`with_measurements`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from stages.lib.core.schema import CLUSTER_COLUMN
from stages.lib.evaluation.disaggregation import (AGE_ERROR_COLUMNS, EXTRA_COLUMNS, GROUP_COLUMNS, MEANS, PROPORTIONS,
                                                  SUMMED, Disaggregated, group_intervals, group_positions, prepare,
                                                  summed_values)
from stages.lib.evaluation.group_differences import judged_metrics
from stages.lib.evaluation.group_gaps import gaps
from stages.lib.evaluation.significance import significance
from stages.lib.evaluation.intervals import Bootstrap, group_rng, resample_cluster_sums

LIGHTNESS, HUE = "skin_lightness", "skin_hue"
SKIN_COLUMNS = (LIGHTNESS, HUE)
# Of the measurement table (the measure stage's contract), the photo-quality columns the analysis uses.
QUALITY_COLUMNS = ("clipped_dark", "clipped_bright", "background_luminance", "contrast", "sharpness", "face_size",
                   "yaw", "pitch", "roll")
MEASURED_COLUMNS = ("id", *SKIN_COLUMNS, *QUALITY_COLUMNS, "problem")
PAPER_CUTS = {LIGHTNESS: 60.0, HUE: 55.0}     # Thong et al. 2023: light/dark and red/yellow
SYMBOLS = {LIGHTNESS: "L*", HUE: "h*"}
QUANTILES = 5
SCHEMES = ("quintile", "paper")


@dataclass(frozen=True)
class SkinBands:
    """The inner band edges per measure and scheme: {measure: {scheme: edges}}, ascending."""

    edges: Mapping[str, Mapping[str, tuple[float, ...]]]

    @classmethod
    def from_faces(cls, faces: pd.DataFrame, quantiles: int = QUANTILES) -> "SkinBands":
        """Quantile edges of each measure over `faces` (the pooled evaluation faces), beside the paper's."""
        edges = {}
        for measure in SKIN_COLUMNS:
            values = faces[measure].dropna().to_numpy(dtype=float) if measure in faces else np.empty(0)
            inner = np.quantile(values, np.arange(1, quantiles) / quantiles) if len(values) else np.empty(0)
            edges[measure] = {"quintile": tuple(np.unique(np.round(inner, 1)).tolist()),
                              "paper": (PAPER_CUTS[measure],)}
        return cls(edges)

    def table(self) -> pd.DataFrame:
        """One row per measure and scheme: its edges as text (for the report)."""
        return pd.DataFrame([{"measure": SYMBOLS[m], "scheme": s, "edges": ", ".join(f"{e:g}" for e in edges)}
                             for m, schemes in self.edges.items() for s, edges in schemes.items()])


def band_names(edges: Sequence[float]) -> list[str]:
    """`< e1`, `e1–e2`, …, `≥ ek`: the bands cut at `edges` (lower edge included)."""
    if not edges:
        return ["all"]
    inner = [f"{low:g}–{high:g}" for low, high in zip(edges, edges[1:])]
    return [f"< {edges[0]:g}", *inner, f"≥ {edges[-1]:g}"]


def band_column(values: pd.Series, edges: Sequence[float]) -> pd.Series:
    """Each value's band (ordered categorical; NaN stays NaN)."""
    codes = np.searchsorted(np.asarray(edges, dtype=float), values.to_numpy(dtype=float), side="right")
    names = band_names(edges)
    labels = pd.Series(np.asarray(names, dtype=object)[np.minimum(codes, len(names) - 1)], index=values.index)
    return pd.Series(pd.Categorical(labels.where(values.notna()), categories=names, ordered=True), index=values.index)


def attribute_name(measure: str, scheme: str) -> str:
    """The breakdown's column: `lightness_quintile`, `hue_paper`, …"""
    return f"{measure.removeprefix('skin_')}_{scheme}"


def with_bands(frame: pd.DataFrame, bands: SkinBands) -> pd.DataFrame:
    """`frame` with one band column per measure and scheme (`attribute_name`)."""
    columns = {attribute_name(measure, scheme): band_column(frame[measure], edges)
               for measure, schemes in bands.edges.items() if measure in frame for scheme, edges in schemes.items()}
    return frame.assign(**columns)


def with_measurements(predictions: pd.DataFrame, measurements: pd.DataFrame,
                      clusters: pd.Series | None = None) -> pd.DataFrame:
    """The predictions with the measurement columns joined on `id` (NaN where a face has no row), and the
    resampling cluster filled from `clusters` (indexed by id) where the predictions carry none."""
    columns = [c for c in MEASURED_COLUMNS if c in measurements.columns]
    joined = predictions.drop(columns=[c for c in columns if c != "id" and c in predictions.columns])
    joined = joined.merge(measurements[columns].drop_duplicates("id"), on="id", how="left")
    if clusters is not None:
        known = joined[CLUSTER_COLUMN] if CLUSTER_COLUMN in joined else pd.Series(None, index=joined.index)
        joined[CLUSTER_COLUMN] = known.astype(object).where(known.notna(), joined["id"].map(clusters))
    return joined


# ---------------------------------------------------------------------------------------------------
# The breakdowns


def skin_attributes(bands: SkinBands, frame: pd.DataFrame) -> list[str]:
    """`all` (which tells group_differences.judged_metrics whether ages are bands), then each band column alone and
    crossed with gender, for the measures the table holds."""
    names = [attribute_name(m, s) for m, schemes in bands.edges.items() if m in frame and frame[m].notna().any()
             for s in schemes]
    crossed = [f"{name}*gender" for name in names] if frame["gender"].notna().any() else []
    return ["all", *names, *crossed]


def disaggregate_skin(frame: pd.DataFrame, bands: SkinBands, bootstrap: Bootstrap = Bootstrap(),
                      min_group_size: int = 30, *, edges: Sequence[int]) -> Disaggregated:
    """The groups table (groups.GROUP_COLUMNS + EXTRA_COLUMNS) of every skin breakdown, and each
    group's exact and resampled sums, so that groups.gaps and groups.significance judge it as they
    judge race × gender. `edges`: the age bands (for the age-band column prepare derives)."""
    prepared = prepare(with_bands(frame, bands), edges)
    values, codes = summed_values(prepared), prepared["cluster_code"].to_numpy()
    rows, resampled, totals = [], {}, {}
    for attribute in skin_attributes(bands, prepared):
        for label, positions in group_positions(prepared, attribute):
            key = (attribute, label)
            totals[key] = values[positions].sum(axis=0)
            resampled[key] = (resample_cluster_sums(values[positions], codes[positions], bootstrap.resamples,
                                                    group_rng(bootstrap, f"{attribute}={label}"))
                              if bootstrap.resamples else np.empty((0, len(SUMMED))))
            rows.append({"attribute": attribute, "group": label, **_points(totals[key]),
                         **_intervals(totals[key], resampled[key], bootstrap.confidence)})
    table = pd.DataFrame(rows, columns=["attribute", "group", *GROUP_COLUMNS[2:-1], *EXTRA_COLUMNS])
    table["small"] = table["n"] < min_group_size
    table = table[GROUP_COLUMNS + EXTRA_COLUMNS].astype({"n": int, "n_gender": int, "n_age_band": int})
    if "mae" not in judged_metrics(table):     # every age a band (FairFace): no age error, as elsewhere
        table[AGE_ERROR_COLUMNS] = np.nan
    return Disaggregated(table=table.reset_index(drop=True), resampled=resampled, confidence=bootstrap.confidence,
                         totals=totals)


def _points(totals: np.ndarray) -> dict:
    """n, the means and the proportions from a group's exact sums: the values groups.point_metrics gets
    from fairlearn's MetricFrame, without its cost (a second per breakdown of a few thousand faces)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        row = {metric: float(mean(totals)) for metric, mean in MEANS.items()}
        hits, scored = PROPORTIONS["gender_accuracy"]
        row["gender_accuracy"] = float(totals[hits] / totals[scored]) if totals[scored] else np.nan
    return {"n": int(totals[SUMMED.index("faces")]), **row, "n_gender": int(totals[scored])}


def _intervals(totals: np.ndarray, resampled: np.ndarray, confidence: float) -> dict:
    """Age-band accuracy from the sums, beside the race × gender tables' own intervals."""
    hits, banded = (totals[column] for column in PROPORTIONS["age_band_accuracy"])
    return {"age_band_accuracy": hits / banded if banded else np.nan, "n_age_band": int(banded),
            **group_intervals(totals, resampled, confidence)}


@dataclass(frozen=True)
class SkinBreakdown:
    """One predictions table's skin breakdowns: groups, worst − best gaps and each group against the rest
    (adjusted within each breakdown × metric, as the race × gender tables are)."""

    groups: pd.DataFrame
    gaps: pd.DataFrame
    significance: pd.DataFrame

    def write(self, folder) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.groups.to_csv(folder / "skin_groups.csv", index=False)
        self.gaps.to_csv(folder / "skin_gaps.csv", index=False)
        self.significance.to_csv(folder / "skin_significance.csv", index=False)

    @classmethod
    def read(cls, folder) -> "SkinBreakdown":
        """The breakdowns `write` wrote."""
        return cls(*(read_table(folder / f"{name}.csv") for name in ("skin_groups", "skin_gaps", "skin_significance")))


def read_table(path) -> pd.DataFrame:
    """A table as `to_csv` wrote it, value for value: floats round-trip, only empty cells are missing (a
    group named "NA" stays one; an empty text is missing, as CSV cannot tell them apart), and an empty
    frame's blank file is an empty frame."""
    if not path.read_text().strip():
        return pd.DataFrame()
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def skin_breakdown(frame: pd.DataFrame, bands: SkinBands, bootstrap: Bootstrap = Bootstrap(),
                   min_group_size: int = 30, *, edges: Sequence[int]) -> SkinBreakdown | None:
    """The skin breakdowns of one predictions table; None where no face has a skin measurement."""
    if not any(m in frame and frame[m].notna().any() for m in SKIN_COLUMNS):
        return None
    disaggregated = disaggregate_skin(frame, bands, bootstrap, min_group_size, edges=edges)
    return SkinBreakdown(disaggregated.table, gaps(disaggregated), significance(disaggregated))
