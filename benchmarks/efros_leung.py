"""Efros-Leung: the vectorised version against the loop version, on the same inputs.

    .venv/bin/python -m benchmarks.efros_leung [--cases 24:32:7 32:48:11 64:128:11] [--full]

Both functions are loaded from notebooks/02_efros_leung.ipynb (its cells tagged ``testable``),
so this measures exactly the notebook's code. Each case ``S:O:K`` grows an O×O texture from the
S×S ``rocks`` sample with a K×K window, with the same seed for both versions, and checks that
the two outputs are identical. The loop version costs the same per pixel whatever the output
size (every pixel scans all N windows), so for outputs above ``--loop-max`` pixels it is run on
a smaller output from the same sample and window and its time is scaled by the pixel count
(marked "est."); ``--full`` runs it on every case instead. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from course_kit.nbrun import tagged_namespace  # noqa: E402
from course_lib import samples  # noqa: E402
from course_lib.device import Timer  # noqa: E402


def run(el: dict, fn: str, sample, out: int, window: int, device) -> tuple[float, float, object]:
    """Grow ``out``² from ``sample`` with ``el[fn]``; returns (wall s, CPU s, image)."""
    canvas, known = el["new_canvas"](sample, out, generator=torch.Generator().manual_seed(0))
    kw = dict(window=window, generator=torch.Generator().manual_seed(1), progress=False)
    cpu = time.process_time()
    with Timer(device) as t:
        image, _ = el[fn](sample, canvas, known, **kw)
    return t.elapsed, time.process_time() - cpu, image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["24:32:7", "32:48:11", "64:128:11"])
    parser.add_argument("--loop-max", type=int, default=48 * 48, help="largest loop output")
    parser.add_argument("--full", action="store_true", help="run the loop version everywhere")
    parser.add_argument("--device", default="cpu", help="device for the fast version")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    el = tagged_namespace(ROOT / "notebooks" / "02_efros_leung.ipynb")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fast on {device}\n"
    )
    print(
        "| sample | output | window | windows N | loop wall / CPU (s) | fast wall / CPU (s) "
        "| speed-up wall / CPU | same output |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        s, o, k = (int(v) for v in case.split(":"))
        sample = samples.load_sample("rocks", s, channels=3)
        n = (s - k + 1) ** 2
        t_fast, cpu_fast, fast = run(el, "efros_leung_fast", sample.to(device), o, k, device)
        if args.full or o * o <= args.loop_max:
            t_loop, cpu_loop, loop = run(el, "efros_leung_loop", sample, o, k, "cpu")
            same, est = str(torch.equal(loop, fast.cpu())), ""
        else:
            small = int(args.loop_max**0.5)
            t_small, cpu_small, _ = run(el, "efros_leung_loop", sample, small, k, "cpu")
            scale = (o * o - 9) / (small * small - 9)  # the 3x3 seed is given
            t_loop, cpu_loop = t_small * scale, cpu_small * scale
            same, est = "(loop not run)", f" est. from {small}²"
        print(
            f"| {s}² | {o}² | {k} | {n} | {t_loop:.1f} / {cpu_loop:.1f}{est} | "
            f"{t_fast:.2f} / {cpu_fast:.2f} | {t_loop / t_fast:.0f}× / {cpu_loop / cpu_fast:.0f}× "
            f"| {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
