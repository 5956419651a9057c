"""The user's cache folder (core/user_cache.py): FACE_BIAS_CACHE moves it, else the XDG cache, else ~/.cache."""

from pathlib import Path

from stages.lib.core.user_cache import cache_root


def test_the_environment_variable_moves_the_cache_else_xdg_else_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_BIAS_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("FACE_BIAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "face-bias-study"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "face-bias-study")
