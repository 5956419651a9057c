"""Fitted heads on disk: `<task>.keras`, the loss curves as a table (`history.csv`) and as dvclive logs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from dvclive import Live

from stages.lib.core.params import Params
from stages.lib.heads.data import Budget, FittedHeads, Histories
from stages.lib.heads.model import Init
from stages.lib.heads.starts import start_for


def history_frame(histories: Histories) -> pd.DataFrame:
    """One row per epoch (1-based): `epoch`, then `<head>_loss` and `val_<head>_loss` of each trained head.

    A head that stopped earlier than another has empty cells after its last epoch; with no trained
    head the table has only the `epoch` column and no rows.
    """
    trained = {head: h for head, h in histories.items() if h.get("loss")}
    epochs = max((len(h["loss"]) for h in trained.values()), default=0)
    frame = pd.DataFrame({"epoch": np.arange(1, epochs + 1)})
    for head, history in trained.items():
        for key in ("loss", "val_loss"):
            values = np.full(epochs, np.nan)
            values[:len(history[key])] = history[key]
            frame[key.replace("loss", f"{head}_loss")] = values
    return frame


def history_summary(history: dict[str, list[float]]) -> dict[str, float | int]:
    """Epochs run, the best (lowest) validation loss and its 1-based epoch; {} for an untrained head."""
    if not history.get("val_loss"):
        return {}
    best = int(np.argmin(history["val_loss"]))
    return {"epochs": len(history["val_loss"]), "best_epoch": best + 1,
            "best_val_loss": history["val_loss"][best], "loss_at_best": history["loss"][best]}


def log_histories(live_dir: str | Path, histories: Histories, summary: dict) -> None:
    """Write the loss curves with dvclive (`<head>/loss`, `<head>/val_loss`, step = epoch - 1) and `summary`.

    Written after training, one step per epoch across heads, so `dvc plots` shows each head's curves.
    dvclive is told not to touch dvc.yaml nor start its own experiment: the stage's outputs are declared
    in dvc.yaml, `<live_dir>/plots/metrics` among them, so that folder exists even when no head was
    trained (init `published`).
    """
    with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        Path(live.plots_dir, "metrics").mkdir(parents=True, exist_ok=True)
        for epoch in range(max((len(h.get("loss", [])) for h in histories.values()), default=0)):
            for head, history in histories.items():
                for key in ("loss", "val_loss"):
                    if epoch < len(history.get(key, [])):
                        live.log_metric(f"{head}/{key}", history[key][epoch])
            live.next_step()
        live.summary = summary


def heads_signature(fitted: FittedHeads, init: Init, params: Params, split: str) -> dict:
    """What an experiment's twin must share, as its saved heads show it: where they really started
    (`start_for`), what they read, the split, the budget, and each head's weight shapes. Written to
    models/<exp>/mitigation.json (`heads`); the report compares each pair it sets side by side."""
    start = init if init == "published" else start_for(init, params.backbone)
    return {"start": start, "reads": fitted.reads, "split": split,
            "budget": asdict(Budget.from_params(params)),
            "layers": {task: [list(weight.shape) for weight in model.weights] for task, model in fitted.heads.items()}}


def save_heads(models: dict[str, keras.Model], histories: Histories, directory: str | Path, summary: dict) -> None:
    """`<directory>/<task>.keras`, `history.csv` (`history_frame`) and the dvclive folder `live/`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for task, model in models.items():
        model.save(directory / f"{task}.keras")
    history_frame(histories).to_csv(directory / "history.csv", index=False)
    log_histories(directory / "live", histories,
                  {**summary, **{task: history_summary(h) for task, h in histories.items()}})
