"""The `cycle` assignment: its solution against independent computations, and its grade cells
(which report results that the judge compares with the solution's) against a table of realistic
student mistakes: every one must lose points, and only in the tests of the function where it is
made."""

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
from torch import nn

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions/cycle/cycle.ipynb"


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(NB)


GRADE_CELLS = grade_ids(NB)


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


def test_image_pool_against_a_list_model(ns):
    """The pool against CycleGAN's algorithm written again with plain lists (card §4)."""
    gen_a, gen_b = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    pool = ns["ImagePool"](3, generator=gen_a)
    stored, expected, got = [], [], []
    for step in range(20):
        images = (
            torch.full((2, 1, 2, 2), float(step)) + torch.tensor([0.0, 0.5])[:, None, None, None]
        )
        got += pool.query(images)[:, 0, 0, 0].tolist()
        for v in images[:, 0, 0, 0].tolist():
            if len(stored) < 3:
                stored.append(v)
                expected.append(v)
            elif float(torch.rand(1, generator=gen_b)) < 0.5:
                j = int(torch.randint(0, 3, (1,), generator=gen_b))
                expected.append(stored[j])
                stored[j] = v
            else:
                expected.append(v)
    assert got == expected
    fed = [step + half for step in range(20) for half in (0.0, 0.5)]
    assert got != fed and sorted(set(got)) != sorted(fed)  # some fakes were swapped


def test_train_step_is_generators_then_discriminators(ns):
    """One step by hand with the solution's objectives: the same weights as train_step's."""
    gen = torch.Generator().manual_seed(9)
    x, y = torch.rand(2, 3, 5, 5, generator=gen), torch.rand(2, 3, 5, 5, generator=gen)

    def setup():
        torch.manual_seed(0)
        nets = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 1, 3), nn.Conv2d(3, 1, 3)
        opt_G = torch.optim.SGD([*nets[0].parameters(), *nets[1].parameters()], lr=0.1)
        opt_D = torch.optim.SGD([*nets[2].parameters(), *nets[3].parameters()], lr=0.1)
        return nets, opt_G, opt_D

    nets, opt_G, opt_D = setup()
    losses = ns["train_step"](nets, opt_G, opt_D, x, y)
    (G, F, D_X, D_Y), opt_G2, opt_D2 = setup()
    with torch.no_grad():
        fy, fx = G(x), F(y)
    total, _ = ns["generator_objective"](G, F, D_X, D_Y, x, y)
    total.backward()
    opt_G2.step()
    loss_D = ns["discriminator_objective"](D_Y, y, fy) + ns["discriminator_objective"](D_X, x, fx)
    opt_D2.zero_grad()
    loss_D.backward()
    opt_D2.step()
    for a, b in zip(nets, (G, F, D_X, D_Y)):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q)
    assert losses["G total"] == pytest.approx(total.item()) and losses["D"] == pytest.approx(
        loss_D.item()
    )


# ------------------------------------------------------------------ grade cells

OWNERS = [
    ("cycle_gan_loss_", "cycle_gan_loss"),
    ("cycle_l1_", "cycle_l1_losses"),
    ("cycle_generator_", "cycle_generator_objective"),
    ("cycle_discriminator_", "cycle_discriminator_objective"),
    ("cycle_pool_", "cycle_image_pool"),
    ("cycle_train_step_", "cycle_train_step"),
]


def test_every_grade_cell_reports_the_solution_scores_full_marks_a_third_visible():
    check_grading(NB, total=26, min_cells=14)


def test_test_cells_hold_no_reference_code():
    """Stand-ins are plainly different functions or the solution's recorded answers (fresh, and
    not for the inputs of the function's own tests); none is a reference implementation."""
    check_stand_ins(NB)


def test_no_algorithms_card_reference():
    assert "algorithms card" not in (ROOT / "solutions/cycle/cycle.ipynb").read_text()


G_STEP = (
    "    opt_G.zero_grad()\n    total, parts = generator_objective(\n"
    "        G, F, D_X, D_Y, real_x, real_y, lambda_cyc=lambda_cyc, lambda_id=lambda_id, "
    "mode=mode\n"
    "    )\n    total.backward()\n    opt_G.step()\n"
)
FAKES = (
    "    with torch.no_grad():  # this iteration's fakes, for the discriminators\n"
    "        fake_y, fake_x = G(real_x), F(real_y)\n"
)
LOSS_D = (
    "loss_D = discriminator_objective(D_Y, real_y, fake_y, mode=mode) + discriminator_objective(\n"
    "        D_X, real_x, fake_x, mode=mode\n    )"
)

MISTAKES = {
    "gan: sum instead of mean": {
        "cycle_gan_loss": [
            (
                "return ((prediction - target) ** 2).mean()",
                "return ((prediction - target) ** 2).sum()",
            )
        ]
    },
    "gan: naive log(sigmoid)": {
        "cycle_gan_loss": [
            (
                "return nnf.binary_cross_entropy_with_logits(prediction, target)",
                "s = torch.sigmoid(prediction)\n"
                "    return -(target * torch.log(s) + (1 - target) * torch.log(1 - s)).mean()",
            )
        ]
    },
    "gan: lsgan with abs": {
        "cycle_gan_loss": [("((prediction - target) ** 2)", "(prediction - target).abs()")]
    },
    "gan: targets swapped": {
        "cycle_gan_loss": [("1.0 if target_is_real else 0.0", "0.0 if target_is_real else 1.0")]
    },
    "gan: vanilla on probabilities (sigmoid twice)": {
        "cycle_gan_loss": [
            (
                "binary_cross_entropy_with_logits(prediction, target)",
                "binary_cross_entropy_with_logits(torch.sigmoid(prediction), target)",
            )
        ]
    },
    "gan: mode not checked": {
        "cycle_gan_loss": [('if mode not in ("lsgan", "vanilla"):', "if False:")]
    },
    "gan: target not checked": {
        "cycle_gan_loss": [("if not isinstance(target_is_real, bool):", "if False:")]
    },
    "gan: modes swapped": {"cycle_gan_loss": [('if mode == "lsgan":', 'if mode == "vanilla":')]},
    "l1: squared error": {
        "cycle_l1_losses": [
            (
                "return (reconstructed - real).abs().mean()",
                "return ((reconstructed - real) ** 2).mean()",
            )
        ]
    },
    "l1: summed": {
        "cycle_l1_losses": [
            (
                "return (reconstructed - real).abs().mean()",
                "return (reconstructed - real).abs().sum()",
            )
        ]
    },
    "l1: identity without the shape check": {
        "cycle_l1_losses": [("if real.shape != mapped.shape:", "if False:")]
    },
    "l1: identity detached": {
        "cycle_l1_losses": [
            ("return (mapped - real).abs().mean()", "return (mapped - real).abs().mean().detach()")
        ]
    },
    "generator: identity weight not relative to lambda_cyc": {
        "cycle_generator_objective": [
            ("+ lambda_id * lambda_cyc * identity", "+ lambda_id * identity")
        ]
    },
    "generator: gan_F judged by D_Y": {
        "cycle_generator_objective": [
            ('"gan_F": gan_loss(D_X(fake_x)', '"gan_F": gan_loss(D_Y(fake_x)')
        ]
    },
    "generator: fake target for the generators": {
        "cycle_generator_objective": [
            ('"gan_G": gan_loss(D_Y(fake_y), True', '"gan_G": gan_loss(D_Y(fake_y), False')
        ]
    },
    "generator: cycle through the wrong generator": {
        "cycle_generator_objective": [
            (
                "cycle_consistency_loss(real_x, F(fake_y))",
                "cycle_consistency_loss(real_x, G(fake_x))",
            )
        ]
    },
    "generator: identity of the wrong generator": {
        "cycle_generator_objective": [
            ("identity_loss(real_y, G(real_y))", "identity_loss(real_y, F(real_y))")
        ]
    },
    "generator: discriminators not frozen": {
        "cycle_generator_objective": [("        p.requires_grad_(False)\n", "        pass\n")]
    },
    "generator: flags not restored": {
        "cycle_generator_objective": [
            ("            p.requires_grad_(flag)\n", "            pass\n")
        ]
    },
    "generator: mode ignored": {
        "cycle_generator_objective": [
            ("gan_loss(D_Y(fake_y), True, mode=mode)", "gan_loss(D_Y(fake_y), True)"),
            ("gan_loss(D_X(fake_x), True, mode=mode)", "gan_loss(D_X(fake_x), True)"),
        ]
    },
    "generator: negative weights accepted": {
        "cycle_generator_objective": [("if lambda_cyc < 0 or lambda_id < 0:", "if False:")]
    },
    "generator: fakes detached": {
        "cycle_generator_objective": [
            (
                "fake_y, fake_x = G(real_x), F(real_y)",
                "fake_y, fake_x = G(real_x).detach(), F(real_y).detach()",
            )
        ]
    },
    "discriminator: not halved": {
        "cycle_discriminator_objective": [
            ("return 0.5 * (loss_real + loss_fake)", "return loss_real + loss_fake")
        ]
    },
    "discriminator: fake not detached": {
        "cycle_discriminator_objective": [("D(fake.detach())", "D(fake)")]
    },
    "discriminator: targets swapped": {
        "cycle_discriminator_objective": [
            ("gan_loss(D(real), True, mode=mode)", "gan_loss(D(real), False, mode=mode)"),
            (
                "gan_loss(D(fake.detach()), False, mode=mode)",
                "gan_loss(D(fake.detach()), True, mode=mode)",
            ),
        ]
    },
    "discriminator: mode ignored": {
        "cycle_discriminator_objective": [
            ("gan_loss(D(real), True, mode=mode)", "gan_loss(D(real), True)")
        ]
    },
    "pool: never fills (off by one)": {
        "cycle_image_pool": [
            ("if len(self.images) < self.pool_size:", "if len(self.images) < self.pool_size - 1:")
        ]
    },
    "pool: swap probability inverted": {
        "cycle_image_pool": [
            ("generator=self.generator)) < 0.5:", "generator=self.generator)) > 0.5:")
        ]
    },
    "pool: returns the old image without storing the new one": {
        "cycle_image_pool": [("                self.images[j] = image.clone()\n", "")]
    },
    "pool: returns the new image, stores it anyway": {
        "cycle_image_pool": [("out.append(self.images[j])", "out.append(image)")]
    },
    "pool: python's random instead of the generator": {
        "cycle_image_pool": [
            ("float(torch.rand(1, generator=self.generator))", "__import__('random').random()")
        ]
    },
    "pool: stores references, not copies": {
        "cycle_image_pool": [
            ("self.images.append(image.clone())", "self.images.append(images[len(out)])")
        ]
    },
    "pool: size 0 still stores": {
        "cycle_image_pool": [
            ("        if self.pool_size == 0:\n            return images.detach()\n", "")
        ]
    },
    "pool: index drawn over the stored count + 1": {
        "cycle_image_pool": [
            ("torch.randint(0, self.pool_size, (1,)", "torch.randint(0, self.pool_size + 1, (1,)")
        ]
    },
    "pool: output not detached": {
        "cycle_image_pool": [("for image in images.detach():", "for image in images:")]
    },
    "step: discriminators first": {
        "cycle_train_step": [
            (
                G_STEP,
                "",
            ),
            (
                "    opt_D.step()\n",
                "    opt_D.step()\n" + G_STEP,
            ),
        ]
    },
    "step: fakes from the updated generators": {
        "cycle_train_step": [
            (
                FAKES,
                "",
            ),
            (
                "    if pools is not None:",
                "    with torch.no_grad():\n        fake_y, fake_x = G(real_x), F(real_y)\n"
                "    if pools is not None:",
            ),
        ]
    },
    "step: pools ignored": {"cycle_train_step": [("    if pools is not None:", "    if False:")]},
    "step: pools swapped": {
        "cycle_train_step": [
            (
                "pools[0].query(fake_y), pools[1].query(fake_x)",
                "pools[1].query(fake_y), pools[0].query(fake_x)",
            )
        ]
    },
    "step: D gradients never zeroed": {"cycle_train_step": [("    opt_D.zero_grad()\n", "")]},
    "step: only D_Y is trained": {
        "cycle_train_step": [
            (
                LOSS_D,
                "loss_D = discriminator_objective(D_Y, real_y, fake_y, mode=mode)",
            )
        ]
    },
    "step: D judges the wrong domain": {
        "cycle_train_step": [
            (
                "discriminator_objective(D_Y, real_y, fake_y, mode=mode)",
                "discriminator_objective(D_Y, real_x, fake_x, mode=mode)",
            )
        ]
    },
    "step: lambdas not passed on": {
        "cycle_train_step": [("lambda_cyc=lambda_cyc, lambda_id=lambda_id, mode=mode", "mode=mode")]
    },
    "step: mode not passed to the discriminators": {
        "cycle_train_step": [
            (
                "discriminator_objective(D_Y, real_y, fake_y, mode=mode)",
                "discriminator_objective(D_Y, real_y, fake_y)",
            )
        ]
    },
    "step: returns tensors": {
        "cycle_train_step": [("return {k: v.item() for k, v", "return {k: v for k, v")]
    },
}


VISIBLE_MESSAGES = {  # mistakes that a visible cell names (issue 30.2): mistake -> its message
    "gan: naive log(sigmoid)": r"stable function",
    "generator: discriminators not frozen": r"D was not frozen",
    "generator: flags not restored": r"flags were not put back",
    "discriminator: fake not detached": r"fake was not detached",
    "step: pools swapped": r"pool_Y gets G\(real_x\)|pool_X gets F\(real_y\)",
    "step: discriminators first": r"generators' step first",
    "step: returns tensors": r"Python floats",
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
