"""The four real assignments through the real grading workflow: a submission made of the
solutions scores full marks, the untouched release scores 0, and the run does not crash."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from course_kit import instructor
from course_kit.nbrun import ROOT

pytestmark = pytest.mark.slow
IDS = instructor.assignment_ids(ROOT)


def solved_copy(source: nbformat.NotebookNode, released: nbformat.NotebookNode):
    """The released notebook with every answer cell filled in from the source (markers removed),
    as a student who got everything right would hand it in."""
    answers = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = [
                ln
                for ln in cell.source.splitlines()
                if "### BEGIN SOLUTION" not in ln and "### END SOLUTION" not in ln
            ]
            answers[meta["grade_id"]] = "\n".join(lines)
    out = nbformat.from_dict(released)
    for cell in out.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return out


@pytest.mark.parametrize("aid", IDS)
def test_solution_full_marks_release_zero(aid, tmp_path):
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / aid, root / "solutions" / aid)
    [released_path] = instructor.release(root, [aid])
    released = nbformat.read(released_path, 4)
    source = nbformat.read(root / "solutions" / aid / f"{aid}.ipynb", 4)
    subs = tmp_path / "subs"
    for student, nb in {"solved": solved_copy(source, released), "untouched": released}.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{aid}.ipynb")
    rows = {r.student: r for r in instructor.grade(aid, subs, root=root)}
    assert rows["solved"].status == "graded" and rows["untouched"].status == "graded"
    assert rows["solved"].score == rows["solved"].max_score > 0, rows["solved"]
    assert rows["untouched"].score == 0
    assert rows["solved"].notes == [] and rows["untouched"].notes == []
    page = (root / rows["untouched"].feedback).read_text()
    assert "BEGIN HIDDEN TESTS" not in page
