"""Optimise an image against a loss: L-BFGS or Adam, with progress, history and a preview.

This is the machinery of Gatys-style synthesis and style transfer; the *losses* are built in
the notebooks. Under nbgrader (``NBGRADER_EXECUTION``) nothing is written to stderr: the
progress bar is off and the preview is skipped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ._checks import check_choice, check_image, check_positive_int, describe
from .mode import under_nbgrader


def _check_loss(loss: object) -> None:
    """Raise a message naming ``loss_fn`` unless it returned a 0-d tensor with gradients."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            f"`loss_fn` must return a scalar torch tensor computed from the image; got "
            f"{describe(loss)}"
        )
    if loss.ndim != 0:
        raise ValueError(
            f"`loss_fn` must return a scalar tensor (0-d: reduce it with .mean() or .sum()); "
            f"got {describe(loss)}"
        )
    if not loss.requires_grad:
        raise ValueError(
            "`loss_fn` must return a tensor computed from its argument, with gradients; got "
            f"{describe(loss)} that does not require grad (was it built under torch.no_grad(), "
            "from .detach(), or from a copy of the image?)"
        )


@dataclass
class OptimResult:
    """What :func:`optimize_image` returns.

    Attributes:
        image: the optimised image, ``(B, C, H, W)`` detached, clamped to ``[0, 1]``.
        history: the loss after every step (one entry per L-BFGS iteration or Adam step).
        seconds: wall-clock time.
    """

    image: torch.Tensor
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def optimize_image(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    *,
    steps: int = 100,
    method: str = "lbfgs",
    lr: float | None = None,
    clamp: bool = True,
    preview_every: int = 0,
    preview: Callable[[torch.Tensor, list[float]], None] | None = None,
    progress: bool = True,
    desc: str = "optimising",
) -> OptimResult:
    """Minimise ``loss_fn(image)`` over the pixels of an image.

    Args:
        loss_fn: maps the current image ``(B, C, H, W)`` to a scalar tensor with gradients.
        init: the starting image, float ``(B, C, H, W)`` in ``[0, 1]`` (copied, not modified).
        steps: L-BFGS iterations or Adam steps.
        method: ``"lbfgs"`` (torch's L-BFGS, one iteration per step, strong-Wolfe line search)
            or ``"adam"``. When the line search finds no step (it returns ``t = 0``, which
            happens on non-smooth losses: ReLU networks, absolute values, clamping), L-BFGS
            would repeat that failure at every later step; its memory is then cleared, so the
            next step restarts from the gradient direction.
        lr: learning rate (default 1.0 for L-BFGS, 0.02 for Adam).
        clamp: keep pixels in ``[0, 1]`` after every step.
        preview_every: call ``preview(image, history)`` every this many steps (0: never).
            ``preview=None`` with ``preview_every > 0`` uses
            :class:`course_lib.display.LivePreview`.
        progress: show a ``tqdm.auto`` bar (never under nbgrader).
        desc: the bar's label.

    Returns:
        :class:`OptimResult` with the image, the loss history and the time taken.

    Raises:
        TypeError: ``loss_fn`` is not callable or returns something other than a tensor.
        ValueError: bad arguments, a non-scalar loss or one without gradients (raised at the
            first evaluation, before any progress bar appears), or the loss became NaN.
    """
    import time

    from tqdm.auto import tqdm

    check_image(init, "init")
    check_positive_int(steps, "steps")
    check_choice(method, "method", ["lbfgs", "adam"])
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}")
    image = init.detach().clone().requires_grad_(True)
    if method == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [image], lr=lr or 1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe"
        )
    else:
        opt = torch.optim.Adam([image], lr=lr or 0.02)
    show = preview_every > 0 and not under_nbgrader()
    if show and preview is None:
        from .display import LivePreview

        preview = LivePreview()
    history: list[float] = []
    start = time.perf_counter()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(image)
        _check_loss(loss)
        loss.backward()
        return loss

    # The bar appears after the first step has worked, so a loss_fn that fails at once shows
    # its error alone, not under an empty 0 % bar.
    bar = None
    try:
        for step in range(steps):
            loss = opt.step(closure)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ValueError(
                    f"the loss became {value} at step {step}; lower `lr` or check the loss weights"
                )
            if method == "lbfgs" and opt.state[image].get("t", 1) == 0:
                opt.state.clear()  # the line search failed: restart L-BFGS from the gradient
            if clamp:
                with torch.no_grad():
                    image.clamp_(0, 1)
            history.append(value)
            if bar is None:
                bar = tqdm(
                    total=steps,
                    desc=desc,
                    disable=not progress or under_nbgrader(),
                    file=sys.stdout,
                )
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if show and (step + 1) % preview_every == 0:
                preview(image.detach(), history)
    finally:
        if bar is not None:
            bar.close()
    return OptimResult(image.detach().clamp(0, 1), history, time.perf_counter() - start)
