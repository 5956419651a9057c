"""Training cost per epoch: dense heads on cached pool5 features vs the study's whole-network fit.

    .venv/bin/python bench/bench_heads.py                  # 64 faces, 224 px, published widths (~2 min, 2 CPUs)
    .venv/bin/python bench/bench_heads.py --input-size 96 --fc-width 1024 --faces 32   # a quick look

Same faces, same run, same optimiser (Adam, cross-entropy) and head (fc6, fc7, 101-way softmax):
- study: VGG-Face with fc6 as a k x k convolution, everything before fc6 frozen, `fit` on the images
  (decoded and resized once, in memory: this favours the study's way), batch --study-batch-size;
- ours: the frozen trunk run once over the faces (the features stage: timed, but paid once), pool5
  cached as float16, then `fit` of `heads.build_head` on rows read from the cache in batches of
  --head-batch-size (the pipeline's train.batch_size). So that every step is a full batch, the head's
  epoch goes over the same faces' cached rows repeated up to 2 batches.
Each path is warmed up by one step (tracing), then timed over --epochs epochs. Both costs are linear
in the number of faces once batches are full, so the result is given per face and for an epoch of
--epoch-faces faces (default: a 60% train split of UTKFace's 23,708).
The faces are real UTKFace crops from ../shared/datasets when present, else random pixels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from stages.lib.backbones.vgg_face import backbone_trunk, build_vgg_face, preprocess  # noqa: E402
from stages.lib.heads.model import build_head  # noqa: E402
from stages.lib.heads.data import TaskRows  # noqa: E402
from stages.lib.heads.loop import Reshuffled, RowBatches, compile_for_fit  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "utkface-aligned-sample"


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def faces(count: int, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(images float32 in [0, 1], ages, where they came from)."""
    files = sorted(SAMPLE.glob("*.jpg"))[:count]
    if len(files) < count:
        rng = np.random.default_rng(0)
        return rng.uniform(size=(count, size, size, 3)).astype("float32"), rng.integers(0, 101, count), "random pixels"
    images = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    ages = np.array([min(int(f.name.split("_")[0]), 100) for f in files])
    return preprocess(images, size), ages, f"UTKFace crops from {SAMPLE}"


def seconds_per_epoch(model, data: tf.data.Dataset, epochs: int) -> list[float]:
    """Epoch times of `fit` after one warm-up step (which traces the training function)."""
    x, y = next(iter(data))
    model.train_on_batch(x, y)
    timer = EpochTimer()
    model.fit(data, epochs=epochs, callbacks=[timer], verbose=0, shuffle=False)
    return timer.seconds


def pool5_features(trunk: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    batches = [trunk.predict_on_batch(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(batches).reshape(len(images), -1).astype(np.float16)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--conv-widths", type=int, nargs=5, default=[64, 128, 256, 512, 512])
    parser.add_argument("--fc-width", type=int, default=4096)
    parser.add_argument("--study-batch-size", type=int, default=32)
    parser.add_argument("--head-batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per path, after a warm-up step")
    parser.add_argument("--epoch-faces", type=int, default=14_225, help="faces per epoch for the projection")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    images, ages, origin = faces(args.faces, args.input_size)
    print(f"{args.faces} faces ({origin}), {args.input_size} px, conv widths {args.conv_widths}, "
          f"fc width {args.fc_width}, device {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}")

    study = build_vgg_face(args.input_size, args.conv_widths, args.fc_width, head_classes=101, seed=1)
    trunk = backbone_trunk(study)  # shares the conv layers with `study` and freezes them there too
    started = time.perf_counter()
    cached = pool5_features(trunk, images, args.study_batch_size)
    features_seconds = time.perf_counter() - started

    head = build_head(cached.shape[1], args.fc_width, 101, dropout=0.5, name="age", seed=1)
    compile_for_fit(head, 1e-4)
    rows = np.resize(np.arange(args.faces), max(args.faces, 2 * args.head_batch_size))
    batches = RowBatches(cached, TaskRows(rows, ages[rows]), args.head_batch_size, Reshuffled(0))
    head_epochs = seconds_per_epoch(head, batches.dataset(), args.epochs)
    del head

    compile_for_fit(study, 1e-4)
    images_data = tf.data.Dataset.from_tensor_slices((images, ages)).batch(args.study_batch_size)
    study_epochs = seconds_per_epoch(study, images_data, args.epochs)

    study_face = float(np.mean(study_epochs)) / args.faces
    head_face = float(np.mean(head_epochs)) / len(rows)
    print(f"trainable parameters, both: {sum(int(np.prod(w.shape)) for w in study.trainable_weights):,}")
    print(f"study, whole network (fc6 as conv), batch {args.study_batch_size}: "
          f"{', '.join(f'{s:.2f}' for s in study_epochs)} s per epoch of {args.faces} faces "
          f"= {study_face * 1000:.1f} ms/face")
    print(f"dense heads on cached features, batch {args.head_batch_size}: "
          f"{', '.join(f'{s:.2f}' for s in head_epochs)} s per epoch of {len(rows)} rows "
          f"= {head_face * 1000:.2f} ms/face")
    print(f"features pass (paid once): {features_seconds:.1f} s = {features_seconds / args.faces * 1000:.1f} ms/face")
    print(f"epoch of {args.epoch_faces:,} faces: study {study_face * args.epoch_faces:,.0f} s, "
          f"dense heads {head_face * args.epoch_faces:,.0f} s")
    print(f"speed-up per epoch: {study_face / head_face:.1f}x")


if __name__ == "__main__":
    main()
