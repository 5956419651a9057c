"""The study's post-hoc correction (R9): can (predicted age, gender, race) fix the predicted age?

Each model learns the residual (true − predicted age) from the predicted age, gender and race of one
set of faces, and is judged on another: the validation split fits, the test split judges (the
study's protocol), or, for a table without splits, K-fold cross-fitting (every face judged by a model
that never saw it). The verdict on each model is a paired bootstrap interval of the change in MAE
against no correction. The study found that none beat the uncorrected model.

Note: like the study, the correction uses the *true* gender and race, which a deployed system would not
know; a correction that wins here would still need predicted labels to be usable.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from stages.lib.core.labels import RACES
from stages.lib.evaluation.intervals import Bootstrap, direction, mean_interval, paired_p_value
from stages.lib.evaluation.multiplicity import holm

MODEL_KINDS = ("linear", "polynomial", "knn", "random_forest", "gradient_boosting")
COLUMNS = ["model", "n_fit", "n_judged", "mae", "rmse", "mae_change", "mae_change_ci_low", "mae_change_ci_high",
           "p_value", "p_adjusted", "verdict"]
VERDICTS = {"below": "better", "above": "worse", "n.s.": "no clear difference", "no interval": "no interval"}


def correction_features(frame: pd.DataFrame) -> np.ndarray:
    """Predicted age, is-female and one indicator per race (where the table has those labels)."""
    columns = [frame["age_pred"].to_numpy(dtype=float)]
    if frame["gender"].notna().all():
        columns.append((frame["gender"].astype(object) == "female").to_numpy(dtype=float))
    if frame["race"].notna().all():
        race = frame["race"].astype(object).to_numpy()
        columns.extend((race == name).astype(float) for name in RACES[1:])
    return np.column_stack(columns)


def make_model(kind: str, seed: int, n_fit: int = 50):
    """A fresh, unfitted regressor of the given kind (seeded where it draws random numbers); k-NN
    averages 50 neighbours, or all `n_fit` faces when there are fewer (a small val split)."""
    models = {
        "linear": lambda: LinearRegression(),
        "polynomial": lambda: make_pipeline(StandardScaler(), PolynomialFeatures(degree=3), Ridge(alpha=1.0)),
        "knn": lambda: make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=max(1, min(50, n_fit)))),
        "random_forest": lambda: RandomForestRegressor(n_estimators=100, min_samples_leaf=20, n_jobs=-1,
                                                       random_state=seed),
        "gradient_boosting": lambda: HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05,
                                                                   min_samples_leaf=20, random_state=seed),
    }
    if kind not in models:
        raise ValueError(f"unknown correction model {kind!r}; allowed: {', '.join(models)}")
    return models[kind]()


def _usable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with every label the features need: gender and race must be known on all rows or none."""
    rows = frame.reset_index(drop=True)
    for column in ("gender", "race"):
        if rows[column].notna().any():
            rows = rows[rows[column].notna()]
    return rows.reset_index(drop=True)


def corrected_predictions(kind: str, fit: pd.DataFrame, judged: pd.DataFrame, seed: int) -> np.ndarray:
    """Predicted ages of `judged`, corrected by a `kind` model fitted on `fit`."""
    model = make_model(kind, seed, len(fit))
    model.fit(correction_features(fit), fit["age"].to_numpy(dtype=float) - fit["age_pred"].to_numpy(dtype=float))
    return judged["age_pred"].to_numpy(dtype=float) + model.predict(correction_features(judged))


def _judge(model: str, n_fit: int, judged: pd.DataFrame, predictions: np.ndarray, *, bootstrap: Bootstrap) -> dict:
    truth = judged["age"].to_numpy(dtype=float)
    baseline = np.abs(judged["age_pred"].to_numpy(dtype=float) - truth)
    errors = np.abs(predictions - truth)
    change = errors - baseline
    low, high = mean_interval(change, bootstrap, f"correction={model}")
    return {"model": model, "n_fit": n_fit, "n_judged": len(judged), "mae": float(errors.mean()),
            "rmse": float(np.sqrt(np.mean((predictions - truth) ** 2))), "mae_change": float(change.mean()),
            "mae_change_ci_low": low, "mae_change_ci_high": high,
            "p_value": float("nan") if model == "none" else paired_p_value(change)}


def adjusted_verdicts(rows: list[dict], alpha: float) -> pd.DataFrame:
    """The models' table with each change's p-value Holm-adjusted over the correction models compared (one
    family: "k of them better" is one claim drawn from all of them) and each verdict: better or worse only
    where the raw interval lies on one side of 0 and the adjusted p-value is under `alpha`."""
    table = pd.DataFrame(rows)
    table["p_adjusted"] = holm(table["p_value"].to_numpy(dtype=float))
    sides = [direction(low, high) for low, high in zip(table["mae_change_ci_low"], table["mae_change_ci_high"])]
    table["verdict"] = ["baseline" if model == "none" else
                        VERDICTS[side if side in ("n.s.", "no interval") or p < alpha else "n.s."]
                        for model, side, p in zip(table["model"], sides, table["p_adjusted"])]
    return table[COLUMNS]


def compare_corrections(fit: pd.DataFrame, judged: pd.DataFrame, bootstrap: Bootstrap = Bootstrap(),
                        kinds: Sequence[str] = MODEL_KINDS) -> pd.DataFrame:
    """Fit each kind on `fit` (e.g. validation), judge on `judged` (test), next to no correction."""
    fit, judged = _usable(fit), _usable(judged)
    if len(fit) < 2 or judged.empty:
        raise ValueError(f"correction needs faces to fit and to judge on; got {len(fit)} and {len(judged)}")
    rows = [_judge("none", 0, judged, judged["age_pred"].to_numpy(dtype=float), bootstrap=bootstrap)]
    for kind in kinds:
        rows.append(_judge(kind, len(fit), judged, corrected_predictions(kind, fit, judged, bootstrap.seed), bootstrap=bootstrap))
    return adjusted_verdicts(rows, 1 - bootstrap.confidence)


def cross_fitted_corrections(frame: pd.DataFrame, folds: int = 5, bootstrap: Bootstrap = Bootstrap(),
                             kinds: Sequence[str] = MODEL_KINDS) -> pd.DataFrame:
    """Like `compare_corrections` for a table without a validation split: K-fold out-of-fold predictions."""
    rows_used = _usable(frame)
    if len(rows_used) < 2 * folds:
        raise ValueError(f"cross-fitted correction needs at least {2 * folds} faces, got {len(rows_used)}")
    splitter = KFold(n_splits=folds, shuffle=True, random_state=bootstrap.seed)
    results = [_judge("none", 0, rows_used, rows_used["age_pred"].to_numpy(dtype=float), bootstrap=bootstrap)]
    for kind in kinds:
        predictions = np.empty(len(rows_used))
        for fit_index, judged_index in splitter.split(rows_used):
            predictions[judged_index] = corrected_predictions(
                kind, rows_used.iloc[fit_index], rows_used.iloc[judged_index], bootstrap.seed)
        results.append(_judge(kind, len(rows_used) * (folds - 1) // folds, rows_used, predictions, bootstrap=bootstrap))
    return adjusted_verdicts(results, 1 - bootstrap.confidence)


def correction_protocol(frame: pd.DataFrame, judged_when_unsplit: pd.DataFrame, bootstrap: Bootstrap = Bootstrap(),
                        min_fit: int = 2, *, min_cross_fitted: int = 10) -> tuple[pd.DataFrame, str] | None:
    """R9 as the report and the audit run it: fitted on the val split and judged on test when `frame`
    has both, else 5-fold cross-fitted over `judged_when_unsplit`. Returns (table, protocol sentence),
    or None when there are too few faces for either."""
    splits = frame["split"] if "split" in frame else pd.Series(dtype=object)
    fit, judged = frame[splits == "val"], frame[splits == "test"]
    if len(fit) >= min_fit and not judged.empty:
        return compare_corrections(fit, judged, bootstrap), (
            f"Fitted on the val split ({len(fit):,} faces), judged on the test split ({len(judged):,}).")
    if len(judged_when_unsplit) >= min_cross_fitted:
        return cross_fitted_corrections(judged_when_unsplit, 5, bootstrap), (
            f"No val and test splits to fit and judge on, so each face is judged by a model fitted on the other "
            f"four fifths (5-fold cross-fitting over {len(judged_when_unsplit):,} faces).")
    return None
