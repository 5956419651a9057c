"""The data-quality summary of a stage's output: how many rows came in, were kept, were rejected and why,
and who was kept and who was lost, by gender, race, age band and race x gender.

Pure: tables in, a JSON-ready dict out. Rejects count by their reason's code (`<code>: <detail>`).
A reject table may carry the labels that were read before the row was refused (columns age, gender,
race); where it does, `rejected_by` counts them and `rejection_rate_by` gives, per group, the share of
the group's rows that were rejected (among rows whose label is known). A stage that loses more of one
group than another (a face detector that misses dark faces) shows it here.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from stages.lib.core.labels import GENDERS, RACES, age_band, band_labels

UNKNOWN = "unknown"
BELOW_BANDS = "below first band"


def reason_code(reason: str) -> str:
    """The stable code of a reason `<code>: <detail>`."""
    return str(reason).split(":", 1)[0].strip()


def _group_columns(table: pd.DataFrame, age_bands: Sequence[int]) -> dict[str, pd.Series]:
    """gender, race, age_band and race_x_gender of each row, as text ('unknown' where not known)."""
    def column(name: str) -> pd.Series:
        if name not in table.columns:
            return pd.Series(UNKNOWN, index=table.index, dtype=object)
        return table[name].astype(object).where(table[name].notna(), UNKNOWN)

    gender, race = column("gender"), column("race")
    if "age" in table.columns:
        ages = pd.to_numeric(table["age"], errors="coerce")
        bands = pd.Series(age_band(ages.to_numpy(), age_bands), index=table.index).astype(object)
        bands = bands.where(bands.notna(), BELOW_BANDS).where(ages.notna(), UNKNOWN)
    else:
        bands = pd.Series(UNKNOWN, index=table.index, dtype=object)
    return {"gender": gender, "race": race, "age_band": bands, "race_x_gender": race + "*" + gender}


def _orders(age_bands: Sequence[int]) -> dict[str, list[str]]:
    return {
        "gender": list(GENDERS),
        "race": list(RACES),
        "age_band": band_labels(age_bands),
        "race_x_gender": [f"{r}*{g}" for r in RACES for g in GENDERS],
    }


def _counts(values: pd.Series, order: list[str]) -> dict[str, int]:
    """Counts in `order` (zeros included, so an absent group shows), then any other value seen."""
    counted = values.value_counts()
    extra = sorted(str(v) for v in counted.index if v not in order)
    return {key: int(counted.get(key, 0)) for key in order + extra}


def group_counts(table: pd.DataFrame, age_bands: Sequence[int]) -> dict[str, dict[str, int]]:
    orders = _orders(age_bands)
    return {name: _counts(values, orders[name]) for name, values in _group_columns(table, age_bands).items()}


def summarise(
    dataset: str, kept: pd.DataFrame, rejects: pd.DataFrame, age_bands: Sequence[int], *, stage: str = "prepare",
) -> dict:
    """The quality summary of one dataset's pass through `stage`."""
    rows_in = len(kept) + len(rejects)
    codes = rejects["reason"].map(reason_code).value_counts() if len(rejects) else pd.Series(dtype=int)
    by_reason = sorted(((str(code), int(n)) for code, n in codes.items()), key=lambda item: (-item[1], item[0]))
    kept_by = group_counts(kept, age_bands)
    summary = {
        "dataset": dataset,
        "stage": stage,
        "rows_in": rows_in,
        "kept": len(kept),
        "rejected": len(rejects),
        "kept_share": round(len(kept) / rows_in, 4) if rows_in else None,
        "rejected_by_reason": dict(by_reason),
        "kept_by": kept_by,
    }
    if any(column in rejects.columns for column in ("age", "gender", "race")):
        rejected_by = group_counts(rejects, age_bands)
        summary["rejected_by"] = rejected_by
        summary["rejection_rate_by"] = {
            attribute: {
                group: round(lost / (lost + kept_by[attribute].get(group, 0)), 4)
                for group, lost in groups.items()
                if UNKNOWN not in group.split("*") and lost + kept_by[attribute].get(group, 0)
            }
            for attribute, groups in rejected_by.items()
        }
    return summary
