"""Efros-Leung: the kit's vectorised search against the loop version and against a peer.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.efros_leung --threads 1 \
        [--cases 32:48:11 64:128:11] [--rounds 3] [--slow-rounds 1] [--device cpu]

Each case ``S:O:K`` grows an O×O texture from the S×S ``rocks`` sample with a K×K window. In
one run, on the same inputs, it times:

* **loop**: notebook 02's ``efros_leung_loop`` (one pixel, then one candidate window, at a time),
  run for real at every size;
* **peer (grey)**: ``benchmarks/peers/efros_leung_peer.py``, our re-implementation of the popular
  Python port's published loop (per pixel, one NumPy expression over all windows; it matches on
  the grey sample, as published);
* **kit**: ``course_lib.efros_leung.grow``, which tests/test_efros_leung.py proves equal to
  notebook 02's ``efros_leung_fast`` (same output for the same seed), on the RGB sample and on
  its luminance (grey, the peer's input).

* **floor**: what the kit's search cannot avoid, its float32 products: the same products
  (one ``(B × n) @ (n × N)`` per dependency level, with the level sizes ``B`` recorded from a
  kit run) replayed alone on random data ("products" column), and the search's
  multiply-adds at the rate of one large ``1024²`` product on this machine ("GEMM rate"). "kit
  vs floor" divides the kit's RGB time by the replayed products: what the per-level work
  besides the product (indexing, the exact re-measure, the schedule) costs on top.

Times are CPU seconds of this process (``time.process_time``; on a machine shared with other
jobs they are steadier than wall time); the kit runs ``--rounds`` times (median, min–max), the
loop and the peer ``--slow-rounds`` times, rounds interleaved. "same as loop" says whether the
kit's RGB image and source map equal the loop's. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from benchmarks.peers import efros_leung_peer as peer
from course_kit.nbrun import tagged_namespace
from course_lib import efros_leung, images, samples
from course_lib.device import synchronize

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, *args, device="cpu", **kw):
    """(CPU seconds, wall seconds, result) of one call."""
    synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args, **kw)
    synchronize(device)
    return time.process_time() - cpu, time.perf_counter() - wall, out


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} [{min(values):.2f}–{max(values):.2f}]"


def level_sizes(grow, *args, **kw) -> list[int]:
    """The batch size ``B`` of every dependency level of one ``grow`` call (each level makes
    one ``_pick_exact`` call with its ``near`` mask ``(B, N)``)."""
    sizes, pick = [], efros_leung._pick_exact

    def recording(patches64, templates, known, gauss64, near, u, eps):
        sizes.append(near.shape[0])
        return pick(patches64, templates, known, gauss64, near, u, eps)

    efros_leung._pick_exact = recording
    try:
        grow(*args, **kw)
    finally:
        efros_leung._pick_exact = pick
    return sizes


def floor_seconds(sizes: list[int], n: int, windows: int) -> tuple[float, float]:
    """CPU seconds of the kit's products replayed alone (float32 ``(B × n) @ (n × N)`` per
    level), and of their multiply-adds at the rate of a large ``1024²`` float32 product."""
    gen = torch.Generator().manual_seed(0)
    bank = torch.rand(n, windows, generator=gen)
    lhs = torch.rand(max(sizes), n, generator=gen)
    out = torch.empty(max(sizes), windows)
    torch.mm(lhs[: sizes[0]], bank, out=out[: sizes[0]])  # warm-up
    cpu = time.process_time()
    for b in sizes:
        torch.mm(lhs[:b], bank, out=out[:b])
    replayed = time.process_time() - cpu
    big = torch.rand(1024, 1024, generator=gen)
    big @ big  # warm-up
    cpu, reps = time.process_time(), 5
    for _ in range(reps):
        big @ big
    rate = reps * 1024**3 / (time.process_time() - cpu)  # multiply-adds per CPU second
    return replayed, sum(sizes) * n * windows / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["32:48:11", "64:128:11"])
    parser.add_argument("--rounds", type=int, default=3, help="runs of the kit per case")
    parser.add_argument("--slow-rounds", type=int, default=1, help="runs of loop and peer")
    parser.add_argument("--device", default="cpu", help="device for the kit")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    el = tagged_namespace(ROOT / "notebooks" / "02_efros_leung.ipynb")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, kit on {device}; "
        f"CPU seconds, median [min–max] of {args.rounds} (kit) and {args.slow_rounds} "
        "(loop, peer) interleaved runs\n"
    )
    print(
        "| sample | output | window | windows N | loop CPU s | peer (grey) CPU s "
        "| kit RGB CPU s | kit grey CPU s | kit vs loop (RGB) | kit vs peer (grey) "
        "| same as loop | levels | floor: products CPU s | floor: GEMM rate s | kit vs floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        s, o, k = (int(v) for v in case.split(":"))
        rgb = samples.load_sample("rocks", s, channels=3)
        grey = images.luminance(rgb)
        n = (s - k + 1) ** 2
        canvas, known = el["new_canvas"](rgb, o, generator=torch.Generator().manual_seed(0))
        grey_canvas = images.luminance(canvas)
        t = {"loop": [], "peer": [], "rgb": [], "grey": []}
        same = True
        for r in range(max(args.rounds, args.slow_rounds)):
            if r < args.slow_rounds:
                cpu, _, (loop, src_loop) = timed(
                    el["efros_leung_loop"], rgb, canvas, known, window=k,
                    generator=torch.Generator().manual_seed(1), progress=False,
                )  # fmt: skip
                t["loop"].append(cpu)
                sample_np = grey[0].permute(1, 2, 0).double().numpy()
                t["peer"].append(timed(peer.synthesise, sample_np, o, k, seed=r)[0])
            if r < args.rounds:
                cpu, _, (fast, src_fast) = timed(
                    efros_leung.grow, rgb.to(device), canvas.to(device), known.to(device),
                    window=k, generator=torch.Generator().manual_seed(1), progress=False,
                    device=device,
                )  # fmt: skip
                t["rgb"].append(cpu)
                same = (
                    same and torch.equal(fast.cpu(), loop) and torch.equal(src_fast.cpu(), src_loop)
                )
                t["grey"].append(
                    timed(
                        efros_leung.grow, grey.to(device), grey_canvas.to(device),
                        known.to(device), window=k, generator=torch.Generator().manual_seed(1),
                        progress=False, device=device,
                    )[0]
                )  # fmt: skip
        sizes = level_sizes(
            efros_leung.grow, rgb, canvas, known, window=k,
            generator=torch.Generator().manual_seed(1), progress=False,
        )  # fmt: skip
        products, gemm_rate = floor_seconds(sizes, (rgb.shape[1] + 1) * k * k, n)
        med = {key: statistics.median(v) for key, v in t.items()}
        ratio = {
            key: med[a] / med[b]
            for key, a, b in (("loop", "loop", "rgb"), ("peer", "peer", "grey"))
        }
        ratio = {key: f"{v:.1f}×" if v < 10 else f"{v:.0f}×" for key, v in ratio.items()}
        print(
            f"| {s}² | {o}² | {k} | {n} | {spread(t['loop'])} | {spread(t['peer'])} "
            f"| {spread(t['rgb'])} | {spread(t['grey'])} | {ratio['loop']} | {ratio['peer']} "
            f"| {same} | {len(sizes)} | {products:.2f} | {gemm_rate:.2f} "
            f"| {med['rgb'] / products:.1f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
