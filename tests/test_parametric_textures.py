"""Notebook 05's steerable pyramid and Portilla–Simoncelli statistics."""

from __future__ import annotations

import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def nb():
    return tagged_namespace(ROOT / "notebooks/05_parametric_textures.ipynb")


def test_pyramid_shapes_and_tight_frame(nb):
    x = torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(0))
    pyr = nb["steerable_pyramid"](x, n_scales=3, n_orientations=4)
    assert [tuple(b.shape) for b in pyr["bands"]] == [(2, 4, 32, 48), (2, 4, 16, 24), (2, 4, 8, 12)]
    assert pyr["bands"][0].is_complex()
    energy = pyr["highpass"].pow(2).sum() + pyr["lowpass"][-1].pow(2).sum() * 4**3
    energy = energy + sum(b.real.pow(2).sum() * 4**s for s, b in enumerate(pyr["bands"]))
    torch.testing.assert_close(energy, x.pow(2).sum(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pyr["lowpass"][-1].mean((2, 3)), x.mean((2, 3)), rtol=0, atol=1e-5)


def test_oriented_band_prefers_its_orientation(nb):
    # vertical stripes (varying along x) excite orientation 0 far more than orientation 2
    xs = torch.arange(32.0)
    stripes = (0.5 + 0.5 * torch.cos(2 * torch.pi * xs / 4)).expand(1, 1, 32, 32)
    band = nb["steerable_pyramid"](stripes, n_scales=2, n_orientations=4)["bands"][0]
    energy = band.abs().pow(2).sum((0, 2, 3))
    assert energy[0] > 100 * energy[2]


def test_statistics_match_independent_computation(nb):
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    stats = nb["ps_statistics"](x, n_scales=2, n_orientations=4, width=5)
    pix = stats["pixel"]
    assert pix.shape == (2, 6)
    a = x[1].flatten().double()
    d = a - a.mean()
    var = (d**2).mean()
    expected = [a.mean(), var, (d**3).mean() / var**1.5, (d**4).mean() / var**2, a.min(), a.max()]
    torch.testing.assert_close(pix[1].double(), torch.stack(expected), rtol=1e-4, atol=1e-5)
    # autocorrelation at zero shift is 1 (normalised by the variance)
    w = 5
    ac = stats["magnitude_autocorr"].view(2, 2, 4, (w * w + 1) // 2)  # (B, scales, K, half)
    torch.testing.assert_close(ac[..., -1], torch.ones(2, 2, 4), rtol=1e-4, atol=1e-4)
    assert stats["cross_orientation"].abs().max() <= 1 + 1e-5


def test_statistics_shift_invariant_and_differentiable(nb):
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    s1 = nb["ps_statistics"](x, n_scales=2)
    s2 = nb["ps_statistics"](x.roll((4, 8), (2, 3)), n_scales=2)  # shifts divisible by 2**2
    # the FFT pyramid is periodic: circular shifts leave the statistics unchanged (except the
    # cross-scale ones, whose bilinear upsampling clamps at the borders instead of wrapping)
    for name in s1:
        if not name.startswith("cross_scale"):
            torch.testing.assert_close(s1[name], s2[name], rtol=1e-4, atol=1e-4, msg=name)
    y = x.clone().requires_grad_(True)
    torch.cat(list(nb["ps_statistics"](y, n_scales=2).values()), 1).pow(2).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
