"""The two plain ways of getting heads: the published heads as they are (`as_published`, the baseline)
and `plain` fitting with the experiment's oversampling / re-weighting plan, early stopping on val."""

from __future__ import annotations

from stages.lib.core.params import Experiment
from stages.lib.heads.sampling import training_plan
from stages.lib.heads.training import (FittedHeads, HeadData, published_output_heads, start_head, train_heads)
from stages.lib.heads.model import TASKS


def as_published(data: HeadData, experiment: Experiment) -> FittedHeads:
    """The published heads, untrained. A backbone that stores its model's own outputs (the features
    stage's `published.npy`) gets heads that select them; any other gets the pretrain stage's heads."""
    if data.features.published is not None:
        heads = published_output_heads(data.features.published.shape[1], data.params.labels.max_age)
        return FittedHeads(heads, summary={"heads": "the published model's own outputs (features stage)"},
                           reads="published_outputs")
    return FittedHeads({task: start_head(data, task, experiment.init) for task in TASKS})


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    plan = training_plan(data.train["age"].to_numpy(), experiment.oversample, experiment.reweight,
                         data.params.age_bands)
    return train_heads(data, experiment.init, plan)
