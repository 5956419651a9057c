"""Which population each figure is about (reporting/populations.py): the share of a published dataset a
run read, R2 from age 1 pooled from the sets one folder was cut into, and R10 by predicted then true age."""

import json

import numpy as np
import pandas as pd

from stages.lib.reporting.populations import pooled_from_one, r10_views, sample_sentence, study_r2
from tests.reporting.toy_experiments import BOOT, params


def test_the_sample_is_set_against_the_whole_published_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = params("real-offline")
    for name, kept in (("utkface", 4_300), ("utkface_children", 700), ("fairface", 3_000)):
        (tmp_path / "data" / "interim" / name).mkdir(parents=True)
        (tmp_path / "data" / "interim" / name / "quality.json").write_text(
            json.dumps({"rows_in": 5_002 if name != "fairface" else 3_000, "kept": kept}))
    text = sample_sentence(real)
    assert text.startswith("**Data.** utkface and utkface_children: 5,002 of UTKFace's 23,708 aligned faces "
                           "(a sample, 21% of them; kept: utkface 4,300, utkface_children 700); ")
    assert text.endswith("fairface: 3,000 of FairFace's 97,698 released faces (a sample, 3% of them; kept: fairface 3,000).")
    assert sample_sentence(params("demo")) == ""     # synthetic faces: no published size


def test_r2_pools_the_sets_cut_from_one_folder_from_age_1():
    real = params("real-offline")
    assert pooled_from_one(real, ["utkface", "fairface", "utkface_children"], "utkface") == ["utkface", "utkface_children"]
    rows = pd.DataFrame({"dataset": ["utkface"] * 3 + ["utkface_children"] * 2 + ["fairface"],
                         "age": [20.0, 40.0, 60.0, 2.0, 10.0, 25.0], "age_pred": [22.0, 40.0, 50.0, 8.0, 10.0, 99.0]})
    text = study_r2(rows, ["utkface", "utkface_children"], BOOT)
    assert text.startswith("utkface + utkface_children (ages 2–60): MAE 3.60 [") and text.endswith("(n=5)")


def test_r10_gives_the_predicted_age_view_first_and_the_true_age_view_beside_it():
    rng = np.random.default_rng(0)
    age = rng.uniform(1, 90, 4_000)
    seen = age + rng.normal(0, 15, len(age))
    shrink = age.var() / seen.var()     # the best linear estimate from noisy evidence: calibrated, pulled to the mean
    rows = pd.DataFrame({"age": age, "age_pred": age.mean() + shrink * (seen - age.mean())})
    text = r10_views(rows, [0, 16, 31, 46, 61], BOOT)
    predicted, true = text.split("; at ")
    assert predicted.startswith("mean (predicted − true) at predicted age 61+: ") and true.startswith("true age 61+: -")
    assert abs(float(predicted.split(": ")[1].split(" ")[0])) < 3 < -float(true.split(": ")[1].split(" ")[0])
    assert "regression to the mean" in text
