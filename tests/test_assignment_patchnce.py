"""The `patchnce` assignment: its solution against independent computations (CUT's own
formulation of the loss), and its hidden tests against realistic student mistakes."""

from __future__ import annotations

import nbformat
import pytest
import torch
from source_notebook import mutate as mutate_source
from source_notebook import run_cell
from torch.nn import functional as F

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions/patchnce/patchnce.ipynb"


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(NB)


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(NB, as_version=4)


@pytest.fixture(scope="module")
def cells(nb) -> dict[str, str]:
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata
    }


def graded(nb) -> list:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


def mutate(ns: dict, cells: dict[str, str], answer_id: str, old: str, new: str) -> dict:
    """A namespace where the answer cell ``answer_id`` is redefined with ``old`` → ``new``."""
    return mutate_source(ns, cells[answer_id], answer_id, old, new)


def cut_patchnce(feat_q, feat_k, tau, batch):
    """CUT's PatchNCELoss as described in the algorithms card §7: positive first, the positive's
    copy among the negatives masked with -10 before the temperature, CE with target 0."""
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


# ------------------------------------------------------------------ solution vs references


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
    assert torch.allclose(
        ns["patch_nce_loss"](q, k, tau=tau), cut_patchnce(q, k, tau, 3), atol=1e-4
    )
    ext = ns["patch_nce_loss_external"](q, k, tau=tau)
    assert torch.allclose(ext, cut_patchnce(q, k, tau, 1), atol=1e-4)


def test_keys_detached_and_contract_errors(ns):
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 3, generator=gen).requires_grad_()
    k = torch.randn(2, 4, 3, generator=gen).requires_grad_()
    ns["patch_nce_loss"](q, k).mean().backward()
    assert q.grad is not None and k.grad is None
    with pytest.raises(ValueError, match="tau"):
        ns["patch_nce_loss"](q, k, tau=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        ns["patch_nce_loss_external"](q, k[:, :3])


def test_tiny_cut_trains_with_both_losses(ns):
    photo = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    sea = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    for loss_fn in (ns["patch_nce_loss"], ns["patch_nce_loss_external"]):
        G, history = ns["train_cut"](
            photo,
            sea,
            loss_fn=loss_fn,
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


# ------------------------------------------------------------------ hidden tests


def test_solution_passes_every_grade_cell(ns, nb):
    cells = graded(nb)
    assert len(cells) >= 9
    for c in cells:
        run_cell(ns, c.source, c.metadata["nbgrader"]["grade_id"])


def test_hidden_tests_carry_most_points(nb):
    cells = graded(nb)
    total = sum(c.metadata["nbgrader"]["points"] for c in cells)
    hidden_only = sum(
        c.metadata["nbgrader"]["points"] for c in cells if "check_implemented" not in c.source
    )
    assert hidden_only > total / 2


MUTANTS = {
    "sample: reshape without permute": (
        "nce_sample_patches",
        "feat.permute(0, 2, 3, 1).reshape(b, h * w, c)",
        "feat.reshape(b, h * w, c)",
        ["nce_sample_visible", "nce_sample_test_values"],
    ),
    "sample: different locations per image": (
        "nce_sample_patches",
        "patches.append(flat[:, idx])",
        "patches.append(torch.stack([flat[i, torch.randperm(h * w, generator=generator)"
        "[: len(idx)]] for i in range(b)]))",
        ["nce_sample_test_values"],
    ),
    "sample: with replacement": (
        "nce_sample_patches",
        "torch.randperm(h * w, generator=generator)[: min(num_patches, h * w)]",
        "torch.randint(h * w, (min(num_patches, h * w),), generator=generator)",
        ["nce_sample_test_values"],
    ),
    "loss: no normalisation": (
        "nce_patch_nce_loss",
        "q = F.normalize(feat_q, dim=-1)",
        "q = feat_q",
        ["nce_loss_visible", "nce_loss_test_loop", "nce_loss_test_scale"],
    ),
    "loss: normalised along the patch axis": (
        "nce_patch_nce_loss",
        "q = F.normalize(feat_q, dim=-1)",
        "q = F.normalize(feat_q, dim=1)",
        ["nce_loss_test_loop", "nce_loss_test_scale"],
    ),
    "loss: keys not detached": (
        "nce_patch_nce_loss",
        "F.normalize(feat_k.detach(), dim=-1)",
        "F.normalize(feat_k, dim=-1)",
        ["nce_loss_test_grad"],
    ),
    "loss: times tau": (
        "nce_patch_nce_loss",
        "/ tau  #",
        "* tau  #",
        ["nce_loss_visible", "nce_loss_test_loop"],
    ),
    "loss: negatives from the wrong axis": (
        "nce_patch_nce_loss",
        "    logits = q @ k",
        "    q, k, b, n = q.transpose(0, 1), k.transpose(0, 1), n, b\n    logits = q @ k",
        ["nce_loss_test_loop", "nce_loss_test_edges"],
    ),
    "external: same as internal": (
        "nce_patch_nce_loss_external",
        "return patch_nce_loss(feat_q.reshape(1, b * n, c), feat_k.reshape(1, b * n, c), tau=tau)",
        "return patch_nce_loss(feat_q, feat_k, tau=tau)",
        ["nce_external_visible", "nce_external_test"],
    ),
    "external: tau ignored": (
        "nce_patch_nce_loss_external",
        "feat_k.reshape(1, b * n, c), tau=tau)",
        "feat_k.reshape(1, b * n, c))",
        ["nce_external_visible", "nce_external_test"],
    ),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_hidden_tests_catch_mistakes(ns, cells, name):
    answer_id, old, new, failing = MUTANTS[name]
    buggy = mutate(ns, cells, answer_id, old, new)
    for gid in failing:
        with pytest.raises(AssertionError):
            run_cell(buggy, cells[gid], gid)
