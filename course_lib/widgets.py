"""Bind ipywidgets controls to a function that draws a figure, and the static grid that the
rendered book shows instead.

Example (in a notebook):
    >>> def draw(window=11, eps=0.1):
    ...     return show_images(synthesise(window, eps), show=False)
    >>> interact_figure(draw, window=(5, 21, 2), eps=[0.0, 0.1, 0.3])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .mode import under_nbgrader


def _control(name: str, spec: Any):
    """A widget from a spec: (lo, hi[, step]) → slider; a list → dropdown; a bool → checkbox;
    an existing widget is used as is."""
    import ipywidgets as w

    style = {"description_width": "initial"}
    if isinstance(spec, w.ValueWidget):
        return spec
    if isinstance(spec, bool):
        return w.Checkbox(value=spec, description=name)
    if isinstance(spec, tuple) and len(spec) in (2, 3, 4):
        lo, hi = spec[0], spec[1]
        step = spec[2] if len(spec) > 2 else None
        value = spec[3] if len(spec) > 3 else lo
        if all(isinstance(v, int) for v in (lo, hi, step or 1, value)):
            return w.IntSlider(
                value=value,
                min=lo,
                max=hi,
                step=step or 1,
                description=name,
                style=style,
                continuous_update=False,
            )
        return w.FloatSlider(
            value=value,
            min=lo,
            max=hi,
            step=step or (hi - lo) / 20,
            description=name,
            style=style,
            continuous_update=False,
        )
    if isinstance(spec, (list, tuple)):
        return w.Dropdown(options=list(spec), value=spec[0], description=name, style=style)
    raise TypeError(
        f"control `{name}` must be (min, max[, step[, value]]), a list of options, a bool or a "
        f"widget; got {spec!r}"
    )


def interact_figure(draw: Callable[..., Any], **controls: Any):
    """Show controls and re-draw ``draw(**values)`` whenever one changes.

    ``draw`` returns a matplotlib Figure (or shows its own output). Each keyword is a control
    spec: ``(min, max[, step[, value]])`` → slider, a list → dropdown, a bool → checkbox.
    Under nbgrader, or without ipywidgets, draws once with the first values instead.

    Returns:
        An :class:`Interactive` holding the ``VBox`` (controls above the output) and the
        controls by name, or ``None`` when drawn statically. It has no display of its own, so a
        cell ending with this call shows the widget once.
    """
    if not callable(draw):
        raise TypeError(f"`draw` must be callable; got {type(draw).__name__}")
    try:
        import ipywidgets as w
        from IPython.display import display
    except ImportError:  # pragma: no cover
        w = None
    if w is None or under_nbgrader():
        values = {k: _first(v) for k, v in controls.items()}
        _show(draw(**values))
        return None
    widgets = {name: _control(name, spec) for name, spec in controls.items()}
    out = w.Output()

    def redraw(*_: Any) -> None:
        import matplotlib.pyplot as plt

        with out:
            out.clear_output(wait=True)
            fig = draw(**{k: c.value for k, c in widgets.items()})
            if fig is not None and hasattr(fig, "savefig"):
                display(fig)
                plt.close(fig)

    for c in widgets.values():
        c.observe(redraw, names="value")
    box = w.VBox([w.HBox(list(widgets.values())), out])
    redraw()
    display(box)
    return Interactive(box, widgets)


class Interactive:
    """What :func:`interact_figure` returns: ``box`` (the displayed VBox) and ``controls``
    (name → widget), e.g. to set a value from code: ``ui.controls["size"].value = 128``."""

    def __init__(self, box: Any, controls: dict[str, Any]) -> None:
        self.box, self.controls = box, controls

    def _ipython_display_(self) -> None:
        """Already displayed by :func:`interact_figure`: show nothing a second time."""


def _first(spec: Any) -> Any:
    try:
        import ipywidgets as w

        if isinstance(spec, w.ValueWidget):
            return spec.value
    except ImportError:  # pragma: no cover
        pass
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, tuple) and len(spec) in (2, 3, 4):
        return spec[3] if len(spec) > 3 else spec[0]
    return list(spec)[0]


def _show(fig: Any) -> None:
    if fig is not None and hasattr(fig, "savefig"):
        import matplotlib.pyplot as plt
        from IPython.display import display

        display(fig)
        plt.close(fig)


def sweep_grid(
    make_image: Callable[[Any], Any],
    values: Sequence[Any],
    *,
    name: str = "value",
    **show_kw: Any,
):
    """The static version of a slider: ``make_image(v)`` for every ``v``, shown in one grid
    titled ``"name = v"``. ``make_image`` returns an image tensor ``(1, C, H, W)`` in ``[0, 1]``.

    Returns what :func:`course_lib.display.show_images` returns.
    """
    from tqdm.auto import tqdm

    from .display import show_images

    bar = tqdm(list(values), desc=f"sweep {name}", disable=under_nbgrader())
    images = [make_image(v) for v in bar]
    return show_images(images, [f"{name} = {v}" for v in values], **show_kw)
