"""Fixtures shared by the dataset tests."""

from pathlib import Path

import numpy as np
import pytest

from tests.datasets.raw_files import datenum, photo, save_imdb_wiki_mat, write_jpg


@pytest.fixture
def wiki_folder(tmp_path) -> Path:
    root = tmp_path / "raw" / "wiki"
    photos = [
        photo("good_male.jpg", box=[111.3, 111.3, 252.7, 262.7]),
        photo("good_female.jpg", gender=0.0, name="", dob=datenum(1990, 12, 31), taken=2010),
        photo("no_gender.jpg", gender=np.nan),
        photo("odd_gender.jpg", gender=0.5),
        photo("no_face.jpg", score=-np.inf),
        photo("weak_face.jpg", score=0.4),
        photo("two_faces.jpg", second=2.5),
        photo("missing.jpg"),
        photo("empty.jpg"),
        photo("bad_dob.jpg", dob=np.nan),
        photo("too_old.jpg", dob=datenum(1880, 1, 1)),
    ]
    save_imdb_wiki_mat(root / "wiki_crop" / "wiki.mat", "wiki", photos)
    for p in photos:
        if p["path"].endswith(("missing.jpg", "empty.jpg")):
            continue
        write_jpg(root / "wiki_crop" / p["path"])
    (root / "wiki_crop" / "17" / "empty.jpg").write_bytes(b"")
    return root
