"""course_lib.optim, display and widgets: they optimise, draw headless and stay quiet."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from course_lib import display, optim, widgets

matplotlib.use("Agg")


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_optimize_image_reaches_a_known_minimum(method):
    steps = 30 if method == "lbfgs" else 300
    target = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    result = optim.optimize_image(
        lambda x: ((x - target) ** 2).sum(),
        torch.zeros(1, 3, 5, 7),
        steps=steps,
        method=method,
        lr=None if method == "lbfgs" else 0.05,
        progress=False,
    )
    assert torch.allclose(result.image, target, atol=2e-2)
    assert len(result.history) == steps and result.history[-1] < result.history[0]


def test_lbfgs_keeps_going_when_its_line_search_fails():
    """On a non-smooth loss (an absolute value) torch's L-BFGS line search returns a zero step
    after a few iterations and, left alone, stays there; optimize_image restarts it."""
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    start = torch.full((1, 3, 16, 16), 0.5)

    def loss(x):
        return (x - target).abs().sum() + 0.1 * ((x - target) ** 2).sum()

    # the failure itself, with torch's optimiser as optimize_image configures it
    image = start.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [image], lr=1.0, max_iter=1, history_size=50, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        value = loss(image)
        value.backward()
        return value

    stalled = [opt.step(closure).item() for _ in range(30)]
    assert stalled[-1] == stalled[-10] and stalled[-1] > 0.5 * stalled[0]
    result = optim.optimize_image(loss, start, steps=30, progress=False)
    assert result.history[-1] < 0.01 * result.history[0]
    assert (result.image - target).abs().max() < 0.05


def test_optimize_image_clamps_previews_and_checks():
    calls = []
    res = optim.optimize_image(
        lambda x: -x.sum(),
        torch.full((1, 1, 4, 4), 0.5),
        steps=4,
        method="adam",
        lr=0.5,
        preview_every=2,
        preview=lambda img, hist: calls.append(len(hist)),
        progress=False,
    )
    assert res.image.max() <= 1 and calls == [2, 4]
    with pytest.raises(ValueError, match="scalar tensor"):
        optim.optimize_image(lambda x: x, torch.rand(1, 1, 4, 4), steps=1, progress=False)
    with pytest.raises(ValueError, match="`method`"):
        optim.optimize_image(lambda x: x.sum(), torch.rand(1, 1, 4, 4), method="sgd")
    with pytest.raises(ValueError, match="NaN|nan"):
        optim.optimize_image(
            lambda x: x.sum() * float("nan"), torch.rand(1, 1, 4, 4), steps=2, progress=False
        )


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
@pytest.mark.parametrize(
    "loss_fn, error, words",
    [
        (lambda x: x.mean(dim=(2, 3)), ValueError, ["`loss_fn`", "scalar", "tensor (1, 3)"]),
        (lambda x: 0.5, TypeError, ["`loss_fn`", "scalar torch tensor", "float 0.5"]),
        (lambda x: x.detach().sum(), ValueError, ["`loss_fn`", "gradients", "does not require"]),
    ],
)
def test_bad_losses_fail_at_once_without_a_progress_bar(loss_fn, error, words, method, capsys):
    with pytest.raises(error) as info:
        optim.optimize_image(loss_fn, torch.rand(1, 3, 4, 4), steps=5, method=method)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    out = capsys.readouterr()
    assert "%" not in out.out + out.err, out  # no 0 % bar was drawn before the error


def test_the_progress_bar_counts_every_step(capsys):
    optim.optimize_image(lambda x: (x**2).sum(), torch.rand(1, 1, 4, 4), steps=3, method="adam")
    out = capsys.readouterr().out
    assert "3/3" in out and "100%" in out, out


def test_optimizer_is_silent_on_stderr_under_nbgrader(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    optim.optimize_image(lambda x: (x**2).sum(), torch.rand(1, 1, 4, 4), steps=3, preview_every=1)
    assert capsys.readouterr().err == ""


def test_show_images_headless_saves_and_flags_clamping(tmp_path):
    imgs = torch.rand(3, 3, 8, 8)
    imgs[1] *= 2  # out of range: shown clamped, title says so
    fig = display.show_images(imgs, ["a", "b", "c"], save=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["a", "b (clamped)", "c"]
    with pytest.raises(ValueError, match="`titles` has 2 entries for 3 images"):
        display.show_images(imgs, ["a", "b"])


def test_compare_plot_losses_and_preview(tmp_path):
    fig = display.compare(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    assert len([a for a in fig.axes if a.images]) == 2
    fig = display.plot_losses({"style": [3, 2, 1], "content": [1, 1, 1]})
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_yscale() == "log"
    preview = display.LivePreview(save=tmp_path / "p.png")
    preview(torch.rand(1, 3, 8, 8), [1.0, 0.5])
    assert (tmp_path / "p.png").is_file()


def test_widgets_build_controls_and_static_sweep():
    import ipywidgets as w

    assert isinstance(widgets._control("n", (1, 9, 2)), w.IntSlider)
    assert isinstance(widgets._control("eps", (0.0, 1.0)), w.FloatSlider)
    assert isinstance(widgets._control("kind", ["a", "b"]), w.Dropdown)
    with pytest.raises(TypeError, match="control `x`"):
        widgets._control("x", object())
    seen = []

    def draw(n=1, kind="a"):
        seen.append((n, kind))
        return display.show_images(torch.rand(1, 1, 4, 4), show=False)

    ui = widgets.interact_figure(draw, n=(1, 9, 2, 3), kind=["a", "b"])
    assert seen == [(3, "a")]
    assert ui.box.children[0].children[1] is ui.controls["kind"]
    ui.controls["kind"].value = "b"  # moving a control re-draws
    assert seen[-1] == (3, "b")
    fig = widgets.sweep_grid(lambda v: torch.full((1, 1, 4, 4), v), [0.0, 0.5], name="v")
    assert [a.get_title() for a in fig.axes if a.get_title()] == ["v = 0.0", "v = 0.5"]


def test_show_images_of_a_pil_image_names_from_pil():
    from PIL import Image

    with pytest.raises(TypeError, match=r"course_lib\.images\.from_pil\(picture\)"):
        display.show_images(Image.new("RGB", (4, 4)), show=False)
    with pytest.raises(TypeError, match=r"must be tensors, arrays or a list of them; got str"):
        display.show_images("cat.png", show=False)


@pytest.mark.parametrize(
    "shape, titles",
    [((3, 96, 96), ["bricks\n(regular)"] * 11), ((3, 48, 64), None), ((3, 64, 48), ["a"] * 11)],
)
def test_grid_titles_stay_clear_of_the_row_above(shape, titles):
    """Two-line titles in a 6-column grid used to reach into the images of the row above."""
    fig = display.show_images([torch.rand(shape) for _ in range(11)], titles, ncols=6, show=False)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    for i in range(6, 11):
        below, above = axes[i].title.get_window_extent(renderer), axes[i - 6]
        image_above = above.get_window_extent(renderer)  # the image (aspect applied)
        if titles:
            assert below.y1 <= image_above.y0, (i, below, image_above)
        assert axes[i].get_window_extent(renderer).y1 <= image_above.y0
    # every image is as wide as its column allows: no row is squeezed to make room
    widths = {round(ax.get_window_extent(renderer).width) for ax in axes[:11]}
    assert max(widths) - min(widths) <= 1
