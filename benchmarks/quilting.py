"""Image quilting: the notebook's vectorised block search against a loop over candidate blocks.

    .venv/bin/python -m benchmarks.quilting [--sample 128] [--block 48] [--sizes 128 256 512]

Loads ``quilt``, ``overlap_error`` and ``overlap_error_loop`` from the cells tagged ``testable``
in ``notebooks/03_image_quilting.ipynb`` (so it times exactly the notebook's code), quilts the
same sample at several output sizes with each search (same seed, same choices up to float
round-off) and prints a Markdown table of CPU and wall times and the speed-up. Target (issue 4):
a 512×512 output from 48-pixel blocks in under 2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch  # noqa: E402

from course_kit.nbrun import tagged_namespace  # noqa: E402
from course_lib import samples  # noqa: E402


def timed(fn, *args) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for one call of ``fn(*args)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=128, help="side of the texture sample")
    parser.add_argument("--block", type=int, default=48)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--loop-max", type=int, default=512, help="largest size for the loop")
    args = parser.parse_args()

    ns = tagged_namespace(ROOT / "notebooks/03_image_quilting.ipynb")
    quilt, loop_search = ns["quilt"], ns["overlap_error_loop"]
    texture = samples.load_sample("bricks", args.sample, channels=3)
    block, overlap = args.block, args.block // 6

    def run(size: int, search=None):
        g = torch.Generator().manual_seed(0)
        return quilt(texture, size, block=block, overlap=overlap, generator=g, search=search,
                     progress=False)  # fmt: skip

    run(64)  # warm-up (first conv call initialises the backend)
    print(
        f"image quilting, sample {args.sample}×{args.sample} ('bricks'), block {block}, overlap "
        f"{overlap}, method 'cut', ε = 0.1; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| output | blocks | vectorised CPU s | wall s | loop CPU s | wall s | speed-up (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        step = block - overlap
        n = max(1, -(-(size - overlap) // step)) ** 2
        fast_cpu, fast_wall = timed(run, size)
        if size <= args.loop_max:
            slow_cpu, slow_wall = timed(run, size, loop_search)
            slow = f"{slow_cpu:.2f} | {slow_wall:.2f} | {slow_cpu / fast_cpu:.0f}×"
        else:
            slow = "— | — | —"
        print(f"| {size}×{size} | {n} | {fast_cpu:.3f} | {fast_wall:.3f} | {slow} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
