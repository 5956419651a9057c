"""Weight files built by the tests exactly like the published VGG-Face ones (Keras-2 `save_weights`
HDF5, the layout stages/lib/backbones/h5weights.py reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np


def write_keras2_weights(path: str | Path, named_weights: Sequence[tuple[str, Sequence[np.ndarray]]]) -> None:
    """Write layers in the Keras-2 `save_weights` layout. A layer with no arrays is written weightless.

    Two arrays are named kernel and bias (as Keras 2 named Conv2D/Dense weights); other counts
    `param_<i>`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in named_weights])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for layer_name, arrays in named_weights:
            group = handle.create_group(layer_name)
            suffixes = ["kernel", "bias"] if len(arrays) == 2 else [f"param_{i}" for i in range(len(arrays))]
            weight_names = [f"{layer_name}/{suffix}:0" for suffix in suffixes]
            group.attrs["weight_names"] = np.array([n.encode("utf8") for n in weight_names], dtype="S")
            for weight_name, array in zip(weight_names, arrays):
                group.create_dataset(weight_name, data=np.asarray(array))
