"""nbgrader plug-ins for the kit (named in ``nbgrader_config.py`` and by the sandbox).

* :class:`HideHiddenTracebacks` keeps hidden tests out of the feedback: nbgrader's
  ``ClearHiddenTests`` removes the hidden *source*, but a failing cell's traceback still quotes
  the hidden lines. For every grade cell that holds hidden tests, this replaces its error outputs
  with the exception's name and message only.
* :class:`CleanTracebacks` drops the frames of library code and grader paths from tracebacks
  (a student sees the lines of *their* cells, not the grader's folders or NumPy's internals).
* :class:`CapOutputs` caps every output (text, HTML, images) and each cell's total, so a cell
  that prints 50 MB cannot make a 50 MB notebook or feedback page.
* :class:`SanitiseStudentHTML` makes student HTML and JavaScript inert
  (:func:`course_kit.feedback.sanitise_notebook`): in the autograded notebook that the
  Formgrader shows and in the feedback.
* :class:`NameTimeouts` adds the per-cell time limit to the verdict of a cell that ran past
  it; :func:`timeout_error` is the error nbgrader records for such a cell (``Execute.
  error_on_timeout``), naming the limit.
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_output
from traitlets import Bool, Integer, Unicode

HIDDEN_MARK = "BEGIN HIDDEN TESTS"
TIMEOUT_ENAME = "CellTimeoutError"
VERDICT_MARK = "course-kit-verdict"  # course_kit.judge.VERDICT_MARK
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# a frame whose file lies in an installed library, the kit's own helpers or a grader folder
_INTERNAL = re.compile(
    r"(site-packages|dist-packages|/lib/python3|course_lib/|course_kit/|/course/|"
    r"course-kit-sandbox|nbgrader)"
)
_PATH = re.compile(r"(?:/[\w.@+\-]+){2,}/([\w.@+\-]+)")


class HideHiddenTracebacks(Preprocessor):
    """Shorten tracebacks of cells that contain hidden tests to ``ename: evalue``."""

    enabled = Bool(True, help="nbconvert runs only enabled preprocessors").tag(config=True)
    marker = Unicode(HIDDEN_MARK, help="text that marks a hidden-test region").tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # type: ignore[no-untyped-def]
        if cell.cell_type != "code" or self.marker not in cell.source:
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                ename, evalue = output.get("ename", "Error"), output.get("evalue", "")
                evalue = _PATH.sub(r"\1", evalue)
                summary = f"{ename}: {evalue}" if evalue else ename
                output["traceback"] = [
                    summary,
                    "(a test in this cell failed; the details of hidden tests are not shown)",
                ]
        return cell, resources


def clean_traceback(lines: list[str]) -> list[str]:
    """A traceback without library / grader frames, with folders removed from file names."""
    if len(lines) <= 2:
        return [_PATH.sub(r"\1", line) for line in lines]
    head, frames, tail = lines[0], lines[1:-1], lines[-1]
    kept = [f for f in frames if not _INTERNAL.search(_ANSI.sub("", f).split("\n", 1)[0])]
    dropped = len(frames) - len(kept)
    out = [head, *(_PATH.sub(r"\1", f) for f in kept)]
    if dropped:
        out.append(f"(… {dropped} frame(s) inside libraries not shown)")
    out.append(_PATH.sub(r"\1", tail))
    return out


class CleanTracebacks(Preprocessor):
    """Remove library and grader frames (and folder names) from every traceback."""

    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # type: ignore[no-untyped-def]
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                output["traceback"] = clean_traceback(list(output.get("traceback", [])))
                output["evalue"] = _PATH.sub(r"\1", str(output.get("evalue", "")))
        return cell, resources


def _cap_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return (
        text[: limit // 2]
        + f"\n\n[… output truncated by the grader: {len(text):,} characters, "
        + f"{limit:,} shown …]\n\n"
        + text[-limit // 2 :]
    )


class CapOutputs(Preprocessor):
    """Cap each text output at ``max_chars`` and each cell's outputs at ``max_cell_bytes``."""

    enabled = Bool(True).tag(config=True)
    max_chars = Integer(20_000, help="characters kept of one text output").tag(config=True)
    max_cell_bytes = Integer(2_000_000, help="bytes kept of one cell's outputs").tag(config=True)
    max_outputs = Integer(200, help="outputs kept of one cell").tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # type: ignore[no-untyped-def]
        if cell.cell_type != "code":
            return cell, resources
        outputs = list(cell.get("outputs", []))
        if len(outputs) > self.max_outputs:
            outputs = outputs[: self.max_outputs]
        total, kept = 0, []
        for out in outputs:
            if "text" in out:
                text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
                out["text"] = _cap_text(text, self.max_chars)
            for mime, value in list((out.get("data") or {}).items()):
                text = value if isinstance(value, str) else None
                if text is None and isinstance(value, list):
                    text = "".join(value)
                if text is None:
                    continue
                if mime.startswith("text/") and mime != "text/html":
                    out["data"][mime] = _cap_text(text, self.max_chars)
                elif len(text) > self.max_cell_bytes // 2:
                    del out["data"][mime]  # a huge image or page: dropped
                    out["data"].setdefault("text/plain", f"[{mime} output dropped: too large]")
            if out.get("output_type") == "error":
                tb = list(out.get("traceback", []))
                out["traceback"] = [_cap_text(t, self.max_chars) for t in tb[:200]]
                out["evalue"] = _cap_text(str(out.get("evalue", "")), self.max_chars)
            size = len(str(out))
            if total + size > self.max_cell_bytes:
                kept.append(
                    new_output(
                        "stream",
                        name="stdout",
                        text="[… further output of this cell removed by the grader …]\n",
                    )
                )
                break
            total += size
            kept.append(out)
        cell["outputs"] = kept
        return cell, resources


class SanitiseStudentHTML(Preprocessor):
    """Student HTML, Markdown, SVG and JavaScript made inert (``sanitise_notebook``)."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):  # type: ignore[no-untyped-def]
        from .feedback import sanitise_notebook

        sanitise_notebook(nb)
        return nb, resources


def timeout_error(seconds: int) -> dict:
    """nbgrader's ``Execute.error_on_timeout``: the error output of a cell that ran too long."""
    why = f"this cell ran past the time limit of {int(seconds)} s per cell and was stopped"
    return {
        "ename": TIMEOUT_ENAME,
        "evalue": why,
        "traceback": [f"\x1b[0;31m{TIMEOUT_ENAME}\x1b[0m: {why}"],
    }


def name_timeouts(nb) -> int:
    """Add the time limit to the verdict of every judged cell that timed out; returns how many.

    The limit is read from the cell's own timeout error (:func:`timeout_error`); an error
    recorded without it (nbgrader's default) still says that the cell ran past the limit."""
    count = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = cell.get("outputs", []) or []
        errors = [
            o
            for o in outputs
            if o.get("output_type") == "error" and o.get("ename") == TIMEOUT_ENAME
        ]
        if not errors:
            continue
        why = str(errors[0].get("evalue") or "") or "this cell ran past the time limit per cell"
        for out in outputs:
            if not (out.get("metadata") or {}).get(VERDICT_MARK):
                continue
            text = out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if why not in text:
                out["data"]["text/plain"] = text.rstrip("\n") + f"\n  - {why}.\n"
                count += 1
    return count


class NameTimeouts(Preprocessor):
    """The verdict of a cell that ran past the time limit says so, with the limit."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):  # type: ignore[no-untyped-def]
        name_timeouts(nb)
        return nb, resources
