"""Neural style transfer: time per step of notebook 07's loop and of PyTorch's tutorial (peer).

    .venv/bin/python -m benchmarks.style_transfer [--sizes 256 512] [--steps 4] [--rounds 3]
        [--device cuda] [--peer-unfrozen]

The loop is notebook 07's ``style_transfer`` (taken from the notebook's cells tagged
``testable``) run with Adam, so that every step is exactly one loss evaluation. The baseline is
one forward pass of the same VGG-19 up to the same layers and one backward pass to the pixels.
A third column writes the same objective out by hand (forward, the notebook's losses, backward,
an Adam step), which splits the loop's extra time into the cost of the losses themselves (Gram
matrices, gradient accumulation at the loss layers) and the loop machinery (progress bar,
history, clamping).

The peer columns time ``benchmarks/peers/style_transfer_peer.py``, our re-implementation of the
"Neural Transfer Using PyTorch" tutorial's loop as currently published (VGG weights frozen;
``--peer-unfrozen`` times its older loop, which did not freeze them): one call of its L-BFGS
closure (clamp, forward through the model with its loss layers, weighted sum, backward) per
step, against a bare forward + backward to the pixels through the **same** layers the tutorial
keeps (normalisation, torchvision's VGG-19 up to ``conv_5`` = conv3_1, max pooling). The
tutorial's network stops much earlier than the notebook's (conv3_1 against relu5_1), so compare
each step with its own bare pass ("loop vs bare", "peer vs peer bare"), not the absolute
seconds. All columns are measured in the same interleaved rounds, on the same random images,
with random weights (nothing is downloaded). Prints a Markdown table; "losses" columns give the
losses' own cost per step in seconds (step minus its bare pass), beside the ratios.

A second table compares **the same work**: the kit's losses (notebook 07's ``gram_matrix``,
``style_loss`` and ``content_loss``, through ``course_lib.features.VGGFeatures``) on the
tutorial's layers (style at conv1_1, conv1_2, conv2_1, conv2_2, conv3_1, content at conv2_2:
its conv_1 … conv_5 and conv_4; max pooling; the tutorial's weights 1e6 and 1), against the
tutorial's closure. Both bare passes are then the same network with the same backward (from the
last layer only), and each step is forward + losses + backward with no optimiser update, so the
difference of the two "losses" columns is the difference of the losses' implementations.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.peers import style_transfer_peer as peer  # noqa: E402
from course_kit.nbrun import tagged_namespace  # noqa: E402
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


def by_hand(ns: dict, vgg: VGGFeatures, content, style, steps: int, device) -> float:
    """Seconds per step of the same objective written out by hand: forward, the notebook's style
    and content losses, backward, an Adam step (no progress bar, history or clamping)."""
    layers, c_layer = ns["STYLE_LAYERS"], ns["CONTENT_LAYER"]
    s_weights, c_weights = {k: 1.0 / len(layers) for k in layers}, {c_layer: 0.1}
    with torch.no_grad():
        s_targets = {k: ns["gram_matrix"](v) for k, v in vgg(style).items() if k in s_weights}
        c_targets = {c_layer: vgg(content)[c_layer]}
    image = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([image], lr=0.02)

    def step():
        opt.zero_grad()
        feats = vgg(image)
        loss = ns["style_loss"](feats, s_targets, s_weights)
        (loss + ns["content_loss"](feats, c_targets, c_weights)).backward()
        opt.step()

    return timed(step, device, steps)


def measure(ns: dict, vgg, content, style, steps: int, device) -> tuple[float, float, float]:
    """Seconds per step: bare VGG forward + backward; the same plus the losses, by hand; and
    notebook 07's loop, as the difference between runs of 1 and 1 + ``steps`` steps (so that
    computing the targets and setting up cancel out)."""
    bare = timed(lambda: bare_step(vgg, content), device, steps)
    hand = by_hand(ns, vgg, content, style, steps, device)

    def run(n: int) -> None:
        ns["style_transfer"](content, style, vgg, steps=n, method="adam", progress=False)

    one = timed(lambda: run(1), device, 1)
    more = timed(lambda: run(1 + steps), device, 1)
    return bare, hand, (more - one) / steps


# the tutorial's layers in VGGFeatures' names: conv_1 … conv_5 are conv1_1 … conv3_1
SAME_STYLE = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
SAME_CONTENT = "conv2_2"


def same_work(ns: dict, content, style, steps: int, device) -> tuple[float, float]:
    """Seconds per step on the tutorial's layers: a bare pass through the kit's VGGFeatures
    (forward to conv3_1, backward from it alone, as the peer's bare pass), and forward + the
    notebook's losses at those layers (weights 1e6 and 1) + backward, as the tutorial's closure."""
    vgg = VGGFeatures(SAME_STYLE, weights="random", pooling="max").to(device)
    with torch.no_grad():
        feats = vgg(style)
        s_targets = {k: ns["gram_matrix"](feats[k]) for k in SAME_STYLE}
        c_targets = {SAME_CONTENT: vgg(content)[SAME_CONTENT]}
    s_weights = {k: 1.0 for k in SAME_STYLE}
    c_weights = {SAME_CONTENT: 1.0}
    image = content.clone().requires_grad_(True)

    def bare():
        x = content.detach().clone().requires_grad_(True)
        vgg(x)["conv3_1"].sum().backward()

    def step():
        with torch.no_grad():
            image.clamp_(0, 1)
        image.grad = None
        f = vgg(image)
        loss = 1e6 * ns["style_loss"](f, s_targets, s_weights)
        (loss + ns["content_loss"](f, c_targets, c_weights)).backward()

    return timed(bare, device, steps), timed(step, device, steps)


def bare_peer_step(bare: torch.nn.Sequential, image: torch.Tensor) -> None:
    """Forward + backward to the pixels through the peer's layers, without its loss modules."""
    x = image.detach().clone().requires_grad_(True)
    bare(x).sum().backward()


def measure_peer(closure, bare: torch.nn.Sequential, content, steps: int, device):
    """Seconds per step: the peer's bare pass and one call of its L-BFGS closure."""
    return (
        timed(lambda: bare_peer_step(bare, content), device, steps),
        timed(closure, device, steps),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved repetitions of all the measurements; the table shows medians",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the best there is)")
    parser.add_argument(
        "--peer-unfrozen",
        action="store_true",
        help="time the tutorial's older loop, which did not freeze VGG's weights",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be >= 1; got {args.rounds} and {args.steps}")
    if min(args.sizes) < 4:
        parser.error(f"--sizes must be >= 4 (VGG pools twice before conv3_1); got {args.sizes}")
    ns = tagged_namespace(ROOT / "notebooks/07_neural_style_transfer.ipynb")
    device = torch.device(args.device) if args.device else pick_device()
    layers = ns["STYLE_LAYERS"] + [ns["CONTENT_LAYER"]]
    vgg = VGGFeatures(layers, weights="random", pooling="avg").to(device)
    cnn = peer.random_vgg19_features().to(device)
    gen = torch.Generator().manual_seed(0)
    version = "older, VGG not frozen" if args.peer_unfrozen else "as published, VGG frozen"
    print(
        f"device: {device}, torch threads: {torch.get_num_threads()}, "
        f"median of {args.rounds} interleaved rounds of {args.steps} steps; "
        f"peer: PyTorch's tutorial loop ({version})\n"
    )
    print(
        "| size | bare VGG fwd+bwd (s) | + losses, by hand (s) | notebook loop step (s) "
        "| loop vs bare | loop vs by hand | spread of loop vs by hand | kit losses (s) "
        "| peer bare fwd+bwd (s) | peer step (s) | peer vs peer bare | spread of peer vs peer bare "
        "| peer losses (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    same_rows = []
    for n in args.sizes:
        content = torch.rand((1, 3, n, n), generator=gen).to(device)
        style = torch.rand((1, 3, n, n), generator=gen).to(device)
        closure, _, model = peer.build_peer(content, style, cnn=cnn, freeze=not args.peer_unfrozen)
        bare_peer = peer.bare_model(model)
        rounds = []
        for _ in range(args.rounds):
            kit = measure(ns, vgg, content, style, args.steps, device)
            peer_times = measure_peer(closure, bare_peer, content, args.steps, device)
            rounds.append(kit + peer_times + same_work(ns, content, style, args.steps, device))
        bare, hand, step, p_bare, p_step, s_bare, s_step = (
            statistics.median(r[i] for r in rounds) for i in range(7)
        )
        spread = [100 * (r[2] / r[1] - 1) for r in rounds]
        p_spread = [100 * (r[4] / r[3] - 1) for r in rounds]
        print(
            f"| {n} | {bare:.3f} | {hand:.3f} | {step:.3f} | {100 * (step / bare - 1):+.0f}% "
            f"| {100 * (step / hand - 1):+.0f}% | {min(spread):+.0f}% … {max(spread):+.0f}% "
            f"| {hand - bare:.3f} "
            f"| {p_bare:.3f} | {p_step:.3f} | {100 * (p_step / p_bare - 1):+.0f}% "
            f"| {min(p_spread):+.0f}% … {max(p_spread):+.0f}% | {p_step - p_bare:.3f} |"
        )
        kit_losses = [r[6] - r[5] for r in rounds]
        peer_losses = [r[4] - r[3] for r in rounds]
        same_rows.append((n, s_bare, p_bare, s_step, p_step, kit_losses, peer_losses))
    print(
        "\nThe same work: the tutorial's layers (style conv1_1 … conv3_1, content conv2_2, max "
        "pooling), forward + losses + backward, no optimiser update; losses = step − bare.\n"
    )
    print(
        "| size | kit bare (s) | peer bare (s) | kit step (s) | peer step (s) "
        "| kit losses (s/step) | peer losses (s/step) | kit losses / peer losses "
        "| spread of kit / peer losses |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, s_bare, p_bare, s_step, p_step, kit_losses, peer_losses in same_rows:
        k, p = statistics.median(kit_losses), statistics.median(peer_losses)
        ratios = [a / b for a, b in zip(kit_losses, peer_losses) if b > 0]
        spread = f"{min(ratios):.2f} … {max(ratios):.2f}" if ratios else "—"
        print(
            f"| {n} | {s_bare:.3f} | {p_bare:.3f} | {s_step:.3f} | {p_step:.3f} | {k:.3f} "
            f"| {p:.3f} | {k / p if p > 0 else float('nan'):.2f} | {spread} |"
        )


if __name__ == "__main__":
    main()
