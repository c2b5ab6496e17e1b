"""The losses and distances as written in notebooks/15_review_losses.ipynb (cells tagged
``testable``), against independent computations: explicit loops over features, patches and
channels, and scikit-image's SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import gram_loop
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(ROOT / "notebooks/15_review_losses.ipynb")


def randn(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def positions(f: torch.Tensor, b: int) -> list[list[float]]:
    """The feature vectors of image ``b`` of ``(B, C, H, W)``, one list per position, row-major."""
    _, c, h, w = f.shape
    return [[float(f[b, ch, y, x]) for ch in range(c)] for y in range(h) for x in range(w)]


# ----------------------------------------------------------------------------- contextual loss


def loop_contextual(xs, ys, mu, h=0.5, eps=1e-5):
    """Mechrez et al.'s contextual loss, term by term, as in the notebook's markdown.

    ``xs`` output features (i), ``ys`` target features (j), ``mu`` the centre (target mean).
    """

    def centred(v):
        return [a - m for a, m in zip(v, mu)]

    def cos_dist(u, v):
        dot = sum(a * b for a, b in zip(u, v))
        return 1 - dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

    xs, ys = [centred(v) for v in xs], [centred(v) for v in ys]
    n_out, n_ref = len(xs), len(ys)
    d = [[cos_dist(xs[i], ys[j]) for j in range(n_ref)] for i in range(n_out)]
    cx = [[0.0] * n_ref for _ in range(n_out)]
    for i in range(n_out):
        dmin = min(d[i][k] for k in range(n_ref))
        w = [math.exp((1 - d[i][j] / (dmin + eps)) / h) for j in range(n_ref)]
        total = sum(w)
        for j in range(n_ref):
            cx[i][j] = w[j] / total
    return -math.log(sum(max(cx[i][j] for i in range(n_out)) for j in range(n_ref)) / n_ref)


def mean_vector(vectors):
    return [sum(col) / len(vectors) for col in zip(*vectors)]


@pytest.mark.parametrize("h", [0.5, 0.2])
def test_contextual_loss_matches_explicit_loop(ns, h):
    """contextual_loss on (1, 3, 2, 3) outputs vs (1, 3, 3, 2) targets equals the definition
    computed feature by feature (centring by the target mean, relative distances normalised by
    each output feature's nearest target, softmax-like CX over targets, max over outputs)."""
    f_out, f_ref = randn(1, 3, 2, 3, seed=1), randn(1, 3, 3, 2, seed=2)
    ys = positions(f_ref, 0)
    want = loop_contextual(positions(f_out, 0), ys, mean_vector(ys), h=h)
    got = ns["contextual_loss"](f_out, f_ref, h=h)
    assert got.shape == ()
    assert float(got) == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_contextual_loss_batch_is_mean_of_images_centred_on_batch_target_mean(ns):
    """With B = 2 the loss is the mean of the two images' losses, each centred on the mean of
    *all* target features in the batch (the notebook averages ``f_ref`` over dims 0, 2, 3)."""
    f_out, f_ref = randn(2, 4, 2, 2, seed=3), randn(2, 4, 3, 2, seed=4)
    mu = mean_vector(positions(f_ref, 0) + positions(f_ref, 1))
    want = sum(loop_contextual(positions(f_out, b), positions(f_ref, b), mu) for b in range(2)) / 2
    assert float(ns["contextual_loss"](f_out, f_ref)) == pytest.approx(want, rel=1e-10)


def test_contextual_loss_self_is_zero_and_below_unrelated(ns):
    """Against itself every target feature has an exact match (d = 0, so CX of the match is 1
    and the loss -log 1 = 0); an unrelated feature set scores clearly higher."""
    loss = ns["contextual_loss"]
    f, g = randn(1, 8, 4, 4, seed=5), randn(1, 8, 4, 4, seed=6)
    self_loss, other_loss = float(loss(f, f)), float(loss(g, f))
    assert abs(self_loss) < 1e-9
    assert other_loss > 0.1 and other_loss > self_loss + 0.1


def test_contextual_loss_is_position_free_and_scale_free(ns):
    """Permuting the spatial positions of the output (or of the target) changes nothing, and
    scaling both feature sets by one positive factor changes nothing (cosine distances after
    centring by the target mean)."""
    loss = ns["contextual_loss"]
    f_out, f_ref = randn(1, 5, 3, 4, seed=7), randn(1, 5, 4, 3, seed=8)
    base = loss(f_out, f_ref)

    def shuffled(f, seed):
        perm = torch.randperm(
            f.shape[2] * f.shape[3], generator=torch.Generator().manual_seed(seed)
        )
        return f.flatten(2)[..., perm].reshape(f.shape)

    assert not torch.equal(shuffled(f_out, 0), f_out)
    torch.testing.assert_close(loss(shuffled(f_out, 0), f_ref), base, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss(f_out, shuffled(f_ref, 1)), base, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss(3.0 * f_out, 3.0 * f_ref), base, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- SSIM


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a,
        b,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


def grey_scene(size: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth random field plus a bright square: some texture and some edges, in [0, 1]."""
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.random((size, size)), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 0.6 + 0.1
    img[size // 4 : size // 2, size // 3 : 2 * size // 3] += 0.3
    return img.clip(0, 1)


def as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32))[None, None]


@pytest.mark.parametrize(
    "distort",
    [
        pytest.param(lambda x: gaussian_filter(x, 1.2, mode="reflect"), id="blur"),
        pytest.param(lambda x: (0.7 * x + 0.2) ** 1.5, id="contrast-gamma"),
        pytest.param(lambda x: np.roll(x, (1, 2), axis=(0, 1)), id="shift"),
    ],
)
def test_ssim_matches_scikit_image(ns, distort):
    """ssim of an image and a distorted copy agrees with scikit-image's Gaussian-window SSIM
    (sigma 1.5, population covariance, data range 1) up to float32 rounding."""
    a = grey_scene()
    b = distort(a).clip(0, 1)
    want = skimage_ssim(a.astype(np.float32), b.astype(np.float32))
    got = ns["ssim"](as_tensor(a), as_tensor(b))
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(want, abs=2e-5)
    assert want < 0.99  # the distortion is visible to SSIM: the comparison is not trivial


def test_ssim_colour_batch_is_per_image_mean_of_channels(ns):
    """For (B, 3, H, W) the notebook returns one value per image, the mean over channels of
    the single-channel SSIM, which is what scikit-image computes with ``channel_axis``."""
    a = np.stack([grey_scene(seed=s) for s in (1, 2, 3)])  # (3, H, W)
    b = np.stack([gaussian_filter(c, 0.8) for c in a])
    c = np.stack([np.roll(ch, 1, axis=1) for ch in a])
    got = ns["ssim"](
        torch.from_numpy(np.stack([a, a]).astype(np.float32)),
        torch.from_numpy(np.stack([b, c]).astype(np.float32)),
    )
    assert got.shape == (2,)
    for k, other in enumerate((b, c)):
        want = structural_similarity(
            a.astype(np.float32),
            other.astype(np.float32),
            channel_axis=0,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert float(got[k]) == pytest.approx(want, abs=2e-5)


def test_ssim_of_an_image_with_itself_is_one(ns):
    """SSIM(a, a) = 1: every factor of the formula is x / x."""
    a = as_tensor(grey_scene(seed=4))
    assert float(ns["ssim"](a, a)[0]) == pytest.approx(1.0, abs=1e-6)


def test_gaussian_window_sums_to_one_and_is_separable_gaussian(ns):
    """The 11 x 11 window is the outer product of a normalised 1-D Gaussian (sigma 1.5)."""
    win = ns["gaussian_window"](11, 1.5)
    assert win.shape == (1, 1, 11, 11)
    t = np.arange(11) - 5
    g = np.exp(-(t**2) / (2 * 1.5**2))
    g /= g.sum()
    np.testing.assert_allclose(win[0, 0].numpy(), np.outer(g, g), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- PatchNCE


def loop_patchnce(f_out, f_in, ids, tau):
    """Mean over images and sampled positions of -log softmax, the positive being the same
    position in the input; every other sampled position of the same image is a negative."""
    b, c = f_out.shape[:2]
    flat_out, flat_in = f_out.reshape(b, c, -1), f_in.reshape(b, c, -1)
    terms = []
    for i in range(b):
        for s in ids:
            q = flat_out[i, :, s] / flat_out[i, :, s].norm()
            logits = []
            for t in ids:
                k = flat_in[i, :, t] / flat_in[i, :, t].norm()
                logits.append(float(q @ k) / tau)
            m = max(logits)
            lse = m + math.log(sum(math.exp(v - m) for v in logits))
            pos = logits[list(ids).index(s)]
            terms.append(lse - pos)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_patchnce_all_positions_matches_explicit_loop(ns, tau):
    """With ``num_patches`` >= H*W every position is used (the draw only orders them, which does
    not change a mean), so the loss equals the loop over all positions in raster order."""
    f_out, f_in = randn(2, 4, 3, 3, seed=10), randn(2, 4, 3, 3, seed=11)
    got = ns["patchnce"](f_out, f_in, tau=tau, num_patches=64)
    assert got.shape == ()
    assert float(got) == pytest.approx(loop_patchnce(f_out, f_in, range(9), tau), rel=1e-10)


def test_patchnce_sampled_positions_matches_explicit_loop(ns):
    """With a seeded generator the notebook draws ``randperm(H*W)[:num_patches]``; the loop,
    given the same draw, gives the same loss (negatives: the other *sampled* positions)."""
    f_out, f_in = randn(2, 5, 4, 5, seed=12), randn(2, 5, 4, 5, seed=13)
    ids = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:6].tolist()
    got = ns["patchnce"](
        f_out, f_in, tau=0.1, num_patches=6, generator=torch.Generator().manual_seed(3)
    )
    assert float(got) == pytest.approx(loop_patchnce(f_out, f_in, ids, 0.1), rel=1e-10)


def test_patchnce_low_for_matching_near_chance_for_unrelated_and_no_grad_to_input(ns):
    """Output = input: the positive is the most similar key, loss near 0 at tau 0.07; random
    unrelated features at tau = 1: about log(P). Gradients reach the output only."""
    patchnce = ns["patchnce"]
    f_in = randn(1, 64, 8, 8, seed=14)
    assert float(patchnce(f_in, f_in, num_patches=32)) < 0.05 * math.log(32)
    f_out = randn(1, 64, 8, 8, seed=15).requires_grad_(True)
    f_in = f_in.clone().requires_grad_(True)
    loss = patchnce(f_out, f_in, tau=1.0, num_patches=32)
    assert abs(float(loss.detach()) - math.log(32)) < 0.3
    loss.backward()
    assert f_out.grad is not None and f_out.grad.abs().sum() > 0
    assert f_in.grad is None


def test_gan_and_cycle_losses(ns):
    """Least-squares GAN loss: mean (D - 1)^2 for real, mean D^2 for fake; cycle: mean |x - x'|."""
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    assert float(ns["gan_loss"](logits, True)) == pytest.approx((0.25 + 4 + 1 + 1) / 4)
    assert float(ns["gan_loss"](logits, False)) == pytest.approx((0.25 + 1 + 4 + 0) / 4)
    x, y = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.5, 2.0, 1.0, 4.0])
    assert float(ns["cycle_loss"](x, y)) == pytest.approx((0.5 + 0 + 2 + 0) / 4)


# ----------------------------------------------------------------------------- Gram, style


def test_gram_matches_explicit_loop(ns):
    """gram(f)[b, c1, c2] = sum over positions of f[b, c1] * f[b, c2], divided by C*H*W."""
    f = randn(2, 3, 2, 5, seed=20)
    torch.testing.assert_close(ns["gram"](f), gram_loop(f), rtol=1e-12, atol=1e-12)


def test_style_and_feature_losses_match_explicit_loops(ns):
    """style_loss: squared Gram differences summed over entries and layers; feature_loss: the
    mean squared difference of each layer, averaged over layers. Both zero for identical
    features; the style loss ignores where features are (a spatial permutation costs 0)."""
    f_out = {"a": randn(1, 3, 2, 2, seed=21), "b": randn(1, 2, 3, 1, seed=22)}
    f_ref = {"a": randn(1, 3, 2, 2, seed=23), "b": randn(1, 2, 3, 1, seed=24)}
    want_style = sum(
        float(((gram_loop(f_out[k]) - gram_loop(f_ref[k])) ** 2).sum()) for k in ("a", "b")
    )
    assert float(ns["style_loss"](f_out, f_ref)) == pytest.approx(want_style, rel=1e-10)
    per_layer = []
    for k in ("a", "b"):
        diffs = (f_out[k] - f_ref[k]).flatten().tolist()
        per_layer.append(sum(v * v for v in diffs) / len(diffs))
    assert float(ns["feature_loss"](f_out, f_ref)) == pytest.approx(sum(per_layer) / 2, rel=1e-10)
    assert float(ns["style_loss"](f_ref, f_ref)) == 0.0
    assert float(ns["feature_loss"](f_ref, f_ref)) == 0.0
    moved = {k: v.flip(-1).flip(-2) for k, v in f_ref.items()}
    assert float(ns["style_loss"](moved, f_ref)) == pytest.approx(0.0, abs=1e-12)
    assert float(ns["feature_loss"](moved, f_ref)) > 0


# ----------------------------------------------------------------------------- image distances


def test_l2_distance_is_per_image_rms(ns):
    """l2_distance returns ``(B,)``: the root-mean-square pixel difference of each image."""
    a, b = randn(3, 2, 4, 5, seed=30), randn(3, 2, 4, 5, seed=31)
    got = ns["l2_distance"](a, b)
    assert got.shape == (3,)
    for i in range(3):
        diffs = (a[i] - b[i]).flatten().tolist()
        assert float(got[i]) == pytest.approx(math.sqrt(sum(v * v for v in diffs) / 40), rel=1e-12)
    torch.testing.assert_close(ns["l2_distance"](a, a), torch.zeros(3, dtype=a.dtype))


def test_vgg_distance_matches_loop_with_a_stand_in_extractor(ns):
    """With an extractor that returns fixed feature maps, vgg_distance is, per image, the mean
    over layers of (mean over positions of the squared distance between unit feature vectors)."""
    feats = {
        "A": {"l1": randn(2, 3, 2, 2, seed=32), "l2": randn(2, 4, 1, 3, seed=33)},
        "B": {"l1": randn(2, 3, 2, 2, seed=34), "l2": randn(2, 4, 1, 3, seed=35)},
    }
    extractor = lambda img: feats[img]  # the notebook calls vgg(a), vgg(b)
    got = ns["vgg_distance"](extractor, "A", "B")
    assert got.shape == (2,)
    for i in range(2):
        layer_means = []
        for k in ("l1", "l2"):
            pa, pb = positions(feats["A"][k], i), positions(feats["B"][k], i)
            per_pos = []
            for u, v in zip(pa, pb):
                nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
                per_pos.append(sum((x / nu - y / nv) ** 2 for x, y in zip(u, v)))
            layer_means.append(sum(per_pos) / len(per_pos))
        assert float(got[i]) == pytest.approx(sum(layer_means) / 2, rel=1e-10)


def test_vgg_distance_with_the_notebooks_vgg(ns):
    """With the notebook's VGG (random weights): shape ``(B,)``, zero for identical images,
    positive for different ones, symmetric."""
    vgg = ns["vgg"]
    dev = next(vgg.parameters()).device
    g = torch.Generator().manual_seed(36)
    a = torch.rand(2, 3, 16, 16, generator=g).to(dev)
    b = torch.rand(2, 3, 16, 16, generator=g).to(dev)
    dist = ns["vgg_distance"]
    with torch.no_grad():
        same, diff, back = dist(vgg, a, a), dist(vgg, a, b), dist(vgg, b, a)
    assert same.shape == diff.shape == (2,)
    assert float(same.abs().max()) < 1e-6
    assert float(diff.min()) > 1e-3
    torch.testing.assert_close(diff, back)


def test_distort(ns):
    """The four distortions of an image with a margin m, compared with its centre: a shift moves
    the crop window by max(1, round(6 s)) pixels (no wrap-around: the new pixels come from the
    margin) and distinct strengths give distinct shifts; quantisation leaves at most ``levels``
    grey values, each within half a step of the centre; blurring keeps a constant image
    constant; noise is seeded (same result twice) and stays in [0, 1]; other kinds raise."""
    distort, centre, m = ns["distort"], ns["centre"], ns["MARGIN"]
    x = torch.rand(1, 3, 16 + 2 * m, 18 + 2 * m, generator=torch.Generator().manual_seed(37))
    c = centre(x)
    assert c.shape == (1, 3, 16, 18)
    for s, px in ((0.5, 3), (0.05, 1), (1.0, 6)):
        out = distort(x, "shift", s)
        assert out.shape == c.shape
        assert torch.equal(out[..., px:, px:], c[..., :-px, :-px])  # content moved down-right
        assert torch.equal(out, x[..., m - px : m - px + 16, m - px : m - px + 18])
        assert not torch.equal(out, torch.roll(c, (px, px), dims=(-2, -1)))  # no wrap-around
    strengths = torch.linspace(0.15, 1.0, 6).tolist()  # the notebook's six: six different copies
    assert len({max(1, round(6 * s)) for s in strengths}) == 6
    assert len({len(torch.unique(distort(x, "quantise", s))) for s in strengths}) == 6
    levels = round(2 + 30 * (1 - 0.5) ** 2)  # 10
    q = distort(x, "quantise", 0.5)
    assert q.shape == c.shape and len(torch.unique(q)) <= levels
    assert float((q - c).abs().max()) <= 0.5 / (levels - 1) + 1e-6
    flat = torch.full((1, 3, 16 + 2 * m, 16 + 2 * m), 0.3)
    for s in (0.1, 0.6):
        blurred = distort(flat, "blur", s)
        assert blurred.shape == (1, 3, 16, 16)
        torch.testing.assert_close(blurred, centre(flat))
    assert float((distort(x, "blur", 0.6) - c).abs().mean()) > 0.05
    n1, n2 = distort(x, "noise", 0.8), distort(x, "noise", 0.8)
    assert torch.equal(n1, n2) and 0 <= float(n1.min()) and float(n1.max()) <= 1
    assert n1.shape == c.shape and not torch.equal(n1, c)
    with pytest.raises(ValueError, match="kind"):
        distort(x, "rotate", 0.5)
