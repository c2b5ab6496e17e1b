"""Image quilting: notebook 03's ``quilt`` against a faithful re-implementation of a peer's loop.

    .venv/bin/python -m benchmarks.quilting [--sample 128] [--block 48] [--sizes 128 256 512]
                                           [--rounds 3] [--peer-max 512] [--threads 1]

Loads ``quilt`` from the cells tagged ``testable`` in ``notebooks/03_image_quilting.ipynb`` (so
it times exactly the notebook's code: FFT block search with the sample's spectrum computed once,
the L-shaped cut by a (min, +) scan, float32) and, in the same run, on the same sample,
``benchmarks.peers.quilting_peer.quilt_peer`` (the popular Python quilting notebook's loop, re-
written: a Python loop over every candidate position per block, Dijkstra seams, float64). The
two alternate for ``--rounds`` rounds; the table gives the median CPU time of this process and
the spread (min–max) over the rounds, and the median wall time. Target (issue 19): the
notebook's 512×512 output from 48-pixel blocks in at most 0.2 s at one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch  # noqa: E402

from benchmarks.peers.quilting_peer import quilt_peer  # noqa: E402
from course_kit.nbrun import tagged_namespace  # noqa: E402
from course_lib import images, samples  # noqa: E402


def timed(fn, *args) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for one call of ``fn(*args)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def spread(values: list[float]) -> str:
    """``median (min–max)`` with 3 significant digits."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=128, help="side of the texture sample")
    parser.add_argument("--block", type=int, default=48)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-max", type=int, default=512, help="largest size for the peer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ns = tagged_namespace(ROOT / "notebooks/03_image_quilting.ipynb")
    quilt = ns["quilt"]
    texture = samples.load_sample("bricks", args.sample, channels=3, device=args.device)
    as_numpy = images.to_numpy(texture.cpu())[0].astype("float64")  # (H, W, 3) like img_as_float
    block, overlap = args.block, args.block // 6

    def ours(size: int):
        out = quilt(texture, size, block=block, overlap=overlap,
                    generator=torch.Generator().manual_seed(0), progress=False)  # fmt: skip
        if out.is_cuda:
            torch.cuda.synchronize()

    ours(64)  # warm-up (first FFT call initialises the backend)
    print(
        f"image quilting, sample {args.sample}×{args.sample} ('bricks'), block {block}, overlap "
        f"{overlap}; ours: method 'cut', ε = 0.1, on {args.device}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.rounds} alternating rounds, median (min–max)\n"
    )
    header = "| output | blocks | ours CPU s | ours wall s | peer CPU s | peer wall s"
    print(header + " | peer / ours (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        step = block - overlap
        n = max(1, -(-(size - overlap) // step)) ** 2
        mine, peer = [], []
        for _ in range(args.rounds):
            mine.append(timed(ours, size))
            if size <= args.peer_max:
                peer.append(timed(quilt_peer, as_numpy, size, block))
        cpu, wall = [m[0] for m in mine], [m[1] for m in mine]
        row = f"| {size}×{size} | {n} | {spread(cpu)} | {statistics.median(wall):.3g} |"
        if peer:
            pcpu, pwall = [p[0] for p in peer], [p[1] for p in peer]
            ratio = statistics.median(pcpu) / statistics.median(cpu)
            row += f" {spread(pcpu)} | {statistics.median(pwall):.3g} | {ratio:.0f}× |"
        else:
            row += " — | — | — |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
