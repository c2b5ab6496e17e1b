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
    energy = ns["strip_energy"](texture, b, o, left=left, top=top)
    window = lambda y, x: texture[0, :, y : y + b, x : x + b]  # noqa: E731
    direct = torch.stack(  # Σ mask · texture² over each candidate block, one block at a time
        [(window(y, x) ** 2 * mask).sum() for y in range(5) for x in range(7)]
    ).view(5, 7)
    torch.testing.assert_close(energy, direct, atol=1e-5, rtol=1e-5)
    given = ns["overlap_error"](texture, old, overlap=o, left=left, top=top, energy=energy)
    torch.testing.assert_close(given, fast)


def test_choose_block_respects_the_tolerance(ns):
    errors = torch.tensor([[1.0, 1.05, 3.0], [1.2, 5.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    exact = {ns["choose_block"](errors, tolerance=0.0, generator=g) for _ in range(40)}
    assert exact == {(0, 0), (1, 2)}
    loose = {ns["choose_block"](errors, tolerance=0.1, generator=g) for _ in range(80)}
    assert loose == {(0, 0), (0, 1), (1, 2)}
    with pytest.raises(ValueError, match="tolerance"):
        ns["choose_block"](errors, tolerance=-1)


def _paths(h: int, w: int, end: int):
    """Every connected path over rows 0..h-1 of a w-wide strip that ends at column ``end``."""
    return [p for p in _all_seams(h, w) if p[-1] == end]


def _l_cut_by_brute_force(e: torch.Tensor, o: int) -> torch.Tensor:
    """The paper's L-shaped cut, from every pair of paths: the vertical one from the bottom of the
    left strip and the horizontal one from the right end of the top strip, meeting at the corner
    pixel where their summed cost (the meeting pixel once) is least. Returns the keep-new mask."""
    b = e.shape[0]
    best = None
    for i in range(o):
        for j in range(o):
            # vertical: rows i..b-1 of the left strip, listed from row i down, starting at column j
            vs = [p[::-1] for p in _paths(b - i, o, j)] if b - i > 1 else [[j]]
            v = min(vs, key=lambda p: sum(float(e[i + r, c]) for r, c in enumerate(p)))
            hs = [p[::-1] for p in _paths(b - j, o, i)] if b - j > 1 else [[i]]
            hp = min(hs, key=lambda p: sum(float(e[r, j + c]) for c, r in enumerate(p)))
            total = (
                sum(float(e[i + r, c]) for r, c in enumerate(v))
                + sum(float(e[r, j + c]) for c, r in enumerate(hp))
                - float(e[i, j])
            )
            if best is None or total < best[0]:
                best = (total, i, j, v, hp)
    _, i, j, v, hp = best
    seam_v = [j] * i + v  # column per row; straight up above the meeting point
    seam_h = [i] * j + hp  # row per column; straight left of it
    keep = torch.zeros(b, b, dtype=torch.bool)
    for r in range(b):
        for c in range(b):
            keep[r, c] = c >= seam_v[r] and r >= seam_h[c]
    return keep


@pytest.mark.parametrize("b, o, seed", [(5, 2, 5), (6, 3, 6), (7, 2, 7), (6, 4, 8)])
def test_l_shaped_cut_is_the_papers_meeting_of_two_paths(ns, b, o, seed):
    old, new = _rand(1, 3, b, b, seed=seed), _rand(1, 3, b, b, seed=seed + 100)
    e = ((new - old) ** 2).sum(1)[0]
    want = _l_cut_by_brute_force(e, o)
    for name in ("cut_mask", "cut_mask_fast"):
        got = ns[name](new, old, overlap=o, left=True, top=True)
        assert got.shape == (b, b) and got.dtype == torch.bool
        assert torch.equal(got, want), name
        assert got[o:, o:].all()  # outside the L-shaped overlap: all new


@pytest.mark.parametrize("left, top", [(True, False), (False, True)])
def test_single_overlap_cut_follows_min_cut_path(ns, left, top):
    b, o = 7, 3
    old, new = _rand(1, 3, b, b, seed=11), _rand(1, 3, b, b, seed=12)
    e = ((new - old) ** 2).sum(1)[0]
    seam = ns["min_cut_path"](e[:, :o] if left else e[:o, :].T)
    idx = torch.arange(b)
    want = idx[None, :] >= seam[:, None] if left else idx[:, None] >= seam[None, :]
    for name in ("cut_mask", "cut_mask_fast"):
        assert torch.equal(ns[name](new, old, overlap=o, left=left, top=top), want), name
    assert ns["cut_mask_fast"](new, old, overlap=o, left=False, top=False).all()


def test_scan_dp_equals_the_loop_including_ties(ns):
    g = torch.Generator().manual_seed(13)
    for t in range(200):
        h, w = (
            int(torch.randint(1, 40, (1,), generator=g)),
            int(torch.randint(1, 9, (1,), generator=g)),
        )
        e = torch.rand(h, w, generator=g)
        if t % 2:
            e = (e * 3).floor()  # many exact ties: both must go to the smaller column
        loop = ns["cumulative_cost"](e)
        scan = ns["seam_costs"](e[None])[0]
        torch.testing.assert_close(scan, loop)
        chunk = 1 + t % 9  # any chunk length gives the same costs (rows padded with identities)
        torch.testing.assert_close(ns["seam_costs"](e[None], chunk=chunk)[0], loop)
        end = int(torch.randint(h, (1,), generator=g))
        col = int(loop[end].argmin())
        want = ns["trace_back"](loop, end, col)
        got = ns["trace_seams"](loop[None], torch.tensor([end]), torch.tensor([col]))[0]
        assert torch.equal(got, want), (h, w, end)


def test_overlap_error_with_a_precomputed_spectrum(ns):
    texture, old = _rand(1, 3, 13, 11, seed=14), _rand(1, 3, 6, 6, seed=15)
    plain = ns["overlap_error"](texture, old, overlap=2, left=True, top=True)
    cached = ns["overlap_error"](
        texture, old, overlap=2, left=True, top=True, spectrum=torch.fft.rfft2(texture)
    )
    torch.testing.assert_close(cached, plain)
    assert plain.dtype == torch.float32  # no float64 on the hot path


def test_quilt_stops_after_blocks_and_keeps_a_history(ns):
    texture = _rand(1, 3, 16, 16, seed=16)
    kw = dict(block=8, overlap=2, progress=False)
    full_hist, part_hist = [], []
    full = ns["quilt"](
        texture, 20, generator=torch.Generator().manual_seed(3), history=full_hist, **kw
    )
    part = ns["quilt"](
        texture, 20, generator=torch.Generator().manual_seed(3), history=part_hist, blocks=4, **kw
    )
    assert len(full_hist) == 9 and len(part_hist) == 4
    choices = [(h["position"], h["source"]) for h in full_hist]
    assert [(h["position"], h["source"]) for h in part_hist] == choices[:4]
    assert full_hist[0]["errors"] is None and full_hist[1]["errors"].shape == (9, 9)
    assert part[..., 14:, :].abs().sum() == 0  # the third row of blocks was never placed
    torch.testing.assert_close(part[..., :6, :6], full[..., :6, :6])
    for h in full_hist[1:]:  # each choice is within the tolerance of that block's best
        err = h["errors"]
        assert float(err[h["source"]]) <= float(err.min()) * 1.1 + 1e-6


def test_seam_visibility_is_one_on_a_ramp_and_sees_a_step(ns):
    ramp = torch.linspace(0, 1, 30).expand(1, 3, 30, 30).contiguous()
    assert ns["seam_visibility"](ramp, block=10, overlap=2) == pytest.approx(1.0, rel=1e-4)
    step = ramp.clone()
    step[..., :, 8:] += 0.2  # a jump between x = 7 and 8: the first vertical strip (step 8)
    assert ns["seam_visibility"](step.clamp(0, 1), block=10, overlap=2) > 5


def test_likeness_is_a_correlation(ns):
    x = _rand(1, 3, 12, 10, seed=17)
    assert ns["likeness"](x, x) == pytest.approx(1.0, abs=1e-5)
    assert ns["likeness"](x, 1 - x) == pytest.approx(-1.0, abs=1e-5)
    assert ns["likeness"](0.5 * x + 0.2, x) == pytest.approx(1.0, abs=1e-5)


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
