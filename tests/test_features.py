"""course_lib.features: VGG-19 layer names, shapes, normalisation, weights."""

from __future__ import annotations

import pytest
import torch

from course_lib import features


def test_layer_names_follow_the_papers():
    names = features.layer_names()
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert "relu5_4" in names and names[-1] == "pool5" and len(names) == 16 * 2 + 5


def test_shapes_and_that_it_stops_early():
    vgg = features.VGGFeatures(["relu2_1", "relu1_1"], weights="random")
    out = vgg(torch.rand(2, 3, 20, 28))
    assert list(out) == ["relu1_1", "relu2_1"]
    assert out["relu1_1"].shape == (2, 64, 20, 28) and out["relu2_1"].shape == (2, 128, 10, 14)
    assert len(vgg.net) == features.layer_names().index("relu2_1") + 1
    assert all(not p.requires_grad for p in vgg.parameters())


def test_matches_an_independent_forward():
    vgg = features.VGGFeatures(["conv1_1"], weights="random", seed=1)
    x = torch.rand(1, 3, 6, 5)
    conv = vgg.net[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d((x - mean) / std, conv.weight, conv.bias, padding=1)
    assert torch.allclose(vgg(x)["conv1_1"], ref, atol=1e-5)


def test_random_weights_are_seeded():
    a = features.VGGFeatures(["conv1_1"], seed=5).net[0].weight
    b = features.VGGFeatures(["conv1_1"], seed=5).net[0].weight
    c = features.VGGFeatures(["conv1_1"], seed=6).net[0].weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_avg_pooling_and_grey_input_and_gradients():
    vgg = features.VGGFeatures(["pool1"], pooling="avg")
    assert isinstance(vgg.net[-1], torch.nn.AvgPool2d)
    x = torch.rand(1, 1, 8, 8, requires_grad=True)
    vgg(x)["pool1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_weights_from_a_file(tmp_path):
    vgg = features.VGGFeatures(["pool5"], seed=2)
    path = tmp_path / "vgg.pth"
    torch.save(vgg.net.state_dict(), path)
    again = features.VGGFeatures(["conv1_1"], weights=path)
    assert torch.equal(again.net[0].weight, vgg.net[0].weight)


def test_imagenet_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache; the network is blocked
    with pytest.raises(RuntimeError, match="RandomMultiScaleFeatures") as err:
        features.VGGFeatures(["relu1_1"], weights="imagenet")
    assert "vgg19-dcbb9e9d.pth" in str(err.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": ["relu9_9"]}, "`layers` must be one of"),
        ({"layers": []}, "at least one layer"),
        ({"layers": ["relu1_1"], "pooling": "min"}, "`pooling`"),
        ({"layers": ["relu1_1"], "weights": "nope.pth"}, "no such file"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        features.VGGFeatures(**kwargs)


def test_bad_input():
    vgg = features.VGGFeatures(["relu1_1"])
    with pytest.raises(ValueError, match="channels"):
        vgg(torch.rand(1, 4, 8, 8))


def test_random_multiscale_equals_circular_conv2d():
    net = features.RandomMultiScaleFeatures(sizes=(3, 7), filters=5, seed=1)
    x = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    out = net(x)
    assert list(out) == ["k3", "k7"] and out["k7"].shape == (2, 5, 12, 16)
    centred = x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    for k in (3, 7):
        padded = torch.nn.functional.pad(centred, (k // 2,) * 4, mode="circular")
        ref = torch.relu(torch.nn.functional.conv2d(padded, net.weight(k)))
        torch.testing.assert_close(out[f"k{k}"], ref, rtol=1e-4, atol=1e-5)


def test_random_multiscale_filters_are_zero_mean_unit_norm_and_seeded():
    a = features.RandomMultiScaleFeatures(sizes=(5,), filters=4, seed=3).weight(5)
    b = features.RandomMultiScaleFeatures(sizes=(5,), filters=4, seed=3).weight(5)
    c = features.RandomMultiScaleFeatures(sizes=(5,), filters=4, seed=4).weight(5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a.sum((1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.flatten(1).norm(dim=1), torch.ones(4))
    # zero-mean filters do not respond to a flat image at ImageNet's mean colour
    flat = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    out = features.RandomMultiScaleFeatures(sizes=(3,), filters=4)(flat.contiguous())["k3"]
    assert out.abs().max() < 1e-5


def test_random_multiscale_bad_arguments():
    with pytest.raises(ValueError, match="odd positive"):
        features.RandomMultiScaleFeatures(sizes=(4,))
    with pytest.raises(ValueError, match="`filters`"):
        features.RandomMultiScaleFeatures(filters=0)
    with pytest.raises(ValueError, match="at least 55x55"):
        features.RandomMultiScaleFeatures(filters=2)(torch.rand(1, 3, 32, 32))


def test_fetch_imagenet_offline_says_what_to_do(tmp_path, monkeypatch):
    """`make weights` runs fetch_imagenet; offline (sockets are blocked here) it must explain."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="could not be downloaded") as err:
        features.fetch_imagenet()
    assert "vgg19-dcbb9e9d.pth" in str(err.value) and str(tmp_path) in str(err.value)
    assert features.pick_weights() == "random"
    assert "make weights" in features.weights_note("random", "Offline: shallow net.")
    assert features.weights_note("random", "Offline: shallow net.").endswith(
        "Offline: shallow net."
    )


def test_make_weights_target_runs_fetch_imagenet():
    from course_kit.nbrun import ROOT

    text = (ROOT / "Makefile").read_text()
    target = text.split("\nweights:", 1)[1].split("\n\n", 1)[0]
    assert "fetch_imagenet()" in target


def test_channels_last_input_names_the_permute():
    vgg = features.VGGFeatures(["relu1_1"], weights="random", seed=0)
    x = torch.rand(1, 16, 16, 3)  # (B, H, W, C), as from NumPy
    with pytest.raises(ValueError, match=r"x\.permute\(0, 3, 1, 2\)"):
        vgg(x)
    assert vgg(x.permute(0, 3, 1, 2))["relu1_1"].shape == (1, 64, 16, 16)
    with pytest.raises(
        ValueError, match=r"must have 1 or 3 channels; got tensor \(1, 5, 16, 16\) float32$"
    ):
        vgg(torch.rand(1, 5, 16, 16))  # channels not last either: no permute to suggest
