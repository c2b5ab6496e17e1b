"""Efros-Leung as written in notebooks/02_efros_leung.ipynb, against independent brute force.

The notebook's cells tagged ``testable`` are executed (not the whole notebook); every check
compares with a plain re-computation written here from the paper, on tiny inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "notebooks" / "02_efros_leung.ipynb"


@pytest.fixture(scope="module")
def el() -> dict:
    return tagged_namespace(NB)


def tiny_sample(h=9, w=11, c=3, seed=0) -> torch.Tensor:
    """A (1, C, H, W) image in [0, 1] with a few repeated values (ties happen)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 6, (1, c, h, w), generator=g) / 5.0).float()


def brute_distance(sample, y, x, template, known, sigma) -> float:
    """Scalar triple loop over channels and window pixels, straight from the paper."""
    c, k = template.shape[0], template.shape[-1]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            g = math.exp(-((i - k // 2) ** 2 + (j - k // 2) ** 2) / (2 * sigma**2))
            if known[i][j]:
                den += c * g
                for ch in range(c):
                    num += g * (float(sample[ch, y + i, x + j]) - float(template[ch, i, j])) ** 2
    return num / den


def test_gaussian_window(el):
    g = el["gaussian_window"](7)
    assert g.shape == (7, 7) and g.dtype == torch.float64
    assert torch.isclose(g.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(g, g.T) and torch.equal(g, g.flip(0))
    sigma = 7 / 6.4  # the paper's choice
    ratio = math.exp(-(3**2 + 3**2) / (2 * sigma**2))  # corner / centre
    assert math.isclose(float(g[0, 0] / g[3, 3]), ratio, rel_tol=1e-12)
    for bad in (4, 1, 7.0, True):
        with pytest.raises(ValueError, match="odd"):
            el["gaussian_window"](bad)


def test_candidate_windows(el):
    s = tiny_sample(6, 8, c=2)
    pos, patches = el["candidate_windows"](s, 3)
    assert pos.shape == (4 * 6, 2) and patches.shape == (24, 2, 3, 3)
    for (y, x), p in zip(pos.tolist(), patches):
        assert torch.equal(p, s[0, :, y : y + 3, x : x + 3].double())
    known = torch.ones(1, 1, 6, 8, dtype=torch.bool)
    known[..., 2, 5] = False
    pos2, _ = el["candidate_windows"](s, 3, sample_known=known)
    expect = [
        (y, x) for y in range(4) for x in range(6) if not (y <= 2 <= y + 2 and x <= 5 <= x + 2)
    ]
    assert [tuple(p) for p in pos2.tolist()] == expect
    with pytest.raises(ValueError, match="smaller than the sample"):
        el["candidate_windows"](s, 7)
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        el["candidate_windows"](s[0], 3)


@pytest.mark.parametrize("k", [3, 5])
def test_distances_loop_and_batched_match_brute_force(el, k):
    s = tiny_sample(8, 9, c=3, seed=k)
    pos, patches = el["candidate_windows"](s, k)
    gauss = el["gaussian_window"](k)
    g = torch.Generator().manual_seed(1)
    templates = torch.rand(3, 3, k, k, generator=g, dtype=torch.float64)
    masks = torch.rand(3, k, k, generator=g) < 0.6
    masks[:, k // 2, k // 2 - 1] = True  # at least one known pixel
    src = s[0].double().numpy()
    bank_t = el["window_bank"](patches)
    assert bank_t.shape == (4 * k * k, len(pos)) and bank_t.dtype == torch.float32
    flat_t = templates.reshape(3, 3, k * k)
    d32 = el["window_distances_f32"](bank_t, flat_t, masks.reshape(3, -1), gauss.flatten())
    assert d32.dtype == torch.float32
    margin = el["rounding_margin"](len(bank_t))
    for b in range(3):
        loop = el["window_distances_loop"](
            src, pos.numpy(), templates[b].numpy(), masks[b].numpy(), gauss.numpy()
        )
        brute = [
            brute_distance(src, y, x, templates[b].numpy(), masks[b].numpy(), k / 6.4)
            for y, x in pos.tolist()
        ]
        np.testing.assert_allclose(loop, brute, rtol=1e-12, atol=1e-15)
        assert np.abs(d32[b].double().numpy() - brute).max() <= margin  # the proven bound
        assert np.abs(d32[b].double().numpy() - brute).max() > 0  # float32 does round


def test_pick_match_and_exact_pick(el):
    d = np.array([0.5, 0.10, 0.3, 0.105, 0.11, 0.111, 0.2])
    # candidates within 10 %: 0.10, 0.105, 0.11 (0.111 is above 0.11 + 1e-9) -> indices 1, 3, 4
    picks = [el["pick_match"](d, u, eps=0.1) for u in (0.0, 0.34, 0.67, 0.999)]
    assert picks == [1, 3, 4, 4]
    assert el["pick_match"](d, 0.9, eps=0.0) == 1
    ties = np.array([0.0, 0.2, 1e-16, 0.0])  # exact copies tie at zero despite rounding
    assert el["pick_match"](ties, 0.99, eps=0.1) == 3
    # pick_exact re-measures the screened windows and chooses as pick_match does on the loop's
    # distances, whatever superset of the candidates the screen hands it
    s = tiny_sample(8, 9, c=3, seed=2)
    _, patches = el["candidate_windows"](s, 3)
    g = torch.Generator().manual_seed(0)
    templates = patches[torch.randint(0, len(patches), (4,), generator=g)].flatten(2).clone()
    templates[1] += 0.05 * torch.rand(3, 9, generator=g, dtype=torch.float64)  # not a copy
    known = torch.rand(4, 9, generator=g) < 0.7
    known[:, 4] = True
    gauss = el["gaussian_window"](3).flatten()
    src = s[0].double().numpy()
    pos = el["candidate_windows"](s, 3)[0].numpy()
    loop = np.stack(
        [
            el["window_distances_loop"](
                src, pos, t.view(3, 3, 3).numpy(), m.view(3, 3).numpy(), gauss.view(3, 3).numpy()
            )
            for t, m in zip(templates, known)
        ]
    )
    for u in (0.0, 0.3, 0.7, 0.999):
        uu = torch.full((4,), u, dtype=torch.float64)
        expect = [el["pick_match"](loop[b], u, eps=0.5) for b in range(4)]
        every = torch.ones(4, len(pos), dtype=torch.bool)
        tight = torch.from_numpy(loop <= loop.min(1, keepdims=True) * 1.5 + 1e-9 + 1e-6)
        for near in (every, tight):
            choice, dist = el["pick_exact"](
                patches.flatten(2), templates, known, gauss, near, uu, eps=0.5
            )
            assert choice.tolist() == expect
            np.testing.assert_allclose(dist.numpy(), loop[range(4), expect], rtol=1e-12, atol=1e-15)


def test_frontier_is_the_next_onion_layer(el):
    known = torch.zeros(7, 9, dtype=torch.bool)
    known[2:5, 3:5] = True
    known[0, 8] = True
    order = el["frontier"](known, torch.Generator().manual_seed(0))
    counts = {}
    for y in range(7):
        for x in range(9):
            if known[y, x]:
                continue
            n = sum(
                bool(known[y + dy, x + dx])
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if (dy or dx) and 0 <= y + dy < 7 and 0 <= x + dx < 9
            )
            if n:
                counts[(y, x)] = n
    assert sorted(map(tuple, order.tolist())) == sorted(counts)
    seq = [counts[tuple(p)] for p in order.tolist()]
    assert seq == sorted(seq, reverse=True)  # most known neighbours first


def test_dependency_levels_respect_every_conflict(el):
    rng = np.random.default_rng(0)
    order = rng.permutation([(y, x) for y in range(10) for x in range(12)])[:60]
    levels = el["dependency_levels"](order, 5, (10, 12))
    for i in range(len(order)):
        for j in range(i):
            if np.abs(order[i] - order[j]).max() <= 2:  # j inside i's window
                assert levels[i] > levels[j]


def reference_efros_leung(sample, canvas, known, *, window, eps, max_err, generator):
    """An independent, scalar re-implementation from the paper with the notebook's random
    protocol: per layer one randperm (tie order) and one rand per pixel."""
    s = sample[0].double().numpy()
    c, hs, ws = s.shape
    img = canvas[0].double().numpy().copy()
    filled = known[0, 0].numpy().copy()
    h, w = filled.shape
    r = window // 2
    sigma = window / 6.4
    while not filled.all():
        layer, counts = [], []
        for y in range(h):
            for x in range(w):
                if filled[y, x]:
                    continue
                n = sum(
                    bool(filled[y + dy, x + dx])
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    if (dy or dx) and 0 <= y + dy < h and 0 <= x + dx < w
                )
                if n:
                    layer.append((y, x))
                    counts.append(n)
        perm = torch.randperm(len(layer), generator=generator).tolist()
        layer = [layer[p] for p in perm]
        counts = [counts[p] for p in perm]
        ranked = sorted(range(len(layer)), key=lambda i: -counts[i])  # stable
        u = torch.rand(len(layer), generator=generator, dtype=torch.float64).tolist()
        grown = 0
        for n_i, i in enumerate(ranked):
            y, x = layer[i]
            tmpl = np.zeros((c, window, window))
            mask = np.zeros((window, window), bool)
            for a in range(window):
                for b in range(window):
                    yy, xx = y + a - r, x + b - r
                    if 0 <= yy < h and 0 <= xx < w and filled[yy, xx]:
                        tmpl[:, a, b] = img[:, yy, xx]
                        mask[a, b] = True
            cands = [(qy, qx) for qy in range(hs - window + 1) for qx in range(ws - window + 1)]
            d = [brute_distance(s, qy, qx, tmpl, mask, sigma) for qy, qx in cands]
            best = min(d)
            ok = [j for j, dj in enumerate(d) if dj <= best * (1 + eps) + 1e-9]
            j = ok[int(u[n_i] * len(ok))]
            if d[j] < max_err:
                img[:, y, x] = s[:, cands[j][0] + r, cands[j][1] + r]
                filled[y, x] = True
                grown += 1
        if not grown:
            max_err *= 1.1
    return torch.from_numpy(img).float()[None]


@pytest.mark.parametrize("max_err", [0.3, 0.004])
def test_loop_and_fast_equal_the_brute_force(el, max_err):
    sample = tiny_sample(7, 8, c=3, seed=3)
    canvas, known = el["new_canvas"](sample, (9, 10), generator=torch.Generator().manual_seed(4))
    kw = dict(window=3, eps=0.1, max_err=max_err)
    ref = reference_efros_leung(
        sample, canvas, known, generator=torch.Generator().manual_seed(5), **kw
    )
    loop, src_loop = el["efros_leung_loop"](
        sample, canvas, known, generator=torch.Generator().manual_seed(5), progress=False, **kw
    )
    fast, src_fast = el["efros_leung_fast"](
        sample, canvas, known, generator=torch.Generator().manual_seed(5), progress=False, **kw
    )
    assert torch.equal(loop, ref)
    assert torch.equal(fast, ref)
    assert torch.equal(src_loop, src_fast)
    # every grown pixel is a copy of the sample pixel it names
    grown = src_fast[..., 0] >= 0
    ys, xs = src_fast[grown].T
    assert torch.equal(fast[0][:, grown], sample[0][:, ys, xs])


def test_fast_equals_loop_on_a_bigger_case_and_keeps_known_pixels(el):
    sample = tiny_sample(14, 13, c=1, seed=7)
    canvas = torch.rand(1, 1, 16, 15, generator=torch.Generator().manual_seed(0))
    known = torch.zeros(1, 1, 16, 15, dtype=torch.bool)
    known[..., 3:9, 4:12] = True  # extrapolation from a given block
    kw = dict(window=5, generator=None, progress=False)
    outs = []
    for fn in ("efros_leung_loop", "efros_leung_fast"):
        kw["generator"] = torch.Generator().manual_seed(11)
        outs.append(el[fn](sample, canvas, known, **kw))
    (a, sa), (b, sb) = outs
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert torch.equal(b[known.expand_as(b)], canvas[known.expand_as(canvas)])
    assert (sb[..., 0][known[0, 0]] == -1).all() and (sb[..., 0][~known[0, 0]] >= 0).all()


def test_hole_filling_uses_only_windows_outside_the_hole(el):
    image = tiny_sample(12, 12, c=3, seed=9)
    hole = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    hole[..., 5:8, 4:8] = True
    out, src = el["efros_leung_fast"](
        image,
        image * ~hole,
        ~hole,
        window=3,
        generator=torch.Generator().manual_seed(0),
        sample_known=~hole,
        progress=False,
    )
    assert torch.equal(out[:, :, ~hole[0, 0]], image[:, :, ~hole[0, 0]])
    ys, xs = src[hole[0, 0]].T
    assert not hole[0, 0, ys, xs].any()  # copied from outside the hole


def test_constant_sample_gives_constant_output(el):
    sample = torch.full((1, 3, 8, 8), 0.25)
    canvas, known = el["new_canvas"](sample, 11, generator=torch.Generator().manual_seed(0))
    out, _ = el["efros_leung_fast"](
        sample, canvas, known, window=5, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert out.shape == (1, 3, 11, 11) and torch.all(out == 0.25)


# --- course_lib.efros_leung: the library's copy of what notebook 02 teaches -----------------


def test_library_grow_makes_the_loops_choices(el):
    """The library's float32-screened search makes exactly the loop's (and brute force's)
    choices, also with many exact ties (values on a grid of six levels)."""
    from course_lib import efros_leung as EL

    cases = [
        ((7, 8), (9, 10), 3, 3, 3),
        ((14, 13), (16, 15), 5, 1, 7),
        ((12, 12), (20, 18), 5, 3, 1),
    ]
    for hw, out, k, c, seed in cases:
        sample = tiny_sample(*hw, c=c, seed=seed)
        canvas, known = el["new_canvas"](sample, out, generator=torch.Generator().manual_seed(4))
        kw = dict(window=k, progress=False)
        loop, src_loop = el["efros_leung_loop"](
            sample, canvas, known, generator=torch.Generator().manual_seed(5), **kw
        )
        lib, src_lib = EL.grow(
            sample, canvas, known, generator=torch.Generator().manual_seed(5), **kw
        )
        assert torch.equal(lib, loop) and torch.equal(src_lib, src_loop), (hw, out, k)


def test_library_synthesise_equals_the_notebooks_synthesise(el):
    """Same seed, same output: the notebook's `synthesise` and `course_lib.efros_leung.synthesise`
    (on a real texture, where float32 and float64 distances differ in their last digits)."""
    from course_lib import efros_leung as EL
    from course_lib import samples

    sample = samples.load_sample("radishes", 20, channels=3)
    ours, src = el["synthesise"](sample, 18, 5, seed=3, progress=False)
    lib, src_lib = EL.synthesise(
        sample, 18, window=5, generator=torch.Generator().manual_seed(3), progress=False,
        return_source=True,
    )  # fmt: skip
    assert torch.equal(ours, lib) and torch.equal(src, src_lib)
    # synthesise draws the seed piece and the growth from one generator; redo that for the loop
    g = torch.Generator().manual_seed(3)
    canvas, known = el["new_canvas"](sample, 18, generator=g)
    loop, src_loop = el["efros_leung_loop"](
        sample, canvas, known, window=5, generator=g, progress=False
    )
    assert torch.equal(loop, lib) and torch.equal(src_loop, src_lib)


def test_library_fill_hole_keeps_the_image_and_copies_from_outside():
    from course_lib import efros_leung as EL

    image = tiny_sample(12, 12, c=3, seed=9)
    hole = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    hole[..., 5:8, 4:8] = True
    out = EL.fill_hole(
        image, hole, window=3, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert out.shape == image.shape and out.dtype == torch.float32
    assert torch.equal(out[:, :, ~hole[0, 0]], image[:, :, ~hole[0, 0]])
    # every filled pixel holds a colour that occurs outside the hole
    outside = {tuple(v) for v in image[0].permute(1, 2, 0)[~hole[0, 0]].tolist()}
    assert all(tuple(v) in outside for v in out[0].permute(1, 2, 0)[hole[0, 0]].tolist())


def test_library_checks_its_inputs():
    from course_lib import efros_leung as EL

    s = torch.rand(1, 3, 10, 10)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="odd"):
        EL.synthesise(s, 12, window=4, generator=g)
    with pytest.raises(ValueError, match=r"smaller than the sample \(10x10\); got 11"):
        EL.synthesise(s, 12, window=11, generator=g)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        EL.synthesise(s[0], 12, window=3, generator=g)
    with pytest.raises(TypeError, match="floating"):
        EL.synthesise((s * 255).to(torch.uint8), 12, window=3, generator=g)
    with pytest.raises(TypeError, match="generator"):
        EL.synthesise(s, 12, window=3, generator=0)
    with pytest.raises((TypeError, ValueError), match="size"):
        EL.synthesise(s, 12.5, window=3, generator=g)
    with pytest.raises(TypeError, match="`hole` must be a bool"):
        EL.fill_hole(s, torch.zeros(1, 1, 10, 10), window=3, generator=g)
    with pytest.raises(ValueError, match="no known pixel"):
        EL.grow(s, torch.zeros(1, 3, 6, 6), torch.zeros(1, 1, 6, 6, dtype=torch.bool), window=3)
    with pytest.raises(ValueError, match=r"`known` must have shape \(1, 1, 6, 6\)"):
        EL.grow(s, torch.zeros(1, 3, 6, 6), torch.ones(1, 1, 5, 6, dtype=torch.bool), window=3)


def test_library_follows_the_sample_device_and_dtype():
    from course_lib import efros_leung as EL

    s = tiny_sample(10, 9, c=1, seed=2)
    out, src = EL.synthesise(
        s.double(), (7, 8), window=3, generator=torch.Generator().manual_seed(0), progress=False,
        return_source=True,
    )  # fmt: skip
    assert out.shape == (1, 1, 7, 8) and out.dtype == torch.float32 and out.device == s.device
    assert src.shape == (7, 8, 2) and src.dtype == torch.int64
    ys, xs = src[(src[..., 0] >= 0)].T
    assert torch.equal(out[0, 0][src[..., 0] >= 0], s[0, 0, ys, xs])


def test_library_names_from_numpy_for_a_uint8_array():
    from course_lib import efros_leung as EL

    sample = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match=r"`sample`.*course_lib\.images\.from_numpy\(array\)"):
        EL.synthesise(sample, 20, window=5)


def test_library_screen_ignores_the_float32_matmul_precision(monkeypatch):
    """`torch.set_float32_matmul_precision("high")` (a common GPU tip: TF32) must change neither
    the choices nor the number of windows re-measured in float64 (it used to widen the bound
    8,192 times, so that nearly every window was re-measured); the setting is put back."""
    from course_lib import efros_leung as EL
    from course_lib import samples

    measured = []
    pick = EL._pick_exact

    def counting(patches64, templates, known, gauss64, near, u, eps):
        measured.append(int(near.sum()))
        return pick(patches64, templates, known, gauss64, near, u, eps)

    monkeypatch.setattr(EL, "_pick_exact", counting)
    sample = samples.load_sample("radishes", 20, channels=3)
    runs, precision = {}, "high"
    before = torch.get_float32_matmul_precision()
    try:
        for setting in ("highest", precision):
            torch.set_float32_matmul_precision(setting)
            measured.clear()
            out = EL.synthesise(
                sample, 16, window=5, generator=torch.Generator().manual_seed(2),
                progress=False, return_source=True,
            )  # fmt: skip
            assert torch.get_float32_matmul_precision() == setting  # the caller's, restored
            runs[setting] = out, sum(measured)
    finally:
        torch.set_float32_matmul_precision(before)
    (img, src), count = runs["highest"]
    (img2, src2), count2 = runs[precision]
    assert torch.equal(img, img2) and torch.equal(src, src2)
    windows = (20 - 5 + 1) ** 2 * (16 * 16 - 9)  # every window for every grown pixel
    assert count2 == count and count < windows / 20, (count, count2, windows)
