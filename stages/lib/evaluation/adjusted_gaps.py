"""Why a group is worse: error against skin colour within each race × gender group, and the race ×
gender gaps before and after adjusting for photo quality. statsmodels fits; every interval is
cluster-robust over the resampling clusters (one person, or look-alikes: schema.resampling_clusters),
so faces of one cluster count once as evidence, as in the bootstrap.

- Slopes (`within_group_slopes`): in each labelled race × gender group, one linear model of the
  outcome on skin L* and h* together (per 10 units each); Holm across the groups, per outcome and
  measure. A planted drift of error with lightness inside a group shows here; a gap that is only
  between races does not.
- Gaps (`adjusted_gaps`): each race × gender group against the best-served large group, as average
  marginal effects on the outcome's own scale (years of absolute error; share of wrong gender calls,
  from a logistic model), first with age band and dataset as covariates ("before"), then with photo
  quality added ("after"): clipped shares, background luminance, contrast, sharpness (log), face size
  (log, where every face has one), |yaw|, |pitch|, |roll|. Holm across the groups per outcome.

What the adjustment can mean: photo quality may confound a gap (worse photos of one group) and may
mediate it (cameras' auto-exposure tuned to light skin makes darker faces' photos worse), so an
adjusted gap is the part not carried by these measures, not "the real" gap. Skin colour is not a
confounder of race but another description of the same faces, so it is never a covariate of a race
gap here: it gets its own slopes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.stats import norm

from stages.lib.core.labels import GENDERS, RACES, age_band
from stages.lib.core.schema import BAND_COLUMN, CLUSTER_COLUMN
from stages.lib.evaluation.intervals import cluster_codes, wald_p_value
from stages.lib.evaluation.multiplicity import holm
from stages.lib.evaluation.skin import HUE, LIGHTNESS

PER = 10.0   # slopes are per 10 units of L* and of h*
# quality column -> how it enters the model (before z-scoring)
QUALITY_TERMS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "clipped_dark": lambda v: v, "clipped_bright": lambda v: v, "background_luminance": lambda v: v,
    "contrast": lambda v: v, "sharpness": np.log1p, "face_size": np.log, "yaw": np.abs, "pitch": np.abs,
    "roll": np.abs,
}
COVERAGE = 0.95   # a quality column is used when at least this share of the faces has it (else left out)
SLOPE_COLUMNS = ["outcome", "group", "n", "small", "measure", "slope", "ci_low", "ci_high", "p_value", "p_holm",
                 "significant"]
GAP_COLUMNS = ["outcome", "group", "reference", "n", "small", "raw", "before", "before_ci_low", "before_ci_high",
               "before_p", "before_p_holm", "significant_before", "after", "after_ci_low", "after_ci_high", "after_p",
               "after_p_holm", "significant",
               "n_model", "quality_terms", "left_out"]


def _fit_linear(y: np.ndarray, x: np.ndarray, clusters: np.ndarray):
    return sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": clusters})


def _fit_logistic(y: np.ndarray, x: np.ndarray, clusters: np.ndarray):
    with warnings.catch_warnings():   # a group with no wrong call: large coefficient, still a usable AME
        warnings.simplefilter("ignore")
        return sm.GLM(y, x, family=sm.families.Binomial()).fit(cov_type="cluster", cov_kwds={"groups": clusters})


def _linear_ame(fit, x_group: np.ndarray, x_reference: np.ndarray) -> tuple[float, np.ndarray]:
    gradient = (x_group - x_reference).mean(axis=0)
    return float(gradient @ fit.params), gradient


def _logistic_ame(fit, x_group: np.ndarray, x_reference: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over the faces of P(wrong | group) − P(wrong | reference), and its gradient (delta method)."""
    def probability(x):
        return 1 / (1 + np.exp(-(x @ fit.params)))

    p_group, p_reference = probability(x_group), probability(x_reference)
    gradient = ((p_group * (1 - p_group))[:, None] * x_group
                - (p_reference * (1 - p_reference))[:, None] * x_reference).mean(axis=0)
    return float((p_group - p_reference).mean()), gradient


@dataclass(frozen=True)
class Outcome:
    """An error to explain: its per-face values, and the model that fits it and turns it into an AME."""

    label: str
    values: Callable[[pd.DataFrame], pd.Series]
    fit: Callable
    ame: Callable


def _absolute_error(frame: pd.DataFrame) -> pd.Series:
    """|predicted − true| age where the age is exact (NaN where it is a labelled band: FairFace)."""
    error = (frame["age_pred"].astype(float) - frame["age"].astype(float)).abs()
    return error.where(frame[BAND_COLUMN].isna()) if BAND_COLUMN in frame else error


def _wrong_gender(frame: pd.DataFrame) -> pd.Series:
    """1 for a wrong gender call, 0 for a right one, NaN where either side is unknown."""
    known = frame["gender"].notna() & frame["gender_pred"].notna()
    return (frame["gender_pred"].astype(object) != frame["gender"].astype(object)).astype(float).where(known)


OUTCOMES = {
    "abs_error": Outcome("absolute age error (years)", _absolute_error, _fit_linear, _linear_ame),
    "wrong_gender": Outcome("wrong gender call (share)", _wrong_gender, _fit_logistic, _logistic_ame),
}


def race_gender(frame: pd.DataFrame) -> pd.Series:
    """`race*gender` labels (NaN where either is unknown), as the groups tables name them."""
    return (frame["race"].astype(object) + "*" + frame["gender"].astype(object)).where(
        frame["race"].notna() & frame["gender"].notna())


def group_order(labels) -> list[str]:
    """race × gender labels in the vocabulary's order."""
    order = [f"{r}*{g}" for r in RACES for g in GENDERS]
    return sorted(set(labels), key=lambda label: order.index(label) if label in order else len(order))


# ---------------------------------------------------------------------------------------------------
# Slopes on skin colour within each group


def within_group_slopes(frame: pd.DataFrame, *, confidence: float = 0.95, min_group_size: int = 30) -> pd.DataFrame:
    """Per outcome, race × gender group and measure (L*, h*): the slope of the outcome per 10 units, from
    one model with both, with its cluster-robust interval; Holm across the groups per outcome and
    measure (groups under `min_group_size` measured faces are flagged and not counted)."""
    groups = race_gender(frame)
    rows = []
    for name, outcome in OUTCOMES.items():
        y_all = outcome.values(frame)
        usable = y_all.notna() & frame[LIGHTNESS].notna() & frame[HUE].notna() & groups.notna()
        for group in group_order(groups[usable]):
            rows.extend(_slope_rows(frame[usable & (groups == group)], y_all, name, group,
                                    confidence=confidence, min_group_size=min_group_size))
    table = pd.DataFrame(rows, columns=[c for c in SLOPE_COLUMNS if c not in ("p_holm", "significant")])
    return _holm_within(table, ["outcome", "measure"], "p_value", "p_holm", confidence=confidence)[SLOPE_COLUMNS]


def _slope_rows(rows: pd.DataFrame, y_all: pd.Series, outcome: str, group: str, *, confidence: float,
                min_group_size: int) -> list[dict]:
    y = y_all.loc[rows.index].to_numpy(dtype=float)
    x = sm.add_constant(rows[[LIGHTNESS, HUE]].to_numpy(dtype=float) / PER, has_constant="add")
    base = {"outcome": outcome, "group": group, "n": len(rows), "small": len(rows) < min_group_size}
    fit = None
    if len(rows) > 3 and np.ptp(y) > 0 and np.linalg.matrix_rank(x) == 3:
        fit = _fit_linear(y, x, _clusters(rows))
    z = norm.ppf(0.5 + confidence / 2)
    out = []
    for position, measure in ((1, LIGHTNESS), (2, HUE)):
        slope, error = (float(fit.params[position]), float(fit.bse[position])) if fit is not None else (np.nan, np.nan)
        out.append({**base, "measure": measure, "slope": slope, "ci_low": slope - z * error,
                    "ci_high": slope + z * error,
                    "p_value": wald_p_value(slope, error) if fit is not None else np.nan})
    return out


def _clusters(rows: pd.DataFrame) -> np.ndarray:
    return cluster_codes(rows[CLUSTER_COLUMN] if CLUSTER_COLUMN in rows else None, len(rows))


def _holm_within(table: pd.DataFrame, family: list[str], p_column: str, adjusted: str, *,
                 confidence: float, flag: str = "significant") -> pd.DataFrame:
    """Holm-adjusted p-values within each family, over the rows not flagged small; `flag`: below 1 - confidence."""
    table = table.copy()
    table[adjusted] = np.nan
    judged = table[~table["small"].astype(bool)]
    for _, rows in judged.groupby(family, sort=False):
        table.loc[rows.index, adjusted] = holm(rows[p_column].to_numpy(dtype=float))
    table[flag] = (table[adjusted] < 1 - confidence).fillna(False).astype(bool)
    return table


# ---------------------------------------------------------------------------------------------------
# Race × gender gaps before and after photo quality


@dataclass(frozen=True)
class Design:
    """The model's rows and columns: group dummies (the reference left out), age band and dataset
    dummies, the z-scored quality terms; which quality columns were left out and why."""

    rows: pd.DataFrame
    groups: pd.Series
    reference: str
    base: pd.DataFrame        # constant, age band, dataset
    quality: pd.DataFrame
    left_out: str

    def matrix(self, group: str | None, *, with_quality: bool) -> np.ndarray:
        """The design with every face set to `group` (None: as observed)."""
        labels = self.groups.to_numpy(dtype=object) if group is None else np.full(len(self.groups), group, dtype=object)
        dummies = (labels[:, None] == np.asarray(self.group_names, dtype=object)[None, :]).astype(float)
        parts = [self.base.to_numpy(dtype=float), dummies] + ([self.quality.to_numpy(dtype=float)] if with_quality else [])
        return np.hstack(parts)

    @property
    def group_names(self) -> list[str]:
        return [g for g in group_order(self.groups) if g != self.reference]


def quality_terms(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The quality columns each face has (z-scored after QUALITY_TERMS' transform), and a note naming
    those left out: absent, or missing on more than 1 − COVERAGE of the faces (face size of datasets
    that ship fixed-size chips), or constant."""
    kept, left_out = {}, []
    for column, transform in QUALITY_TERMS.items():
        values = rows[column].astype(float) if column in rows else pd.Series(np.nan, index=rows.index)
        if values.notna().mean() < COVERAGE:
            left_out.append(f"{column} ({values.isna().sum():,} of {len(values):,} faces without it)")
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            values = transform(values).replace([np.inf, -np.inf], np.nan)
        if not values.std() > 0:
            left_out.append(f"{column} (constant)")
            continue
        kept[column] = (values - values.mean()) / values.std()
    return pd.DataFrame(kept, index=rows.index), "; ".join(left_out)


def design(frame: pd.DataFrame, y: pd.Series, *, edges: Sequence[int], min_group_size: int) -> Design | None:
    """The design for one outcome: faces with the outcome, a race × gender group of at least
    `min_group_size` such faces and every used quality measure; None with fewer than two such groups."""
    groups = race_gender(frame)
    usable = y.notna() & groups.notna()
    counts = groups[usable].value_counts()
    large = counts[counts >= min_group_size].index
    rows = frame[usable & groups.isin(large)]
    quality, left_out = quality_terms(rows)
    complete = quality.notna().all(axis=1)
    rows, quality = rows[complete], quality[complete]
    labels = groups.loc[rows.index]
    if labels.nunique() < 2:
        return None
    means = y.loc[rows.index].groupby(labels).mean()
    base = pd.concat([pd.Series(1.0, index=rows.index, name="const"),
                      _dummies(pd.Series(age_band(rows["age"], edges), index=rows.index).astype(str), "band"),
                      _dummies(rows["dataset"].astype(str), "dataset")], axis=1)
    return Design(rows=rows, groups=labels, reference=str(means.idxmin()), base=base, quality=quality,
                  left_out=left_out)


def _dummies(values: pd.Series, prefix: str) -> pd.DataFrame:
    return pd.get_dummies(values, prefix=prefix, drop_first=True, dtype=float)


def adjusted_gaps(frame: pd.DataFrame, *, edges: Sequence[int], confidence: float = 0.95,
                  min_group_size: int = 30) -> pd.DataFrame:
    """Per outcome and race × gender group: its gap to the best-served group (lowest mean outcome among
    groups of at least `min_group_size` faces), raw (difference of means), before (AME with age band
    and dataset) and after photo quality (AME with the quality terms added), each with its
    cluster-robust interval; Holm across the groups per outcome, on the gap before the adjustment and on
    the gap after it (`significant`: the adjusted gap's), so that a gap said to go away with photo quality
    is one that was there under the same adjustment for multiplicity."""
    rows = []
    for name, outcome in OUTCOMES.items():
        y_all = outcome.values(frame)
        spec = design(frame, y_all, edges=edges, min_group_size=min_group_size)
        if spec is not None:
            rows.extend(_gap_rows(spec, y_all.loc[spec.rows.index], name, outcome, confidence=confidence,
                                  min_group_size=min_group_size))
    table = pd.DataFrame(rows, columns=[c for c in GAP_COLUMNS if c not in ("before_p_holm", "significant_before",
                                                                          "after_p_holm", "significant")])
    table = _holm_within(table, ["outcome"], "before_p", "before_p_holm", confidence=confidence,
                         flag="significant_before")
    return _holm_within(table, ["outcome"], "after_p", "after_p_holm", confidence=confidence)[GAP_COLUMNS]


def _gap_rows(spec: Design, y: pd.Series, name: str, outcome: Outcome, *, confidence: float,
              min_group_size: int) -> list[dict]:
    clusters = _clusters(spec.rows)
    values = y.to_numpy(dtype=float)
    fits = {}
    for stage, with_quality in (("before", False), ("after", True)):
        try:
            fits[stage] = outcome.fit(values, spec.matrix(None, with_quality=with_quality), clusters)
        except (np.linalg.LinAlgError, ValueError) as error:   # a singular design: said, not guessed
            fits[stage] = error
    means = y.groupby(spec.groups).mean()
    z = norm.ppf(0.5 + confidence / 2)
    rows = []
    for group in spec.group_names:
        row = {"outcome": name, "group": group, "reference": spec.reference, "n": int((spec.groups == group).sum()),
               "small": bool((spec.groups == group).sum() < min_group_size),
               "raw": float(means[group] - means[spec.reference]), "n_model": len(values),
               "quality_terms": ", ".join(spec.quality.columns), "left_out": spec.left_out}
        for stage, with_quality in (("before", False), ("after", True)):
            row.update(_ame_columns(fits[stage], spec, group, outcome, stage=stage, with_quality=with_quality, z=z))
        rows.append(row)
    return rows


def _ame_columns(fit, spec: Design, group: str, outcome: Outcome, *, stage: str, with_quality: bool,
                 z: float) -> dict:
    if isinstance(fit, Exception):
        return {stage: np.nan, f"{stage}_ci_low": np.nan, f"{stage}_ci_high": np.nan, f"{stage}_p": np.nan}
    effect, gradient = outcome.ame(fit, spec.matrix(group, with_quality=with_quality),
                                   spec.matrix(spec.reference, with_quality=with_quality))
    error = float(np.sqrt(max(gradient @ np.asarray(fit.cov_params()) @ gradient, 0.0)))
    return {stage: effect, f"{stage}_ci_low": effect - z * error, f"{stage}_ci_high": effect + z * error,
            f"{stage}_p": wald_p_value(effect, error)}
