"""Torch threads by workload: 1 and 2 threads, on an idle machine and with another process busy.

The kit's thread policy (``course_lib/threads.py``, applied by ``pick_device()``) rests on this
table. Four workloads stand for the notebooks' kinds of work:

* ``small-matmul``: Efros–Leung's search, many float64 products of about 15 rows (notebook 02);
* ``fft``: quilting's FFT correlation of a block with the sample (notebook 03);
* ``vgg``: a VGG-19 (random weights) forward + backward to the pixels up to relu5_1, as one step
  of Gatys synthesis / style transfer (notebooks 05–09, 15) at quick (64²) or default size;
* ``gan``: a training step of the kit's U-Net generator and PatchGAN discriminator at 32²,
  batch 8, width 8 (notebooks 10–14 in quick mode).

"busy" starts one extra process that spins on the CPU for the duration (another notebook, a
browser, another user): on a 2-core machine, one core is then taken. Each cell is the median
wall time of ``--repeats`` runs; the conditions alternate so that drift hits them alike.

    OMP_NUM_THREADS=  python -m benchmarks.threads             # the full table (about 2 min)
    python -m benchmarks.threads --scale 0.05 --repeats 1      # a tiny run (the test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch


def small_matmul(scale: float) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(15, 363, dtype=torch.float64, generator=gen)
    b = torch.rand(363, 2916, dtype=torch.float64, generator=gen)
    n = max(1, int(400 * scale))

    def run() -> None:
        for _ in range(n):
            (a @ b).argmin()

    return run


def fft(scale: float) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    sample = torch.rand(3, 176, 176, generator=gen)
    block = torch.rand(3, 48, 8, generator=gen)
    n = max(1, int(170 * scale))

    def run() -> None:
        for _ in range(n):
            f = torch.fft.rfft2(sample) * torch.fft.rfft2(block, s=sample.shape[-2:]).conj()
            torch.fft.irfft2(f, s=sample.shape[-2:]).sum(0).argmin()

    return run


def vgg(scale: float, size: int) -> Callable[[], None]:
    from course_lib.features import VGGFeatures

    net = VGGFeatures(["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], weights="random")
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    n = max(1, int((20 if size <= 64 else 5) * scale))

    def run() -> None:
        for _ in range(n):
            img = x.clone().requires_grad_(True)
            sum(f.square().mean() for f in net(img).values()).backward()

    return run


def gan(scale: float) -> Callable[[], None]:
    from course_lib.nets import PatchDiscriminator, UNetGenerator

    torch.manual_seed(0)
    g, d = UNetGenerator(ngf=8), PatchDiscriminator(ndf=8)
    opt = torch.optim.Adam(list(g.parameters()) + list(d.parameters()), 2e-4)
    x = torch.rand(8, 3, 32, 32)
    n = max(1, int(40 * scale))

    def run() -> None:
        for _ in range(n):
            opt.zero_grad()
            y = g(x)
            (d(y).mean() + (y - x).abs().mean()).backward()
            opt.step()

    return run


WORKLOADS: dict[str, Callable[[float], Callable[[], None]]] = {
    "small-matmul (E–L, 02)": small_matmul,
    "fft (quilting, 03)": fft,
    "vgg 64² (quick 05–09, 15)": lambda s: vgg(s, 64),
    "vgg 128² (default on a CPU)": lambda s: vgg(s, 128),
    "gan 32² (10–14)": gan,
}


def busy_process() -> subprocess.Popen:
    """Another process spinning on one core until it is stopped."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="work per run (1: about 1 s)")
    parser.add_argument("--only", nargs="*", default=None, help="workload name prefixes")
    args = parser.parse_args(argv)

    names = [n for n in WORKLOADS if not args.only or any(n.startswith(o) for o in args.only)]
    conds = [(t, busy) for busy in (False, True) for t in args.threads]
    print(
        f"cores: {os.cpu_count()}, torch {torch.__version__}, load average before: "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}",
        file=sys.stderr,
    )
    head = " | ".join(f"{t} thr {'busy' if b else 'idle'} (s)" for t, b in conds)
    print(f"| workload | {head} | best idle | best busy | 2 thr vs 1, busy |")
    print("|---|" + "---|" * (len(conds) + 3))
    for name in names:
        run = WORKLOADS[name](args.scale)
        run()  # warm-up: allocations, kernels chosen
        times: dict[tuple[int, bool], list[float]] = {c: [] for c in conds}
        for busy in (False, True):
            other = busy_process() if busy else None
            try:
                time.sleep(0.2 if busy else 0)
                for _ in range(args.repeats):
                    for t in args.threads:
                        torch.set_num_threads(t)
                        start = time.perf_counter()
                        run()
                        times[(t, busy)].append(time.perf_counter() - start)
            finally:
                if other is not None:
                    other.kill()
                    other.wait()
        med = {c: statistics.median(v) for c, v in times.items()}
        best = {
            b: min((c for c in conds if c[1] == b), key=lambda c: med[c])[0] for b in (False, True)
        }
        ratio = (
            f"{med[(2, True)] / med[(1, True)]:.2f}×"
            if (2, True) in med and (1, True) in med
            else "-"
        )
        cells = " | ".join(f"{med[c]:.2f}" for c in conds)
        print(f"| {name} | {cells} | {best[False]} | {best[True]} | {ratio} |", flush=True)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}", file=sys.stderr)


if __name__ == "__main__":
    main()
