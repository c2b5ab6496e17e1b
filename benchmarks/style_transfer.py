"""Neural style transfer: time per step of notebook 07's loop vs a bare VGG forward + backward.

    .venv/bin/python -m benchmarks.style_transfer [--sizes 256 512] [--steps 3]

The loop is notebook 07's ``style_transfer`` (taken from the notebook's cells tagged
``testable``) run with Adam, so that every step is exactly one loss evaluation. The baseline is
one forward pass of the same VGG-19 up to the same layers and one backward pass to the pixels.
The loop's own overhead (Gram matrices, losses, optimiser, clamping) is the ratio minus one.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nbrun import tagged_namespace  # noqa: E402

from course_lib.device import pick_device, synchronize  # noqa: E402
from course_lib.features import VGGFeatures  # noqa: E402


def bare_step(vgg: VGGFeatures, image: torch.Tensor) -> None:
    x = image.detach().clone().requires_grad_(True)
    feats = vgg(x)
    sum(f.sum() for f in feats.values()).backward()


def timed(fn, device, repeats: int) -> float:
    fn()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def measure(style_transfer, vgg, content, style, steps: int, device) -> tuple[float, float]:
    """Seconds of one bare VGG forward + backward, and of one step of the notebook's loop."""
    bare = timed(lambda: bare_step(vgg, content), device, steps)

    def loop():
        style_transfer(content, style, vgg, steps=steps, method="adam", progress=False)

    total = timed(loop, device, 1)  # target features (two no-grad forwards) + `steps` steps
    with torch.no_grad():
        targets = timed(lambda: (vgg(content), vgg(style)), device, 1)
    return bare, (total - targets) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    ns = tagged_namespace(ROOT / "notebooks/07_neural_style_transfer.ipynb")
    device = pick_device()
    layers = ns["STYLE_LAYERS"] + [ns["CONTENT_LAYER"]]
    vgg = VGGFeatures(layers, weights="random", pooling="avg").to(device)
    gen = torch.Generator().manual_seed(0)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}\n")
    print("| size | bare VGG fwd+bwd (s) | loop step (s) | ratio | overhead |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        content = torch.rand((1, 3, n, n), generator=gen).to(device)
        style = torch.rand((1, 3, n, n), generator=gen).to(device)
        bare, step = measure(ns["style_transfer"], vgg, content, style, args.steps, device)
        ratio = step / bare
        print(f"| {n} | {bare:.3f} | {step:.3f} | {ratio:.2f} | {100 * (ratio - 1):+.0f}% |")


if __name__ == "__main__":
    main()
