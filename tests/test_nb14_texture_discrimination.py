"""What notebooks/14_texture_discrimination.ipynb builds from scratch (cells tagged
``testable``), against independent computations: Julesz's textures and their statistics
(counted with numpy, and enumerated exactly for the construction the markdown describes),
random crops (read back from coordinate-ramp images), the same/other pair sampling and the
accuracy count of the co-occurrence discriminator, and the swapping autoencoder's shapes and
swap indexing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(ROOT / "notebooks/14_texture_discrimination.ipynb")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def as_np(x: torch.Tensor) -> np.ndarray:
    """``(1, 1, H, W)`` binary float tensor → ``(H, W)`` int array."""
    assert x.shape[:2] == (1, 1)
    return x[0, 0].numpy().astype(np.int64)


def block_sums(x: np.ndarray) -> np.ndarray:
    """Sum of every 2x2 block (all positions) of ``(..., H, W)``."""
    return x[..., :-1, :-1] + x[..., 1:, :-1] + x[..., :-1, 1:] + x[..., 1:, 1:]


def pair_prob(xs: np.ndarray, dy: int, dx: int) -> float:
    """Pr[x(p) = 1 and x(p + (dy, dx)) = 1] over textures ``(N, H, W)`` and all valid p;
    ``dx`` may be negative."""
    h, w = xs.shape[-2:]
    a = xs[:, : h - dy, max(0, -dx) : w - max(0, dx)]
    b = xs[:, dy:, max(0, dx) : w - max(0, -dx) if dx < 0 else w]
    return float((a * b).mean())


# ----------------------------------------------------------------------------- Julesz textures


def parity_fill(first_row: np.ndarray, first_col: np.ndarray, parity: int) -> np.ndarray:
    """The markdown's rule, written directly: x[i,j] = x[i-1,j] ^ x[i,j-1] ^ x[i-1,j-1] ^ parity."""
    h, w = len(first_col), len(first_row)
    x = np.zeros((h, w), dtype=np.int64)
    x[0], x[:, 0] = first_row, first_col
    for i in range(1, h):
        for j in range(1, w):
            x[i, j] = x[i - 1, j] ^ x[i, j - 1] ^ x[i - 1, j - 1] ^ parity
    return x


@pytest.mark.parametrize("parity", [0, 1])
def test_parity_construction_matches_iid_up_to_third_order_exactly(parity):
    """The markdown's claim, checked by enumerating every 4x4 texture the construction can make
    (each equally likely: 2^7 choices of first row and column): every pixel is 1 with
    probability 1/2, every pair of pixels is (1, 1) with probability 1/4 and every triple
    (1, 1, 1) with 1/8 -- the values of iid fair coins. The four corners of a 2x2 block are all 1
    with probability 1/8 (even) or 0 (odd), against 1/16 for iid: fourth order differs."""
    h = w = 4
    textures = []
    for bits in itertools.product([0, 1], repeat=h + w - 1):
        row = np.array(bits[:w])
        col = np.array((bits[0],) + bits[w:])  # x[0, 0] is shared by the row and the column
        textures.append(parity_fill(row, col, parity).ravel())
    xs = np.array(textures)  # (128, 16), each equally likely
    assert len({t.tobytes() for t in xs}) == 2 ** (h + w - 1)  # all distinct
    np.testing.assert_array_equal(xs.mean(0), 0.5)
    for p, q in itertools.combinations(range(h * w), 2):
        assert (xs[:, p] * xs[:, q]).mean() == 0.25
    for p, q, r in itertools.combinations(range(h * w), 3):
        assert (xs[:, p] * xs[:, q] * xs[:, r]).mean() == 0.125
    corners = xs.reshape(-1, h, w)
    all_four = corners[:, :-1, :-1] * corners[:, 1:, :-1] * corners[:, :-1, 1:] * corners[:, 1:, 1:]
    np.testing.assert_array_equal(all_four.mean(0), 0.125 if parity == 0 else 0.0)


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("shape", [(6, 6), (7, 5), (4, 9)])
def test_parity_texture_obeys_the_block_rule(ns, parity, shape):
    """Every 2x2 block of parity_texture's output holds ``parity`` ones mod 2; the output is
    ``(1, 1, h, w)`` in {0, 1} and is the rule applied to its own first row and column."""
    for seed in range(5):
        x = ns["parity_texture"](*shape, parity=parity, generator=gen(seed))
        assert x.shape == (1, 1, *shape) and x.dtype == torch.float32
        a = as_np(x)
        assert set(np.unique(a)) <= {0, 1}
        assert np.all(block_sums(a) % 2 == parity)
        np.testing.assert_array_equal(a, parity_fill(a[0], a[:, 0], parity))


def test_parity_texture_first_row_and_column_are_uniform(ns):
    """A 3x3 even texture is fixed by its first row and column (5 free bits); over 3200 seeded
    draws the 32 patterns appear about equally often (chi-square, 31 degrees of freedom, far
    below the 0.1 % critical value 61.1), so the notebook's textures are the equally likely
    ones enumerated above."""
    g = gen(0)
    counts = np.zeros(32)
    for _ in range(3200):
        a = as_np(ns["parity_texture"](3, 3, parity=0, generator=g))
        bits = np.concatenate([a[0], a[1:, 0]])
        counts[int("".join(map(str, bits)), 2)] += 1
    chi2 = ((counts - 100) ** 2 / 100).sum()
    assert chi2 < 61.1


def draws(make, n: int) -> np.ndarray:
    return np.stack([as_np(make()) for _ in range(n)])  # (n, H, W)


def test_julesz_pairs_have_equal_low_order_statistics(ns):
    """Counted with numpy over 300 seeded 24x24 draws of each texture: iid, even and odd agree
    with the iid values (density 1/2, pair probability 1/4 at several displacements, 1/8 for an
    L-shaped triple); only the 2x2 block statistics tell them apart (odd-block fraction 0 / 1 /
    about 1/2; all four corners 1: 1/8 / 0 / 1/16). "Pairs" keeps density 1/2 but its horizontal
    neighbours are (1, 1) with probability 3/8 (1/2 inside a pair, 1/4 across), vertical 1/4."""
    n, size = 300, 24
    g = gen(1)
    tex = {
        "iid": draws(lambda: ns["iid_texture"](size, size, generator=g), n),
        "even": draws(lambda: ns["parity_texture"](size, size, parity=0, generator=g), n),
        "odd": draws(lambda: ns["parity_texture"](size, size, parity=1, generator=g), n),
        "pairs": draws(lambda: ns["paired_texture"](size, size, generator=g), n),
    }
    tol = 0.02
    for name in ("iid", "even", "odd"):
        xs = tex[name]
        assert abs(xs.mean() - 0.5) < tol, name
        for d in [(0, 1), (1, 0), (1, 1), (1, -1), (2, 3), (0, 5)]:
            assert abs(pair_prob(xs, *d) - 0.25) < tol, (name, d)
        triple = (xs[:, :-1, :-1] * xs[:, :-1, 1:] * xs[:, 1:, :-1]).mean()
        assert abs(triple - 0.125) < tol, name
    odd_blocks = {k: (block_sums(tex[k]) % 2).mean() for k in ("iid", "even", "odd")}
    assert odd_blocks["even"] == 0 and odd_blocks["odd"] == 1
    assert abs(odd_blocks["iid"] - 0.5) < tol
    four = {k: (block_sums(tex[k]) == 4).mean() for k in ("iid", "even", "odd")}
    assert abs(four["iid"] - 1 / 16) < tol and abs(four["even"] - 1 / 8) < tol
    assert four["odd"] == 0
    # pairs: columns (0,1), (2,3), ... share a coin; of the 23 horizontal neighbour pairs in a
    # row, 12 are inside a pair (probability 1/2) and 11 straddle two coins (1/4)
    xs = tex["pairs"]
    assert xs.shape == (n, size, size)
    np.testing.assert_array_equal(xs[:, :, 0::2], xs[:, :, 1::2])
    assert abs(xs.mean() - 0.5) < tol
    assert abs(pair_prob(xs, 0, 1) - (12 * 0.5 + 11 * 0.25) / 23) < tol
    assert abs(pair_prob(xs, 1, 0) - 0.25) < tol


def test_iid_texture_density_and_odd_width_pairs(ns):
    """iid_texture: ``(1, 1, h, w)`` in {0, 1} with the requested density (200 x 200 pixels,
    within 0.01); paired_texture keeps the requested width when it is odd."""
    for p in (0.5, 0.65, 0.1):
        x = ns["iid_texture"](200, 200, density=p, generator=gen(2))
        assert x.shape == (1, 1, 200, 200)
        assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
        assert abs(float(x.mean()) - p) < 0.01
    y = ns["paired_texture"](5, 7, generator=gen(3))
    assert y.shape == (1, 1, 5, 7)
    np.testing.assert_array_equal(as_np(y)[:, 0:6:2], as_np(y)[:, 1:7:2])


def test_embed_pastes_a_centred_square(ns):
    """embed: inside the centred square of side int(h * frac) the output is the figure, outside
    it the background; the background tensor itself is left untouched."""
    bg = torch.zeros(1, 1, 10, 10)
    fig = torch.arange(100, dtype=torch.float32).reshape(1, 1, 10, 10) + 1
    out = ns["embed"](bg, fig, frac=0.5)
    assert float(bg.abs().sum()) == 0
    want = np.zeros((10, 10), dtype=np.float32)
    want[2:7, 2:7] = fig[0, 0, 2:7, 2:7].numpy()  # s = 5, top = left = (10 - 5) // 2 = 2
    np.testing.assert_array_equal(out[0, 0].numpy(), want)


# ----------------------------------------------------------------------------- crops, pairs


def ramp_images(size: int, ids) -> torch.Tensor:
    """``(len(ids), 3, size, size)``: channel 0 holds each pixel centre's x coordinate in
    grid_sample's normalised units, channel 1 its y coordinate, channel 2 the image's id."""
    c = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    x = c[None, :].expand(size, size)
    y = c[:, None].expand(size, size)
    return torch.stack(
        [torch.stack([x, y, torch.full((size, size), float(i))]) for i in ids]
    ).contiguous()


def test_random_crops_scale_flip_offset_and_source(ns):
    """Read back each crop's sampling grid from coordinate-ramp images (bilinear sampling of a
    linear ramp returns the coordinate itself away from the border): the crop is linear in the
    grid, its side is between 1/8 and 1/4 of the image side on each axis (drawn independently),
    it is mirrored horizontally for some crops and never vertically, it lies inside the image,
    and crop k of image b comes from image b."""
    size, num = 9, 40
    imgs = ramp_images(256, [3, 7])
    out = ns["random_crops"](imgs, num_crops=num, size=size, generator=gen(4))
    assert out.shape == (2, num, 3, size, size)
    t = torch.linspace(-1, 1, size, dtype=torch.float64)
    inner = slice(1, size - 1)  # the border row/column may touch the zero padding
    flips, sxs, sys = [], [], []
    for b, ident in enumerate((3, 7)):
        crops = out[b].double()
        ids = crops[:, 2, inner, inner]
        torch.testing.assert_close(ids, torch.full_like(ids, ident), atol=1e-5, rtol=0)
        for k in range(num):
            gx, gy = crops[k, 0, inner, inner], crops[k, 1, inner, inner]
            sx = float((gx[:, -1] - gx[:, 0]).mean() / (t[size - 2] - t[1]))  # flip * scale_x
            sy = float((gy[-1, :] - gy[0, :]).mean() / (t[size - 2] - t[1]))
            ox, oy = float(gx.mean()), float(gy.mean())  # t is symmetric: mean = offset
            torch.testing.assert_close(
                gx, (t[inner] * sx + ox)[None].expand_as(gx), atol=1e-5, rtol=0
            )
            torch.testing.assert_close(
                gy, (t[inner] * sy + oy)[:, None].expand_as(gy), atol=1e-5, rtol=0
            )
            assert 1 / 8 - 1e-5 <= abs(sx) <= 1 / 4 + 1e-5 and 1 / 8 - 1e-5 <= sy <= 1 / 4 + 1e-5
            assert abs(ox) + abs(sx) <= 1 + 1e-5 and abs(oy) + sy <= 1 + 1e-5
            flips.append(np.sign(sx))
            sxs.append(abs(sx))
            sys.append(sy)
    assert {-1.0, 1.0} <= set(flips)
    assert not np.allclose(sxs, sys)  # independent per axis


def constant_images(values) -> torch.Tensor:
    """One flat grey image per value, ``(N, 3, 32, 32)``."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 32, 32)


def source_of(crops: torch.Tensor) -> torch.Tensor:
    """The grey value at the centre of each crop ``(..., 3, s, s)`` (well inside its image)."""
    s = crops.shape[-1]
    return crops[..., 0, s // 2 - 1 : s // 2 + 1, s // 2 - 1 : s // 2 + 1].mean(dim=(-1, -2))


def test_pair_batch_same_from_same_image_other_from_another(ns):
    """pair_batch on flat images of distinct greys: shapes ``(B, n_ref, 3, s, s)``, then
    ``(B, 1, 3, s, s)`` three times; all references, the "same" and the "hard" query of row b come
    from one image, the rows use distinct images, and row b's "other" query comes from row b-1's
    image."""
    values = [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
    imgs = constant_images(values)
    for seed in range(3):
        ref, same, other, hard = ns["pair_batch"](
            imgs, batch=4, n_ref=3, size=16, generator=gen(seed)
        )
        assert ref.shape == (4, 3, 3, 16, 16)
        assert same.shape == other.shape == hard.shape == (4, 1, 3, 16, 16)
        src = source_of(ref)  # (4, 3)
        torch.testing.assert_close(src, src[:, :1].expand_as(src), atol=1e-6, rtol=0)
        torch.testing.assert_close(source_of(same)[:, 0], src[:, 0], atol=1e-6, rtol=0)
        grey = hard[:, 0, 0].amax(dim=(-1, -2))  # tiles move: read the brightest pixel instead
        torch.testing.assert_close(grey, src[:, 0], atol=1e-6, rtol=0)
        rows = [min(values, key=lambda v: abs(v - float(s))) for s in src[:, 0]]
        assert len(set(rows)) == 4  # drawn without replacement
        torch.testing.assert_close(source_of(other)[:, 0], src[:, 0].roll(1), atol=1e-6, rtol=0)
        assert torch.all((source_of(other)[:, 0] - src[:, 0]).abs() > 0.05)


def test_shuffle_tiles_permutes_whole_tiles(ns):
    """Each crop's 4x4 tiles are permuted: every output tile equals one input tile of the same
    crop, each used once, so each crop keeps its pixels (colour mean and std); the order changes."""
    x = torch.rand(2, 3, 3, 16, 16, generator=gen(6))
    y = ns["shuffle_tiles"](x, tile=4, generator=gen(7))
    assert y.shape == x.shape and not torch.equal(x, y)
    tiles = lambda c: [c[:, i : i + 4, j : j + 4] for i in range(0, 16, 4) for j in range(0, 16, 4)]
    for b in range(2):
        for k in range(3):
            src, out = tiles(x[b, k]), tiles(y[b, k])
            used = [next(i for i, t in enumerate(src) if torch.equal(t, o)) for o in out]
            assert sorted(used) == list(range(16))
    stats = ns["ColourBaseline"].stats
    torch.testing.assert_close(stats(y), stats(x))


def test_colour_baseline_stats_are_channel_mean_and_std(ns):
    x = torch.rand(2, 3, 3, 5, 7, generator=gen(8))
    got = ns["ColourBaseline"].stats(x)
    assert got.shape == (2, 3, 6)
    for b in range(2):
        for k in range(3):
            for c in range(3):
                v = x[b, k, c].flatten()
                m = float(v.sum()) / v.numel()
                sd = (float(((v - m) ** 2).sum()) / (v.numel() - 1)) ** 0.5
                assert abs(float(got[b, k, c]) - m) < 1e-5
                assert abs(float(got[b, k, 3 + c]) - sd) < 1e-5


def test_pair_accuracy_counts_with_stand_in_discriminators(ns):
    """pair_accuracy = (same pairs scored > 0 + negatives scored < 0) / all pairs, per kind of
    negative: an oracle that compares centre greys scores 1 against other images and 1/2 against
    shuffled tiles of a flat image (they are the same grey), its negation 0 and 1/2, a constant
    +1 exactly one half and a constant 0 (neither > 0 nor < 0) nothing."""
    imgs = constant_images([0.1, 0.3, 0.5, 0.7, 0.9])

    def oracle(ref, query):
        match = (source_of(query) - source_of(ref)[:, :1]).abs() < 1e-4  # (B, Q)
        return match.float() * 2 - 1

    acc = lambda D: ns["pair_accuracy"](D, imgs, trials=2, device="cpu")
    assert acc(oracle) == {"other image": 1.0, "shuffled tiles": 0.5}
    assert acc(lambda r, q: -oracle(r, q)) == {"other image": 0.0, "shuffled tiles": 0.5}
    assert acc(lambda r, q: torch.ones(q.shape[:2])) == {"other image": 0.5, "shuffled tiles": 0.5}
    assert acc(lambda r, q: torch.zeros(q.shape[:2])) == {"other image": 0.0, "shuffled tiles": 0.0}


def test_cooccurrence_discriminator_aggregates_references_by_their_mean(ns):
    """D(ref, query) gives ``(B, Q)`` logits; it sees the references only through the mean of
    their features, so their order does not matter and R copies of one crop score like that
    crop alone; each query is scored on its own (changing query 1 leaves query 0's logit)."""
    torch.manual_seed(0)
    D = ns["CooccurrenceDiscriminator"](width=8, feat=16).eval()
    g = gen(5)
    ref, query = torch.rand(2, 4, 3, 16, 16, generator=g), torch.rand(2, 3, 3, 16, 16, generator=g)
    with torch.no_grad():
        out = D(ref, query)
        assert out.shape == (2, 3)
        torch.testing.assert_close(D(ref[:, [2, 0, 3, 1]], query), out)
        one = ref[:, :1]
        torch.testing.assert_close(D(one.expand(-1, 5, -1, -1, -1), query), D(one, query))
        q2 = query.clone()
        q2[:, 1] = torch.rand(2, 3, 16, 16, generator=g)
        out2 = D(ref, q2)
        torch.testing.assert_close(out2[:, [0, 2]], out[:, [0, 2]])
        assert not torch.allclose(out2[:, 1], out[:, 1])
        # the features are the encoder applied to each crop mapped to [-1, 1]
        torch.testing.assert_close(D.features(ref)[1, 2], D.encoder(ref[1, 2:3] * 2 - 1)[0])


# ----------------------------------------------------------------------------- swapping AE


def test_swap_ae_shapes_and_swap_indexing(ns):
    """encode: structure ``(B, 8, S/4, S/4)`` and texture ``(B, 64)``; decode: ``(B, 3, S, S)``
    in (0, 1); images are decoded independently, so the training loop's
    ``decode(zs, zt.roll(1, 0))`` gives row i the structure of x[i] and the texture of x[i-1]."""
    torch.manual_seed(0)
    ae = ns["SwapAE"]().eval()
    x = torch.rand(3, 3, 16, 16, generator=gen(7))
    with torch.no_grad():
        zs, zt = ae.encode(x)
        assert zs.shape == (3, 8, 4, 4) and zt.shape == (3, 64)
        rec = ae.decode(zs, zt)
        assert rec.shape == x.shape and 0 < float(rec.min()) and float(rec.max()) < 1
        swap = ae.decode(zs, zt.roll(1, dims=0))
        for i in range(3):
            alone = ae.decode(zs[i : i + 1], zt[(i - 1) % 3 : (i - 1) % 3 + 1])
            torch.testing.assert_close(swap[i : i + 1], alone, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(swap, rec)  # the texture code changes the output
