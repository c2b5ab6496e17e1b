"""The `patchnce` assignment (solutions/patchnce/patchnce.ipynb).

(a) The solution against independent computations (CUT's own formulation of the loss, explicit
loops over patches, the multilayer loss written out). (b) The grade cells report results that
the judge compares with the solution's; a table of realistic student mistakes (made by editing
the solution's source) measures which lose points: every one must, and only in the tests of the
function where it is made.
"""

from __future__ import annotations

import math

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
from torch.nn import functional as F

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions/patchnce/patchnce.ipynb"
GRADE_CELLS = grade_ids(NB)


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(NB)


def cut_patchnce(feat_q, feat_k, tau, batch):
    """CUT's PatchNCELoss (algorithms card §7): positive first, the positive's copy among the
    negatives masked with -10 before the temperature, CE with target 0. ``batch=1`` is CUT's
    ``--nce_includes_all_negatives_from_minibatch`` (our "batch")."""
    q = feat_q.reshape(-1, feat_q.shape[-1])  # (B·N, C)
    k = feat_k.reshape(-1, feat_k.shape[-1]).detach()
    q = q / (q.norm(dim=1, keepdim=True) + 1e-7)
    k = k / (k.norm(dim=1, keepdim=True) + 1e-7)
    l_pos = (q * k).sum(1, keepdim=True)  # (B·N, 1)
    qb, kb = q.view(batch, -1, q.shape[1]), k.view(batch, -1, k.shape[1])
    l_neg = torch.bmm(qb, kb.transpose(2, 1))  # (B', N, N)
    n = l_neg.shape[-1]
    l_neg = l_neg.masked_fill(torch.eye(n, dtype=torch.bool)[None], -10.0).view(-1, n)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long), reduction="none")


def external_loop(q, k, tau):
    """External negatives by an explicit loop: the positive and the other images' keys only."""
    q, k = q.double(), k.double()
    b_, n_, _ = q.shape
    out = []
    for b in range(b_):
        for n in range(n_):
            qn = q[b, n] / q[b, n].norm()
            logits = [float(qn @ (k[b, n] / k[b, n].norm())) / tau]
            logits += [
                float(qn @ (k[o, m] / k[o, m].norm())) / tau
                for o in range(b_)
                if o != b
                for m in range(n_)
            ]
            top = max(logits)
            out.append(-(logits[0] - top) + math.log(sum(math.exp(v - top) for v in logits)))
    return torch.tensor(out, dtype=torch.float64)


# ------------------------------------------------------------------ (a) solution vs references


def test_sample_patches_explicit(ns):
    gen = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 3, 5, 7, generator=gen), torch.randn(2, 4, 2, 3, generator=gen)]
    patches, ids = ns["sample_patches"](maps, 8, generator=torch.Generator().manual_seed(1))
    assert [tuple(p.shape) for p in patches] == [(2, 8, 3), (2, 6, 4)]
    for feat, p, idx in zip(maps, patches, ids):
        w = feat.shape[-1]
        for b in range(2):
            for n, i in enumerate(idx.tolist()):
                assert torch.equal(p[b, n], feat[b, :, i // w, i % w])
    again, _ = ns["sample_patches"](maps, 8, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(again, patches)), "seeded draws must repeat"
    with pytest.raises(ValueError, match="num_patches"):
        ns["sample_patches"](maps, 0)
    with pytest.raises(ValueError, match="patch_ids"):
        ns["sample_patches"](maps, 4, ids[:1])


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_patch_nce_matches_cut_formulation(ns, tau):
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)
    loss = ns["patch_nce_loss"]
    assert torch.allclose(loss(q, k, tau=tau), cut_patchnce(q, k, tau, 3), atol=1e-4)
    batch = loss(q, k, negatives="batch", tau=tau)
    assert torch.allclose(batch, cut_patchnce(q, k, tau, 1), atol=1e-4)
    external = loss(q, k, negatives="external", tau=tau)
    assert torch.allclose(external.double(), external_loop(q, k, tau), atol=1e-4)
    # with one image, "batch" is "internal"; "external" needs two images
    assert torch.allclose(loss(q[:1], k[:1], negatives="batch"), loss(q[:1], k[:1]), atol=1e-6)
    with pytest.raises(ValueError, match="external"):
        loss(q[:1], k[:1], negatives="external")


def test_keys_detached_and_contract_errors(ns):
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 3, generator=gen).requires_grad_()
    k = torch.randn(2, 4, 3, generator=gen).requires_grad_()
    for negatives in ("internal", "batch", "external"):
        q.grad = None
        ns["patch_nce_loss"](q, k, negatives=negatives).mean().backward()
        assert q.grad is not None and k.grad is None
    with pytest.raises(ValueError, match="tau"):
        ns["patch_nce_loss"](q, k, tau=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        ns["patch_nce_loss"](q, k[:, :3])
    with pytest.raises(ValueError, match="negatives"):
        ns["patch_nce_loss"](q, k, negatives="Internal")


def test_multilayer_loss_written_out(ns):
    gen = torch.Generator().manual_seed(6)
    fq = [torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 5, 2, 3, generator=gen)]
    fk = [torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 5, 2, 3, generator=gen)]
    torch.manual_seed(0)
    heads = [torch.nn.Linear(3, 4), torch.nn.Linear(5, 4)]
    got = ns["multilayer_patch_nce"](
        fq,
        fk,
        heads,
        num_patches=5,
        negatives="batch",
        tau=0.2,
        generator=torch.Generator().manual_seed(7),
    )
    draw = torch.Generator().manual_seed(7)
    per_layer = []
    for f_q, f_k, head in zip(fq, fk, heads):
        h, w = f_k.shape[-2:]
        ids = torch.randperm(h * w, generator=draw)[:5]
        q = torch.stack([f_q[:, :, i // w, i % w] for i in ids.tolist()], 1)
        k = torch.stack([f_k[:, :, i // w, i % w] for i in ids.tolist()], 1)
        per_layer.append(cut_patchnce(head(q), head(k), 0.2, 1).mean())
    torch.testing.assert_close(got, torch.stack(per_layer).mean(), atol=1e-5, rtol=1e-5)


def test_tiny_cut_trains_with_each_negative(ns):
    photo = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    sea = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    for negatives in ("internal", "batch", "external"):
        G, history = ns["train_cut"](
            photo,
            sea,
            negatives=negatives,
            steps=2,
            size=16,
            batch=2,
            num_patches=16,
            layers=[0, 1, 2],
            lambda_nce=1.0,
            device="cpu",
            seed=0,
        )
        assert len(history) == 2 and history[0]["NCE"] > 0
        assert tuple(G(photo).shape) == (1, 3, 24, 24)


# ------------------------------------------------------------------ (b) grade cells

OWNERS = [
    ("nce_sample_", "nce_sample_patches"),
    ("nce_loss_", "nce_patch_nce_loss"),
    ("nce_external_", "nce_patch_nce_loss"),
    ("nce_multilayer_", "nce_multilayer"),
]


def test_every_grade_cell_reports_the_solution_scores_full_marks_a_third_visible():
    check_grading(NB, total=19, min_cells=13)


def test_test_cells_hold_no_reference_code():
    """Stand-ins are plainly different functions or the solution's recorded answers (fresh, and
    not for the inputs of the function's own tests); none is a reference implementation."""
    check_stand_ins(NB)


def test_no_reference_of_the_loss_outside_hidden_tests():
    """The released notebook must not show a complete reference of the graded loss."""
    import nbformat

    released = nbformat.read(ROOT / "assignments/patchnce/patchnce.ipynb", as_version=4)
    text = "\n".join(c.source for c in released.cells)
    for marker in ("def reference_nce", "def ref_loss", "cross_entropy(", "logsumexp"):
        assert marker not in text, marker


MISTAKES = {
    "sample: reshape without permute": {
        "nce_sample_patches": [
            ("feat.permute(0, 2, 3, 1).reshape(b, h * w, c)", "feat.reshape(b, h * w, c)")
        ]
    },
    "sample: different locations per image": {
        "nce_sample_patches": [
            (
                "patches.append(flat[:, idx])",
                "patches.append(torch.stack([flat[i, torch.randperm(h * w, generator=generator)"
                "[: len(idx)]] for i in range(b)]))",
            )
        ]
    },
    "sample: with replacement": {
        "nce_sample_patches": [
            (
                "torch.randperm(h * w, generator=generator)[: min(num_patches, h * w)]",
                "torch.randint(h * w, (min(num_patches, h * w),), generator=generator)",
            )
        ]
    },
    "sample: ignores the generator": {
        "nce_sample_patches": [
            ("torch.randperm(h * w, generator=generator)", "torch.randperm(h * w)")
        ]
    },
    "sample: ids transposed (col * H + row)": {
        "nce_sample_patches": [
            ("flat = feat.permute(0, 2, 3, 1)", "flat = feat.permute(0, 3, 2, 1)")
        ]
    },
    "sample: draws new ids even when given": {
        "nce_sample_patches": [("if patch_ids is None:", "if True:")]
    },
    "sample: detaches the features": {
        "nce_sample_patches": [
            ("patches.append(flat[:, idx])", "patches.append(flat[:, idx].detach())")
        ]
    },
    "sample: no check of num_patches": {
        "nce_sample_patches": [("or num_patches < 1:", "and False:")]
    },
    "loss: no normalisation": {
        "nce_patch_nce_loss": [
            (
                "q, k = F.normalize(feat_q, dim=-1), F.normalize(feat_k.detach(), dim=-1)",
                "q, k = feat_q, feat_k.detach()",
            )
        ]
    },
    "loss: normalised along the patch axis": {
        "nce_patch_nce_loss": [
            (
                "q, k = F.normalize(feat_q, dim=-1), F.normalize(feat_k.detach(), dim=-1)",
                "q, k = F.normalize(feat_q, dim=1), F.normalize(feat_k.detach(), dim=1)",
            )
        ]
    },
    "loss: keys not detached": {
        "nce_patch_nce_loss": [
            ("F.normalize(feat_k.detach(), dim=-1)", "F.normalize(feat_k, dim=-1)")
        ]
    },
    "loss: times tau": {
        "nce_patch_nce_loss": [
            ("logits = q @ k.transpose(1, 2) / tau", "logits = q @ k.transpose(1, 2) * tau")
        ]
    },
    "loss: negatives from the wrong axis": {
        "nce_patch_nce_loss": [
            (
                "        logits = q @ k.transpose(1, 2) / tau\n",
                "        q, k, b, n = q.transpose(0, 1), k.transpose(0, 1), n, b\n"
                "        logits = q @ k.transpose(1, 2) / tau\n",
            )
        ]
    },
    "loss: keys against queries (transposed logits)": {
        "nce_patch_nce_loss": [
            ("logits = q @ k.transpose(1, 2) / tau", "logits = k @ q.transpose(1, 2) / tau")
        ]
    },
    "loss: averaged instead of per patch": {
        "nce_patch_nce_loss": [
            (
                'return F.cross_entropy(logits.reshape(b * n, n), target, reduction="none")',
                "return F.cross_entropy(logits.reshape(b * n, n), target).expand(b * n)",
            )
        ]
    },
    "batch: same as internal": {
        "nce_patch_nce_loss": [
            ('if negatives == "internal":', 'if negatives in ("internal", "batch"):')
        ]
    },
    "external: keeps the own image's negatives (= batch)": {
        "nce_patch_nce_loss": [('if negatives == "external":  # drop', "if False:  # drop")]
    },
    "external: drops the positive too": {
        "nce_patch_nce_loss": [
            ("(image[:, None] == image[None, :]) & ~eye", "(image[:, None] == image[None, :])")
        ]
    },
    "external: one image allowed": {
        "nce_patch_nce_loss": [('if negatives == "external" and b < 2:', "if False:")]
    },
    "loss: unknown negatives accepted (treated as batch)": {
        "nce_patch_nce_loss": [
            ('if negatives not in ("internal", "batch", "external"):', "if False:")
        ]
    },
    "multilayer: queries sampled at new locations": {
        "nce_multilayer": [
            (
                "queries, _ = sample_patches(feats_q, num_patches, ids)",
                "queries, _ = sample_patches(feats_q, num_patches, generator=generator)",
            )
        ]
    },
    "multilayer: heads not applied to the keys": {
        "nce_multilayer": [
            (
                "patch_nce_loss(head(q), head(k),",
                "patch_nce_loss(head(q), k @ head.weight.T + head.bias * 0,",
            )
        ]
    },
    "multilayer: the first head for every layer": {
        "nce_multilayer": [
            (
                "for head, q, k in zip(heads, queries, keys)",
                "for q, k, head in zip(queries, keys, [heads[0]] * 9)",
            )
        ]
    },
    "multilayer: summed over the layers": {
        "nce_multilayer": [
            ("return torch.stack(losses).mean()", "return torch.stack(losses).sum()")
        ]
    },
    "multilayer: summed over the patches": {
        "nce_multilayer": [
            ("negatives=negatives, tau=tau).mean()", "negatives=negatives, tau=tau).sum()")
        ]
    },
    "multilayer: negatives not passed on": {
        "nce_multilayer": [("negatives=negatives, tau=tau)", "tau=tau)")]
    },
    "multilayer: tau not passed on": {
        "nce_multilayer": [("negatives=negatives, tau=tau)", "negatives=negatives)")]
    },
    "multilayer: queries and keys swapped": {
        "nce_multilayer": [("patch_nce_loss(head(q), head(k),", "patch_nce_loss(head(k), head(q),")]
    },
    "multilayer: keys sampled from the output": {
        "nce_multilayer": [
            (
                "keys, ids = sample_patches(feats_k, num_patches, generator=generator)",
                "keys, ids = sample_patches(feats_q, num_patches, generator=generator)",
            )
        ]
    },
    "multilayer: no check of the lengths": {
        "nce_multilayer": [
            ("if not (len(feats_q) == len(feats_k) == len(heads)) or not heads:", "if False:")
        ]
    },
}


VISIBLE_MESSAGES = {  # mistakes that a visible cell names (issue 30.2): mistake -> its message
    "loss: keys not detached": r"no gradient reaches them",
    "multilayer: queries sampled at new locations": r"the same locations",
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
