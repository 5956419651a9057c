"""Raw dataset files built here in each dataset's real format, and the helpers the dataset tests share."""

from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from stages.lib.datasets import run_adapter
from stages.lib.core.params import Labels


LABELS = Labels(min_age=0, max_age=100)


def write_jpg(path: Path, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", np.full((size, size, 3), 128, np.uint8))
    path.write_bytes(encoded.tobytes())  # JPEG bytes whatever the name says


def reasons(result) -> dict[str, str]:
    """file name -> reason code of every reject."""
    return {r["path"].rsplit("/", 1)[-1]: r["reason"].split(":")[0] for r in result.rejects}


def datenum(year: int, month: int, day: int) -> float:
    """MATLAB's datenum of a date (datenum(1981,5,5) = 723671 in MATLAB)."""
    return float(date(year, month, day).toordinal() + 366)


def save_imdb_wiki_mat(path: Path, variant: str, photos: list[dict]) -> None:
    """A .mat laid out like the real wiki.mat/imdb.mat: a 1x1 struct whose fields are 1xN arrays."""
    n = len(photos)

    def cells(values) -> np.ndarray:
        array = np.empty((1, n), dtype=object)
        for i, value in enumerate(values):
            array[0, i] = value
        return array

    fields = {
        "dob": np.array([[p["dob"] for p in photos]], dtype=float),
        "photo_taken": np.array([[p["taken"] for p in photos]], dtype=np.uint16),
        "full_path": cells(np.array([p["path"]]) for p in photos),
        "gender": np.array([[p["gender"] for p in photos]], dtype=float),
        "name": cells(np.array([p["name"]]) if p["name"] else np.empty((0,), dtype="<U1") for p in photos),
        "face_location": cells(np.array([p.get("box", [10.0, 20.0, 50.0, 80.0])], dtype=float) for p in photos),
        "face_score": np.array([[p.get("score", 4.0) for p in photos]], dtype=float),
        "second_face_score": np.array([[p.get("second", np.nan) for p in photos]], dtype=float),
    }
    if variant == "imdb":
        names = sorted({p["name"] for p in photos})
        celeb_names = np.empty((1, len(names)), dtype=object)  # 1xM: one per celebrity, not per photo
        for i, name in enumerate(names):
            celeb_names[0, i] = np.array([name])
        fields["celeb_names"] = celeb_names
        fields["celeb_id"] = np.array([[p["celeb_id"] for p in photos]], dtype=np.uint16)
    struct = np.empty((1, 1), dtype=[(name, object) for name in fields])
    for name, value in fields.items():
        struct[0, 0][name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {variant: struct})


def photo(name_in_path: str, **overrides) -> dict:
    base = {"dob": datenum(1981, 5, 5), "taken": 2009, "gender": 1.0, "name": "Ann Example",
            "path": f"17/{name_in_path}", "celeb_id": 7}
    return {**base, **overrides}


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def shared_folder(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the real UTKFace/FairFace samples live in ../shared/datasets beside the repo")
    return folder


def full_profile():
    import yaml

    from stages.lib.core.params import validate

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    return validate({**raw, "profile": "full"})


def read_full_profile_dataset(name: str, root: Path):
    """`name` as the full profile reads it: its adapter and options, the params' labels."""
    params = full_profile()
    dataset = params.datasets[name]
    return run_adapter(dataset.adapter, root, name, dataset.options, labels=params.labels)
