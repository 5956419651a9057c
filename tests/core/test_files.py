"""The one way JSON files are written (core/files.py): the exact bytes, and NaN refused."""

import json

import pytest

from stages.lib.core.files import json_text, write_json


def test_json_is_indented_by_two_keeps_key_order_and_ends_in_a_newline(tmp_path):
    path = tmp_path / "new" / "folder" / "metrics.json"
    write_json({"zeta": 1, "alpha": [1, 2.5], "nested": {"b": None, "a": True}}, path)
    assert path.read_bytes() == (b'{\n  "zeta": 1,\n  "alpha": [\n    1,\n    2.5\n  ],\n'
                                 b'  "nested": {\n    "b": null,\n    "a": true\n  }\n}\n')


def test_nan_and_infinity_are_refused_and_nothing_is_written(tmp_path):
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            write_json({"mae": value}, tmp_path / "bad.json")
        assert not (tmp_path / "bad.json").exists()


def test_the_text_reads_back_as_the_same_data():
    data = {"n": 3, "groups": ["white", "black"], "ci": [0.1, 0.2]}
    assert json.loads(json_text(data)) == data and json_text([]) == "[]\n"
