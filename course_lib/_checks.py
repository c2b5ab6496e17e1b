"""Input checks shared by every public function: clear errors that name the argument,
what was expected and what was given."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import torch


def describe(x: object) -> str:
    """A short description of a value for error messages ("tensor (2, 3, 5, 7) float32")."""
    if isinstance(x, torch.Tensor):
        return f"tensor {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"{type(x).__name__} {tuple(shape)} {getattr(x, 'dtype', '')}".strip()
    return f"{type(x).__name__} {x!r}"[:120]


def conversion_hint(x: object) -> str:
    """How to turn a PIL image or a NumPy array into the kit's image tensor ("" for others)."""
    kind = f"{type(x).__module__}.{type(x).__name__}"
    if kind.startswith("PIL."):
        return " (convert a PIL image with course_lib.images.from_pil(picture))"
    if kind.startswith("numpy.") and hasattr(x, "shape"):
        return " (convert a NumPy (H, W[, C]) image with course_lib.images.from_numpy(array))"
    return ""


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a torch tensor; for a PIL image or a NumPy array the
    message names the conversion (``images.from_pil`` / ``images.from_numpy``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor; got {describe(x)}{conversion_hint(x)}")
    return x


def check_image(
    x: object,
    name: str = "image",
    *,
    channels: int | Sequence[int] | None = None,
    min_size: int | tuple[int, int] | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Check an image batch: a floating tensor ``(B, C, H, W)``.

    Args:
        x: the value to check.
        name: the argument's name, used in the message.
        channels: allowed channel counts (e.g. ``3`` or ``(1, 3)``); ``None`` allows any.
        min_size: smallest allowed ``H`` and ``W`` (an int for both, or ``(h, w)``).
        finite: reject NaN and infinite values; checked for CPU tensors only: on a GPU the check
            would make the host wait for the device at every call (several times a training
            step, since networks check their inputs).

    Returns:
        ``x`` unchanged.

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: wrong rank, channel count or size, or non-finite values.
    """
    check_tensor(x, name)
    if x.ndim != 4:
        hint = " (add a batch axis with x[None])" if x.ndim == 3 else ""
        raise ValueError(f"`{name}` must have shape (B, C, H, W); got {describe(x)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating tensor with values in [0, 1]; got {describe(x)} "
            "(convert with course_lib.images.from_numpy or x.float() / 255)"
        )
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if x.shape[1] not in allowed:
            want = " or ".join(str(c) for c in allowed)
            hint = ""
            if x.shape[3] in allowed:  # (B, H, W, C): channels last, as NumPy and PIL keep them
                hint = " (channels last? move them with x.permute(0, 3, 1, 2))"
            raise ValueError(f"`{name}` must have {want} channels; got {describe(x)}{hint}")
    if min_size is not None:
        mh, mw = (min_size, min_size) if isinstance(min_size, int) else min_size
        if x.shape[2] < mh or x.shape[3] < mw:
            raise ValueError(
                f"`{name}` must be at least {mh}x{mw} pixels; got {x.shape[2]}x{x.shape[3]}"
            )
    if finite and x.device.type == "cpu" and not torch.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return x


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Raise unless ``value`` is an int ``>= minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int; got {describe(value)}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
    return value


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``, suggesting the closest."""
    options = list(choices)
    if value not in options:
        close = difflib.get_close_matches(str(value), [str(c) for c in options], n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}{hint}")
    return value  # type: ignore[return-value]


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """Normalise an int or ``(h, w)`` pair to ``(h, w)``, both positive."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise TypeError(f"`{name}` must be an int or a pair of ints (h, w); got {describe(size)}")
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"`{name}` must be positive; got {tuple(size)}")
    return int(h), int(w)
