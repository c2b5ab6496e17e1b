"""The functions of notebooks/03_image_quilting.ipynb, as written there, against brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(ROOT / "notebooks/03_image_quilting.ipynb")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _all_seams(h: int, w: int):
    """Every connected top-to-bottom path (one column per row, steps of at most one)."""
    for start in range(w):
        for steps in itertools.product((-1, 0, 1), repeat=h - 1):
            path = [start]
            for s in steps:
                path.append(path[-1] + s)
            if all(0 <= j < w for j in path):
                yield path


def _cost(errors: torch.Tensor, path) -> float:
    return float(sum(errors[i, j] for i, j in enumerate(path)))


@pytest.mark.parametrize("h, w, seed", [(5, 3, 0), (6, 4, 1), (4, 7, 2), (1, 5, 3), (5, 1, 4)])
def test_min_cut_path_is_connected_and_minimal(ns, h, w, seed):
    errors = _rand(h, w, seed=seed)
    path = ns["min_cut_path"](errors)
    assert path.shape == (h,) and path.dtype == torch.long
    assert bool((path.diff().abs() <= 1).all()) and path.min() >= 0 and path.max() < w
    best = min(_cost(errors, p) for p in _all_seams(h, w))
    assert _cost(errors, path.tolist()) == pytest.approx(best, rel=1e-6)


def test_min_cut_path_follows_a_zero_valley(ns):
    errors = torch.ones(6, 5)
    valley = [1, 2, 3, 3, 2, 1]
    for i, j in enumerate(valley):
        errors[i, j] = 0.0
    assert ns["min_cut_path"](errors).tolist() == valley


def test_min_cut_path_rejects_a_batch(ns):
    with pytest.raises(ValueError, match="errors"):
        ns["min_cut_path"](torch.rand(2, 4, 3))


def test_window_ssd_matches_a_loop(ns):
    sample, patch = _rand(1, 3, 9, 11, seed=1), _rand(1, 3, 4, 3, seed=2)
    got = ns["window_ssd"](sample, patch)
    assert got.shape == (6, 9)
    want = torch.tensor(
        [
            [float(((sample[0, :, y : y + 4, x : x + 3] - patch[0]) ** 2).sum()) for x in range(9)]
            for y in range(6)
        ]
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_window_ssd_errors_name_the_arguments(ns):
    with pytest.raises(ValueError, match="patch"):
        ns["window_ssd"](_rand(1, 3, 5, 5), _rand(1, 3, 6, 2))
    with pytest.raises(ValueError, match="sample"):
        ns["window_ssd"](_rand(1, 3, 5, 5), _rand(1, 1, 2, 2))


@pytest.mark.parametrize("left, top", [(True, False), (False, True), (True, True)])
def test_overlap_error_matches_a_masked_brute_force(ns, left, top):
    texture, old = _rand(1, 3, 9, 11, seed=3), _rand(1, 3, 5, 5, seed=4)
    b, o = 5, 2
    mask = torch.zeros(b, b)
    if left:
        mask[:, :o] = 1
    if top:
        mask[:o, :] = 1
    want = torch.zeros(9 - b + 1, 11 - b + 1)
    for y in range(want.shape[0]):
        for x in range(want.shape[1]):
            d = (texture[0, :, y : y + b, x : x + b] - old[0]) ** 2
            want[y, x] = (d * mask).sum() / (mask.sum() * 3)
    fast = ns["overlap_error"](texture, old, overlap=o, left=left, top=top)
    loop = ns["overlap_error_loop"](texture, old, overlap=o, left=left, top=top)
    torch.testing.assert_close(fast, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loop, want, atol=1e-5, rtol=1e-5)


def test_choose_block_respects_the_tolerance(ns):
    errors = torch.tensor([[1.0, 1.05, 3.0], [1.2, 5.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    exact = {ns["choose_block"](errors, tolerance=0.0, generator=g) for _ in range(40)}
    assert exact == {(0, 0), (1, 2)}
    loose = {ns["choose_block"](errors, tolerance=0.1, generator=g) for _ in range(80)}
    assert loose == {(0, 0), (0, 1), (1, 2)}
    with pytest.raises(ValueError, match="tolerance"):
        ns["choose_block"](errors, tolerance=-1)


def test_cut_mask_keeps_old_pixels_left_of_and_above_the_seams(ns):
    b, o = 6, 3
    old, new = _rand(1, 3, b, b, seed=5), _rand(1, 3, b, b, seed=6)
    mask = ns["cut_mask"](new, old, overlap=o, left=True, top=True)
    assert mask.shape == (b, b) and mask.dtype == torch.bool
    assert mask[o:, o:].all()  # outside the L-shaped overlap: all new
    seam_v = ns["min_cut_path"](((new[..., :o] - old[..., :o]) ** 2).sum(1)[0])
    seam_h = ns["min_cut_path"](((new[..., :o, :] - old[..., :o, :]) ** 2).sum(1)[0].T)
    for i in range(b):
        for j in range(b):
            assert bool(mask[i, j]) == (j >= seam_v[i] and i >= seam_h[j])
    only_left = ns["cut_mask"](new, old, overlap=o, left=True, top=False)
    assert only_left[:, o:].all()
    assert ns["cut_mask"](new, old, overlap=o, left=False, top=False).all()


def test_quilt_shapes_values_and_reproducibility(ns):
    texture = _rand(1, 3, 16, 14, seed=7)
    colours = set(map(tuple, texture[0].flatten(1).T.tolist()))
    for method in ("random", "overlap", "cut"):
        out = ns["quilt"](
            texture,
            (23, 19),
            block=8,
            overlap=2,
            method=method,
            generator=torch.Generator().manual_seed(1),
            progress=False,
        )
        assert out.shape == (1, 3, 23, 19)
        # corrupt professor: every output pixel is copied from the sample
        assert set(map(tuple, out[0].flatten(1).T.tolist())) <= colours
        again = ns["quilt"](
            texture,
            (23, 19),
            block=8,
            overlap=2,
            method=method,
            generator=torch.Generator().manual_seed(1),
            progress=False,
        )
        assert torch.equal(out, again)


def test_quilt_with_zero_tolerance_tiles_a_periodic_texture_seamlessly(ns):
    tile = _rand(1, 1, 4, 4, seed=8)
    texture = tile.repeat(1, 1, 5, 5)  # period 4, 20 x 20
    out = ns["quilt"](
        texture, 30, block=10, overlap=2, method="overlap", tolerance=0.0, progress=False
    )
    # step 8 is a multiple of the period: the best blocks continue the pattern exactly
    torch.testing.assert_close(out[..., 4:, :], out[..., :-4, :])
    torch.testing.assert_close(out[..., :, 4:], out[..., :, :-4])


def test_quilt_rejects_bad_arguments(ns):
    texture = _rand(1, 3, 12, 12)
    with pytest.raises(ValueError, match="overlap"):
        ns["quilt"](texture, 20, block=6, overlap=6, progress=False)
    with pytest.raises(ValueError, match="block"):
        ns["quilt"](texture, 20, block=16, overlap=2, progress=False)
    with pytest.raises(ValueError, match="method"):
        ns["quilt"](texture, 20, block=6, overlap=2, method="graphcut", progress=False)


def test_transfer_alpha_trades_target_similarity(ns):
    coarse = _rand(1, 3, 4, 4, seed=9)  # a smooth texture: its blocks can follow a gradient
    texture = torch.nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear")
    yy = torch.linspace(0, 1, 20)
    target = (yy[:, None] * torch.ones(20))[None, None].expand(1, 3, 20, 20).contiguous()
    lum = ns["images"].luminance
    goal = ns["images"].match_color(lum(target), lum(texture))

    def error(alpha):
        out = ns["transfer"](
            texture,
            target,
            block=6,
            iterations=1,
            alpha=alpha,
            tolerance=0.0,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        assert out.shape == target.shape
        return float(((lum(out) - goal) ** 2).mean())

    assert error(0.0) < 0.3 * error(1.0)


def test_gaussian_ssd_matches_a_brute_force(ns):
    patches, template = _rand(4, 3, 5, 5, seed=10), _rand(3, 5, 5, seed=11)
    known = _rand(5, 5, seed=12) > 0.4
    got = ns["gaussian_ssd"](patches, template, known, sigma=5 / 6.4)
    for n in range(4):
        num = den = 0.0
        for i in range(5):
            for j in range(5):
                if known[i, j]:
                    g = float(
                        torch.exp(
                            torch.tensor(-((i - 2) ** 2 + (j - 2) ** 2) / (2 * (5 / 6.4) ** 2))
                        )
                    )
                    num += g * float(((patches[n, :, i, j] - template[:, i, j]) ** 2).sum())
                    den += g
        assert float(got[n]) == pytest.approx(num / den, rel=1e-5)
