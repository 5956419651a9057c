"""VGG-Face's feature shape, without TensorFlow: the registry describes the backbone from it, and the
stages that only need the description (params, download) never pay TensorFlow's import."""

from __future__ import annotations

from typing import Sequence

CUTS = ("pool5",)


def cut_shape(input_size: int, conv_widths: Sequence[int], cut: str = "pool5") -> tuple[int, int, int]:
    """The trunk's output shape (k, k, C5) for one image, without building anything."""
    if cut not in CUTS:
        raise ValueError(f"cut {cut!r} is not supported; allowed: {', '.join(CUTS)}")
    k = input_size // 32
    return (k, k, int(conv_widths[-1]))
