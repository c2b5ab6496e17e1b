"""Network building blocks shared by the translation notebooks (pix2pix, CycleGAN, UNIT/MUNIT,
CUT, the swapping autoencoder). Small by default so that they train on a laptop CPU; the same
code scales up on a GPU through the width/depth arguments.

Images go in and come out in the kit's convention, ``(B, C, H, W)`` in ``[0, 1]``: generators map
to ``[-1, 1]`` inside and back out through ``tanh``. Discriminators return raw logits (no
sigmoid). The *losses* are not here: they are built in the notebooks and assignments.

Taught in: ``notebooks/10_pix2pix.ipynb`` (U-Net, PatchGAN) and ``notebooks/11_cyclegan.ipynb``
(ResNet generator).
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_choice, check_image, check_positive_int
from .images import from_minus1_1, to_minus1_1


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``"instance"`` (no affine, no running stats, as in CycleGAN), ``"batch"`` or ``"none"``."""
    check_choice(kind, "norm", ["instance", "batch", "none"])
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def init_weights(net: nn.Module, *, std: float = 0.02, seed: int | None = None) -> nn.Module:
    """CycleGAN's initialisation: conv/linear weights ~ N(0, std), biases 0, norm weights
    ~ N(1, std). With ``seed`` the draw is reproducible and leaves the global RNG alone."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=gen) * std)
                m.bias.zero_()
    return net


def _check_divisible(x: torch.Tensor, k: int) -> None:
    """``x`` is an image batch with height and width divisible by ``k`` (and at least ``k``)."""
    check_image(x, "x", min_size=k)
    if x.shape[-2] % k or x.shape[-1] % k:
        raise ValueError(
            f"`x` height and width must be divisible by {k}; got {x.shape[-2]}x{x.shape[-1]}"
        )


def _stem(in_ch: int, ngf: int, norm: str) -> nn.Sequential:
    """The 7×7 reflection-padded stem of CycleGAN's generator and the content encoders."""
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), norm_layer(norm, ngf), nn.ReLU(True)
    )


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class ResnetBlock(nn.Module):
    """x + conv-norm-ReLU-conv-norm(x), reflection padded (no ReLU after the sum)."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm_layer(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _up(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    """Resize-then-convolve upsampling (avoids transposed-convolution checkerboards)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(c_in, c_out, 3),
        norm_layer(norm, c_out),
        nn.ReLU(True),
    )


class ResnetGenerator(nn.Module):
    """CycleGAN/CUT's generator, small: 7×7 stem, ``n_down`` stride-2 downs, ``n_blocks`` residual
    blocks, ``n_down`` ups, 7×7 conv, tanh.

    ``forward(x)``: ``(B, in_ch, H, W)`` in ``[0, 1]`` → ``(B, out_ch, H, W)`` in ``[0, 1]``
    (H and W divisible by ``2**n_down``).

    ``encode(x, layers)``: the feature maps after the stages listed in ``layers`` — stage 0 is
    the stem, 1..n_down the downs, then one per residual block — for PatchNCE. Returns a list
    of ``(B, C_l, H_l, W_l)``.
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        *,
        ngf: int = 32,
        n_down: int = 2,
        n_blocks: int = 4,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        check_positive_int(ngf, "ngf")
        check_positive_int(n_down, "n_down", minimum=0)
        check_positive_int(n_blocks, "n_blocks", minimum=0)
        self.n_down = n_down
        stages: list[nn.Module] = [_stem(in_ch, ngf, norm)]
        c = ngf
        for _ in range(n_down):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, c * 2, 3, stride=2, padding=1),
                    norm_layer(norm, c * 2),
                    nn.ReLU(True),
                )
            )
            c *= 2
        stages += [ResnetBlock(c, norm) for _ in range(n_blocks)]
        self.encoder = nn.ModuleList(stages)
        ups: list[nn.Module] = []
        for _ in range(n_down):
            ups.append(_up(c, c // 2, norm))
            c //= 2
        self.decoder = nn.Sequential(
            *ups, nn.ReflectionPad2d(3), nn.Conv2d(c, out_ch, 7), nn.Tanh()
        )

    @property
    def num_stages(self) -> int:
        return len(self.encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, 2**self.n_down)
        h = to_minus1_1(x)
        for stage in self.encoder:
            h = stage(h)
        return from_minus1_1(self.decoder(h))

    def encode(self, x: torch.Tensor, layers: list[int] | tuple[int, ...]) -> list[torch.Tensor]:
        _check_divisible(x, 2**self.n_down)
        for i in layers:
            if not 0 <= i < self.num_stages:
                raise ValueError(f"`layers` entries must be in 0..{self.num_stages - 1}; got {i}")
        wanted, out, h = sorted(set(layers)), {}, to_minus1_1(x)
        for i, stage in enumerate(self.encoder[: max(wanted) + 1]):
            h = stage(h)
            if i in wanted:
                out[i] = h
        return [out[i] for i in layers]


class UNetGenerator(nn.Module):
    """pix2pix's U-Net, small: ``depth`` 4×4 stride-2 downs (LeakyReLU 0.2), ups with skip
    connections by channel concatenation (ReLU), dropout 0.5 in the innermost ups, tanh out.

    ``(B, in_ch, H, W)`` in ``[0, 1]`` → ``(B, out_ch, H, W)`` in ``[0, 1]``; H and W divisible by
    ``2**depth``.
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        *,
        ngf: int = 32,
        depth: int = 5,
        norm: str = "batch",
        dropout: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int(depth, "depth", minimum=2)
        self.depth = depth
        widths = [min(ngf * 2**i, ngf * 8) for i in range(depth)]
        self.downs = nn.ModuleList()
        c = in_ch
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(c, w, 4, 2, 1))
            if 0 < i < depth - 1:
                layers.append(norm_layer(norm, w))
            self.downs.append(nn.Sequential(*layers))
            c = w
        self.ups = nn.ModuleList()
        for i in reversed(range(depth)):
            c_in = widths[i] if i == depth - 1 else widths[i] * 2
            c_out = out_ch if i == 0 else widths[i - 1]
            layers = [nn.ReLU(True), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)]
            if i > 0:
                layers.append(norm_layer(norm, c_out))
                if dropout and i >= depth - 3 and i < depth - 1:
                    layers.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, 2**self.depth)
        skips, h = [], to_minus1_1(x)
        for down in self.downs:
            h = down(h)
            skips.append(h)
        for i, up in enumerate(self.ups):
            if i > 0:
                h = torch.cat([h, skips[-1 - i]], dim=1)  # (B, 2C, H, W)
            h = up(h)
        return from_minus1_1(torch.tanh(h))


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4×4 convs, ``n_layers`` stride-2 layers then two stride-1 layers, LeakyReLU 0.2,
    no norm on the first layer, one logit per overlapping patch (no sigmoid).

    ``(B, in_ch, H, W)`` in ``[0, 1]`` → logits ``(B, 1, H', W')``. With ``n_layers=3`` the
    receptive field is 70×70 pixels.
    """

    def __init__(
        self, in_ch: int = 3, *, ndf: int = 32, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        check_positive_int(n_layers, "n_layers")
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = ndf
        for i in range(1, n_layers + 1):
            c_out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                # a bias is redundant only before batch norm (its shift replaces it); instance
                # norm here has no affine shift, and "none" has nothing after the conv
                nn.Conv2d(c, c_out, 4, stride, 1, bias=norm != "batch"),
                norm_layer(norm, c_out),
                nn.LeakyReLU(0.2, True),
            ]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, "x", min_size=16)
        return self.model(to_minus1_1(x))


class ConvEncoder(nn.Module):
    """A small content/structure encoder: 7×7 stem, ``n_down`` stride-2 convs, ``n_res`` residual
    blocks.

    ``(B, in_ch, H, W)`` in ``[0, 1]`` → ``(B, ngf·2**n_down, H/2**n_down, W/2**n_down)``.
    """

    def __init__(
        self,
        in_ch: int = 3,
        *,
        ngf: int = 32,
        n_down: int = 2,
        n_res: int = 2,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_stem(in_ch, ngf, norm)]
        c = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1), norm_layer(norm, c * 2), nn.ReLU(True)]
            c *= 2
        layers += [ResnetBlock(c, norm) for _ in range(n_res)]
        self.model, self.out_channels = nn.Sequential(*layers), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, "x")
        return self.model(to_minus1_1(x))


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: ``n_res`` residual blocks, ``n_up`` resize-convs, 7×7
    conv, tanh. ``(B, in_ch, h, w)`` → ``(B, out_ch, h·2**n_up, w·2**n_up)`` in ``[0, 1]``."""

    def __init__(
        self, in_ch: int, out_ch: int = 3, *, n_up: int = 2, n_res: int = 2, norm: str = "instance"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResnetBlock(in_ch, norm) for _ in range(n_res)]
        c = in_ch
        for _ in range(n_up):
            layers.append(_up(c, c // 2, norm))
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return from_minus1_1(self.model(z))


class MLPHead(nn.Module):
    """Two-layer MLP ``Linear–ReLU–Linear`` applied to the last axis (CUT's patch projection).

    ``(..., in_dim)`` → ``(..., out_dim)``.
    """

    def __init__(self, in_dim: int, *, hidden: int = 256, out_dim: int = 256) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(True), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
