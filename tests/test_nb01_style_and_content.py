"""The bilinear models of notebooks/01_style_and_content.ipynb, as written there, checked against
independent computations (NumPy SVDs, data made by a known bilinear model) on tiny tables. The
notebook itself runs in tests/test_kit_notebooks.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace
from course_lib import samples


@pytest.fixture(scope="module")
def nb01() -> dict:
    return tagged_namespace(ROOT / "notebooks/01_style_and_content.ipynb")


@pytest.fixture(scope="module")
def glyph_table() -> torch.Tensor:
    fonts = ["DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf", "cmss10.ttf"]
    glyphs, _ = samples.load_glyphs(fonts, "ABCDEFG", size=10)  # (4, 7, 1, 10, 10)
    return glyphs.flatten(2).double()  # (S=4, C=7, K=100)


def _bilinear_data(s=5, c=7, k=11, i_dim=2, j_dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(s, i_dim, generator=g, dtype=torch.float64)
    b = torch.randn(c, j_dim, generator=g, dtype=torch.float64)
    W = torch.randn(i_dim, j_dim, k, generator=g, dtype=torch.float64)
    return a, b, W, torch.einsum("ijk,si,cj->sck", W, a, b)  # Y: (S, C, K)


def _sq(x: torch.Tensor) -> float:
    return float((x**2).sum())


def test_asymmetric_fit_reconstructs_training_glyphs(nb01, glyph_table):
    """Error at every rank equals the best rank-J error (NumPy's singular values of the stacked
    matrix), falls with the rank and vanishes at full rank: thresholds come from the data."""
    Y = glyph_table
    s, c, k = Y.shape
    stacked = Y.numpy().transpose(0, 2, 1).reshape(s * k, c)  # (S·K, C) style-major
    sv = np.linalg.svd(stacked, compute_uv=False)
    errors = []
    for rank in range(1, c + 1):
        A, B = nb01["fit_asymmetric"](Y, rank=rank)
        assert A.shape == (s, k, rank) and B.shape == (rank, c)
        errors.append(_sq(nb01["predict_asymmetric"](A, B) - Y))
        best = float((sv[rank:] ** 2).sum())
        assert errors[-1] == pytest.approx(best, rel=1e-8, abs=1e-9 * _sq(Y))
    assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:-1]))
    assert errors[-1] < 1e-12 * _sq(Y)


def test_asymmetric_rank_is_checked(nb01, glyph_table):
    with pytest.raises(ValueError, match="rank"):
        nb01["fit_asymmetric"](glyph_table, rank=0)
    with pytest.raises(ValueError, match="rank"):
        nb01["fit_asymmetric"](glyph_table, rank=glyph_table.shape[1] + 1)


def test_symmetric_fit_on_glyphs(nb01, glyph_table):
    """Orthonormal factors; the error never rises across sweeps, is no worse than the truncated
    HOSVD computed independently with NumPy, falls with the ranks, and is ~0 at full ranks."""
    Y = glyph_table
    s, c, k = Y.shape
    y = Y.numpy()
    previous = None
    for i_dim, j_dim in [(1, 2), (2, 4), (3, 6), (s, c)]:
        a, b, W, hist = nb01["fit_symmetric"](Y, style_rank=i_dim, content_rank=j_dim, iters=8)
        assert a.shape == (s, i_dim) and b.shape == (c, j_dim) and W.shape == (i_dim, j_dim, k)
        torch.testing.assert_close(a.T @ a, torch.eye(i_dim, dtype=a.dtype))
        torch.testing.assert_close(b.T @ b, torch.eye(j_dim, dtype=b.dtype))
        assert all(h2 <= h1 + 1e-9 * _sq(Y) for h1, h2 in zip(hist, hist[1:]))
        err = _sq(nb01["predict_symmetric"](a, b, W) - Y)
        assert err == pytest.approx(hist[-1], rel=1e-9, abs=1e-12)
        # truncated HOSVD: leading singular vectors of each unfolding, then project
        ua = np.linalg.svd(y.reshape(s, c * k), full_matrices=False)[0][:, :i_dim]
        ub = np.linalg.svd(y.transpose(1, 0, 2).reshape(c, s * k), full_matrices=False)[0]
        ub = ub[:, :j_dim]
        core = np.einsum("sck,si,cj->ijk", y, ua, ub)
        hosvd = float(((np.einsum("ijk,si,cj->sck", core, ua, ub) - y) ** 2).sum())
        assert err <= hosvd * (1 + 1e-9) + 1e-12
        if previous is not None:
            assert err < previous
        previous = err
    assert previous < 1e-12 * _sq(Y)


def test_symmetric_recovers_an_exact_bilinear_table(nb01):
    _, _, _, Y = _bilinear_data()
    a, b, W, _ = nb01["fit_symmetric"](Y, style_rank=2, content_rank=3)
    torch.testing.assert_close(nb01["predict_symmetric"](a, b, W), Y)


def test_classification_recovers_labels_of_a_new_style(nb01):
    a, b, W, Y = _bilinear_data(s=6, c=7, k=40, i_dim=2, j_dim=7, seed=1)
    a_fit, b_fit, W_fit, _ = nb01["fit_symmetric"](Y, style_rank=2, content_rank=7)
    new_style = a[0] * 0.7 + a[1] * 0.6  # unseen, but in the span of the training styles
    y_new = torch.einsum("ijk,i,cj->ck", W, new_style, b)  # (C, K)
    order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    labels, _ = nb01["classify_new_style"](y_new[order], W_fit, b_fit, a_fit.mean(dim=0))
    assert labels.tolist() == order.tolist()


def test_extrapolation_is_exact_for_a_bilinear_style(nb01):
    a, b, W, Y = _bilinear_data(s=6, c=9, k=30, i_dim=2, j_dim=4, seed=2)
    a_fit, b_fit, W_fit, _ = nb01["fit_symmetric"](Y, style_rank=2, content_rank=4)
    new_style = torch.tensor([0.3, -1.2], dtype=torch.float64)
    y_new = torch.einsum("ijk,i,cj->ck", W, new_style, b)  # (C, K)
    seen = [0, 4]
    pred = nb01["extrapolate_symmetric"](y_new[seen], seen, W_fit, b_fit)
    torch.testing.assert_close(pred, y_new)
    # the asymmetric version reproduces what it saw, and nothing more is promised
    _, B = nb01["fit_asymmetric"](Y, rank=4)
    asym = nb01["extrapolate_asymmetric"](y_new[seen], seen, B)
    torch.testing.assert_close(asym[seen], y_new[seen])


def test_translation_recovers_new_style_and_new_contents(nb01):
    a, b, W, Y = _bilinear_data(s=6, c=8, k=30, i_dim=2, j_dim=3, seed=3)
    old, new = [0, 1, 2, 3, 4], [5, 6, 7]
    a_fit, b_fit, W_fit, _ = nb01["fit_symmetric"](Y[:, old], style_rank=2, content_rank=3)
    new_style = torch.tensor([1.1, -0.4], dtype=torch.float64)
    y_obs = torch.einsum("ijk,i,nj->nk", W, new_style, b[new])  # (3, K)
    a_star, b_star = nb01["translate_new"](
        y_obs, W_fit, a_fit.mean(dim=0), style_norm=2.0, iters=100
    )
    assert float(a_star.norm()) == pytest.approx(2.0)
    torch.testing.assert_close(torch.einsum("ijk,i,nj->nk", W_fit, a_star, b_star), y_obs)
    new_in_old = torch.einsum("ijk,si,nj->snk", W_fit, a_fit, b_star)
    old_in_new = torch.einsum("ijk,i,cj->ck", W_fit, a_star, b_fit)
    # the observations fix a* and b* up to reciprocal scales: one scalar aligns both outputs
    truth_new, truth_old = Y[:, new], torch.einsum("ijk,i,cj->ck", W, new_style, b[old])
    alpha = float((new_in_old * truth_new).sum() / (new_in_old**2).sum())
    torch.testing.assert_close(alpha * new_in_old, truth_new, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(old_in_new / alpha, truth_old, rtol=1e-5, atol=1e-6)


def test_tile_lays_rows_and_columns_out(nb01):
    table = torch.zeros(2, 3, 16, dtype=torch.float64)  # 4x4 glyphs
    table[1, 2, 0] = 1.0  # top-left pixel of row 1, column 2
    image = nb01["tile"](table, gap=1)
    assert image.shape == (1, 1, 10, 15)
    assert image[0, 0, 5, 10] == 0 and image.sum() == 10 * 15 - 1


def test_asymmetric_extrapolation_at_full_rank_is_zero_by_algebra(nb01, glyph_table):
    """At J = C the content vectors are orthonormal (rows of V^T): the minimum-norm A* maps
    every unseen letter to exactly zero; at J = n (letters seen) it is determined, reproduces
    the seen letters, and draws something (nonzero) for the unseen ones."""
    Y = glyph_table[:3]  # (3, 7, 100): three fonts for training
    y_new = glyph_table[3]  # (7, 100): the fourth font is the new style
    seen, unseen = [0, 3, 5], [1, 2, 4, 6]
    _, B_full = nb01["fit_asymmetric"](Y, rank=7)
    torch.testing.assert_close(B_full @ B_full.T, torch.eye(7, dtype=torch.float64))
    blank = nb01["extrapolate_asymmetric"](y_new[seen], seen, B_full)
    assert blank[unseen].abs().max() < 1e-10
    torch.testing.assert_close(blank[seen], y_new[seen])
    _, B_n = nb01["fit_asymmetric"](Y, rank=len(seen))
    drawn = nb01["extrapolate_asymmetric"](y_new[seen], seen, B_n)
    torch.testing.assert_close(drawn[seen], y_new[seen])
    assert drawn[unseen].abs().max() > 0.1
