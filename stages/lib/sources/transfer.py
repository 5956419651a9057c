"""Downloading a URL into `<file>.part` with urllib: resumed with an HTTP Range request when a `.part`
is already there, retried with backoff on server errors and dropped transfers, but not on DNS failures
or refused connections (offline, it fails at once)."""

from __future__ import annotations

import hashlib
import http.client
import logging
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from stages.lib.sources.intake import DownloadError, UnreachableError, byte_bar, file_sha256

log = logging.getLogger(__name__)

USER_AGENT = "face-bias-study/0.1 (+python-urllib)"
_CHUNK = 1 << 20
_RETRY_HTTP_CODES = {408, 425, 429, 500, 502, 503, 504}


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
        with part.open("ab" if resumed else "wb") as out, byte_bar(
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
