"""PyTorch's "Neural Transfer Using PyTorch" tutorial loop, re-written in our own words.

The peer is the official tutorial (pytorch/tutorials, ``advanced_source/neural_style_tutorial.py``,
published at pytorch.org/tutorials/advanced/neural_style_tutorial.html). We follow **the current
published version**, whose ``run_style_transfer`` calls ``input_img.requires_grad_(True)``,
``model.eval()`` and ``model.requires_grad_(False)`` before building the optimiser: **the VGG
weights are frozen**, so a backward pass computes gradients for the pixels only.
(``model.requires_grad_(False)`` was there by October 2021 — pytorch/tutorials issue 1736 quotes
it — and ``model.eval()`` came with pull request 2371, May 2023.) Older versions (the stored
copies we read, at pytorch/tutorials commits 0a7e686 and 8bcd0ac) froze nothing: every backward
also computed, and accumulated, the gradients of all the convolutions' weights and biases.
``build_peer(..., freeze=False)`` reproduces that older loop, for comparison only.

What we keep, so that the timing is faithful:

* ``Normalization``: ``(img − mean) / std`` with ImageNet's mean and std, the first module;
* ``ContentLoss`` / ``StyleLoss``: transparent modules that store their loss as an attribute in
  the forward pass and return their input; the content loss is ``mse_loss(F, F_target)``, the
  style loss ``mse_loss(G(F), G(F_style))`` with the Gram matrix
  ``G = F̂ F̂ᵀ / (a·b·c·d)`` of the features ``(a, b, c, d)`` reshaped to ``F̂: (a·b, c·d)``;
* a new ``nn.Sequential`` built by walking ``torchvision.models.vgg19().features``'s children,
  renaming them ``conv_i`` / ``relu_i`` / ``pool_i``, replacing every ReLU with
  ``ReLU(inplace=False)``, inserting a content loss after ``conv_4`` and style losses after
  ``conv_1`` … ``conv_5`` (targets computed by running the partial model on the content and style
  images), and cutting everything after the last loss module (so the network ends at ``conv_5``,
  i.e. ``conv3_1``, with VGG's max pooling);
* the L-BFGS closure: clamp the image to ``[0, 1]`` under ``no_grad``, ``zero_grad``, run the
  model, ``style_weight · Σ style + content_weight · Σ content``, ``backward``.

What we leave out: image loading and display, the progress prints, the pretrained weights
(``weights=None``: random weights, nothing is downloaded; the cost of a pass does not depend on
the values) and ``torch.set_default_device`` (the tensors follow the input's device instead: we
change no global setting). The benchmark times one closure call — one loss evaluation and its
backward pass — so that it is timed per loss evaluation like the kit's columns; L-BFGS's own
update (its two-loop recursion over up to 100 stored pairs of image-sized vectors) is not part of
it, as the bare columns have no optimiser either (the kit's loop column includes Adam's update).

Used by ``benchmarks/style_transfer.py`` only; it is not part of the course.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONTENT_LAYERS = ("conv_4",)
STYLE_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5")


def random_vgg19_features(seed: int = 0) -> nn.Sequential:
    """torchvision's VGG-19 ``features`` with its own random initialisation, in eval mode.

    Drawn from the global generator inside ``torch.random.fork_rng`` with ``seed``, so it is
    reproducible and leaves the caller's random state as it was. On the CPU; move it yourself.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.vgg19(weights=None).features.eval()


class Normalization(nn.Module):
    """``(img − mean) / std`` per channel; ``img``: ``(B, 3, H, W)`` in ``[0, 1]``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean = mean.view(-1, 1, 1)  # (3, 1, 1), broadcasts over (B, 3, H, W)
        self.std = std.view(-1, 1, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """The tutorial's Gram matrix: ``F̂ F̂ᵀ / (a·b·c·d)`` for ``features`` ``(a, b, c, d)``.

    Batch and channels are flattened together (``(a·b, a·b)``), as published: it means one
    image's Gram matrix for a batch of one, which is all the tutorial uses.
    """
    a, b, c, d = features.shape
    flat = features.view(a * b, c * d)  # (a·b, c·d)
    return flat @ flat.T / (a * b * c * d)


class ContentLoss(nn.Module):
    """Transparent layer: stores ``mse_loss(input, target)`` in ``self.loss``, returns ``input``."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros((), device=target.device)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(input, self.target)
        return input


class StyleLoss(nn.Module):
    """Transparent layer: stores ``mse_loss(G(input), G(target))`` in ``self.loss``."""

    def __init__(self, target_features: torch.Tensor) -> None:
        super().__init__()
        self.target = gram_matrix(target_features).detach()
        self.loss = torch.zeros((), device=target_features.device)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(gram_matrix(input), self.target)
        return input


def _layer_name(layer: nn.Module, i: int) -> str:
    """The tutorial's names: ``conv_i``, ``relu_i``, ``pool_i``, ``bn_i`` (i counts convs)."""
    kinds = {nn.Conv2d: "conv", nn.ReLU: "relu", nn.MaxPool2d: "pool", nn.BatchNorm2d: "bn"}
    for kind, prefix in kinds.items():
        if isinstance(layer, kind):
            return f"{prefix}_{i}"
    raise RuntimeError(f"unrecognised layer: {type(layer).__name__}")


def style_model_and_losses(
    cnn: nn.Sequential,
    style_img: torch.Tensor,
    content_img: torch.Tensor,
    *,
    content_layers: tuple[str, ...] = CONTENT_LAYERS,
    style_layers: tuple[str, ...] = STYLE_LAYERS,
) -> tuple[nn.Sequential, list[StyleLoss], list[ContentLoss]]:
    """The tutorial's ``get_style_model_and_losses``: VGG's layers with loss modules inserted.

    ``cnn``: VGG's ``features`` (an ``nn.Sequential``) on the images' device; its layers are
    shared with the returned model (whether the tutorial copies them first does not change
    the cost of a step).
    ``style_img``, ``content_img``: float ``(1, 3, H, W)`` in ``[0, 1]``, same device.
    """
    device = content_img.device
    mean = torch.tensor(IMAGENET_MEAN, device=device)
    std = torch.tensor(IMAGENET_STD, device=device)
    model = nn.Sequential(Normalization(mean, std))
    content_losses: list[ContentLoss] = []
    style_losses: list[StyleLoss] = []
    i = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
        name = _layer_name(layer, i)
        if isinstance(layer, nn.ReLU):
            layer = nn.ReLU(inplace=False)  # in place would overwrite what a loss layer saw
        model.add_module(name, layer)
        if name in content_layers:
            loss = ContentLoss(model(content_img).detach())
            model.add_module(f"content_loss_{i}", loss)
            content_losses.append(loss)
        if name in style_layers:
            loss = StyleLoss(model(style_img).detach())
            model.add_module(f"style_loss_{i}", loss)
            style_losses.append(loss)
    last = max(j for j, m in enumerate(model) if isinstance(m, (ContentLoss, StyleLoss)))
    return model[: last + 1], style_losses, content_losses


def build_peer(
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    cnn: nn.Sequential | None = None,
    style_weight: float = 1e6,
    content_weight: float = 1.0,
    freeze: bool = True,
) -> tuple[Callable[[], torch.Tensor], torch.Tensor, nn.Sequential]:
    """Set up the tutorial's ``run_style_transfer`` and return its closure.

    Args:
        content, style: float ``(1, 3, H, W)`` in ``[0, 1]``, on one device; H, W ≥ 4 (two
            poolings before ``conv_5``).
        cnn: VGG-19's ``features``; default :func:`random_vgg19_features` moved to the
            content's device. Pass one to share it between calls (building it allocates the
            whole VGG-19, classifier included).
        style_weight, content_weight: the tutorial's defaults, 1e6 and 1.
        freeze: ``True`` (the current tutorial) turns off the weights' gradients;
            ``False`` reproduces the tutorial before it did (the weights' gradients are computed
            and accumulated on every backward pass).

    Returns:
        ``(closure, input_img, model)``: calling ``closure()`` clamps ``input_img`` to
        ``[0, 1]``, zeroes its gradient, runs the model and back-propagates the weighted loss,
        which it returns (a scalar tensor on the content's device). ``input_img`` starts as a
        copy of ``content``, as in the tutorial.
    """
    if content.dim() != 4 or content.shape[0] != 1 or content.shape != style.shape:
        raise ValueError(
            "`content` and `style` must both be (1, 3, H, W) with the same size; "
            f"got {tuple(content.shape)} and {tuple(style.shape)}"
        )
    if cnn is None:
        cnn = random_vgg19_features().to(content.device)
    if not freeze:
        # The older tutorial deep-copied the network; here the copy also keeps its trainable
        # weights out of a frozen model built from the same ``cnn``.
        cnn = copy.deepcopy(cnn).requires_grad_(True)
    model, style_losses, content_losses = style_model_and_losses(cnn, style, content)
    input_img = content.clone()
    input_img.requires_grad_(True)
    model.eval()
    if freeze:
        model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])

    def closure() -> torch.Tensor:
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        model(input_img)
        style_score = style_weight * sum(sl.loss for sl in style_losses)
        content_score = content_weight * sum(cl.loss for cl in content_losses)
        loss = style_score + content_score
        loss.backward()
        return loss

    return closure, input_img, model


def bare_model(model: nn.Sequential) -> nn.Sequential:
    """A frozen copy of the peer's model without its loss modules (normalisation, VGG's layers).

    A copy, so that freezing it leaves the peer's own weights as they were (trainable in the
    older loop).
    """
    layers = [m for m in model if not isinstance(m, (ContentLoss, StyleLoss))]
    return copy.deepcopy(nn.Sequential(*layers)).requires_grad_(False)
