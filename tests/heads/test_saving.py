"""Fitted heads on disk: the heads, the loss curves as a table and as dvclive logs."""

import json

import keras
import numpy as np
import pandas as pd

from stages.lib.heads.model import build_head
from stages.lib.heads.saving import history_frame, history_summary, save_heads


def test_history_table_has_a_column_pair_per_trained_head():
    frame = history_frame({"age": {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.5, 2.6]},
                           "gender": {"loss": [0.7, 0.6], "val_loss": [0.8, 0.7]}})
    assert list(frame.columns) == ["epoch", "age_loss", "val_age_loss", "gender_loss", "val_gender_loss"]
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["val_age_loss"].tolist() == [3.1, 2.5, 2.6]
    assert frame["gender_loss"].tolist()[:2] == [0.7, 0.6] and np.isnan(frame["gender_loss"].iloc[2])
    assert list(history_frame({}).columns) == ["epoch"] and history_frame({}).empty


def test_history_summary_names_the_best_epoch():
    summary = history_summary({"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.5, 2.6]})
    assert summary == {"epochs": 3, "best_epoch": 2, "best_val_loss": 2.5, "loss_at_best": 2.0}
    assert history_summary({}) == {}


def test_save_heads_writes_the_heads_the_table_and_the_dvclive_summary(tmp_path):
    head = build_head(4, 3, 2, 0.0, name="gender", seed=0)
    save_heads({"gender": head}, {"gender": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.9]}}, tmp_path, {"init": "random"})
    saved = keras.models.load_model(tmp_path / "gender.keras")
    assert all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), head.get_weights()))
    assert pd.read_csv(tmp_path / "history.csv")["val_gender_loss"].tolist() == [1.1, 0.9]
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["init"] == "random" and summary["gender"]["best_epoch"] == 2
    assert (tmp_path / "live/plots/metrics/gender/val_loss.tsv").exists()
