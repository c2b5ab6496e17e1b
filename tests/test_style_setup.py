"""course_lib.style_setup: the set-up notebooks 08 and 09 share (layer lists, photos, crops)."""

from __future__ import annotations

import pytest
import torch

from course_lib import features, style_setup


def test_style_layers_are_gatys_relu_x_1_and_exist_in_vgg19():
    assert style_setup.style_layers(3) == ["relu1_1", "relu2_1", "relu3_1"]
    assert style_setup.style_layers(5) == list(style_setup.STYLE_LAYERS)
    names = features.layer_names()
    assert all(layer in names for layer in style_setup.STYLE_LAYERS)
    assert all(layer.endswith("_1") for layer in style_setup.STYLE_LAYERS)
    # Johnson et al.'s layers are VGG-16's: relu3_3 exists in VGG-19 too, but relu2_2/relu4_3
    # sit at other depths there; the list is documentation, not something we compute.
    assert style_setup.JOHNSON_VGG16_STYLE_LAYERS == ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


@pytest.mark.parametrize("depth", [0, 6])
def test_style_layers_rejects_a_depth_outside_1_to_5(depth):
    with pytest.raises(ValueError, match="`depth`"):
        style_setup.style_layers(depth)


def _windows(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every size×size window of (1, C, H, W) and its left-right flip, by brute force."""
    out = []
    for top in range(image.shape[-2] - size + 1):
        for left in range(image.shape[-1] - size + 1):
            w = image[0, :, top : top + size, left : left + size]
            out += [w, w.flip(-1)]
    return out


def test_random_crops_are_windows_of_pool_images_possibly_flipped():
    g = torch.Generator().manual_seed(0)
    pool = [torch.rand(1, 3, 7, 9, generator=g), torch.rand(1, 3, 6, 5, generator=g)]
    crops = style_setup.random_crops(pool, size=4, batch=12, generator=g)
    assert crops.shape == (12, 3, 4, 4) and crops.dtype == pool[0].dtype
    candidates = _windows(pool[0], 4) + _windows(pool[1], 4)
    for crop in crops:
        assert any(torch.equal(crop, c) for c in candidates)
    flipped = [not any(torch.equal(c, w) for w in candidates[::2]) for c in crops]
    assert 0 < sum(flipped) < 12  # some crops flipped, some not (p = 1/2 each)


def test_random_crops_follow_the_generator():
    pool = [torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))]
    one, two = (
        style_setup.random_crops(pool, size=5, batch=4, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    )
    assert torch.equal(one, two)


def test_random_crops_errors_name_the_argument():
    g = torch.Generator()
    with pytest.raises(ValueError, match="`pool`"):
        style_setup.random_crops([], size=4, batch=1, generator=g)
    with pytest.raises(ValueError, match="`batch`"):
        style_setup.random_crops([torch.rand(1, 3, 8, 8)], size=4, batch=0, generator=g)
    with pytest.raises(ValueError, match="`pool`"):
        style_setup.random_crops([torch.rand(1, 3, 8, 8)], size=9, batch=1, generator=g)


def test_load_photos_gives_rgb_squares_in_0_1():
    photos = style_setup.load_photos(style_setup.TEST_PHOTOS, 32)
    assert len(photos) == len(style_setup.TEST_PHOTOS)
    for p in photos:
        assert p.shape == (1, 3, 32, 32) and 0 <= p.min() and p.max() <= 1
    assert set(style_setup.TRAIN_PHOTOS).isdisjoint(style_setup.TEST_PHOTOS)
