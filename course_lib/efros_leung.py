"""Efros–Leung texture synthesis by non-parametric sampling (taught in notebook 02).

Notebook ``02_efros_leung.ipynb`` builds this algorithm step by step (a loop version from the
paper's pseudocode, then this vectorised one) and checks that both make the same choices for
the same seed; ``tests/test_efros_leung.py`` checks that this module's output equals the
notebook's. Later notebooks (06's comparison of methods) import it from here instead of
copying it.

A. A. Efros and T. K. Leung, *Texture Synthesis by Non-parametric Sampling*, ICCV 1999.

How it is fast without changing a choice:

* **One window bank, float32 products.** Every candidate window of the sample is flattened
  once into a bank ``[Σ_c S², S]``; the Gaussian-weighted SSD of a batch of templates against
  all windows is then one float32 matrix product (expanding the square).
* **Exact decisions.** The product's rounding error has a proven bound ``m`` (values in
  ``[-M, M]``, products of length ``n``: ``|d32 - d| <= 4 M² (n + 8) u`` with ``u = 2^-24``
  the unit round-off of float32, doubled for safety). The products run at full float32
  precision whatever ``torch.set_float32_matmul_precision`` says ("high" would allow TF32 on a
  GPU, ``u = 2^-11``: a bound 8,192 times wider, so that nearly every window was re-measured):
  :func:`grow` sets "highest" while it runs and puts the caller's setting back. Every window
  that *could* be a candidate (``d32 <= (best32 + m)(1 + ε) + tie + m``) is re-measured in
  float64 directly (``Σ G M (S - T)²``, as the loop does), and the choice is made on those
  exact distances, so float32 never changes a choice. The re-measured set is small (the
  near-best windows).
* **Many pixels per product.** Within an onion layer a pixel's template changes only when a
  pixel inside its window is grown before it, so the layer's pixels are grouped in dependency
  levels; pixels of one level never see each other and are grown together.

Device: every tensor follows the sample's device (CPU, CUDA, MPS); the random numbers come from
a CPU ``torch.Generator`` (so that results do not depend on the device). Per onion layer there
is one device-to-host copy (the layer's pixels, to group them into levels), and per level one
``nonzero`` (the near-best windows); nothing else waits for the host.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_image, check_positive_int, describe

__all__ = ["fill_hole", "grow", "synthesise"]

TIE = 1e-9  # slack on the candidate threshold, so that exact ties survive rounding
_UNIT_ROUNDOFF = {"highest": 2.0**-24, "high": 2.0**-11, "medium": 2.0**-8}


@contextlib.contextmanager
def _full_precision_products():
    """float32 matrix products at full precision (no TF32 / bfloat16) inside, whatever the
    caller set with ``torch.set_float32_matmul_precision``; the caller's setting is restored."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _check_window(window: object, sample: torch.Tensor, name: str = "sample") -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ValueError(f"`window` must be an odd int >= 3; got {window!r}")
    h, w = sample.shape[-2:]
    if window >= min(h, w):
        raise ValueError(
            f"`window` must be odd and smaller than the {name} ({h}x{w}); got {window}"
        )
    return window


def _check_generator(generator: object) -> torch.Generator:
    if generator is None:
        return torch.default_generator
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError(
            f"`generator` must be a CPU torch.Generator or None; got {describe(generator)}"
        )
    return generator


def _gaussian(window: int) -> torch.Tensor:
    """float64 ``(k, k)`` Gaussian with σ = k / 6.4, summing to 1 (the paper's weights)."""
    sigma = window / 6.4
    t = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g2 = g[:, None] * g[None, :]
    return g2 / g2.sum()


def _frontier(filled: torch.Tensor, ring: torch.Tensor, generator: torch.Generator):
    """Next onion layer of the (H, W) bool ``filled``: unknown pixels with a known 8-neighbour,
    most known neighbours first, ties in random order. Returns int64 ``(M, 2)`` on its device."""
    count = F.conv2d(filled[None, None].to(ring.dtype), ring, padding=1)[0, 0].round().long()
    coords = ((~filled) & (count > 0)).nonzero()  # (M, 2), row-major
    perm = torch.randperm(len(coords), generator=generator).to(coords.device)
    coords = coords[perm]
    order = torch.sort(count[coords[:, 0], coords[:, 1]], descending=True, stable=True).indices
    return coords[order]


def _levels(order: np.ndarray, window: int, shape: tuple[int, int]) -> np.ndarray:
    """Dependency level of each pixel of a layer: 1 + the highest level of the earlier pixels
    inside its window (0 if none). Pixels of one level never see each other."""
    r = window // 2
    grid = np.full((shape[0] + 2 * r, shape[1] + 2 * r), -1, dtype=np.int64)
    levels = np.empty(len(order), dtype=np.int64)
    for i, (y, x) in enumerate(order):
        levels[i] = grid[y : y + window, x : x + window].max() + 1
        grid[y + r, x + r] = levels[i]
    return levels


def _pick_exact(patches64, templates, known, gauss64, near, u, eps):
    """Choose among the near-best windows on exact float64 distances.

    Args:
        patches64: float64 ``(N, C, k*k)``, every candidate window.
        templates: ``(B, C, k*k)``, the batch's neighbourhoods; known: bool ``(B, k*k)``.
        gauss64: float64 ``(k*k,)``; near: bool ``(B, N)``, a superset of every row's
            candidates (the float32 screen); u: float64 ``(B,)`` uniform numbers; eps: ε.

    Returns:
        The chosen window per row, int64 ``(B,)``, and its float64 distance ``(B,)``.
    """
    b = near.shape[0]
    rows, cols = near.nonzero(as_tuple=True)  # (P,) each, row-major: a row's windows in order
    c = patches64.shape[1]
    chunk = max(1, 2**21 // patches64[0].numel())
    parts = []
    for r_, c_ in zip(rows.split(chunk), cols.split(chunk)):
        w = gauss64 * known.index_select(0, r_)  # (p, k*k): G * M
        diff = patches64.index_select(0, c_) - templates.index_select(0, r_).double()
        ssd = (w[:, None] * diff * diff).sum((1, 2))  # (p,)
        parts.append(ssd / (c * w.sum(1)))  # as the loop computes it
    d = torch.cat(parts)  # (P,)
    best = torch.full((b,), torch.inf, dtype=d.dtype, device=d.device)
    best = best.scatter_reduce(0, rows, d, "amin")  # (B,)
    cand = (d <= best[rows] * (1 + eps) + TIE).long()  # (P,)
    count = torch.zeros(b, dtype=torch.int64, device=d.device).index_add_(0, rows, cand)
    before = torch.cumsum(count, 0) - count  # candidates in earlier rows
    rank = torch.cumsum(cand, 0) - 1 - before[rows]  # (P,): rank of a candidate in its row
    which = (u * count).long()  # (B,): floor(u * count), as in the loop
    chosen = ((cand > 0) & (rank == which[rows])).nonzero()[:, 0]  # one per row, in order
    return cols[chosen], d[chosen]


def grow(
    sample: torch.Tensor,
    canvas: torch.Tensor,
    known: torch.Tensor,
    *,
    window: int = 11,
    eps: float = 0.1,
    max_err: float = 0.3,
    generator: torch.Generator | None = None,
    sample_known: torch.Tensor | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grow the unknown pixels of ``canvas`` from ``sample`` (notebook 02's ``efros_leung_fast``).

    Args:
        sample: float ``(1, C, Hs, Ws)``, values in ``[0, 1]``: the example texture.
        canvas: float ``(1, C, H, W)``: the output; its ``known`` pixels are kept.
        known: bool ``(1, 1, H, W)``: which canvas pixels are given (at least one).
        window: odd side ``k`` (>= 3) of the neighbourhood window, smaller than the sample.
        eps: relative tolerance ε: candidates lie within ``(1 + ε)`` of the best distance.
        max_err: a pixel whose chosen window is this far or more waits for a later layer;
            after a layer without progress the threshold grows by 10 %.
        generator: CPU ``torch.Generator`` for the layer order and the choices (``None``:
            torch's global one).
        sample_known: optional bool ``(1, 1, Hs, Ws)``: only windows fully inside it are
            candidates (hole filling uses the damaged image itself as the sample).
        progress: show a tqdm progress bar.

    Returns:
        ``image``: float32 ``(1, C, H, W)`` on the sample's device, and ``source``: int64
        ``(H, W, 2)``, the sample pixel ``(y, x)`` each grown pixel was copied from (-1 where
        given).

    Raises:
        TypeError: non-tensor or non-float images, non-bool masks, a generator not on the CPU.
        ValueError: shapes that do not match, a bad window, no known pixel, no window inside
            ``sample_known``.

    Example:
        >>> s = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
        >>> canvas = torch.zeros(1, 1, 8, 8); known = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
        >>> canvas[..., 3:5, 3:5], known[..., 3:5, 3:5] = s[..., :2, :2], True
        >>> out, src = grow(s, canvas, known, window=5, generator=torch.Generator().manual_seed(1),
        ...                 progress=False)
        >>> out.shape, bool((src[..., 0] >= 0).sum() == 60)
        (torch.Size([1, 1, 8, 8]), True)
    """
    check_image(sample, "sample")
    check_image(canvas, "canvas", channels=sample.shape[1])
    if sample.shape[0] != 1 or canvas.shape[0] != 1:
        raise ValueError(
            f"`sample` and `canvas` must hold one image each (batch 1); got "
            f"{describe(sample)} and {describe(canvas)}"
        )
    _, c, h, w = canvas.shape
    for name, mask, ref in (("known", known, canvas), ("sample_known", sample_known, sample)):
        if mask is None:
            continue
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"`{name}` must be a bool tensor; got {describe(mask)}")
        if tuple(mask.shape) != (1, 1, *ref.shape[-2:]):
            raise ValueError(
                f"`{name}` must have shape (1, 1, {ref.shape[-2]}, {ref.shape[-1]}); got "
                f"{tuple(mask.shape)}"
            )
    if not known.any():
        raise ValueError("`known` has no known pixel to grow from")
    k = _check_window(window, sample)
    generator = _check_generator(generator)
    eps, max_err = float(eps), float(max_err)
    if not eps >= 0 or not max_err > 0:
        raise ValueError(f"`eps` must be >= 0 and `max_err` > 0; got eps={eps}, max_err={max_err}")

    with _full_precision_products():  # the rounding bound below assumes it
        return _grow(sample, canvas, known, k, eps, max_err, generator, sample_known, progress)


def _grow(sample, canvas, known, k, eps, max_err, generator, sample_known, progress):
    """:func:`grow` after its checks (same arguments; ``k`` the window). Its body is one
    algorithm whose state (the padded canvas, the fill mask, the window bank) every step uses:
    split further it would pass a dozen tensors around, so it is longer than 80 lines."""
    from tqdm.auto import tqdm

    _, c, h, w = canvas.shape
    dev, r = sample.device, k // 2
    kk, hp, wp = k * k, h + 2 * r, w + 2 * r
    # The window bank: every k x k window of the sample, row-major by top-left corner.
    cols = F.unfold(sample.to(torch.float64), k)[0].T  # (L, C*k*k), L = (Hs-k+1)(Ws-k+1)
    ny, nx = sample.shape[-2] - k + 1, sample.shape[-1] - k + 1
    ys, xs = torch.meshgrid(
        torch.arange(ny, device=dev), torch.arange(nx, device=dev), indexing="ij"
    )
    positions = torch.stack([ys.flatten(), xs.flatten()], 1)  # (L, 2)
    if sample_known is not None:
        inside = F.unfold(sample_known.to(dev, torch.float32), k)[0].amin(0) > 0.5  # (L,)
        positions, cols = positions[inside], cols[inside]
        if len(positions) == 0:
            raise ValueError(f"no {k}x{k} window fits inside the known sample pixels")
    patches64 = cols.reshape(-1, c, kk)  # (N, C, k*k), for the exact re-measure
    centres = patches64[:, :, kk // 2].T.contiguous()  # (C, N): the pixel a window hands out
    s32 = patches64.to(torch.float32)
    bank_t = torch.cat([(s32 * s32).sum(1), s32.flatten(1)], 1).T.contiguous()  # (n, N)
    gauss64 = _gaussian(k).to(dev).flatten()  # (k*k,)
    gauss32 = gauss64.float()
    # Rounding bound of the float32 screen, relative to C * sum(G * M) (module docstring).
    big = max(1.0, float(sample.abs().max()), float((canvas * known).abs().max()))
    unit = _UNIT_ROUNDOFF.get(torch.get_float32_matmul_precision(), 2.0**-8)
    margin = 2 * 4 * big**2 * (bank_t.shape[0] + 8) * unit

    # The canvas, padded by r and flattened: a window is a top-left index plus `offsets`.
    dtype = torch.promote_types(canvas.dtype, sample.dtype)  # exact copies of both inputs
    img = F.pad(canvas[0].to(dev, dtype), (r, r, r, r)).reshape(c, -1)  # (C, Hp*Wp)
    filled = torch.zeros(hp, wp, dtype=torch.bool, device=dev)
    filled[r : r + h, r : r + w] = known[0, 0].to(dev)
    filled = filled.flatten()  # (Hp*Wp,)
    source = torch.full((hp * wp, 2), -1, dtype=torch.int64, device=dev)
    offsets = (torch.arange(k, device=dev)[:, None] * wp + torch.arange(k, device=dev)).flatten()
    ring = torch.ones(1, 1, 3, 3, device=dev)
    ring[..., 1, 1] = 0
    bar = tqdm(total=int(h * w - known.sum()), desc="Efros-Leung", disable=not progress)
    while True:
        inner = filled.view(hp, wp)[r : r + h, r : r + w]
        order = _frontier(inner, ring, generator)  # (M, 2) canvas (y, x), growing order
        if len(order) == 0:
            break
        u = torch.rand(len(order), generator=generator, dtype=torch.float64).to(dev)
        levels = _levels(order.cpu().numpy(), k, (h, w))  # one host copy per layer
        by_level = torch.from_numpy(np.argsort(levels, kind="stable")).to(dev)
        bounds = np.cumsum(np.bincount(levels)).tolist()
        corner = (order[:, 0] * wp + order[:, 1])[by_level]  # (M,) top-left of each window
        u = u[by_level]
        grown = torch.zeros((), dtype=torch.int64, device=dev)
        for lo, hi in zip([0, *bounds[:-1]], bounds):  # one dependency level at a time
            lin = (corner[lo:hi, None] + offsets).flatten()  # (B*k*k,)
            t = img.index_select(1, lin).view(c, hi - lo, kk).transpose(0, 1)  # (B, C, k*k)
            m = filled.index_select(0, lin).view(hi - lo, kk)  # (B, k*k): M
            gm, t32 = gauss32 * m, t.float()  # (B, k*k): G * M; the templates in float32
            wt = gm[:, None] * t32  # (B, C, k*k): w T
            lhs = torch.cat([gm, (-2 * wt).flatten(1)], 1)  # (B, n); -2 w T exactly as before
            prod = lhs @ bank_t  # (B, N): sum w S^2 - 2 sum w T S
            const = (wt * t32).sum((1, 2))  # (B,): sum w T^2
            norm = c * gm.sum(1)  # (B,)
            limit = (prod.amin(1) + const + margin * norm) * (1 + eps) + (TIE + margin) * norm
            near = prod <= (limit - const)[:, None]  # (B, N): every possible candidate
            choice, dist = _pick_exact(patches64, t, m, gauss64, near, u[lo:hi], eps)
            ok = dist < max_err  # (B,): otherwise the pixel waits
            centre = corner[lo:hi] + (r * wp + r)  # (B,)
            img[:, centre] = torch.where(ok, centres[:, choice].to(dtype), img[:, centre])
            filled[centre] = ok
            source[centre] = torch.where(ok[:, None], positions[choice] + r, -1)
            grown += ok.sum()
        grown = int(grown)  # one sync per layer
        bar.update(grown)
        if grown == 0:
            max_err *= 1.1
    bar.close()
    image = img.view(1, c, hp, wp)[..., r : r + h, r : r + w].float()
    return image, source.view(hp, wp, 2)[r : r + h, r : r + w].clone()


def _new_canvas(sample, size, generator, seed_size=3):
    """Empty ``size`` canvas with a random ``seed_size²`` piece of the sample in its centre."""
    h, w = size
    hs, ws = sample.shape[-2:]
    top = int(torch.randint(0, hs - seed_size + 1, (1,), generator=generator))
    left = int(torch.randint(0, ws - seed_size + 1, (1,), generator=generator))
    canvas = sample.new_zeros(1, sample.shape[1], h, w)
    known = torch.zeros(1, 1, h, w, dtype=torch.bool, device=sample.device)
    y0, x0 = (h - seed_size) // 2, (w - seed_size) // 2
    piece = sample[..., top : top + seed_size, left : left + seed_size]
    canvas[..., y0 : y0 + seed_size, x0 : x0 + seed_size] = piece
    known[..., y0 : y0 + seed_size, x0 : x0 + seed_size] = True
    return canvas, known


def synthesise(
    sample: torch.Tensor,
    size: int | tuple[int, int],
    *,
    window: int = 11,
    eps: float = 0.1,
    max_err: float = 0.3,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_source: bool = False,
):
    """Grow a new texture from an example, pixel by pixel (Efros & Leung 1999; notebook 02).

    The output starts as a random 3×3 piece of the sample in the centre of an empty canvas and
    grows outwards in onion layers; each pixel copies the centre of a sample window drawn
    uniformly among those within ``(1 + eps)`` of the best Gaussian-weighted SSD match.

    Args:
        sample: float ``(1, C, Hs, Ws)`` in ``[0, 1]`` (any C, any device).
        size: output side (int) or ``(H, W)``.
        window: odd window side ``k`` (>= 3, smaller than the sample); about the size of the
            texture's largest regular element.
        eps: relative tolerance ε of the candidate set.
        max_err: maximum error δ before a pixel waits (see :func:`grow`).
        generator: CPU ``torch.Generator`` (seed piece, order, choices); ``None``: torch's
            global one.
        progress: show a progress bar.
        return_source: also return the ``(H, W, 2)`` int64 map of sample positions.

    Returns:
        float32 ``(1, C, H, W)`` in the sample's range, on the sample's device (and the source
        map when ``return_source``).

    Raises:
        TypeError / ValueError: as :func:`grow`, and for a ``size`` that is not a positive int
            or pair of them.

    Example:
        >>> s = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> out = synthesise(s, 12, window=5, generator=torch.Generator().manual_seed(0),
        ...                  progress=False)
        >>> out.shape, out.dtype
        (torch.Size([1, 3, 12, 12]), torch.float32)
    """
    check_image(sample, "sample", min_size=4)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        hw = tuple(check_positive_int(v, "size", minimum=3) for v in size)
    else:
        hw = (check_positive_int(size, "size", minimum=3),) * 2
    _check_window(window, sample)
    generator = _check_generator(generator)
    canvas, known = _new_canvas(sample, hw, generator)
    image, source = grow(
        sample, canvas, known, window=window, eps=eps, max_err=max_err,
        generator=generator, progress=progress,
    )  # fmt: skip
    return (image, source) if return_source else image


def fill_hole(
    image: torch.Tensor,
    hole: torch.Tensor,
    *,
    window: int = 11,
    eps: float = 0.1,
    max_err: float = 0.3,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Fill ``hole`` in ``image`` from the rest of the image (Efros & Leung's hole filling).

    The sample is the image itself: only windows that do not touch the hole are candidates,
    and the hole is grown inwards from its border.

    Args:
        image: float ``(1, C, H, W)`` in ``[0, 1]``.
        hole: bool ``(1, 1, H, W)``, True where pixels are missing (not all of the image).
        window, eps, max_err, generator, progress: as :func:`synthesise`.

    Returns:
        float32 ``(1, C, H, W)`` on the image's device: the image with the hole filled.

    Raises:
        TypeError / ValueError: as :func:`grow`.

    Example:
        >>> im = torch.rand(1, 3, 14, 14, generator=torch.Generator().manual_seed(0))
        >>> hole = torch.zeros(1, 1, 14, 14, dtype=torch.bool); hole[..., 6:8, 6:8] = True
        >>> out = fill_hole(im, hole, window=3, generator=torch.Generator().manual_seed(0),
        ...                 progress=False)
        >>> bool(torch.equal(out[..., ~hole[0, 0]], im[..., ~hole[0, 0]]))
        True
    """
    check_image(image, "image")
    if not isinstance(hole, torch.Tensor) or hole.dtype != torch.bool:
        raise TypeError(f"`hole` must be a bool tensor; got {describe(hole)}")
    known = ~hole
    return grow(
        image, image * known, known, window=window, eps=eps, max_err=max_err,
        generator=generator, sample_known=known, progress=progress,
    )[0]  # fmt: skip
