"""The data-quality summary (quality.py): counts by reason code, and who was kept and who was lost."""

import json

import numpy as np
import pandas as pd

from stages.lib.datasets.quality import BELOW_BANDS, UNKNOWN, group_counts, reason_code, summarise

BANDS = [16, 31, 61]  # 16-30, 31-60, 61+; younger is below the first band


def kept_table() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [20, 40, 70, 10],
        "gender": ["female", "female", "male", "male"],
        "race": ["black", "black", "white", None],
    })


def test_reason_code_is_the_text_before_the_first_colon():
    assert reason_code("image_missing: 17/a.jpg is not in the dataset folder") == "image_missing"
    assert reason_code("bad_date: dob: date number nan is not a valid date") == "bad_date"
    assert reason_code(" no_face ") == "no_face"


def test_group_counts_list_every_group_in_order_with_zeros_and_the_unknown():
    counts = group_counts(kept_table(), BANDS)
    assert counts["gender"] == {"male": 2, "female": 2}
    assert counts["race"] == {"white": 1, "black": 2, "asian": 0, "indian": 0, "others": 0, UNKNOWN: 1}
    assert counts["age_band"] == {"16-30": 1, "31-60": 1, "61+": 1, BELOW_BANDS: 1}
    assert counts["race_x_gender"]["black*female"] == 2 and counts["race_x_gender"]["asian*male"] == 0
    assert counts["race_x_gender"][f"{UNKNOWN}*male"] == 1


def test_a_label_outside_the_vocabulary_is_counted_after_the_known_groups():
    table = pd.DataFrame({"age": [30, 30], "gender": ["female", "nonbinary"], "race": ["white", "white"]})
    assert list(group_counts(table, BANDS)["gender"].items()) == [("male", 0), ("female", 1), ("nonbinary", 1)]


def test_a_table_without_label_columns_counts_everyone_as_unknown():
    counts = group_counts(pd.DataFrame({"path": ["a.jpg", "b.jpg"]}), BANDS)
    assert counts["gender"] == {"male": 0, "female": 0, UNKNOWN: 2}
    assert counts["age_band"][UNKNOWN] == 2


def test_summary_counts_rejects_by_code_most_frequent_first():
    rejects = pd.DataFrame({"reason": ["image_missing: a.jpg", "age_out_of_range: age 120", "image_missing: b.jpg",
                                       "bad_date: dob nan"]})
    summary = summarise("wiki", kept_table(), rejects, BANDS)
    assert (summary["rows_in"], summary["kept"], summary["rejected"], summary["kept_share"]) == (8, 4, 4, 0.5)
    assert list(summary["rejected_by_reason"].items()) == [("image_missing", 2), ("age_out_of_range", 1),
                                                          ("bad_date", 1)]
    assert summary["stage"] == "prepare" and "rejected_by" not in summary  # no labels on these rejects
    json.dumps(summary)  # written as quality.json


def test_rejection_rates_by_group_show_which_group_loses_rows():
    rejects = pd.DataFrame({
        "reason": ["no_face: x", "no_face: y", "no_face: z", "image_missing: w"],
        "age": [25, 50, np.nan, 20],
        "gender": ["female", "female", "female", None],
        "race": ["black", "black", "black", None],
    })
    summary = summarise("utkface", kept_table(), rejects, BANDS, stage="crop")
    rates = summary["rejection_rate_by"]
    assert rates["race"] == {"white": 0.0, "black": 0.6}          # 3 of the 5 black faces lost, none of the white
    assert rates["gender"] == {"male": 0.0, "female": 0.6}
    assert rates["race_x_gender"]["black*female"] == 0.6
    assert rates["age_band"]["16-30"] == round(2 / 3, 4) and rates["age_band"]["31-60"] == 0.5
    assert UNKNOWN not in rates["race"] and "asian" not in rates["race"]  # no rows at all: no rate
    assert summary["rejected_by"]["gender"][UNKNOWN] == 1 and summary["stage"] == "crop"


def test_an_empty_pass_has_no_share():
    empty = pd.DataFrame(columns=["age", "gender", "race"])
    summary = summarise("none", empty, pd.DataFrame(columns=["reason"]), BANDS)
    assert (summary["rows_in"], summary["kept_share"], summary["rejected_by_reason"]) == (0, None, {})
