"""Small predictions tables and helpers shared by the tests of the evaluation room (not a test file)."""

import numpy as np
import pandas as pd

from stages.lib.core.labels import RACES
from stages.lib.core.schema import PREDICTION_COLUMNS

EDGES = [0, 16, 31, 46, 61]
ADIENCE = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))


def table(rows):
    """A predictions table from (age, age_pred, gender, race, gender_pred) tuples."""
    frame = pd.DataFrame(rows, columns=["age", "age_pred", "gender", "race", "gender_pred"])
    frame["id"] = [f"f{i}" for i in range(len(frame))]
    frame["dataset"], frame["split"], frame["experiment"] = "toy", "test", "exp"
    frame["age_pred_argmax"] = np.nan
    frame["gender_prob_female"] = np.nan
    return frame[PREDICTION_COLUMNS]


# Five faces whose errors and gender hits are easy to count by hand.
TOY = table([
    # age, predicted, gender, race, predicted gender
    (20, 22.0, "male", "white", "male"),      # error +2
    (25, 21.0, "female", "white", "male"),    # error -4, gender wrong
    (40, 46.0, "female", "black", "female"),  # error +6
    (70, 60.0, "male", "black", "male"),      # error -10
    (65, 64.0, "female", "black", "male"),    # error -1, gender wrong
])


def two_races(shift: float, n: int = 300, seed: int = 3) -> pd.DataFrame:
    """n white faces with errors ~ N(0, 2), n black ones with errors ~ N(shift, 2)."""
    rng = np.random.default_rng(seed)
    rows = [(40, 40 + rng.normal(0, 2), "male", "white", None) for _ in range(n)]
    rows += [(40, 40 + shift + rng.normal(0, 2), "male", "black", None) for _ in range(n)]
    return table(rows)


def row(groups, attribute, group):
    match = groups[(groups["attribute"] == attribute) & (groups["group"] == group)]
    assert len(match) == 1, f"{attribute}={group} not found once in {groups[['attribute', 'group']]}"
    return match.iloc[0]


def predictions(ages, predicted, *, races=None, genders=None, seed=0, **extra):
    """A predictions table (test split) of the given true and predicted ages."""
    rng = np.random.default_rng(seed)
    n = len(ages)
    frame = pd.DataFrame({
        "id": [f"f{i}" for i in range(n)], "dataset": "toy", "split": "test", "age": np.asarray(ages, dtype=int),
        "age_pred": np.asarray(predicted, dtype=float), "age_pred_argmax": np.nan,
        "gender": genders if genders is not None else rng.choice(["male", "female"], n),
        "gender_prob_female": np.nan,
        "race": races if races is not None else rng.choice(list(RACES), n), "experiment": "exp",
    })
    frame["gender_pred"] = frame["gender"]
    return frame[PREDICTION_COLUMNS].assign(**extra)


def old_improve_middle_aged_pay():
    """A reference and an oversampling experiment on the same faces: 61+ errors 3 years smaller, 46-60's
    1.5 years larger, the rest alike (noise)."""
    rng = np.random.default_rng(5)
    ages = np.repeat([10, 25, 40, 55, 70], 200)
    reference = predictions(ages, ages + rng.normal(0, 6, len(ages)))
    noise = rng.normal(0, 0.5, len(ages))
    error = (reference["age_pred"] - reference["age"]).to_numpy()
    change = np.where(ages == 70, -3.0, np.where(ages == 55, 1.5, 0.0)) + noise
    experiment = reference.assign(age_pred=reference["age"] + np.sign(error) * np.maximum(np.abs(error) + change, 0))
    return reference, experiment
