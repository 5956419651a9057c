"""Safe extraction of the archives datasets ship in (.tar, .tar.gz, .tgz, .zip).

Every member is checked before anything is written, so a hostile archive fails with
`UnsafeArchiveError` (naming the archive and the member) and leaves the target untouched, and a
truncated or corrupt one with `ArchiveError` (the whole listing is read first: a tar must reach its
end-of-archive marker, a compressed stream its end):
- absolute names (`/etc/x`, `C:\\x`) and names with a `..` component are refused;
- symlinks and hard links must resolve inside the target. Links are resolved through the
  archive's own symlinks, so a chain such as `a -> ..` then `b -> a/..` is caught;
- device files, fifos and sockets are refused.
Tar members are then extracted with the standard library's `data` filter (PEP 706), which re-checks
every path against what is already on disk. Zip members get the same on-disk check here.

Files already present at a member's path are unlinked before being written, so a hard link in the
target (the download stage hard-links local copies) never lets extraction write into the user's file.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stages.lib.core.errors import UserError
from stages.lib.core.progress import Progress, progress as show_progress

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_MAX_LINK_HOPS = 40  # like the kernel's limit: deeper chains are loops or attacks
_CHUNK = 1 << 20


class ArchiveError(UserError, ValueError):
    """An archive that cannot be read."""


class UnsafeArchiveError(ArchiveError):
    """An archive member that would land outside the target, or is not a plain file, folder or link."""

    def __init__(self, archive: Path, member: str, why: str):
        super().__init__(
            f"refusing to extract {archive}: member {member!r} {why}. Nothing was extracted. "
            "The archive is corrupt or hostile."
        )
        self.archive = archive
        self.member = member


@dataclass(frozen=True)
class Extracted:
    """What an extraction wrote: the top-level names it created in the target, and its counts."""

    entries: list[str]
    members: int
    bytes: int


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def archive_suffix(name: str) -> str:
    """The archive suffix of `name` (`.tar.gz` counts as one), or its last suffix when not an archive."""
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return name[-len(suffix):]
    return Path(name).suffix


def extract_archive(archive: Path, target: Path, *, progress: bool = True) -> Extracted:
    """Check every member of `archive`, then extract it into `target` (merged with what is there)."""
    archive, target = Path(archive), Path(target)
    if not is_archive(archive):
        raise ArchiveError(f"{archive}: not an archive this pipeline reads ({', '.join(ARCHIVE_SUFFIXES)})")
    target.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            return _extract_zip(archive, target, progress)
        return _extract_tar(archive, target, progress)
    except (tarfile.ReadError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ArchiveError(
            f"cannot read {archive} ({exc}): the file is truncated or not a valid archive"
        ) from None


# ----------------------------------------------------------------------------- member checks (pure)


def _parts(name: str) -> list[str]:
    """Path components of an archive name, `\\` taken as a separator too, `.` and empties dropped."""
    return [part for part in re.split(r"[\\/]", name) if part not in ("", ".")]


def _check_name(archive: Path, name: str) -> list[str]:
    """The member's components, or UnsafeArchiveError for names that could leave the target."""
    if "\x00" in name:
        raise UnsafeArchiveError(archive, name, "has a NUL byte in its name")
    if _is_absolute(name):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    parts = _parts(name)
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "has a '..' component")
    return parts


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None


def _resolve(parts: list[str], links: dict[tuple[str, ...], str]) -> list[str] | None:
    """Resolve a path relative to the target through the archive's own symlinks.

    `links` maps a symlink member's components to its link text. Returns the resolved components,
    or None when the path climbs above the target, meets an absolute link, or loops.
    """
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        link = links.get((*resolved, part))
        if link is None:
            resolved.append(part)
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or _is_absolute(link):
            return None
        pending = _parts(link) + pending  # relative to the folder holding the link, i.e. `resolved`
    return resolved


@dataclass(frozen=True)
class _Member:
    """An archive member reduced to what the checks need, the same for tar and zip."""

    name: str
    kind: str  # file | dir | symlink | hardlink | special (device, fifo, socket)
    link: str = ""
    size: int = 0


def check_members(archive: Path, members: list[_Member]) -> None:
    """Raise UnsafeArchiveError for the first member that could write outside the target."""
    links: dict[tuple[str, ...], str] = {}
    for member in members:
        parts = _check_name(archive, member.name)
        if member.kind == "special":
            raise UnsafeArchiveError(archive, member.name, "is a device file, fifo or socket")
        if member.kind == "symlink":
            if not parts:
                raise UnsafeArchiveError(archive, member.name, "is a symlink in place of the target itself")
            links[tuple(parts)] = member.link
    for member in members:
        parts = _parts(member.name)
        if _resolve(parts[:-1], links) is None:
            raise UnsafeArchiveError(archive, member.name, "sits under a symlink that points outside the target")
        if member.kind == "symlink" and (
            _is_absolute(member.link) or _resolve(parts[:-1] + _parts(member.link), links) is None
        ):
            raise UnsafeArchiveError(archive, member.name, f"is a symlink to {member.link!r}, outside the target")
        if member.kind == "hardlink" and (_is_absolute(member.link) or _resolve(_parts(member.link), links) is None):
            raise UnsafeArchiveError(archive, member.name, f"is a hard link to {member.link!r}, outside the target")


def _tar_member(info: tarfile.TarInfo) -> _Member:
    if info.issym():
        return _Member(info.name, "symlink", info.linkname)
    if info.islnk():
        return _Member(info.name, "hardlink", info.linkname)
    if info.isdir():
        return _Member(info.name, "dir")
    if info.isfile():
        return _Member(info.name, "file", size=info.size)
    return _Member(info.name, "special")


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    """Unix file types live in the high 16 bits of `external_attr`; zips made elsewhere leave them 0."""
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        return _Member(info.filename, "symlink", archive.read(info).decode("utf-8", "replace"))
    if info.is_dir() or stat.S_ISDIR(mode):
        return _Member(info.filename, "dir")
    if file_type in (0, stat.S_IFREG):
        return _Member(info.filename, "file", size=info.file_size)
    return _Member(info.filename, "special")


# ----------------------------------------------------------------------------- extraction (I/O)

_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_TAR_FILTER_ERROR = getattr(tarfile, "FilterError", ())


def _extract_tar(archive: Path, target: Path, progress: bool) -> Extracted:
    with tarfile.open(archive, "r:*") as tar:
        infos = tar.getmembers()
        _check_tar_end(archive, tar)
        check_members(archive, [_tar_member(info) for info in infos])
        total = sum(info.size for info in infos if info.isfile())
        with _bar(archive, total, progress) as bar:
            for info in infos:
                _unlink_existing_file(target, info.name)
                try:
                    tar.extract(info, target, **_TAR_FILTER)
                except _TAR_FILTER_ERROR as exc:
                    raise UnsafeArchiveError(archive, info.name, f"was refused by the tar data filter ({exc})") from None
                bar.update(info.size if info.isfile() else 0)
    return Extracted(_top_level(info.name for info in infos), len(infos), total)


def _check_tar_end(archive: Path, tar: tarfile.TarFile) -> None:
    """ArchiveError when an uncompressed tar stops after a member instead of at its end-of-archive marker
    (two zero blocks): cut at a member boundary, it reads as a shorter, valid-looking archive. A
    compressed tar cut anywhere fails earlier, at the end of its stream."""
    if tar.fileobj is None or not archive.name.lower().endswith(".tar"):
        return
    tar.fileobj.seek(tar.offset)
    if tar.fileobj.read(2 * tarfile.BLOCKSIZE) != bytes(2 * tarfile.BLOCKSIZE):
        raise tarfile.ReadError(f"no end-of-archive marker after the last member read, at byte {tar.offset}")


def _extract_zip(archive: Path, target: Path, progress: bool) -> Extracted:
    root = os.path.realpath(target)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        members = [_zip_member(zf, info) for info in infos]
        check_members(archive, members)
        total = sum(member.size for member in members if member.kind == "file")
        with _bar(archive, total, progress) as bar:
            for info, member in zip(infos, members):
                dest = target.joinpath(*_parts(member.name))
                landing = dest if member.kind == "dir" else dest.parent
                if not _inside(root, os.path.realpath(landing)):
                    raise UnsafeArchiveError(archive, member.name, "would be written through a link that leaves the target")
                if member.kind == "dir":
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                _unlink_existing_file(target, member.name)
                if member.kind == "symlink":
                    os.symlink(member.link, dest)
                    continue
                with zf.open(info) as source, dest.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                bar.update(member.size)
    return Extracted(_top_level(info.filename for info in infos), len(infos), total)


def _unlink_existing_file(target: Path, name: str) -> None:
    """Remove a file or link already at a member's path, so extraction never writes through a hard link."""
    dest = target.joinpath(*_parts(name))
    if not _inside(os.path.realpath(target), os.path.realpath(dest.parent)):
        return  # the checks refuse this member; never touch anything outside the target
    if dest.is_symlink() or dest.is_file():
        dest.unlink()


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _top_level(names: Iterable[str]) -> list[str]:
    return sorted({parts[0] for parts in map(_parts, names) if parts})


def _bar(archive: Path, total: int, progress: bool) -> Progress:
    return show_progress(total, f"extract {archive.name}", "B", show=None if progress else False)
