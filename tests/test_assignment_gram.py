"""The `gram` assignment (solutions/gram/gram.ipynb).

(a) The solution's ``gram_matrix`` and ``style_loss``, as written in the notebook, against
independent computations on tiny tensors. (b) The grade cells (visible and hidden tests) pass
for the solution and fail for realistic student mistakes, made by editing the solution's source.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from source_notebook import (
    grade_ids,
    hidden_share,
    namespace,
    run_every_grade_cell,
    run_grade_cell,
)

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions" / "gram" / "gram.ipynb"


_namespace = partial(namespace, NB)  # the tagged cells, with ``old -> new`` edits by grade id
_run_grade_cell = partial(run_grade_cell, NB)
GRADE_CELLS = grade_ids(NB)


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(NB)


# ----------------------------------------------------------------------------- (a) solution


def test_gram_matches_explicit_loop(ns):
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G = ns["gram_matrix"](x)
    assert G.shape == (2, 3, 3)
    flat = x.reshape(2, 3, 35)
    for b in range(2):
        for c in range(3):
            for d in range(3):
                assert torch.isclose(G[b, c, d], (flat[b, c] * flat[b, d]).sum() / 105)


def test_gram_properties(ns):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 6, generator=gen, dtype=torch.float64)
    G = ns["gram_matrix"](x)
    torch.testing.assert_close(G, G.transpose(1, 2))
    assert torch.linalg.eigvalsh(G).min() > -1e-12
    perm = torch.randperm(30, generator=gen)
    torch.testing.assert_close(
        ns["gram_matrix"](x.reshape(3, 4, 30)[..., perm].reshape(3, 4, 6, 5)), G
    )
    torch.testing.assert_close(ns["gram_matrix"](x[1:2])[0], G[1])


def test_gram_errors_name_the_argument(ns):
    with pytest.raises(ValueError, match=r"`features`.*\(B, C, H, W\).*\(3, 4, 5\)"):
        ns["gram_matrix"](torch.zeros(3, 4, 5))
    with pytest.raises(TypeError, match="features"):
        ns["gram_matrix"]([[1.0]])


def test_style_loss_matches_independent_formula(ns):
    gen = torch.Generator().manual_seed(2)
    f1 = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    f2 = torch.randn(2, 4, 2, 3, generator=gen, dtype=torch.float64)
    t1 = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64)
    t2 = torch.randn(1, 4, 4, generator=gen, dtype=torch.float64)

    def gram(f):  # PyTorch's fast_neural_style convention, written independently
        b, c, h, w = f.shape
        return torch.bmm(f.view(b, c, -1), f.view(b, c, -1).transpose(1, 2)) / (c * h * w)

    expected = (
        0.5 * ((gram(f1) - t1) ** 2).sum((1, 2)).mean()
        + 2.0 * ((gram(f2) - t2.expand(2, 4, 4)) ** 2).sum((1, 2)).mean()
    )
    got = ns["style_loss"]([f1, f2], [t1, t2], [0.5, 2.0])
    assert got.ndim == 0
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="target_grams"):
        ns["style_loss"]([f1], [t2], [1.0])
    with pytest.raises(ValueError, match="same"):
        ns["style_loss"]([f1, f2], [t1], [1.0, 1.0])


# ----------------------------------------------------------------------------- (b) grade cells


def test_solution_passes_every_grade_cell():
    assert run_every_grade_cell(NB) >= 8


def test_points_mostly_hidden():
    assert hidden_share(NB) > 0.5


MISTAKES = {
    "gram divided by H*W": (
        {"gram_matrix": [("/ (c * h * w)", "/ (h * w)")]},
        ["gram_visible", "gram_hidden_values"],
    ),
    "gram without normalisation": (
        {"gram_matrix": [("/ (c * h * w)", "")]},
        ["gram_visible", "gram_hidden_values"],
    ),
    "gram mixes the batch (tutorial style)": (
        {
            "gram_matrix": [
                (
                    "flat = features.reshape(b, c, h * w)  # (B, C, HW)\n",
                    "flat = features.reshape(1, b * c, h * w)\n",
                ),
                ("/ (c * h * w)", "/ (b * c * h * w)"),
            ]
        },
        ["gram_visible", "gram_hidden_values", "gram_hidden_properties"],
    ),
    "gram over positions instead of channels": (
        {"gram_matrix": [("flat @ flat.transpose(1, 2)", "flat.transpose(1, 2) @ flat")]},
        ["gram_visible", "gram_hidden_values", "gram_hidden_properties"],
    ),
    "gram detaches its input": (
        {"gram_matrix": [("flat = features.reshape", "flat = features.detach().reshape")]},
        ["gram_hidden_dtype_grad_errors"],
    ),
    "style loss with mse (mean over entries)": (
        {
            "style_loss": [
                (
                    "((gram - target) ** 2).sum(dim=(1, 2))",
                    "((gram - target) ** 2).mean(dim=(1, 2))",
                )
            ]
        },
        ["style_visible", "style_hidden_values"],
    ),
    "style loss summed over the batch": (
        {"style_loss": [("per_image.mean()", "per_image.sum()")]},
        ["style_hidden_values"],
    ),
    "style loss with the unsquared norm": (
        {
            "style_loss": [
                (
                    "((gram - target) ** 2).sum(dim=(1, 2))",
                    "torch.linalg.matrix_norm(gram - target)",
                )
            ]
        },
        ["style_visible", "style_hidden_values"],
    ),
    "style loss ignores the weights": (
        {"style_loss": [("weight * per_image.mean()", "per_image.mean()")]},
        ["style_visible", "style_hidden_values"],
    ),
    "style loss detaches the features": (
        {"style_loss": [("gram = gram_matrix(feat)", "gram = gram_matrix(feat.detach())")]},
        ["style_hidden_grad"],
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_grade_cells_catch_mistake(mistake):
    mutations, failing = MISTAKES[mistake]
    namespace = _namespace(mutations)
    for gid in failing:
        with pytest.raises(AssertionError):
            _run_grade_cell(namespace, gid)
