"""PatchNCE as written in notebooks/13_cut_patchnce.ipynb, against an explicit loop over patches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(ROOT / "notebooks/13_cut_patchnce.ipynb")


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def loop_patchnce(q, k, tau, negatives):
    """-log( e^{q.k+/t} / (e^{q.k+/t} + sum_neg e^{q.k-/t}) ), patch by patch, no masking trick."""
    b, p, _ = q.shape
    out = torch.empty(b, p, dtype=q.dtype)
    for i in range(b):
        for s in range(p):
            pos = float(q[i, s] @ k[i, s]) / tau
            if negatives == "internal":
                negs = [float(q[i, s] @ k[i, t]) / tau for t in range(p) if t != s]
            elif negatives == "batch":
                negs = [
                    float(q[i, s] @ k[j, t]) / tau
                    for j in range(b)
                    for t in range(p)
                    if (j, t) != (i, s)
                ]
            else:
                negs = [
                    float(q[i, s] @ k[j, t]) / tau for j in range(b) if j != i for t in range(p)
                ]
            m = max([pos, *negs])
            denom = sum(math.exp(v - m) for v in [pos, *negs])
            out[i, s] = -(pos - m - math.log(denom))
    return out


@pytest.mark.parametrize("negatives", ["internal", "batch", "external"])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_patchnce_matches_explicit_loop(ns, negatives, tau):
    q, k = unit(3, 5, 7, seed=1), unit(3, 5, 7, seed=2)  # (B, P, D), distinct odd sizes
    got = ns["patchnce_loss"](q, k, tau=tau, negatives=negatives)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, loop_patchnce(q, k, tau, negatives), rtol=1e-9, atol=1e-9)


def test_patchnce_near_chance_for_unrelated_and_low_for_matching(ns):
    loss = ns["patchnce_loss"]
    q, k = unit(2, 50, 64, seed=3), unit(2, 50, 64, seed=4)
    # tau = 1 with random directions: every candidate about equally likely -> ~log(50)
    assert abs(float(loss(q, k, tau=1.0).mean()) - math.log(50)) < 0.3
    assert float(loss(k, k).mean()) < 0.05 * math.log(50)


def test_patchnce_gradient_flows_to_queries_not_keys(ns):
    q = unit(2, 6, 5, seed=5).requires_grad_(True)
    k = unit(2, 6, 5, seed=6).requires_grad_(True)
    ns["patchnce_loss"](q, k).sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_patchnce_internal_ignores_other_images(ns):
    q, k = unit(2, 4, 3, seed=7), unit(2, 4, 3, seed=8)
    k2 = k.clone()
    k2[1] = unit(1, 4, 3, seed=9)[0]  # change image 1's keys only
    loss = ns["patchnce_loss"]
    torch.testing.assert_close(loss(q, k)[0], loss(q, k2)[0])
    assert not torch.allclose(
        loss(q, k, negatives="external")[0], loss(q, k2, negatives="external")[0]
    )


def test_patchnce_errors(ns):
    loss = ns["patchnce_loss"]
    with pytest.raises(ValueError, match="B, P, D"):
        loss(unit(2, 3, 4, seed=0), unit(2, 4, 4, seed=0))
    with pytest.raises(ValueError, match="negatives"):
        loss(unit(2, 3, 4, seed=0), unit(2, 3, 4, seed=0), negatives="both")
    with pytest.raises(ValueError, match="at least 2"):
        loss(unit(1, 3, 4, seed=0), unit(1, 3, 4, seed=0), negatives="external")


def test_patch_sampling_reuses_locations(ns):
    """The query pass must read the same locations as the key pass, for every image."""
    feats = [torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)]
    ident = [torch.nn.Identity()]
    g = torch.Generator().manual_seed(0)
    zs, ids = ns["sample_patch_features"](feats, ident, num_patches=6, generator=g)
    zs2, ids2 = ns["sample_patch_features"](feats, ident, ids, num_patches=6)
    assert zs[0].shape == (2, 6, 3) and torch.equal(ids[0], ids2[0])
    flat = feats[0].flatten(2).transpose(1, 2)[:, ids[0]]  # (B, P, C)
    torch.testing.assert_close(zs[0], flat / (flat.norm(dim=-1, keepdim=True) + 1e-7))
    assert len(set(ids[0].tolist())) == 6  # without replacement


def test_lsgan_loss(ns):
    logits = torch.tensor([[0.2, -1.0], [1.5, 0.0]])
    torch.testing.assert_close(ns["lsgan_loss"](logits, True), ((logits - 1) ** 2).mean())
    torch.testing.assert_close(ns["lsgan_loss"](logits, False), (logits**2).mean())


def test_train_cut_calls_back_every_step_with_the_generator(ns):
    """The callback that notebook 13's internal/external experiment measures with."""
    pool = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = []
    config = ns["CUTConfig"](steps=3, batch=2, num_patches=8, ngf=4, nce_idt=False)
    G, _, history = ns["train_cut"](
        pool, pool.flip(-1), config=config, device="cpu", callback=lambda s, g: seen.append((s, g))
    )
    assert [s for s, _ in seen] == [1, 2, 3]
    assert all(g is G for _, g in seen)
    assert all(len(v) == 3 for v in history.values())


def test_edge_agreement_is_the_correlation_of_gradient_magnitudes(ns):
    g = torch.Generator().manual_seed(3)
    src, out = torch.rand(3, 3, 12, 10, generator=g), torch.rand(3, 3, 12, 10, generator=g)

    def magnitudes(x):  # loop over pixels, luminance weights of Rec. 601
        y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        b, h, w = y.shape
        m = torch.empty(b, h - 1, w - 1, dtype=torch.float64)
        for i in range(1, h):
            for j in range(1, w):
                gx = y[:, i, j] - y[:, i, j - 1]
                gy = y[:, i, j] - y[:, i - 1, j]
                m[:, i - 1, j - 1] = (gx**2 + gy**2).sqrt()
        return m.flatten(1)

    a, b = magnitudes(src.double()), magnitudes(out.double())
    pearson = [float(torch.corrcoef(torch.stack([a[i], b[i]]))[0, 1]) for i in range(3)]
    assert ns["edge_agreement"](src, out) == pytest.approx(sum(pearson) / 3, abs=1e-5)
    assert ns["edge_agreement"](src, src) == pytest.approx(1.0, abs=1e-6)
    # recolouring that scales luminance keeps the edges where they were
    assert ns["edge_agreement"](src, 0.5 * src + 0.2) == pytest.approx(1.0, abs=1e-5)


def test_diversity_is_the_ratio_of_mean_pairwise_l1(ns):
    g = torch.Generator().manual_seed(4)
    src, out = torch.rand(4, 3, 5, 5, generator=g), torch.rand(4, 3, 5, 5, generator=g)

    def mean_l1(x):
        return sum(float((x[i] - x[j]).abs().sum()) for i in range(4) for j in range(4)) / 16

    assert ns["diversity"](src, out) == pytest.approx(mean_l1(out) / mean_l1(src), rel=1e-5)
    assert ns["diversity"](src, out[:1].expand(4, -1, -1, -1)) == 0.0  # collapsed


def test_patchnce_batch_negatives_are_internal_plus_external(ns):
    """With one image "batch" is "internal"; and its denominator holds exactly the internal and
    the external candidates: exp(-batch) = 1 / (1/exp(-int) + 1/exp(-ext) - 1) per query."""
    loss = ns["patchnce_loss"]
    q, k = unit(1, 6, 5, seed=10), unit(1, 6, 5, seed=11)
    torch.testing.assert_close(loss(q, k, negatives="batch"), loss(q, k, negatives="internal"))
    q, k = unit(3, 4, 5, seed=12), unit(3, 4, 5, seed=13)
    p_int, p_ext = ((-loss(q, k, negatives=n)).exp() for n in ("internal", "external"))
    p_batch = (-loss(q, k, negatives="batch")).exp()  # softmax probability of the positive
    torch.testing.assert_close(1 / p_batch, 1 / p_int + 1 / p_ext - 1)


def test_train_cut_does_not_depend_on_the_global_rng(ns):
    """Heads, G and D come from `seed` alone: the same run after different global seeds gives the
    same weights (the heads used to draw from the global RNG, so a cell's result depended on
    which cells ran before)."""
    pool = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    config = ns["CUTConfig"](steps=2, batch=2, num_patches=8, ngf=4, nce_idt=False)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        G, heads, _ = ns["train_cut"](pool, pool.flip(-1), config=config, device="cpu", seed=3)
        runs.append([p.detach().clone() for p in [*G.parameters(), *heads.parameters()]])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_make_heads_are_seeded_and_leave_the_global_rng_alone(ns):
    from course_lib import nets

    G = nets.ResnetGenerator(ngf=4, n_down=2, n_blocks=1)
    before = torch.get_rng_state()
    h1 = ns["make_heads"](G, (0, 1), in_size=16, seed=5)
    h2 = ns["make_heads"](G, (0, 1), in_size=16, seed=5)
    h3 = ns["make_heads"](G, (0, 1), in_size=16, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    p1, p2, p3 = ([p for p in h.parameters()] for h in (h1, h2, h3))
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert not torch.equal(p1[0], p3[0])
