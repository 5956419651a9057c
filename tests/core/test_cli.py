"""How every stage ends (core/cli.py): a user's mistake is one line on stderr and exit code 2, a real
bug raises with its traceback, a successful run is timed."""

import json
from pathlib import Path

import pandas as pd
import pytest

from stages.lib.core.cli import run_stage, say_mistake
from stages.lib.core.errors import UserError
from stages.lib.core.schema import require_columns

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A project folder with the real params.yaml, so that a successful run writes its timing record."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def timings(project: Path) -> list[str]:
    return sorted(path.name for path in project.rglob("*.json"))


def test_a_user_mistake_is_one_line_on_stderr_and_exit_2_and_nothing_is_timed(project, capsys):
    def body():
        raise UserError("params.yaml: train.epochs must be positive; write a number above 0")

    assert run_stage("train", body, key="retrained") == 2
    captured = capsys.readouterr()
    assert captured.err == "train@retrained: params.yaml: train.epochs must be positive; write a number above 0\n"
    assert captured.out == "" and timings(project) == []


def missing_file():
    raise FileNotFoundError("data/x.parquet not found: run `dvc repro crop`")


def bad_table():
    require_columns(pd.DataFrame({"id": [1]}), ["id", "age"], "manifest data/m.parquet")


@pytest.mark.parametrize("body, said", [(missing_file, "data/x.parquet not found: run `dvc repro crop`"),
                                        (bad_table, "manifest data/m.parquet lacks columns ['age']; it has ['id']")])
def test_a_missing_file_or_a_bad_table_is_a_user_mistake_too(project, capsys, body, said):
    assert run_stage("split", body) == 2
    assert capsys.readouterr().err == f"split: {said}\n"


def test_a_real_bug_is_not_hidden_as_a_user_mistake(project, capsys):
    def body():
        return {}["missing"]

    with pytest.raises(KeyError):
        run_stage("evaluate", body)
    assert capsys.readouterr().err == "" and timings(project) == []


def test_a_successful_run_is_exit_0_and_records_the_faces_it_processed(project, capsys):
    assert run_stage("features", lambda: 12, key="vgg") == 0
    [record] = [json.loads(path.read_text()) for path in project.rglob("features@vgg.json")]
    assert record["stage"] == "features@vgg" and record["faces"] == 12
    assert capsys.readouterr().err == ""


def test_say_mistake_prints_the_named_line_and_answers_2(capsys):
    assert say_mistake("predict", ValueError("photo.jpg: not an image")) == 2
    assert capsys.readouterr().err == "predict: photo.jpg: not an image\n"
