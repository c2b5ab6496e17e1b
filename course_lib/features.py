"""VGG-19 features by layer name, with ImageNet normalisation inside.

Layer names follow the papers: ``conv1_1``, ``relu1_1``, ``conv1_2``, ``relu1_2``, ``pool1``,
``conv2_1`` … ``relu5_4``, ``pool5``. Weights are ``"imagenet"`` (torchvision's, through its
cache), ``"random"`` (seeded; VGG's architecture with random weights makes poor textures, the
lecture's "random weights" panel: learned features matter in this deep network), or a path to
a saved ``state_dict``.

:class:`RandomMultiScaleFeatures` is the offline alternative that does work without training:
one convolutional layer of many random filters at several sizes (Ustyuzhaninov et al., ICLR 2017),
taught in notebook 06 and used for the offline path of notebook 07.

Example:
    >>> vgg = VGGFeatures(["relu1_1", "relu2_1"], weights="random", seed=0)
    >>> feats = vgg(torch.rand(2, 3, 32, 32))
    >>> feats["relu2_1"].shape
    torch.Size([2, 128, 16, 16])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ._checks import check_choice, check_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BLOCKS = (2, 2, 4, 4, 4)  # convolutions per block in VGG-19
_WIDTHS = (64, 128, 256, 512, 512)


def layer_names() -> list[str]:
    """Every layer of VGG-19's feature stack in order (conv, relu, …, pool)."""
    names = []
    for b, n in enumerate(_BLOCKS, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def _build_vgg19(pooling: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for n, width in zip(_BLOCKS, _WIDTHS):
        for _ in range(n):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=False)]
            c_in = width
        layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
    return nn.Sequential(*layers)


def _random_init(net: nn.Sequential, seed: int) -> None:
    """He-normal weights and zero biases drawn from a private generator (reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.zero_()


def fetch_imagenet() -> Path:
    """Download torchvision's ImageNet VGG-19 into its cache (what ``make weights`` runs).

    Returns:
        the cached file's path (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``).

    Raises:
        RuntimeError: no network (or another download error), saying how to get the file.
    """
    imagenet_state_dict()
    path = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE
    print(f"ImageNet VGG-19 weights in {path}; notebooks 06 and 07 now use them by themselves.")
    return path


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG-19 ``features`` weights (keys ``"0.weight"`` …).

    Uses torchvision's cache (``$TORCH_HOME/hub/checkpoints``); downloads there if missing.

    Raises:
        RuntimeError: the weights are not cached and cannot be downloaded, with instructions.
    """
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        full = weights.get_state_dict(progress=False)
    except Exception as err:  # noqa: BLE001 - URLError, socket errors, hub errors all land here
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            "The ImageNet VGG-19 weights are not in torchvision's cache and could not be "
            f"downloaded ({type(err).__name__}: {err}).\n"
            f'  - With a network: run `python -c "import torchvision; '
            f"torchvision.models.vgg19(weights='IMAGENET1K_V1')\"` once.\n"
            f"  - Offline: copy {weights.url.rsplit('/', 1)[-1]} into {hub}.\n"
            '  - Or use weights="random": runs offline, but a deep VGG with random weights makes '
            "poor textures (blotches of the right colours) and weak style transfer; notebooks 06 "
            "and 07 use course_lib.features.RandomMultiScaleFeatures offline instead."
        ) from err
    return {k[len("features.") :]: v for k, v in full.items() if k.startswith("features.")}


IMAGENET_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1


def imagenet_cached() -> bool:
    """True when torchvision's cache (``$TORCH_HOME/hub/checkpoints``) holds the ImageNet VGG-19."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE).is_file()


def pick_weights() -> str:
    """``"imagenet"`` when its weights are already cached, else ``"random"``; never downloads.

    Notebooks call this once and print :func:`weights_note` so the reader knows what they see.

    >>> pick_weights() in ("imagenet", "random")
    True
    """
    return "imagenet" if imagenet_cached() else "random"


def weights_note(weights: str, offline: str = "") -> str:
    """Which VGG-19 weights a notebook uses, and how to get ImageNet's, for the reader.

    Args:
        weights: what :func:`pick_weights` returned.
        offline: one sentence on what the notebook shows without ImageNet weights (appended
            when ``weights`` is not ``"imagenet"``).
    """
    if weights == "imagenet":
        return "VGG-19 weights: ImageNet (found in torchvision's cache): the classic results."
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    note = (
        f"VGG-19 weights: {weights}. The classic results need ImageNet weights: run `make weights` "
        f"with a network (or copy {IMAGENET_FILE} into {hub}) and re-run this notebook."
    )
    return f"{note} {offline}".rstrip()


class VGGFeatures(nn.Module):
    """VGG-19 feature extractor returning the requested layers by name.

    The network stops after the deepest requested layer, is frozen (no parameter gradients)
    and in eval mode. Input: float ``(B, 3, H, W)`` in ``[0, 1]`` (1-channel images are
    repeated to 3); ImageNet mean/std normalisation happens inside.

    Args:
        layers: names from :func:`layer_names`, any order.
        weights: ``"imagenet"``, ``"random"`` or a path to a ``state_dict`` of the feature stack.
        pooling: ``"max"`` (VGG's) or ``"avg"`` (Gatys et al. found it gives smoother textures).
        seed: the seed of the random weights.

    Returns (forward):
        ``dict`` layer name → ``(B, C_l, H_l, W_l)`` on the input's device and dtype.
    """

    def __init__(
        self,
        layers: Sequence[str],
        *,
        weights: str | Path = "random",
        pooling: str = "max",
        seed: int = 0,
    ) -> None:
        super().__init__()
        names = layer_names()
        if isinstance(layers, str):
            layers = [layers]
        if not layers:
            raise ValueError("`layers` must name at least one layer, e.g. ['relu1_1']")
        for name in layers:
            check_choice(name, "layers", names)
        check_choice(pooling, "pooling", ["max", "avg"])
        self.layers = list(layers)
        self.weights = str(weights)
        net = _build_vgg19(pooling)
        if weights == "random":
            _random_init(net, seed)
        elif weights == "imagenet":
            net.load_state_dict(imagenet_state_dict())
        else:
            path = Path(weights)
            if not path.is_file():
                raise ValueError(
                    f"`weights` must be 'imagenet', 'random' or a path to a state_dict; "
                    f"got {str(weights)!r} (no such file)"
                )
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        last = max(names.index(n) for n in self.layers)
        self.net = net[: last + 1]
        self._names = names[: last + 1]
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image(image, "image", channels=(1, 3), min_size=2 ** min(4, self._depth()))
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        x = (image - self.mean.to(image)) / self.std.to(image)
        wanted, out = set(self.layers), {}
        for name, module in zip(self._names, self.net):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def _depth(self) -> int:
        return sum(n.startswith("pool") for n in self._names)

    def extra_repr(self) -> str:
        return f"layers={self.layers}, weights={self.weights!r}"


class RandomMultiScaleFeatures(nn.Module):
    """One layer of random filters at several sizes, rectified (Ustyuzhaninov et al., ICLR 2017).

    "What does it take to generate natural textures?" showed that Gram matrices of a *single*
    convolutional layer with *random* filters synthesise good textures when the layer has many
    filters at several scales (the paper: sizes 3, 5, 7, 11, 15, 23, 37, 55 with 128 filters
    each, ReLU). Taught in notebook 06; notebook 07 uses it for style transfer offline.

    Each filter is drawn from a seeded Gaussian, made zero-mean (it does not respond to a flat
    grey image) and unit-norm (every size responds with a similar strength). The convolution is
    circular and computed with FFTs, so a 55 × 55 filter costs what a 3 × 3 one does; the
    synthesised textures therefore tile. The input is centred on ImageNet's mean colour.

    Args:
        sizes: odd filter sides, one group of ``filters`` maps per size.
        filters: filters per size.
        seed: the seed of the random filters.

    Returns (forward):
        ``dict`` ``"k{size}"`` → ``(B, filters, H, W)`` ReLU feature maps, on the input's device
        and dtype, for input float ``(B, 3, H, W)`` in ``[0, 1]`` (1 channel is repeated).
    """

    def __init__(
        self,
        sizes: Sequence[int] = (3, 5, 7, 11, 15, 23, 37, 55),
        filters: int = 128,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        sizes = [int(k) for k in sizes]
        if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
            raise ValueError(
                f"`sizes` must be odd positive filter sides, e.g. (3, 5, 7); got {sizes}"
            )
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive int; got {filters!r}")
        self.sizes, self.filters = sizes, filters
        self.layers = [f"k{k}" for k in sizes]
        gen = torch.Generator().manual_seed(seed)
        for k in sizes:
            w = torch.randn((filters, 3, k, k), generator=gen)
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
            self.register_buffer(f"w{k}", w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self._spectra: dict[tuple, list[torch.Tensor]] = {}

    def weight(self, size: int) -> torch.Tensor:
        """The filters of one size, ``(filters, 3, size, size)``."""
        return getattr(self, f"w{size}")

    def _filter_spectra(self, h: int, w: int, like: torch.Tensor) -> list[torch.Tensor]:
        key = (h, w, like.device, like.dtype)
        if key not in self._spectra:
            k_max = max(self.sizes)
            if k_max > h or k_max > w:
                raise ValueError(
                    f"`image` must be at least {k_max}x{k_max} for {k_max}-pixel filters; "
                    f"got {h}x{w}"
                )
            out = []
            for k in self.sizes:
                pad = torch.zeros((self.filters, 3, h, w), device=like.device, dtype=like.dtype)
                pad[..., :k, :k] = self.weight(k).to(like)
                pad = pad.roll((-(k // 2), -(k // 2)), (-2, -1))  # filter centre at (0, 0)
                out.append(torch.fft.rfft2(pad).conj())  # conjugate: correlation, as conv2d
            self._spectra = {key: out}  # keep one size: a changing size would fill the memory
        return self._spectra[key]

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image(image, "image", channels=(1, 3))
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        h, w = image.shape[-2:]
        spectrum = torch.fft.rfft2(image - self.mean.to(image))  # (B, 3, H, W/2 + 1)
        out = {}
        for name, filt in zip(self.layers, self._filter_spectra(h, w, image)):
            response = torch.einsum("bchw,fchw->bfhw", spectrum, filt)
            out[name] = torch.relu(torch.fft.irfft2(response, s=(h, w)))
        return out

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, filters={self.filters}"
