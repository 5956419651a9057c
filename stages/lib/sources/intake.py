"""A file's way in: checked against the sha256 it must have and the structure check that fits it, then
either refused (a file in data/raw moved aside, never deleted) or recorded in the lock file and the
receipts. What every source kind (`kinds.py`) shares; `fetch.py` says what the whole stage does.

The lock (`downloads.lock.yaml`, for the user to commit) holds each key's sha256, so a later file that
differs is refused; nothing refused is ever pinned. `data/raw/.receipts.json` remembers, per key, what
was fetched from which source, with the file's size and mtime, so a second run trusts a file whose
receipt still matches instead of hashing it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NoReturn

import yaml

from stages.lib.core.errors import UserError
from stages.lib.core.progress import Progress, progress as show_progress
from stages.lib.sources.archives import ArchiveError, Extracted, extract_archive
from stages.lib.sources.plan import Fetch, weight_key

log = logging.getLogger(__name__)

RECEIPTS_NAME = ".receipts.json"
# Receipts written since files are checked before they are locked; an older receipt is not trusted.
RECEIPT_VERSION = 2
_CHUNK = 1 << 20
_LOCK_HEADER = (
    "# sha256 of every file the download stage fetched (python -m stages.download). Commit this file:\n"
    "# a later file that differs is refused. To accept a changed source on purpose, delete its entry.\n"
)


class DownloadError(UserError, RuntimeError):
    """A source that could not be fetched; the message says what to do."""


class UnreachableError(DownloadError):
    """The server could not be reached at all (offline, DNS, connection refused): not retried."""


class RefusedError(DownloadError):
    """A file that failed a check (checksum, structure, archive): not locked, not used; the message says
    how to recover."""


class ChecksumError(RefusedError):
    """A file whose sha256 differs from the one pinned in params or recorded in the lock file."""


# A structure check of one kind of file: raises ValueError saying what is wrong with the file at the path.
FileCheck = Callable[[Path], None]


class MissingSourceError(DownloadError):
    """A local `path` source that does not exist."""


@dataclass(frozen=True)
class FetchResult:
    key: str  # path relative to the raw root (for a local archive: where it would be, had it been copied)
    source: str
    action: str  # downloaded | verified | linked | copied | up to date, plus what extraction did
    sha256: str | None = None
    size: int | None = None


# ----------------------------------------------------------------------------- hashing, lock and receipts


def file_sha256(path: Path, *, progress: bool = True) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle, byte_bar(f"sha256 {path.name}", path.stat().st_size, 0, progress) as bar:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            bar.update(len(chunk))
    return hasher.hexdigest()


def read_lock(path: Path) -> dict[str, dict]:
    """The lock file's entries (key -> {source, sha256, size}); empty when the file does not exist."""
    if not path.exists():
        return {}
    try:
        entries = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        entries = None  # a merge conflict or a hand edit gone wrong: refused below, naming the fix
    if not isinstance(entries, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("sha256"), str) for entry in entries.values()
    ):
        raise DownloadError(
            f"{path} is not a lock file this stage wrote (expected `key: {{source, sha256, size}}` entries); "
            "restore it from git, or delete it to record every file's sha256 afresh"
        )
    return entries


def write_lock(path: Path, entries: dict[str, dict]) -> None:
    body = yaml.safe_dump({key: entries[key] for key in sorted(entries)}, sort_keys=False) if entries else "{}\n"
    _atomic_write(path, _LOCK_HEADER + body)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def byte_bar(desc: str, total: int | None, initial: int, progress: bool) -> Progress:
    """Bytes done: a bar on a terminal, a line now and then in a log; nothing when `progress` is False."""
    return show_progress(total, desc, "B", show=None if progress else False, initial=initial)



def _read_receipts(path: Path) -> dict[str, dict]:
    """The receipts are only a cache of work done: an unreadable file means everything is re-checked."""
    if not path.exists():
        return {}
    try:
        receipts = json.loads(path.read_text())
    except ValueError:
        log.warning("%s is unreadable; every file will be checked again", path)
        return {}
    return receipts if isinstance(receipts, dict) else {}



@dataclass(frozen=True)
class Expected:
    sha256: str
    where: str  # where the expected value is written
    change: str  # how to accept a different file on purpose


class Intake:
    """The lock, the receipts and the checks of files fetched into `raw_root`, checked against and
    recorded into `lock_path`.

    Relative local paths are resolved against `base_dir` (the project root). `checks` maps a weight's
    name to its structure check, run on every file of that weight whose sha256 params do not pin.
    """

    def __init__(
        self, raw_root: Path, lock_path: Path, base_dir: Path = Path("."), *,
        timeout: float = 15.0, attempts: int = 4, backoff: float = 2.0, progress: bool = True,
        checks: Mapping[str, FileCheck] | None = None,
    ):
        self.checks = dict(checks or {})
        self.raw_root = Path(raw_root)
        self.lock_path = Path(lock_path)
        self.base_dir = Path(base_dir)
        self.http = {"timeout": timeout, "attempts": attempts, "backoff": backoff, "progress": progress}
        self.progress = progress
        self.lock = read_lock(self.lock_path)
        self.receipts_path = self.raw_root / RECEIPTS_NAME
        self.receipts = _read_receipts(self.receipts_path)

    def key_and_target(self, item: Fetch) -> tuple[str, Path]:
        """The key of a file fetched by name (a URL's, a package member's) and where it lands."""
        key = weight_key(item.name, item.file_name) if item.weight else f"{item.name}/{item.file_name}"
        return key, self.raw_root / key

    def found_in_place(self, item: Fetch, key: str, target: Path) -> tuple[str, int] | None:
        """(sha256, size) of a file already at `target` that no other source's receipt claims (put there
        by hand, or its receipt lost), to be verified as it is; None where it must be fetched."""
        receipt = self.receipts.get(key)
        if target.exists() and (receipt is None or receipt["source"] == item.source):
            return file_sha256(target, progress=self.progress), target.stat().st_size
        return None

    def expected(self, item: Fetch, key: str) -> Expected | None:
        if item.sha256:
            return Expected(item.sha256, f"{item.params_key}.sha256 in params.yaml",
                            f"update {item.params_key}.sha256 in params.yaml")
        entry = self.lock.get(key)
        if entry:
            return Expected(entry["sha256"], f"the entry {key!r} of {self.lock_path} (from {entry.get('source')})",
                            f"delete the entry {key!r} from {self.lock_path}")
        return None

    def refuse_unless_valid(
        self, item: Fetch, key: str, path: Path, *, sha256: str, expected: Expected | None, ours: bool,
    ) -> None:
        """Raise RefusedError unless the file has the expected sha256 and passes its structure check.

        `ours`: the file lies in raw_root (downloaded or put there by hand) and is moved aside when
        refused; a user's local file is left where it is."""
        self._check_sha256(item, path, sha256, expected, ours=ours)
        check = self.checks.get(item.name) if item.weight and not item.sha256 else None
        if check is None:
            return  # a checksum pinned in params is the stronger check
        try:
            check(path)
        except ValueError as exc:
            self._refuse(item, key, path, sha256=sha256, ours=ours, why=f"{path} (from {item.source}) is not a usable {item.name} "
                                                         f"file: {exc}")

    def extract(self, item: Fetch, key: str, archive: Path, *, target: Path, sha256: str, ours: bool) -> Extracted:
        """Check the archive's listing (safe, complete), then extract it; RefusedError when it fails."""
        try:
            return extract_archive(archive, target, progress=self.progress)
        except ArchiveError as exc:
            self._refuse(item, key, archive, sha256=sha256, ours=ours, why=str(exc))

    def _refuse(self, item: Fetch, key: str, path: Path, *, sha256: str, ours: bool, why: str) -> NoReturn:
        """Raise RefusedError for a file that failed a check, saying exactly how to recover. The lock keeps
        its entries, but one that pins this very file (an older version locked files before checking
        them) is removed, or the good file that follows would be refused as a mismatch."""
        rerun = f"`python -m stages.download --only {item.name}` (or `dvc repro download`)"
        if self.lock.get(key, {}).get("sha256") == sha256:
            del self.lock[key]
            write_lock(self.lock_path, self.lock)
            lock = f"Its entry {key!r} in {self.lock_path}, which pinned this very file, was removed."
        else:
            lock = f"{self.lock_path} was left as it was."
        if ours:
            aside = path.with_name(f"{path.name}.bad-{sha256[:8]}")
            os.replace(path, aside)
            how = (f"run {rerun} to fetch it again" if item.url is not None or item.package is not None else
                   f"check {item.source}, then run {rerun}")
            fix = (f"It was moved aside to {aside} (not deleted). {lock} To recover: {how}; or put a good copy at "
                   f"{path.resolve()} and run that.")
        else:
            hint = f" {item.hint}" if item.hint else ""
            fix = (f"It was left where it is. {lock} To recover: replace {path.resolve()} with a good copy "
                   f"(or point {item.params_key}.path in params.yaml at one), then run {rerun}.{hint}")
        raise RefusedError(f"{why}\n{fix}")

    def _check_sha256(self, item: Fetch, path: Path, sha256: str, expected: Expected | None, *, ours: bool) -> None:
        """Raise ChecksumError when `sha256` is not the expected one; a file in raw_root is moved aside first."""
        if expected is None or sha256 == expected.sha256:
            return
        if ours:
            aside = path.with_name(f"{path.name}.bad-{sha256[:8]}")
            os.replace(path, aside)
            kept = f"It was moved aside to {aside} (not deleted)."
            otherwise = f"otherwise the file is corrupt or was tampered with: delete {aside} and run again to re-fetch it"
        else:
            kept = "It was left where it is."
            otherwise = "otherwise put the original file back"
        raise ChecksumError(
            f"checksum mismatch for {path} (from {item.source}):\n"
            f"  expected sha256 {expected.sha256} ({expected.where})\n"
            f"  got      sha256 {sha256}\n"
            f"{kept} If the source changed on purpose, {expected.change} and run again; {otherwise}."
        )

    def is_current(
        self, key: str, source: str, stat_path: Path, expected: Expected | None, *,
        extracted_in: Path | None = None, target: Path | None = None,
    ) -> bool:
        """Whether the receipt says `stat_path` was fetched from `source`, unchanged since, and still in place."""
        receipt = self.receipts.get(key)
        if not receipt or receipt.get("source") != source or receipt.get("version") != RECEIPT_VERSION:
            return False
        if not stat_path.exists():
            return False
        stat = stat_path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (receipt["size"], receipt["mtime_ns"]):
            return False
        if expected is not None and receipt["sha256"] != expected.sha256:
            return False
        if extracted_in is not None and not all(os.path.lexists(extracted_in / name) for name in receipt["entries"] or []):
            return False
        return target is None or target.exists()

    def up_to_date(self, key: str, source: str) -> FetchResult:
        receipt = self.receipts[key]
        result = FetchResult(key, source, "up to date", receipt["sha256"], receipt["size"])
        self._record_lock(result)  # restores a deleted lock entry
        return result

    def record(self, result: FetchResult, *, stat_path: Path, entries: list[str] | None) -> FetchResult:
        """Lock and remember a file that passed every check (and was extracted or linked); returns `result`."""
        self._record_lock(result)
        stat = stat_path.stat()
        self.receipts[result.key] = {
            "source": result.source, "sha256": result.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "entries": entries, "version": RECEIPT_VERSION,
        }
        self.save_receipts()
        return result

    def _record_lock(self, result: FetchResult) -> None:
        entry = {"source": result.source, "sha256": result.sha256, "size": result.size}
        if self.lock.get(result.key) != entry:
            self.lock[result.key] = entry
            write_lock(self.lock_path, self.lock)

    def save_receipts(self) -> None:
        _atomic_write(self.receipts_path, json.dumps(self.receipts, indent=1, sort_keys=True))
