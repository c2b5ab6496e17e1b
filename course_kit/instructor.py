"""The instructor's workflow around nbgrader: release assignments, grade submissions.

``course-kit release`` (``make release``) regenerates ``assignments/`` from ``solutions/``.
``course-kit grade ID SUBMISSIONS`` (``make grade``) takes a folder or an LMS zip of submissions
through collect → autograde → feedback → a grades CSV, one command, safe to re-run:

* submissions are copied to ``grading/submitted/<student>/<id>/<id>.ipynb``; a changed
  resubmission replaces the copy only after the old one is archived in ``grading/archive/``;
* ``nbgrader autograde`` restores tampered or deleted test cells; we also *report* them;
* a kernel that dies still leaves a grade (0) and a feedback page saying what happened;
* ``grading/grades_<id>.csv`` has exactly one row per student, rebuilt from the gradebook.
"""

from __future__ import annotations

import csv
import datetime as dt
import filecmp
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

# <anything>_<student>_attempt_<timestamp>_<file>.ipynb (Blackboard-style LMS downloads)
LMS_PATTERN = re.compile(
    r".*_(?P<student>[A-Za-z0-9.\-]+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file>[^/]+\.ipynb)$"
)
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def project_root() -> Path:
    """The course root: the folder holding ``nbgrader_config.py`` (the repository)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(
        "no course root found: run this from the kit's folder (with nbgrader_config.py and "
        "solutions/) or pass --root"
    )


def assignment_ids(root: Path) -> list[str]:
    """Ids of the assignments in ``solutions/`` (folders holding ``<id>/<id>.ipynb``)."""
    return sorted(
        p.parent.name for p in (root / "solutions").glob("*/*.ipynb") if p.stem == p.parent.name
    )


def _nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course root with this interpreter."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    env = dict(os.environ)
    # nbgrader calls `alembic` (and kernels) from PATH: put this environment's bin first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{tail}")
    return proc


def _check_assignment(root: Path, assignment: str) -> None:
    known = assignment_ids(root)
    if assignment not in known:
        raise ValueError(f"`assignment` must be one of {known}; got {assignment!r}")


def release(root: Path | None = None, assignments: list[str] | None = None) -> list[Path]:
    """Regenerate the student versions in ``assignments/`` from ``solutions/``.

    Returns the released notebooks. The gradebook (``grading/gradebook.db``) learns the
    assignments and their hidden tests on the way.
    """
    root = Path(root or project_root())
    ids = assignments or assignment_ids(root)
    (root / "grading").mkdir(exist_ok=True)
    out = []
    for aid in ids:
        _check_assignment(root, aid)
        _nbgrader(root, "generate_assignment", aid, "--force")
        out += sorted((root / "assignments" / aid).glob("*.ipynb"))
    return out


# ----------------------------------------------------------------------------- collecting


@dataclass
class Submission:
    """One student's notebook found in the submissions."""

    student: str
    path: Path
    timestamp: str | None = None


def _find_submissions(folder: Path, assignment: str) -> list[Submission]:
    """Submissions in a folder: LMS file names, ``<student>/<id>.ipynb``,
    ``<student>/<id>/<id>.ipynb`` or ``<student>.ipynb``."""
    found: list[Submission] = []
    for nb in sorted(folder.rglob("*.ipynb")):
        rel = nb.relative_to(folder)
        if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
            continue
        match = LMS_PATTERN.match(nb.name)
        if match:
            found.append(Submission(match["student"], nb, match["timestamp"]))
        elif len(rel.parts) >= 2:
            found.append(Submission(rel.parts[0], nb))
        else:
            found.append(Submission(nb.stem, nb))
    by_student: dict[str, list[Submission]] = {}
    for sub in found:
        if not STUDENT_ID.match(sub.student):
            raise ValueError(f"cannot use {sub.student!r} (from {sub.path}) as a student id")
        by_student.setdefault(sub.student, []).append(sub)
    chosen = []
    for student, subs in sorted(by_student.items()):
        if len(subs) > 1:
            named = [s for s in subs if s.path.name == f"{assignment}.ipynb"]
            stamped = sorted((s for s in subs if s.timestamp), key=lambda s: s.timestamp or "")
            if len(named) == 1:
                subs = named
            elif stamped:
                subs = [stamped[-1]]  # the latest LMS attempt
            else:
                paths = ", ".join(str(s.path) for s in subs)
                raise ValueError(f"student {student!r} has several notebooks: {paths}")
        chosen.append(subs[0])
    return chosen


def collect(root: Path, assignment: str, submissions: Path) -> tuple[list[str], list[str]]:
    """Copy submissions into ``grading/submitted``; returns (students, messages).

    A zip is unpacked first. A resubmission that differs from the copy already there replaces
    it after the old copy is archived under ``grading/archive/<student>/<id>/``.
    """
    submissions = Path(submissions)
    if not submissions.exists():
        raise FileNotFoundError(f"`submissions` does not exist: {submissions}")
    messages: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = submissions
        if submissions.is_file():
            if not zipfile.is_zipfile(submissions):
                raise ValueError(f"`submissions` must be a folder or a .zip; got {submissions}")
            with zipfile.ZipFile(submissions) as zf:
                for member in zf.namelist():  # refuse paths that escape the folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise ValueError(f"unsafe path in zip: {member!r}")
                zf.extractall(tmp)
            folder = Path(tmp)
            for inner in sorted(folder.rglob("*.zip")):  # LMS zips of zips
                with zipfile.ZipFile(inner) as zf:
                    zf.extractall(inner.with_suffix(""))
        subs = _find_submissions(folder, assignment)
        if not subs:
            raise ValueError(f"no .ipynb submissions found in {submissions}")
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
        for sub in subs:
            dest_dir = root / "grading" / "submitted" / sub.student / assignment
            dest = dest_dir / f"{assignment}.ipynb"
            if dest.exists():
                if filecmp.cmp(dest, sub.path, shallow=False):
                    continue
                stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
                archive = root / "grading" / "archive" / sub.student / assignment / f"{stamp}.ipynb"
                archive.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dest, archive)
                messages.append(f"{sub.student}: new submission; previous one kept in {archive}")
            dest_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sub.path, dest)
            (dest_dir / "timestamp.txt").write_text(now)
    return [s.student for s in subs], messages


# ----------------------------------------------------------------------------- integrity


def integrity_report(released: Path, submitted: Path) -> list[str]:
    """Locked cells (tests, read-only) of the released notebook that the submission deleted,
    edited or duplicated. nbgrader restores them when grading; this says that it happened."""
    try:
        sub = nbformat.read(submitted, as_version=4)
    except Exception as err:  # noqa: BLE001 - any unreadable file
        return [f"notebook could not be read ({type(err).__name__}: {err})"]
    ref = nbformat.read(released, as_version=4)
    cells: dict[str, list[str]] = {}
    for cell in sub.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid:
            cells.setdefault(gid, []).append(cell.source)
    problems = []
    for cell in ref.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("locked"):
            continue
        gid = meta["grade_id"]
        kind = "test cell" if meta.get("grade") else "read-only cell"
        if gid not in cells:
            problems.append(f"{kind} {gid!r} deleted (restored for grading)")
        elif len(cells[gid]) > 1:
            problems.append(f"{kind} {gid!r} duplicated")
        elif cells[gid][0].strip() != cell.source.strip():
            problems.append(f"{kind} {gid!r} edited (original restored for grading)")
    return problems


# ----------------------------------------------------------------------------- grading


@dataclass
class GradeRow:
    """One student's result."""

    student: str
    score: float
    max_score: float
    status: str
    feedback: str
    notes: list[str] = field(default_factory=list)


def grade(
    assignment: str,
    submissions: Path | str,
    *,
    root: Path | None = None,
    timeout: int | None = None,
) -> list[GradeRow]:
    """Collect, autograde, write feedback and ``grading/grades_<id>.csv``; returns the rows.

    Args:
        assignment: an id from ``solutions/``.
        submissions: a folder (``<student>/<id>.ipynb``, ``<student>/<id>/<id>.ipynb``,
            ``<student>.ipynb`` or LMS file names) or a zip of one.
        root: the course root (default: found from the current folder).
        timeout: seconds per cell (default: ``Execute.timeout`` in nbgrader_config.py).
    """
    from nbgrader.api import Gradebook, MissingEntry

    root = Path(root or project_root()).resolve()
    _check_assignment(root, assignment)
    grading = root / "grading"
    grading.mkdir(exist_ok=True)
    # Register the assignment and its hidden tests in the gradebook, without touching the
    # committed release in assignments/.
    _nbgrader(
        root,
        "generate_assignment",
        assignment,
        "--force",
        "--CourseDirectory.release_directory=grading/release",
    )
    released = grading / "release" / assignment / f"{assignment}.ipynb"
    students, messages = collect(root, assignment, Path(submissions))
    for line in messages:
        print(line)

    extra = [f"--Execute.timeout={int(timeout)}"] if timeout else []
    proc = _nbgrader(root, "autograde", assignment, *extra, check=False)
    log = grading / "logs" / f"autograde_{assignment}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    _nbgrader(root, "generate_feedback", assignment, "--force", check=False)

    rows: list[GradeRow] = []
    with Gradebook(f"sqlite:///{grading / 'gradebook.db'}") as gb:
        max_score = gb.find_assignment(assignment).max_score
        for student in sorted(_all_students(grading, assignment)):
            submitted = grading / "submitted" / student / assignment / f"{assignment}.ipynb"
            autograded = grading / "autograded" / student / assignment
            feedback = grading / "feedback" / student / assignment / f"{assignment}.html"
            notes = integrity_report(released, submitted)
            try:
                score = float(gb.find_submission(assignment, student).score)
            except MissingEntry:
                score = 0.0
            if autograded.is_dir():
                status = "graded"
            else:
                status = "not graded: the kernel died or the notebook could not be run"
                notes.append(status + "; scored 0 (see " + str(log.relative_to(root)) + ")")
                score = 0.0
                _write_failure_feedback(feedback, student, assignment, max_score, notes)
            rows.append(
                GradeRow(
                    student, score, float(max_score), status, str(feedback.relative_to(root)), notes
                )
            )
    _write_csv(grading / f"grades_{assignment}.csv", assignment, rows)
    _nbgrader(root, "export", "--to", str(grading / "grades.csv"), check=False)
    return rows


def _all_students(grading: Path, assignment: str) -> list[str]:
    return [p.parent.name for p in (grading / "submitted").glob(f"*/{assignment}")]


def _write_failure_feedback(
    path: Path, student: str, assignment: str, max_score: float, notes: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{assignment}</title></head>"
        f"<body><h1>{html.escape(assignment)} (Score: 0.0 / {max_score})</h1>"
        f"<p>Your notebook, {html.escape(student)}, could not be graded: the Python kernel "
        "stopped while running it (for example by exiting, crashing or running out of memory)."
        " Run it top to bottom yourself (Kernel → Restart and Run All) before resubmitting.</p>"
        f"<ul>{items}</ul></body></html>"
    )


def _write_csv(path: Path, assignment: str, rows: list[GradeRow]) -> None:
    tmp = path.with_suffix(".part")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["student", "assignment", "score", "max_score", "status", "feedback", "notes"]
        )
        for r in rows:
            writer.writerow(
                [
                    r.student,
                    assignment,
                    f"{r.score:g}",
                    f"{r.max_score:g}",
                    r.status,
                    r.feedback,
                    " | ".join(r.notes),
                ]
            )
    tmp.replace(path)
