"""The instructor's workflow end to end on the fixture course: release, then grade a batch of
realistic submissions (folder and LMS zip), twice."""

from __future__ import annotations

import csv
import html
import re
import zipfile

import nbformat
import pytest

from course_kit import instructor
from course_kit.fixture_course import make_course, make_submission

pytestmark = pytest.mark.slow

KINDS = {
    "alice": "correct",  # 6 / 6
    "bob": "untouched",  # 0
    "carol": "partial",  # squares right (2), normalise wrong
    "dave": "loop",  # squares cell times out
    "erin": "crash",  # kernel dies
    "frank": "syntax",
    "gina": "chatty",  # prints megabytes
    "hank": "tamper",  # edits a test cell
    "ivy": "delete",  # deletes a test cell
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    root = make_course(tmp)
    released = instructor.release(root)
    assert released == [root / "assignments" / "demo" / "demo.ipynb"]
    subs = tmp / "submissions"
    for student, kind in KINDS.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(make_submission(released[0], kind), subs / student / "demo.ipynb")
    rows = instructor.grade("demo", subs, root=root, timeout=10)
    return root, released[0], subs, {r.student: r for r in rows}


def test_release_strips_solutions_and_hidden_tests(graded):
    root, released, _, _ = graded
    text = released.read_text()
    assert "raise NotImplementedError()" in text
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "285.0" not in text  # a hidden expected value
    assert not (root / "gradebook.db").exists() and (root / "grading" / "gradebook.db").exists()


def test_every_student_gets_a_grade_and_feedback(graded):
    root, _, _, rows = graded
    assert set(rows) == set(KINDS)
    for student, row in rows.items():
        assert (root / row.feedback).is_file(), student
        assert row.max_score == 6


def test_scores(graded):
    _, _, _, rows = graded
    assert rows["alice"].score == 6
    assert rows["bob"].score == 0
    assert 0 < rows["carol"].score < 6  # partial credit: squares right, normalise wrong
    assert rows["dave"].score == 4  # only the looping function's 2 points are lost
    assert rows["erin"].score == 0 and "kernel died" in rows["erin"].status
    assert rows["erin"].status.startswith("not graded")
    assert rows["frank"].score == 4  # the syntax error costs only the squares points
    assert rows["gina"].score == 6  # output is truncated, grades are not affected
    assert rows["hank"].score == 6  # the test cell is restored and passes
    assert rows["ivy"].score == 6  # the deleted test cell is put back


def test_tampering_is_reported(graded):
    _, _, _, rows = graded
    assert any("test_normalise" in n and "edited" in n for n in rows["hank"].notes)
    assert any("test_squares" in n and "deleted" in n for n in rows["ivy"].notes)
    assert rows["alice"].notes == []


def visible_text(path):
    """A feedback page's text without its style sheets and scripts (MathJax, Bootstrap)."""
    text = re.sub(r"<(style|script)\b.*?</\1>", "", path.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def test_feedback_shows_verdicts_and_hides_hidden_tests(graded):
    root, _, _, rows = graded
    page = visible_text(root / rows["bob"].feedback)
    assert "Score: 0.0 / 6.0" in page
    assert "285" not in page and "HIDDEN TESTS" not in page
    assert "np.arange(10)" not in page  # the hidden report calls are cut with their block
    assert "hidden check 'squares-arange'" in page  # only which hidden check failed is said
    carol = visible_text(root / rows["carol"].feedback)
    # the judge's verdict: which check failed, and for a hidden one nothing about its values
    assert "hidden check 'normalise-hidden' failed" in carol
    assert "0.333" not in carol and "0.666" not in carol  # normalise([1, -2, 2]), hidden
    raw = (root / rows["carol"].feedback).read_text()
    assert "Test cell <code>test_normalise</code>" in raw  # grade ids in the summary
    assert "cdnjs" not in raw and "MathJax.Hub" in raw  # MathJax inlined, not a CDN
    gina = root / rows["gina"].feedback
    assert gina.stat().st_size < 1_500_000  # 5 MB of printing, capped
    assert "output truncated by the grader" in gina.read_text()


def test_csv_has_one_row_per_student_and_rerun_keeps_grades(graded):
    root, _, subs, rows = graded
    path = root / "grading" / "grades_demo.csv"
    before = list(csv.DictReader(path.open()))
    assert sorted(r["student"] for r in before) == sorted(KINDS)
    again = instructor.grade("demo", subs, root=root, timeout=10)
    after = list(csv.DictReader(path.open()))
    assert len(again) == len(KINDS) and len(after) == len(before)
    assert {r["student"]: r["score"] for r in after} == {r["student"]: r["score"] for r in before}


def test_lms_zip_resubmission_archives_the_old_copy(graded, tmp_path):
    root, released, _, _ = graded
    nb = make_submission(released, "correct")
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        name = "demo_bob_attempt_2030-01-02-09-30-00_demo.ipynb"
        zf.writestr(name, nbformat.writes(nb))
    rows = {r.student: r for r in instructor.grade("demo", archive, root=root, timeout=10)}
    assert rows["bob"].score == 6
    kept = list((root / "grading" / "archive" / "bob" / "demo").glob("*.ipynb"))
    assert len(kept) == 1  # bob's first (untouched) submission was not lost
    assert rows["alice"].score == 6  # others untouched


def test_bad_arguments(tmp_path):
    root = make_course(tmp_path)
    with pytest.raises(ValueError, match="`assignment` must be one of"):
        instructor.grade("nope", tmp_path, root=root)
    with pytest.raises(FileNotFoundError, match="`submissions` does not exist"):
        instructor.grade("demo", tmp_path / "missing", root=root)


def test_release_never_overwrites_work_silently(graded):
    root, released, _, _ = graded
    worked = make_submission(released, "correct")  # someone solved it in assignments/
    nbformat.write(worked, released)
    (released.parent / "my_plot.png").write_bytes(b"png")
    with pytest.raises(FileExistsError, match="assignments/demo/demo.ipynb"):
        instructor.release(root)
    assert "values / norm" in released.read_text()  # untouched
    instructor.release(root, force=True)
    text = released.read_text()
    assert "values / norm" not in text and "raise NotImplementedError()" in text
    assert not (released.parent / "my_plot.png").exists()
    kept = sorted((root / "grading" / "kept_work").rglob("*"))
    names = [p.name for p in kept if p.is_file()]
    assert sorted(names) == ["demo.ipynb", "my_plot.png"]
    assert "values / norm" in next(p for p in kept if p.name == "demo.ipynb").read_text()
