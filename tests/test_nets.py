"""course_lib.nets: shapes, parameter counts (against counts worked out by hand), receptive
field, device/dtype handling, seeded init. The translation notebooks' own code is tested in
tests/test_nb10_pix2pix.py and tests/test_nb11_cyclegan.py."""

from __future__ import annotations

import pytest
import torch

from course_lib import nets


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


# ----------------------------------------------------------------------------- shapes


def test_resnet_generator_shapes_range_and_encode():
    G = nets.ResnetGenerator(3, 3, ngf=4, n_down=2, n_blocks=2)
    x = torch.rand(2, 3, 20, 28)
    y = G(x)
    assert y.shape == (2, 3, 20, 28) and 0 <= y.min() and y.max() <= 1
    feats = G.encode(x, [0, 2, 4])
    assert [tuple(f.shape) for f in feats] == [(2, 4, 20, 28), (2, 16, 5, 7), (2, 16, 5, 7)]
    assert G.num_stages == 1 + 2 + 2
    with pytest.raises(ValueError, match="divisible by 4"):
        G(torch.rand(1, 3, 18, 28))
    with pytest.raises(ValueError, match=r"layers.*0\.\.4"):
        G.encode(x, [5])


def test_unet_generator_shapes_and_grey_input():
    G = nets.UNetGenerator(1, 3, ngf=4, depth=3)
    y = G(torch.rand(2, 1, 16, 24))
    assert y.shape == (2, 3, 16, 24) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="divisible by 8"):
        G(torch.rand(2, 1, 12, 24))


def test_patch_discriminator_output_size_follows_the_conv_arithmetic():
    D = nets.PatchDiscriminator(6, ndf=2, n_layers=3)
    h, w = 64, 80
    for stride in (2, 2, 2, 1, 1):  # 4x4 convs with padding 1
        h, w = (h + 2 - 4) // stride + 1, (w + 2 - 4) // stride + 1
    assert D(torch.rand(2, 6, 64, 80)).shape == (2, 1, h, w)


def test_patch_discriminator_receptive_field_is_70():
    D = nets.PatchDiscriminator(1, ndf=2, n_layers=3, norm="none")
    x = torch.rand(1, 1, 160, 160, requires_grad=True)
    out = D(x)  # (1, 1, 18, 18)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_encoder_decoder_round_trip_shapes_and_mlp_head():
    enc = nets.ConvEncoder(3, ngf=4, n_down=2, n_res=1)
    z = enc(torch.rand(2, 3, 20, 28))
    assert z.shape == (2, enc.out_channels, 5, 7) and enc.out_channels == 16
    dec = nets.ConvDecoder(16, 3, n_up=2, n_res=1)
    assert dec(z).shape == (2, 3, 20, 28)
    head = nets.MLPHead(16, hidden=8, out_dim=5)
    assert head(torch.rand(2, 7, 16)).shape == (2, 7, 5)


# ----------------------------------------------------------------------------- parameter counts


def test_parameter_counts_match_hand_counts():
    # PatchGAN, instance norm (no affine): every conv has a bias.
    d = nets.PatchDiscriminator(3, ndf=4, n_layers=2)
    want = (
        conv_params(3, 4, 4) + conv_params(4, 8, 4) + conv_params(8, 16, 4) + conv_params(16, 1, 4)
    )
    assert nets.count_parameters(d) == want
    # With batch norm the middle convs lose their bias and each norm adds 2 * channels.
    d = nets.PatchDiscriminator(3, ndf=4, n_layers=2, norm="batch")
    want = (
        conv_params(3, 4, 4)
        + conv_params(4, 8, 4, bias=False)
        + 2 * 8
        + conv_params(8, 16, 4, bias=False)
        + 2 * 16
        + conv_params(16, 1, 4)
    )
    assert nets.count_parameters(d) == want
    # Without a norm every conv keeps its bias (nothing after it could stand in for one).
    d = nets.PatchDiscriminator(3, ndf=4, n_layers=2, norm="none")
    want = (
        conv_params(3, 4, 4) + conv_params(4, 8, 4) + conv_params(8, 16, 4) + conv_params(16, 1, 4)
    )
    assert nets.count_parameters(d) == want
    # ResNet generator: stem, downs, blocks (two 3x3 convs), resize-conv ups, 7x7 out.
    g = nets.ResnetGenerator(3, 3, ngf=4, n_down=1, n_blocks=2)
    want = (
        conv_params(3, 4, 7)
        + conv_params(4, 8, 3)
        + 2 * 2 * conv_params(8, 8, 3)
        + conv_params(8, 4, 3)
        + conv_params(4, 3, 7)
    )
    assert nets.count_parameters(g) == want


def test_count_parameters_skips_frozen():
    d = nets.PatchDiscriminator(3, ndf=2, n_layers=1)
    total = nets.count_parameters(d)
    for p in d.model[0].parameters():
        p.requires_grad_(False)
    assert nets.count_parameters(d) == total - conv_params(3, 2, 4)


# ----------------------------------------------------------------------------- devices, init


def _devices():
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    return out


@pytest.mark.parametrize("device", _devices())
def test_outputs_follow_the_input_device_and_dtype(device):
    g = nets.ResnetGenerator(3, 3, ngf=2, n_down=1, n_blocks=1).to(device, torch.float64)
    y = g(torch.rand(1, 3, 16, 16, dtype=torch.float64, device=device))
    assert y.device.type == device and y.dtype == torch.float64
    d = nets.PatchDiscriminator(3, ndf=2, n_layers=1).to(device)
    assert d(torch.rand(1, 3, 16, 16, device=device)).device.type == device


def test_init_weights_is_seeded_and_leaves_the_global_rng_alone():
    a, b = (nets.PatchDiscriminator(3, ndf=2, n_layers=1) for _ in range(2))
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    nets.init_weights(a, seed=3)
    nets.init_weights(b, seed=3)
    assert torch.equal(torch.rand(1), before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    w = a.model[0].weight
    assert abs(w.std().item() - 0.02) < 0.01 and torch.all(a.model[0].bias == 0)


def test_inputs_are_checked():
    g = nets.ResnetGenerator(3, 3, ngf=2, n_down=1, n_blocks=1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        g(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="`norm` must be one of"):
        nets.PatchDiscriminator(3, norm="group")
