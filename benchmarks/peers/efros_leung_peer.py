"""The popular Python port of Efros-Leung, as its published loop works, rewritten in our words.

The port most people find (a single ``synthesis.py`` built on NumPy and OpenCV) grows the texture
like this, and this module does the same with NumPy alone so that the benchmark can time it
beside the kit's code:

* the search runs on the **grey** sample (luminance, float64 in ``[0, 1]``); the colour pixel at
  the chosen position is copied into the output;
* the output starts from a random 3×3 piece of the sample in its centre;
* each pass takes the unfilled pixels that touch a filled one (a 3×3 dilation of the mask minus
  the mask), shuffles them, and orders them by their number of filled 8-neighbours, most first
  (descending by reversing an ascending ``argsort``);
* **for each pixel in turn**, the Gaussian-weighted SSD (σ = k / 6.4, a separable Gaussian
  normalised to sum 1) between its masked neighbourhood and *every* k×k window of the sample is
  computed with broadcast NumPy arrays of shape ``(N, k, k)`` (strided views of the sample),
  summed and divided by ``Σ G·M``; the candidates are the windows within 10 % of the best, and
  one is drawn uniformly;
* there is no maximum-error threshold: every pixel of a pass is filled in that pass.

Differences from the kit's loop (``efros_leung_loop`` in notebook 02) that do not change the
cost per pixel: grey matching, no max-error threshold, NumPy's random generator. The per-pixel
cost is the same kind — one exhaustive scan of all N windows with k² work each — done as
whole-array NumPy expressions rather than a Python loop over windows.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def gaussian_2d(k: int) -> np.ndarray:
    """float64 ``(k, k)``: outer product of a 1-D Gaussian (σ = k / 6.4) normalised to sum 1."""
    sigma = k / 6.4
    t = np.arange(k) - (k - 1) / 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    return g[:, None] * g[None, :]


def windows_of(sample: np.ndarray, k: int) -> np.ndarray:
    """A read-only ``(N, k, k)`` view of every k×k window of a 2-D array (row-major)."""
    sh, sw = sample.shape
    s0, s1 = sample.strides
    view = as_strided(sample, (sh - k + 1, sw - k + 1, k, k), (s0, s1, s0, s1), writeable=False)
    return view.reshape(-1, k, k)  # copies once per call, as the port's reshape of its view does


def masked_ssd(sample: np.ndarray, template: np.ndarray, mask: np.ndarray, gauss: np.ndarray):
    """Gaussian-weighted SSD of one neighbourhood against every window, normalised by Σ G·M.

    Returns float64 ``(Hs-k+1, Ws-k+1)``.
    """
    k = template.shape[0]
    sh, sw = sample.shape
    diff = windows_of(sample, k) - template[None]  # (N, k, k)
    ssd = (diff**2 * gauss[None] * mask[None]).sum(axis=(1, 2))
    return ssd.reshape(sh - k + 1, sw - k + 1) / (mask * gauss).sum()


def frontier(mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unfilled pixels touching a filled one, shuffled, then most filled neighbours first."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    dilated = np.zeros_like(mask)
    count = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            shifted = padded[dy : dy + h, dx : dx + w]
            dilated = np.maximum(dilated, shifted)
            if (dy, dx) != (1, 1):
                count = count + shifted
    ys, xs = np.nonzero(dilated - mask)
    perm = rng.permutation(len(ys))
    ys, xs = ys[perm], xs[perm]
    order = np.argsort(count[ys, xs])[::-1]
    return ys[order], xs[order]


def synthesise(sample_rgb: np.ndarray, size: int, window: int, *, seed: int = 0) -> np.ndarray:
    """Grow a ``size``² texture from ``sample_rgb`` float ``(H, W, C)`` in ``[0, 1]`` (C = 1 or 3).

    Returns float64 ``(size, size, C)``.
    """
    rng = np.random.default_rng(seed)
    if sample_rgb.shape[2] == 3:
        grey = sample_rgb @ np.array([0.299, 0.587, 0.114])  # (H, W): what the search sees
    else:
        grey = sample_rgb[..., 0].astype(np.float64)
    r = window // 2
    gauss = gaussian_2d(window)
    sh, sw = grey.shape
    canvas = np.zeros((size + 2 * r, size + 2 * r))  # grey, zero-padded by r
    mask = np.zeros_like(canvas)
    out = np.zeros((size, size, sample_rgb.shape[2]))
    iy, ix = rng.integers(sh - 2), rng.integers(sw - 2)
    p = size // 2 - 1
    canvas[r + p : r + p + 3, r + p : r + p + 3] = grey[iy : iy + 3, ix : ix + 3]
    mask[r + p : r + p + 3, r + p : r + p + 3] = 1
    out[p : p + 3, p : p + 3] = sample_rgb[iy : iy + 3, ix : ix + 3]
    inner = mask[r : r + size, r : r + size]  # a view: filling `mask` fills it
    while inner.sum() < size * size:
        ys, xs = frontier(inner, rng)
        for y, x in zip(ys, xs):  # canvas coordinates; the window starts at (y, x) padded
            d = masked_ssd(
                grey,
                canvas[y : y + window, x : x + window],
                mask[y : y + window, x : x + window],
                gauss,
            )
            cy, cx = np.nonzero(d <= d.min() * 1.1)
            pick = rng.integers(len(cy))
            sy, sx = cy[pick] + r, cx[pick] + r
            canvas[y + r, x + r] = grey[sy, sx]
            mask[y + r, x + r] = 1
            out[y, x] = sample_rgb[sy, sx]
    return out
