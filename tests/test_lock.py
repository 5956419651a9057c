"""requirements.lock (exact versions with hashes, made by `.ci/lock` with uv) agrees with pyproject.toml:
every requirement, extras included, is met by its locked pin, and nothing pyproject dropped is still
locked as the project's own. Offline: it reads the two files only."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11+")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "face-bias-study"
# CI's platform, the one the lock is made for (.ci/lock: Linux x86-64, CPython 3.11)
MARKERS = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
VIA_PROJECT = re.compile(rf"\s*#\s*(?:via\s+)?{PROJECT}\b")


def pyproject_requirements(text: str) -> list[Requirement]:
    project = tomllib.loads(text)["project"]
    extras = project.get("optional-dependencies", {}).values()
    return [Requirement(line) for line in [*project.get("dependencies", []), *(r for extra in extras for r in extra)]]


def parse_lock(text: str) -> tuple[dict[str, str], set[str]]:
    """{name: pinned version} and the names the lock says the project itself asks for (`# via` it)."""
    pins, direct, current = {}, set(), None
    for line in text.splitlines():
        pinned = PIN.match(line)
        if pinned:
            current = canonicalize_name(pinned.group(1))
            pins[current] = pinned.group(2)
        elif current and VIA_PROJECT.match(line):
            direct.add(current)
    return pins, direct


def disagreements(pyproject: str, lock: str) -> list[str]:
    pins, direct = parse_lock(lock)
    problems, wanted = [], set()
    for requirement in pyproject_requirements(pyproject):
        if requirement.marker is not None and not requirement.marker.evaluate({**MARKERS, "extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        wanted.add(name)
        if name not in pins:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement} is not met by the locked {name}=={pins[name]}")
    problems += [f"{name}=={pins[name]} is locked as the project's but pyproject no longer asks for it"
                 for name in sorted(direct - wanted)]
    return problems


def test_the_lock_meets_pyproject_and_holds_nothing_it_dropped():
    problems = disagreements((ROOT / "pyproject.toml").read_text(), (ROOT / "requirements.lock").read_text())
    assert not problems, "requirements.lock is stale; refresh it with `.ci/lock`:\n" + "\n".join(problems)


def test_every_locked_pin_carries_a_hash():
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert blocks and all("--hash=sha256:" in block for block in blocks if PIN.match(block))


PYPROJECT = """
[project]
dependencies = ["numpy>=1.26", "dvc>=3.50"]
[project.optional-dependencies]
test = ["pytest>=8"]
"""
LOCK = """numpy==2.4.6 \\
    --hash=sha256:aa
    # via face-bias-study (pyproject.toml)
dvc==3.67.1 \\
    --hash=sha256:bb
    # via face-bias-study (pyproject.toml)
pytest==8.3.0 \\
    --hash=sha256:cc
    # via face-bias-study (pyproject.toml)
"""


def test_a_stale_lock_is_caught():
    assert disagreements(PYPROJECT, LOCK) == []
    assert disagreements(PYPROJECT.replace("pytest>=8", "pytest>=9"), LOCK) == [
        "pytest>=9 is not met by the locked pytest==8.3.0"]
    assert disagreements(PYPROJECT.replace('test = ["pytest>=8"]', 'test = ["pytest>=8", "onnxruntime>=1.17"]'),
                         LOCK) == ["onnxruntime>=1.17 is not in the lock"]
    assert disagreements(PYPROJECT.replace(', "dvc>=3.50"', ""), LOCK) == [
        "dvc==3.67.1 is locked as the project's but pyproject no longer asks for it"]
