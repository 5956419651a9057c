"""Fixtures of the heads' tests: the project's own params.yaml, as a dict."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def raw():
    with (ROOT / "params.yaml").open() as handle:
        return yaml.safe_load(handle)

