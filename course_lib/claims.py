"""Claims: a sentence about a figure, checked against the number the notebook computed.

Every sentence in a lesson that says what a figure or a run shows is backed by a number the
notebook prints right there, and by a :func:`claim`. In default mode a false claim raises
:class:`ClaimFailed`, so ``make claims`` (default-mode runs) fails on a lesson whose figure
no longer shows what its text says. In quick mode (small sizes, few steps) a claim only reports:
quick runs may be too short to show the effect, and the quick-mode tests assert the claims that
do hold there (:func:`course_kit.nbrun.claims_in` reads them back from an executed notebook).

Each claim prints one line that starts with :data:`MARK`, e.g.::

    CLAIM ok   [seam-cheaper] the cut's error is below the straight seam's: 0.412 (holds: < 0.9)
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable

from .mode import quick_mode

MARK = "CLAIM"
STRICT_ENV = "COURSE_CLAIMS"  # "strict": raise in quick mode too; "report": never raise


class ClaimFailed(AssertionError):
    """A lesson's sentence is contradicted by the number its notebook computed."""


def _format(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.3f}"
    try:  # a 0-d tensor or array
        return _format(value.item())  # type: ignore[union-attr]
    except (AttributeError, ValueError, RuntimeError):
        return repr(value)


def _strict(strict: bool | None) -> bool:
    if strict is not None:
        return strict
    setting = os.environ.get(STRICT_ENV, "").strip().lower()
    if setting == "strict":
        return True
    if setting == "report":
        return False
    return not quick_mode()


def claim(
    name: str,
    value: object,
    condition: bool | Callable[[object], bool],
    text: str,
    *,
    expect: str = "",
    strict: bool | None = None,
) -> bool:
    """Print a lesson's claim with its number; raise in default mode when it does not hold.

    Args:
        name: a short id, unique in the notebook (``"seam-cheaper"``); tests look claims up by it.
        value: the number (or a 0-d tensor) that backs the sentence; printed beside it.
        condition: ``True``/``False``, or a function of ``value`` that says whether it holds.
        text: the sentence, as the reader sees it in the notebook.
        expect: how the condition reads, printed beside the value (``"< 0.9"``).
        strict: raise when false. Default: in default mode yes, in quick mode no (override for
            the whole run with ``COURSE_CLAIMS=strict`` or ``COURSE_CLAIMS=report``).

    Returns:
        Whether the claim holds.

    Raises:
        ClaimFailed: the claim is false and ``strict`` applies.
        TypeError: ``name`` or ``text`` is not a string, or ``condition`` is neither a bool nor
            callable.

    >>> claim("demo", 0.25, lambda v: v < 0.5, "the error is small", expect="< 0.5")
    CLAIM ok   [demo] the error is small: 0.250 (holds: < 0.5)
    True
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise TypeError(f"claim(): `name` must be a short id without spaces; got {name!r}")
    if not isinstance(text, str):
        raise TypeError(f"claim(): `text` must be the sentence (a str); got {type(text).__name__}")
    if callable(condition):
        holds = condition(value)
    elif isinstance(condition, bool) or hasattr(condition, "__bool__"):
        holds = condition
    else:
        raise TypeError(
            f"claim(): `condition` must be a bool or a function of the value; "
            f"got {type(condition).__name__}"
        )
    holds = bool(holds)
    shown = _format(value)
    if isinstance(value, numbers.Real) and math.isnan(float(value)):
        holds = False
    status = "ok  " if holds else "FAIL"
    detail = f"holds: {expect}" if holds and expect else ("holds" if holds else "does not hold")
    if not holds and expect:
        detail = f"expected {expect}"
    print(f"{MARK} {status} [{name}] {text}: {shown} ({detail})", flush=True)
    if not holds and _strict(strict):
        raise ClaimFailed(
            f"claim [{name}] is false: {text!r} needs {expect or 'its condition'}, "
            f"but the notebook computed {shown}. Change the experiment until the figure shows "
            f"it, or change the sentence to say what the figure shows."
        )
    return holds
