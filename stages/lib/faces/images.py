"""Reading photos: decoded as BGR, refused with a named reason when missing, empty or unreadable."""

from __future__ import annotations

import os

import cv2
import numpy as np


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
    """The photo as 3-channel BGR; FaceRejected when it is missing, empty or unreadable."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise FaceRejected("image_missing", f"{path} does not exist") from None
    if size == 0:
        raise FaceRejected("image_empty", f"{path} has zero bytes")
    flags = cv2.IMREAD_COLOR if upright else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imread(path, flags)
    if image is None or image.size == 0:
        raise FaceRejected("image_unreadable", f"OpenCV cannot decode {path} ({size} bytes)")
    return image
