"""The study's training protocol, beside ours, so that the report can measure what it changes.

The study (its notebooks, after serengil's tensorflow-101): Adam at Keras' default learning rate 1e-3
on the cross-entropy; 250 "epochs", each a single `fit` on one batch of 512 rows drawn at random,
with replacement, from the training set; a 70/30 train/test split with no validation set, the loss on
the test set computed after every epoch and the checkpoint with the lowest test loss kept. Ours
(heads/plain.py): Adam at `train.learning_rate` (1e-4), full passes over the train split, early
stopping on a separate val split, 60/10/30.

`fit` runs the study's loop (an experiment with `protocol: study`) on the train split
and keeps the checkpoint the study would keep. Our val split is held back from training for one
purpose: after every epoch the heads are scored on both the test and the val split, so the same run
says what the test split gives at the checkpoint the val split would have picked. The gap between
the two (`selection_summary`) is how much picking the checkpoint on the test set flatters the test
figures; the rest of the difference to our protocol is the learning rate, the one-batch epochs and
the 60% (not 70%) of faces trained on.
"""

from __future__ import annotations

import keras
import numpy as np

from stages.lib.core.params import Experiment
from stages.lib.heads.data import Budget, FittedHeads, HeadData, TaskRows
from stages.lib.heads.loop import Drawn, RowBatches, fit_loop
from stages.lib.heads.model import TASKS, expected_age
from stages.lib.heads.predicting import cross_entropy, predict_probs
from stages.lib.heads.sampling import training_plan
from stages.lib.heads.starts import start_head

STUDY_LEARNING_RATE = 1e-3  # keras.optimizers.Adam()'s default, which the study used
STUDY_EPOCHS = 250
STUDY_BATCH_SIZE = 512


def study_budget(seed: int) -> Budget:
    """The study's budget: 250 one-batch epochs of 512 rows, Adam at its default rate, never stopped
    early (patience: every epoch)."""
    return Budget(epochs=STUDY_EPOCHS, patience=STUDY_EPOCHS, batch_size=STUDY_BATCH_SIZE,
                  learning_rate=STUDY_LEARNING_RATE, seed=seed)


def task_metric(task: str, probs: np.ndarray, labels: np.ndarray) -> float:
    """Age: MAE of the expected value (years). Gender: accuracy of the most probable class."""
    if task == "age":
        return float(np.abs(expected_age(probs) - labels).mean())
    return float((probs.argmax(axis=1) == labels).mean())


def fit_head_study(model: keras.Model, features: np.ndarray, task: str, splits: dict[str, TaskRows], *,
                   budget: Budget, sample_weight: np.ndarray | None = None) -> dict[str, list[float]]:
    """Train `model` in place the study's way: every epoch one batch of `budget.batch_size` rows drawn
    with replacement, then the val and test splits scored; keep the weights of the epoch with the
    lowest test loss (the loop's KeepLowest on `test_loss`).

    `splits`: the train, val and test rows. Returns per epoch the training batch's `loss`,
    `val_loss` and `test_loss`, and `val_metric` / `test_metric` (`task_metric`).
    """
    sizes = {name: len(splits[name].rows) for name in ("train", "val", "test")}
    if min(sizes.values()) == 0:
        raise ValueError(f"the study's protocol needs rows in train ({sizes['train']}), val ({sizes['val']}) and "
                         f"test ({sizes['test']}): check split.* and the finetune dataset's size")

    def scores() -> dict[str, float]:
        figures = {}
        for name in ("val", "test"):
            probs = predict_probs(model, features, splits[name].rows, budget.batch_size, desc=f"{task} {name}")
            figures[f"{name}_loss"] = float(cross_entropy(probs, splits[name].labels).mean())
            figures[f"{name}_metric"] = task_metric(task, probs, splits[name].labels)
        return figures

    batches = RowBatches(features, splits["train"], budget.batch_size, Drawn(budget.seed),
                         extra=None if sample_weight is None else "weights", weights=sample_weight, in_file_order=False)
    return fit_loop(model, batches, budget=budget, figures=[scores], keep="test_loss")


def selection_summary(task: str, history: dict[str, list[float]]) -> dict:
    """The test figure at the checkpoint the study keeps (lowest test loss) and at the one the val split
    would pick, with their 1-based epochs: `flattery` is how much better picking on the test set makes
    the test figure look (years of MAE for age, accuracy points for gender; negative: it did not flatter)."""
    metric = "mae" if task == "age" else "accuracy"
    on_test, on_val = int(np.argmin(history["test_loss"])), int(np.argmin(history["val_loss"]))
    picked_test, picked_val = history["test_metric"][on_test], history["test_metric"][on_val]
    return {
        "metric": metric, "epoch_picked_on_test": on_test + 1, "epoch_picked_on_val": on_val + 1,
        f"test_{metric}_picked_on_test": picked_test, f"test_{metric}_picked_on_val": picked_val,
        "flattery": (picked_val - picked_test) if task == "age" else (picked_test - picked_val),
    }


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    """Both heads the study's way (`data.test`: the finetune dataset's test rows, on which it picks its
    checkpoint). The experiment's oversampling / re-weighting applies to the rows batches are drawn
    from; the summary's `selection` says how much picking on the test split flatters the test figures."""
    if data.test is None:
        raise ValueError("the study's protocol picks its checkpoint on the finetune dataset's test rows: none given")
    plan = training_plan(data.train["age"].to_numpy(), experiment.oversample, experiment.reweight,
                         data.params.age_bands)
    indices = plan.rows_of(len(data.train))
    heads, histories, selection = {}, {}, {}
    for task in TASKS:
        heads[task] = start_head(data, task, experiment.init)
        splits = {"train": data.task_rows(task, data.train).take(indices), "val": data.task_rows(task, data.val),
                  "test": data.task_rows(task, data.test)}
        histories[task] = fit_head_study(heads[task], data.features.array, task, splits, sample_weight=plan.weights,
                                         budget=study_budget(data.params.seed))
        selection[task] = selection_summary(task, histories[task])
    return FittedHeads(heads, histories, summary={"protocol": "study", "selection": selection},
                       trained_on={"train_rows": len(indices)}, reads=data.reads)
