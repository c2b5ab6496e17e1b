"""notebooks/11_cyclegan.ipynb (cells tagged ``testable``): the losses against their formulas,
the image pool, the generator objective's parts, the two update steps, seeding through a
``torch.Generator``, and the ablation's measurements. The notebook itself runs in
tests/test_kit_notebooks.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def nb11() -> dict:
    return tagged_namespace(ROOT / "notebooks/11_cyclegan.ipynb")


def _params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_cyclegan_losses_match_the_formula(nb11):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 1, 3, 5, generator=g)
    assert torch.allclose(nb11["gan_loss"](logits, True), ((logits - 1) ** 2).mean())
    assert torch.allclose(nb11["gan_loss"](logits, False), (logits**2).mean())
    p = torch.sigmoid(logits)
    got = nb11["gan_loss"](logits, True, mode="vanilla")
    assert torch.allclose(got, -torch.log(p).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        nb11["gan_loss"](logits, True, mode="wgan")
    x, y = torch.rand(2, 3, 5, 7, generator=g), torch.rand(2, 3, 5, 7, generator=g)
    loop = sum(abs(a - b) for a, b in zip(x.flatten().tolist(), y.flatten().tolist())) / x.numel()
    assert math.isclose(nb11["cycle_loss"](x, y).item(), loop, rel_tol=1e-5)
    assert math.isclose(nb11["identity_loss"](x, y).item(), loop, rel_tol=1e-5)
    assert math.isclose(nb11["pixel_loss"](x, y).item(), loop, rel_tol=1e-5)
    ext = lambda im: {"relu2_1": F.avg_pool2d(im, 2)}
    want = F.mse_loss(F.avg_pool2d(x[..., :4, :6], 2), F.avg_pool2d(y[..., :4, :6], 2))
    got = nb11["feature_loss"](x[..., :4, :6], y[..., :4, :6], extractor=ext)
    assert torch.isclose(got, want)


def test_image_pool_fills_then_swaps_half_the_time(nb11):
    pool = nb11["ImagePool"](4, generator=torch.Generator().manual_seed(0))
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: passed straight through
    swapped = 0
    for step in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        out = pool.query(new)
        swapped += int(out.item() != new.item())
        assert len(pool.images) == 4
    assert 70 < swapped < 130  # probability 1/2
    passthrough = nb11["ImagePool"](0)
    x = torch.rand(2, 1, 1, 1, requires_grad=True)
    assert not passthrough.query(x).requires_grad


def _models(nb11, **kw):
    config = nb11["CycleGANConfig"](ngf=2, n_blocks=1, **kw)
    m = nb11["make_cyclegan"](config, device="cpu", generator=torch.Generator().manual_seed(0))
    return config, m


def test_cyclegan_generator_objective_parts(nb11):
    config, m = _models(nb11)
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    total, fake_b, fake_a, parts = nb11["generator_objective"](m, a, b, config=config)
    assert set(parts) == {"adv", "cycle", "identity"}
    with torch.no_grad():
        cyc = 10 * ((m["G_BA"](fake_b) - a).abs().mean() + (m["G_AB"](fake_a) - b).abs().mean())
        idt = 5 * ((m["G_AB"](b) - b).abs().mean() + (m["G_BA"](a) - a).abs().mean())
    assert torch.isclose(parts["cycle"], cyc, atol=1e-6)
    assert torch.isclose(parts["identity"], idt, atol=1e-6)  # weight lambda_idt * lambda = 5
    assert torch.isclose(total, sum(parts.values()))
    replace = nb11["replace"]
    none = replace(config, content="none", lambda_idt=0.0)
    assert set(nb11["generator_objective"](m, a, b, config=none)[3]) == {"adv"}
    pixel = replace(config, content="pixel", lambda_idt=0.0)
    got = nb11["generator_objective"](m, a, b, config=pixel)[3]["pixel"]
    with torch.no_grad():
        want = 10 * ((m["G_AB"](a) - a).abs().mean() + (m["G_BA"](b) - b).abs().mean())
    assert torch.isclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="content"):
        nb11["generator_objective"](m, a, b, config=replace(config, content="cycles"))


def test_generator_step_moves_only_the_generators_and_unfreezes_d(nb11):
    config, m = _models(nb11)
    gens = [*m["G_AB"].parameters(), *m["G_BA"].parameters()]
    discs = [*m["D_A"].parameters(), *m["D_B"].parameters()]
    opt_g, opt_d = torch.optim.Adam(gens, 1e-2), torch.optim.Adam(discs, 1e-2)
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    g0, d0 = _params(m["G_AB"]), [p.detach().clone() for p in discs]
    fake_b, fake_a, logs = nb11["generator_step"](m, opt_g, a, b, config=config)
    assert not _same(g0, _params(m["G_AB"]))
    assert _same(d0, [p.detach() for p in discs])
    assert all(p.requires_grad for p in discs)  # unfrozen after the G step
    assert not fake_b.requires_grad and set(logs) == {"G", "adv", "cycle", "identity"}
    g1 = _params(m["G_AB"])
    pools = {k: nb11["ImagePool"](0) for k in "AB"}
    nb11["discriminator_step"](m, opt_d, a, b, fake_a, fake_b, pools=pools, gan_mode="lsgan")
    assert _same(g1, _params(m["G_AB"])) and not _same(d0, [p.detach() for p in discs])


def test_training_follows_its_generator_not_the_global_rng(nb11):
    A = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    config = nb11["CycleGANConfig"](steps=2, batch=2, ngf=2, n_blocks=1)
    runs = []
    for global_seed in (1, 2):  # a different global state each time: same result
        torch.manual_seed(global_seed)
        runs.append(
            nb11["train_cyclegan"](
                A,
                A.flip(-1),
                config=config,
                device="cpu",
                generator=torch.Generator().manual_seed(4),
            )
        )
    (m1, hist), (m2, _) = runs
    assert len(hist["G"]) == len(hist["D"]) == len(hist["cycle"]) == 2
    assert _same(_params(m1["G_AB"]), _params(m2["G_AB"]))
    assert _same(_params(m1["D_A"]), _params(m2["D_A"]))
    other = nb11["train_cyclegan"](
        A, A.flip(-1), config=config, device="cpu", generator=torch.Generator().manual_seed(5)
    )[0]
    assert not _same(_params(m1["G_AB"]), _params(other["G_AB"]))


def _disc_image(cy: float, cx: float, r: float, size: int = 24) -> torch.Tensor:
    """A red disc on a light ground, (1, 3, size, size)."""
    t = (torch.arange(size) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    inside = ((y - cy) ** 2 + (x - cx) ** 2 < r**2).float()
    red, paper = torch.tensor([0.8, 0.2, 0.2]), torch.tensor([0.93, 0.91, 0.86])
    return (inside * red.view(3, 1, 1) + (1 - inside) * paper.view(3, 1, 1))[None]


def test_shape_iou_is_one_for_the_same_shape_and_falls_when_it_moves(nb11):
    a = _disc_image(0.5, 0.5, 0.25)
    recoloured = nb11["on_ground"](a, (0.1, 0.1, 0.3)) * 0.9  # other ground, other colours
    assert nb11["shape_iou"](a, a) == pytest.approx(1.0)
    assert nb11["shape_iou"](recoloured, a) > 0.9
    moved = _disc_image(0.5, 0.75, 0.2)
    # brute force: IoU of the two discs' pixel sets
    m_a, m_b = nb11["shape_mask"](a), nb11["shape_mask"](moved)
    want = float((m_a * m_b).sum() / ((m_a + m_b) > 0).sum())
    assert nb11["shape_iou"](moved, a) == pytest.approx(want) and want < 0.5


def test_b_score_tells_the_two_domains_apart(nb11):
    a = torch.cat([_disc_image(0.5, 0.5, 0.25), _disc_image(0.4, 0.6, 0.3)])
    b = nb11["on_ground"](a[:, [1, 0, 2]], (0.1, 0.12, 0.25))  # green shapes on a dark ground
    regions = nb11["region_colours"]
    centroids = {
        k: [r.mean(0) for r in regions(x, nb11["shape_mask"](x))] for k, x in [("A", a), ("B", b)]
    }
    assert nb11["b_score"](a, a, centroids=centroids) == 0.0
    assert nb11["b_score"](b, a, centroids=centroids) == 1.0
    half = torch.cat([a[:1], b[1:]])  # one image stays A, one becomes B
    assert nb11["b_score"](half, a, centroids=centroids) == 0.5
    ground_only = nb11["on_ground"](a, (0.1, 0.12, 0.25))  # B's ground, A's shape colour
    assert nb11["b_score"](ground_only, a, centroids=centroids) == 0.0


def test_shape_specificity_matches_a_loop_over_pairs(nb11):
    a = torch.cat(
        [_disc_image(0.3, 0.3, 0.2), _disc_image(0.7, 0.7, 0.2), _disc_image(0.3, 0.7, 0.15)]
    )
    spec = nb11["shape_specificity"]
    iou = nb11["shape_iou"]
    own = [iou(a[i : i + 1], a[i : i + 1]) for i in range(3)]
    others = [
        sum(iou(a[i : i + 1], a[j : j + 1]) for j in range(3) if j != i) / 2 for i in range(3)
    ]
    want = sum(o - p for o, p in zip(own, others)) / 3
    assert spec(a, a) == pytest.approx(want, abs=1e-6) and want > 0.5
    same = a[:1].expand(3, -1, -1, -1)  # one output for every input: ignores the input
    assert spec(same, a) == pytest.approx(0.0, abs=1e-6)
