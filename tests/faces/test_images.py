"""Reading photos: each way a file can be bad maps to its reject reason, judged from the bytes where the
decoder would let it pass; whole photos come back as BGR, turned upright on request."""

import cv2
import numpy as np
import pytest

from stages.lib.faces.images import FaceRejected, jpeg_problem, read_image, structure_problem
from tests.faces.photos import gradient

SOI, EOI = b"\xff\xd8", b"\xff\xd9"


def rejected(path) -> FaceRejected:
    with pytest.raises(FaceRejected) as caught:
        read_image(str(path), upright=True)
    return caught.value


@pytest.mark.parametrize("content, code, detail", [
    (None, "image_missing", "does not exist"),
    (b"", "image_empty", "has zero bytes"),
    (b"not an image at all", "image_unreadable", "OpenCV cannot decode"),
    (SOI + b"\xff\xe0\x00\x10JFIF", "image_truncated", "ends before its end-of-image marker"),
    (b"\x89PNG\r\n\x1a\n" + bytes(30), "image_truncated", "without its IEND chunk"),
])
def test_each_bad_file_is_refused_with_its_own_reason(tmp_path, content, code, detail):
    path = tmp_path / "face.jpg"
    if content is not None:
        path.write_bytes(content)
    error = rejected(path)
    assert error.code == code and detail in error.detail and str(path) in error.detail
    assert error.reason == f"{code}: {error.detail}" == str(error)


def test_a_folder_in_a_files_place_is_unreadable(tmp_path):
    (tmp_path / "face.jpg").mkdir()
    error = rejected(tmp_path / "face.jpg")
    assert error.code == "image_unreadable" and "cannot be read" in error.detail


def test_a_whole_png_comes_back_as_its_bgr_pixels_also_with_padding_after_its_end(tmp_path):
    image = gradient(12, 20)
    data = cv2.imencode(".png", image)[1].tobytes()
    (tmp_path / "face.png").write_bytes(data + bytes(16))
    np.testing.assert_array_equal(read_image(str(tmp_path / "face.png"), upright=False), image)


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """`jpeg` with an EXIF APP1 segment holding only the orientation tag (big-endian TIFF)."""
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01"
            + b"\x01\x12\x00\x03\x00\x00\x00\x01" + orientation.to_bytes(2, "big") + b"\x00\x00" + bytes(4))
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def test_upright_applies_the_exif_orientation_and_only_then(tmp_path):
    jpeg = cv2.imencode(".jpg", gradient(20, 40))[1].tobytes()
    (tmp_path / "turned.jpg").write_bytes(with_orientation(jpeg, 6))    # 6: rotate 90 degrees clockwise to view
    assert read_image(str(tmp_path / "turned.jpg"), upright=True).shape == (40, 20, 3)
    assert read_image(str(tmp_path / "turned.jpg"), upright=False).shape == (20, 40, 3)


@pytest.mark.parametrize("data", [
    SOI + EOI,
    SOI + b"\xff\xe0\x00\x04AB" + EOI,                                 # a segment, its length counting itself
    SOI + b"\xff\xff\xff" + EOI,                                       # fill bytes before a marker
    SOI + b"\xff\xd0" + EOI,                                           # a restart marker carries no length
    SOI + b"\xff\xda\x00\x02" + b"\x12\xff\x00\x34\xff\xd3\x56\xff\xff" + EOI,   # a scan: stuffed byte, restart
    SOI + EOI + b"camera data",                                        # bytes after the end are allowed
])
def test_whole_jpeg_structures_pass(data):
    assert jpeg_problem(data) is None


@pytest.mark.parametrize("data, code, detail", [
    (SOI + b"\x00" + EOI, "image_corrupt", "byte 0x00 at offset 2 where a JPEG marker must be"),
    (SOI + b"\xff\xe0\x00\x01" + EOI, "image_corrupt", "of length 1"),
    (SOI + b"\xff\xe0\x00\x10ab", "image_truncated", "ends before its end-of-image marker"),
    (SOI + b"\xff\xda\x00\x02" + b"\x12\xff\x00\x34", "image_truncated", "a JPEG of 10 bytes"),
    (SOI + b"\xff", "image_truncated", "ends before"),
])
def test_broken_jpeg_structures_are_named(data, code, detail):
    found = jpeg_problem(data)
    assert found is not None and found[0] == code and detail in found[1]


def test_only_jpeg_and_png_are_judged_from_their_bytes():
    assert structure_problem(b"GIF89a" + bytes(10)) is None
    assert structure_problem(SOI + b"\x00")[0] == "image_corrupt"
