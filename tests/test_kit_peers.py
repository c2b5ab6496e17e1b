"""The benchmarks' peers compute what the code they re-implement computes.

``benchmarks/peers/style_transfer_peer.py`` (PyTorch's neural-transfer tutorial): its Gram matrix
against an explicit loop, its loss and gradient against the same objective written out
independently (VGG's layers run one by one, Gram matrices by ``einsum``), its structure (losses
after conv_1 … conv_5, cut after the last one), and what freezing the weights changes.
Tiny float64 images on the CPU, random VGG-19 weights: nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from reference import gram_loop
from torch import nn

from benchmarks.peers import style_transfer_peer as peer

CONV_INDICES = (0, 2, 5, 7, 10)  # conv1_1, conv1_2, conv2_1, conv2_2, conv3_1 in vgg19().features


@pytest.fixture(scope="module")
def cnn() -> nn.Sequential:
    return peer.random_vgg19_features(seed=3).double()


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 12, 20, generator=gen, dtype=torch.float64)
    style = torch.rand(1, 3, 12, 20, generator=gen, dtype=torch.float64)
    return content, style


def test_gram_matches_explicit_loop():
    x = torch.randn(1, 3, 5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    G = peer.gram_matrix(x)  # one image: the published a·b·c·d divisor is C·H·W
    assert G.shape == (3, 3)
    torch.testing.assert_close(G, gram_loop(x)[0])


def test_gram_flattens_the_batch_as_published():
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    G = peer.gram_matrix(x)  # (a·b, a·b): both images' channels together, / (2·3·5·7)
    assert G.shape == (6, 6)
    flat = x.reshape(6, 35)
    torch.testing.assert_close(G, flat @ flat.T / 210)


def _independent_loss(cnn, x, content, style, style_weight, content_weight):
    """The tutorial's objective, written out: VGG's layers one by one, no loss modules."""
    mean = torch.tensor(peer.IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(peer.IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)

    def conv_outputs(img):
        out, h = [], (img - mean) / std
        for i, layer in enumerate(cnn[: CONV_INDICES[-1] + 1]):
            h = torch.relu(h) if isinstance(layer, nn.ReLU) else layer(h)
            if i in CONV_INDICES:
                out.append(h)
        return out

    def gram(f):  # (1, C, H, W) -> (C, C)
        return torch.einsum("bchw,bdhw->cd", f, f) / f.numel()

    fx, fc, fs = conv_outputs(x), conv_outputs(content), conv_outputs(style)
    style_term = sum(((gram(a) - gram(b)) ** 2).mean() for a, b in zip(fx, fs))
    content_term = ((fx[3] - fc[3]) ** 2).mean()  # conv_4 = conv2_2
    return style_weight * style_term + content_weight * content_term


def test_loss_and_gradient_match_an_independent_computation(cnn, images):
    content, style = images
    closure, input_img, _ = peer.build_peer(content, style, cnn=cnn, style_weight=1e3)
    loss = closure()
    x = content.clone().requires_grad_(True)
    expected = _independent_loss(cnn, x, content, style, 1e3, 1.0)
    (grad,) = torch.autograd.grad(expected, x)
    assert loss.item() > 0
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(input_img.grad, grad)


def test_loss_is_zero_at_the_content_image_without_style(cnn, images):
    content, style = images
    closure, input_img, _ = peer.build_peer(content, style, cnn=cnn, style_weight=0.0)
    assert closure().item() == 0.0
    assert torch.count_nonzero(input_img.grad) == 0
    # and the content term alone is not zero elsewhere: the target is the content image's
    with torch.no_grad():
        input_img.copy_(style)
    assert closure().item() > 0


def test_model_structure(cnn, images):
    content, style = images
    _, _, model = peer.build_peer(content, style, cnn=cnn)
    names = [name for name, _ in model.named_children()]
    assert names[0] == "0" and isinstance(model[0], peer.Normalization)
    assert names[-2:] == ["conv_5", "style_loss_5"]  # cut after the last loss
    assert names.index("content_loss_4") == names.index("conv_4") + 1
    for i in range(1, 6):
        assert names.index(f"style_loss_{i}") > names.index(f"conv_{i}")
    assert all(not m.inplace for m in model if isinstance(m, nn.ReLU))


def test_freezing_changes_which_gradients_are_computed(cnn, images):
    content, style = images
    frozen, img_frozen, model_frozen = peer.build_peer(content, style, cnn=cnn)
    older, img_older, model_older = peer.build_peer(content, style, cnn=cnn, freeze=False)
    frozen()
    older()
    assert all(p.grad is None and not p.requires_grad for p in model_frozen.parameters())
    assert all(p.grad is not None for p in model_older.parameters())
    torch.testing.assert_close(img_older.grad, img_frozen.grad)  # same objective
    first = next(model_older.parameters()).grad.clone()
    older()
    torch.testing.assert_close(next(model_older.parameters()).grad, 2 * first)  # accumulates


def test_bare_model_is_a_frozen_copy_without_losses(cnn, images):
    content, style = images
    _, _, model = peer.build_peer(content, style, cnn=cnn, freeze=False)
    bare = peer.bare_model(model)
    assert not any(isinstance(m, (peer.ContentLoss, peer.StyleLoss)) for m in bare)
    assert len(bare) == len(model) - 6
    assert not any(p.requires_grad for p in bare.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_mismatched_images_are_refused(cnn):
    with pytest.raises(ValueError, match="same size"):
        peer.build_peer(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 12), cnn=cnn)
