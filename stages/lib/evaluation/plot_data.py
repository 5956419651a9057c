"""DVC plot data: the evaluation's curves and bars as CSV tables with fixed columns.

Fixed columns (a column per vocabulary group, empty where no face) let one `plots:` declaration in
dvc.yaml fit every experiment and test set; `write_dvc_plots` lays them out kind first
(`<plots>/<kind>/<experiment>/<dataset>.csv`), so `dvc plots show/diff` overlays experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from stages.lib.core.labels import GENDERS, RACES



def dvc_predicted_vs_actual(curve: pd.DataFrame) -> pd.DataFrame:
    """age, n, mean_pred, q25, q75 (x: age, y: mean_pred)."""
    return curve[["age", "n", "mean_pred", "q25", "q75"]].reset_index(drop=True)


def dvc_by_age(table: pd.DataFrame, vocabulary: Sequence[str], value: str = "mean_error") -> pd.DataFrame:
    """Wide table: age bin, then one column per group of the vocabulary (empty where no face)."""
    wide = table.pivot_table(index="age_bin", columns="group", values=value, observed=True)
    wide = wide.reindex(columns=list(vocabulary))
    wide.columns.name = None
    return wide.reset_index().rename(columns={"age_bin": "age"})


def dvc_group_bars(groups: pd.DataFrame, metric: str = "mae") -> pd.DataFrame:
    """group (`attribute:group`), n, metric, its CI (template bar_horizontal, x: metric, y: group)."""
    rows = groups[groups[metric].notna()]
    return pd.DataFrame({
        "group": rows["attribute"] + ":" + rows["group"],
        "n": rows["n"],
        metric: rows[metric],
        f"{metric}_ci_low": rows[f"{metric}_ci_low"],
        f"{metric}_ci_high": rows[f"{metric}_ci_high"],
    }).reset_index(drop=True)


def dvc_tables(evaluation) -> dict[str, pd.DataFrame]:
    """Every DVC plot file of one evaluation, by file stem; columns fixed whatever the data holds."""
    tables = evaluation.tables
    empty_by_age = lambda vocabulary: pd.DataFrame(columns=["age", *vocabulary])  # noqa: E731
    result = {"predicted_vs_actual": dvc_predicted_vs_actual(tables["predicted_vs_actual"]),
              "mae_by_group": dvc_group_bars(evaluation.groups, "mae")}
    for attribute, vocabulary in (("gender", GENDERS), ("race", RACES)):
        table = tables.get(f"error_by_age_{attribute}")
        result[f"error_by_age_{attribute}"] = (dvc_by_age(table, vocabulary) if table is not None
                                               else empty_by_age(vocabulary))
    shares = tables.get("share_by_age_gender")
    result["share_by_age_gender"] = (
        dvc_by_age(shares.rename(columns={"gender": "group"}), GENDERS, "share") if shares is not None
        else empty_by_age(GENDERS))
    return result


def write_plot_tables(evaluation, path_of: Callable[[str], Path]) -> list[Path]:
    """Every kind's table at `path_of(kind)` (header only where no data); the paths written."""
    written = []
    for kind, table in dvc_tables(evaluation).items():
        path = Path(path_of(kind))
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        written.append(path)
    return written


def write_dvc_plots(evaluation, plots_root: Path, experiment: str, dataset: str) -> list[Path]:
    """`plots_root/<kind>/<experiment>/<dataset>.csv` for every kind: the layout dvc.yaml's `plots` reads."""
    return write_plot_tables(evaluation, lambda kind: Path(plots_root) / kind / experiment / f"{dataset}.csv")
