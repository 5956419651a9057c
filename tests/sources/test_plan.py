"""What the download stage fetches (plan.py): the active datasets' sources and the weights the run needs."""

import copy

import pytest

from stages.lib.backbones.registry import describe
from stages.lib.core.params import ParamsError, validate
from stages.lib.sources.plan import needed_weights, plan_fetches, weight_path


def needed(params):
    return needed_weights(params, describe(params.backbone).weights)


def plan(params, **kwargs):
    return plan_fetches(params, describe(params.backbone).weights, **kwargs)


def with_changes(raw, merge=True, **sections):
    """Params with some sections changed: merged into params.yaml's, or replacing them."""
    changed = copy.deepcopy(raw)
    for section, values in sections.items():
        changed[section] = {**changed[section], **values} if merge else values
    return validate(changed)


def test_needed_weights_follow_the_detector_and_backbone_not_the_experiments(raw_params):
    assert needed(validate(raw_params)) == ["yunet", "vgg_face", "age", "gender"]
    assert needed(with_changes(raw_params, crop={"detector": "haar"})) == ["vgg_face", "age", "gender"]
    assert needed(with_changes(raw_params, backbone={"weights": "random"})) == ["yunet"]
    assert needed(with_changes(raw_params, backbone={"name": "dlib_resnet"})) == ["yunet"]
    # editing experiments never changes what is fetched (so it never re-runs the download stage)
    no_published = {k: v for k, v in raw_params["experiments"].items() if v["init"] != "published"}
    assert needed(with_changes(raw_params, merge=False, experiments=no_published)) == needed(validate(raw_params))


def test_only_the_active_datasets_are_planned(raw_params):
    fetches = plan(validate(raw_params))
    assert [f.params_key for f in fetches] == [
        "datasets.wiki.sources[0]", "datasets.utkface_wild.sources[0]", "datasets.imdb.sources[0]",
        "datasets.utkface.sources[0]", "weights.yunet", "weights.vgg_face", "weights.age", "weights.gender",
    ]
    demo = plan(validate({**raw_params, "profile": "demo"}))
    assert [f.params_key for f in demo] == []  # synthetic has no sources; its faces carry boxes (haar, no download)


def test_only_picks_named_sources_and_rejects_unknown_names(raw_params):
    params = validate(raw_params)
    assert [f.params_key for f in plan(params, only=["yunet", "fairface"])] == [
        "datasets.fairface.sources[0]", "weights.yunet",
    ]
    with pytest.raises(ParamsError, match=r"--only nope: .*known: age, .*fairface"):
        plan(params, only=["nope"])


def test_a_needed_weight_missing_from_params_is_named(raw_params):
    weights = {k: v for k, v in raw_params["weights"].items() if k != "age"}
    with pytest.raises(ParamsError, match=r"weights\.age: required key is missing"):
        plan(with_changes(raw_params, merge=False, weights=weights))


def test_two_sources_with_one_file_name_are_refused(raw_params):
    datasets = copy.deepcopy(raw_params["datasets"])
    datasets["wiki"]["sources"].append({"url": "https://mirror.example.org/wiki_crop.tar"})
    with pytest.raises(ParamsError, match=r"datasets\.wiki\.sources\[1\]: .*'wiki_crop.tar'.*datasets\.wiki\.sources\[0\]"):
        plan(with_changes(raw_params, merge=False, datasets=datasets))


def test_weight_paths_take_the_extension_of_their_source(raw_params):
    params = validate(raw_params)
    assert weight_path(params, "vgg_face") == params.paths.raw / "weights/vgg_face.h5"
    assert weight_path(params, "yunet") == params.paths.raw / "weights/yunet.onnx"
