"""Synthetic faces with planted skin-colour and photo-quality effects, and their measurement table (the
measure stage's contract), for the tests of the skin and adjusted-gap analyses (not a test file)."""

import numpy as np
import pandas as pd

from stages.lib.core.labels import RACES
from stages.lib.core.schema import PREDICTION_COLUMNS

MEAN_LIGHTNESS = {"white": 66.0, "black": 42.0, "asian": 62.0, "indian": 52.0, "others": 56.0}


def planted(n: int = 3000, *, skin_effect: float = 0.0, quality_effect: float = 0.0, race_effect: float = 0.0,
            seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, measurements) of `n` faces. Absolute age error = 3 + `skin_effect` years per 10 L*
    darker than 60 + `quality_effect` years per unit of blur (−z of log sharpness) + `race_effect` for
    Black faces + noise; Black faces' photos are blurrier (z −1 on average). A wrong gender call is
    likelier the darker the skin (with `skin_effect`) and the blurrier the photo (with `quality_effect`).
    Every fourth face shares a cluster with the face before it."""
    rng = np.random.default_rng(seed)
    race = rng.choice(list(RACES), n)
    gender = rng.choice(["male", "female"], n)
    lightness = np.array([MEAN_LIGHTNESS[r] for r in race]) + rng.normal(0, 6, n)
    hue = rng.normal(55, 5, n)
    blur = rng.normal(0, 1, n) + np.where(race == "black", 1.0, 0.0)
    age = rng.integers(18, 80, n)
    error = (3 + skin_effect * (60 - lightness) / 10 + quality_effect * blur
             + np.where(race == "black", race_effect, 0.0) + rng.normal(0, 1, n))
    age_pred = age + np.abs(error) * rng.choice([-1, 1], n)
    logit = -2.5 + 0.8 * skin_effect * (60 - lightness) / 10 + quality_effect * blur
    wrong = rng.random(n) < 1 / (1 + np.exp(-logit))
    other = np.where(gender == "male", "female", "male")
    ids = [f"toy/f{i}" for i in range(n)]
    clusters = [f"c{i - 1}" if i % 4 == 3 else f"c{i}" for i in range(n)]
    predictions = pd.DataFrame({
        "id": ids, "dataset": "toy", "split": "test", "age": age, "age_pred": age_pred, "age_pred_argmax": np.nan,
        "gender": gender, "gender_prob_female": np.nan, "gender_pred": np.where(wrong, other, gender),
        "race": race, "experiment": "exp"})[PREDICTION_COLUMNS].assign(cluster=clusters)
    p_female = np.where(predictions["gender_pred"] == "female", 0.8, 0.2) + rng.normal(0, 0.1, n)
    predictions["gender_prob_female"] = np.clip(p_female, 0.01, 0.99)
    measurements = pd.DataFrame({
        "id": ids, "skin_lightness": lightness, "skin_hue": hue, "skin_pixels": 900,
        "clipped_dark": rng.uniform(0, 0.05, n), "clipped_bright": rng.uniform(0, 0.05, n),
        "background_luminance": rng.normal(50, 10, n), "contrast": rng.normal(20, 4, n),
        "sharpness": np.exp(5 - blur), "face_size": np.nan,
        "yaw": rng.normal(0, 10, n), "pitch": rng.normal(0, 8, n), "roll": rng.normal(0, 5, n), "problem": None})
    measurements["problem"] = "no source size: fixed-size chips"
    return predictions, measurements
