"""Show images and curves: grids with titles, loss curves, side-by-side comparisons, a live
preview while optimising. Works in notebooks (inline figures) and headless (``save=`` a PNG).

Images are shown as they are: values outside ``[0, 1]`` are clamped, never rescaled, and the
title says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch

from ._checks import conversion_hint, describe


def _as_list(images: object) -> list[np.ndarray]:
    """Tensors ``(B, C, H, W)`` / ``(C, H, W)`` / arrays ``(H, W[, C])`` → list of ``(H, W, C)``."""
    if isinstance(images, torch.Tensor):
        x = images.detach().to("cpu", torch.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim == 2:
            x = x[None, None]
        if x.ndim != 4:
            raise ValueError(f"`images` tensor must be (B, C, H, W); got {describe(images)}")
        return [a for a in x.permute(0, 2, 3, 1).numpy()]
    if isinstance(images, np.ndarray):
        a = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
        return [a if a.ndim == 3 else a[..., None]]
    if isinstance(images, (list, tuple)):
        return [im for item in images for im in _as_list(item)]
    raise TypeError(
        f"`images` must be tensors, arrays or a list of them; got {describe(images)}"
        f"{conversion_hint(images)}"
    )


def _prepare(image: np.ndarray) -> tuple[np.ndarray, bool]:
    clamped = bool(image.size) and (image.min() < 0 or image.max() > 1)
    image = np.clip(image, 0, 1)
    if image.shape[-1] == 1:
        image = image[..., 0]
    return image, clamped


def show_images(
    images: object,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    size: float = 2.5,
    suptitle: str | None = None,
    save: str | Path | None = None,
    show: bool = True,
):
    """Show images in a grid.

    Args:
        images: a ``(B, C, H, W)`` tensor in ``[0, 1]``, a list of such tensors / ``(C, H, W)``
            tensors / NumPy ``(H, W[, C])`` arrays. Grey images are shown in grey.
        titles: one per image (optional).
        ncols: columns (default: all in one row, up to 6).
        size: inches per image.
        suptitle: a title for the whole figure.
        save: also write the figure as a PNG here (parent folders are created).
        show: display it (in a notebook); ``False`` returns the figure without showing.

    Returns:
        The matplotlib ``Figure``; ``None`` when it was displayed in a notebook (so that a
        cell ending with this call does not show it twice).
    """
    import matplotlib.pyplot as plt

    arrays = _as_list(images)
    if not arrays:
        raise ValueError("`images` is empty")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"`titles` has {len(titles)} entries for {len(arrays)} images")
    ncols = ncols or min(len(arrays), 6)
    nrows = int(np.ceil(len(arrays) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=_grid_size(arrays, titles, ncols, size, suptitle), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, arr) in enumerate(zip(axes.flat, arrays)):
        img, clamped = _prepare(arr)
        ax.imshow(
            img,
            cmap="gray" if img.ndim == 2 else None,
            vmin=0,
            vmax=1,
            interpolation="nearest" if max(img.shape[:2]) < 96 else "antialiased",
        )
        title = titles[i] if titles is not None else ""
        if clamped:
            title = f"{title} (clamped)".strip()
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return _finish(fig, save, show)


def _grid_size(arrays, titles, ncols: int, size: float, suptitle) -> tuple[float, float]:
    """Figure size for a grid: each row as tall as its tallest image at ``size`` inches wide,
    plus room for its titles' lines (9 pt), so that a title never reaches into the row above
    (with a fixed height, ``tight_layout`` let two-line titles overlap it in 6-column grids)."""
    nrows = int(np.ceil(len(arrays) / ncols))
    height = 0.0
    for r in range(nrows):
        row = range(r * ncols, min((r + 1) * ncols, len(arrays)))
        aspect = max(arrays[i].shape[0] / max(arrays[i].shape[1], 1) for i in row)
        lines = max((titles[i].count("\n") + 1 if titles and titles[i] else 0) for i in row)
        height += size * aspect + (lines * 9 * 1.3 / 72 + 0.1 if lines else 0.05)
    return size * ncols, height + (0.4 if suptitle else 0.1)


def compare(before: object, after: object, *, titles: Sequence[str] = ("before", "after"), **kw):
    """Two images (or batches of equal length) side by side; ``**kw`` go to :func:`show_images`."""
    a, b = _as_list(before), _as_list(after)
    if len(a) != len(b):
        raise ValueError(f"`before` has {len(a)} images and `after` {len(b)}")
    pairs = [im for pair in zip(a, b) for im in pair]
    names = [titles[j % 2] for j in range(len(pairs))]
    return show_images(pairs, names, ncols=2 if len(a) == 1 else min(len(pairs), 6), **kw)


def plot_losses(
    history: Sequence[float] | Mapping[str, Sequence[float]],
    *,
    log: bool = True,
    title: str = "loss",
    ax=None,
    save: str | Path | None = None,
    show: bool = True,
):
    """Plot one loss curve, or several (a mapping name → values), on a log axis by default."""
    import matplotlib.pyplot as plt

    curves = dict(history) if isinstance(history, Mapping) else {"loss": list(history)}
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    if log and all(v > 0 for vals in curves.values() for v in vals):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    if own:
        fig.tight_layout()
        return _finish(fig, save, show)
    return ax.figure


def image_and_curve(image: torch.Tensor, history: Sequence[float], *, title: str = ""):
    """The current image beside its loss curve (what a live preview shows); returns the figure."""
    import matplotlib.pyplot as plt

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, 3.5))
    img, clamped = _prepare(_as_list(image)[0])
    a0.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    a0.axis("off")
    a0.set_title((title + (" (clamped)" if clamped else "")).strip() or f"step {len(history)}")
    plot_losses(history, ax=a1, title="loss")
    fig.tight_layout()
    return fig


class LivePreview:
    """Updates one output area with the current image and loss curve (in a notebook), or
    saves the latest frame to ``save`` (headless). Use as ``preview=`` of
    :func:`course_lib.optim.optimize_image`."""

    def __init__(self, *, save: str | Path | None = None, title: str = "") -> None:
        self.save, self.title, self._handle = save, title, None

    def __call__(self, image: torch.Tensor, history: Sequence[float]) -> None:
        import matplotlib.pyplot as plt

        fig = image_and_curve(image, history, title=self.title)
        if self.save is not None:
            Path(self.save).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.save, dpi=80)
        if _in_notebook():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
        plt.close(fig)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _finish(fig, save: str | Path | None, show: bool):
    import matplotlib.pyplot as plt

    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=100, bbox_inches="tight")
    if show and _in_notebook():
        plt.show()  # displays and closes it; returning it too would show it twice
        return None
    if show and matplotlib.get_backend().lower() != "agg":
        plt.show()
    return fig
