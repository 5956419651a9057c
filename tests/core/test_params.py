import copy
from pathlib import Path

import pytest
import yaml

from stages.lib.core.params import ParamsError, deep_merge, load_params, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def raw():
    with (ROOT / "params.yaml").open() as handle:
        return yaml.safe_load(handle)


def test_project_params_are_valid_for_every_profile(raw):
    for profile in ["full", *raw["profiles"]]:
        params = validate({**raw, "profile": profile})
        assert params.profile == profile
        assert params.active_datasets


def test_default_is_the_real_study(raw):
    params = load_params(ROOT / "params.yaml")
    assert params.backbone.input_size == 224
    assert params.backbone.conv_widths == [64, 128, 256, 512, 512]
    assert params.backbone.fc_width == 4096
    assert params.crop.margin == 0.4
    assert params.labels.max_age == 100
    assert set(params.experiments) >= {"published", "retrained", "oversample_x2", "oversample_x3", "reweight"}


def test_demo_profile_overrides_only_what_it_names(raw):
    demo = validate({**raw, "profile": "demo"})
    full = validate(raw)
    assert demo.backbone.input_size == 64 and demo.backbone.weights == "random"
    assert demo.roles.finetune == "synthetic"
    assert demo.crop.margin == full.crop.margin  # merged, not replaced
    assert demo.split.fractions() == full.split.fractions()  # merged: only `clusters` is replaced
    assert demo.split.clusters is None and full.split.clusters.embedding == "dlib_resnet"


def test_unknown_key_is_named(raw):
    bad = copy.deepcopy(raw)
    bad["crop"]["marign"] = 0.3
    with pytest.raises(ParamsError, match=r"crop\.marign: unknown key"):
        validate(bad)


def test_wrong_value_names_key_and_allowed_values(raw):
    bad = copy.deepcopy(raw)
    bad["crop"]["detector"] = "mtcnn"
    with pytest.raises(ParamsError, match=r"crop\.detector: 'mtcnn' is not allowed.*'yunet', 'haar' or 'ssd'"):
        validate(bad)


def test_unknown_profile_lists_the_defined_ones(raw):
    with pytest.raises(ParamsError, match=r"profile: 'fast' is not defined; allowed: full, demo"):
        validate({**raw, "profile": "fast"})


def test_role_must_name_a_dataset(raw):
    bad = copy.deepcopy(raw)
    bad["roles"]["finetune"] = "utk"
    with pytest.raises(ParamsError, match=r"roles\.finetune names dataset 'utk'"):
        validate(bad)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("split", "test", 0.5, "train \\+ val \\+ test must be 1"),
        ("backbone", "input_size", 100, "multiple of 32"),
        ("labels", "min_age", 120, "must be below max_age"),
    ],
)
def test_inconsistent_values_are_refused(raw, section, key, value, message):
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(ParamsError, match=message):
        validate(bad)


def test_age_bands_must_increase(raw):
    with pytest.raises(ParamsError, match="age_bands"):
        validate({**raw, "age_bands": [0, 30, 16]})


def test_source_needs_exactly_one_location(raw):
    bad = copy.deepcopy(raw)
    bad["datasets"]["wiki"]["sources"] = [{"url": "http://example.org/wiki.tar"}]
    with pytest.raises(ParamsError, match="https://"):
        validate(bad)
    bad["datasets"]["wiki"]["sources"] = [{}]
    with pytest.raises(ParamsError, match="exactly one of"):
        validate(bad)


def test_deep_merge_merges_dicts_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    merged = deep_merge(base, {"a": {"y": [3]}, "c": 4})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="project root"):
        load_params(tmp_path / "params.yaml")


def test_every_mitigation_names_a_twin_that_differs_from_it_only_in_the_mitigation(raw):
    for profile in ["full", *raw["profiles"]]:
        params = validate({**raw, "profile": profile})
        for name, experiment in params.experiments.items():
            if experiment.mitigation is None:
                continue
            twin = params.experiments[experiment.reference]
            assert twin.mitigation is None and twin.init == experiment.init and twin.protocol == experiment.protocol
            assert (twin.split, twin.oversample, twin.reweight) == (experiment.split, [], "none"), (profile, name)


def test_a_reference_that_differs_in_more_than_the_treatment_is_refused(raw):
    bad = copy.deepcopy(raw)
    bad["experiments"]["group_dro"]["reference"] = "retrained"
    bad["profile"] = "real-offline"          # there retrained starts from the published layer
    with pytest.raises(ParamsError, match=r"group_dro\.reference: 'retrained' is not its twin.*init 'backbone' vs 'published'"):
        validate(bad)
    bad["experiments"]["group_dro"]["reference"] = "oversample_x2"   # same init, but a treatment of its own
    with pytest.raises(ParamsError, match=r"not its twin.*the reference's own oversample"):
        validate(bad)


def test_a_reference_is_one_of_the_twins_the_evaluate_stage_is_handed(raw):
    """A twin that dvc.yaml does not hand evaluate@<experiment> would let a stale comparison stand."""
    ok = copy.deepcopy(raw)
    ok["experiments"]["other_plain"] = {"init": "backbone"}
    ok["experiments"]["balanced"]["reference"] = "other_plain"   # a twin, but not one evaluate reads
    with pytest.raises(ParamsError, match=r"balanced\.reference: 'other_plain': the evaluate stage measures against "
                                          r"retrained, plain, retrained_random only"):
        validate(ok)


def test_a_mitigation_without_a_reference_or_with_an_unknown_one_is_refused(raw):
    bad = copy.deepcopy(raw)
    del bad["experiments"]["balanced"]["reference"]
    with pytest.raises(ParamsError, match=r"experiments\.balanced: a mitigation names the experiment it is compared with"):
        validate(bad)
    bad["experiments"]["balanced"]["reference"] = "plian"
    with pytest.raises(ParamsError, match=r"balanced\.reference: 'plian' is not another experiment; known: published"):
        validate(bad)
