"""The synthetic faces: seeded, the planted bias visible in the counts and the drawings."""

import hashlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.lib.datasets import run_adapter
from stages.lib.datasets.common import DatasetError
from stages.lib.datasets.synthetic import FILE_NAME, SyntheticOptions, draw_face, parse_group, plan_faces
from stages.lib.datasets.utkface import parse_utkface_name
from stages.lib.core.params import Labels
from tests.datasets.raw_files import LABELS


def test_group_specs():
    group = parse_group("Black*female")
    assert group.matches(30, "female", "black") and not group.matches(30, "male", "black")
    old = parse_group("61+")
    assert old.matches(61, "male", "white") and not old.matches(60, "male", "white")
    band = parse_group("asian*16-30")
    assert band.matches(16, "female", "asian") and not band.matches(31, "female", "asian")
    for bad in ["black*white", "30-20", "61+*16-30", "tall"]:
        with pytest.raises(ValueError):
            parse_group(bad)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_synthetic_is_seeded(tmp_path):
    options = {"n": 40, "image_size": 64, "seed": 3}
    first = run_adapter("synthetic", tmp_path / "a", "synthetic", options, labels=LABELS)
    second = run_adapter("synthetic", tmp_path / "b", "synthetic", options, labels=LABELS)
    other = run_adapter("synthetic", tmp_path / "c", "synthetic", {**options, "seed": 4}, labels=LABELS)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and len(digest(tmp_path / "a")) == 40
    assert [r["id"] for r in first.rows] == [r["id"] for r in second.rows]
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    assert [(r["age"], r["box"]) for r in other.rows] != [(r["age"], r["box"]) for r in first.rows]
    assert [r["box"] for r in first.rows] == [r["box"] for r in second.rows]
    image = cv2.imread(first.rows[0]["path"])
    assert image.shape == (64, 64, 3)
    x, y, w, h = first.rows[0]["box"]
    assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w > 10 and h > 10
    assert not any(r["cropped"] for r in first.rows)


def test_synthetic_folder_holds_only_this_runs_faces(tmp_path):
    run_adapter("synthetic", tmp_path, "synthetic", {"n": 12, "image_size": 48}, labels=LABELS)
    (tmp_path / "keep.txt").write_text("not ours")
    result = run_adapter("synthetic", tmp_path, "synthetic", {"n": 5, "image_size": 48}, labels=LABELS)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([r["path"].rsplit("/", 1)[-1] for r in result.rows] + ["keep.txt"])


def test_planted_underrepresentation_shows_in_counts():
    faces = plan_faces(SyntheticOptions(n=3000), LABELS)
    cells = Counter((f.race, f.gender) for f in faces)
    others = [count for cell, count in cells.items() if cell != ("black", "female")]
    assert len(faces) == 3000 and len(cells) == 10
    share = cells[("black", "female")] / np.mean(others)
    assert 0.38 < share < 0.62  # fraction 0.5 of a fair share
    unplanted = plan_faces(SyntheticOptions(n=3000, underrepresent=None), LABELS)
    assert Counter((f.race, f.gender) for f in unplanted)[("black", "female")] > 0.8 * np.mean(others)


def test_planted_hard_labels_move_only_the_group():
    faces = plan_faces(SyntheticOptions(n=1500, skin_effect=None), LABELS)
    gaps = {key: [f.drawn_age - f.age for f in faces if (f.race, f.gender) == key] for key in
            {(f.race, f.gender) for f in faces}}
    assert np.mean(gaps[("black", "female")]) > 15
    assert all(not any(gap) for key, gap in gaps.items() if key != ("black", "female"))


def test_planted_skin_effect_draws_darker_faces_older_within_each_race():
    """Outside the hard_labels group, a face d L* darker than its race's mean is drawn d years older
    (10 years per 10 L*, rounded to a year, clipped to 1..90); lighter faces as labelled."""
    faces = [f for f in plan_faces(SyntheticOptions(n=800), LABELS) if (f.race, f.gender) != ("black", "female")]
    offsets = np.array([f.skin_offset[0] for f in faces])
    gaps = np.array([f.drawn_age - f.age for f in faces])
    inside = np.array([f.age < 75 for f in faces])
    assert np.all(np.abs(gaps[inside] - np.maximum(0, -offsets[inside])) <= 0.5 + 1e-9)
    assert offsets.std() == pytest.approx(5.0, rel=0.15) and (gaps[offsets > 0] == 0).all()


def test_drawn_skin_has_its_lightness_and_hue_and_the_landmarks_frame_the_face():
    from skimage.color import rgb2lab
    from stages.lib.datasets.synthetic import SKIN_LCH, Face, skin_bgr

    face = Face(0, 40, "male", "indian", 40, skin_offset=(-8.0, 4.0))
    lab = rgb2lab(skin_bgr(face)[::-1].reshape(1, 1, 3) / 255).ravel()
    lightness, _, hue = SKIN_LCH["indian"]
    assert lab[0] == pytest.approx(lightness - 8, abs=0.01)
    assert np.degrees(np.arctan2(lab[2], lab[1])) == pytest.approx(hue + 4, abs=0.01)
    _, (x, y, w, h), points = draw_face(face, 96, 0)
    points = np.array(points)
    assert points.shape == (68, 2)
    assert points[8, 1] == pytest.approx(y + h, abs=0.02)                # chin at the bottom of the head
    assert points[0, 0] == pytest.approx(x, abs=0.2) and points[16, 0] == pytest.approx(x + w, abs=0.2)
    assert points[36:42, 0].mean() < points[42:48, 0].mean()           # eyes in dlib's order


def test_synthetic_ages_stay_in_the_labels_range():
    faces = plan_faces(SyntheticOptions(n=500), Labels(min_age=16, max_age=70))
    ages = [f.age for f in faces]
    assert min(ages) >= 16 and max(ages) <= 70 and sum(a >= 61 for a in ages) > 0
    with pytest.raises(DatasetError, match="leaves no age to draw"):
        plan_faces(SyntheticOptions(n=5), Labels(min_age=95, max_age=120))


def test_drawn_faces_change_with_age_and_gender():
    """Old faces have grey hair and coarser skin; women's lips are red, men's are not."""
    from stages.lib.datasets.synthetic import Face

    def regions(age, gender):
        """Mean hair brightness (top of the head box), skin roughness (cheeks) and lip redness, over faces."""
        hair, rough, red = [], [], []
        for index in range(12):
            image, (x, y, w, h), _ = draw_face(Face(index, age, gender, "asian", age), 96, 0)
            image = image.astype(float)
            cols = slice(int(x + 0.3 * w), int(x + 0.7 * w))
            hair.append(image[int(y) + 1:int(y + 0.12 * h), cols].mean())
            rough.append(np.abs(np.diff(image[int(y + 0.62 * h):int(y + 0.68 * h), cols], axis=1)).mean())
            mouth_y, cx = int(y + 0.75 * h), int(x + w / 2)
            lips = image[mouth_y - 1:mouth_y + 2, cx - 3:cx + 4]
            red.append((lips[..., 2] - lips[..., 1]).mean())  # BGR
        return np.mean(hair), np.mean(rough), np.mean(red)

    young, old = regions(20, "female"), regions(80, "female")
    assert old[0] > young[0] + 80      # grey hair
    assert old[1] > young[1] * 2       # coarser skin
    assert young[2] > regions(20, "male")[2] + 40  # red lips


def test_synthetic_file_names_carry_the_labels_in_utkface_codes():
    faces = plan_faces(SyntheticOptions(n=60, seed=5), LABELS)
    for face in faces:
        parsed = parse_utkface_name(face.file_name)
        assert (parsed.age, parsed.gender, parsed.race) == (face.age, face.gender, face.race)
    assert len({face.file_name for face in faces}) == 60 and all(FILE_NAME.match(f.file_name) for f in faces)


def test_synthetic_ages_are_drawn_between_1_and_90_whatever_the_labels_allow():
    ages = [f.age for f in plan_faces(SyntheticOptions(n=800, hard_labels=None), Labels(min_age=0, max_age=120))]
    assert min(ages) >= 1 and max(ages) <= 90 and max(ages) > 75


def test_a_planted_bias_can_aim_at_an_age_group():
    options = SyntheticOptions(n=1200, underrepresent=None,
                               hard_labels={"group": "61+", "offset_years": -30.0, "noise_years": 0.0},
                               skin_effect=None)
    faces = plan_faces(options, LABELS)
    assert all((f.drawn_age == f.age - 30) == (f.age >= 61) for f in faces)
    assert sum(f.age >= 61 for f in faces) > 20
