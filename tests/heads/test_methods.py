"""The mitigations' params, the groups they balance over, and the registry fitting an experiment's heads by
its method (each method's own effect: tests/heads/test_<method>.py)."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.params import ParamsError, validate
from stages.lib.heads.groups import MitigationError
from stages.lib.heads.methods import fit_experiment
from stages.lib.heads.sampling import SamplingError, balanced_holdout, balanced_indices, group_codes
from stages.lib.heads.data import HeadData
from tests.heads.toys import tiny_params, tiny_split, with_experiment


# ----- params ----------------------------------------------------------------------------------------

def test_the_project_runs_every_mitigation_with_its_defaults(raw):
    params = validate({**raw, "profile": "demo"})
    methods = {e.mitigation.method for e in params.experiments.values() if e.mitigation is not None}
    assert methods == {"balanced", "group_dro", "adversarial", "last_layer"}
    assert params.experiments["group_dro"].mitigation.groups == ["race", "gender"]


@pytest.mark.parametrize("mitigation, message", [
    ({"method": "dro"}, r"experiments\.x\.mitigation: method 'dro' is not allowed; allowed: 'balanced'"),
    ({"step_size": 0.1}, r"experiments\.x\.mitigation: give a `method`: one of balanced, group_dro"),
    ({"method": "group_dro", "step_size": 0}, r"group_dro\.step_size: Input should be greater than 0"),
    ({"method": "balanced", "groups": ["race", "race"]}, r"balanced\.groups: list each column at most once"),
    ({"method": "balanced", "groups": ["skin"]}, r"balanced\.groups\.0: 'skin' is not allowed"),
    ({"method": "balanced", "target": "median"}, r"balanced\.target: 'median' is not allowed"),
    ({"method": "adversarial", "attributes": ["age_band"]}, r"adversarial\.attributes\.0: 'age_band' is not allowed"),
    ({"method": "last_layer", "holdout": 1.0}, r"last_layer\.holdout: Input should be less than 1"),
    ({"method": "last_layer", "holdout": 0.3, "epochs": 3}, r"last_layer\.epochs: unknown key"),
])
def test_bad_mitigation_params_are_named(raw, mitigation, message):
    with pytest.raises(ParamsError, match=message):
        validate(with_experiment(raw, {"init": "backbone", "mitigation": mitigation}))


def test_a_mitigation_neither_starts_published_nor_mixes_with_oversampling(raw):
    with pytest.raises(ParamsError, match=r"experiments\.x: mitigation 'group_dro' trains the heads' hidden layer: init must be"):
        validate(with_experiment(raw, {"init": "published", "mitigation": {"method": "group_dro"}}))
    with pytest.raises(ParamsError, match="leave oversample empty and reweight none"):
        validate(with_experiment(raw, {"init": "backbone", "reweight": "inverse_band_frequency",
                                       "mitigation": {"method": "balanced"}}))


# ----- groups and balanced sampling ------------------------------------------------------------------

def test_group_codes_join_columns_and_keep_unlabelled_rows_in_their_own_group():
    frame = pd.DataFrame({"race": ["black", None, "white", "black"], "gender": ["female", "male", "male", "female"],
                          "age": [10, 40, 70, 20]})
    codes, names = group_codes(frame, ["race", "gender"], [0, 16, 61])
    assert names == ["black*female", "unknown*male", "white*male"]
    assert [names[c] for c in codes] == ["black*female", "unknown*male", "white*male", "black*female"]
    codes, names = group_codes(frame, ["gender", "age_band"], [0, 16, 61])
    assert [names[c] for c in codes] == ["female*0-15", "male*16-60", "male*61+", "female*16-60"]


def test_group_codes_refuse_a_column_no_row_has():
    frame = pd.DataFrame({"race": [None, None], "gender": ["female", "male"], "age": [1, 2]})
    with pytest.raises(SamplingError, match="no training row has a race label"):
        group_codes(frame, ["race", "gender"], [0])


@pytest.mark.parametrize("target, count", [("smallest", 3), ("mean", 10), ("largest", 20)])
def test_balanced_indices_give_every_group_the_same_count(target, count):
    codes = np.repeat([0, 1, 2], [20, 7, 3])
    indices = balanced_indices(codes, target, seed=0)
    assert np.bincount(codes[indices]).tolist() == [count] * 3
    for group in range(3):
        taken = np.bincount(indices[codes[indices] == group], minlength=len(codes))[codes == group]
        assert taken.max() - taken.min() <= 1           # repeats spread evenly over a group's rows
        if count >= (codes == group).sum():
            assert taken.min() >= 1                     # upsampling keeps every row
    np.testing.assert_array_equal(indices, balanced_indices(codes, target, seed=0))
    assert not np.array_equal(balanced_indices(codes, "smallest", 0), balanced_indices(codes, "smallest", 1))


def test_balanced_holdout_is_group_balanced_and_disjoint_from_training():
    codes = np.repeat([0, 1, 2], [20, 10, 6])
    kept, held = balanced_holdout(codes, 0.5, seed=3)
    assert np.bincount(codes[held]).tolist() == [3, 3, 3]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(codes)))
    with pytest.raises(SamplingError, match="strictly between 0 and 1"):
        balanced_holdout(codes, 1.0, seed=3)


# ----- one experiment's heads ------------------------------------------------------------------------

@pytest.mark.parametrize("mitigation", [{"method": "balanced", "target": "smallest"}, {"method": "group_dro"},
                                        {"method": "adversarial"}, {"method": "last_layer", "holdout": 0.5}])
def test_every_mitigation_trains_both_heads_of_an_experiment(raw, mitigation):
    params = tiny_params(raw, mitigation)
    features, train, val = tiny_split()
    fitted = fit_experiment(HeadData(params, features, train, val), params.experiments["x"])
    models, histories, summary = fitted.heads, fitted.histories, fitted.trained_on
    assert set(models) == {"age", "gender"}
    assert models["age"].output_shape == (None, 31) and models["gender"].output_shape == (None, 2)
    assert {"age", "gender"} <= set(histories)
    codes, names = group_codes(train, ["race", "gender"], params.age_bands)
    if mitigation["method"] == "balanced":
        assert summary["train_rows"] == len(names) * np.bincount(codes).min()
    if mitigation["method"] == "group_dro":
        assert set(summary["age_group_weights"]) == set(names) == {f"{r}*{g}" for r in ("black", "white", "unknown")
                                                                   for g in ("female", "male")}
    if mitigation["method"] == "last_layer":
        assert {"age_last_layer", "gender_last_layer"} <= set(histories)
        assert summary["train_rows"] + summary["holdout_rows"] == len(train)
    if mitigation["method"] == "adversarial":
        assert summary["against"] == {"age": ["race", "gender"], "gender": ["race"]}


def test_an_adversary_for_a_label_no_training_row_has_is_refused(raw):
    params = tiny_params(raw, {"method": "adversarial"})
    features, train, val = tiny_split()
    with pytest.raises(MitigationError, match="fewer than two race labels, so no adversary can predict it"):
        fit_experiment(HeadData(params, features, train.assign(race=None), val.assign(race=None)),
                       params.experiments["x"])
