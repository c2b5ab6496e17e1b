"""Collecting submissions as they really come (course_kit.collect), and repairing honest work
whose nbgrader cells were broken (course_kit.repair): no kernel runs here."""

from __future__ import annotations

import io
import zipfile

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_kit.collect import collect_submissions, safe_id
from course_kit.fixture_course import ANSWERS, make_submission, source_notebook
from course_kit.repair import repair_submission


def nb_text(source="x = 1"):
    return nbformat.writes(new_notebook(cells=[new_code_cell(source)]))


def by_name(found):
    return {f.name: f for f in found}


def test_safe_ids_are_stable_distinct_and_keep_plain_names():
    assert safe_id("alice") == "alice" and safe_id("bob_smith-2") == "bob_smith-2"
    odd = ["José Núñez", "Jose Nunez", "bob smith", "李雷", "韩梅梅", "../etc", ".hidden"]
    ids = [safe_id(n) for n in odd]
    assert len(set(ids)) == len(ids)
    assert all(i and all(ch.isalnum() or ch in "_.-" for ch in i) for i in ids)
    assert ids == [safe_id(n) for n in odd]  # stable
    assert safe_id("José Núñez").startswith("Jose_Nunez-")


def test_folder_names_with_spaces_and_accents(tmp_path):
    for name in ("José Núñez", "bob smith", "alice"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "demo.ipynb").write_text(nb_text())
    found = by_name(collect_submissions(tmp_path, "demo"))
    assert set(found) == {"José Núñez", "bob smith", "alice"}
    assert found["alice"].student == "alice" and found["alice"].notes == []
    assert found["José Núñez"].student == safe_id("José Núñez")
    assert any("graded under the id" in n for n in found["bob smith"].notes)


def test_zip_with_students_under_one_top_folder(tmp_path):
    archive = tmp_path / "subs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("submissions/alice/demo.ipynb", nb_text())
        zf.writestr("submissions/bob/work/deep/demo.ipynb", nb_text())  # any depth
        zf.writestr("__MACOSX/submissions/alice/._demo.ipynb", "junk")
    found = by_name(collect_submissions(archive, "demo"))
    assert set(found) == {"alice", "bob"}


def _inner_zip(**files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_lms_zip_as_it_really_comes(tmp_path):
    """Blackboard names in nested folders, __MACOSX, two attempts, a zip inside, user ids with
    underscores, a title with spaces and underscores, a path trying to escape."""
    archive = tmp_path / "gradebook.zip"
    title = "HW_1 Gram"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"dl/{title}_bob_smith_attempt_2030-01-02-09-30-00_demo.ipynb", nb_text("1"))
        zf.writestr(f"dl/{title}_bob_smith_attempt_2030-01-03-08-00-00_demo.ipynb", nb_text("2"))
        zf.writestr(f"dl/{title}_bob_smith_attempt_2030-01-03-08-00-00.txt", "comments")
        zf.writestr(f"dl/old/{title}_carol_x_attempt_2030-01-01-10-00-00_hw.ipynb", nb_text())
        zf.writestr(
            f"dl/{title}_dave_attempt_2030-01-02-10-00-00_files.zip",
            _inner_zip(**{"my work/demo.ipynb": nb_text("3")}),
        )
        zf.writestr(f"__MACOSX/dl/._{title}_bob_smith_attempt_2030-01-02-09-30-00_demo.ipynb", "")
        zf.writestr("../evil.ipynb", nb_text())
    found = by_name(collect_submissions(archive, "demo"))
    assert set(found) == {"bob_smith", "carol_x", "dave"}
    bob = found["bob_smith"]
    assert bob.timestamp == "2030-01-03 08:00:00"  # the latest attempt, its time read right
    assert nbformat.reads(bob.path.read_text(), 4).cells[0].source == "2"
    assert any("2 attempts" in n and "latest" in n for n in bob.notes)
    assert nbformat.reads(found["dave"].path.read_text(), 4).cells[0].source == "3"
    assert any("unsafe path" in n for n in bob.notes)  # said, not fatal
    assert not (tmp_path.parent / "evil.ipynb").exists()


def test_canvas_and_moodle_names(tmp_path):
    (tmp_path / "smithjohn_late_12345_678_demo-1.ipynb").write_text(nb_text())
    moodle = tmp_path / "Ana Lima_4242_assignsubmission_file_"
    moodle.mkdir()
    (moodle / "demo.ipynb").write_text(nb_text())
    found = by_name(collect_submissions(tmp_path, "demo"))
    assert set(found) == {"smithjohn", "Ana Lima_4242"}


def test_two_notebooks_in_a_folder(tmp_path):
    released = tmp_path / "release.ipynb"
    nbformat.write(source_notebook(), released)
    (tmp_path / "subs" / "dan").mkdir(parents=True)
    (tmp_path / "subs" / "dan" / "scratch.ipynb").write_text(nb_text())
    (tmp_path / "subs" / "dan" / "demo.ipynb").write_text(nb_text("2"))
    (tmp_path / "subs" / "eve").mkdir()
    (tmp_path / "subs" / "eve" / "a.ipynb").write_text(nb_text())
    (tmp_path / "subs" / "eve" / "b.ipynb").write_text(nb_text(ANSWERS["correct"]["squares"]))
    found = by_name(collect_submissions(tmp_path / "subs", "demo", released))
    assert found["dan"].path.name == "demo.ipynb" and "graded demo.ipynb" in found["dan"].notes[0]
    assert found["eve"].path.name == "b.ipynb"
    assert "defines the assignment's functions" in found["eve"].notes[0]


def test_bad_input_is_named(tmp_path):
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="must be a folder, a .zip or a .ipynb"):
        collect_submissions(tmp_path / "x.txt", "demo")


# ---- repair -----------------------------------------------------------------------------


@pytest.fixture
def released(tmp_path):
    """A released-like notebook (the source's cells; grading uses nbgrader's real release)."""
    path = tmp_path / "release.ipynb"
    nb = source_notebook()
    for cell in nb.cells:
        if cell.metadata["nbgrader"]["solution"]:
            cell.source = (
                cell.source.split("### BEGIN SOLUTION")[0] + "    raise NotImplementedError()\n"
            )
    nbformat.write(nb, path)
    return path


def _sources(nb):
    return {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}


def test_intact_notebook_is_left_alone(released, tmp_path):
    sub = tmp_path / "s.ipynb"
    nbformat.write(make_submission(released, "correct"), sub)
    nb, notes = repair_submission(sub, released)
    assert notes == [] and nb == nbformat.read(sub, 4)


def test_duplicated_test_cell_and_renamed_ids_are_repaired(released, tmp_path):
    nb = make_submission(released, "correct")
    nb.cells.insert(4, nbformat.from_dict(nb.cells[3]))  # test_squares twice
    for cell in nb.cells:
        if cell.metadata["nbgrader"]["grade_id"] == "normalise":
            cell.metadata["nbgrader"]["grade_id"] = "my-normalise"  # renamed
    sub = tmp_path / "s.ipynb"
    nbformat.write(nb, sub)
    fixed, notes = repair_submission(sub, released)
    src = _sources(fixed)
    assert "values / norm" in src["normalise"] and "(values**2).sum()" in src["squares"]
    assert [c.metadata["nbgrader"]["grade_id"] for c in fixed.cells].count("test_squares") == 1
    assert any("same nbgrader id" in n for n in notes)
    assert any("answer 'normalise'" in n for n in notes)


def test_code_pasted_into_a_new_notebook_is_found(released, tmp_path):
    nb = new_notebook(
        cells=[
            new_code_cell("import numpy as np\nimport math\nSCALE = 1.0"),
            new_code_cell(ANSWERS["correct"]["normalise"]),
            new_code_cell("print(normalise([3, 4]))"),  # scratch: not kept
            new_code_cell(ANSWERS["correct"]["squares"]),
        ]
    )
    sub = tmp_path / "s.ipynb"
    nbformat.write(nb, sub)
    fixed, notes = repair_submission(sub, released)
    src = _sources(fixed)
    assert "values / norm" in src["normalise"] and "(values**2).sum()" in src["squares"]
    assert any("no nbgrader cells" in n for n in notes)
    assert any("import math" in c.source for c in fixed.cells)  # the student's own imports
    assert not any("print(normalise" in c.source for c in fixed.cells)


def test_unreadable_file_is_named(released, tmp_path):
    sub = tmp_path / "s.ipynb"
    sub.write_text("{ not json")
    nb, notes = repair_submission(sub, released)
    assert nb is None and "not a readable notebook" in notes[0]


# ---- hostile names and uploads (issue 24.4, 24.5, 24.7) ----------------------------------


def _colliding_names():
    """Two names whose 24-bit hashes agree and whose ASCII letters are the same ("alice"
    plus a CJK letter that the ASCII part drops): found by a birthday search, as a student
    could."""
    import hashlib

    seen = {}
    for i in range(200_000):
        name = "alice" + chr(0x4E00 + i % 20_000) + chr(0x4E00 + i // 20_000)
        h = hashlib.sha1(name.encode()).hexdigest()[:6]
        if h in seen:
            return seen[h], name
        seen[h] = name
    raise AssertionError("no collision found")


def test_distinct_submitters_never_share_an_id(tmp_path):
    """Attack: a folder named so that its id is another student's ("alice " next to "alice",
    "Jose-8f72d2" next to "José", case, a forged hash collision): one row, someone's grade."""
    import unicodedata

    a, b = _colliding_names()
    names = [
        "alice", "alice ", " alice", "Alice", "ALICE", "José", "Jose-8f72d2", "jose-8f72d2",
        "Jose_8f72d2", "bob smith", "bob_smith", "bob-smith", "李雷", "-x", "x.", a, b,
    ]  # fmt: skip
    for name in names:
        (tmp_path / "subs" / name).mkdir(parents=True)
        (tmp_path / "subs" / name / "demo.ipynb").write_text(nb_text(repr(name)))
    found = collect_submissions(tmp_path / "subs", "demo")
    assert sorted(f.name for f in found) == sorted(names)  # one entry per folder
    ids = [f.student for f in found]
    assert len({i.lower() for i in ids}) == len(names)  # distinct, even ignoring case
    assert all(i and all(ch.isalnum() and ch.isascii() or ch in "_.-" for ch in i) for i in ids)
    assert all(nbformat.reads(f.path.read_text(), 4).cells[0].source == repr(f.name) for f in found)
    assert {f.name: f.student for f in found}["alice"] == "alice"  # plain names kept
    # stable: the same name again (also typed on a Mac, NFD) gets the same id
    again = collect_submissions(tmp_path / "subs", "demo")
    assert [f.student for f in again] == ids
    assert safe_id(unicodedata.normalize("NFD", "José")) == safe_id("José")
    # an id of an earlier run is never given to another name
    known = {f.student: f.name for f in found if f.name == a}
    (tmp_path / "later" / b).mkdir(parents=True)
    (tmp_path / "later" / b / "demo.ipynb").write_text(nb_text())
    [later] = collect_submissions(tmp_path / "later", "demo", known=known)
    assert later.student.lower() not in {k.lower() for k in known}


def test_every_submitter_gets_an_entry_saying_what_was_found(tmp_path):
    """A folder with only a .py, only a .pdf, nothing, or a notebook that is a symbolic link
    (to another student's work, or to a file of the grader's) still gets an entry."""
    subs = tmp_path / "subs"
    for name in ("alice", "pyonly", "pdfonly", "empty", "linked", "dirlink"):
        (subs / name).mkdir(parents=True)
    (subs / "alice" / "demo.ipynb").write_text(nb_text())
    (subs / "pyonly" / "answer.py").write_text("def f(): pass\n")
    (subs / "pdfonly" / "report.pdf").write_bytes(b"%PDF-1.4")
    (subs / "linked" / "demo.ipynb").symlink_to(subs / "alice" / "demo.ipynb")
    (subs / "dirlink" / "work").symlink_to(subs / "alice")
    (subs / "loose.py").write_text("x = 1\n")
    found = by_name(collect_submissions(subs, "demo"))
    assert set(found) == {"alice", "pyonly", "pdfonly", "empty", "linked", "dirlink", "loose"}
    assert found["alice"].path is not None and found["alice"].problem is None
    for name in ("pyonly", "pdfonly", "empty", "linked", "dirlink", "loose"):
        assert found[name].path is None and found[name].problem, name
    assert "answer.py" in found["pyonly"].problem and "report.pdf" in found["pdfonly"].problem
    assert "nothing was submitted" in found["empty"].problem
    assert "symbolic link" in found["linked"].problem
    assert "symbolic link" in found["dirlink"].problem


def _zip_bytes(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bombs_stop_at_their_budgets_with_notes(tmp_path):
    """Attack: a few KB that unpack to gigabytes (nested zips of zeros), zips nested deeper
    than the limit, and a student's zip over its budget: each stops with a note, nothing
    large is written, and the others are collected."""
    from course_kit.collect import Limits

    zeros = _zip_bytes({"payload.ipynb": b"\0" * 50 * 2**20})  # 50 MB -> ~50 KB
    bomb = _zip_bytes({f"copy{i}.zip": zeros for i in range(30)})  # 1.5 GB in all
    deep = _zip_bytes({"demo.ipynb": nb_text("deep")})
    for level in range(5):
        deep = _zip_bytes({f"level{level}.zip": deep})
    rng = __import__("random").Random(0)
    noise = {f"n{i}.ipynb": rng.randbytes(400_000) for i in range(4)}  # 1.6 MB, incompressible
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("alice/demo.ipynb", nb_text())
        zf.writestr("bomber/bomb.zip", bomb)
        zf.writestr("nester/deep.zip", deep)
        zf.writestr("hoarder/all.zip", _zip_bytes(noise, zipfile.ZIP_STORED))
    limits = Limits(student=1_000_000)
    found = by_name(collect_submissions(archive, "demo", limits=limits))
    assert set(found) == {"alice", "bomber", "nester", "hoarder"}
    assert found["alice"].path is not None and not found["alice"].notes
    bomber = " ".join(found["bomber"].notes)
    assert "zip bomb" in bomber and found["bomber"].path is None
    assert "nested more than 3 deep" in " ".join(found["nester"].notes)
    assert "budget of one student's zip is spent" in " ".join(found["hoarder"].notes)
    tight = by_name(collect_submissions(archive, "demo", limits=Limits(upload=500_000)))
    assert "upload's" in " ".join(tight["hoarder"].notes)
