"""The popular Python image-quilting notebook's synthesis loop, re-written in our own words.

The peer is ``axu2/image-quilting`` (``Final_Project_COS429 (1).ipynb``, the synthesis cell;
the kit's reference notes on algorithms, section 9). What it does, and what we keep here so
that the timing is faithful:

* images are float64 ``(H, W, C)`` NumPy arrays (``skimage.util.img_as_float``);
* the output holds ``n × n`` blocks of side ``L`` with overlap ``L // 6``, placed in raster order;
* every block but the first is found by an **exhaustive search in Python loops**: for each of the
  ``(H − L) × (W − L)`` candidate positions (``range(h − L)``, so the last row/column of offsets is
  never tried), the squared difference on the left strip plus the top strip minus the corner;
  the **exact** best block is taken (no tolerance);
* the cut is a **Dijkstra** search (a heap of ``(cost, path)``) for the cheapest top-to-bottom
  path through each overlap's error surface, the horizontal one on the transposed surface; the
  pixels left of / above the paths keep the old output (the two masks OR-ed, i.e. two full seams).

Used by ``benchmarks/quilting.py`` only; it is not part of the course.
"""

from __future__ import annotations

import heapq

import numpy as np


def _overlap_ssd(patch, out, y, x, ov):
    """Squared difference of ``patch`` (L, L, C) with ``out`` on the left and top strips."""
    size = patch.shape[0]
    error = 0.0
    if x > 0:
        error += np.sum((patch[:, :ov] - out[y : y + size, x : x + ov]) ** 2)
    if y > 0:
        error += np.sum((patch[:ov, :] - out[y : y + ov, x : x + size]) ** 2)
    if x > 0 and y > 0:
        error -= np.sum((patch[:ov, :ov] - out[y : y + ov, x : x + ov]) ** 2)
    return error


def _best_block(texture, out, y, x, size, ov):
    """The exact best block: a Python loop over every candidate position (as the peer does)."""
    h, w = texture.shape[:2]
    errors = np.zeros((h - size, w - size))
    for i in range(h - size):
        for j in range(w - size):
            errors[i, j] = _overlap_ssd(texture[i : i + size, j : j + size], out, y, x, ov)
    i, j = np.unravel_index(np.argmin(errors), errors.shape)
    return texture[i : i + size, j : j + size]


def _dijkstra_path(errors):
    """Cheapest connected top-to-bottom path through ``errors`` (H, W): a column per row."""
    h, w = errors.shape
    heap = [(errors[0, j], [j]) for j in range(w)]
    heapq.heapify(heap)
    claimed = set()
    while heap:
        cost, path = heapq.heappop(heap)
        depth, col = len(path), path[-1]
        if depth == h:
            return path
        for nxt in (col - 1, col, col + 1):
            if 0 <= nxt < w and (depth, nxt) not in claimed:
                claimed.add((depth, nxt))  # the first (cheapest) predecessor claims the node
                heapq.heappush(heap, (cost + errors[depth, nxt], path + [nxt]))
    raise RuntimeError("no path")  # unreachable for a non-empty surface


def _cut(patch, out, y, x, ov):
    """Paste ``patch`` along the minimum cuts: pixels left of / above the paths keep ``out``."""
    patch = patch.copy()
    dy, dx = patch.shape[:2]
    old_side = np.zeros((dy, dx), dtype=bool)
    if x > 0:
        left = np.sum((patch[:, :ov] - out[y : y + dy, x : x + ov]) ** 2, axis=2)
        for i, j in enumerate(_dijkstra_path(left)):
            old_side[i, :j] = True
    if y > 0:
        up = np.sum((patch[:ov, :] - out[y : y + ov, x : x + dx]) ** 2, axis=2)
        for j, i in enumerate(_dijkstra_path(up.T)):
            old_side[:i, j] = True
    np.copyto(patch, out[y : y + dy, x : x + dx], where=old_side[..., None])
    return patch


def quilt_peer(texture: np.ndarray, size: int, block: int, *, seed: int = 0) -> np.ndarray:
    """Quilt a ``size × size`` texture (cropped from the peer's ``n·L − (n−1)·ov`` grid).

    ``texture``: float64 ``(H, W, C)`` in ``[0, 1]``. Returns float64 ``(size, size, C)``.
    """
    rng = np.random.default_rng(seed)
    ov = block // 6
    n = max(1, -(-(size - ov) // (block - ov)))
    side = n * block - (n - 1) * ov
    out = np.zeros((side, side, texture.shape[2]))
    h, w = texture.shape[:2]
    for i in range(n):
        for j in range(n):
            y, x = i * (block - ov), j * (block - ov)
            if i == 0 and j == 0:
                py, px = rng.integers(h - block), rng.integers(w - block)
                patch = texture[py : py + block, px : px + block]
            else:
                patch = _best_block(texture, out, y, x, block, ov)
                patch = _cut(patch, out, y, x, ov)
            out[y : y + block, x : x + block] = patch
    return out[:size, :size]
