"""The grader's side of judged tests: the kernel computes, the grader judges.

A graded test cell of the kit's assignments does not decide its own score. It calls
``course_lib.grading.report(key, lambda: f(x), **judging)``, which shows the *result* of the
student's function on the test's input as data (an output of MIME type
``application/vnd.course-kit.report+json``). This module, in the grader's own process:

1. runs the instructor's source notebook (``solutions/<id>/<id>.ipynb``, trusted) once per
   assignment under ``NBGRADER_EXECUTION`` and keeps its reports: the *expected* results, and
   the judging options (``rtol``, ``atol``, ``compare`` = ``"close" | "equal" | "raises" |
   "shape"``), taken only from this trusted run (:func:`expected_reports`, cached per source);
2. reads the reports in each graded cell of a student's autograded notebook and compares them
   with NumPy here (:func:`judge_notebook`): a cell earns its points only when every expected
   key was reported exactly once and matches; a missing, repeated, malformed or different
   report scores the cell 0;
3. writes each judged cell's score into nbgrader's gradebook (``auto_score``), replacing
   nbgrader's "did the cell raise?" verdict (:func:`write_scores`), and puts the verdict into
   the notebook the feedback is made from (:func:`annotate`): which check failed, expected vs
   got for visible checks, and only *which* check failed for hidden ones.

Expected values never enter a student's kernel, so nothing a submission does there (exception
handlers, input transformers, patched comparisons, a replaced ``course_lib.grading``) can turn a
wrong answer into points. What it can still fake is a result it *knows*: a check whose expected
outcome is public (an exception for bad input, a shape) — so pair such checks with a value check
in the same cell (:func:`expected_reports` warns about cells that have only those).

A test cell without any report keeps nbgrader's verdict (so assignments not yet converted still
grade as before); every autograded cell of the kit's assignments reports.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

REPORT_MIME = "application/vnd.course-kit.report+json"
COMPARES = ("close", "equal", "raises", "shape")
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-6
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
VERDICT_MARK = "course-kit-verdict"


class JudgeError(RuntimeError):
    """The instructor's source notebook could not produce the expected reports."""


# ----------------------------------------------------------------------------- decoding


MAX_DEPTH = 64  # nesting of a reported value (the kit's assignments use 2 or 3)
MAX_ENTRIES = 50_000_000  # numbers in one reported value, arrays included
MAX_INT_BITS = 1000  # a larger integer cannot be compared as a float


class _Budget:
    """What is left of the size budget while one reported value is decoded."""

    def __init__(self) -> None:
        self.left = MAX_ENTRIES

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ValueError(f"the result holds more than {MAX_ENTRIES:,} entries")


def _decode(data: Any, _depth: int = 0, _budget: _Budget | None = None) -> Any:
    """A reported value (see ``course_lib.grading._encode``) back to Python / NumPy.

    Anything a kernel could put there is read or refused with ``ValueError`` (never another
    exception): nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ENTRIES` numbers,
    integers beyond float range, malformed arrays, unknown dtypes, wrong types.
    """
    budget = _budget or _Budget()
    budget.spend(1)
    if _depth > MAX_DEPTH:
        raise ValueError(f"the result is nested more than {MAX_DEPTH} levels deep")
    if isinstance(data, int) and not isinstance(data, bool):
        if data.bit_length() > MAX_INT_BITS:
            raise ValueError("an integer too large to compare")
        return data
    if data is None or isinstance(data, (bool, str)):
        return data
    if isinstance(data, float):  # a bare JSON number where the encoder writes {"float": ...}
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"unexpected reported value of type {type(data).__name__}")
    if "array" in data:
        return _decode_array(data, budget)
    if "float" in data:
        value = data["float"]
        if isinstance(value, str):
            return float("nan")  # the encoder writes non-finite floats as their repr
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"a float reported as {type(value).__name__}")
        try:
            return float(value)
        except OverflowError as err:
            raise ValueError("a float out of range") from err
    if "sequence" in data:
        seq = data["sequence"]
        if not isinstance(seq, list):
            raise ValueError(f"a sequence reported as {type(seq).__name__}")
        items = [_decode(v, _depth + 1, budget) for v in seq]
        return tuple(items) if data.get("tuple") else items
    if "mapping" in data:
        mapping = data["mapping"]
        if not isinstance(mapping, Mapping):
            raise ValueError(f"a mapping reported as {type(mapping).__name__}")
        return {str(k): _decode(v, _depth + 1, budget) for k, v in mapping.items()}
    if "unsupported" in data:
        return _Unsupported(str(data["unsupported"])[:80])
    raise ValueError("unrecognised reported value")


def _decode_array(data: Mapping, budget: _Budget) -> np.ndarray:
    """``{"array", "dtype", "shape", "nonfinite"}`` back to an array (see :func:`_decode`)."""
    try:
        dtype = np.dtype(str(data["dtype"])[:20])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"an array with an unreadable dtype ({err})") from err
    if dtype.kind not in "biuf?":
        raise ValueError(f"unsupported dtype {dtype}")
    shape_in = data.get("shape")
    if not isinstance(shape_in, list) or len(shape_in) > 32:
        raise ValueError("an array with an unreadable shape")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape_in):
        raise ValueError(f"an array with an unreadable shape {shape_in[:8]}")
    shape = tuple(shape_in)
    if math.prod(shape) > budget.left:
        raise ValueError(f"the result holds more than {MAX_ENTRIES:,} entries")
    budget.spend(math.prod(shape))
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(data["array"], dtype=np.float64 if dtype.kind == "f" else dtype)
            arr = arr.reshape(shape)
            if dtype.kind == "f" and data.get("nonfinite") is not None:
                mask = np.asarray(data["nonfinite"], dtype=bool).reshape(shape)
                arr = arr.copy()
                arr[mask] = np.nan  # reported non-finite entries: compared as NaN positions
    except (TypeError, ValueError, OverflowError, KeyError, RecursionError) as err:
        why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ValueError(f"a malformed array ({why})") from err
    return arr


@dataclass(frozen=True)
class _Unsupported:
    type_name: str


def _describe(x: Any) -> str:
    """A short, human description of a value (used for visible checks only)."""
    if isinstance(x, np.ndarray):
        if x.size <= 6:
            return f"array {np.array2string(x, precision=4, separator=', ')} (shape {x.shape})"
        return f"an array of shape {tuple(x.shape)}"
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)} items"
    if isinstance(x, dict):
        return f"a dict with keys {sorted(x)[:6]}"
    if isinstance(x, _Unsupported):
        return f"a {x.type_name}"
    text = repr(x)
    return text if len(text) < 60 else text[:57] + "..."


def _compare(expected: Any, got: Any, compare: str, rtol: float, atol: float) -> str | None:
    """None when ``got`` matches ``expected``; otherwise what differs (may quote values)."""
    if isinstance(expected, _Unsupported) or isinstance(got, _Unsupported):
        return f"a {getattr(got, 'type_name', type(got).__name__)} cannot be compared"
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"expected a sequence of {len(expected)} items, got {_describe(got)}"
        if len(got) != len(expected):
            return f"expected {len(expected)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            why = _compare(e, g, compare, rtol, atol)
            if why:
                return f"item {i}: {why}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"expected a dict with keys {sorted(expected)}, got {_describe(got)}"
        for k in sorted(expected):
            why = _compare(expected[k], got[k], compare, rtol, atol)
            if why:
                return f"[{k!r}]: {why}"
        return None
    if isinstance(expected, (str, type(None))) or isinstance(got, (str, type(None))):
        if type(expected) is not type(got) or expected != got:
            return f"expected {_describe(expected)}, got {_describe(got)}"
        return None
    # numbers and arrays (a list of numbers where an array was expected is read as one)
    if isinstance(got, (list, tuple)) and isinstance(expected, np.ndarray):
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return f"expected {_describe(expected)}, got {_describe(got)}"
    if isinstance(got, (list, tuple, dict)):
        return f"expected {_describe(expected)}, got {_describe(got)}"
    e, g = np.asarray(expected), np.asarray(got)
    if compare == "shape":
        if e.shape != g.shape:
            return f"expected shape {tuple(e.shape)}, got shape {tuple(g.shape)}"
        return None
    if e.shape != g.shape:
        return f"expected shape {tuple(e.shape)}, got shape {tuple(g.shape)}"
    if compare == "equal":
        same = np.array_equal(e, g, equal_nan=e.dtype.kind == "f" and g.dtype.kind == "f")
        if not same:
            bad = int(np.sum(e != g))
            return f"{bad} of {e.size} entries differ" + (
                f" (expected {_describe(expected)}, got {_describe(got)})" if e.size <= 6 else ""
            )
        return None
    e64, g64 = e.astype(np.float64), g.astype(np.float64)
    nan_e, nan_g = np.isnan(e64), np.isnan(g64)
    diff = np.abs(np.where(nan_e | nan_g, 0.0, e64 - g64))
    bad = (diff > atol + rtol * np.abs(np.nan_to_num(e64))) | (nan_e != nan_g)
    if bad.any():
        where = int(np.argmax(np.where(nan_e != nan_g, np.inf, diff)))
        idx = tuple(int(i) for i in np.unravel_index(where, e.shape)) if e.ndim else ()
        at = f" at index {idx}" if e.ndim else ""
        return (
            f"{int(bad.sum())} of {bad.size} entries differ; largest difference "
            f"{diff.flat[where]:.4g}{at} (got {g64.flat[where]:.6g}, expected "
            f"{e64.flat[where]:.6g})"
        )
    return None


# ----------------------------------------------------------------------------- reports


def reports_in(cell: Mapping) -> tuple[dict[str, list[dict]], list[str]]:
    """The reports shown by one code cell: ``{key: [payload, ...]}`` and malformed ones.

    A kernel writes these outputs, so anything may be there: whatever is not a well-formed
    report is named in the second list (and scores the cell 0), never raised.
    """
    found: dict[str, list[dict]] = {}
    problems: list[str] = []
    outputs = cell.get("outputs", []) or []
    if not isinstance(outputs, list):
        return found, ["the cell's outputs cannot be read"]
    for output in outputs:
        if not isinstance(output, Mapping):
            continue
        if output.get("output_type") not in ("display_data", "execute_result"):
            continue
        data = output.get("data", {}) or {}
        if not isinstance(data, Mapping) or REPORT_MIME not in data:
            continue
        payload = data[REPORT_MIME]
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except (ValueError, RecursionError):
                problems.append("a report that is not JSON")
                continue
        if not isinstance(payload, Mapping) or not isinstance(payload.get("key"), str):
            problems.append("a report without a key")
            continue
        found.setdefault(payload["key"], []).append(dict(payload))
    return found, problems


def _hidden_text(source: str) -> str:
    """The lines of a cell between the hidden-test markers."""
    out, inside = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif inside:
            out.append(line)
    return "\n".join(out)


def _grade_id(cell: Mapping) -> str | None:
    meta = cell.get("metadata", {}) if isinstance(cell, Mapping) else {}
    meta = meta.get("nbgrader", {}) if isinstance(meta, Mapping) else {}
    if not isinstance(meta, Mapping) or not meta.get("grade"):
        return None
    gid = meta.get("grade_id")
    return gid if isinstance(gid, str) else None


def _source_digest(source_nb: Path) -> str:
    """Hash of the source notebook and of course_lib (whose code the expected run uses)."""
    h = hashlib.sha256(Path(source_nb).read_bytes())
    try:
        import course_lib

        for py in sorted(Path(course_lib.__file__).parent.glob("*.py")):
            h.update(py.name.encode() + py.read_bytes())
    except ImportError:  # pragma: no cover - course_lib is part of the kit
        pass
    return h.hexdigest()


@dataclass
class Expected:
    """The expected reports of one assignment, per graded cell and key."""

    cells: dict[str, dict[str, dict]] = field(default_factory=dict)  # grade_id -> key -> entry
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"cells": self.cells, "warnings": self.warnings}


def expected_reports(
    source_nb: Path, *, cache_dir: Path | None = None, timeout: int = 600
) -> Expected:
    """Run the instructor's notebook (trusted) and collect its reports per graded cell.

    Each entry is ``{"payload": ..., "judging": {...}, "hidden": bool}``. The run happens in a
    temporary copy of the notebook's folder, with ``NBGRADER_EXECUTION=autograde`` (quick mode),
    once per version of the notebook: the result is cached in ``cache_dir`` as JSON.

    Raises:
        JudgeError: a graded cell of the source raised, or reported a key twice.
    """
    source_nb = Path(source_nb)
    digest = _source_digest(source_nb)
    cache = Path(cache_dir) / f"{source_nb.stem}-expected.json" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("digest") == digest:
                return Expected(data["cells"], data.get("warnings", []))
        except (ValueError, KeyError):
            pass
    nb = nbformat.read(source_nb, as_version=4)
    if not any("report(" in c.source and _grade_id(c) for c in nb.cells if c.cell_type == "code"):
        expected = Expected()  # no judged cells: nothing to run
    else:
        expected = _run_source(source_nb, nb, timeout)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"digest": digest, **expected.to_json()}))
    return expected


def _run_source(source_nb: Path, nb: nbformat.NotebookNode, timeout: int) -> Expected:
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="course-kit-expected-") as tmp:
        work = Path(tmp) / source_nb.parent.name
        shutil.copytree(source_nb.parent, work, ignore=shutil.ignore_patterns("*.ipynb"))
        old = os.environ.get("NBGRADER_EXECUTION")
        os.environ["NBGRADER_EXECUTION"] = "autograde"
        try:
            client = NotebookClient(
                nb,
                timeout=timeout,
                kernel_name="python3",
                allow_errors=True,
                resources={"metadata": {"path": str(work)}},
            )
            client.execute()
        finally:
            if old is None:
                os.environ.pop("NBGRADER_EXECUTION", None)
            else:
                os.environ["NBGRADER_EXECUTION"] = old
    expected = Expected()
    for cell in nb.cells:
        gid = _grade_id(cell)
        if cell.cell_type != "code" or not gid:
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        found, problems = reports_in(cell)
        if not found:
            continue
        if errors:
            err = errors[0]
            raise JudgeError(
                f"{source_nb.name}: graded cell {gid!r} of the solution raised "
                f"{err.get('ename')}: {err.get('evalue')}; fix the solution notebook first"
            )
        if problems:
            raise JudgeError(f"{source_nb.name}: cell {gid!r}: {problems[0]}")
        hidden = _hidden_text(cell.source)
        entries = {}
        for key, payloads in found.items():
            if len(payloads) > 1:
                raise JudgeError(f"{source_nb.name}: cell {gid!r} reports {key!r} twice")
            payload = payloads[0]
            judging = dict(payload.get("judging") or {})
            compare = judging.get("compare", "raises" if "raised" in payload else "close")
            if compare not in COMPARES:
                raise JudgeError(
                    f"{source_nb.name}: cell {gid!r}, key {key!r}: compare must be one of "
                    f"{COMPARES}; got {compare!r}"
                )
            if compare == "raises" and "raised" not in payload:
                raise JudgeError(
                    f"{source_nb.name}: cell {gid!r}, key {key!r}: compare='raises' but the "
                    "solution did not raise"
                )
            if "raised" in payload and compare != "raises":
                raise JudgeError(
                    f"{source_nb.name}: cell {gid!r}, key {key!r}: the solution raised "
                    f"{payload['raised']}: {payload.get('message')}"
                )
            judging["compare"] = compare
            in_hidden = bool(re.search(r"""["']""" + re.escape(key) + r"""["']""", hidden))
            entries[key] = {
                "payload": {k: payload[k] for k in ("value", "raised") if k in payload},
                "judging": judging,
                "hidden": bool(judging.get("hidden", in_hidden)),
            }
        expected.cells[gid] = entries
        if all(e["judging"]["compare"] in ("raises", "shape") for e in entries.values()):
            expected.warnings.append(
                f"cell {gid!r} only checks exceptions or shapes, whose expected outcome a "
                "student knows: a submission can fake those reports; add a value check"
            )
    return expected


# ----------------------------------------------------------------------------- judging


@dataclass
class Verdict:
    """The judge's decision on one graded cell."""

    grade_id: str
    passed: int
    total: int
    messages: list[str]

    @property
    def ok(self) -> bool:
        return self.passed == self.total and not self.messages


def _judge_key(key: str, entry: dict, payloads: list[dict] | None) -> str | None:
    """None when the student's report for ``key`` matches, else the message to show."""
    hidden = entry["hidden"]
    name = f"hidden check {key!r}" if hidden else f"check {key!r}"
    if not payloads:
        return f"{name}: no result was reported (the cell stopped before it, or was changed)"
    if len(payloads) > 1:
        return f"{name}: reported {len(payloads)} times; only one report per check counts"
    got = payloads[0]
    want = entry["payload"]
    judging = entry["judging"]
    compare = judging["compare"]
    if compare == "raises":
        if "raised" in got:
            if got.get("raised") == want["raised"]:
                return None
            return (
                f"{name}: should raise {want['raised']}; it raised {_short(got.get('raised'), 80)}"
            )
        return f"{name}: should raise {want['raised']}; it returned a value"
    if "raised" in got:
        msg = _short(got.get("message", ""), 200)
        return f"{name}: your code raised {_short(got.get('raised'), 80)}: {msg}"
    if "value" not in got:
        return f"{name}: the report holds no result"
    try:
        value = _decode(got["value"])
        expect = _decode(want["value"])
        rtol = float(judging.get("rtol", DEFAULT_RTOL))
        atol = float(judging.get("atol", DEFAULT_ATOL))
        with np.errstate(all="ignore"):
            why = _compare(expect, value, compare, rtol, atol)
    except Exception as err:  # noqa: BLE001 - whatever a kernel reported: 0 with a note
        detail = str(err).splitlines()[0][:160] if str(err) else ""
        return f"{name}: the reported result cannot be judged ({type(err).__name__}: {detail})"
    if why is None:
        return None
    if hidden:
        if "shape" in why and "expected shape" in why:
            return f"{name} failed: the result has the wrong shape"
        return f"{name} failed: the result differs from the expected value"
    return f"{name} failed: {why}"


def _short(value: Any, n: int) -> str:
    """At most ``n`` characters of ``str(value)`` (a kernel chose it: it may be huge)."""
    text = value[: n + 1] if isinstance(value, str) else repr(value)[: n + 1]
    return text if len(text) <= n else text[: n - 3] + "..."


def judge_notebook(nb: nbformat.NotebookNode, expected: Expected) -> dict[str, Verdict]:
    """Verdicts for the judged cells of a student's (autograded) notebook, by grade id.

    A judged cell missing from the notebook, or present more than once, fails.
    """
    cells: dict[str, list] = {}
    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid in expected.cells and cell.get("cell_type") == "code":
            cells.setdefault(gid, []).append(cell)
    verdicts = {}
    for gid, entries in expected.cells.items():
        found = cells.get(gid, [])
        if len(found) != 1:
            why = "the test cell is missing" if not found else "the test cell appears twice"
            verdicts[gid] = Verdict(gid, 0, len(entries), [why])
            continue
        try:
            reports, problems = reports_in(found[0])
            messages = list(problems)
            passed = 0
            for key, entry in entries.items():
                why = _judge_key(key, entry, reports.get(key))
                if why is None:
                    passed += 1
                else:
                    messages.append(why)
        except Exception as err:  # noqa: BLE001 - a cell the judge cannot read scores 0
            passed, messages = 0, [f"the cell's results cannot be read ({type(err).__name__})"]
        verdicts[gid] = Verdict(gid, passed, len(entries), messages)
    return verdicts


def write_scores(
    db_url: str, assignment: str, notebook: str, student: str, verdicts: dict[str, Verdict]
) -> dict[str, float]:
    """Write each judged cell's score (all its points or 0) into the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    scores = {}
    with Gradebook(db_url) as gb:
        for gid, verdict in verdicts.items():
            try:
                grade = gb.find_grade(gid, notebook, assignment, student)
            except MissingEntry:
                continue
            grade.auto_score = float(grade.max_score) if verdict.ok else 0.0
            grade.needs_manual_grade = False
            scores[gid] = grade.auto_score
        gb.db.commit()
    return scores


def verdict_text(verdict: Verdict, points: float | None = None) -> str:
    """What the feedback shows under a judged cell."""
    pts = f" ({points:g} points)" if points is not None else ""
    if verdict.ok:
        return f"Grader: all {verdict.total} checks of this cell passed{pts}.\n"
    lines = [f"Grader: {verdict.passed} of {verdict.total} checks passed; this cell scores 0."]
    lines += [f"  - {m}" for m in verdict.messages]
    return "\n".join(lines) + "\n"


def _report_or_verdict(output: Any) -> bool:
    """A report (shown as the verdict instead), a stale verdict, or not an output at all."""
    if not isinstance(output, Mapping):
        return True
    data, meta = output.get("data") or {}, output.get("metadata") or {}
    if not isinstance(data, Mapping) or not isinstance(meta, Mapping):
        return True
    return REPORT_MIME in data or bool(meta.get(VERDICT_MARK))


def annotate(nb: nbformat.NotebookNode, verdicts: dict[str, Verdict]) -> nbformat.NotebookNode:
    """Replace the raw reports of judged cells by the judge's verdict (for the feedback)."""
    for cell in nb.cells:
        gid = _grade_id(cell)
        if cell.get("cell_type") != "code":
            continue
        outputs = [o for o in cell.get("outputs", []) or [] if not _report_or_verdict(o)]
        if gid in verdicts:
            outputs.append(
                nbformat.v4.new_output(
                    "display_data",
                    data={"text/plain": verdict_text(verdicts[gid])},
                    metadata={VERDICT_MARK: True},
                )
            )
        cell["outputs"] = outputs
    return nb
