"""Grade honest work whose nbgrader cells were broken on the way.

nbgrader finds answers and tests by the ``grade_id`` in each cell's metadata. Students break
that without meaning to: a test cell copied (the id twice: nbgrader fails the notebook), cells
with renamed ids, or the code pasted into a fresh notebook with no nbgrader metadata at all
(nothing is graded). :func:`repair_submission` leaves an intact notebook as it is and rebuilds a
broken one on the *released* notebook: every answer cell gets the student's cell that defines
the same functions (or has the same id), the student's other definitions (helpers, imports) go
in a cell before the first answer, and the tests come from the release (nbgrader restores them
from the gradebook anyway). The notes say what was repaired.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat

from .collect import defined_names


def _meta(cell) -> dict:
    """A cell's nbgrader metadata; ``{}`` when a student's file holds something else there."""
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    if not isinstance(meta, dict) or not isinstance(meta.get("grade_id", ""), str):
        return {}
    return meta


def _read(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    try:
        return nbformat.read(path, as_version=4), None
    except Exception as err:  # noqa: BLE001 - anything a student may hand in
        try:
            raw = json.loads(Path(path).read_text(errors="replace"))
            return nbformat.from_dict(raw), None
        except Exception:  # noqa: BLE001
            return None, f"the file is not a readable notebook ({type(err).__name__})"


def _support_only(source: str) -> bool:
    """A cell of definitions only (imports, functions, classes, constants): safe to keep."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in tree.body:
        if isinstance(node, allowed):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(
            node.value, (ast.Constant, ast.Tuple, ast.List, ast.Dict)
        ):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a bare string
        return False
    return True


def repair_submission(
    submitted: Path, released: Path
) -> tuple[nbformat.NotebookNode | None, list[str]]:
    """The notebook to grade for ``submitted`` and notes on what was repaired.

    Returns ``(None, [why])`` when the file cannot be read as a notebook.
    """
    nb, problem = _read(Path(submitted))
    if nb is None:
        return None, [problem or "the file is not a notebook"]
    ref = nbformat.read(released, as_version=4)
    ref_ids = {_meta(c).get("grade_id"): c for c in ref.cells if _meta(c).get("grade_id")}
    by_id: dict[str, list] = {}
    for cell in nb.cells:
        gid = _meta(cell).get("grade_id")
        if gid:
            by_id.setdefault(gid, []).append(cell)
    duplicated = sorted(g for g, cells in by_id.items() if len(cells) > 1)
    unknown = sorted(g for g in by_id if g not in ref_ids)
    answers = [g for g, c in ref_ids.items() if _meta(c).get("solution")]
    missing = [g for g in answers if g not in by_id]
    if not duplicated and not unknown and not missing:
        return nb, []

    notes = []
    if duplicated:
        notes.append(
            f"cells with the same nbgrader id ({', '.join(duplicated)}): duplicates removed"
        )
    if unknown:
        notes.append(
            f"cells with ids the assignment does not have ({', '.join(unknown)}) matched by content"
        )
    if not by_id:
        notes.append(
            "the notebook has no nbgrader cells (pasted into a new notebook?): answers "
            "found by the graded functions' names"
        )
    out = nbformat.from_dict(json.loads(json.dumps(ref)))
    used: set[int] = set()
    ref_sources = {c.source.strip() for c in ref.cells}
    code = [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    first_answer = None
    for pos, cell in enumerate(out.cells):
        meta = _meta(cell)
        if not meta.get("solution") or cell.cell_type != "code":
            continue
        gid = meta["grade_id"]
        first_answer = pos if first_answer is None else first_answer
        wanted = defined_names(cell.source)
        same_id = [(i, c) for i, c in code if _meta(c).get("grade_id") == gid]
        pick = None
        if same_id:
            # the last copy that defines the graded functions (students redo cells below)
            good = [(i, c) for i, c in same_id if wanted <= defined_names(c.source)]
            pick = (good or same_id)[-1]
        elif wanted:
            good = [
                (i, c)
                for i, c in code
                if wanted <= defined_names(c.source)
                and i not in used
                and not _meta(c).get("locked")
            ]
            if good:
                pick = good[-1]
                notes.append(
                    f"answer {gid!r} ({', '.join(sorted(wanted))}) found in cell {pick[0] + 1}"
                )
        if pick is None:
            notes.append(f"answer {gid!r} not found: graded as unanswered")
            continue
        used.add(pick[0])
        cell.source = pick[1].source
    # the student's own helpers and imports, before the first answer
    extra = [
        c.source
        for i, c in code
        if i not in used
        and not _meta(c).get("locked")
        and not _meta(c).get("grade")
        and c.source.strip()
        and c.source.strip() not in ref_sources
        and _support_only(c.source)
        and defined_names(c.source) | _imports(c.source)
    ]
    if extra and first_answer is not None:
        out.cells.insert(first_answer, nbformat.v4.new_code_cell("\n\n".join(extra)))
        notes.append(f"kept {len(extra)} cell(s) of the student's own definitions")
    return out, notes


def _imports(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {
        a.asname or a.name
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
