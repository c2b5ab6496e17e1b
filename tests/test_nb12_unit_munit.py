"""UNIT and MUNIT as written in notebooks/12_unit_munit.ipynb, checked on tiny tensors: MUNIT's
AdaIN (biased variance) against explicit loops, the hue rotation against its properties, the
losses against their formulas, the networks' shapes and what the style code can and cannot
change. The notebook itself runs in tests/test_kit_notebooks.py."""

from __future__ import annotations

import math

import pytest
import torch

from course_kit.nbrun import ROOT, tagged_namespace
from course_lib import images


@pytest.fixture(scope="module")
def nb12() -> dict:
    return tagged_namespace(ROOT / "notebooks/12_unit_munit.ipynb")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_adain_matches_explicit_loop_with_biased_variance(nb12):
    x = _rand(2, 3, 5, 7, seed=1).double() * 4 - 1
    gamma, beta = _rand(2, 3, seed=2).double() + 0.5, _rand(2, 3, seed=3).double() - 0.5
    out = nb12["adain"](x, gamma, beta, eps=1e-5)
    expected = torch.empty_like(x)
    for i in range(2):
        for c in range(3):
            values = [float(v) for v in x[i, c].flatten()]
            m = sum(values) / len(values)
            var = sum((v - m) ** 2 for v in values) / len(values)  # biased, as in MUNIT
            expected[i, c] = gamma[i, c] * (x[i, c] - m) / math.sqrt(var + 1e-5) + beta[i, c]
    torch.testing.assert_close(out, expected)


def test_adain_output_ignores_the_input_statistics(nb12):
    x = _rand(2, 4, 6, 5, seed=4)
    gamma, beta = torch.ones(2, 4), torch.zeros(2, 4)
    a = nb12["adain"](x, gamma, beta)
    b = nb12["adain"](x * 3 + 2, gamma, beta)  # per-channel affine change of the input
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_rotate_hue_keeps_luminance_and_is_invertible(nb12):
    x = _rand(3, 3, 5, 7, seed=5) * 0.2 + 0.4  # chroma small enough to stay in gamut
    angles = torch.tensor([0.0, 1.0, -2.5])
    out = nb12["rotate_hue"](x, angles)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)  # angle 0: unchanged
    torch.testing.assert_close(
        images.rgb_to_yiq(out)[:, 0], images.rgb_to_yiq(x)[:, 0], atol=1e-5, rtol=0
    )
    grey = torch.full((1, 3, 4, 4), 0.5)  # no chroma: nothing to rotate
    torch.testing.assert_close(
        nb12["rotate_hue"](grey, torch.tensor([2.0])), grey, atol=1e-5, rtol=0
    )
    back = nb12["rotate_hue"](nb12["rotate_hue"](x[1:2], angles[1:2]), -angles[1:2])
    torch.testing.assert_close(back, x[1:2], atol=1e-5, rtol=0)


def test_losses_match_their_formulas(nb12):
    logits = torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1, 1)
    assert torch.isclose(nb12["gan_loss"](logits, True), ((logits - 1) ** 2).mean())
    assert torch.isclose(nb12["gan_loss"](logits, False), (logits**2).mean())

    def D(x):
        return x.mean(dim=(1, 2, 3), keepdim=True)

    real, fake = torch.full((2, 3, 4, 4), 0.25), torch.full((2, 3, 4, 4), 0.75)
    # not halved: (0.75)^2 + (0.25 - 1)^2
    assert nb12["discriminator_loss"](D, real, fake).item() == pytest.approx(0.5625 * 2)
    x = _rand(2, 3, 5, 7, seed=6)
    assert nb12["recon_loss"](x + 0.5, x).item() == pytest.approx(0.5)


def test_unit_shapes_and_shared_layers(nb12):
    model = nb12["UNIT"](ngf=4)
    x = _rand(2, 3, 16, 20, seed=7)
    z = model.encode(x, "A")
    assert z.shape == (2, 16, 4, 5)
    out = model.translate(x, "A", "B")
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # the shared blocks are one module for both domains: a gradient from either domain reaches it
    model.zero_grad()
    model.decode(model.encode(x, "B"), "B").sum().backward()
    assert model.shared_enc.body[1].weight.grad.abs().sum() > 0
    assert model.enc["A"].model[1].weight.grad is None


def test_unit_objective_parts(nb12):
    torch.manual_seed(0)
    model = nb12["UNIT"](ngf=4)
    D = nb12["make_discriminators"](ndf=4, device="cpu", seed=0)
    a, b = _rand(2, 3, 16, 16, seed=8), _rand(2, 3, 16, 16, seed=9)
    total, parts, fakes = nb12["unit_generator_objective"](
        model, D, a, b, generator=torch.Generator().manual_seed(0)
    )
    for d in "AB":
        assert {f"recon_{d}", f"kl_{d}", f"cycle_{d}", f"gan_{d}"} <= set(parts)
        assert fakes[d].shape == a.shape
    assert torch.isclose(total, sum(parts.values()))


def test_munit_style_changes_colour_only_through_the_decoder(nb12):
    torch.manual_seed(0)
    model = nb12["MUNIT"](ngf=4, style_dim=5)
    x = _rand(2, 3, 16, 24, seed=10)
    assert model.content["A"](x).shape == (2, 16, 4, 6)
    assert model.style["B"](x).shape == (2, 5)
    s1, s2 = torch.randn(2, 5), torch.randn(2, 5)
    y1, y2 = model.translate(x, "A", "B", s1), model.translate(x, "A", "B", s2)
    assert y1.shape == x.shape and not torch.allclose(y1, y2)  # the style code matters
    # the content code is instance-normalised: a global brightness change of the input is lost
    torch.testing.assert_close(
        model.content["A"](x), model.content["A"](x * 0.5 + 0.2), atol=1e-4, rtol=1e-4
    )


def test_translate_with_styles_layout(nb12):
    torch.manual_seed(0)
    model = nb12["MUNIT"](ngf=4, style_dim=3)
    x, styles = _rand(2, 3, 16, 16, seed=11), torch.randn(4, 3)
    grid = nb12["translate_with_styles"](model, x, styles, source="A", target="B", device="cpu")
    assert grid.shape == (2, 4, 3, 16, 16)
    assert model.training  # left in training mode, as it found it
    model.eval()
    with torch.no_grad():
        single = model.translate(x[1:2], "A", "B", styles[2:3])
    torch.testing.assert_close(grid[1, 2], single[0])


def test_munit_training_step_runs_and_reduces_reconstruction(nb12):
    torch.manual_seed(0)
    model = nb12["MUNIT"](ngf=4, style_dim=3)
    A, B = _rand(4, 3, 16, 16, seed=12), _rand(4, 3, 16, 16, seed=13)
    D = nb12["make_discriminators"](ndf=4, device="cpu", seed=0)
    history = nb12["train"](
        model,
        D,
        nb12["munit_generator_objective"],
        A,
        B,
        config=nb12["TrainConfig"](steps=12, batch=2, lr=1e-3),
        generator=torch.Generator().manual_seed(0),
        device="cpu",
    )
    assert len(history["G"]) == 12 and len(history["D"]) == 12
    recon = history["recon_x_A"]
    assert sum(recon[-3:]) / 3 < sum(recon[:3]) / 3


# --- routing: each discriminator sees only images of its own domain -----------------------------
# Stub networks whose outputs carry a tag: a decoder into domain d paints the whole image TAG[d],
# the real images of A and B have their own constant values; a recording discriminator notes the
# set of values it was shown. Before the fix, UNIT stored G_B(z_a) (a domain-B image) under the
# key "A", and D_A was trained on it.
TAG = {"A": 0.125, "B": 0.875}
REAL = {"A": 0.25, "B": 0.625}


class _TaggingUNIT(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def encode(self, x, domain):
        return x + self.w

    def decode(self, z, domain):
        return torch.full_like(z, TAG[domain]) + 0 * z + 0 * self.w


class _TaggingMUNIT(torch.nn.Module):
    style_dim = 2

    def __init__(self) -> None:
        super().__init__()
        w = self.w = torch.nn.Parameter(torch.zeros(()))
        self.content = {d: (lambda x: x + w) for d in "AB"}
        self.style = {d: (lambda x: x.mean((2, 3))[:, :2] + w) for d in "AB"}
        self.dec = {d: (lambda c, s, d=d: torch.full_like(c, TAG[d]) + 0 * c + 0 * w) for d in "AB"}


class _RecordingD(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.seen: set[float] = set()

    def forward(self, x):
        self.seen |= {round(float(v), 4) for v in x.detach().unique()}
        return x.mean((1, 2, 3), keepdim=True) * self.w


@pytest.mark.parametrize(
    "model_cls, objective",
    [(_TaggingUNIT, "unit_generator_objective"), (_TaggingMUNIT, "munit_generator_objective")],
)
def test_each_discriminator_sees_only_its_own_domain(nb12, model_cls, objective):
    D = torch.nn.ModuleDict({d: _RecordingD() for d in "AB"})
    A, B = torch.full((3, 3, 8, 8), REAL["A"]), torch.full((3, 3, 8, 8), REAL["B"])
    history = nb12["train"](
        model_cls(),
        D,
        nb12[objective],
        A,
        B,
        config=nb12["TrainConfig"](steps=2, batch=2),
        generator=torch.Generator().manual_seed(0),
        device="cpu",
    )
    assert len(history["D"]) == 2
    for d in "AB":  # the real images of d and images decoded into d, nothing else
        assert D[d].seen == {REAL[d], TAG[d]}, (d, D[d].seen)
