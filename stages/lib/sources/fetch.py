"""Fetching the planned sources (`plan.py`) into `data/raw/`: HTTP with resume, checks, the lock.

Each source is an https URL or a local file, folder or archive:

- a URL is downloaded with urllib to `<file>.part` (resumed with an HTTP Range request when a
  `.part` is already there, retried with backoff on server errors and dropped transfers, but not on
  DNS failures or refused connections: offline, it fails at once: `transfer.py`), then checked and renamed;
- a file that ships only in a package is taken out of it (`packages.py`);
- a local file is hard-linked (copied across file systems) into place; a local folder likewise,
  file by file; archives (.tar, .tar.gz, .tgz, .zip) are extracted safely (`archives.py`).

Each kind of source is one entry of `kinds.SOURCE_KINDS`; the checks, the lock and the receipts they
share are `intake.py`'s.

Checks, then the lock: a sha256 pinned in params is enforced. Otherwise a file must first pass the
checks that fit it: an archive's listing must be safe and complete (it is extracted), a weight file
must pass the structure check the stage gives for its name (an HDF5 with the expected layers, an
ONNX model that loads); and a file that also matches its lock entry, or has none yet, is accepted.
Only then is its sha256 recorded in the lock file (`downloads.lock.yaml`, for the user to commit),
so a later file that differs is refused, and nothing refused is ever pinned. A file in data/raw that
fails a check is moved aside to `<file>.bad-<sha8>`, never deleted or accepted; a local file that
fails is left where the user put it; either way the message says how to recover. Archives inside a
local folder are checked and locked like files; the folder's loose files are linked as they are.

Idempotence: `data/raw/.receipts.json` remembers, per key, what was fetched from which source, with
the file's size and mtime. A second run trusts a file whose receipt still matches (and whose
extracted entries still exist) instead of hashing or downloading it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stages.lib.sources.archives import ArchiveError
from stages.lib.sources.intake import (DownloadError, FetchResult, Intake, MissingSourceError, UnreachableError,
                                       write_lock)
from stages.lib.sources.kinds import SOURCE_KINDS
from stages.lib.sources.plan import Fetch


@dataclass
class FetchReport:
    results: list[FetchResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # where each file absent or unreachable belongs


def format_summary(report: FetchReport) -> str:
    """A few lines for the terminal: one per fetched file, then every error in full."""
    lines = [f"download: {len(report.results)} fetched, {len(report.errors)} failed"]
    width = max((len(result.key) for result in report.results), default=0)
    for result in report.results:
        size = "" if result.size is None else _human_size(result.size)
        digest = f"sha256 {result.sha256[:12]}" if result.sha256 else ""
        lines.append(f"  {result.key:<{width}}  {result.action:<32} {size:>10}  {digest}".rstrip())
    for number, error in enumerate(report.errors, 1):
        lines.append(f"\nFAILED ({number}/{len(report.errors)}): {error}")
    return "\n".join(lines)


def format_missing(missing: list[str], profiles: list[str]) -> str:
    """The one line a run without its inputs ends in: what is missing, and the profiles that need none
    of it (a first `dvc repro` on a fresh clone, before UTKFace is put in by hand)."""
    instead = " or ".join(f"`dvc exp run -S profile={name}`" for name in profiles)
    return (f"download: {len(missing)} input(s) missing or unreachable: {', '.join(missing)}; put them there "
            "(README: the main job) and re-run" + (f", or run a profile without them: {instead}" if instead else ""))


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class Fetcher(Intake):
    """Fetches `Fetch` items into `raw_root`, each by the entry of its kind, checking against and
    recording into `lock_path` (see `Intake` for the options)."""

    def fetch_all(self, items: list[Fetch]) -> FetchReport:
        """Fetch every item; one failure does not stop the others, so one run lists every missing file."""
        self.raw_root.mkdir(parents=True, exist_ok=True)
        report = FetchReport()
        for item in items:
            try:
                report.results += self.fetch(item)
            except (MissingSourceError, UnreachableError) as exc:
                report.errors.append(str(exc))
                report.missing.append(SOURCE_KINDS[item.kind].belongs_at(self, item))
            except (DownloadError, ArchiveError) as exc:
                report.errors.append(str(exc))
        if not self.lock_path.exists():
            write_lock(self.lock_path, self.lock)  # an output of the stage even when nothing was fetched
        return report

    def fetch(self, item: Fetch) -> list[FetchResult]:
        return SOURCE_KINDS[item.kind].fetch(self, item)
