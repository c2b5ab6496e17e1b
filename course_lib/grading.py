"""Checks for the visible tests of assignments, with messages a student can act on.

Each check raises :class:`CheckFailed` (an ``AssertionError``) saying which quantity failed, what
was expected, what was found (for arrays: the largest difference and where) and, if given, a
hint. They are quiet: nothing is written to stderr (nbgrader scores a cell 0 when anything is).

Example:
    >>> check_shape("G", torch.zeros(2, 3, 3), (2, 3, 3))
    >>> check_close("G", torch.ones(2), torch.ones(2))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class CheckFailed(AssertionError):
    """A visible test failed; the message says what to look at."""


def _fail(message: str, hint: str | None) -> None:
    raise CheckFailed(message + (f"\n  Hint: {hint}" if hint else ""))


def _as_array(x: Any) -> np.ndarray:
    """Tensors (any device) and array-likes → NumPy, without importing torch for NumPy input."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        return x.numpy()
    return np.asarray(x)


def check_type(name: str, value: Any, expected: type | tuple[type, ...], hint: str | None = None):
    """``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        want = (
            expected.__name__
            if isinstance(expected, type)
            else " or ".join(t.__name__ for t in expected)
        )
        _fail(f"{name} should be a {want}; got {type(value).__name__}", hint)


def check_shape(
    name: str, value: Any, expected: Sequence[int | None], hint: str | None = None
) -> None:
    """``value.shape`` equals ``expected`` (``None`` entries match any size)."""
    shape = tuple(getattr(value, "shape", ()))
    if value is None or not hasattr(value, "shape"):
        _fail(
            f"{name} should be an array or tensor of shape {tuple(expected)}; got "
            f"{type(value).__name__}",
            hint or "did the function return its result?",
        )
    ok = len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))
    if not ok:
        _fail(f"{name} should have shape {tuple(expected)}; got {shape}", hint)


def check_dtype(name: str, value: Any, expected: Any, hint: str | None = None) -> None:
    """``value.dtype`` equals ``expected`` (a torch or NumPy dtype, or ``"integer"``/``"bool"``)."""
    dtype = getattr(value, "dtype", None)
    text = str(dtype).replace("torch.", "")
    if expected == "integer":
        ok = dtype is not None and text.startswith(("int", "uint"))
    elif expected == "bool":
        ok = text == "bool"
    else:
        ok = dtype == expected
    if not ok:
        _fail(f"{name} should have dtype {expected}; got {dtype}", hint)


def check_finite(name: str, value: Any, hint: str | None = None) -> None:
    """No NaN or infinite entries."""
    arr = _as_array(value)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        _fail(f"{name} has {bad} NaN/infinite entries", hint or "look for a division by zero")


def check_close(
    name: str,
    actual: Any,
    expected: Any,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    hint: str | None = None,
) -> None:
    """``actual`` equals ``expected`` within ``atol + rtol·|expected|``, elementwise.

    On failure the message gives the largest difference, where it is, and both values there.
    """
    a, e = _as_array(actual), _as_array(expected)
    if a.shape != e.shape:
        _fail(f"{name} should have shape {tuple(e.shape)}; got {tuple(a.shape)}", hint)
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    diff = np.abs(a64 - e64)
    bad = (diff > atol + rtol * np.abs(e64)) | (np.isnan(a64) != np.isnan(e64))
    if bad.any():
        where = int(np.nan_to_num(diff, nan=np.inf).argmax())
        idx = tuple(int(i) for i in np.unravel_index(where, diff.shape)) if diff.ndim else ()
        _fail(
            f"{name} is not close to the expected value: {int(bad.sum())} of {bad.size} "
            f"entries differ; the largest difference is {diff.flat[where]:.4g} at index {idx} "
            f"(got {a64.flat[where]:.6g}, expected {e64.flat[where]:.6g})",
            hint,
        )


def check_true(condition: Any, message: str, hint: str | None = None) -> None:
    """A general check: ``condition`` must hold, else fail with ``message``."""
    if not bool(condition):
        _fail(message, hint)


def check_raises(
    name: str,
    fn: Callable[[], Any],
    exception: type[BaseException] | tuple[type[BaseException], ...] = ValueError,
    hint: str | None = None,
) -> None:
    """Calling ``fn()`` raises ``exception``."""
    want = (
        exception.__name__
        if isinstance(exception, type)
        else " or ".join(e.__name__ for e in exception)
    )
    try:
        fn()
    except exception:
        return
    except Exception as err:  # noqa: BLE001
        _fail(f"{name} should raise {want}; it raised {type(err).__name__}: {err}", hint)
    _fail(f"{name} should raise {want}; it returned without an error", hint)


def check_implemented(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; if it still raises ``NotImplementedError`` say so plainly."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            f"{getattr(fn, '__name__', 'this function')} is not implemented yet: replace "
            "`raise NotImplementedError()` with your code, run its cell, then this one."
        ) from None
