"""The user's mistakes (core/errors.py): one family, caught by run_stage, importable from anywhere."""

import ast
from pathlib import Path

import pytest

from stages.lib.core import errors
from stages.lib.core.errors import USER_MISTAKES, UserError
from stages.lib.core.labels import LabelError
from stages.lib.core.params import ParamsError
from stages.lib.core.schema import SchemaError


@pytest.mark.parametrize("error", [ParamsError, SchemaError, LabelError])
def test_the_rooms_errors_are_user_mistakes(error):
    assert issubclass(error, UserError) and isinstance(error("x"), USER_MISTAKES)


def test_a_missing_file_is_a_user_mistake_and_a_bug_is_not():
    assert isinstance(FileNotFoundError("features.npy"), USER_MISTAKES)
    assert not isinstance(KeyError("x"), USER_MISTAKES)


def test_the_errors_module_imports_nothing_from_the_project():
    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("stages")]
