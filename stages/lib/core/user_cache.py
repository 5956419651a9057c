"""The user's cache folder: what a command fetches or checks once for every project on the machine
(published models' weights for `stages.predict --model`, the set-up check's record), outside any
DVC-tracked folder, so that using it never makes the pipeline re-run a stage.

`$FACE_BIAS_CACHE` when set, else `$XDG_CACHE_HOME/face-bias-study`, else `~/.cache/face-bias-study`.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FACE_BIAS_CACHE"
CACHE_NAME = "face-bias-study"


def cache_root() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / CACHE_NAME
