"""Independent reference computations shared by the notebook tests: plain loops, no vectorising."""

from __future__ import annotations

import torch


def gram_loop(f: torch.Tensor) -> torch.Tensor:
    """Gram matrices by an explicit loop: ``(B, C, H, W)`` → ``(B, C, C)`` float64, entry
    ``[b, i, j]`` = Σ over positions of ``f[b, i] · f[b, j]``, divided by ``C·H·W``."""
    b, c, h, w = f.shape
    out = torch.zeros(b, c, c, dtype=torch.float64)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                out[n, i, j] = sum(
                    float(f[n, i, y, x]) * float(f[n, j, y, x]) for y in range(h) for x in range(w)
                )
    return out / (c * h * w)
