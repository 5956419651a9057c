"""How every stage and command ends: a user's mistake (bad params, a missing input, an unknown name, a
file that is not what it should be) is one line on stderr, `<stage>: <what is wrong and the fix>`,
and exit code 2; never a traceback. Errors a user can cause derive from `core/errors.UserError` (ParamsError,
SchemaError, FeaturesError, ...); a missing file is Python's FileNotFoundError, whose message names
the command that makes it. A DVC stage's successful run is timed (core/timing.py)."""

from __future__ import annotations

import sys
from typing import Callable

from stages.lib.core.errors import USER_MISTAKES
from stages.lib.core.timing import start_timing


def say_mistake(name: str, mistake: BaseException) -> int:
    """The one line a user's mistake gets on stderr; returns the exit code, 2."""
    print(f"{name}: {mistake}", file=sys.stderr)
    return 2


def run_stage(stage: str, body: Callable[[], int | None], *, key: str | None = None) -> int:
    """Run a DVC stage's `body` (it returns how many faces it processed, or None) and time it: exit code
    0, or 2 with one line for a user's mistake (`stage@key` names a foreach stage's run)."""
    timing = start_timing(stage, key=key)
    try:
        faces = body()
    except USER_MISTAKES as mistake:
        return say_mistake(timing.name, mistake)
    timing.finish(faces=faces)
    return 0
