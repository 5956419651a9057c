"""Every stage ends the same way on a user's mistake: one line on stderr naming the fix, exit code 2."""

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = {  # stage module -> its arguments
    "params": [], "download": ["--no-progress"], "prepare": [], "crop": [], "features": ["--no-progress"],
    "identity": ["--no-progress"], "measure": ["--no-progress"], "split": [], "pretrain": None, "train": ["retrained"], "evaluate": ["retrained"],
    "compare": None, "probe": None, "report": [], "audit_models": [],
}


@pytest.fixture()
def project(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(stage: str, args) -> int:
    main = importlib.import_module(f"stages.{stage}").main
    return main() if args is None else main(args)


def one_line(err: str, stage: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{stage}") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_misspelt_params_key_is_one_line_and_exit_2_in_every_stage(stage, project, capsys):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["trian"] = raw.pop("train")
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    assert run(stage, STAGES[stage]) == 2
    assert "trian: unknown key" in one_line(capsys.readouterr().err, stage)


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_an_unknown_experiment_is_one_line_naming_the_known_ones(stage, project, capsys):
    assert run(stage, ["retrianed"]) == 2
    assert "'retrianed' is not in params.yaml's experiments; known: published, retrained" in one_line(
        capsys.readouterr().err, stage)


@pytest.mark.parametrize("stage, fix", [("features", "crop"), ("split", "crop"), ("pretrain", "features"),
                                        ("train", "features"), ("evaluate", "train"), ("probe", "split")])
def test_a_missing_input_is_one_line_naming_the_stage_that_makes_it(stage, fix, project, capsys):
    assert run(stage, STAGES[stage]) == 2
    assert "dvc repro" in one_line(capsys.readouterr().err, stage)
