"""course_lib.images: conversions, geometry and colour against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import images


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_numpy_round_trip_keeps_values_and_layout():
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = images.from_numpy(arr)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert torch.allclose(x[0, 1], torch.from_numpy(arr[..., 1]).float() / 255)
    back = images.to_numpy(x)[0]
    assert np.allclose(back * 255, arr)


def test_from_numpy_refuses_out_of_range_floats_and_bad_dtypes():
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        images.from_numpy(np.full((4, 4), 3.0))
    with pytest.raises(TypeError, match="uint8, uint16, bool or float"):
        images.from_numpy(np.zeros((4, 4), np.int64))
    with pytest.raises(TypeError, match="numpy array"):
        images.from_numpy([[0, 1]])


def test_pil_round_trip_grey_and_rgb():
    x = rand(1, 3, 5, 7)
    pic = images.to_pil(x)
    assert pic.size == (7, 5) and pic.mode == "RGB"
    assert torch.allclose(images.from_pil(pic), x, atol=1 / 255)
    grey = images.to_pil(rand(1, 1, 5, 7))
    assert grey.mode == "L" and images.from_pil(grey).shape == (1, 1, 5, 7)


def test_save_image_never_overwrites_silently(tmp_path):
    path = images.save_image(rand(1, 3, 5, 7), tmp_path / "a.png")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        images.save_image(rand(1, 3, 5, 7), path)
    images.save_image(torch.zeros(1, 3, 5, 7), path, overwrite=True)
    assert images.load_image(path).sum() == 0


def test_load_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        images.load_image(tmp_path / "nope.png")


def test_resize_shorter_side_and_exact():
    x = rand(2, 3, 10, 20)
    assert images.resize(x, 5).shape == (2, 3, 5, 10)
    assert images.resize(x, (7, 3)).shape == (2, 3, 7, 3)
    assert images.resize(x, (10, 20)) is x


def test_crops():
    x = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8) / 288
    c = images.center_crop(x, (2, 4))
    assert torch.equal(c, x[..., 2:4, 2:6])
    r1 = images.random_crop(x, 3, generator=torch.Generator().manual_seed(1))
    r2 = images.random_crop(x, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(r1, r2) and r1.shape == (2, 3, 3, 3)
    with pytest.raises(ValueError, match="at least 7x7"):
        images.center_crop(x, 7)


def test_extract_patches_matches_a_loop():
    x = rand(2, 3, 5, 7)
    p = images.extract_patches(x, 3, stride=2)  # positions (0,2) x (0,2,4)
    assert p.shape == (2, 6, 3, 3, 3)
    k = 0
    for i in (0, 2):
        for j in (0, 2, 4):
            assert torch.equal(p[:, k], x[:, :, i : i + 3, j : j + 3])
            k += 1


def test_luminance_and_yiq():
    x = rand(2, 3, 5, 7)
    y = images.luminance(x)
    ref = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(y[:, 0], ref, atol=1e-6)
    yiq = images.rgb_to_yiq(x)
    assert torch.allclose(yiq[:, :1], y, atol=1e-6)
    assert torch.allclose(images.yiq_to_rgb(yiq), x, atol=1e-5)
    grey = torch.full((1, 3, 2, 2), 0.5)
    assert torch.allclose(images.rgb_to_yiq(grey)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-6)


def test_match_color_moves_channel_statistics():
    src, tgt = rand(1, 3, 16, 16, seed=1) * 0.3, rand(1, 3, 16, 16, seed=2) * 0.5 + 0.4
    out = images.match_color(src, tgt)
    assert torch.allclose(out.mean((2, 3)), tgt.mean((2, 3)), atol=1e-3)


def test_range_converters_are_inverse():
    x = rand(2, 3, 5, 7)
    assert torch.allclose(images.from_minus1_1(images.to_minus1_1(x)), x)
    assert images.to_minus1_1(torch.zeros(1)).item() == -1


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.rand(3, 5, 7), ValueError, r"\(B, C, H, W\).*x\[None\]"),
        (torch.zeros(1, 3, 5, 7, dtype=torch.uint8), TypeError, "floating"),
        (torch.full((1, 3, 5, 7), float("nan")), ValueError, "NaN"),
        (np.zeros((1, 3, 5, 7)), TypeError, "torch.Tensor"),
        (torch.rand(1, 2, 5, 7), ValueError, "1 or 3 channels"),
    ],
)
def test_bad_images_are_named(bad, exc, match):
    with pytest.raises(exc, match=match):
        images.luminance(bad)


def test_device_and_dtype_follow_input():
    x = rand(1, 3, 4, 4).double()
    assert images.luminance(x).dtype == torch.float64
    assert images.rgb_to_yiq(x).dtype == torch.float64
    resized = images.resize(x, 2)
    assert resized.dtype == torch.float64 and resized.device == x.device


def test_image_checks_read_no_values_off_the_host():
    """On a device the finiteness check would wait for it at every call: it runs on the CPU only.
    A tensor on the ``meta`` device has no values at all, so any read of them raises."""
    from course_lib._checks import check_image

    meta = torch.empty(1, 3, 8, 8, device="meta")
    assert check_image(meta, "x", channels=3, min_size=4) is meta  # shapes and dtype only
    with pytest.raises(ValueError, match="`x` must have 1 channels"):
        check_image(meta, "x", channels=1)
    with pytest.raises(ValueError, match="NaN"):  # on the CPU the values are checked
        check_image(torch.full((1, 3, 8, 8), float("nan")), "x")


def test_pil_and_numpy_images_get_an_error_that_names_the_conversion():
    """A student passes what they loaded (PIL) or a uint8 array: the message names the fix."""
    from PIL import Image

    picture = Image.new("RGB", (8, 6))
    with pytest.raises(TypeError, match=r"course_lib\.images\.from_pil\(picture\)"):
        images.resize(picture, 4)
    array = np.zeros((6, 8, 3), np.uint8)
    with pytest.raises(TypeError, match=r"course_lib\.images\.from_numpy\(array\)"):
        images.resize(array, 4)
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor; got list \[1, 2\]$"):
        images.resize([1, 2], 4)  # neither: no conversion to name
    # the conversions named really give what resize takes
    assert images.resize(images.from_pil(picture), 3).shape == (1, 3, 3, 4)
    assert images.resize(images.from_numpy(array), 3).shape == (1, 3, 3, 4)
