"""The functions of notebooks/04_image_analogies.ipynb, as written there, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(ROOT / "notebooks/04_image_analogies.ipynb")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_gaussian_pyramid_shapes_and_constants(ns):
    x = _rand(1, 3, 12, 20)
    pyr = ns["gaussian_pyramid"](x, 3)
    assert [tuple(p.shape) for p in pyr] == [(1, 3, 3, 5), (1, 3, 6, 10), (1, 3, 12, 20)]
    assert pyr[-1] is x  # finest level last, unchanged
    const = torch.full((1, 1, 8, 8), 0.3)
    for level in ns["gaussian_pyramid"](const, 3):
        torch.testing.assert_close(level, torch.full_like(level, 0.3))
    # the blur keeps the mean and lowers the spread
    assert float(pyr[1].std()) < float(x.std())
    with pytest.raises(ValueError, match="divisible"):
        ns["gaussian_pyramid"](_rand(1, 1, 10, 12), 3)


def test_neighbourhoods_match_a_loop_with_repeated_edges(ns):
    img = _rand(5, 7, seed=1)
    got = ns["neighbourhoods"](img, 3)
    assert got.shape == (5, 7, 9)
    for y in range(5):
        for x in range(7):
            want = [
                img[min(max(y + dy, 0), 4), min(max(x + dx, 0), 6)]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            ]
            torch.testing.assert_close(got[y, x], torch.stack(want))


def test_causal_features_are_the_pixels_before_the_centre(ns):
    padded = _rand(8, 9, seed=2).double()  # a 4 x 5 image padded by 2
    got = ns["causal_features"](padded)
    assert got.shape == (4, 5, 12) and got.dtype == torch.float64
    w5 = torch.from_numpy(ns["W5"])
    y, x = 1, 3
    window = padded[y : y + 5, x : x + 5]
    want = torch.cat([window[0], window[1], window[2, :2]]) * w5[:12]
    torch.testing.assert_close(got[y, x], want)


def test_pad_with_repeats_the_guess_edges_around_the_image(ns):
    image, guess = _rand(3, 4, seed=20), _rand(3, 4, seed=21)
    out = ns["pad_with"](image, guess)
    assert out.shape == (7, 8)
    torch.testing.assert_close(out[2:-2, 2:-2], image)
    assert float(out[0, 0]) == float(guess[0, 0]) and float(out[-1, 3]) == float(guess[-1, 1])
    assert float(guess[1, 1]) != float(image[1, 1])  # the guess is not written into


def test_best_match_is_the_brute_force_nearest_neighbour(ns):
    rng = np.random.default_rng(3)
    feats, query = rng.random((37, 11)), rng.random(11)
    p, d = ns["best_match"](feats, (feats**2).sum(1), query)
    dists = [((f - query) ** 2).sum() for f in feats]
    assert p == int(np.argmin(dists))
    assert d == pytest.approx(min(dists))


def test_coherence_candidates_continue_the_neighbours_pieces(ns):
    source = np.zeros((4, 6), dtype=np.int64)
    wa = 10
    source[1, 2] = 3 * wa + 5  # the pixel above-left of q = (2, 3) was copied from A (3, 5)
    source[2, 2] = 7 * wa + 9  # the pixel left of q came from A (7, 9): its continuation (7, 10)
    got = set(ns["coherence_candidates"](source, 2, 3, (8, wa)).tolist())
    assert 4 * wa + 6 in got  # (3, 5) + (1, 1)
    assert 7 * wa + 10 not in got  # outside A (column 10 of a 10-wide A)
    # zeros elsewhere in `source` mean "copied from A (0, 0)": continuations of those, if inside
    for dy, dx in ns["OFFSETS"]:
        ry, rx = 2 + dy, 3 + dx
        if 0 <= ry and 0 <= rx < 6 and source[ry, rx] == 0 and -dy < 8 and 0 <= -dx < wa:
            assert -dy * wa - dx in got


def test_remap_luminance_matches_mean_and_spread(ns):
    rng = np.random.default_rng(4)
    ya, yap, yb = rng.random((5, 7)) * 0.3, rng.random((5, 7)), rng.random((6, 4)) * 0.8 + 0.1
    ra, rap = ns["remap_luminance"](ya, yap, yb)
    assert ra.mean() == pytest.approx(yb.mean()) and ra.std() == pytest.approx(yb.std())
    scale = yb.std() / ya.std()
    np.testing.assert_allclose(rap, (yap - ya.mean()) * scale + yb.mean())


@pytest.mark.parametrize("kappa", [0.0, 5.0])
def test_analogy_with_b_equal_to_a_gives_back_a_prime(ns, kappa):
    a = _rand(1, 1, 8, 12, seed=5)
    a_prime = 1 - a**2
    out, source = ns["image_analogy"](a, a_prime, a, levels=2, kappa=kappa, progress=False)
    assert out.shape == (1, 1, 8, 12)
    torch.testing.assert_close(out, a_prime, atol=1e-5, rtol=0)
    assert source.dtype == torch.long
    assert torch.equal(source, torch.arange(8 * 12).reshape(8, 12))


def test_analogy_coherence_weight_makes_larger_pieces(ns):
    a, b = _rand(1, 1, 16, 16, seed=6), _rand(1, 1, 8, 8, seed=7)
    a_prime = a.flip(-1)

    def continued(kappa):  # fraction of pixels that continue their left neighbour's piece
        _, src = ns["image_analogy"](a, a_prime, b, levels=1, kappa=kappa, progress=False)
        return float((src[:, 1:] == src[:, :-1] + 1).double().mean())

    assert continued(1e6) > 0.8 and continued(0.0) < 0.5


def test_analogy_colour_modes_and_errors(ns):
    a, b = _rand(1, 3, 8, 8, seed=8), _rand(1, 3, 8, 8, seed=9)
    a_prime = a.flip(-2)
    yiq, _ = ns["image_analogy"](a, a_prime, b, levels=2, progress=False)
    copy, src = ns["image_analogy"](a, a_prime, b, levels=2, color="copy", progress=False)
    assert yiq.shape == copy.shape == (1, 3, 8, 8)
    assert 0 <= float(yiq.min()) and float(yiq.max()) <= 1
    flat = a_prime[0].flatten(1)  # (3, 64)
    torch.testing.assert_close(copy[0].flatten(1), flat[:, src.flatten()])
    with pytest.raises(ValueError, match="color"):
        ns["image_analogy"](a, a_prime, b, levels=1, color="rgb", progress=False)
    with pytest.raises(ValueError, match="a_prime"):
        ns["image_analogy"](a, a_prime[..., :4], b, levels=1, progress=False)
    with pytest.raises(ValueError, match="method.*'wavefront' or 'scan'.*'fast'"):
        ns["image_analogy"](a, a_prime, b, levels=1, method="fast", progress=False)


@pytest.mark.parametrize("kappa, levels, seed", [(0.0, 1, 30), (2.0, 2, 31), (25.0, 3, 32)])
def test_wavefront_makes_the_scan_lines_choices(ns, kappa, levels, seed):
    """Same B' and source map, pixel for pixel, from both methods (float64 on the CPU)."""
    a, b = _rand(1, 3, 16, 24, seed=seed), _rand(1, 3, 12, 20, seed=seed + 1)
    a_prime = (a.flip(-1) * 0.7 + a.roll(3, -2) * 0.3).clamp(0, 1)
    kw = dict(levels=levels, kappa=kappa, progress=False)
    scan, s_scan = ns["image_analogy"](a, a_prime, b, method="scan", **kw)
    wave, s_wave = ns["image_analogy"](a, a_prime, b, method="wavefront", **kw)
    assert torch.equal(s_scan, s_wave)
    torch.testing.assert_close(wave, scan, atol=0, rtol=0)


def test_wavefront_breaks_ties_like_the_scan(ns):
    """Small-integer features and A' = 0: every distance is exact in any summation order, and
    many tie, between distinct candidates too; both must take the smaller index of A."""
    g = torch.Generator().manual_seed(40)
    f_a = torch.randint(0, 2, (8, 10, 3), generator=g).double()  # 8 distinct features for 80
    f_b = torch.randint(0, 2, (6, 7, 3), generator=g).double()
    level = (f_a, torch.zeros(12, 14, dtype=torch.float64), f_b, torch.zeros(10, 11).double())
    for factor in (1.0, 3.0):
        _, src = ns["synthesise_level_wavefront"](*level, coherence_factor=factor, progress=False)
        _, src_loop = ns["synthesise_level"](*(t.numpy() for t in level), coherence_factor=factor)
        assert src.shape == (6, 7) and torch.equal(src, torch.from_numpy(src_loop)), factor
        assert int(src.max()) < 80


def test_psnr_of_known_errors(ns):
    x = torch.zeros(1, 1, 4, 5)
    assert ns["psnr"](x, x + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert ns["psnr"](x, x + 0.01) == pytest.approx(40.0, abs=1e-3)


def test_coherence_test_is_on_squared_distances(ns):
    prefer = ns["prefer_coherence"]
    # factor 3 (κ = 2 at the finest level): squared distances up to 3x the best match's pass ...
    assert prefer(2.9, 1.0, 3.0) and prefer(3.0, 1.0, 3.0)
    # ... but not 8.5x, which a test on plain distances would let through (sqrt(8.5) < 3)
    assert not prefer(8.5, 1.0, 3.0)
    assert prefer(0.0, 0.0, 1.0) and not prefer(1e-9, 0.0, 5.0)
