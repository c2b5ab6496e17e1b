"""Procedural textures and paintings, drawn by code so that the kit needs no download.

Each texture is a function ``(res, seed=...) -> (res, res, 3)`` float array in ``[0, 1]``,
designed on a 256 x 256 canvas (:data:`NATIVE`) and drawn at resolution ``res``; the catalogue
in :mod:`course_lib.samples` names them. Tileable where the texture allows (the Voronoi-based
ones wrap around).
"""

from __future__ import annotations

import numpy as np
import torch

NATIVE = 256  # procedural images are designed on a 256 x 256 canvas


def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in 256-canvas units at resolution ``res`` (y, x), each (res, res)."""
    t = (np.arange(res) + 0.5) * (NATIVE / res)
    return np.meshgrid(t, t, indexing="ij")


def _value_noise(res: int, rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise in [0, 1], ``(res, res, ch)``: a random grid upsampled bicubically."""
    coarse = rng.random((channels, cells, cells)).astype(np.float32)
    up = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=(res, res), mode="bicubic", align_corners=False
    )[0]
    return up.clamp(0, 1).permute(1, 2, 0).numpy()


def _fractal_noise(res: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    """Sum of octaves of value noise (roughly 1/f), rescaled to [0, 1]; (res, res, ch)."""
    total = sum(
        _value_noise(res, rng, 4 * 2**o, channels) * 0.5**o for o in range(5 if res > 64 else 3)
    )
    lo, hi = total.min(axis=(0, 1)), total.max(axis=(0, 1))
    return (total - lo) / (hi - lo + 1e-8)


def _voronoi(res: int, rng: np.random.Generator, n: int, jitter: float = 1.0):
    """Distances to the nearest and second-nearest of ``n`` jittered-grid sites on a torus.

    Returns (d1, d2, index) each (res, res); distances in 256-canvas units.
    """
    k = int(np.ceil(np.sqrt(n)))
    gy, gx = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    sites = np.stack([gy, gx], -1).reshape(-1, 2) + 0.5 + jitter * (rng.random((k * k, 2)) - 0.5)
    sites = sites * (NATIVE / k)
    y, x = _grid(res)
    dy = np.abs(y[..., None] - sites[:, 0])
    dx = np.abs(x[..., None] - sites[:, 1])
    dy, dx = np.minimum(dy, NATIVE - dy), np.minimum(dx, NATIVE - dx)  # wrap: tileable
    d = np.sqrt(dy**2 + dx**2)  # (res, res, sites)
    order = np.argsort(d, axis=-1)[..., :2]
    d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    return d1, d2, order[..., 0]


def bricks(res: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    row = (y // 32).astype(int)
    xs = x + (row % 2) * 32
    col = (xs // 64).astype(int)
    mortar = ((y % 32) < 4) | ((xs % 64) < 4)
    tint = rng.normal(0, 0.06, (9, 9, 3))[row % 9, col % 9]
    grain = _fractal_noise(res, rng)[..., 0:1] * 0.25
    brick = np.array([0.62, 0.27, 0.18]) + tint + grain - 0.12
    mortar_col = np.array([0.78, 0.76, 0.70]) + grain * 0.3
    return np.where(mortar[..., None], mortar_col, brick).clip(0, 1)


def tiles(res: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    i, j = (y // 32).astype(int), (x // 32).astype(int)
    palette = np.array([[0.15, 0.30, 0.62], [0.93, 0.92, 0.86], [0.80, 0.42, 0.22]])
    colour = palette[(i + 2 * j) % 3]
    r = np.hypot((y % 32) - 16, (x % 32) - 16)
    motif = (r < 8)[..., None] * (palette[(i + 2 * j + 1) % 3] - colour)
    grout = (((y % 32) < 3) | ((x % 32) < 3))[..., None]
    noise = _value_noise(res, rng, 32)[..., 0:1] * 0.08
    return np.where(grout, 0.55, colour + motif + noise - 0.04).clip(0, 1)


def weave(res: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    i, j = (y // 16).astype(int), (x // 16).astype(int)
    over = (i + j) % 2 == 0  # horizontal thread on top
    along = np.where(over, (y % 16) / 16, (x % 16) / 16)
    shade = 0.55 + 0.45 * np.sin(np.pi * along)
    warp, weft = np.array([0.85, 0.75, 0.45]), np.array([0.35, 0.22, 0.15])
    colour = np.where(over[..., None], warp, weft) * shade[..., None]
    return (colour + _value_noise(res, rng, 64) * 0.08).clip(0, 1)


def stripes(res: int, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    band = ((x + y) / 23.0).astype(int) % 3
    palette = np.array([[0.90, 0.80, 0.30], [0.20, 0.45, 0.60], [0.85, 0.35, 0.30]])
    return (palette[band] + _value_noise(res, rng, 48) * 0.1 - 0.05).clip(0, 1)


def dots(res: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    i, j = (y // 32).astype(int), (x // 32).astype(int)
    jit = rng.uniform(-5, 5, (8, 8, 2))[i % 8, j % 8]
    radius = rng.uniform(7, 11, (8, 8))[i % 8, j % 8]
    colours = rng.uniform(0.1, 0.9, (8, 8, 3))[i % 8, j % 8]
    r = np.hypot((y % 32) - 16 - jit[..., 0], (x % 32) - 16 - jit[..., 1])
    edge = np.clip(radius - r, 0, 1)[..., None]  # 1-pixel anti-aliased rim
    paper = np.array([0.96, 0.93, 0.84])
    return (edge * colours + (1 - edge) * paper).clip(0, 1)


def rocks(res: int, seed: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d1, d2, idx = _voronoi(res, rng, 49)
    base = rng.uniform(0.35, 0.7, (64, 1)) * np.array([1.0, 0.92, 0.8]) + rng.normal(
        0, 0.04, (64, 3)
    )
    colour = base[idx]
    bulge = np.clip((d2 - d1) / 14.0, 0, 1) ** 0.5  # bright in the middle, dark in the cracks
    grain = _fractal_noise(res, rng)[..., 0:1] * 0.2
    return (colour * (0.25 + 0.75 * bulge[..., None]) + grain - 0.08).clip(0, 1)


def radishes(res: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d1, d2, idx = _voronoi(res, rng, 36)
    red = np.array([0.78, 0.12, 0.25]) + rng.normal(0, 0.06, (64, 3))
    colour = red[idx]
    inside = np.clip(1.2 - d1 / ((d1 + d2) * 0.45), 0, 1)  # round roots in each cell
    highlight = np.exp(-((d1 / 6.0) ** 2))[..., None] * 0.5
    leaves = np.array([0.18, 0.35, 0.12]) * (0.6 + 0.8 * _fractal_noise(res, rng))
    roots = colour + highlight * (1 - colour)
    w = inside[..., None]
    return (w * roots + (1 - w) * leaves).clip(0, 1)


def noise(res: int, seed: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = _fractal_noise(res, rng, channels=3)
    lo, hi = np.array([0.25, 0.20, 0.12]), np.array([0.85, 0.78, 0.60])
    return (lo + n * (hi - lo)).clip(0, 1)


# ----------------------------------------------------------------------------- styles


def swirls(res: int, seed: int = 11) -> np.ndarray:
    """Brush strokes along a field of vortices (line-integral convolution), night-sky colours."""
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    vy, vx = np.zeros_like(y), np.zeros_like(x)
    for cy, cx, s in zip(rng.uniform(0, 256, 7), rng.uniform(0, 256, 7), rng.choice([-1, 1], 7)):
        dy, dx = y - cy, x - cx
        r2 = dy**2 + dx**2 + 400.0
        vy, vx = vy + s * dx / r2 * 60, vx - s * dy / r2 * 60
    vx = vx + 0.3  # a gentle drift to the right
    norm = np.hypot(vy, vx) + 1e-6
    vy, vx = vy / norm, vx / norm
    noise = rng.random((res, res))
    acc = np.zeros((res, res))
    py, px = y.copy(), x.copy()
    step = NATIVE / res
    for _ in range(12):  # follow the field and average the noise along it
        iy = (py / step).astype(int) % res
        ix = (px / step).astype(int) % res
        acc += noise[iy, ix]
        py, px = py + 1.5 * vy[iy, ix], px + 1.5 * vx[iy, ix]
    streak = (acc / 12 - 0.5) * 3 + 0.5
    glow = _fractal_noise(res, rng)[..., 0]
    dark, mid, light = (
        np.array([0.05, 0.10, 0.30]),
        np.array([0.20, 0.40, 0.75]),
        np.array([0.98, 0.85, 0.30]),
    )
    t = np.clip(0.35 * streak + 0.65 * glow, 0, 1)[..., None]
    colour = np.where(
        t < 0.6, dark + (mid - dark) * (t / 0.6), mid + (light - mid) * ((t - 0.6) / 0.4)
    )
    return colour.clip(0, 1)


def mosaic(res: int, seed: int = 12) -> np.ndarray:
    """Stained glass: bright Voronoi cells with dark leading."""
    rng = np.random.default_rng(seed)
    d1, d2, idx = _voronoi(res, rng, 64, jitter=0.9)
    palette = np.array(
        [
            [0.85, 0.15, 0.15],
            [0.95, 0.75, 0.15],
            [0.15, 0.35, 0.80],
            [0.15, 0.60, 0.30],
            [0.60, 0.20, 0.65],
            [0.95, 0.95, 0.85],
        ]
    )
    colour = palette[rng.integers(0, len(palette), 81)[idx]]
    lead = np.clip((d2 - d1) / 3.0, 0, 1)[..., None]
    glass = colour * (0.75 + 0.25 * _fractal_noise(res, rng))
    return (glass * lead + 0.05 * (1 - lead)).clip(0, 1)


def waves(res: int, seed: int = 13) -> np.ndarray:
    """A woodblock-print sea: bands of Prussian blue with white crests under a cream sky."""
    rng = np.random.default_rng(seed)
    y, x = _grid(res)
    phase = y / 18.0 + 0.8 * np.sin(x / 20.0 + y / 40.0) + 0.4 * np.sin(x / 7.0)
    band = phase - np.floor(phase)
    blue = np.array([0.08, 0.20, 0.42]) + (band[..., None] * np.array([0.25, 0.35, 0.40]))
    crest = (band > 0.88)[..., None]
    colour = np.where(crest, np.array([0.95, 0.93, 0.86]), blue)
    sky = (y < 40 + 15 * np.sin(x / 30.0))[..., None]
    colour = np.where(sky, np.array([0.93, 0.86, 0.70]), colour)
    paper = _value_noise(res, rng, 96) * 0.08
    return (colour + paper - 0.04).clip(0, 1)


def pointillism(res: int, seed: int = 14) -> np.ndarray:
    """Dense dots of colour that follow a smooth underlying colour field."""
    rng = np.random.default_rng(seed)
    field = _fractal_noise(res, rng, channels=3)
    img = np.ones((res, res, 3)) * np.array([0.97, 0.95, 0.90])
    scale = res / NATIVE
    n = int(2600 * scale**2)
    ys, xs = rng.integers(0, res, n), rng.integers(0, res, n)
    rad = max(1, round(2.5 * scale))
    yy, xx = np.mgrid[-rad : rad + 1, -rad : rad + 1]
    disk = (yy**2 + xx**2) <= rad**2
    for cy, cx in zip(ys, xs):
        c = field[cy, cx] * 0.9 + rng.normal(0, 0.08, 3)
        ty, tx = (cy + yy[disk]) % res, (cx + xx[disk]) % res
        img[ty, tx] = c
    return img.clip(0, 1)
