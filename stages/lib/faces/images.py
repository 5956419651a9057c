"""Reading photos: decoded as BGR, refused with a named reason when missing, empty, cut short or corrupt.

OpenCV alone is too forgiving: `cv2.imread` decodes the first half of a truncated JPEG, fills the rest
with grey and only prints libjpeg's "Premature end of JPEG file" on stderr, and decodes a JPEG whose
data is damaged with a "Corrupt JPEG data" warning. Such a photo would be cropped, embedded, trained on
and evaluated as if it were whole. So here:

- a JPEG must reach its end-of-image marker, walking its segments and scans (`jpeg_problem`, pure),
  and a PNG must end with its IEND chunk: otherwise `image_truncated`;
- the bytes are decoded with libjpeg/libpng's messages captured, and a libjpeg warning is an error:
  `image_corrupt`;
- what OpenCV cannot decode at all is `image_unreadable`, with the library's message when it gave one.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

# The reasons a photo is refused before any face is looked for (the detector is not to blame for them).
IMAGE_CODES = ("image_missing", "image_empty", "image_unreadable", "image_truncated", "image_corrupt")
JPEG_START = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC, the last 8 bytes of every whole PNG
_EOI, _SOS = 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length
# libjpeg's warnings as OpenCV's build prints them (jerror.h): each means the pixels are not the file's.
LIBJPEG_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters",
                    "Inconsistent progression sequence")


class FaceRejected(Exception):
    """One row refused: `code` is a short stable reason (counted in quality.json), `detail` the specifics."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


def read_image(path: str, upright: bool) -> np.ndarray:
    """The photo as 3-channel BGR (EXIF orientation applied when `upright`); FaceRejected with code
    image_missing, image_empty, image_truncated, image_corrupt or image_unreadable otherwise."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FaceRejected("image_missing", f"{path} does not exist") from None
    except OSError as exc:
        raise FaceRejected("image_unreadable", f"{path} cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise FaceRejected("image_empty", f"{path} has zero bytes")
    problem = structure_problem(data)
    if problem is not None:
        raise FaceRejected(problem[0], f"{path} {problem[1]}")
    flags = cv2.IMREAD_COLOR if upright else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    with native_messages() as messages:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    said = messages.text.strip()
    if image is None or image.size == 0:
        raise FaceRejected("image_unreadable", f"OpenCV cannot decode {path} ({len(data)} bytes)"
                                               + (f": {_one_line(said)}" if said else ""))
    if any(warning in said for warning in LIBJPEG_WARNINGS):
        raise FaceRejected("image_corrupt", f"{path}: libjpeg warns {_one_line(said)!r}; the pixels are not the file's")
    if said:
        sys.stderr.write(said + "\n")  # not a decoder warning: pass it on
    return image


def structure_problem(data: bytes) -> tuple[str, str] | None:
    """(code, detail) when a JPEG or PNG is cut short or malformed, judged from its bytes; None otherwise
    (or for other formats, which the decoder judges)."""
    if data.startswith(JPEG_START):
        return jpeg_problem(data)
    if data.startswith(PNG_SIGNATURE) and not data.rstrip(b"\x00").endswith(PNG_END):
        return "image_truncated", f"is cut short: a PNG of {len(data)} bytes without its IEND chunk at the end"
    return None


def jpeg_problem(data: bytes) -> tuple[str, str] | None:
    """Walk a JPEG's segments and entropy-coded scans to its end-of-image marker (EOI).

    Data ending before EOI is `image_truncated`; bytes where a marker must be, or a segment length
    below 2, are `image_corrupt`. Bytes after EOI (some cameras append data) are allowed.
    """
    size, pos = len(data), 2
    while pos < size:
        if data[pos] != 0xFF:
            return "image_corrupt", f"has byte 0x{data[pos]:02x} at offset {pos} where a JPEG marker must be"
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            break
        marker, pos = data[pos], pos + 1
        if marker == _EOI:
            return None
        if marker in _STANDALONE:
            continue
        if pos + 2 > size:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            return "image_corrupt", f"has a JPEG segment (marker 0x{marker:02x}) of length {length} at offset {pos}"
        pos += length
        if marker == _SOS:
            pos = _end_of_scan(data, pos)
    return "image_truncated", f"is cut short: a JPEG of {size} bytes that ends before its end-of-image marker"


def _end_of_scan(data: bytes, pos: int) -> int:
    """The offset of the first marker after entropy-coded data starting at `pos` (`len(data)` if none):
    in a scan, 0xFF is followed by 0x00 (a stuffed byte), a restart marker or more fill bytes."""
    while True:
        found = data.find(b"\xff", pos)
        if found < 0 or found + 1 >= len(data):
            return len(data)
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos = found + 1 if following == 0xFF else found + 2
            continue
        return found


class _Captured:
    text = ""


@contextmanager
def native_messages():
    """Capture what C libraries (libjpeg, libpng inside OpenCV) print on the process's stderr meanwhile.

    OpenCV reports libjpeg's warnings nowhere else. The descriptor is swapped for a temporary file
    and put back, whatever happens."""
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")


def _one_line(text: str) -> str:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())
