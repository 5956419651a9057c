"""Mitigation `balanced`: the training rows resampled to equal counts per group (race x gender by
default; sampling.balanced_indices), then the ordinary fit, early stopping on the val loss."""

from __future__ import annotations

import numpy as np

from stages.lib.core.params import Experiment
from stages.lib.heads.data import FittedHeads, HeadData, TrainingPlan
from stages.lib.heads.plain import train_heads
from stages.lib.heads.sampling import balanced_indices, group_codes


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    mitigation = experiment.mitigation
    codes, _ = group_codes(data.train, mitigation.groups, data.params.age_bands)
    indices = balanced_indices(codes, mitigation.target, data.params.seed)
    fitted = train_heads(data, experiment.init, TrainingPlan(indices))
    return FittedHeads(fitted.heads, fitted.histories,
                       trained_on={"train_rows": len(indices), "groups": len(np.unique(codes))})
