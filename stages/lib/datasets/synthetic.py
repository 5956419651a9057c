"""Synthetic faces drawn with OpenCV, with a bias planted on purpose: the offline demo and the tests.

Each face is drawn from its labels so that a small CNN can learn them from appearance:
- age: hair greys from 25 and is white by 75; skin texture coarsens from 15 to 85; forehead lines,
  crow's feet, nasolabial folds and under-eye bags appear and deepen with age; faces lengthen from
  childhood on; men's hairlines recede after 40; children have bigger eyes set lower and no beard.
  Lines have the same contrast on every skin tone, so that the planted bias below is the only one;
- gender: long hair (90% of women, 10% of men), red lips for women, beards for a third of adult men,
  heavier brows and a wider jaw for men;
- race: skin colour, drawn in CIELAB around the race's mean L* and h* (`SKIN_LCH`) with a spread
  within the race (sd 5 L*, 3 degrees h*), and the range of hair colours.
Background, clothes, head position and size, and hair shade vary at random.

Sampling: race and gender uniform; age from a mixture (70% normal around 30, sd 13; 30% uniform over
the range), kept within labels.min_age..max_age and 1..90, so the old are scarce, as in UTKFace.

The planted bias (options; default: both aimed at `black*female`):
- `underrepresent {group, fraction}`: a face drawn for the group is kept with probability `fraction`
  (the others always), so the group has `fraction` of its fair share among the `n` faces;
- `hard_labels {group, offset_years, noise_years}`: the group's faces are drawn at an age that differs
  from their label by `offset_years` plus a normal error of sd `noise_years` (clipped to 1..90): a
  misleading age cue, which a model fitted mostly on the other groups does not learn to undo.
- `skin_effect {years_per_10_darker}` (default 10): within each race, a face whose skin is drawn d L*
  darker than its race's mean is drawn 10 x d / 10 years older than its label (lighter faces as
  labelled), so age error grows as skin lightness falls within every race x gender group
  (docs/measurements.md).
Defaults: fraction 0.5, offset 25, noise 5. Measured on 2,000 faces with the demo's random VGG trunk
(64 px crops, pool5 features, fc 64-64-101 heads, 200 epochs, three splits): the group's test MAE
13.7-18.4 years (95% CIs within 11-22) against 3.0-5.4 for every other race x gender group. With 30
epochs the heads underfit (MAE about 8 for all) and the gap is no longer clear.
A group is `*`-joined terms: a race, a gender, and an age range `a-b` or `a+` (`black*female`, `61+`,
`asian*male*46-60`).

Files: `{age}_{gender}_{race}_{index:017d}.jpg` (UTKFace codes), written into the folder the adapter
is given, which holds exactly this run's faces afterwards (older synthetic faces there are removed).
The manifest gives each face's box (the head, without the hair) with `cropped` False, so the crop
stage cuts it with its margin as it does for IMDB-Wiki, and its 68 landmarks (`landmarks`, dlib's
order, in the photo's pixels), so the measure stage needs no dlib for drawn faces. Seeded: the same options give the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field, field_validator
from skimage.color import lab2rgb, rgb2lab
from tqdm import tqdm

from stages.lib.datasets.common import AdapterResult, DatasetError, DatasetFolder, Options, manifest_row
from stages.lib.core.labels import GENDERS, RACES
from stages.lib.core.params import Labels

MAX_DRAWN_AGE = 90
FILE_NAME = re.compile(r"^\d+_\d_\d_\d{17}\.jpg$")
_AGE_OPEN = re.compile(r"^(\d+)\+$")
_AGE_RANGE = re.compile(r"^(\d+)-(\d+)$")

def _lch(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    lab = rgb2lab(np.array(bgr[::-1], dtype=float).reshape(1, 1, 3) / 255).ravel()
    return float(lab[0]), float(np.hypot(lab[1], lab[2])), float(np.degrees(np.arctan2(lab[2], lab[1])))


def skin_bgr(face: "Face") -> np.ndarray:
    """The face's skin colour (BGR, 0-255 floats): its race's L*, C*, h* moved by its own offsets."""
    lightness, chroma, hue = SKIN_LCH[face.race]
    lightness, hue = lightness + face.skin_offset[0], np.radians(hue + face.skin_offset[1])
    lab = np.array([lightness, chroma * np.cos(hue), chroma * np.sin(hue)]).reshape(1, 1, 3)
    return lab2rgb(lab).ravel()[::-1] * 255


# BGR. Skin tones by race, and the hair colours each race draws from (before greying).
SKIN = {
    "white": (178, 198, 232), "black": (52, 72, 104), "asian": (140, 185, 222),
    "indian": (88, 128, 178), "others": (112, 154, 200),
}
# The skin's CIELAB lightness L*, chroma C* and hue angle h* (degrees), by race: the mean each face's
# skin is drawn around, with a normal spread of SKIN_SPREAD (sd of L*, of h*) within the race.
SKIN_LCH = {race: _lch(bgr) for race, bgr in SKIN.items()}
SKIN_SPREAD = (5.0, 3.0)
HAIR = {
    "white": [(30, 45, 80), (25, 30, 40), (40, 70, 120)],
    "black": [(18, 18, 22), (25, 28, 35)],
    "asian": [(15, 15, 20), (25, 28, 35)],
    "indian": [(18, 20, 26), (30, 35, 45)],
    "others": [(25, 30, 45), (35, 50, 80), (18, 18, 22)],
}
GREY_HAIR = np.array([228, 228, 228], dtype=float)
LIPS = (70, 60, 185)


@dataclass(frozen=True)
class Group:
    """Who a planted bias applies to; None: any value."""

    races: frozenset[str] | None = None
    genders: frozenset[str] | None = None
    min_age: int = 0
    max_age: int | None = None

    def matches(self, age: int, gender: str, race: str) -> bool:
        return ((self.races is None or race in self.races) and (self.genders is None or gender in self.genders)
                and age >= self.min_age and (self.max_age is None or age <= self.max_age))


def parse_group(spec: str) -> Group:
    """`black*female`, `61+`, `asian*male*46-60` -> Group; ValueError naming what is allowed."""
    races, genders, ages = set(), set(), None
    for term in (t.strip().lower() for t in str(spec).split("*")):
        if term in RACES:
            races.add(term)
        elif term in GENDERS:
            genders.add(term)
        elif _AGE_OPEN.match(term) or _AGE_RANGE.match(term):
            if ages is not None:
                raise ValueError(f"group {spec!r} gives more than one age range")
            if _AGE_OPEN.match(term):
                ages = (int(_AGE_OPEN.match(term).group(1)), None)
            else:
                low, high = map(int, _AGE_RANGE.match(term).groups())
                if low > high:
                    raise ValueError(f"group {spec!r}: age range {term!r} runs backwards")
                ages = (low, high)
        else:
            raise ValueError(f"group {spec!r}: {term!r} is not a race ({', '.join(RACES)}), a gender "
                             f"({', '.join(GENDERS)}) or an age range like 61+ or 16-30")
    if len(races) > 1 or len(genders) > 1:
        raise ValueError(f"group {spec!r} names two races or two genders; a group is their intersection")
    low, high = ages or (0, None)
    return Group(frozenset(races) or None, frozenset(genders) or None, low, high)


class _GroupOption(Options):
    group: str

    @field_validator("group")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_group(value)
        return value


class Underrepresent(_GroupOption):
    fraction: float = Field(gt=0.0, le=1.0)  # the group's share of its fair count that is kept


class HardLabels(_GroupOption):
    noise_years: float = Field(0.0, ge=0.0)  # sd of the gap between the drawn age and the label
    offset_years: float = 0.0                # mean of that gap: the group looks this much older


class SkinEffect(Options):
    """Within each race, a face whose skin is drawn darker than the race's mean is drawn older than its
    label: `years_per_10_darker` years per 10 units of L* below the mean (lighter faces as labelled), so
    both the signed and the absolute age error grow as skin lightness falls within every group."""

    years_per_10_darker: float = Field(10.0, ge=0.0)


class SyntheticOptions(Options):
    n: int = Field(2000, ge=1)
    image_size: int = Field(96, ge=48, le=1024)
    seed: int = Field(0, ge=0)  # the data's own seed, apart from params.seed (split, training)
    underrepresent: Underrepresent | None = Underrepresent(group="black*female", fraction=0.5)
    hard_labels: HardLabels | None = HardLabels(group="black*female", offset_years=25.0, noise_years=5.0)
    skin_effect: SkinEffect | None = SkinEffect()


@dataclass(frozen=True)
class Face:
    index: int
    age: int          # the label
    gender: str
    race: str
    drawn_age: int    # the age the face shows (differs from the label in the hard_labels group)
    skin_offset: tuple[float, float] = (0.0, 0.0)  # the skin's L* and h* less the race's mean (SKIN_LCH)

    @property
    def file_name(self) -> str:
        return f"{self.age}_{GENDERS.index(self.gender)}_{RACES.index(self.race)}_{self.index:017d}.jpg"


def age_limits(labels: Labels) -> tuple[int, int]:
    low, high = max(labels.min_age, 1), min(labels.max_age, MAX_DRAWN_AGE)
    if low > high:
        raise DatasetError(f"labels.min_age..max_age = {labels.min_age}..{labels.max_age} leaves no age to draw "
                           f"between 1 and {MAX_DRAWN_AGE}")
    return low, high


def _sample_age(rng: np.random.Generator, low: int, high: int) -> int:
    while True:
        age = rng.normal(30.0, 13.0) if rng.random() < 0.7 else rng.uniform(low, high + 1)
        if low <= age < high + 1:
            return int(age)


def plan_faces(options: SyntheticOptions, labels: Labels) -> list[Face]:
    """The labels of the `n` faces, with the planted under-representation and label noise (pure, seeded)."""
    rng = np.random.default_rng(options.seed)
    low, high = age_limits(labels)
    scarce = parse_group(options.underrepresent.group) if options.underrepresent else None
    hard = parse_group(options.hard_labels.group) if options.hard_labels else None
    faces: list[Face] = []
    while len(faces) < options.n:
        race, gender = RACES[rng.integers(len(RACES))], GENDERS[rng.integers(len(GENDERS))]
        age = _sample_age(rng, low, high)
        keep = rng.random()
        if scarce is not None and scarce.matches(age, gender, race) and keep >= options.underrepresent.fraction:
            continue
        skin_offset = (float(rng.normal(0.0, SKIN_SPREAD[0])), float(rng.normal(0.0, SKIN_SPREAD[1])))
        gap = 0.0
        if hard is not None and hard.matches(age, gender, race):
            gap += options.hard_labels.offset_years + rng.normal(0.0, options.hard_labels.noise_years)
        if options.skin_effect is not None:
            gap += options.skin_effect.years_per_10_darker * max(0.0, -skin_offset[0]) / 10
        drawn = int(np.clip(round(age + gap), 1, MAX_DRAWN_AGE)) if gap else age
        faces.append(Face(len(faces), age, gender, race, drawn, skin_offset))
    return faces


def _colour(values) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(values, 0, 255))


def _ramp(value: float, start: float, end: float) -> float:
    """0 below start, 1 above end, linear between."""
    return float(np.clip((value - start) / (end - start), 0.0, 1.0))


def draw_face(face: Face, size: int, seed: int) -> tuple[np.ndarray, list[float], list[list[float]]]:
    """The face's BGR image (size x size), its head box [x, y, w, h] and its 68 landmarks (`landmarks`)
    (pure: seeded by seed and index)."""
    rng = np.random.default_rng([seed, face.index])
    k = size / 96.0
    age, female = face.drawn_age, face.gender == "female"
    child = 1.0 - _ramp(age, 0, 16)        # 1 for a newborn, 0 from 16
    lines = _ramp(age, 28, 70)             # wrinkles: none before 28, darkest from 70
    grey = _ramp(age, 25, 75)

    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = _colour(rng.integers(40, 215, 3))
    cx = size / 2 + rng.normal(0, 2 * k)
    cy = size * 0.47 + rng.normal(0, 2 * k)
    half_w = 17.5 * k * (1 + rng.normal(0, 0.05)) * (1.04 if not female else 0.97) * (1 - 0.12 * child)
    half_h = half_w * (1.0 + 0.4 * _ramp(age, 0, 80))  # faces lengthen from childhood, then sag
    skin = skin_bgr(face)
    base_hair = np.array(HAIR[face.race][rng.integers(len(HAIR[face.race]))], dtype=float)
    hair = _colour(base_hair * (1 - grey) + GREY_HAIR * grey + rng.normal(0, 5, 3))
    # Lines are drawn with the same contrast on every skin tone (lighter than dark skin, darker than
    # light skin), so the planted bias is the only one.
    contrast = (35 + 70 * lines) * (1 if skin.mean() < 100 else -1)
    wrinkle = _colour(skin + contrast)

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x)), int(round(y))

    def axes(a: float, b: float) -> tuple[int, int]:
        return max(1, int(round(a))), max(1, int(round(b)))

    aa = cv2.LINE_AA
    # Body and neck.
    cv2.ellipse(image, pt(cx, size + 6 * k), axes(40 * k, 28 * k), 0, 0, 360, _colour(rng.integers(20, 235, 3)), -1, aa)
    cv2.rectangle(image, pt(cx - 0.45 * half_w, cy + 0.6 * half_h), pt(cx + 0.45 * half_w, cy + 1.5 * half_h),
                  _colour(skin * 0.9), -1)
    # Long hair behind the head.
    long_hair = female != (rng.random() < 0.1)
    if long_hair:
        cv2.ellipse(image, pt(cx, cy + 0.25 * half_h), axes(1.32 * half_w, 1.3 * half_h), 0, 0, 360, hair, -1, aa)
    # Head, then hair on top (receding with age for men).
    cv2.ellipse(image, pt(cx, cy), axes(half_w, half_h), 0, 0, 360, _colour(skin), -1, aa)
    recede = 0.0 if female or child else 0.45 * _ramp(age, 40, 75)
    cap_h = half_h * (0.62 - recede)
    cv2.ellipse(image, pt(cx, cy - half_h + cap_h), axes(1.06 * half_w, cap_h + 0.08 * half_h), 0, 180, 360, hair,
                -1, aa)
    # Beard (adult men, a third of them), greying with the hair.
    if not female and age >= 18 and rng.random() < 0.35:
        cv2.ellipse(image, pt(cx, cy + 0.35 * half_h), axes(0.85 * half_w, 0.68 * half_h), 0, 10, 170, hair, -1, aa)
    # Eyes: bigger and lower in children.
    eye_y = cy - 0.12 * half_h + 0.2 * child * half_h
    eye_dx = 0.4 * half_w
    eye_r = (2.3 + 2.4 * child) * k
    brow_y = eye_y - (2.6 + 1.2 * child) * eye_r
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(image, pt(ex, eye_y), axes(1.7 * eye_r, eye_r), 0, 0, 360, (235, 235, 235), -1, aa)
        cv2.circle(image, pt(ex, eye_y), max(1, int(round(0.75 * eye_r))), (30, 30, 30), -1, aa)
        cv2.line(image, pt(ex - 1.8 * eye_r, brow_y), pt(ex + 1.8 * eye_r, brow_y), hair,
                 max(1, int(round((1.8 if not female else 1.0) * k))), aa)
        if age > 40:   # crow's feet
            for dy in (-1, 0, 1):
                cv2.line(image, pt(ex + side * 2.0 * eye_r, eye_y + dy * eye_r * 0.8),
                         pt(ex + side * 3.2 * eye_r, eye_y + dy * eye_r * 1.4), wrinkle, max(1, int(k)), aa)
        if age > 50:   # under-eye bags
            cv2.ellipse(image, pt(ex, eye_y + 1.4 * eye_r), axes(1.6 * eye_r, 0.8 * eye_r), 0, 20, 160, wrinkle,
                        max(1, int(k)), aa)
    # Nose and mouth.
    nose_y = cy + 0.22 * half_h
    cv2.line(image, pt(cx, eye_y + 2 * eye_r), pt(cx + 1.5 * k, nose_y), _colour(skin * 0.75), max(1, int(k)), aa)
    mouth_y, mouth_w = cy + 0.5 * half_h, (0.36 - 0.08 * child) * half_w
    if female:
        cv2.ellipse(image, pt(cx, mouth_y), axes(mouth_w, 0.09 * half_h), 0, 0, 360, LIPS, -1, aa)
    else:
        cv2.line(image, pt(cx - mouth_w, mouth_y), pt(cx + mouth_w, mouth_y), (40, 40, 60), max(1, int(1.4 * k)), aa)
    # Forehead lines and nasolabial folds, more and darker with age.
    if age > 28:
        for i in range(1 + int(round(3 * lines))):
            y = cy - 0.55 * half_h + i * 0.09 * half_h
            cv2.ellipse(image, pt(cx, y + 0.1 * half_h), axes(0.5 * half_w, 0.1 * half_h), 0, 200, 340, wrinkle,
                        max(1, int(k)), aa)
    if age > 35:
        for side in (-1, 1):
            cv2.line(image, pt(cx + side * 0.25 * half_w, nose_y), pt(cx + side * (mouth_w + 2 * k), mouth_y + 2 * k),
                     wrinkle, max(1, int(k)), aa)
    if age > 55:   # age spots
        for _ in range(int(rng.integers(2, 7))):
            spot = (cx + rng.uniform(-0.7, 0.7) * half_w, cy + rng.uniform(-0.3, 0.4) * half_h)
            cv2.circle(image, pt(*spot), max(1, int(k)), _colour(skin * 0.7), -1, aa)
    # Skin texture coarsens with age over the whole face: the cue a network sees best at low resolution.
    texture = int(round(3 + 45 * _ramp(age, 15, 85)))
    face_mask = np.zeros(image.shape[:2], dtype=np.int16)
    cv2.ellipse(face_mask, pt(cx, cy), axes(half_w, half_h), 0, 0, 360, 1, -1)
    noise = rng.integers(-6, 7, size=image.shape, dtype=np.int16)
    noise += rng.integers(-texture, texture + 1, size=image.shape, dtype=np.int16) * face_mask[..., None]
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    box = [cx - half_w, cy - half_h, 2 * half_w, 2 * half_h]
    points = landmarks(Layout(cx, cy, half_w, half_h, eye_y, brow_y, eye_dx, eye_r, nose_y, mouth_y, mouth_w))
    return image, [round(v, 2) for v in box], points


@dataclass(frozen=True)
class Layout:
    """Where a drawn face's parts are, in the image's pixels."""

    cx: float
    cy: float
    half_w: float
    half_h: float
    eye_y: float
    brow_y: float
    eye_dx: float
    eye_r: float
    nose_y: float
    mouth_y: float
    mouth_w: float


def _ellipse_points(centre: tuple[float, float], axes: tuple[float, float], degrees) -> list[tuple[float, float]]:
    """Points on an ellipse at angles counted anticlockwise from the image's right (y grows downwards)."""
    angles = np.radians(np.asarray(degrees, dtype=float))
    return list(zip(centre[0] + axes[0] * np.cos(angles), centre[1] - axes[1] * np.sin(angles)))


def landmarks(layout: Layout) -> list[list[float]]:
    """The drawn face's 68 landmarks in dlib's order (jaw, brows, nose, eyes, mouth; points start on the
    image's left), rounded to 0.01 pixel: landmarks on a drawing are known, so dlib is not needed."""
    lay = layout
    tilt = np.arcsin(0.12)  # the jaw line starts at eye level, 0.12 half-heights above the centre
    sweep = np.linspace(-(np.pi / 2 + tilt), np.pi / 2 + tilt, 17)
    jaw = list(zip(lay.cx + lay.half_w * np.sin(sweep), lay.cy + lay.half_h * np.cos(sweep)))
    brow_y = lay.brow_y
    brows, eyes = [], []
    for side in (-1, 1):
        ex = lay.cx + side * lay.eye_dx
        brows += [(x, brow_y) for x in np.linspace(ex - 1.8 * lay.eye_r, ex + 1.8 * lay.eye_r, 5)]
        eyes += _ellipse_points((ex, lay.eye_y), (1.7 * lay.eye_r, lay.eye_r), [180, 120, 60, 0, -60, -120])
    bridge = [(lay.cx, y) for y in np.linspace(lay.eye_y, lay.nose_y, 4)]
    nostrils = [(lay.cx + dx * 0.12 * lay.half_w, lay.nose_y + 0.05 * lay.half_h) for dx in (-2, -1, 0, 1, 2)]
    lips = (lay.mouth_w, 0.09 * lay.half_h)
    outer = _ellipse_points((lay.cx, lay.mouth_y), lips, [180, 150, 120, 90, 60, 30, 0, -30, -60, -90, -120, -150])
    inner = _ellipse_points((lay.cx, lay.mouth_y), (0.8 * lips[0], 0.5 * lips[1]), [180, 135, 90, 45, 0, -45, -90, -135])
    points = jaw + brows + bridge + nostrils + eyes + outer + inner
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points]


def read(folder: DatasetFolder) -> AdapterResult:
    """Draw the faces into `root` (removing older synthetic faces there) and list them."""
    root, dataset, options, labels = Path(folder.root), folder.name, folder.options, folder.labels
    root.mkdir(parents=True, exist_ok=True)
    faces = plan_faces(options, labels)
    wanted = {face.file_name for face in faces}
    for stale in root.iterdir():
        if FILE_NAME.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    result = AdapterResult()
    for face in tqdm(faces, desc=f"draw {dataset}", unit="face", disable=None):  # ages drawn within labels' range
        image, box, points = draw_face(face, options.image_size, options.seed)
        if not cv2.imwrite(str(root / face.file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {root / face.file_name}")
        drawn = "" if face.drawn_age == face.age else f"; drawn as age {face.drawn_age} (planted)"
        result.rows.append(manifest_row(
            dataset, root, face.file_name, age=face.age, gender=face.gender, race=face.race, identity=None,
            box=box, cropped=False, source_meta=f"synthetic seed {options.seed} face {face.index}{drawn}",
            landmarks=points,
        ))
    return result
