"""The `cycle` assignment: its solution against independent computations, and its hidden tests
against realistic student mistakes (each must be caught; the solution must pass them all)."""

from __future__ import annotations

import nbformat
import pytest
import torch
from source_notebook import mutate as mutate_source
from source_notebook import run_cell
from torch import nn

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions/cycle/cycle.ipynb"


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(NB)


@pytest.fixture(scope="module")
def cells() -> dict[str, str]:
    nb = nbformat.read(NB, as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata
    }


def grade_ids(cells: dict[str, str], prefix: str) -> list[str]:
    nb = nbformat.read(NB, as_version=4)
    return [
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
        and c.metadata["nbgrader"]["grade_id"].startswith(prefix)
    ]


def mutate(ns: dict, cells: dict[str, str], answer_id: str, old: str, new: str) -> dict:
    """A namespace where the answer cell ``answer_id`` is redefined with ``old`` → ``new``."""
    return mutate_source(ns, cells[answer_id], answer_id, old, new)


# ------------------------------------------------------------------ solution vs references


def test_gan_loss_matches_torch_losses(ns):
    p = torch.randn(2, 1, 5, 7, generator=torch.Generator().manual_seed(0)) * 4
    for real in (True, False):
        t = torch.full_like(p, float(real))
        assert torch.allclose(ns["gan_loss"](p, real), nn.MSELoss()(p, t))
        got = ns["gan_loss"](p, real, mode="vanilla")
        assert torch.allclose(got, nn.BCEWithLogitsLoss()(p, t))
    with pytest.raises(ValueError, match="mode"):
        ns["gan_loss"](p, True, mode="hinge")
    with pytest.raises(TypeError, match="target_is_real"):
        ns["gan_loss"](p, 1)


def test_l1_losses_and_shape_errors(ns):
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 5, 7, generator=gen), torch.rand(2, 3, 5, 7, generator=gen)
    for fn in (ns["cycle_consistency_loss"], ns["identity_loss"]):
        assert torch.allclose(fn(a, b), nn.L1Loss()(b, a))
        with pytest.raises(ValueError, match=r"\(2, 3, 5, 7\)"):
            fn(a, b[..., :5])


def test_generator_objective_on_course_nets(ns):
    """With the real tiny networks: the total is the weighted sum of the parts, the generators
    get gradients, the discriminators none, and their flags are restored."""
    nets = ns["ResnetGenerator"]
    torch.manual_seed(0)
    G, F = (nets(ngf=4, n_blocks=1, n_down=1) for _ in range(2))
    D_X, D_Y = (ns["PatchDiscriminator"](ndf=4, n_layers=2) for _ in range(2))
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    total, parts = ns["generator_objective"](G, F, D_X, D_Y, x, y, lambda_cyc=3.0, lambda_id=0.2)
    weighted = (
        parts["gan_G"]
        + parts["gan_F"]
        + 3.0 * (parts["cycle_x"] + parts["cycle_y"])
        + 0.6 * (parts["identity_x"] + parts["identity_y"])
    )
    assert torch.allclose(total, weighted)
    total.backward()
    assert all(p.grad is not None for p in [*G.parameters(), *F.parameters()])
    assert all(p.grad is None for p in [*D_X.parameters(), *D_Y.parameters()])
    assert all(p.requires_grad for p in [*D_X.parameters(), *D_Y.parameters()])


def test_train_step_alternates_and_moves_all_nets(ns):
    photo = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    sea = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    nets, history = ns["train_cyclegan"](
        photo,
        sea,
        steps=2,
        size=16,
        batch=1,
        lambda_cyc=10.0,
        lambda_id=0.5,
        device="cpu",
        seed=0,
    )
    assert len(history) == 2 and {"G total", "D", "cycle_x", "identity_y"} <= set(history[0])
    fresh = ns["train_cyclegan"](
        photo,
        sea,
        steps=0,
        size=16,
        batch=1,
        lambda_cyc=10.0,
        lambda_id=0.5,
        device="cpu",
        seed=0,
    )[0]
    for trained, start in zip(nets, fresh):
        moved = any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters()))
        assert moved, "every network must be updated by a training step"


# ------------------------------------------------------------------ hidden tests


def test_solution_passes_every_grade_cell(ns, cells):
    ids = grade_ids(cells, "cycle_")
    assert len(ids) >= 9
    for gid in ids:
        run_cell(ns, cells[gid], gid)


def test_hidden_tests_carry_most_points():
    nb = nbformat.read(NB, as_version=4)
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    total = sum(c.metadata["nbgrader"]["points"] for c in cells)
    hidden_only = sum(
        c.metadata["nbgrader"]["points"] for c in cells if "check_implemented" not in c.source
    )
    assert hidden_only > total / 2


MUTANTS = {
    # gan_loss
    "gan: sum instead of mean": (
        "cycle_gan_loss",
        "return ((prediction - target) ** 2).mean()",
        "return ((prediction - target) ** 2).sum()",
        ["cycle_gan_loss_test_values"],
    ),
    "gan: naive log(sigmoid)": (
        "cycle_gan_loss",
        "return nnf.binary_cross_entropy_with_logits(prediction, target)",
        "s = torch.sigmoid(prediction)\n"
        "    return -(target * torch.log(s) + (1 - target) * torch.log(1 - s)).mean()",
        ["cycle_gan_loss_test_stable"],
    ),
    "gan: lsgan with abs": (
        "cycle_gan_loss",
        "((prediction - target) ** 2)",
        "(prediction - target).abs()",
        ["cycle_gan_loss_test_values", "cycle_gan_loss_test_stable"],
    ),
    # cycle / identity
    "l1: squared error": (
        "cycle_l1_losses",
        "return (mapped - real).abs().mean()",
        "return ((mapped - real) ** 2).mean()",
        ["cycle_l1_test"],
    ),
    "l1: sum": (
        "cycle_l1_losses",
        "return (reconstructed - real).abs().mean()",
        "return (reconstructed - real).abs().sum()",
        ["cycle_l1_test"],
    ),
    # generator objective
    "gen: identity weight not relative": (
        "cycle_generator_objective",
        "lambda_id * lambda_cyc * (parts",
        "lambda_id * (parts",
        ["cycle_generator_visible", "cycle_generator_test_values"],
    ),
    "gen: discriminators not frozen": (
        "cycle_generator_objective",
        "p.requires_grad_(False)",
        "pass",
        ["cycle_generator_test_grads"],
    ),
    "gen: flags not restored": (
        "cycle_generator_objective",
        "p.requires_grad_(flag)",
        "pass",
        ["cycle_generator_test_grads"],
    ),
    "gen: discriminators swapped": (
        "cycle_generator_objective",
        '"gan_G": gan_loss(D_Y(fake_y)',
        '"gan_G": gan_loss(D_X(fake_y)',
        ["cycle_generator_test_values"],
    ),
    "gen: identity always on": (
        "cycle_generator_objective",
        "if lambda_id * lambda_cyc > 0:",
        "if True:",
        [],  # allowed: identity parts may be computed; weighted by zero they change nothing
    ),
    # discriminator objective
    "disc: fake not detached": (
        "cycle_discriminator_objective",
        "D(fake.detach())",
        "D(fake)",
        ["cycle_discriminator_test_grads"],
    ),
    "disc: not halved": (
        "cycle_discriminator_objective",
        "return 0.5 * (loss_real + loss_fake)",
        "return loss_real + loss_fake",
        ["cycle_discriminator_test_values"],
    ),
    "disc: labels swapped": (
        "cycle_discriminator_objective",
        "gan_loss(D(real), True",
        "gan_loss(D(real), False",
        ["cycle_discriminator_test_values"],
    ),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_hidden_tests_catch_mistakes(ns, cells, name):
    answer_id, old, new, failing = MUTANTS[name]
    buggy = mutate(ns, cells, answer_id, old, new)
    for gid in failing:
        assert "BEGIN HIDDEN TESTS" in cells[gid] or gid.endswith("visible")
        with pytest.raises(AssertionError):
            run_cell(buggy, cells[gid], gid)
    if not failing:  # a harmless variant passes everything
        for gid in grade_ids(cells, "cycle_generator"):
            run_cell(buggy, cells[gid], gid)
