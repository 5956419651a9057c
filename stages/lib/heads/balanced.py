"""Mitigation `balanced`: the training rows resampled to equal counts per group (race x gender by
default; sampling.balanced_indices), then the ordinary fit, early stopping on the val loss."""

from __future__ import annotations

import numpy as np

from stages.lib.core.params import Experiment
from stages.lib.heads.sampling import balanced_indices, group_codes
from stages.lib.heads.training import FittedHeads, HeadData, train_heads


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    mitigation = experiment.mitigation
    codes, _ = group_codes(data.train, mitigation.groups, data.params.age_bands)
    indices = balanced_indices(codes, mitigation.target, data.params.seed)
    fitted = train_heads(data, experiment.init, (indices, None))
    return FittedHeads(fitted.heads, fitted.histories,
                       trained_on={"train_rows": len(indices), "groups": len(np.unique(codes))})
