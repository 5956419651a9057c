"""Where the project is when DVC runs a stage in one of its experiment copies (core/workspace.py)."""

from pathlib import Path

import pytest

from stages.lib.core.workspace import project_root


@pytest.mark.parametrize("cwd, root", [
    ("/home/me/study/.dvc/tmp/exps/tmp3k2j9x", "/home/me/study"),      # dvc exp run --queue / --temp
    ("/home/me/study", "/home/me/study"),
    ("/home/me/.dvc/tmp/exps", "/home/me/.dvc/tmp/exps"),              # DVC's folder itself is no copy
])
def test_sources_resolve_against_the_project_an_experiment_copy_was_made_from(cwd, root):
    assert project_root(Path(cwd)) == Path(root)


def test_a_folder_inside_an_experiment_copy_belongs_to_the_project_it_was_copied_from():
    assert project_root(Path("/home/me/study/.dvc/tmp/exps/tmp3k2j9x/data/raw")) == Path("/home/me/study")


def test_a_folder_merely_named_like_part_of_the_copies_path_is_no_copy():
    for cwd in ("/home/me/tmp/exps/run1", "/home/me/.dvc/exps/tmp/run1", "/home/me/.dvc/tmp/run1/exps"):
        assert project_root(Path(cwd)) == Path(cwd)


def test_outside_a_copy_the_working_directory_is_returned_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert project_root(Path(".")) == Path(".")
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpq1"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert project_root(Path(".")) == tmp_path                     # a relative cwd is resolved first
