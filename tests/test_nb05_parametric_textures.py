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


def test_library_equals_the_notebook(nb):
    """course_lib.portilla_simoncelli is notebook 05's pyramid and statistics, promoted."""
    from course_lib import portilla_simoncelli as ps

    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    ours, theirs = nb["steerable_pyramid"](x, n_scales=3), ps.steerable_pyramid(x, n_scales=3)
    torch.testing.assert_close(ours["highpass"], theirs["highpass"])
    for a, b in zip(ours["bands"] + ours["lowpass"], theirs["bands"] + theirs["lowpass"]):
        torch.testing.assert_close(a, b)
    ours, theirs = nb["ps_statistics"](x, n_scales=3), ps.ps_statistics(x, n_scales=3)
    assert list(ours) == list(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)
    scales = nb["group_scales"](theirs)
    torch.testing.assert_close(scales, ps.group_scales(theirs))
    y = ps.ps_statistics(x.flip(-1), n_scales=3)
    torch.testing.assert_close(nb["ps_loss"](y, theirs, scales), ps.ps_loss(y, theirs))


def test_normalised_loss_is_a_sum_of_relative_squares():
    from course_lib import portilla_simoncelli as ps

    target = {"a": torch.tensor([[3.0, 4.0]]), "b": torch.tensor([[1e-3]])}
    stats = {"a": torch.tensor([[3.0, 5.0]]), "b": torch.tensor([[2e-3]])}
    # rms of a = sqrt((9 + 16) / 2); rms of b = 1e-3
    expected = (1.0 / (25 / 2) ** 0.5) ** 2 + 1.0
    assert float(ps.ps_loss(stats, target)) == pytest.approx(expected, rel=1e-5)
    raw = {k: torch.ones(()) for k in target}
    assert float(ps.ps_loss(stats, target, raw)) == pytest.approx(1.0 + 1e-6, rel=1e-5)
    errors = ps.group_errors(stats, target)
    assert errors["a"] == pytest.approx(1 / 5) and errors["b"] == pytest.approx(1.0)


def test_library_checks_its_input():
    from course_lib import portilla_simoncelli as ps

    with pytest.raises(ValueError, match="divisible by 2\\*\\*n_scales = 8"):
        ps.ps_statistics(torch.rand(1, 1, 20, 32), n_scales=3)
    with pytest.raises(ValueError, match="1 channels"):
        ps.steerable_pyramid(torch.rand(1, 3, 32, 32))


def test_library_stays_in_the_input_dtype_and_synthesis_makes_progress():
    from course_lib import portilla_simoncelli as ps

    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    pyr = ps.steerable_pyramid(x, n_scales=2)
    assert pyr["bands"][0].dtype == torch.complex64 and pyr["highpass"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in ps.ps_statistics(x, n_scales=2).values())
    res = ps.synthesise(x, steps=5, n_scales=2, progress=False, generator=torch.Generator())
    assert res.image.shape == (1, 1, 32, 32) and res.history[-1] < 0.5 * res.history[0]
