"""Shared by the reporting tests: the params of a profile, and one experiment's toy predictions on
val and test faces with errors of a chosen spread on each split."""

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stages.lib.core.labels import RACES
from stages.lib.core.params import validate
from stages.lib.evaluation.intervals import Bootstrap

ROOT = Path(__file__).resolve().parents[2]
BOOT = Bootstrap(resamples=60, confidence=0.95, seed=1)


def params(profile: str = "full"):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = profile
    return validate(raw)


def predictions(noise_val: float, noise_test: float, *, seed: int, ids=range(400), dataset="utkface"):
    """One experiment's predictions: the first quarter of the faces val, the rest test; errors drawn
    with the given spread on each split."""
    faces, rng = np.random.default_rng(0), np.random.default_rng(seed)
    ids = list(ids)
    n = len(ids)
    split = np.where(np.arange(n) < n // 4, "val", "test")
    age = faces.integers(17, 80, n).astype(float)
    noise = np.where(split == "val", noise_val, noise_test)
    gender = faces.choice(["male", "female"], n)
    return pd.DataFrame({"id": [f"f{i}" for i in ids], "dataset": dataset, "split": split, "age": age,
                         "age_pred": age + rng.normal(0, 1, n) * noise, "gender": gender,
                         "gender_pred": np.where(rng.random(n) < 0.85, gender, np.where(gender == "male", "female", "male")),
                         "race": faces.choice(RACES, n)})
