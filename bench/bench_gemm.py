"""What the cores can do: GFLOP/s of a plain float32 matrix product (numpy's BLAS, every core), the
floor every pass's rate is held against in docs/performance.md (FLOPs per face x faces / GFLOP/s).

    python bench/bench_gemm.py [--size 2048] [--repeats 5]

Prints the best of `repeats` products of two size x size matrices (2 size^3 FLOPs each), and the
median, so that a busy machine shows as a spread between the two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def gemm_gflops(size: int, repeats: int) -> list[float]:
    """GFLOP/s of each of `repeats` float32 products of two size x size matrices (after one warm-up)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rates = gemm_gflops(args.size, args.repeats)
    print(f"float32 GEMM {args.size}x{args.size}, {os.cpu_count()} cores: best {max(rates):.1f} GFLOP/s, "
          f"median {statistics.median(rates):.1f} GFLOP/s over {args.repeats} products")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
