"""The `params` stage: checks params.yaml whole and writes what the stages read, the profile applied."""

from pathlib import Path

import yaml

from stages import params as stage

ROOT = Path(__file__).resolve().parents[2]


def project(tmp_path, monkeypatch, **changes) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in changes.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return raw


def test_writes_the_active_profile_applied_without_profiles_or_paths(tmp_path, monkeypatch):
    raw = project(tmp_path, monkeypatch, profile="demo")
    assert stage.main([]) == 0
    resolved = yaml.safe_load((tmp_path / raw["paths"]["params"]).read_text())
    assert resolved["backbone"]["fc_width"] == raw["profiles"]["demo"]["backbone"]["fc_width"]
    assert resolved["roles"] == raw["profiles"]["demo"]["roles"]
    assert "profiles" not in resolved and "paths" not in resolved


def test_an_unknown_backbone_fails_first_in_one_line(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, backbone={"name": "resnet_nope"})
    assert stage.main([]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "resnet_nope" in error and "allowed: " in error


def test_an_unknown_compared_backbone_is_named_by_its_label(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, compare_backbones={"mine": {"name": "resnet_nope"}})
    assert stage.main([]) == 2
    assert "compare_backbones.mine.name" in capsys.readouterr().err


def test_a_profile_cannot_move_files_or_add_experiments(tmp_path, monkeypatch, capsys):
    raw = project(tmp_path, monkeypatch, profile="demo")
    raw["profiles"]["demo"]["paths"] = {"crops": "elsewhere"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert stage.main([]) == 2 and "cannot move files" in capsys.readouterr().err
    del raw["profiles"]["demo"]["paths"]
    raw["profiles"]["demo"]["experiments"] = {"new_one": {"init": "random"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert stage.main([]) == 2 and "not add one" in capsys.readouterr().err
