"""Is everything the run will need installed? Checked in seconds by the first stage, not found after an
hour as a traceback.

Each registry entry (a backbone, a published model) and the pipeline's stages declare what they import
as `Needs`: the modules, and the pyproject extra that installs them (None: the project's own
dependencies). `check_needs` imports each module for real (a broken or stubbed install fails as it
would later) and raises one `SetupError` naming every module that failed and the one command that
installs them all. A module that imported once is remembered in the user's cache
(core/user_cache.py), keyed by the interpreter and the module's file and mtime, so that a later run
with the same install skips the import (TensorFlow's takes seconds); a reinstall changes the key.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from stages.lib.core.errors import UserError
from stages.lib.core.user_cache import cache_root

LOCK_INSTALL = "pip install --require-hashes -r requirements.lock"   # every dependency and extra, pinned
RECORD_NAME = "setup_checked.json"


@dataclass(frozen=True)
class Needs:
    """What one entry imports beyond the standard library, and where it comes from."""

    modules: tuple[str, ...] = ()
    extra: str | None = None   # the pyproject optional-dependencies key that installs them; None: the project's own
    # A further check that imports cannot make (model files inside a package); raises ImportError saying what is wrong.
    probe: Callable[[], None] | None = None


NO_NEEDS = Needs()


class SetupError(UserError, ImportError):
    """A module the run needs does not import; the message names the install command."""


def install_command(extras: Iterable[str | None]) -> str:
    """The one command that installs what the extras (None: the project's own dependencies) provide."""
    extras = set(extras)
    if None in extras or not extras:
        return LOCK_INSTALL
    return f'pip install -e ".[{",".join(sorted(extras))}]"'


def check_needs(needs: Mapping[str, Needs], *, record: Path | None = None) -> None:
    """Import every module `needs` ({who: Needs}) declares and run its probe; SetupError naming each
    failure, who needs it and the install command. `record`: the file of modules already seen to import
    (default: the user's cache)."""
    record = record if record is not None else cache_root() / RECORD_NAME
    seen = _read_record(record)
    failures: list[tuple[str, str | None]] = []   # (what failed, for whom; the extra that installs it)
    for who, need in needs.items():
        failures += [(f"{why} for {who}", need.extra) for why in _failures(need, seen)]
    _write_record(record, seen)
    if failures:
        raise SetupError(f"not installed or broken: {'; '.join(what for what, _ in failures)}; install with: "
                         f"{install_command(extra for _, extra in failures)}")


def _failures(need: Needs, seen: set[str]) -> list[str]:
    """What of `need` fails to import or probe, one line each; the modules that import join `seen`."""
    failures = []
    for module in need.modules:
        key = _install_key(module)
        if key is not None and key in seen:
            continue
        why = _import_failure(module)
        if why is not None:
            failures.append(f"{module} ({why})")
        elif key is not None:
            seen.add(key)
    if need.probe is not None:
        try:
            need.probe()
        except ImportError as error:
            failures.append(str(error).splitlines()[0])
    return failures


def _import_failure(module: str) -> str | None:
    """None when `module` imports; else the first line of why not."""
    try:
        importlib.import_module(module)
    except Exception as error:   # a broken install fails in any way at all (ImportError, OSError, AttributeError...)
        return (str(error).strip().splitlines() or [type(error).__name__])[0]
    return None


def _install_key(module: str) -> str | None:
    """The interpreter, the module's file and its mtime; None when it cannot be located without importing."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None
    return f"{sys.executable}|{module}|{spec.origin}|{Path(spec.origin).stat().st_mtime_ns}"


def _read_record(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def _write_record(path: Path, seen: set[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sorted(seen), indent=1))
    except OSError:
        pass   # a read-only home: the imports are checked again next time
