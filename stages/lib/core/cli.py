"""How every stage and command ends: a user's mistake (bad params, a missing input, an unknown name, a
file that is not what it should be) is one line on stderr, `<stage>: <what is wrong and the fix>`,
and exit code 2; never a traceback. Errors a user can cause derive from `UserError` (ParamsError,
SchemaError, FeaturesError, ...); a missing file is Python's FileNotFoundError, whose message names
the command that makes it."""

from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A mistake the user can fix; its message says what is wrong and how to fix it."""


USER_MISTAKES = (UserError, FileNotFoundError)


def run_stage(name: str, body: Callable[[], int | None]) -> int:
    """Run a stage's `body`; its exit code (0 when it returns None), or 2 with one line for a user mistake."""
    try:
        code = body()
    except USER_MISTAKES as mistake:
        print(f"{name}: {mistake}", file=sys.stderr)
        return 2
    return 0 if code is None else int(code)
