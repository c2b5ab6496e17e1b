"""AdaIN as written in notebooks/09_adain.ipynb, and the pieces of notebooks/08 that it shares
(the Gram matrix written again there, the transformer network), checked against independent
computations on tiny tensors. The notebooks themselves run in tests/test_kit_notebooks.py."""

from __future__ import annotations

import math

import pytest
import torch
from reference import gram_loop

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def nb09() -> dict:
    return tagged_namespace(ROOT / "notebooks/09_adain.ipynb")


@pytest.fixture(scope="module")
def nb08() -> dict:
    return tagged_namespace(ROOT / "notebooks/08_fast_style_transfer.ipynb")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _loop_mean_std(x: torch.Tensor, eps: float) -> tuple[list, list]:
    """Per (b, c) mean and sqrt(unbiased variance + eps) by explicit loops over the positions."""
    b, c, h, w = x.shape
    means, stds = [[0.0] * c for _ in range(b)], [[0.0] * c for _ in range(b)]
    for i in range(b):
        for k in range(c):
            values = [float(x[i, k, y, z]) for y in range(h) for z in range(w)]
            m = sum(values) / len(values)
            var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
            means[i][k], stds[i][k] = m, math.sqrt(var + eps)
    return means, stds


def test_mean_std_matches_explicit_loop(nb09):
    x = _rand(2, 3, 5, 7) * 2 + 0.5
    mean, std = nb09["mean_std"](x, eps=1e-5)
    assert mean.shape == (2, 3, 1, 1) and std.shape == (2, 3, 1, 1)
    means, stds = _loop_mean_std(x, 1e-5)
    torch.testing.assert_close(mean[..., 0, 0], torch.tensor(means, dtype=x.dtype))
    torch.testing.assert_close(std[..., 0, 0], torch.tensor(stds, dtype=x.dtype))


def test_mean_std_is_unbiased_with_eps_inside_the_root(nb09):
    x = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)  # unbiased variance 2, biased 1
    _, std = nb09["mean_std"](x, eps=0.25)
    assert float(std) == pytest.approx(1.5)


def test_adain_matches_explicit_double_loop(nb09):
    x, y = _rand(2, 3, 5, 7, seed=1), _rand(2, 3, 4, 6, seed=2) * 3 + 1
    out = nb09["adain"](x, y, eps=1e-5)
    assert out.shape == x.shape and out.dtype == x.dtype
    xm, xs = _loop_mean_std(x, 1e-5)
    ym, ys = _loop_mean_std(y, 1e-5)
    expected = torch.empty_like(x)
    for i in range(2):
        for k in range(3):
            expected[i, k] = ys[i][k] * (x[i, k] - xm[i][k]) / xs[i][k] + ym[i][k]
    torch.testing.assert_close(out, expected)


def test_adain_gives_the_style_statistics(nb09):
    x, y = _rand(2, 4, 6, 5, seed=3) * 5 - 2, _rand(2, 4, 3, 3, seed=4) * 0.5 + 3
    out_mean, out_std = nb09["mean_std"](nb09["adain"](x, y, eps=0.0), eps=0.0)
    y_mean, y_std = nb09["mean_std"](y, eps=0.0)
    torch.testing.assert_close(out_mean, y_mean)
    torch.testing.assert_close(out_std, y_std)


def test_adain_ignores_content_contrast_and_style_layout(nb09):
    """Per-channel affine changes of the content (positive scale) do not change the output, and
    neither does shuffling the style's positions."""
    x, y = _rand(1, 3, 5, 7, seed=5), _rand(1, 3, 4, 4, seed=6)
    scale = torch.tensor([0.5, 2.0, 7.0], dtype=x.dtype).view(1, 3, 1, 1)
    shift = torch.tensor([-1.0, 0.0, 3.0], dtype=x.dtype).view(1, 3, 1, 1)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    y_shuffled = y.reshape(1, 3, 16)[..., perm].reshape(1, 3, 4, 4)
    base = nb09["adain"](x, y, eps=0.0)
    torch.testing.assert_close(nb09["adain"](x * scale + shift, y_shuffled, eps=0.0), base)


def test_adain_broadcasts_one_style_over_the_batch(nb09):
    x, y = _rand(3, 2, 4, 5, seed=7), _rand(1, 2, 6, 6, seed=8)
    out = nb09["adain"](x, y)
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], nb09["adain"](x[i : i + 1], y))


def test_adain_rejects_mismatched_channels(nb09):
    with pytest.raises(ValueError, match="same C"):
        nb09["adain"](torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4, 4))
    with pytest.raises(ValueError, match="H·W >= 2"):
        nb09["mean_std"](torch.rand(1, 3, 1, 1))


def test_adain_has_gradients_for_the_content(nb09):
    x = _rand(1, 2, 3, 4, seed=9).requires_grad_(True)
    y = _rand(1, 2, 3, 4, seed=10)
    assert torch.autograd.gradcheck(lambda a: nb09["adain"](a, y), (x,))


def test_stylise_alpha_zero_reconstructs_and_weights_mix(nb09):
    """α = 0 decodes the content's own features; style weights [1, 0] equal the first style."""
    torch.manual_seed(0)
    vgg = nb09["VGGFeatures"](["relu1_1", "relu2_1"], weights="random")
    decoder = nb09["Decoder"](2, slim=8).eval()
    c, s1, s2 = (
        torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in (1, 2, 3)
    )
    stylise = nb09["stylise"]
    with torch.no_grad():
        own = decoder(vgg(c)["relu2_1"]).clamp(0, 1)
    torch.testing.assert_close(
        stylise(decoder, vgg, c, [s1], encoder_layer="relu2_1", alpha=0.0), own
    )
    torch.testing.assert_close(
        stylise(decoder, vgg, c, [s1, s2], encoder_layer="relu2_1", weights=[1.0, 0.0]),
        stylise(decoder, vgg, c, [s1], encoder_layer="relu2_1"),
    )
    with pytest.raises(ValueError, match="alpha"):
        stylise(decoder, vgg, c, [s1], encoder_layer="relu2_1", alpha=1.5)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_decoder_inverts_the_encoder_shape(nb09, depth):
    widths = {1: 64, 2: 128, 3: 256, 4: 512}
    t = torch.rand(2, widths[depth], 3, 5)
    out = nb09["Decoder"](depth, slim=8)(t)
    k = 2 ** (depth - 1)
    assert out.shape == (2, 3, 3 * k, 5 * k)


def test_gram_in_notebook_08_matches_explicit_loop(nb08):
    f = _rand(2, 3, 5, 7, seed=11)
    g = nb08["gram_matrix"](f)
    assert g.shape == (2, 3, 3)
    torch.testing.assert_close(g.double(), gram_loop(f), rtol=1e-9, atol=1e-12)


def test_transformer_net_keeps_shape_and_range(nb08):
    net = nb08["TransformerNet"](width=4, n_res=1)
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 3, 10, 12))


def test_perceptual_loss_is_zero_for_identical_images_without_tv(nb08):
    vgg = nb08["VGGFeatures"](["relu1_1", "relu2_1"], weights="random")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    grams = {j: nb08["gram_matrix"](f[:1]) for j, f in vgg(x).items()}
    terms = nb08["perceptual_loss"](
        vgg,
        x[:1].expand(2, -1, -1, -1),
        x[:1].expand(2, -1, -1, -1),
        grams,
        content_layer="relu2_1",
        style_layers=["relu1_1", "relu2_1"],
        style_weight=1.0,
        tv_weight=0.0,
    )
    assert float(terms["content"]) == 0.0 and float(terms["style"]) < 1e-12
