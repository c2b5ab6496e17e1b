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
    with pytest.raises(RuntimeError, match='weights="random"') as err:
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
