"""Which embedding the split measures look-alikes in: whether the identity pass is needed, the status it
leaves, and whether that pass holds a backbone's very features."""

from pathlib import Path

import pytest

from stages.lib.core.params import Backbone, Clusters
from stages.lib.splitting.identity import (IDENTITY_INPUT_SIZE, STATUS_FILE, holds_features_of, needs_identity_pass,
                                           read_status, skipped_status, write_status)
from tests.backbones.test_store import make_params


def test_the_identity_pass_depends_on_the_crop_margin_alone():
    from stages.lib.splitting.identity import identity_params
    from tests.backbones.test_store import make_params

    base, other = make_params(seed=1), make_params(seed=2, fc_width=64, batch_size=3)
    assert identity_params(base).backbone == identity_params(other).backbone
    assert identity_params(base).seed == identity_params(other).seed
    assert identity_params(base).backbone.name == "dlib_resnet"


def test_only_clusters_in_dlibs_embedding_need_the_identity_pass():
    assert needs_identity_pass(Clusters(embedding="dlib_resnet", threshold=0.6))
    assert not needs_identity_pass(Clusters(embedding="features", threshold=0.4))
    assert not needs_identity_pass(None)


def test_a_skipped_pass_says_why():
    assert skipped_status(None) == {"computed": False, "embedding": None,
                                    "reason": "split.clusters is null: identities only"}
    reason = skipped_status(Clusters(embedding="features", threshold=0.4))["reason"]
    assert reason == "split.clusters.embedding is 'features': the split reads the heads' own features"


def test_the_status_comes_back_as_written_and_its_absence_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"status.json not found: run the identity stage first \(`dvc repro identity`\)"):
        read_status(tmp_path / "identity")
    status = {"computed": True, "embedding": "dlib_resnet", "reason": None}
    write_status(tmp_path / "identity", status)
    assert (tmp_path / "identity" / STATUS_FILE).is_file() and read_status(tmp_path / "identity") == status


def test_the_pass_holds_the_features_of_dlib_at_its_input_size_once_computed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = make_params()
    dlib = Backbone(name="dlib_resnet", input_size=IDENTITY_INPUT_SIZE, fc_width=7, batch_size=3)
    assert not holds_features_of(params, dlib)                                   # no pass made
    write_status(Path(params.paths.identity), skipped_status(None))
    assert not holds_features_of(params, dlib)                                   # a pass skipped
    write_status(Path(params.paths.identity), {"computed": True, "embedding": "dlib_resnet", "reason": None})
    assert holds_features_of(params, dlib)             # the heads' width and the batch size change no feature
    assert not holds_features_of(params, dlib.model_copy(update={"input_size": IDENTITY_INPUT_SIZE + 32}))
    assert not holds_features_of(params, Backbone(name="vgg_face", input_size=IDENTITY_INPUT_SIZE))
