"""Fixtures of the faces tests: a prepared manifest with a row for every crop route and every bad photo."""

import numpy as np
import pytest

from stages.lib.core.schema import manifest_frame
from tests.faces.photos import gradient, manifest_row, write_photo


@pytest.fixture
def mixed_manifest(tmp_path):
    """Rows for every route and every way a photo can be bad, with files under tmp_path/raw."""
    raw = tmp_path / "raw"
    write_photo(raw / "boxed.png", gradient(120, 90))
    write_photo(raw / "ready.png", gradient(60, 60))
    write_photo(raw / "blank.png", np.full((80, 80, 3), 127, np.uint8))  # Haar finds no face in it
    (raw / "empty.jpg").write_bytes(b"")
    (raw / "text.jpg").write_text("not an image")
    rows = [
        manifest_row("a", "boxed.png", raw / "boxed.png", box=[10.0, 20.0, 30.0, 40.0], race="white"),
        manifest_row("a", "ready.png", raw / "ready.png", cropped=True, race=None, age=70),
        manifest_row("a", "blank.png", raw / "blank.png", race="black", age=8),
        manifest_row("a", "empty.jpg", raw / "empty.jpg"),
        manifest_row("b", "text.jpg", raw / "text.jpg", cropped=True),
        manifest_row("b", "gone.jpg", raw / "gone.jpg", cropped=True),
        manifest_row("b", "outside.png", raw / "boxed.png", box=[500.0, 500.0, 10.0, 10.0]),
        manifest_row("b", "bad_box.png", raw / "boxed.png", box=[1.0, 1.0, 0.0, 5.0]),
    ]
    return manifest_frame(rows)
