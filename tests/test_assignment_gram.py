"""The `gram` assignment (solutions/gram/gram.ipynb).

(a) The solution's ``gram_matrix`` and ``style_loss``, as written in the notebook, against
independent computations on tiny tensors. (b) The grade cells (visible and hidden tests) report
results that the judge compares with the solution's; a table of realistic student mistakes (made
by editing the solution's source) measures which lose points: every one must.
"""

from __future__ import annotations

import pytest
import torch
from source_notebook import (
    check_grading,
    check_local_equals_judged,
    check_mistake,
    check_named_in_a_visible_cell,
    check_stand_ins,
    grade_ids,
)

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions" / "gram" / "gram.ipynb"


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


def test_gatys_layer_loss_matches_loop_and_the_factor_4(ns):
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(2, 3, 2, 4, generator=gen, dtype=torch.float64)
    a = torch.randn(1, 3, 2, 4, generator=gen, dtype=torch.float64)
    n, m = 3, 8
    expected = 0.0
    for b in range(2):
        total = 0.0
        for i in range(n):
            for j in range(n):
                g = sum(float(f[b, i].flatten()[k] * f[b, j].flatten()[k]) for k in range(m))
                aa = sum(float(a[0, i].flatten()[k] * a[0, j].flatten()[k]) for k in range(m))
                total += (g - aa) ** 2
        expected += total / (4 * n**2 * m**2) / 2
    e_l = ns["gatys_layer_loss"](f, a)
    assert float(e_l) == pytest.approx(expected, rel=1e-10)
    ours = ns["style_loss"]([f], [ns["gram_matrix"](a)], [1.0])
    assert float(ours) == pytest.approx(4 * expected, rel=1e-10)  # the 4x link to Gatys' E_l
    with pytest.raises(ValueError, match="example_features"):
        ns["gatys_layer_loss"](f, a[:, :2])


def test_synthesise_is_the_documented_adam_loop(ns):
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64)

    def extract(image):
        return {"rgb": image, "conv": torch.relu(torch.nn.functional.conv2d(image, w))}

    example = torch.rand(1, 3, 9, 9, generator=gen, dtype=torch.float64)
    init = torch.rand(1, 3, 7, 7, generator=gen, dtype=torch.float64)
    image, losses = ns["synthesise"](
        extract, example, init, layers=["conv"], steps=4, lr=0.1, weights=[2.0]
    )

    def gram(f):  # written independently of the notebook
        b, c, h, ww = f.shape
        flat = f.reshape(b, c, -1)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * ww)

    target = gram(extract(example)["conv"])
    x = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    expected = []
    for _ in range(4):
        opt.zero_grad()
        loss = 2.0 * ((gram(extract(x)["conv"]) - target) ** 2).sum((1, 2)).mean()
        expected.append(loss.item())
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    torch.testing.assert_close(image, x.detach())
    assert losses == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="nope"):
        ns["synthesise"](extract, example, init, layers=["nope"], steps=1, lr=0.1)


# ----------------------------------------------------------------------------- (b) grade cells

# Which function each grade cell tests (by grade-id prefix): a mistake in one function must cost
# points only in that function's cells (the others' tests swap in reference implementations).
OWNERS = [
    ("gram_", "gram_matrix"),
    ("style_", "style_loss"),
    ("gatys_", "gatys_layer_loss"),
    ("synth_", "synthesise"),
]


def test_every_grade_cell_reports_the_solution_scores_full_marks_a_third_visible():
    check_grading(NB, total=19, min_cells=12)


def test_test_cells_hold_no_reference_code():
    """Stand-ins are plainly different functions or the solution's recorded answers (fresh, and
    not for the inputs of the function's own tests); none is a reference implementation."""
    check_stand_ins(NB)


# mistake -> edits (``old -> new``) by answer cell
MISTAKES = {
    "gram divided by H*W": {"gram_matrix": [("/ (c * h * w)", "/ (h * w)")]},
    "gram without normalisation": {"gram_matrix": [("/ (c * h * w)", "")]},
    "gram mixes the batch (tutorial style)": {
        "gram_matrix": [
            (
                "flat = features.reshape(b, c, h * w)  # (B, C, HW)\n",
                "flat = features.reshape(1, b * c, h * w)\n",
            ),
            ("/ (c * h * w)", "/ (b * c * h * w)"),
        ]
    },
    "gram divided by B*C*H*W": {"gram_matrix": [("/ (c * h * w)", "/ (b * c * h * w)")]},
    "gram over positions instead of channels": {
        "gram_matrix": [("flat @ flat.transpose(1, 2)", "flat.transpose(1, 2) @ flat")]
    },
    "gram detaches its input": {
        "gram_matrix": [("flat = features.reshape", "flat = features.detach().reshape")]
    },
    "gram with view (fails on non-contiguous input)": {
        "gram_matrix": [("flat = features.reshape", "flat = features.view")]
    },
    "gram always float32": {
        "gram_matrix": [
            ("/ (c * h * w)  # (B, C, C)", "/ (c * h * w)).float()  # ("),
            ("return flat @", "return (flat @"),
        ]
    },
    "gram without the type check": {
        "gram_matrix": [("if not isinstance(features, torch.Tensor):", "if False:")]
    },
    "style loss with mse (mean over entries)": {
        "style_loss": [
            ("((gram - target) ** 2).sum(dim=(1, 2))", "((gram - target) ** 2).mean(dim=(1, 2))")
        ]
    },
    "style loss summed over the batch": {"style_loss": [("per_image.mean()", "per_image.sum()")]},
    "style loss with the unsquared norm": {
        "style_loss": [
            ("((gram - target) ** 2).sum(dim=(1, 2))", "torch.linalg.matrix_norm(gram - target)")
        ]
    },
    "style loss ignores the weights": {
        "style_loss": [("weight * per_image.mean()", "per_image.mean()")]
    },
    "style loss detaches the features": {
        "style_loss": [("gram = gram_matrix(feat)", "gram = gram_matrix(feat.detach())")]
    },
    "style loss averages the layers": {
        "style_loss": [("return total", "return total / len(features)")]
    },
    "style loss with its own Gram (divided by H*W)": {
        "style_loss": [
            (
                "gram = gram_matrix(feat)",
                "gram = torch.einsum('bchw,bdhw->bcd', feat, feat) / feat[0, 0].numel()",
            )
        ]
    },
    "style loss without the length check": {
        "style_loss": [("if not (len(features) == len(target_grams) == len(weights)) or", "if")]
    },
    "style loss without the target shape check": {
        "style_loss": [
            ("target.ndim != 3\n", "False\n"),
            ("or target.shape[0] not in", "and target.shape[0] not in"),
        ]
    },
    "E_l without the 1/4": {"gatys_layer_loss": [("/ (4 * c**2", "/ (c**2")]},
    "E_l with M instead of M^2": {"gatys_layer_loss": [("(h * w) ** 2)", "(h * w))")]},
    "E_l with the normalised Gram": {
        "gatys_layer_loss": [
            ("g_f = f @ f.transpose(1, 2)", "g_f = f @ f.transpose(1, 2) / (c * h * w)"),
            ("g_a = a @ a.transpose(1, 2)", "g_a = a @ a.transpose(1, 2) / (c * h * w)"),
        ]
    },
    "E_l summed over the batch": {"gatys_layer_loss": [("per_image.mean()", "per_image.sum()")]},
    "E_l detaches the features": {
        "gatys_layer_loss": [("f = features.reshape", "f = features.detach().reshape")]
    },
    "E_l without the shape check": {
        "gatys_layer_loss": [("or example_features.shape[0] not in (1, b):", "and False:")]
    },
    "synthesis matches every layer, not the chosen ones": {
        "synthesise": [
            (
                "loss = style_loss([feats[name] for name in layers]",
                "loss = style_loss(list(feats.values())",
            ),
            (
                "targets = [gram_matrix(feats[name]) for name in layers]",
                "targets = [gram_matrix(v) for v in feats.values()]",
            ),
            ("weights = [1.0] * len(layers) if", "weights = [1.0] * 3 if"),
            ("if not layers or len(weights) != len(layers):", "if not layers:"),
        ]
    },
    "synthesis targets from init instead of the example": {
        "synthesise": [("feats = extract(example)", "feats = extract(init)")]
    },
    "synthesis never zeroes the gradients": {"synthesise": [("optimiser.zero_grad()", "pass")]},
    "synthesis without clamping": {"synthesise": [("image.clamp_(0, 1)", "pass")]},
    "synthesis with SGD": {
        "synthesise": [("torch.optim.Adam([image], lr=lr)", "torch.optim.SGD([image], lr=lr)")]
    },
    "synthesis ignores lr": {
        "synthesise": [("torch.optim.Adam([image], lr=lr)", "torch.optim.Adam([image], lr=0.05)")]
    },
    "synthesis ignores the weights": {
        "synthesise": [
            (
                "weights = [1.0] * len(layers) if weights is None else list(weights)",
                "weights = [1.0] * len(layers)",
            )
        ]
    },
    "synthesis optimises init in place": {
        "synthesise": [
            (
                "image = init.detach().clone().requires_grad_(True)",
                "image = init.requires_grad_(True)",
            )
        ]
    },
    "synthesis takes one step too many": {"synthesise": [("range(steps)", "range(steps + 1)")]},
    "synthesis records the loss after the step": {
        "synthesise": [
            ("        losses.append(loss.item())\n", ""),
            (
                "            image.clamp_(0, 1)\n",
                "            image.clamp_(0, 1)\n"
                "            feats = extract(image)\n"
                "            losses.append(\n"
                "                style_loss([feats[n] for n in layers], targets, weights).item()\n"
                "            )\n",
            ),
        ]
    },
    "synthesis without the layer-name check": {
        "synthesise": [("        if missing:\n", "        if False:\n")]
    },
}


VISIBLE_MESSAGES = {  # mistakes that a visible cell names (issue 30.2): mistake -> its message
    "gram divided by B*C*H*W": r"not by B \* C \* H \* W",
    "gram over positions instead of channels": r"channels against channels",
    "synthesis optimises init in place": r"init after the call",
    "synthesis records the loss after the step": r"zero_grad, loss, record, backward, step",
    "synthesis without clamping": r"stay in \[0, 1\]",
}


@pytest.mark.parametrize("mistake", list(VISIBLE_MESSAGES))
def test_mistake_fails_a_visible_check_that_names_it(mistake):
    check_named_in_a_visible_cell(NB, MISTAKES[mistake], VISIBLE_MESSAGES[mistake])


def test_local_verdict_is_the_judged_verdict():
    """Every visible cell, for the solution and every mistake of the table: "visible tests
    passed" <=> the cell earns its points (30.1)."""
    check_local_equals_judged(NB, MISTAKES)


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistake_loses_points_only_in_its_own_tests(mistake):
    check_mistake(NB, mistake, MISTAKES[mistake], OWNERS)
