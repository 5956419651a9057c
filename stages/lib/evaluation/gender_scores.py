"""Gender metrics that do not depend on a decision threshold, per group, so that a model's threshold
(one published model calls male at p ≥ 0.6) is neither mistaken for bias nor hides it.

- Per race (both genders, so that both classes are present): AUC of `gender_prob_female` for women
  (Mann–Whitney, weighted so that a resample of clusters needs no copy of the faces), with a cluster-bootstrap interval, and the expected calibration error (ECE: the
  face-weighted mean |observed share of women − mean predicted p(female)| over equal-width bins), with
  the reliability curve behind it (`reliability`).
- Per race × gender: the accuracy of the model's own calls beside the accuracy at p = 0.5, and the
  mean probability given to the face's labelled gender. Where the two accuracies differ, the threshold
  moves that group's accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.labels import RACES
from stages.lib.core.schema import CLUSTER_COLUMN
from stages.lib.evaluation.adjusted_gaps import group_order, race_gender
from stages.lib.evaluation.intervals import Bootstrap, cluster_codes, group_rng, percentile_interval

BINS = 10
RACE_COLUMNS = ["race", "n", "auc", "auc_ci_low", "auc_ci_high", "ece"]
CELL_COLUMNS = ["group", "n", "accuracy_own_threshold", "accuracy_at_half", "mean_p_true_gender"]


def scored(frame: pd.DataFrame) -> pd.DataFrame:
    """Faces with a labelled gender and a probability of female."""
    if "gender_prob_female" not in frame:
        return frame.iloc[0:0]
    return frame[frame["gender"].notna() & frame["gender_prob_female"].notna()]


def expected_calibration_error(is_female: np.ndarray, p_female: np.ndarray, bins: int = BINS) -> float:
    curve = reliability(is_female, p_female, bins)
    if curve.empty:
        return float("nan")
    return float((curve["n"] * (curve["observed"] - curve["predicted"]).abs()).sum() / curve["n"].sum())


def reliability(is_female: np.ndarray, p_female: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Per non-empty bin of p(female): n, mean predicted p(female), observed share of women."""
    which = np.clip((np.asarray(p_female, dtype=float) * bins).astype(int), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "predicted": p_female, "observed": np.asarray(is_female, dtype=float)})
    curve = frame.groupby("bin").agg(n=("observed", "size"), predicted=("predicted", "mean"),
                                     observed=("observed", "mean"))
    return curve.reset_index()


def weighted_auc(is_female: np.ndarray, p_female: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The AUC (Mann–Whitney: P(a woman's score > a man's), ties counting half) with face weights."""
    weights = np.ones(len(p_female)) if weights is None else np.asarray(weights, dtype=float)
    values, position = np.unique(p_female, return_inverse=True)
    women = np.bincount(position, weights * is_female, minlength=len(values))
    men = np.bincount(position, weights * (1 - is_female), minlength=len(values))
    pairs = women.sum() * men.sum()
    if pairs == 0:
        return float("nan")
    return float((women * (np.cumsum(men) - men / 2)).sum() / pairs)


def _auc_interval(is_female: np.ndarray, p_female: np.ndarray, codes: np.ndarray, bootstrap: Bootstrap, *,
                  key: str) -> tuple[float, float]:
    """Percentile interval of the AUC over resamples of whole clusters (a face weighs as often as its
    cluster is drawn)."""
    if bootstrap.resamples == 0:
        return float("nan"), float("nan")
    rng, clusters = group_rng(bootstrap, key), int(codes.max()) + 1
    values = [weighted_auc(is_female, p_female, np.bincount(rng.integers(0, clusters, clusters),
                                                            minlength=clusters)[codes])
              for _ in range(bootstrap.resamples)]
    return percentile_interval(np.asarray(values), bootstrap.confidence)


def by_race(frame: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """`all` and each race: n, AUC with its interval, ECE; races with one gender only get no AUC."""
    faces = scored(frame)
    rows = []
    for race, group in [("all", faces), *((r, faces[faces["race"] == r]) for r in RACES if (faces["race"] == r).any())]:
        is_female = (group["gender"] == "female").to_numpy(dtype=float)
        p_female = group["gender_prob_female"].to_numpy(dtype=float)
        both = 0 < is_female.sum() < len(is_female)
        codes = cluster_codes(group[CLUSTER_COLUMN] if CLUSTER_COLUMN in group else None, len(group))
        low, high = _auc_interval(is_female, p_female, codes, bootstrap, key=f"auc={race}") if both else (np.nan, np.nan)
        rows.append({"race": race, "n": len(group), "auc": weighted_auc(is_female, p_female) if both else np.nan,
                     "auc_ci_low": low, "auc_ci_high": high, "ece": expected_calibration_error(is_female, p_female)})
    return pd.DataFrame(rows, columns=RACE_COLUMNS)


def by_race_gender(frame: pd.DataFrame) -> pd.DataFrame:
    """Per race × gender: accuracy of the model's calls and at p = 0.5, mean p of the labelled gender."""
    faces = scored(frame)
    faces = faces[faces["gender_pred"].notna()]
    labels = race_gender(faces)
    p_female = faces["gender_prob_female"].astype(float)
    p_true = p_female.where(faces["gender"] == "female", 1 - p_female)
    at_half = np.where(p_female >= 0.5, "female", "male") == faces["gender"].to_numpy(dtype=object)
    own = faces["gender_pred"].to_numpy(dtype=object) == faces["gender"].to_numpy(dtype=object)
    table = pd.DataFrame({"group": labels, "own": own, "half": at_half, "p_true": p_true}).dropna(subset=["group"])
    rows = [{"group": group, "n": len(cell), "accuracy_own_threshold": cell["own"].mean(),
             "accuracy_at_half": cell["half"].mean(), "mean_p_true_gender": cell["p_true"].mean()}
            for group, cell in ((g, table[table["group"] == g]) for g in group_order(table["group"]))]
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def reliability_by_race(frame: pd.DataFrame, bins: int = BINS) -> pd.DataFrame:
    """The reliability curve of each race (race, bin, n, predicted, observed), for the figure."""
    faces = scored(frame)
    curves = [reliability((g["gender"] == "female").to_numpy(dtype=float),
                          g["gender_prob_female"].to_numpy(dtype=float), bins).assign(race=race)
              for race, g in faces.groupby("race", observed=True, sort=False)]
    return pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
        columns=["bin", "n", "predicted", "observed", "race"])
