"""The one way JSON files are written: indented, strict (NaN is refused: it is not JSON), newline-ended."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(data, path: str | Path) -> None:
    """`data` as indented JSON at `path` (its folder made if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(data))


def json_text(data) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"
