"""The `params` stage: checks params.yaml whole and writes what the stages read, the profile applied."""

import os
import subprocess
import sys
import time
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


def test_a_stubbed_optional_module_stops_the_real_profile_in_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACE_BIAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # as an uninstalled or stubbed package imports
    project(tmp_path, monkeypatch, profile="real-offline")
    assert stage.main([]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("params: not installed or broken: onnxruntime")
    assert "for audit_models dlib_cydral" in error and error.rstrip().endswith('install with: pip install -e ".[audit]"')
    assert not (tmp_path / raw_paths()["params"]).exists()


def raw_paths() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]


def test_a_broken_install_on_the_path_stops_the_stage_within_seconds(tmp_path, monkeypatch):
    """As a user would meet it: `python -m stages.params` with a broken onnxruntime first on the path."""
    fake = tmp_path / "site" / "onnxruntime"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libonnxruntime.so: cannot open shared object file')\n")
    project(tmp_path, monkeypatch, profile="real-offline")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
           "FACE_BIAS_CACHE": str(tmp_path / "cache")}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "stages.params"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "onnxruntime (libonnxruntime.so: cannot open shared object file)" in line
    assert line.endswith('install with: pip install -e ".[audit]"')
    assert time.perf_counter() - started < 60   # seconds, not the hour the audit stage would come after


def test_real_photos_need_the_landmarks_of_the_measure_stage_and_drawn_faces_do_not(tmp_path, monkeypatch):
    project(tmp_path, monkeypatch, profile="real-offline")
    real = stage.profile_needs(stage.load_params())
    assert real["the measure stage's landmarks"].extra == "dlib"
    project(tmp_path, monkeypatch, profile="demo")
    assert "the measure stage's landmarks" not in stage.profile_needs(stage.load_params())


def test_the_committed_resolved_params_follow_params_yaml(monkeypatch):
    """data/params.yaml is committed (a fresh clone's `dvc exp show` compares a run against it): it must
    be what the stage writes from the committed params.yaml, or every key it lacks counts as changed."""
    from stages.lib.core.params import load_params, resolved

    monkeypatch.chdir(ROOT)
    params = load_params()
    committed = yaml.safe_load((ROOT / raw_paths()["params"]).read_text())
    assert committed == yaml.safe_load(yaml.safe_dump(resolved(params), sort_keys=False)), \
        "data/params.yaml is stale: run `python -m stages.params` and commit it"
