"""The mistakes a user can make and fix, at the bottom of the house: every room raises them and
`core/cli.run_stage` turns them into one line and exit code 2. Imports nothing from the project, so
any module may import it without a circle."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; its message says what is wrong and how to fix it."""


USER_MISTAKES = (UserError, FileNotFoundError)
