"""The ways of fitting an experiment's heads, by name: the heads room's registry (as backbones/registry.py
is the backbones'). An experiment's params pick the entry (`Experiment.method`: its mitigation's method,
else its protocol's: `none` -> as_published, `ours` -> plain, `study` -> study); every entry takes the
same `HeadData` and the experiment and returns `FittedHeads`. A new method is one module with a
`fit(data, experiment)` and one line here (and its params model in core/params.py, if it has knobs).
Every stage that trains heads does it here, through `fit_experiment` (tests/stages/test_stage_imports.py).
"""

from __future__ import annotations

from typing import Callable

from stages.lib.core.params import Balanced, Experiment, ParamsError
from stages.lib.heads import adversarial, balanced, group_dro, last_layer, plain, protocol
from stages.lib.heads.data import FittedHeads, HeadData

Method = Callable[[HeadData, Experiment], FittedHeads]

METHODS: dict[str, Method] = {
    "as_published": plain.as_published,
    "plain": plain.fit,
    "study": protocol.fit,
    "balanced": balanced.fit,
    "group_dro": group_dro.fit,
    "adversarial": adversarial.fit,
    "last_layer": last_layer.fit,
}


# The experiments the pretrain, compare and probe stages fit their heads as (not params' own): heads
# from the seeded random start, every training row once; and the same on rows balanced over race x gender.
FROM_RANDOM = Experiment(init="random")
BALANCED_FROM_RANDOM = Experiment(init="random", mitigation=Balanced(method="balanced", groups=["race", "gender"],
                                                                    target="mean"))


def method_for(experiment: Experiment) -> Method:
    """The registered method that fits `experiment`'s heads; ParamsError naming the registered ones."""
    try:
        return METHODS[experiment.method]
    except KeyError:
        raise ParamsError(f"no way of fitting heads is registered as {experiment.method!r}; registered: "
                          f"{', '.join(METHODS)} (stages/lib/heads/methods.py)") from None


def fit_experiment(data: HeadData, experiment: Experiment) -> FittedHeads:
    """`experiment`'s heads, fitted by its method on what heads starting from its init read."""
    return method_for(experiment)(data.for_heads_from(experiment.init), experiment)
