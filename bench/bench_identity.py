"""The identity pass (dlib's descriptor) in 1 and in N worker processes, on the same faces, in one run.

    python bench/bench_identity.py [--faces 256] [--workers 2] [--folder ../shared/datasets/utkface-aligned-sample]

Reads the first --faces photos of --folder (real UTKFace chips by default; drawn synthetic faces where
the folder is absent), resizes them to the identity pass's 224 px, and embeds them in batches of 64
(as the features store feeds them) in one process, then with `PooledEmbedder(workers)`. Prints both
rates (faces/s), their ratio (goal >= 1.8 on 2 idle cores), the CPU seconds used per wall second,
the load average (other work on the machine lowers the ratio) and whether the descriptors are identical.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.backbones.dlib_resnet import PooledEmbedder, load_dlib_models, margin_embedder  # noqa: E402
from stages.lib.core.timing import cpu_seconds  # noqa: E402
from stages.lib.splitting.identity import IDENTITY_BATCH_SIZE, IDENTITY_INPUT_SIZE  # noqa: E402

DEFAULT_FOLDER = ROOT.parent / "shared" / "datasets" / "utkface-aligned-sample"


def load_faces(folder: Path, count: int) -> np.ndarray:
    paths = sorted(folder.glob("*.jpg"))[:count]
    if not paths:
        raise SystemExit(f"bench_identity: no .jpg photos in {folder}: pass --folder")
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]
    size = (IDENTITY_INPUT_SIZE, IDENTITY_INPUT_SIZE)
    return np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images])


def timed_pass(embed, images: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(descriptors, wall s, CPU s of this process and its finished children) over batches of the pass's size."""
    margins = np.full(len(images), np.nan)
    wall, cpu = time.perf_counter(), cpu_seconds()
    rows = [embed(images[start:start + IDENTITY_BATCH_SIZE], margins[start:start + IDENTITY_BATCH_SIZE])
            for start in range(0, len(images), IDENTITY_BATCH_SIZE)]
    return np.concatenate(rows), time.perf_counter() - wall, cpu_seconds() - cpu


def warm_pool(workers: int, images: np.ndarray) -> PooledEmbedder:
    """A pool whose workers have started and loaded dlib's models (what the timed pass leaves out)."""
    pooled = PooledEmbedder(workers)
    pooled(images[:workers], np.full(workers, np.nan))
    return pooled


def start_up_cpu(workers: int, images: np.ndarray) -> float:
    """CPU seconds of starting a pool and loading the models in its workers, measured on a pool of its own."""
    before = cpu_seconds()
    warm_pool(workers, images).close()
    return cpu_seconds() - before


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    images = load_faces(args.folder, args.faces)
    alone, alone_wall, alone_cpu = timed_pass(margin_embedder(load_dlib_models()), images)
    start_up = start_up_cpu(args.workers, images)
    cpu_before = cpu_seconds()
    pooled = warm_pool(args.workers, images)
    together, pooled_wall, _ = timed_pass(pooled, images)
    pooled.close()  # the workers' CPU seconds are counted once they are waited for
    pooled_cpu = cpu_seconds() - cpu_before - start_up
    print(f"{len(images)} faces from {args.folder}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"1 process:   {len(images) / alone_wall:6.1f} faces/s  ({alone_cpu / alone_wall:.2f} CPU s per wall s)")
    print(f"{args.workers} workers:   {len(images) / pooled_wall:6.1f} faces/s  "
          f"({pooled_cpu / pooled_wall:.2f} CPU s per wall s; wall time excludes the workers' start-up, CPU time too)")
    print(f"ratio {alone_wall / pooled_wall:.2f} (goal >= 1.8 on 2 idle cores); "
          f"descriptors identical: {np.array_equal(alone, together)}")
    # On a loaded machine the wall ratio says little; CPU seconds per face do not depend on the load:
    # with every worker given a core, the ratio would be workers x (CPU per face alone / pooled).
    alone_per_face, pooled_per_face = alone_cpu / len(images), pooled_cpu / len(images)
    print(f"CPU per face: {alone_per_face * 1000:.1f} ms alone, {pooled_per_face * 1000:.1f} ms pooled; ratio on "
          f"{args.workers} free cores: {args.workers * alone_per_face / pooled_per_face:.2f}")


if __name__ == "__main__":
    main()
