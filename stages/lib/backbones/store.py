"""The features pass: the frozen backbone run once over every crop, cached as float16.

The backbone is the one params' `backbone.name` selects (stages/lib/backbones/registry.py): by default the
study's VGG-Face cut at pool5, whose output is flattened channels-last (N, k*k*C5).

Outputs in the features folder (row i belongs to row i of data/crops/manifest.parquet, every crop,
before any split: the split stage reads these features to keep look-alike faces on one side):
    features.npy     float16 (N, D); a .npy, so `np.load(path, mmap_mode="r")` maps it without
                     reading it (see `read_features`)
    published.npy    float32 (N, P), only for a backbone whose published heads are its own outputs
                     (spec.published_outputs = P: wide_resnet_imdb), computed in the same pass
    published_inputs.npy  float16 (N, Q), for the same backbones: what those published heads read
                     (spec.published_inputs = Q: the WideResNet's whole 131,072-wide flatten), so that
                     they can be fine-tuned from their published weights (2.1 GB for 8,000 faces)
    index.parquet    id, row
    meta.json        shape, dtype, the backbone's params and spec, weights' sha256, precision, device

The pass is the only expensive step of the pipeline (hours on a CPU for IMDB-Wiki), hence resumable.
It writes into a scratch folder beside the outputs (`data/.features-partial/`: features.npy and
progress.json), chunk by chunk; a chunk is flushed to the memory-mapped file before progress.json
records it, so a killed run loses at most the chunk in flight, and a restart with the same inputs
skips the chunks already written. Any change to the inputs (crops, manifest order, params, weights,
precision) changes the fingerprint and the pass starts over. Only a finished pass is moved into the
features folder. The scratch folder is not a DVC output: DVC deletes a stage's outputs before it
runs it, and keeping the partial pass out of them keeps the outputs ordinary (no `persist`), so
DVC's run cache can still restore features for parameters it has seen before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.backbones.registry import Embed, describe, load
from stages.lib.core.progress import progress as progress_display

FEATURES_FILE = "features.npy"
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"
PROGRESS_FILE = "progress.json"
PUBLISHED_FILE = "published.npy"
PUBLISHED_INPUTS_FILE = "published_inputs.npy"
PUBLISHED_DTYPE = np.float32
FEATURE_DTYPE = np.float16
DTYPES = {FEATURES_FILE: FEATURE_DTYPE, PUBLISHED_FILE: PUBLISHED_DTYPE, PUBLISHED_INPUTS_FILE: FEATURE_DTYPE}
PREPROCESSING = "decode RGB, bilinear antialiased resize to input_size rounded to uint8, then the backbone's own"
DEFAULT_CHUNK_ROWS = 2048


class FeaturesError(UserError, RuntimeError):
    """The features pass cannot run on these inputs, or its outputs are incomplete."""


class FeatureStore(NamedTuple):
    values: np.ndarray      # float16 (N, D), memory-mapped, read-only
    index: pd.DataFrame     # id, row
    meta: dict
    published: np.ndarray | None = None  # float32 (N, P): the published model's own outputs, if stored
    published_inputs: np.ndarray | None = None  # float16 (N, Q): what the published heads read, if stored


def crop_files(manifest: pd.DataFrame, root: Path) -> list[Path]:
    """Each row's crop file (relative paths resolve against `root`); FeaturesError if any is missing."""
    if "crop_path" not in manifest.columns:
        raise FeaturesError("the manifest has no `crop_path` column: it must come from the crop and split stages")
    paths = [Path(p) if Path(p).is_absolute() else root / p for p in manifest["crop_path"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FeaturesError(
            f"{len(missing)} of {len(paths)} crops are missing, e.g. {missing[:3]}: "
            "run `dvc repro crop` (or `dvc checkout data/crops`) so that data/crops matches the manifest"
        )
    return paths


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def inputs_fingerprint(ids: Sequence[str], paths: Sequence[Path], config: dict) -> str:
    """A hash of everything the features depend on: rows in order, each crop's size and mtime, config.

    Sizes and mtimes stand in for the crops' bytes (hashing every crop would read them twice);
    a re-crop rewrites the files, so it changes the fingerprint.
    """
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for row_id, path in zip(ids, paths):
        stat = path.stat()
        digest.update(f"{row_id}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def image_dataset(paths: Sequence[Path], rows: Sequence[int], input_size: int, batch_size: int) -> "tf.data.Dataset":
    """Batches of (rows, uint8 images): files read, decoded and resized in parallel, in order, prefetched.

    TensorFlow is imported here and in the pass, not by the module: the stages that only read a
    finished pass (split, the identity stage when it makes none) need not load it."""
    import tensorflow as tf

    from stages.lib.backbones.vgg_face import resize_uint8

    def load(row, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return row, resize_uint8(image, input_size)

    rows_tensor = tf.constant(rows, tf.int64, shape=[len(rows)])
    paths_tensor = tf.constant([str(p) for p in paths], tf.string, shape=[len(paths)])
    dataset = tf.data.Dataset.from_tensor_slices((rows_tensor, paths_tensor))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def cv2_batches(paths: Sequence[Path], rows: Sequence[int], input_size: int, batch_size: int):
    """Batches of (rows, uint8 RGB images) read as a published model reads a photo (faces/images.read_image:
    cv2's decoder, no EXIF turn, as the audit reads a crop), resized with INTER_LINEAR only where a crop
    is not input_size already; an unreadable file is a FeaturesError naming it."""
    import cv2

    from stages.lib.faces.images import FaceRejected, read_image

    for start in range(0, len(rows), batch_size):
        batch_rows = np.asarray(rows[start:start + batch_size], dtype=np.int64)
        images = []
        for position in range(start, start + len(batch_rows)):
            try:
                image = read_image(str(paths[position]), upright=False)
            except FaceRejected as rejected:
                raise FeaturesError(f"{rejected}: re-run the crop stage (`dvc repro -f crop`) to rewrite the crops"
                                    ) from None
            if image.shape[:2] != (input_size, input_size):
                image = cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        yield batch_rows, np.stack(images)


READERS = {"tf": image_dataset, "cv2": cv2_batches}  # BackboneSpec.reader -> batches of (rows, images)


def _next_batch(batches, paths: Sequence[Path], rows: Sequence[int], position: int):
    """The next (rows, images) batch, or None at the end; an undecodable file raises FeaturesError naming it.

    tf.data's decode error does not say which file failed, so on error the files from the current
    position on are decoded one by one to find it.
    """
    import tensorflow as tf

    try:
        return next(batches)
    except StopIteration:
        return None
    except tf.errors.InvalidArgumentError as exc:
        for row in rows[position:]:
            try:
                tf.io.decode_image(tf.io.read_file(str(paths[row])), channels=3, expand_animations=False)
            except tf.errors.InvalidArgumentError:
                raise FeaturesError(
                    f"{paths[row]} (manifest row {row}) is not a readable image: "
                    "re-run the crop stage (`dvc repro -f crop`) to rewrite the crops"
                ) from None
        raise FeaturesError(f"reading the crops failed: {exc.message}") from None


def chunk_bounds(rows: int, chunk_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk; a chunk is a whole number of batches, so a resumed pass feeds the
    model exactly the batches an uninterrupted one does (the same numbers, bit for bit, on a CPU)."""
    size = max(batch_size, -(-chunk_rows // batch_size) * batch_size)
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically (temp file, then rename), so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def partial_dir(out_dir: Path) -> Path:
    """The scratch folder of an unfinished pass: `data/.features-partial` for `data/features`."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}-partial"


def _open_memmaps(work_dir: Path, shapes: dict[str, tuple[int, int]], mode: str) -> dict[str, np.memmap] | None:
    """The scratch memmaps by file name (FEATURES_FILE, PUBLISHED_FILE), or None when one does not fit."""
    dtypes = DTYPES
    if mode == "w+":
        return {name: np.lib.format.open_memmap(work_dir / name, mode="w+", dtype=dtypes[name], shape=shape)
                for name, shape in shapes.items()}
    if not all((work_dir / name).exists() for name in shapes):
        return None
    arrays = {name: np.lib.format.open_memmap(work_dir / name, mode="r+") for name in shapes}
    fits = all(arrays[name].shape == shape and arrays[name].dtype == dtypes[name] for name, shape in shapes.items())
    return arrays if fits else None


def _open_or_start(work_dir: Path, fingerprint: str, shapes: dict[str, tuple[int, int]], chunk_rows: int
                   ) -> tuple[dict[str, np.memmap], dict]:
    """The memmaps and progress of an interrupted pass with the same fingerprint, or fresh ones."""
    progress_path = work_dir / PROGRESS_FILE
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else None
    if progress and progress.get("fingerprint") == fingerprint and progress.get("chunk_rows") == chunk_rows:
        arrays = _open_memmaps(work_dir, shapes, "r+")
        if arrays is not None:
            return arrays, progress
    work_dir.mkdir(parents=True, exist_ok=True)
    for name in (*DTYPES, PROGRESS_FILE):
        (work_dir / name).unlink(missing_ok=True)
    arrays = _open_memmaps(work_dir, shapes, "w+")
    progress = {"fingerprint": fingerprint, "chunk_rows": chunk_rows, "done": [], "rows_computed": 0, "seconds": 0.0}
    _write_json(progress_path, progress)
    return arrays, progress


def crop_margins(manifest: pd.DataFrame, margin: float) -> np.ndarray:
    """Each crop's margin for the backbone: NaN for a dataset's own face crop (route `precropped`,
    or `cropped` rows where the route is not recorded), else the crop stage's margin."""
    if "detector" in manifest.columns:
        own = manifest["detector"].eq("precropped")
    elif "cropped" in manifest.columns:
        own = manifest["cropped"].fillna(False).astype(bool)
    else:
        own = pd.Series(False, index=manifest.index)
    return np.where(own.to_numpy(), np.nan, float(margin))


@dataclass(frozen=True)
class Crops:
    """The crop files a pass reads, in row order, and each one's margin for the backbone (NaN for a
    dataset's own face crop: `crop_margins`)."""

    paths: Sequence[Path]
    margins: np.ndarray


@dataclass(frozen=True)
class FeaturePass:
    """One resumable pass: the columns `embed` returns (`feature_dim` features, then `published_outputs`
    published model outputs and `published_inputs` inputs of the published layers), the model's input
    size and batching, and the scratch folder whose progress a pass with the same `fingerprint` resumes."""

    work_dir: Path
    fingerprint: str
    input_size: int
    batch_size: int
    feature_dim: int
    published_outputs: int = 0
    published_inputs: int = 0
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    reader: str = "tf"   # BackboneSpec.reader, a key of READERS: how the crop files are read and resized

    def widths(self) -> dict[str, int]:
        """Each output file's number of columns, in the order `embed` returns them."""
        return {FEATURES_FILE: self.feature_dim, PUBLISHED_FILE: self.published_outputs,
                PUBLISHED_INPUTS_FILE: self.published_inputs}


def extract_features(
    embed: Embed,
    crops: Crops,
    plan: FeaturePass,
    *,
    on_chunk_done: Callable[[int], None] | None = None,
    show_progress: bool | None = None,
) -> None:
    """Run `embed` (uint8 batches and their margins -> the plan's columns) over the crops into
    work_dir/features.npy (the first `feature_dim` columns, float16) and, when the plan has published
    outputs, work_dir/published.npy (the next ones, float32) and published_inputs.npy (the last ones,
    float16), resuming an interrupted pass.

    `on_chunk_done(chunk_index)` is called after each chunk is safely on disk. `show_progress`
    None shows a bar on a terminal and a line now and then elsewhere (`core.progress`).
    """
    work_dir, paths, margins = Path(plan.work_dir), crops.paths, crops.margins
    widths = plan.widths()
    shapes = {name: (len(paths), width) for name, width in widths.items() if width}
    columns = dict(zip(widths, np.split(np.arange(sum(widths.values())), np.cumsum(list(widths.values()))[:-1])))
    arrays, progress = _open_or_start(work_dir, plan.fingerprint, shapes, plan.chunk_rows)
    chunks = chunk_bounds(len(paths), plan.chunk_rows, plan.batch_size)
    pending = [i for i in range(len(chunks)) if i not in set(progress["done"])]
    rows = [r for i in pending for r in range(*chunks[i])]
    batches = iter(READERS[plan.reader]([paths[r] for r in rows], rows, plan.input_size, plan.batch_size))
    position, started = 0, time.perf_counter()
    with progress_display(len(paths), "features", "img", show=show_progress, initial=len(paths) - len(rows)) as bar:
        if progress["done"]:
            bar.write(f"features: resuming, {len(progress['done'])} of {len(chunks)} chunks already written")
        while (item := _next_batch(batches, paths, rows, position)) is not None:
            batch_rows = np.asarray(item[0])
            batch = _checked_finite(np.asarray(embed(item[1], margins[batch_rows])), batch_rows)
            for name, array in arrays.items():
                array[batch_rows] = batch[:, columns[name][0]:columns[name][-1] + 1]
            position += len(batch_rows)
            bar.update(len(batch_rows))
            while pending and chunks[pending[0]][1] <= batch_rows[-1] + 1:
                for array in arrays.values():
                    array.flush()
                chunk = pending.pop(0)
                elapsed, started = time.perf_counter() - started, time.perf_counter()
                progress["done"].append(chunk)
                progress["rows_computed"] += chunks[chunk][1] - chunks[chunk][0]
                progress["seconds"] += elapsed
                _write_json(work_dir / PROGRESS_FILE, progress)
                if on_chunk_done is not None:
                    on_chunk_done(chunk)
    del arrays


def _checked_finite(batch: np.ndarray, batch_rows: np.ndarray) -> np.ndarray:
    if not np.isfinite(batch.astype(FEATURE_DTYPE)).all():
        raise FeaturesError(
            f"features of rows {int(batch_rows[0])}..{int(batch_rows[-1])} overflow float16 (|x| > 65504): "
            "the backbone's weights are not the ones this pipeline expects"
        )
    return batch


def run_features(
    manifest: pd.DataFrame,
    params,
    out_dir: Path,
    *,
    root: Path = Path("."),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_chunk_done: Callable[[int], None] | None = None,
    show_progress: bool | None = None,
) -> dict:
    """The whole stage on a manifest: check inputs, load the params' backbone, run or resume the pass in
    `partial_dir(out_dir)`, then write the finished outputs into out_dir. Returns the meta written.
    A finished pass over the same inputs already in out_dir is kept as it is (its meta returned)."""
    import keras
    import tensorflow as tf

    root, out_dir = Path(root), Path(out_dir)
    work_dir = partial_dir(out_dir)
    if manifest.empty:
        raise FeaturesError("the manifest has no rows: nothing to compute features for (check the split stage)")
    duplicated = manifest["id"][manifest["id"].duplicated()]
    if len(duplicated):
        raise FeaturesError(
            f"the manifest repeats ids, e.g. {list(duplicated[:3])}: ids must be unique (prepare stage)"
        )
    paths = crop_files(manifest, root)
    spec = describe(params.backbone)
    weights_dir = root / params.paths.weights
    weights_file = None if spec.weights_file is None else weights_dir / spec.weights_file
    if weights_file is not None and not weights_file.is_file():
        raise FileNotFoundError(
            f"{weights_file} not found: the {spec.name} weights are fetched by the download stage; run "
            f"`python -m stages.download --only {' '.join(spec.weights)}` (or `dvc repro download`)")
    config = {
        "backbone": params.backbone.model_dump(),
        "crop_margin": params.crop.margin,
        "spec": spec.as_dict(),
        "seed": params.seed,
        "weights_sha256": sha256_file(weights_file) if weights_file is not None else None,
        "precision": keras.mixed_precision.global_policy().name,
        "dtype": np.dtype(FEATURE_DTYPE).name,
        "preprocessing": PREPROCESSING,
    }
    fingerprint = inputs_fingerprint(list(manifest["id"]), paths, config)
    finished = _finished_meta(out_dir, fingerprint)
    if finished is not None:
        return finished
    _, embed = load(params.backbone, params.seed, weights_dir)
    plan = FeaturePass(work_dir=work_dir, fingerprint=fingerprint, input_size=spec.input_size,
                       batch_size=params.backbone.batch_size, feature_dim=spec.feature_dim,
                       published_outputs=spec.published_outputs, published_inputs=spec.published_inputs,
                       chunk_rows=chunk_rows, reader=spec.reader)
    extract_features(embed, Crops(paths, crop_margins(manifest, params.crop.margin)), plan,
                     on_chunk_done=on_chunk_done, show_progress=show_progress)
    meta = {
        **config,
        "fingerprint": fingerprint,
        "file": FEATURES_FILE,
        "shape": [len(paths), spec.feature_dim],
        **({"published_file": PUBLISHED_FILE, "published_shape": [len(paths), spec.published_outputs]}
           if spec.published_outputs else {}),
        **({"published_inputs_file": PUBLISHED_INPUTS_FILE, "published_inputs_shape": [len(paths), spec.published_inputs]}
           if spec.published_inputs else {}),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
    }
    return _finish(work_dir, out_dir, list(manifest["id"]), meta)


def _finished_meta(out_dir: Path, fingerprint: str) -> dict | None:
    """The meta of a finished pass already in out_dir with these very inputs (nothing to redo), else None.

    The features stage's own folder is deleted by DVC before it runs; this matters where the folder
    persists, as the compare stage's caches of the other backbones do."""
    meta_path = Path(out_dir) / META_FILE
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("fingerprint") != fingerprint or not (Path(out_dir) / meta["file"]).exists():
        return None
    return meta


def _finish(work_dir: Path, out_dir: Path, ids: list[str], meta: dict) -> dict:
    """Move a complete pass into out_dir with its index, write meta.json last (it marks
    the folder complete for `read_features`), then drop the scratch folder. The features file is
    moved, not copied (same file system): it can be tens of GB."""
    progress = json.loads((work_dir / PROGRESS_FILE).read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)
    # os.replace swaps a link into DVC's cache for the new file; it never writes through the link.
    os.replace(work_dir / FEATURES_FILE, out_dir / FEATURES_FILE)
    for key, name in (("published_file", PUBLISHED_FILE), ("published_inputs_file", PUBLISHED_INPUTS_FILE)):
        (out_dir / name).unlink(missing_ok=True)
        if key in meta:
            os.replace(work_dir / name, out_dir / name)
    pd.DataFrame({"id": ids, "row": np.arange(len(ids), dtype=np.int64)}).to_parquet(out_dir / INDEX_FILE, index=False)
    _write_json(out_dir / META_FILE, meta)
    shutil.rmtree(work_dir)
    seconds = progress["seconds"]
    return {**meta, "throughput": {  # returned, not written: meta.json stays the same for the same inputs
        "images_per_second": round(progress["rows_computed"] / seconds, 2) if seconds > 0 else 0.0,
        "images": progress["rows_computed"],
        "seconds": round(seconds, 3),
    }}


def read_features(features_dir: Path) -> FeatureStore:
    """The cached features, memory-mapped read-only, with their index and meta; FeaturesError when the
    pass is unfinished or the files disagree."""
    features_dir = Path(features_dir)
    if not (features_dir / META_FILE).exists() or not (features_dir / FEATURES_FILE).exists():
        raise FeaturesError(f"{features_dir} holds no finished features pass: run `dvc repro features`")
    meta = json.loads((features_dir / META_FILE).read_text())
    values = np.load(features_dir / meta["file"], mmap_mode="r")
    index = pd.read_parquet(features_dir / INDEX_FILE)
    if list(values.shape) != meta["shape"] or len(index) != values.shape[0]:
        raise FeaturesError(
            f"{features_dir}: features {values.shape}, meta {meta['shape']} and index ({len(index)} rows) disagree: "
            "run `dvc repro features`"
        )
    published, published_inputs = (_extra_array(features_dir, meta, key) for key in ("published", "published_inputs"))
    return FeatureStore(values, index, meta, published, published_inputs)


def _extra_array(features_dir: Path, meta: dict, key: str) -> np.ndarray | None:
    """meta's `<key>_file`, memory-mapped, checked against `<key>_shape`; None where the pass has none."""
    if f"{key}_file" not in meta:
        return None
    array = np.load(features_dir / meta[f"{key}_file"], mmap_mode="r")
    if list(array.shape) != meta[f"{key}_shape"]:
        raise FeaturesError(f"{features_dir}: {meta[f'{key}_file']} is {array.shape}, meta says "
                            f"{meta[f'{key}_shape']}: run `dvc repro features`")
    return array


@dataclass(frozen=True)
class Features:
    """The features memmap (N, D) float16 and the row of each manifest id in it; `published`: the
    published model's own outputs (N, P) float32 where the backbone stores them (see PUBLISHED_FILE),
    and `published_inputs` what its published heads read (N, Q) float16 (PUBLISHED_INPUTS_FILE)."""

    array: np.ndarray
    row_of: pd.Series  # index: manifest id, value: row in `array`
    published: np.ndarray | None = None
    published_inputs: np.ndarray | None = None

    def reading(self, inputs: str) -> "Features":
        """These features as heads that read `inputs` see them: `features` (the cached rows) or
        `published_inputs` (what the published heads read; FeaturesError where none were stored)."""
        if inputs == "features":
            return self
        if inputs != "published_inputs" or self.published_inputs is None:
            raise FeaturesError(f"the features hold no {inputs}: only a backbone whose published heads are its own "
                                "output layers stores what they read; re-run `dvc repro features`")
        return Features(self.published_inputs, self.row_of, self.published, self.published_inputs)

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def rows_for(self, ids: Sequence[str]) -> np.ndarray:
        """Memmap rows of these manifest ids; FeaturesError naming the first ids that have none."""
        ids = pd.Index(ids)
        missing = ids[~ids.isin(self.row_of.index)]
        if len(missing):
            raise FeaturesError(f"{len(missing)} manifest rows have no features (e.g. {list(missing[:3])}): "
                                "re-run the features stage (`dvc repro features`)")
        return self.row_of.loc[ids].to_numpy(dtype=np.int64)


def open_features(directory: str | Path) -> Features:
    """The features stage's output in `directory`, memory-mapped read-only, rows looked up by id."""
    store = read_features(Path(directory))
    return Features(store.values, pd.Series(store.index["row"].to_numpy(), index=store.index["id"].to_numpy()),
                    store.published, store.published_inputs)
