"""Every skin-colour and photo-quality analysis of one predictions table (one model on one test set),
and where it is written:

    skin_groups.csv, skin_gaps.csv, skin_significance.csv   breakdowns by skin band × gender (skin.py)
    slopes.csv          within race × gender: error per 10 L* and per 10 h* (adjusted_gaps.py)
    adjusted_gaps.csv   race × gender gaps before and after photo quality (adjusted_gaps.py)
    gender_auc.csv, gender_calls.csv, reliability.csv   threshold-free gender metrics (gender_scores.py)

Each stage that predicts writes its models' analyses beside their evaluation, one folder per test set
(`analysis_folder`: <evaluation>/<dataset>/skin/): evaluate@<experiment> (results.py) and audit_models
(published_audit.py); the report reads them back (`SkinAnalysis.read`). All read against the same
`SkinInputs`: the measure stage's table and the bands of the pooled evaluation faces, which depend on
the split manifest and that table only, so every stage draws the same bands.

Also the pooled faces' own facts the report states once: how many were measured (and each reason
per race × gender), and each quality measure's correlation with skin lightness.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from stages.lib.core.params import Params
from stages.lib.core.schema import read_manifest, resampling_clusters
from stages.lib.evaluation.adjusted_gaps import (GAP_COLUMNS, SLOPE_COLUMNS, adjusted_gaps, group_order, race_gender,
                                                within_group_slopes)
from stages.lib.evaluation.gender_scores import by_race, by_race_gender, reliability_by_race
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.skin import (LIGHTNESS, QUALITY_COLUMNS, SKIN_COLUMNS, SkinBands, SkinBreakdown,
                                        read_table, skin_breakdown, with_measurements)

TABLES = ("slopes", "adjusted_gaps", "gender_auc", "gender_calls", "reliability")
COLUMNS_READ = {"slopes": SLOPE_COLUMNS, "adjusted_gaps": GAP_COLUMNS}   # what the report reads of them
MEASUREMENTS_FILE = "measurements.parquet"   # inside params.paths.measurements: the measure stage's table
SKIN_FOLDER = "skin"


@dataclass(frozen=True)
class SkinAnalysis:
    breakdown: SkinBreakdown | None
    slopes: pd.DataFrame
    adjusted_gaps: pd.DataFrame
    gender_auc: pd.DataFrame
    gender_calls: pd.DataFrame
    reliability: pd.DataFrame

    def write(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.breakdown is not None:
            self.breakdown.write(folder)
        for name in TABLES:
            getattr(self, name).to_csv(folder / f"{name}.csv", index=False)

    @classmethod
    def read(cls, folder: Path, *, breakdown_only: bool = False) -> "SkinAnalysis":
        """The analysis `write` wrote; with `breakdown_only`, the breakdown alone (the other tables empty,
        as `analyse` leaves them)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: the stage that wrote these predictions writes it "
                                    "(evaluate@<experiment>, audit_models); run it again")
        breakdown = SkinBreakdown.read(folder) if (folder / "skin_groups.csv").exists() else None
        tables = [pd.DataFrame() if breakdown_only else read_table(folder / f"{name}.csv") for name in TABLES]
        for name, table in zip(TABLES, tables):
            columns = COLUMNS_READ.get(name, ())
            if not table.empty and set(columns) - set(table.columns):
                raise FileNotFoundError(f"{folder / f'{name}.csv'} was written by an older version (no "
                                        f"{', '.join(sorted(set(columns) - set(table.columns)))}): run the stage "
                                        "that wrote it again (evaluate@<experiment>, audit_models; `dvc repro` does)")
        return cls(breakdown, *tables)


@dataclass(frozen=True)
class SkinInputs:
    """What every model's predictions are analysed against."""

    measurements: pd.DataFrame
    clusters: pd.Series        # each face's resampling cluster, indexed by id
    pooled: pd.DataFrame       # the evaluation faces (evaluate-role test sets) with their measurements
    bands: SkinBands           # quintile edges of `pooled`

    def measured_runs(self, test: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Each test set's rows of `test` joined with the measurements: the sets with a measured face."""
        joined = {str(dataset): with_measurements(rows, self.measurements, self.clusters)
                  for dataset, rows in test.groupby("dataset", sort=False)}
        return {dataset: rows for dataset, rows in joined.items() if rows[LIGHTNESS].notna().any()}


def load_measurements(params: Params) -> pd.DataFrame | None:
    path = params.paths.measurements / MEASUREMENTS_FILE
    return pd.read_parquet(path) if path.exists() else None


def skin_inputs(params: Params) -> SkinInputs | None:
    """None without the measurement table or the split manifest."""
    measurements = load_measurements(params)
    if measurements is None or not params.paths.manifest.exists():
        return None
    manifest = read_manifest(params.paths.manifest)
    clusters = pd.Series(resampling_clusters(manifest).to_numpy(), index=manifest["id"])
    evaluation = manifest[manifest["dataset"].isin(params.roles.evaluate) & (manifest["split"] == "test")]
    pooled = with_measurements(evaluation, measurements)
    return SkinInputs(measurements, clusters, pooled, SkinBands.from_faces(pooled))


def analysis_folder(evaluation: Path, dataset: str) -> Path:
    """Where a model's skin analysis on `dataset` lies, in its evaluation folder `evaluation`."""
    return Path(evaluation) / dataset / SKIN_FOLDER


def analyse(frame: pd.DataFrame, bands: SkinBands, bootstrap: Bootstrap = Bootstrap(), min_group_size: int = 30,
            *, edges: Sequence[int], breakdown_only: bool = False) -> SkinAnalysis:
    """Every analysis of one table (predictions joined with the measurements: skin.with_measurements).
    Slopes need both skin columns, adjusted gaps the quality columns; without them (or with
    `breakdown_only`: the models a report does not discuss), empty tables."""
    breakdown = skin_breakdown(frame, bands, bootstrap, min_group_size, edges=edges)
    if breakdown_only:
        return SkinAnalysis(breakdown, *(pd.DataFrame() for _ in TABLES))
    has_skin = all(c in frame and frame[c].notna().any() for c in SKIN_COLUMNS)
    has_quality = any(c in frame and frame[c].notna().any() for c in QUALITY_COLUMNS)
    return SkinAnalysis(
        breakdown=breakdown,
        slopes=(within_group_slopes(frame, confidence=bootstrap.confidence, min_group_size=min_group_size)
                if has_skin else pd.DataFrame()),
        adjusted_gaps=(adjusted_gaps(frame, edges=edges, confidence=bootstrap.confidence,
                                     min_group_size=min_group_size) if has_quality else pd.DataFrame()),
        gender_auc=by_race(frame, bootstrap), gender_calls=by_race_gender(frame),
        reliability=reliability_by_race(frame))


def measured_counts(faces: pd.DataFrame) -> pd.DataFrame:
    """Per race × gender (and all): faces, those with skin L*, with h*, and how often each reason is given
    (`problem` joins a face's reasons with "; ": each counts apart)."""
    labels = race_gender(faces).fillna("unlabelled")
    reasons = faces["problem"] if "problem" in faces else pd.Series(None, index=faces.index, dtype=object)
    rows = []
    for group in ["all", *group_order(labels)]:
        cell = faces if group == "all" else faces[labels == group]
        counts = reasons.loc[cell.index].dropna().astype(str).str.split("; ").explode().value_counts()
        rows.append({"group": group, "faces": len(cell),
                     **{f"with {c.removeprefix('skin_')}": int(cell[c].notna().sum()) if c in cell else 0
                        for c in SKIN_COLUMNS},
                     **{str(reason): int(n) for reason, n in counts.items()}})
    return pd.DataFrame(rows).fillna(0)


def quality_correlations(faces: pd.DataFrame) -> pd.DataFrame:
    """Each quality measure's Spearman correlation with skin L* over the faces that have both."""
    rows = []
    for column in QUALITY_COLUMNS:
        if column not in faces or LIGHTNESS not in faces:
            continue
        both = faces[[LIGHTNESS, column]].dropna()
        rho = both[LIGHTNESS].corr(both[column], method="spearman") if len(both) > 2 else float("nan")
        rows.append({"measure": column, "n": len(both), "spearman_with_lightness": rho})
    return pd.DataFrame(rows, columns=["measure", "n", "spearman_with_lightness"])
