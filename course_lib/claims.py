"""Claims: a sentence about a figure, checked against the number the notebook computed.

Every sentence in a lesson that says what a figure or a run shows is backed by a number the
notebook prints right there, and by a :func:`claim`. In default mode a false claim raises
:class:`ClaimFailed`, so ``make claims`` (default-mode runs) fails on a lesson whose figure
no longer shows what its text says. In quick mode (small sizes, few steps) a claim only reports:
quick runs may be too short to show the effect, so a claim that does not hold there prints as
"checked in the full run", and the quick-mode tests assert the claims that do hold there
(:func:`course_kit.nbrun.claims_in` reads them back from an executed notebook).

Each claim prints one line that starts with :data:`MARK`, e.g.::

    CLAIM ok   [seam-cheaper] the cut's error is below the straight seam's: 0.412 (holds: < 0.9)
    CLAIM full [seam-cheaper] the cut's error is below the straight seam's: 0.951 (checked in the
    full run, where it needs < 0.9)

A claim cannot be made to hold by construction: the condition must be a function that reads the
value (``lambda v: v < 0.9``); a constant (``True``, or a comparison already evaluated into a bool)
is refused, and so is a bool value (print the number the comparison is about instead), because
a sabotage of the technique could never make such a claim fail (``tests/test_sabotage.py``).
"""

from __future__ import annotations

import dis
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


def _reads_its_argument(condition: Callable) -> bool:
    """Whether a Python function's body loads its first parameter (``lambda _: True`` does not).

    Functions without Python bytecode (builtins, ``functools.partial``) are given the benefit of
    the doubt.
    """
    code = getattr(condition, "__code__", None)
    if code is None or code.co_argcount + code.co_posonlyargcount < 1:
        return code is None
    first = code.co_varnames[0]
    if first in code.co_cellvars:  # used by a nested function
        return True
    for ins in dis.get_instructions(code):
        if ins.opname.startswith(("LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE")):
            names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
            if first in names:
                return True
    return False


def _check_arguments(name: object, value: object, condition: object, text: object) -> None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise TypeError(f"claim(): `name` must be a short id without spaces; got {name!r}")
    if not isinstance(text, str):
        raise TypeError(f"claim(): `text` must be the sentence (a str); got {type(text).__name__}")
    if not callable(condition):
        raise TypeError(
            f"claim({name!r}): `condition` must be a function of the value, e.g. "
            f"`lambda v: v < 0.9`; got {type(condition).__name__} {condition!r} (a constant "
            f"cannot fail, so it would check nothing)"
        )
    if not _reads_its_argument(condition):
        raise TypeError(
            f"claim({name!r}): `condition` never reads the value it is given (like "
            f"`lambda v: True`), so it cannot fail; write it as a comparison of the value"
        )
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
        raise TypeError(
            f"claim({name!r}): `value` is a bool ({value}); pass the number the comparison is "
            f"about (a count of differences, a ratio, a gap) and compare it in `condition`"
        )


def claim(
    name: str,
    value: object,
    condition: Callable[[object], bool],
    text: str,
    *,
    expect: str = "",
    strict: bool | None = None,
) -> None:
    """Print a lesson's claim with its number; raise in default mode when it does not hold.

    Args:
        name: a short id, unique in the notebook (``"seam-cheaper"``); tests look claims up by it.
        value: the number (or a 0-d tensor) that backs the sentence; printed beside it. Not a
            bool: a count of differences, a ratio or a gap, which the condition compares.
        condition: a function of ``value`` that says whether the sentence holds; it must read
            its argument (a constant cannot fail).
        text: the sentence, as the reader sees it in the notebook.
        expect: how the condition reads, printed beside the value (``"< 0.9"``).
        strict: raise when false. Default: in default mode yes, in quick mode no: there a false
            claim prints as "checked in the full run" (override for the whole run with
            ``COURSE_CLAIMS=strict`` or ``COURSE_CLAIMS=report``).

    Returns:
        Nothing, so a cell that ends with a claim shows no stray value; the verdict is the
        printed line (:func:`course_kit.nbrun.claims_in` reads it back).

    Raises:
        ClaimFailed: the claim is false and ``strict`` applies.
        TypeError: ``name`` or ``text`` is not a string; ``condition`` is not a function, or
            never reads its argument; ``value`` is a bool.

    >>> claim("demo", 0.25, lambda v: v < 0.5, "the error is small", expect="< 0.5")
    CLAIM ok   [demo] the error is small: 0.250 (holds: < 0.5)
    """
    _check_arguments(name, value, condition, text)
    holds = bool(condition(value))
    shown = _format(value)
    if isinstance(value, numbers.Real) and math.isnan(float(value)):
        holds = False
    raise_it = not holds and _strict(strict)
    if holds:
        status, detail = "ok  ", (f"holds: {expect}" if expect else "holds")
    elif raise_it or not quick_mode():
        status, detail = "FAIL", (f"expected {expect}" if expect else "does not hold")
    else:  # quick size: too small or too short to show it; make claims checks it
        where = f", where it needs {expect}" if expect else ""
        status, detail = "full", f"checked in the full run{where}"
    print(f"{MARK} {status} [{name}] {text}: {shown} ({detail})", flush=True)
    if raise_it:
        raise ClaimFailed(
            f"claim [{name}] is false: {text!r} needs {expect or 'its condition'}, "
            f"but the notebook computed {shown}. Change the experiment until the figure shows "
            f"it, or change the sentence to say what the figure shows."
        )
