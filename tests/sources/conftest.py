"""Fixtures shared by the sources tests."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def raw_params():
    with (ROOT / "params.yaml").open() as handle:
        return yaml.safe_load(handle)
