"""Checks for the visible tests of assignments, with messages a student can act on.

Each check raises :class:`CheckFailed` (an ``AssertionError``) saying which quantity failed, what
was expected, what was found (for arrays: the largest difference and where) and, if given, a
hint. They are quiet: nothing is written to stderr (nbgrader scores a cell 0 when anything is).

Example:
    >>> import torch
    >>> check_shape("G", torch.zeros(2, 3, 3), (2, 3, 3))
    >>> check_close("G", torch.ones(2), torch.ones(2))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class CheckFailed(AssertionError):
    """A visible test failed; the message says what to look at.

    In a notebook, IPython shows only the message (no traceback through this module).
    """

    def _render_traceback_(self) -> list[str]:
        return [
            f"CheckFailed: {line}" if i == 0 else line
            for i, line in enumerate(str(self).splitlines())
        ]


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


# ---- reports: the kernel computes, the grader judges ------------------------------------------
#
# A graded test cell does not decide its own score. It *reports* what the student's functions
# return on the test's inputs (``report(key, lambda: f(x))``); the grader (``course_kit.judge``)
# runs the same cell with the instructor's solution in a process the submission cannot reach,
# and compares the two there. Nothing a submission does inside its kernel (exception handlers,
# patched comparisons, forged outputs) can change a verdict, short of computing the right values.

REPORT_MIME = "application/vnd.course-kit.report+json"


def _encode(value: Any) -> Any:
    """A result as JSON data; arrays and tensors become ``{"array", "dtype", "shape"}``."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu()
        value = value.double().numpy() if value.is_floating_point() else value.numpy()
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise TypeError("complex results cannot be reported")
        data = arr.astype(float) if arr.dtype.kind == "f" else arr
        return {
            "array": np.where(np.isfinite(data), data, 0).tolist()
            if arr.dtype.kind == "f"
            else data.tolist(),
            "nonfinite": (~np.isfinite(data)).tolist() if arr.dtype.kind == "f" else None,
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
        }
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": value if np.isfinite(value) else repr(value)}
    if isinstance(value, (list, tuple)):
        return {"sequence": [_encode(v) for v in value], "tuple": isinstance(value, tuple)}
    if isinstance(value, dict):
        return {"mapping": {str(k): _encode(v) for k, v in value.items()}}
    return {"unsupported": type(value).__name__}


def report(
    key: str,
    compute: Callable[[], Any],
    *,
    expect: Any = None,
    name: str | None = None,
    hint: str | None = None,
    **judging: Any,
) -> None:
    """Hand the result of ``compute()`` to the grader, as data; in a visible test, also check it.

    Args:
        key: a name for this result, unique within its test cell (``"gram-batch-of-2"``).
        compute: a function of no arguments that calls the student's code, e.g.
            ``lambda: gram_matrix(x)``. An exception it raises is reported as
            ``{"raised": "ValueError", "message": ...}`` (a test of bad input expects one).
        expect: visible tests only: the :class:`Expected` values of the cell (the solution's
            results on these public inputs, written into the notebook). The result is then
            checked here exactly as the grader will judge it (same value, same ``judging``),
            so "visible tests passed" means these points are earned; a difference raises
            :class:`CheckFailed` naming ``name`` (default: the key) with ``hint``.
        name, hint: what the check is called and what to look at, in that message.
        **judging: how the grader compares, read *only* from its own run of the solution
            (``rtol``, ``atol``, ``compare="close" | "equal" | "raises" | "shape"``); whatever a
            submission passes here is ignored.

    In a notebook it shows nothing; under nbgrader the result travels in the cell's output.
    """
    if not isinstance(key, str) or not key:
        raise TypeError(f"report(): `key` must be a non-empty str; got {key!r}")
    try:
        result: Any = {"value": _encode(compute())}
    except Exception as err:  # noqa: BLE001 - the error *is* the result
        result = {"raised": type(err).__name__, "message": str(err)[:500]}
    payload = {"key": key, **result, "judging": {k: judging[k] for k in sorted(judging)}}
    _emit(payload)
    if isinstance(expect, Expected):
        expect.check(key, result, name=name or key, hint=hint, **judging)


def _emit(payload: dict) -> None:
    """Show a report (an output of type REPORT_MIME) for the grader."""
    key = payload["key"]
    try:
        from IPython.display import display

        display({REPORT_MIME: payload, "text/plain": f"(reported {key!r} to the grader)"}, raw=True)
    except ImportError:  # plain Python: print it, so that scripts still see something
        print(f"(reported {key!r} to the grader)")


# ---- local verdict = judged verdict ---------------------------------------------------------
#
# A visible cell writes the solution's results on its (public) inputs into the notebook:
# ``expected = Expected("<packed>")`` (``python tests/source_notebook.py record <nb>`` writes
# it). Each ``report(key, ..., expect=expected)`` then compares the student's result with it by
# the grader's own rules (``course_kit.judge``: the same decoding, comparison and tolerances,
# ``DEFAULT_RTOL``/``DEFAULT_ATOL`` when a cell gives none), so the local verdict and the judged
# verdict agree.

DEFAULT_RTOL, DEFAULT_ATOL = 1e-4, 1e-6


def _decode(data: Any) -> Any:
    """A reported value back to Python/NumPy (as ``course_kit.judge`` decodes it)."""
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if "array" in data:
        dtype = np.dtype(str(data["dtype"]))
        arr = np.asarray(data["array"], dtype=np.float64 if dtype.kind == "f" else dtype)
        arr = arr.reshape(tuple(data["shape"]))
        if dtype.kind == "f" and data.get("nonfinite") is not None:
            arr = np.where(np.asarray(data["nonfinite"], bool).reshape(arr.shape), np.nan, arr)
        return arr
    if "float" in data:
        return float(data["float"]) if not isinstance(data["float"], str) else float("nan")
    if "sequence" in data:
        items = [_decode(v) for v in data["sequence"]]
        return tuple(items) if data.get("tuple") else items
    if "mapping" in data:
        return {str(k): _decode(v) for k, v in data["mapping"].items()}
    return _Unsupported(str(data.get("unsupported")))


class _Unsupported(str):
    pass


def _numbers_differ(e: np.ndarray, g: np.ndarray, compare: str, rtol: float, atol: float):
    if e.shape != g.shape:
        return f"should have shape {tuple(e.shape)}; got shape {tuple(g.shape)}"
    if compare == "shape":
        return None
    if compare == "equal":
        if np.array_equal(e, g, equal_nan=e.dtype.kind == "f" and g.dtype.kind == "f"):
            return None
        bad = int(np.sum(e != g))
        show = f" (expected {e.tolist()}, got {g.tolist()})" if e.size <= 6 else ""
        return f"is not as expected: {bad} of {e.size} entries differ{show}"
    e64, g64 = e.astype(np.float64), g.astype(np.float64)
    nan_e, nan_g = np.isnan(e64), np.isnan(g64)
    diff = np.abs(np.where(nan_e | nan_g, 0.0, e64 - g64))
    bad = (diff > atol + rtol * np.abs(np.nan_to_num(e64))) | (nan_e != nan_g)
    if not bad.any():
        return None
    where = int(np.argmax(np.where(nan_e != nan_g, np.inf, diff)))
    idx = tuple(int(i) for i in np.unravel_index(where, e.shape)) if e.ndim else ()
    return (
        f"is not close to the expected value: {int(bad.sum())} of {bad.size} entries differ; "
        f"the largest difference is {diff.flat[where]:.4g}"
        + (f" at index {idx}" if e.ndim else "")
        + f" (got {g64.flat[where]:.6g}, expected {e64.flat[where]:.6g})"
    )


def disagreement(expected: Any, got: Any, compare: str, rtol: float, atol: float) -> str | None:
    """None when the decoded result ``got`` matches ``expected`` under ``compare``; else what
    differs (the grader's rules: sequences item by item, dicts key by key, numbers elementwise
    within ``atol + rtol·|expected|``)."""
    if isinstance(expected, _Unsupported) or isinstance(got, _Unsupported):
        return f"is a {got if isinstance(got, _Unsupported) else type(got).__name__}"
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"should be a sequence of {len(expected)} items; got a {type(got).__name__}"
        if len(got) != len(expected):
            return f"should have {len(expected)} items; got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            why = disagreement(e, g, compare, rtol, atol)
            if why:
                return f"[{i}] {why}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            return f"should be a dict with keys {sorted(expected)}; got {keys}"
        for k in sorted(expected):
            why = disagreement(expected[k], got[k], compare, rtol, atol)
            if why:
                return f"[{k!r}] {why}"
        return None
    if isinstance(expected, (str, type(None))) or isinstance(got, (str, type(None))):
        if type(expected) is not type(got) or expected != got:
            return f"should be {expected!r}; got {got!r}"
        return None
    if isinstance(got, (list, tuple)) and isinstance(expected, np.ndarray):
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return f"should be an array of shape {expected.shape}; got a {type(got).__name__}"
    if isinstance(got, (list, tuple, dict)):
        return f"should be {expected!r:.60}; got a {type(got).__name__}"
    return _numbers_differ(np.asarray(expected), np.asarray(got), compare, rtol, atol)


class Expected:
    """The solution's results for a visible cell's reports, written into the notebook.

    Args:
        table: the packed results (``python tests/source_notebook.py record <nb>`` writes it
            from a trusted run of the solution; visible inputs are public, so are these).
    """

    def __init__(self, table: str):
        import base64
        import json
        import zlib

        self._results = json.loads(zlib.decompress(base64.b64decode(table))) if table else {}

    def check(self, key: str, result: dict, *, name: str, hint: str | None, **judging: Any):
        """Raise CheckFailed unless ``result`` (a report's ``value``/``raised``) is what the
        grader will accept for ``key``."""
        want = self._results.get(key)
        if want is None:
            raise CheckFailed(f"no expected result is written for {key!r} (a notebook error)")
        compare = judging.get("compare", "close")
        if "raised" in want:
            if result.get("raised") != want["raised"]:
                got = f"raised {result['raised']}" if "raised" in result else "returned a value"
                _fail(f"{name} should raise {want['raised']}; it {got}", hint)
            return
        if "raised" in result:
            _fail(f"{name} raised {result['raised']}: {result.get('message', '')}", hint)
        why = disagreement(
            _decode(want["value"]),
            _decode(result["value"]),
            compare,
            float(judging.get("rtol", DEFAULT_RTOL)),
            float(judging.get("atol", DEFAULT_ATOL)),
        )
        if why:
            _fail(f"{name} {why}", hint)


# ---- stand-ins: a dependency replaced while one function is tested -------------------------
#
# A test of ``style_loss`` should not fail because ``gram_matrix`` is wrong, so it swaps in a
# stand-in for ``gram_matrix`` while it calls ``style_loss``. A stand-in is never a reference
# implementation of a graded function (a submission could copy it). It is either
#
# * a plainly different, public function (``diag_means(f)`` for a Gram matrix), where the
#   tested function's contract does not depend on the dependency's formula (and where gradients
#   must flow through it); or
# * a :class:`Recorded` table: the solution's answers for exactly the inputs this test makes,
#   baked into the cell as data by the instructor (``python -m tests.source_notebook record``).
#   Any other input raises :class:`StandInError`; the table is emptied when its
#   :func:`stand_ins` block ends, and its inputs are not those of any graded function's own tests.


class StandInError(LookupError):
    """A recorded stand-in was asked about an input that the test did not record."""


def _fingerprint_parts(value: Any, decimals: int, out: list[bytes]) -> None:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = _as_array(value)
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        out.append(f"array{arr.dtype.kind}{arr.shape}".encode())
        if arr.dtype.kind == "f":
            arr = np.round(arr.astype(np.float64), decimals) + 0.0  # -0.0 -> 0.0
        out.append(np.ascontiguousarray(arr).tobytes())
    elif isinstance(value, float):
        out.append(repr(round(value, decimals) + 0.0).encode())
    elif value is None or isinstance(value, (bool, int, str)):
        out.append(repr(value).encode())
    elif isinstance(value, (list, tuple)):
        out.append(f"seq{len(value)}".encode())
        for item in value:
            _fingerprint_parts(item, decimals, out)
    elif isinstance(value, dict):
        out.append(f"map{len(value)}".encode())
        for key in sorted(value, key=str):
            out.append(str(key).encode())
            _fingerprint_parts(value[key], decimals, out)
    else:  # modules, generators...: only their type takes part
        out.append(type(value).__name__.encode())


def fingerprint(args: tuple, kwargs: dict, decimals: int = 6) -> str:
    """A digest of a call's arguments (floats rounded to ``decimals`` places)."""
    import hashlib

    parts: list[bytes] = []
    _fingerprint_parts([list(args), kwargs], decimals, parts)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:32]


def _pack_value(value: Any) -> Any:
    import base64
    import io

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor: keep its dtype
        buf = io.BytesIO()
        np.save(buf, value.detach().cpu().numpy(), allow_pickle=False)
        return {"tensor": base64.b64encode(buf.getvalue()).decode()}
    if isinstance(value, (np.ndarray, np.generic)):
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        return {"array": base64.b64encode(buf.getvalue()).decode()}
    if isinstance(value, (list, tuple)):
        return {"seq": [_pack_value(v) for v in value], "tuple": isinstance(value, tuple)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"plain": value}
    raise TypeError(f"cannot record a {type(value).__name__}")


def _unpack_value(data: dict) -> Any:
    import base64
    import io

    if "tensor" in data or "array" in data:
        raw = base64.b64decode(data.get("tensor", data.get("array")))
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
        if "tensor" in data:
            import torch

            return torch.from_numpy(arr.copy())
        return arr
    if "seq" in data:
        items = [_unpack_value(v) for v in data["seq"]]
        return tuple(items) if data["tuple"] else items
    return data["plain"]


class Recorded:
    """A stand-in made of data: the solution's answers of ``name`` for the inputs a test makes.

    Args:
        name: the function it stands in for (for messages), e.g. ``"block_mask"``.
        table: the packed table (a string that :meth:`Recorder.table` wrote from a trusted run
            of the solution).
        decimals: floats in the arguments are rounded to this many places before lookup.

    Calling it with arguments that were recorded returns (a copy of) the recorded result;
    anything else raises :class:`StandInError`. :meth:`close` empties it (``stand_ins`` does).

    Example:
        >>> rec = Recorder(lambda x: 2 * x, "double")
        >>> rec(3), rec(4.0)
        (6, 8.0)
        >>> double = Recorded("double", rec.table())
        >>> double(3)
        6
        >>> double(5)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        course_lib.grading.StandInError: ... was called with arguments this test did not record
    """

    def __init__(self, name: str, table: str, *, decimals: int = 6):
        import base64
        import json
        import zlib

        self.name, self.decimals = name, decimals
        self._answers = json.loads(zlib.decompress(base64.b64decode(table)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._answers is None:
            raise StandInError(f"the stand-in for {self.name} is closed: its test has finished")
        key = fingerprint(args, kwargs, self.decimals)
        if key not in self._answers:
            raise StandInError(
                f"the stand-in for {self.name} (the solution's recorded answers) was called with "
                f"arguments this test did not record ({len(args)} positional, keywords "
                f"{sorted(kwargs)}): call {self.name} as the docstring says, on the values it "
                "names, in the order it gives"
            )
        return _unpack_value(self._answers[key])

    def close(self) -> None:
        """Forget every answer (later calls raise StandInError)."""
        self._answers = None


class Recorder:
    """Calls ``fn`` and records its answers, for :class:`Recorded` (instructor side only)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *, decimals: int = 6):
        self.fn, self.decimals = fn, decimals
        self.name = name or getattr(fn, "__name__", "function")
        self.answers: dict[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fn(*args, **kwargs)
        self.answers[fingerprint(args, kwargs, self.decimals)] = _pack_value(result)
        return result

    def table(self) -> str:
        """The recorded answers, packed for ``Recorded(name, table)``."""
        import base64
        import json
        import zlib

        text = json.dumps(self.answers, sort_keys=True, separators=(",", ":"))
        return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


class stand_ins:  # noqa: N801 - used like a function: ``with stand_ins(f, g=...):``
    """Within the ``with`` block, names that ``fn`` looks up are replaced by stand-ins.

    ``with stand_ins(style_loss, gram_matrix=diag_means): style_loss(...)`` makes
    ``style_loss`` (and every function defined next to it) see ``diag_means`` as
    ``gram_matrix``; the originals come back when the block ends, even after an error, and
    every :class:`Recorded` table among the stand-ins is emptied.

    Args:
        fn: a function of the notebook; its module globals are the names replaced.
        **replacements: ``name=stand_in`` for each dependency.
    """

    def __init__(self, fn: Callable[..., Any], **replacements: Any):
        names = getattr(fn, "__globals__", None)
        if not isinstance(names, dict):
            raise TypeError(f"stand_ins(): `fn` must be a function; got {type(fn).__name__}")
        self._names, self._new = names, replacements
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        self._saved = {k: self._names.get(k, _MISSING) for k in self._new}
        self._names.update(self._new)

    def __exit__(self, *exc: Any) -> None:
        for key, old in self._saved.items():
            if old is _MISSING:
                self._names.pop(key, None)
            else:
                self._names[key] = old
        for stand_in in self._new.values():
            if isinstance(stand_in, _RECORDED):
                stand_in.close()


_MISSING = object()
_RECORDED = Recorded  # (tests that re-record a table replace the module's name `Recorded`)


def with_stand_ins(fn: Callable[..., Any], compute: Callable[[], Any], **replacements: Any) -> Any:
    """``compute()`` inside ``stand_ins(fn, **replacements)`` (for use in a ``report`` lambda)."""
    with stand_ins(fn, **replacements):
        return compute()
