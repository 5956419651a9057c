"""Weights for a command outside the pipeline (sources/weights_cache.py): data/raw/weights when the
download stage put them all there, else the user's cache, fetched into it once, pinned and checked."""

import hashlib
from pathlib import Path

import pytest
import yaml

from stages.lib.core.params import validate
from stages.lib.sources.weights_cache import WeightsUnavailable, weights_folder

ROOT = Path(__file__).resolve().parents[2]
DATA = b"pinned weights"


@pytest.fixture()
def params(tmp_path, monkeypatch):
    """Params with one weight pinned to a local file, run from tmp_path, the cache under it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACE_BIAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "source.bin").write_bytes(DATA)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["weights"]["mine"] = {"path": str(tmp_path / "source.bin"), "sha256": hashlib.sha256(DATA).hexdigest()}
    return validate(raw)


def test_weights_the_download_stage_put_in_place_are_read_there(params, tmp_path):
    (tmp_path / params.paths.weights).mkdir(parents=True)
    (tmp_path / params.paths.weights / "mine.bin").write_bytes(DATA)
    assert weights_folder(params, ["mine"], progress=False) == params.paths.weights
    assert not (tmp_path / "cache").exists()


def test_missing_weights_are_fetched_into_the_cache_once(params, tmp_path, capsys):
    folder = weights_folder(params, ["mine"], progress=False)
    assert folder == tmp_path / "cache" / "weights" and (folder / "mine.bin").read_bytes() == DATA
    assert "fetching mine into" in capsys.readouterr().err
    (tmp_path / "source.bin").unlink()
    assert weights_folder(params, ["mine"], progress=False) == folder
    assert capsys.readouterr().err == ""


def test_a_file_that_fails_its_pin_is_one_line_naming_where_to_put_it(params, tmp_path):
    (tmp_path / "source.bin").write_bytes(b"something else")
    with pytest.raises(WeightsUnavailable) as caught:
        weights_folder(params, ["mine"], progress=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("weights.mine could not be fetched (")
    assert f"at {tmp_path / 'cache' / 'weights' / 'mine.bin'} by hand" in message and "FACE_BIAS_CACHE" in message
