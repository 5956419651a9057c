"""Where this run follows the study and where it does not: the report's fidelity notes.

- In-sample figures. serengil trained the published heads on an unseeded random 70% of the wiki faces
  his filter keeps, so about 70% of any wiki test split was seen in training; params mark such a
  dataset `published_in_sample`, and the published model's figures on it (R1, R11's IMDB-Wiki
  accuracy) are labelled in-sample. A dataset the weights never saw (imdb) gives the held-out figure.
- The protocol. The study's training (Adam at 1e-3, an "epoch" of one random batch, 70/30 with the
  checkpoint picked on the test split) against ours, read from params, and what the `study_protocol`
  experiment measured: how much picking the checkpoint on the test split flatters the test figures.
- Gender coding. The study's UTKFace notebooks decode gender code 0 as woman (`#0: woman, 1: man`),
  but UTKFace codes 0 as male: its "women" are UTKFace's men wherever it read those codes. Its R7
  (young women over-estimated more) is, in its own published predictions read with UTKFace's coding,
  young men (tests/reporting/test_fidelity.py checks it on the published table). Our labels follow
  UTKFace's coding; the note says where our R7 and R11 therefore differ from the study's text.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from stages.lib.core.labels import age_band
from stages.lib.core.params import Params
from stages.lib.datasets import parse_options
from stages.lib.datasets.common import dataset_labels
from stages.lib.evaluation.groups import Evaluation
from stages.lib.evaluation.intervals import Bootstrap, Gap, direction, group_rng, resample_sums, resampled_gap
from stages.lib.reporting.markdown import Markdown, number, percent

IN_SAMPLE = "in-sample"
YOUNG_ADULT_AGE = 20  # R7's "young": the age band holding this age
STUDY_GENDER_ACCURACY = "men 96% overall, the best women's group 63%"  # its R11 text (reference/study.md)

STUDY_PROTOCOL = {
    "optimiser": "Adam, learning rate 1e-3 (Keras' default)",
    "an epoch": "one batch of 512 rows drawn at random, with replacement",
    "epochs": "250, no early stopping",
    "split": "70% train / 30% test, no validation split",
    "checkpoint kept": "the lowest loss on the test split",
    "one person on both sides": "possible: a random split (UTKFace has no identity labels)",
    "ages": "UTKFace in the wild 17–100 (retraining, R3–R14), aligned from 1 (R2); wiki: 0 < age ≤ 100",
    "UTKFace gender code 0": "decoded as woman",
}


def in_sample_datasets(params: Params) -> list[str]:
    """The evaluated datasets the published weights were trained on."""
    return [name for name in params.roles.evaluate if params.datasets[name].published_in_sample]


def test_set_label(params: Params, init: str, dataset: str) -> str:
    """The test set's name, marked where the published model's figures on it are in-sample; a pooled
    test set (not a dataset of params) is marked when it holds such a dataset's faces."""
    if init != "published":
        return dataset
    if dataset in params.datasets:
        return f"{dataset} ({IN_SAMPLE})" if params.datasets[dataset].published_in_sample else dataset
    inside = in_sample_datasets(params)
    return f"{dataset} (holds {IN_SAMPLE} {', '.join(inside)})" if inside else dataset


def in_sample_note(params: Params, evaluated: list[str]) -> str | None:
    """The paragraph that says which published-model figures are in-sample and where the held-out one is."""
    in_sample = [d for d in evaluated if d in params.datasets and params.datasets[d].published_in_sample]
    if not in_sample:
        return None
    held_out = [d for d in evaluated if d in params.datasets and not params.datasets[d].published_in_sample
                and params.datasets[d].adapter == params.datasets[in_sample[0]].adapter]
    note = (f"**In-sample figures.** The published age and gender heads were trained on {', '.join(in_sample)} "
            "itself (serengil: an unseeded random 70% of the faces his filter keeps), so about 70% of its test "
            f"split was seen in training: the published model's figures there (R1, and R11's IMDB-Wiki gender "
            f"accuracy) are marked {IN_SAMPLE} and flatter it.")
    if held_out:
        note += f" {', '.join(held_out)} was never used by those weights: its figures are the held-out ones."
    return note


def _age_range(params: Params, name: str) -> str:
    dataset = params.datasets[name]
    labels = dataset_labels(parse_options(dataset.adapter, name, dataset.options), params.labels)
    return f"{name} {labels.min_age}–{labels.max_age}"


def protocol_table(params: Params) -> pd.DataFrame:
    """The study's protocol against this run's, row by row (this run's read from params)."""
    train, split, clusters = params.train, params.split, params.split.clusters
    grouping = ("kept apart: identities, and look-alikes within "
                f"{clusters.threshold} in {'dlib descriptors' if clusters.embedding == 'dlib_resnet' else 'the features'}"
                if clusters else "kept apart where identities are labelled")
    ours = {
        "optimiser": f"Adam, learning rate {train.learning_rate:g}",
        "an epoch": f"a full pass over the train split, in batches of {train.batch_size}",
        "epochs": f"up to {train.epochs}, stopping after {train.patience} without a better val loss",
        "split": f"{split.train:.0%} train / {split.val:.0%} val / {split.test:.0%} test",
        "checkpoint kept": "the lowest loss on the val split",
        "one person on both sides": grouping + " (the `naive_split` experiment: the study's random split)",
        "ages": "; ".join(_age_range(params, name) for name in params.active_datasets),
        "UTKFace gender code 0": "male, as UTKFace codes it",
    }
    return pd.DataFrame({"": list(STUDY_PROTOCOL), "the study": list(STUDY_PROTOCOL.values()),
                         "this run": [ours[key] for key in STUDY_PROTOCOL]})


def selection_table(params: Params) -> pd.DataFrame:
    """For each `protocol: study` experiment trained, per head: the test figure at the checkpoint the
    study keeps (lowest test loss) and at the one the val split would pick, and the difference."""
    rows = []
    for name, experiment in params.experiments.items():
        path = params.paths.models / name / "live" / "metrics.json"
        if experiment.protocol != "study" or not path.exists():
            continue
        for task, figures in json.loads(path.read_text()).get("selection", {}).items():
            metric = figures["metric"]
            shown = (lambda v: number(v)) if metric == "mae" else percent
            rows.append({
                "experiment": name, "head": task, "test figure": "MAE" if metric == "mae" else "accuracy",
                "checkpoint picked on test (the study's)": f"{shown(figures[f'test_{metric}_picked_on_test'])} "
                                                           f"(epoch {figures['epoch_picked_on_test']})",
                "checkpoint picked on val": f"{shown(figures[f'test_{metric}_picked_on_val'])} "
                                            f"(epoch {figures['epoch_picked_on_val']})",
                "flattery": f"{number(figures['flattery'])} years" if metric == "mae"
                            else f"{100 * figures['flattery']:.1f} pts",
            })
    return pd.DataFrame(rows)


def protocol_section(md: Markdown, params: Params) -> None:
    md.heading("The study's protocol and this run's", 2)
    md.table(protocol_table(params), "What the study did and what this run does; the experiments keep ours")
    selection = selection_table(params)
    if selection.empty:
        md.paragraph("No `protocol: study` experiment has been trained yet (`study_protocol` in params.yaml), so "
                     "how much picking the checkpoint on the test split flatters the test figures is not measured.")
        return
    md.table(selection, "The study's protocol: the test figure at the checkpoint it keeps (lowest test loss) against "
                        "the checkpoint our val split would pick in the same run; the difference is what picking on "
                        "the test set flatters (positive: it flatters)")


def young_signed_errors(frame: pd.DataFrame, edges) -> tuple[str, dict[str, np.ndarray]]:
    """The young-adult band (the one holding YOUNG_ADULT_AGE) and its predicted − true ages by gender."""
    bands = pd.Series(age_band(frame["age"], edges), index=frame.index)
    band = str(age_band([YOUNG_ADULT_AGE], edges)[0])
    young = frame[(bands == band) & frame["gender"].isin(["male", "female"])]
    signed = young["age_pred"] - young["age"]
    return band, {str(gender): values.to_numpy(dtype=float) for gender, values in signed.groupby(young["gender"])}


def men_minus_women(signed: dict[str, np.ndarray], bootstrap: Bootstrap) -> Gap:
    """Men's mean signed error minus women's, with the interval of that difference (independent
    bootstrap resamples of the two groups)."""
    men, women = signed["male"], signed["female"]
    resampled = [resample_sums(values, bootstrap.resamples, group_rng(bootstrap, f"r7:{gender}"))[:, 0] / len(values)
                 for gender, values in (("male", men), ("female", women))]
    return resampled_gap(men.mean(), women.mean(), *resampled, confidence=bootstrap.confidence)


def _gender_accuracy(evaluation: Evaluation) -> dict[str, float]:
    rows = evaluation.groups[evaluation.groups["attribute"] == "gender"]
    return {group: float(value) for group, value in zip(rows["group"], rows["gender_accuracy"]) if not np.isnan(value)}


def gender_coding_section(md: Markdown, params: Params, model: str, dataset: str, *, test_rows: pd.DataFrame,
                          evaluation: Evaluation, bootstrap: Bootstrap) -> None:
    """Where our R7 and R11 differ from the study's text, and why (its gender decoding)."""
    md.heading("Where our R7 and R11 differ from the study's text, and why", 2)
    md.paragraph("The study's UTKFace notebooks decode gender code 0 as woman (`#0: woman, 1: man`), but UTKFace "
                 "codes 0 as male: its “women” are UTKFace's men wherever it read those codes. Its R7 reads “young "
                 "women are over-estimated more than men”; its own published predictions of the retrained model, "
                 "read with UTKFace's coding, show the young men over-estimated more (tests/reporting/test_fidelity.py "
                 "checks this on the published table). Our labels follow UTKFace's coding.")
    band, signed = young_signed_errors(test_rows, params.age_bands)
    if {"male", "female"} <= set(signed) and min(len(v) for v in signed.values()) >= 2:
        gap = men_minus_women(signed, bootstrap)
        side = direction(gap.difference_ci_low, gap.difference_ci_high)
        finding = {"above": "young men are over-estimated more, as the study's predictions show once decoded "
                            "right, against its text",
                   "below": "young women are over-estimated more, as the study's text says, against its own "
                            "predictions decoded right"}.get(side, "neither gender is shown to be over-estimated "
                                                                   "more: the interval holds zero")
        md.paragraph(f"**R7 here** ({model} on {dataset}, test split, aged {band}): mean predicted − true age is "
                     f"{number(signed['male'].mean())} years for men and {number(signed['female'].mean())} for "
                     f"women; men − women {number(gap.difference)} [{number(gap.difference_ci_low)}, "
                     f"{number(gap.difference_ci_high)}] years "
                     f"({bootstrap.confidence:.0%} CI), so {finding}.")
    accuracy = _gender_accuracy(evaluation)
    if {"male", "female"} <= set(accuracy):
        md.paragraph(f"**R11 here**: gender accuracy {percent(accuracy['male'])} for men and "
                     f"{percent(accuracy['female'])} for women (the study's text: {STUDY_GENDER_ACCURACY}). Its R11 "
                     "and R12 split accuracy by the same decoded labels, so their “men” and “women” rows may be "
                     "swapped as well; its published tables hold no gender predictions to check that.")
