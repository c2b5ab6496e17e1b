"""A tiny nbgrader course, built in a temporary folder: the grading tests and benchmarks use it.

The fixture assignment ``demo`` asks for two NumPy functions; its tests are split into several
grade cells (visible and hidden parts) so that partial credit shows. ``make_submission`` writes
the kinds of notebooks students really hand in: correct, untouched, partial, looping forever,
killing the kernel, with a syntax error, printing megabytes, tampering with a test cell.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent


def nbg(cell, grade_id: str, *, grade=False, solution=False, locked=False, points=None):
    """Attach nbgrader metadata (schema 3) to a cell."""
    meta = {
        "schema_version": 3,
        "grade": grade,
        "solution": solution,
        "locked": locked,
        "grade_id": grade_id,
    }
    if grade:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


SOLUTION_SQUARES = """def sum_of_squares(values):
    \"\"\"Sum of the squares of a 1-D array.\"\"\"
    ### BEGIN SOLUTION
    values = np.asarray(values, dtype=float)
    return float((values**2).sum())
    ### END SOLUTION
"""

SOLUTION_NORMALISE = """def normalise(values):
    \"\"\"Scale a 1-D array to unit Euclidean norm; a zero array is a ValueError.\"\"\"
    ### BEGIN SOLUTION
    values = np.asarray(values, dtype=float)
    norm = np.sqrt((values**2).sum())
    if norm == 0:
        raise ValueError("`values` must not be all zeros")
    return values / norm
    ### END SOLUTION
"""

# Judged tests (course_kit.judge): visible checks stay as they are for the student; each cell
# also *reports* what the student's functions return on the test's inputs, and the grader
# compares those results with its own run of the solution. No expected value of a hidden test
# appears in the cell (285.0, say, is computed by the grader only).
TEST_SQUARES = """from course_lib.grading import check_close, check_implemented, report
check_close("sum_of_squares([1, 2])", check_implemented(sum_of_squares, [1, 2]), 5.0)
report("squares-1-2", lambda: sum_of_squares([1, 2]))
### BEGIN HIDDEN TESTS
report("squares-empty", lambda: sum_of_squares([]))
report("squares-arange", lambda: sum_of_squares(np.arange(10)))
### END HIDDEN TESTS
"""

TEST_NORMALISE = """from course_lib.grading import check_close, check_implemented, report
check_close("normalise([3, 4])", check_implemented(normalise, [3, 4]), [0.6, 0.8])
report("normalise-3-4", lambda: normalise([3, 4]))
### BEGIN HIDDEN TESTS
report("normalise-hidden", lambda: normalise(np.array([1.0, -2.0, 2.0])), rtol=1e-9)
### END HIDDEN TESTS
"""

# An exception's name is public (a student could fake it): paired with a value check.
TEST_NORMALISE_ERRORS = """from course_lib.grading import report
### BEGIN HIDDEN TESTS
report("normalise-zeros", lambda: normalise([0.0, 0.0]), compare="raises")
report("normalise-negative", lambda: normalise([-3.0, 0.0, 4.0]))
### END HIDDEN TESTS
"""


def source_notebook() -> nbformat.NotebookNode:
    """The instructor's notebook of the ``demo`` assignment (6 points)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbg(
            new_markdown_cell("# Demo assignment\nImplement two small functions."),
            "intro",
            locked=True,
        ),
        nbg(new_code_cell("import numpy as np"), "setup", locked=True),
        nbg(new_code_cell(SOLUTION_SQUARES), "squares", solution=True),
        nbg(new_code_cell(TEST_SQUARES), "test_squares", grade=True, locked=True, points=2),
        nbg(new_code_cell(SOLUTION_NORMALISE), "normalise", solution=True),
        nbg(new_code_cell(TEST_NORMALISE), "test_normalise", grade=True, locked=True, points=3),
        nbg(
            new_code_cell(TEST_NORMALISE_ERRORS),
            "test_normalise_errors",
            grade=True,
            locked=True,
            points=1,
        ),
    ]
    return nb


def make_course(tmp: Path) -> Path:
    """A course root in ``tmp`` with the kit's nbgrader_config.py and the ``demo`` source."""
    root = tmp / "course"
    (root / "solutions" / "demo").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    nbformat.write(source_notebook(), root / "solutions" / "demo" / "demo.ipynb")
    return root


def _strip_markers(src: str) -> str:
    return "\n".join(line for line in src.splitlines() if "### " not in line) + "\n"


ANSWERS = {
    "correct": {
        "squares": _strip_markers(SOLUTION_SQUARES),
        "normalise": _strip_markers(SOLUTION_NORMALISE),
    },
    "partial": {
        "squares": _strip_markers(SOLUTION_SQUARES),
        "normalise": "def normalise(values):\n    return np.asarray(values) / 5.0\n",
    },
    "loop": {
        "squares": "def sum_of_squares(values):\n    while True:\n        pass\n",
        "normalise": _strip_markers(SOLUTION_NORMALISE),
    },
    "crash": {"squares": "import os\nos._exit(1)\n"},
    "syntax": {
        "squares": "def sum_of_squares(values)\n    return 0\n",
        "normalise": _strip_markers(SOLUTION_NORMALISE),
    },
    "chatty": {
        "squares": "print('x' * 5_000_000)\n" + _strip_markers(SOLUTION_SQUARES),
        "normalise": _strip_markers(SOLUTION_NORMALISE),
    },
}


def make_submission(released: Path, kind: str) -> nbformat.NotebookNode:
    """A student's notebook made from the released one.

    ``kind``: ``"untouched"``, a key of :data:`ANSWERS`, ``"tamper"`` (correct squares, the
    normalise test cell replaced by ``pass``) or ``"delete"`` (correct answers, one test cell
    deleted).
    """
    nb = nbformat.read(released, as_version=4)
    answers = dict(ANSWERS.get(kind, {}))
    if kind in ("tamper", "delete"):
        answers = dict(ANSWERS["correct"])
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
        if kind == "tamper" and gid == "test_normalise":
            cell.source = "pass  # tests? what tests"
    if kind == "delete":
        nb.cells = [
            c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_squares"
        ]
    return nb
