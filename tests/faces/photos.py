"""Small photos, manifest rows and crop settings the faces tests share."""

import cv2
import numpy as np

from stages.lib.faces.crop import CropSettings

HAAR = CropSettings(detector="haar", margin=0.4, size=32, min_score=0.6)


def gradient(height, width):
    """A BGR image whose pixels differ along both axes, so misplaced crops show."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), np.full_like(xs, 128)], -1).astype(
        np.uint8
    )


def write_photo(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def manifest_row(dataset, rel, path, *, box=None, cropped=False, age=30, gender="female", race="black", identity=None):
    return {
        "id": f"{dataset}/{rel}", "dataset": dataset, "path": str(path), "age": age, "gender": gender,
        "race": race, "identity": identity, "box": box, "cropped": cropped, "source_meta": "test",
    }
