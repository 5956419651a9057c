"""The datasets room as a whole: the adapter registry's options (datasets/__init__.py) and the full profile."""

import pytest

from stages.lib.datasets import OptionsError, parse_options
from tests.datasets.raw_files import full_profile


def test_options_errors_name_the_key():
    with pytest.raises(OptionsError) as caught:
        parse_options("imdb_wiki", "wiki", {"variant": "wikipedia", "min_score": 1})
    message = str(caught.value)
    assert "datasets.wiki.options.variant" in message and "datasets.wiki.options.min_score: unknown option" in message
    with pytest.raises(OptionsError, match=r"datasets\.utkface\.options\.version"):
        parse_options("utkface", "utkface", {"version": "cropped"})
    with pytest.raises(OptionsError, match=r"datasets\.synthetic\.options\.underrepresent\.group: .*'purple'"):
        parse_options("synthetic", "synthetic", {"underrepresent": {"group": "purple*female", "fraction": 0.5}})


def test_adapter_defaults():
    assert parse_options("fairface", "f", {}).split == "both"
    assert parse_options("imdb_wiki", "w", {"variant": "wiki"}).max_second_face_score is None
    synthetic = parse_options("synthetic", "s", None)
    assert synthetic.underrepresent.group == synthetic.hard_labels.group == "black*female"


def test_full_profile_runs_both_utkface_versions_and_a_held_out_imdb():
    """R2 from the aligned chips, R3-R14 from the in-the-wild photos (the finetune set); wiki's figures
    are in-sample for the published weights, imdb's are not, and imdb is sampled."""
    params = full_profile()
    versions = {name: params.datasets[name].options.get("version", "aligned")
                for name in params.roles.evaluate if params.datasets[name].adapter == "utkface"}
    assert sorted(versions.values()) == ["aligned", "wild"]
    assert params.datasets[params.roles.finetune].options["version"] == "wild"
    assert params.datasets[params.roles.pretrain].published_in_sample
    held_out = [name for name in params.roles.evaluate
                if params.datasets[name].adapter == "imdb_wiki" and not params.datasets[name].published_in_sample]
    assert [params.datasets[name].options["variant"] for name in held_out] == ["imdb"]
    assert params.datasets[held_out[0]].options["sample"] >= 1000


def test_an_unknown_adapter_is_named_with_the_known_ones():
    with pytest.raises(OptionsError, match=r"datasets\.celeb\.adapter: 'celeba' is not one of imdb_wiki, utkface, "
                                           r"fairface, folder, synthetic"):
        parse_options("celeba", "celeb", {})


def test_a_missing_required_option_is_named_with_the_options_the_adapter_takes():
    with pytest.raises(OptionsError) as caught:
        parse_options("imdb_wiki", "wiki", {})
    message = str(caught.value)
    assert "datasets.wiki.options.variant: required option is missing" in message
    assert "(imdb_wiki options: min_age, max_age, sample, sample_seed, variant, min_face_score" in message
