"""notebooks/10_pix2pix.ipynb (cells tagged ``testable``): the losses against their formulas, the
receptive field against a brute-force gradient probe, and the training code's steps and seeding.
The notebook itself runs in tests/test_kit_notebooks.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_kit.nbrun import ROOT, tagged_namespace
from course_lib import nets


@pytest.fixture(scope="module")
def nb10() -> dict:
    return tagged_namespace(ROOT / "notebooks/10_pix2pix.ipynb")


def _probe(net: nn.Module, in_ch: int, size: int) -> tuple[int, int]:
    """Height and width of the input region whose pixels change the centre logit (brute force:
    nudge one pixel at a time and see whether the logit moves)."""
    x = torch.rand(1, in_ch, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(next(net.parameters()).dtype)
    with torch.no_grad():
        out = net(x)
        i, j = out.shape[-2] // 2, out.shape[-1] // 2
        base = out[0, 0, i, j].item()
        hits = torch.zeros(size, size, dtype=torch.bool)
        for y in range(size):
            for z in range(size):
                bumped = x.clone()
                bumped[0, :, y, z] += 1.0
                hits[y, z] = abs(net(bumped)[0, 0, i, j].item() - base) > 1e-6
    rows, cols = hits.any(1).nonzero(), hits.any(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("n_layers, expected", [(1, 16), (2, 34)])
def test_receptive_field_matches_a_pixel_by_pixel_probe(nb10, n_layers, expected):
    D = nets.PatchDiscriminator(2, ndf=2, n_layers=n_layers, norm="none").double()
    assert nb10["receptive_field"](D) == expected
    assert _probe(D, 2, 48) == (expected, expected)


def test_receptive_field_of_the_papers_patchgan_is_70_and_probe_agrees(nb10):
    D = nets.PatchDiscriminator(6, ndf=2, n_layers=3, norm="none")
    assert nb10["receptive_field"](D) == 70
    assert nb10["probed_receptive_field"](D, in_ch=6, size=128) == 70


def test_receptive_field_counts_strides_in_order(nb10):
    # 3x3 stride 1 then 3x3 stride 2: 1 + 2 + 2 = 5; reversed: 1 + 2 + 2*2 = 7.
    a = nn.Sequential(nn.Conv2d(1, 1, 3, 1), nn.Conv2d(1, 1, 3, 2))
    b = nn.Sequential(nn.Conv2d(1, 1, 3, 2), nn.Conv2d(1, 1, 3, 1))
    assert nb10["receptive_field"](a) == 5 and nb10["receptive_field"](b) == 7


def test_pix2pix_losses_match_the_formula(nb10):
    logits = torch.randn(2, 1, 3, 5, generator=torch.Generator().manual_seed(0))
    p = torch.sigmoid(logits)
    assert torch.allclose(nb10["gan_loss"](logits, True), -torch.log(p).mean(), atol=1e-6)
    assert torch.allclose(nb10["gan_loss"](logits, False), -torch.log(1 - p).mean(), atol=1e-6)
    D = nets.PatchDiscriminator(6, ndf=2, n_layers=1)
    x, y, fake = (torch.rand(2, 3, 16, 16) for _ in range(3))
    total, adv, l1 = nb10["generator_loss"](D, x, y, fake, lambda_l1=100.0)
    assert torch.isclose(l1, (fake - y).abs().mean())
    assert torch.isclose(total, adv + 100 * l1)
    with torch.no_grad():
        real_l, fake_l = D(torch.cat([x, y], 1)), D(torch.cat([x, fake], 1))
    want = 0.5 * (
        -torch.log(torch.sigmoid(real_l)).mean() - torch.log(1 - torch.sigmoid(fake_l)).mean()
    )
    assert torch.isclose(nb10["discriminator_loss"](D, x, y, fake), want, atol=1e-6)


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_each_step_moves_only_its_own_network(nb10):
    G = nets.UNetGenerator(3, 3, ngf=2, depth=5)
    D = nets.PatchDiscriminator(6, ndf=2, n_layers=2)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
    g0, d0 = _params(G), _params(D)
    nb10["discriminator_step"](D, opt_d, x, y, G(x))
    assert all(torch.equal(a, b) for a, b in zip(g0, _params(G)))
    assert not all(torch.equal(a, b) for a, b in zip(d0, _params(D)))
    d1 = _params(D)
    config = nb10["Pix2PixConfig"]()
    nb10["generator_step"](D, opt_g, x, y, G(x), config=config)
    assert all(torch.equal(a, b) for a, b in zip(d1, _params(D)))
    assert not all(torch.equal(a, b) for a, b in zip(g0, _params(G)))


def test_training_runs_l1_falls_and_follows_the_generator(nb10):
    A = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    config = nb10["Pix2PixConfig"](steps=6, use_gan=False, batch=4, ngf=2, lr=1e-2)
    runs = []
    for global_seed in (0, 1):  # dropout draws from the run's generator, not the global RNG
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        G, _, hist = nb10["train_pix2pix"](
            A, A, config=config, device="cpu", generator=torch.Generator().manual_seed(5)
        )
        assert torch.equal(torch.get_rng_state(), before), "the global RNG was read or changed"
        runs.append((_params(G), hist))
    (p1, hist), (p2, _) = runs
    assert len(hist["G_L1"]) == 6 and hist["D"] == []
    assert hist["G_L1"][-1] < hist["G_L1"][0]
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_unconditional_d_sees_the_output_alone(nb10):
    """conditional=False: D gets y (3 channels), not [x, y]; the losses follow the same formula."""
    D = nets.PatchDiscriminator(3, ndf=2, n_layers=1)
    x, y, fake = (
        torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    p_real, p_fake = torch.sigmoid(D(y)).detach(), torch.sigmoid(D(fake)).detach()
    want = 0.5 * (-torch.log(p_real).mean() - torch.log(1 - p_fake).mean())
    got = nb10["discriminator_loss"](D, x, y, fake, conditional=False)
    assert torch.isclose(got, want, atol=1e-6)
    total, adv, _ = nb10["generator_loss"](D, x, y, fake, conditional=False)
    assert torch.isclose(adv, -torch.log(p_fake).mean(), atol=1e-6)
    config = nb10["Pix2PixConfig"](steps=1, batch=2, ngf=2, conditional=False)
    _, D_run, hist = nb10["train_pix2pix"](
        x, y, config=config, device="cpu", generator=torch.Generator().manual_seed(0)
    )
    first = next(m for m in D_run.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 3
    assert len(hist["D"]) == 1


def test_detail_rates_texture_above_pixel_noise_of_the_same_strength(nb10):
    """The control behind `noise-is-not-detail`: 4-pixel checks vs iid noise, equal std."""
    idx = torch.arange(32)
    checks = (((idx[:, None] // 4) + (idx[None, :] // 4)) % 2).float()  # 4x4-pixel squares
    texture = (0.5 + 0.1 * (2 * checks - 1)).expand(2, 3, 32, 32)
    noise = 0.5 + 0.1 * torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    noise = noise.expand(2, 3, 32, 32)
    flat = torch.full((2, 3, 32, 32), 0.5)
    assert nb10["detail"](flat) == 0
    assert nb10["detail"](texture) > 5 * nb10["detail"](noise)
