"""The instructor's workflow around nbgrader: release assignments, grade submissions.

``course-kit release`` (``make release``) regenerates ``assignments/`` from ``solutions/``; it
refuses to overwrite a released notebook that holds someone's answers (and names it) unless
``--force``, which first keeps a copy under the grading folder's ``kept_work/``.

``course-kit grade ID SUBMISSIONS`` (``make grade``) takes a folder or an LMS zip of submissions
through collect → sandboxed autograde → judge → feedback → a grades CSV, one command, safe to
re-run, and never stops the batch for one student:

* **collect** (:mod:`course_kit.collect`): any file names and folder depths, LMS zips as they
  come; each student gets a stable safe id, kept beside the original name in the CSV;
* **repair**: a submission whose nbgrader cells were duplicated, renamed or lost (pasted into a
  new notebook) is rebuilt on the released notebook, its answers found by the graded functions'
  names; the notes say what was repaired;
* **sandbox** (:mod:`course_kit.sandbox`): each submission runs alone, in a private copy of the
  course (bubblewrap where available), with limits on memory, CPU, processes and output;
* **import and judge** (:mod:`course_kit.judge`): the grader reads each executed notebook back as
  data, writes the scores into the real gradebook with nbgrader's own preprocessors (no code
  runs), then replaces the score of every judged test cell by the judge's verdict;
* **feedback**: nbgrader's pages, with the judge's verdicts, without hidden tests, library
  frames or grader paths, with long lines wrapped, capped outputs and MathJax inlined;
* ``grades_<id>.csv`` in the grading folder has exactly one row per student.

A rerun keeps (does not run again) a submission unchanged since it was judged only while the
gradebook in use still holds that judged result (``judge/graded_<id>.json``, written atomically
once judging has finished, names the gradebook and the score): a run killed half-way, or a
``--db`` pointing elsewhere, means those submissions are graded again.

Every path comes from nbgrader's ``CourseDirectory`` as ``nbgrader_config.py`` sets it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import filecmp
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import exchange, judge, nbgrader_hooks, sandbox, workers
from .collect import Found, collect_submissions
from .repair import repair_submission


def project_root() -> Path:
    """The course root: the folder holding ``nbgrader_config.py`` (the repository)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    raise FileNotFoundError(
        "no course root found: run this from the kit's folder (with nbgrader_config.py) or pass "
        "--root"
    )


# ----------------------------------------------------------------------------- paths


def load_config(root: Path):
    """The traitlets config of ``<root>/nbgrader_config.py`` (as nbgrader itself loads it)."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


@dataclass
class CoursePaths:
    """The folders of a course, from nbgrader's ``CourseDirectory`` (nbgrader_config.py)."""

    root: Path
    coursedir: object
    config: object

    def _fmt(self, step: str, student: str, assignment: str) -> Path:
        return Path(self.coursedir.format_path(getattr(self.coursedir, step), student, assignment))

    def source(self, aid: str) -> Path:
        return self._fmt("source_directory", ".", aid)

    def release(self, aid: str) -> Path:
        return self._fmt("release_directory", ".", aid)

    def submitted(self, student: str, aid: str) -> Path:
        return self._fmt("submitted_directory", student, aid)

    def autograded(self, student: str, aid: str) -> Path:
        return self._fmt("autograded_directory", student, aid)

    def feedback(self, student: str, aid: str) -> Path:
        return self._fmt("feedback_directory", student, aid)

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    def gradebook_flags(self) -> list[str]:
        """The gradebook settings for an ``nbgrader`` command (``--db`` overrides the config)."""
        return [
            f"--CourseDirectory.db_url={self.db_url}",
            f"--CourseDirectory.course_id={self.coursedir.course_id}",
        ]

    @property
    def workspace(self) -> Path:
        """The grading folder (the gradebook's folder for sqlite, else above ``submitted``)."""
        url = self.db_url
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///") :]).parent
        return (self.root / self.coursedir.submitted_directory).parent

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.workspace)


def course_paths(root: Path | str, *, db_url: str | None = None) -> CoursePaths:
    from nbgrader.coursedir import CourseDirectory

    root = Path(root).resolve()
    config = load_config(root)
    if "root" not in config.get("CourseDirectory", {}):
        config.CourseDirectory.root = str(root)
    if db_url:
        config.CourseDirectory.db_url = db_url
    if not config.CourseDirectory.get("course_id") and not config.CourseDirectory.get(
        "db_url", "sqlite"
    ).startswith("sqlite"):
        # nbgrader adds no course row for the empty id, and a database server (unlike SQLite)
        # enforces the foreign key: use the id nbgrader's Gradebook itself defaults to
        config.CourseDirectory.course_id = "default_course"
    cd = CourseDirectory(config=config)
    return CoursePaths(Path(cd.root), cd, config)


def check_database(db_url: str) -> None:
    """Connect to the gradebook at ``db_url`` once, before any grading.

    Raises:
        RuntimeError: it cannot be reached (the message names it; nothing was written).
    """
    import sqlalchemy

    shown = re.sub(r"//[^@/]*@", "//***@", db_url)  # never print a password
    try:
        engine = sqlalchemy.create_engine(db_url)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as err:
        raise RuntimeError(
            f"cannot use the gradebook database {shown}: its driver is not installed "
            f"({type(err).__name__}: {err}); for PostgreSQL, `pip install 'course-kit[cluster]'` "
            "(psycopg); nothing was graded or written"
        ) from err
    except sqlalchemy.exc.ArgumentError as err:
        raise RuntimeError(
            f"`db_url` must be an SQLAlchemy URL such as postgresql://host/course or "
            f"sqlite:////path/gradebook.db; got {shown!r} ({err}); nothing was graded or written"
        ) from err
    try:
        with engine.connect():
            pass
    except Exception as err:  # noqa: BLE001 - refused, unknown host, wrong password: all unreachable
        raise RuntimeError(
            f"cannot reach the gradebook database {shown} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); nothing was graded or written"
        ) from err


def assignment_ids(root: Path) -> list[str]:
    """Ids of the assignments in the source folder (folders holding ``<id>/<id>.ipynb``)."""
    paths = course_paths(root)
    base = paths.source("x").parent
    return sorted(p.parent.name for p in base.glob("*/*.ipynb") if p.stem == p.parent.name)


def _environment_on_path() -> None:
    """Put this environment's bin first on PATH: nbgrader runs ``alembic`` from PATH when it
    creates a gradebook (in this process for a ``--db`` server, in ``nbgrader`` for SQLite)."""
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])


def _nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course root with this interpreter."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    _environment_on_path()  # nbgrader calls `alembic` (and kernels) from PATH
    env = dict(os.environ)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{tail}")
    return proc


def _check_assignment(root: Path, assignment: str) -> None:
    known = assignment_ids(root)
    if assignment not in known:
        raise ValueError(f"`assignment` must be one of {known}; got {assignment!r}")


# ----------------------------------------------------------------------------- release


def _answers(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Answer cells (nbgrader solution cells) and cells a student added, by id / position."""
    out = {}
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            out[meta.get("grade_id", f"#{i}")] = cell.source.strip()
        elif not meta and cell.cell_type == "code" and cell.source.strip():
            out[f"added:{cell.source.strip()}"] = cell.source.strip()
    return out


def student_work(existing: Path, fresh: Path) -> bool:
    """True when ``existing`` (a released notebook) holds answers or cells the fresh release
    does not: someone worked in it."""
    try:
        old = nbformat.read(existing, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook: treat as work, never lose it
        return True
    new = nbformat.read(fresh, as_version=4) if fresh.is_file() else nbformat.v4.new_notebook()
    mine, theirs = _answers(old), _answers(new)
    return any(theirs.get(k) != v for k, v in mine.items())


def release(
    root: Path | None = None, assignments: list[str] | None = None, *, force: bool = False
) -> list[Path]:
    """Regenerate the student versions in the release folder (``assignments/``) from the source.

    A released notebook that holds answers (someone worked in ``assignments/``) is never
    overwritten silently: without ``force`` this raises ``FileExistsError`` naming the files;
    with ``force`` a copy is kept in ``<grading>/kept_work/`` first. Returns the released
    notebooks. The gradebook learns the assignments and their hidden tests on the way.
    """
    paths = course_paths(root or project_root())
    root = paths.root
    ids = assignments or assignment_ids(root)
    for aid in ids:
        _check_assignment(root, aid)
    paths.workspace.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="course-kit-release-") as tmp:
        busy: list[tuple[Path, Path]] = []
        for aid in ids:
            _nbgrader(
                root,
                "generate_assignment",
                aid,
                "--force",
                f"--CourseDirectory.release_directory={tmp}",
            )
            dest = paths.release(aid)
            for old in sorted(p for p in dest.rglob("*") if p.is_file()) if dest.is_dir() else []:
                fresh = Path(tmp) / aid / old.relative_to(dest)
                if ".ipynb_checkpoints" in old.parts or "__pycache__" in old.parts:
                    continue
                if old.suffix == ".ipynb" and student_work(old, fresh):
                    busy.append((old, fresh))
                elif old.suffix != ".ipynb" and not fresh.is_file():
                    busy.append((old, fresh))  # a file of someone's, not part of the release
        if busy and not force:
            names = ", ".join(str(p.relative_to(root)) for p, _ in busy)
            raise FileExistsError(
                f"not releasing: {names} hold(s) answers someone wrote (cells differ from the "
                "release). Move the file(s) away first, or run `course-kit release --force` "
                f"(`make release FORCE=1`), which keeps a copy in {paths.workspace / 'kept_work'}"
            )
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        for old, _ in busy:
            kept = paths.workspace / "kept_work" / stamp / old.relative_to(root)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(old, kept)
            print(f"kept a copy of {old.relative_to(root)} (it held answers) in {kept}")
        for aid in ids:
            dest = paths.release(aid)
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(Path(tmp) / aid, dest)
            out += sorted(dest.glob("*.ipynb"))
    return out


# ----------------------------------------------------------------------------- integrity


def integrity_report(released: Path, submitted: Path) -> list[str]:
    """Locked cells (tests, read-only) of the released notebook that the submission deleted,
    edited or duplicated. nbgrader restores them when grading; this says that it happened."""
    try:
        sub = nbformat.read(submitted, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the repair step
        return []
    ref = nbformat.read(released, as_version=4)
    cells: dict[str, list[str]] = {}
    for cell in sub.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid:
            cells.setdefault(gid, []).append(cell.source)
    if not cells:
        return []  # no nbgrader cells at all: the repair step says so
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
    name: str = ""


EXEC_SETTINGS = ("Execute", "IgnorePattern", "OverwriteCells", "LimitOutput", "ClearOutput")
# settings the sandbox makes itself: an instructor's value would take the kernel out of it
SANDBOX_OWNED = ("kernel_manager_class",)


def _exec_settings(config, timeout: int | None) -> dict[str, dict]:
    """The instructor's execution settings (timeout, IgnorePattern, ...) for the sandbox."""
    out: dict[str, dict] = {}
    for section in EXEC_SETTINGS:
        values = dict(config.get(section, {}))
        clean = {
            k: v
            for k, v in values.items()
            if isinstance(v, (int, float, str, bool, list)) and k not in SANDBOX_OWNED
        }
        if clean:
            out[section] = clean
    if timeout:
        out.setdefault("Execute", {})["timeout"] = int(timeout)
        out["Execute"]["error_on_timeout"] = nbgrader_hooks.timeout_error(int(timeout))
    return out


def _source_digest(paths: CoursePaths, assignment: str) -> str:
    """A hash of the assignment's source folder and of the course's nbgrader_config.py."""
    h = hashlib.sha256((paths.root / "nbgrader_config.py").read_bytes())
    src = paths.source(assignment)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(src)).encode() + path.read_bytes())
    return h.hexdigest()


def _register(paths: CoursePaths, assignment: str) -> Path:
    """Make the real gradebook know the assignment (``generate_assignment`` into the grading
    folder, leaving the committed release alone), once per version of the source."""
    work = paths.workspace
    released = work / "release" / assignment / f"{assignment}.ipynb"
    stamp = work / "judge" / f"registered_{assignment}.txt"
    digest = _source_digest(paths, assignment)
    if released.is_file() and stamp.is_file() and stamp.read_text() == digest:
        from nbgrader.api import Gradebook, MissingEntry

        try:
            with Gradebook(paths.db_url) as gb:
                gb.find_assignment(assignment)
            return released
        except MissingEntry:
            pass
    _nbgrader(
        paths.root,
        "generate_assignment",
        assignment,
        "--force",
        f"--CourseDirectory.release_directory={work / 'release'}",
        *paths.gradebook_flags(),
    )
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)
    return released


def _template_db(paths: CoursePaths, assignment: str, tmp: Path) -> Path:
    """A gradebook that knows only the assignment (no students): the sandbox's copy. Made by
    ``generate_assignment`` into an empty gradebook, once per version of the source."""
    cached = paths.workspace / "judge" / f"template_{assignment}.db"
    stamp = cached.with_suffix(".txt")
    digest = _source_digest(paths, assignment)
    if cached.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return cached
    db = tmp / "template.db"
    _nbgrader(
        paths.root,
        "generate_assignment",
        assignment,
        "--force",
        f"--CourseDirectory.release_directory={tmp / 'template-release'}",
        f"--CourseDirectory.db_url=sqlite:///{db}",
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, cached)
    stamp.write_text(digest)
    return cached


def _grade_one(
    paths: CoursePaths,
    assignment: str,
    student: str,
    notebook: nbformat.NotebookNode,
    template_db: Path,
    settings: dict,
    *,
    timeout: int,
    limits: sandbox.Limits | None,
    mode: str,
    timestamp: str | None,
) -> sandbox.SandboxResult:
    with tempfile.TemporaryDirectory(prefix="course-kit-sandbox-") as tmp:
        private = Path(tmp) / "course"
        sub = private / "submitted" / student / assignment
        sub.mkdir(parents=True)
        nbformat.write(notebook, sub / f"{assignment}.ipynb")
        if timestamp:
            (sub / "timestamp.txt").write_text(timestamp)
        # the assignment's other files: for nbgrader (outside the sandbox) and, as a separate
        # copy, the kernel's working folder (the only course files the kernel sees)
        public = shutil.ignore_patterns("*.ipynb", ".*", "__pycache__", "*.pyc")
        shutil.copytree(paths.source(assignment), private / "source" / assignment, ignore=public)
        work = Path(tmp) / "work"
        shutil.copytree(paths.source(assignment), work, ignore=public)
        shutil.copy(template_db, private / "gradebook.db")
        sandbox.write_config(private, settings)
        n_cells = sum(1 for c in notebook.cells if c.get("cell_type") == "code")
        result = sandbox.run_autograde(
            private,
            work,
            assignment,
            student,
            timeout=timeout,
            n_cells=n_cells,
            limits=limits,
            mode=mode,
        )
        if result.notebook is not None:
            staged = paths.workspace / "executed" / student / assignment
            if staged.exists():
                shutil.rmtree(staged)
            staged.mkdir(parents=True)
            size = result.notebook.stat().st_size
            if size > 200 * 2**20:
                result.problem = f"the executed notebook is too large ({size / 2**20:.0f} MB)"
                result.notebook = None
            else:
                shutil.copyfile(result.notebook, staged / f"{assignment}.ipynb")
                if timestamp:
                    (staged / "timestamp.txt").write_text(timestamp)
                result.notebook = staged / f"{assignment}.ipynb"
        return result


def _import_executed(paths: CoursePaths, assignment: str, students: list[str]) -> str:
    """Autograde the executed notebooks *without running them*: nbgrader restores the test
    cells and metadata from the gradebook, caps outputs and saves the scores. Returns its log."""
    import logging

    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

    if not students:
        return ""
    config = load_config(paths.root)
    config.CourseDirectory.root = str(paths.root)
    config.CourseDirectory.submitted_directory = os.path.relpath(
        paths.workspace / "executed", paths.root
    )
    config.CourseDirectory.assignment_id = assignment
    config.CourseDirectory.db_url = paths.db_url
    config.CourseDirectory.course_id = paths.coursedir.course_id
    config.OverwriteCells.add_missing_cells = False  # a test cell missing here scores 0 below
    config.Autograde.sanitize_preprocessors = [
        "nbgrader.preprocessors.DeduplicateIds",
        "nbgrader.preprocessors.OverwriteKernelspec",
        "nbgrader.preprocessors.OverwriteCells",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    config.Autograde.autograde_preprocessors = [
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "course_kit.nbgrader_hooks.CapOutputs",
        "course_kit.nbgrader_hooks.SanitiseStudentHTML",  # what the Formgrader shows is inert
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    for student in students:
        config.CourseDirectory.student_id = student
        cd = CourseDirectory(config=config)
        app = Autograde(coursedir=cd, config=config)
        app.force = True
        app.log.addHandler(handler)
        try:
            app.start()
        except Exception as err:  # noqa: BLE001 - one student's problem never stops the batch
            lines.append(f"{student}: import failed: {type(err).__name__}: {err}")
        finally:
            app.log.removeHandler(handler)
    return "\n".join(lines)


def _zero_missing(db_url: str, assignment: str, student: str, everything: bool = False) -> None:
    """Test cells without a score (missing from the executed notebook, or no notebook at all)
    score 0; manually graded answers keep waiting for a grader."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        sub = gb.update_or_create_submission(assignment, student)
        for nb in sub.notebooks:
            for grade in nb.grades:
                if (grade.auto_score is None or everything) and grade.cell.cell_type == "code":
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = False
        gb.db.commit()


def _judge_student(
    paths: CoursePaths, assignment: str, student: str, expected: judge.Expected
) -> list[str]:
    """Judge one student's autograded notebook: scores into the gradebook, verdicts into the
    notebook the feedback is made from. Returns notes for the CSV."""
    path = paths.autograded(student, assignment) / f"{assignment}.ipynb"
    nb = nbformat.read(path, as_version=4)
    verdicts = judge.judge_notebook(nb, expected)
    judge.write_scores(paths.db_url, assignment, assignment, student, verdicts)
    judge.annotate(nb, verdicts)
    mode = path.stat().st_mode
    os.chmod(path, mode | 0o200)
    nbformat.write(nb, path)
    os.chmod(path, mode)
    return []  # the verdicts go to the feedback page; notes are for what went wrong around it


def grade(
    assignment: str,
    submissions: Path | str,
    *,
    root: Path | None = None,
    timeout: int | None = None,
    limits: sandbox.Limits | None = None,
    sandbox_mode: str = "auto",
    regrade: bool = False,
    jobs: int = 1,
    scheduler: str | None = None,
    db_url: str | None = None,
) -> list[GradeRow]:
    """Collect, autograde (sandboxed), judge, write feedback and ``grades_<id>.csv``.

    Args:
        assignment: an id from the source folder (``solutions/``).
        submissions: a folder (any layout: ``<student>/<id>.ipynb``, ``<student>/.../x.ipynb``,
            ``<student>.ipynb``, LMS file names) or a zip of one (zips inside are unpacked).
        root: the course root (default: found from the current folder).
        timeout: seconds per cell (default: ``Execute.timeout`` in nbgrader_config.py).
        limits: the sandbox's resource limits (default: :class:`course_kit.sandbox.Limits`).
        sandbox_mode: ``"auto"`` (bubblewrap where it works, else a warned fallback),
            ``"bwrap"`` (fail if it cannot be used) or ``"none"``.
        regrade: grade again submissions that have not changed since they were graded with
            the same tests and settings (by default their grades are kept).
        jobs: sandboxes run at once in worker processes on this machine (1: one at a time);
            the gradebook is written by this process alone, so the grades are the same.
        scheduler: a Dask distributed scheduler's address (``tcp://host:8786``) whose workers
            run the sandboxes instead (they must see the course folder at the same path).
        db_url: the gradebook (any SQLAlchemy URL, e.g. ``postgresql://host/course``); default:
            ``CourseDirectory.db_url`` from nbgrader_config.py. Checked before anything runs.
    Returns:
        One row per submitter found (also one without a notebook: its status says what was
        found), and one per student of earlier runs that the gradebook in use holds; sorted by
        id. Students of earlier runs that it does not hold are left out, and printed.
    """
    paths = _checked(assignment, submissions, root, db_url, sandbox_mode, limits)
    work = paths.workspace
    (work / "logs").mkdir(parents=True, exist_ok=True)
    timeout = int(timeout or paths.config.get("Execute", {}).get("timeout", 30))
    settings = _exec_settings(paths.config, timeout)
    released = _register(paths, assignment)
    source_nb = paths.source(assignment) / f"{assignment}.ipynb"
    expected = judge.expected_reports(source_nb, cache_dir=work / "judge")
    for warning in expected.warnings:
        print(f"course-kit: judge: {warning}")
    known = _load_json(work / f"names_{assignment}.json")
    found = collect_submissions(submissions, assignment, released, known=known)
    if not found:
        raise ValueError(f"no submissions found in {submissions}")
    archived = _store_submitted(paths, assignment, found)

    run = _Run(paths, assignment, expected, _load_json(_state_path(paths, assignment)))
    options = {"timeout": timeout, "limits": limits, "mode": sandbox_mode}
    common = hashlib.sha256(  # what else a grade depends on: the release, tests and settings
        released.read_bytes()
        + json.dumps(expected.to_json(), sort_keys=True).encode()
        + json.dumps([timeout, sandbox_mode, vars(limits or sandbox.Limits())]).encode()
    )
    with tempfile.TemporaryDirectory(prefix="course-kit-grade-") as tmp:
        tasks = [
            dataclasses.replace(t, settings=settings, options={**options, **t.options})
            for t in run.prepare(found, archived, released, common, regrade, Path(tmp))
        ]
        # nothing of this run counts as judged until it is: rerun after a crash, it is redone
        run.save_state()
        # the slow part, one sandbox per submission: here, in worker processes or on Dask
        results = workers.run_all(tasks, jobs=jobs, scheduler=scheduler)
    run.import_results(tasks, results)
    run.judge_all()
    run.save_state()
    run.feedback()
    exchange.keep_submission_files(paths, assignment, run.rows)  # for release_feedback
    out = run.rows_with_earlier()
    _write_csv(work / f"grades_{assignment}.csv", assignment, out)
    flags = paths.gradebook_flags()
    _nbgrader(paths.root, "export", "--to", str(work / "grades.csv"), *flags, check=False)
    return out


def _checked(assignment, submissions, root, db_url, sandbox_mode, limits) -> CoursePaths:
    """The course's paths, once every argument of :func:`grade` has been checked."""
    paths = course_paths(root or project_root(), db_url=db_url)
    if db_url:
        check_database(db_url)
    _environment_on_path()
    _check_assignment(paths.root, assignment)
    if not Path(submissions).exists():
        raise FileNotFoundError(f"`submissions` does not exist: {submissions}")
    if sandbox_mode not in sandbox.MODES:
        raise ValueError(f"`sandbox_mode` must be one of {sandbox.MODES}; got {sandbox_mode!r}")
    problem = sandbox.sandbox_problem() if sandbox_mode != "none" else None
    if problem is not None:
        if sandbox_mode == "bwrap":
            raise RuntimeError(f"cannot sandbox with bubblewrap: {problem}")
        print("course-kit: WARNING: " + sandbox.FALLBACK_WARNING.format(why=problem))
    for warning in sandbox.limits_warnings(limits):
        print("course-kit: WARNING: " + warning)
    return paths


def _state_path(paths: CoursePaths, assignment: str) -> Path:
    """``judge/graded_<id>.json``: per student, what was judged, into which gradebook."""
    return paths.workspace / "judge" / f"graded_{assignment}.json"


def _gradebook_key(db_url: str) -> str:
    """Which gradebook ``db_url`` is (an SQLite file by its real path; a password left out)."""
    if db_url.startswith("sqlite:///"):
        return "sqlite:///" + os.path.realpath(db_url[len("sqlite:///") :])
    return re.sub(r"//[^@/]*@", "//", db_url)


def _auto_totals(db_url: str, assignment: str) -> dict[str, float]:
    """Each student's sum of automatic scores for ``assignment`` in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            subs = gb.find_assignment(assignment).submissions
        except MissingEntry:
            return {}
        return {
            s.student_id: round(
                sum(g.auto_score or 0.0 for nb in s.notebooks for g in nb.grades), 6
            )
            for s in subs
        }


class _Run:
    """One ``grade`` run's state: rows, failures, and what counts as judged (phases below).

    ``state`` (``judge/graded_<id>.json``) holds, per student, the digest of what was judged,
    the gradebook it was judged into and the automatic score it left there: a submission is
    kept by digest only while the gradebook in use still holds that very result."""

    def __init__(self, paths: CoursePaths, assignment: str, expected, state: dict) -> None:
        self.paths, self.assignment, self.expected = paths, assignment, expected
        self.state = {k: v for k, v in state.items() if isinstance(v, dict)}
        self.key = _gradebook_key(paths.db_url)
        self.rows: dict[str, GradeRow] = {}
        self.failures: dict[str, str] = {}
        self.reused: set[str] = set()
        self.digests: dict[str, str] = {}
        self.executed: list[str] = []

    def _page(self, student: str) -> Path:
        return self.paths.feedback(student, self.assignment) / f"{self.assignment}.html"

    def _kept(self, student: str, digest: str, totals: dict[str, float]) -> bool:
        previous = self.state.get(student, {})
        done = self.paths.autograded(student, self.assignment) / f"{self.assignment}.ipynb"
        return (
            previous.get("digest") == digest
            and previous.get("gradebook") == self.key
            and totals.get(student) == previous.get("auto")
            and done.is_file()
        )

    def prepare(self, found, archived, released, common, regrade, tmp) -> list[workers.Task]:
        """Rows for every submitter; the tasks of those to run (others kept or failed)."""
        paths, aid = self.paths, self.assignment
        totals = _auto_totals(paths.db_url, aid) if self.state and not regrade else {}
        tasks, template = [], None
        for item in found:
            notes = list(item.notes) + archived.get(item.student, [])
            row = GradeRow(item.student, 0.0, 0.0, "graded", "", notes, name=item.name)
            self.rows[item.student] = row
            if item.path is None:
                self._fail(item.student, item.problem or "no notebook found")
                continue
            copy = paths.submitted(item.student, aid) / f"{aid}.ipynb"
            digest = _digest(common, copy)
            if not regrade and self._kept(item.student, digest, totals):
                self.reused.add(item.student)  # unchanged, and its grades are still there
                row.notes = list(self.state[item.student].get("notes", []))
                continue
            self.state.pop(item.student, None)
            try:
                nb, repaired = repair_submission(copy, released)
                # a rebuilt notebook's notes say what was repaired; otherwise say which test
                # cells nbgrader will restore
                notes += repaired or integrity_report(released, copy)
                data = json.loads(nbformat.writes(nb)) if nb is not None else None
            except Exception as err:  # noqa: BLE001 - any file a student may hand in
                data = None
                notes.append(f"the notebook cannot be read ({type(err).__name__})")
            if data is None:
                self._fail(item.student, notes[-1] if notes else "not a notebook")
                continue
            if template is None:
                template = _template_db(paths, aid, tmp)
            tasks.append(
                workers.Task(
                    root=paths.root,
                    assignment=aid,
                    student=item.student,
                    notebook=data,
                    template_db=template,
                    settings={},
                    options={"timestamp": item.timestamp},
                )
            )
            self.digests[item.student] = digest
        return tasks

    def _fail(self, student: str, why: str) -> None:
        self.failures[student] = why
        self.state[student] = {"failed": why, "gradebook": self.key}
        stale = self.paths.autograded(student, self.assignment)
        if stale.exists():
            shutil.rmtree(stale)

    def save_state(self) -> None:
        _save_json(_state_path(self.paths, self.assignment), self.state)

    def import_results(self, tasks, results) -> None:
        """Executed notebooks into the gradebook (nbgrader's verdicts: judged next)."""
        paths, aid = self.paths, self.assignment
        for task in tasks:
            result = results[task.student]
            log = paths.workspace / "logs" / f"autograde_{aid}_{task.student}.log"
            log.write_text(result.log)
            if result.notebook is None:
                self._fail(task.student, result.problem or "not graded")
                continue
            self.executed.append(task.student)
            if result.problem:
                self.rows[task.student].notes.append(result.problem)
        for student in self.executed:  # a stale autograded copy must not survive a failed import
            stale = paths.autograded(student, aid)
            if stale.exists():
                shutil.rmtree(stale)
        import_log = _import_executed(paths, aid, self.executed)
        (paths.workspace / "logs" / f"import_{aid}.log").write_text(import_log)
        for student in self.executed:
            if not (paths.autograded(student, aid) / f"{aid}.ipynb").is_file():
                self._fail(student, "the executed notebook could not be read back")

    def judge_all(self) -> None:
        """The judge's verdicts replace nbgrader's, one student at a time: a student the judge
        cannot read scores 0 with a note, and the batch goes on."""
        paths, aid = self.paths, self.assignment
        judged = []
        for student, row in self.rows.items():
            if student in self.reused:
                continue
            try:
                _zero_missing(paths.db_url, aid, student, everything=student in self.failures)
                if student not in self.failures and self.expected.cells:
                    row.notes += _judge_student(paths, aid, student, self.expected)
            except Exception as err:  # noqa: BLE001 - one student never stops the batch
                first = str(err).splitlines()[0][:200] if str(err) else ""
                self._fail(student, f"could not be judged ({type(err).__name__}: {first})")
                try:
                    _zero_missing(paths.db_url, aid, student, everything=True)
                except Exception as again:  # noqa: BLE001
                    row.notes.append(f"its gradebook entry could not be set to 0 ({again})")
                continue
            if student not in self.failures:
                judged.append(student)
        totals = _auto_totals(paths.db_url, aid) if judged else {}
        for student in judged:
            self.state[student] = {
                "digest": self.digests.get(student),
                "notes": self.rows[student].notes,
                "gradebook": self.key,
                "auto": totals.get(student),
            }

    def feedback(self) -> None:
        """A page per student of this run: nbgrader's (polished), a short one where nbgrader
        could not make one, or the not-graded page. Pages of other students are not touched."""
        from nbgrader.api import Gradebook, MissingEntry

        paths, aid = self.paths, self.assignment
        ok = [s for s in self.rows if s not in self.failures]
        made = _generate_feedback(paths, aid, ok) if ok else {}
        with Gradebook(paths.db_url) as gb:
            max_score = float(gb.find_assignment(aid).max_score)
            for student, row in self.rows.items():
                try:
                    score = float(gb.find_submission(aid, student).score)
                except MissingEntry:
                    score = 0.0
                row.max_score = max_score
                row.feedback = os.path.relpath(self._page(student), paths.root)
                if student in self.failures:
                    row.status = "not graded: " + self.failures[student]
                    row.notes.append(row.status + "; scored 0")
                    score = 0.0
                    _write_failure_feedback(
                        self._page(student), row.name or student, aid, max_score, row.notes
                    )
                elif made.get(student) is not None:
                    why = made[student]
                    row.notes.append(
                        f"nbgrader could not make the feedback page ({why}); a short page "
                        "with the score and the grader's verdicts was written instead"
                    )
                    _write_plain_feedback(paths, aid, student, row, score, max_score)
                row.score = score

    def rows_with_earlier(self) -> list[GradeRow]:
        """This run's rows, and students of earlier runs that the gradebook in use holds.

        A student with a submitted copy whom this gradebook does not hold (graded into another
        ``--db``) is left out of the CSV, and named here: a 0 would overwrite a real grade."""
        from nbgrader.api import Gradebook, MissingEntry

        paths, aid = self.paths, self.assignment
        names = _remember_names(paths.workspace, aid, self.rows)
        rows, missing = dict(self.rows), []
        with Gradebook(paths.db_url) as gb:
            max_score = float(gb.find_assignment(aid).max_score)
            for student in _all_students(paths, aid):
                if student in rows:
                    continue
                try:
                    score = float(gb.find_submission(aid, student).score)
                except MissingEntry:
                    missing.append(student)
                    continue
                entry = self.state.get(student)
                if entry is None or entry.get("gradebook", self.key) != self.key:
                    score, status = (
                        0.0,
                        (
                            "not graded: no finished run judged it into this gradebook (grade its "
                            "submission again)"
                        ),
                    )
                elif entry.get("failed"):
                    score, status = 0.0, f"not graded (in an earlier run): {entry['failed']}"
                else:
                    status = "graded in an earlier run"
                rows[student] = GradeRow(
                    student,
                    score,
                    max_score,
                    status,
                    os.path.relpath(self._page(student), paths.root),
                    [],
                    name=names.get(student, student),
                )
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            print(
                f"course-kit: {len(missing)} student(s) with a submission from an earlier run "
                f"are not in this gradebook and are left out of the CSV: {shown}"
            )
        return [rows[s] for s in sorted(rows)]


def _generate_feedback(paths: CoursePaths, assignment: str, students: list[str]) -> dict:
    """nbgrader's feedback pages, made in a temporary folder, polished, then moved into place
    for ``students`` only. Returns ``{student: None}`` where a page was placed, else
    ``{student: why}`` (nbgrader could not make it: a student's line that looks like a
    hidden-test marker, say)."""
    from .feedback import polish_feedback

    out: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="course-kit-feedback-") as tmp:
        proc = _nbgrader(
            paths.root,
            "generate_feedback",
            assignment,
            "--force",
            *paths.gradebook_flags(),
            f"--CourseDirectory.feedback_directory={tmp}",
            check=False,
        )
        log = proc.stdout + proc.stderr
        (paths.workspace / "logs" / f"feedback_{assignment}.log").write_text(log)
        for student in students:
            made = Path(paths.coursedir.format_path(tmp, student, assignment))
            page = made / f"{assignment}.html"
            if not page.is_file():
                out[student] = _feedback_error(log, student)
                continue
            try:
                polish_feedback(page)
            except Exception as err:  # noqa: BLE001 - a page that cannot be polished is not sent
                out[student] = f"the page could not be polished: {type(err).__name__}"
                continue
            dest = paths.feedback(student, assignment)
            if dest.exists():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(made, dest)
            out[student] = None
    return out


def _feedback_error(log: str, student: str) -> str:
    """nbgrader's reason for not making ``student``'s page, from its log (or a general one)."""
    for line in log.splitlines():
        if "Error" in line and ("hidden tests" in line.lower() or student in line):
            return line.strip()[:200]
    return "no page was made; see logs/feedback_*.log"


def _write_plain_feedback(
    paths: CoursePaths, assignment: str, student: str, row: GradeRow, score: float, top: float
) -> None:
    """A short page (score, and the verdict under each judged cell) where nbgrader made none."""
    page = paths.feedback(student, assignment) / f"{assignment}.html"
    verdicts = []
    try:
        nb = nbformat.read(paths.autograded(student, assignment) / f"{assignment}.ipynb", 4)
        for cell in nb.cells:
            gid = judge._grade_id(cell)
            for out in cell.get("outputs", []) or []:
                if (out.get("metadata") or {}).get(judge.VERDICT_MARK):
                    verdicts.append((gid, str(out.get("data", {}).get("text/plain", ""))))
    except Exception:  # noqa: BLE001 - the score alone is still worth sending
        pass
    items = "".join(
        f"<li><b>{html.escape(str(g))}</b><pre>{html.escape(t)}</pre></li>" for g, t in verdicts
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in row.notes)
    page.parent.mkdir(parents=True, exist_ok=True)
    if page.exists():
        os.chmod(page, 0o644)
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(assignment)}"
        f"</title></head><body><h1>{html.escape(assignment)} (Score: {score:g} / {top:g})</h1>"
        f"<p>{html.escape(row.name or student)}: the full feedback page could not be made; "
        f"the grader's verdicts per test cell:</p><ul>{items}</ul><p>Notes:</p><ul>{notes}</ul>"
        "</body></html>"
    )


def _save_json(path: Path, data) -> None:
    """Write JSON atomically (a temporary file beside it, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _digest(common, path: Path) -> str:
    h = common.copy()
    h.update(path.read_bytes())
    return h.hexdigest()


def _all_students(paths: CoursePaths, assignment: str) -> list[str]:
    """Every student with a submitted copy of the assignment (this run or earlier ones)."""
    probe = paths.submitted("STUDENT", assignment)
    parent = probe.parent
    if probe.parent.name != "STUDENT":  # an unusual directory_structure: this run only
        return []
    return sorted(p.parent.name for p in parent.parent.glob(f"*/{probe.name}") if p.is_dir())


def _remember_names(work: Path, assignment: str, rows: dict[str, GradeRow]) -> dict[str, str]:
    """Original names of the safe ids, kept across runs (``names_<id>.json``)."""
    path = work / f"names_{assignment}.json"
    names = {k: v for k, v in _load_json(path).items() if isinstance(v, str)}
    names.update({s: r.name for s, r in rows.items() if r.name})
    _save_json(path, names)
    return names


def _store_submitted(paths: CoursePaths, assignment: str, found: list[Found]) -> dict:
    """Copy each chosen notebook to ``submitted/<student>/<id>/<id>.ipynb``; a changed
    resubmission replaces the copy only after the old one is archived."""
    notes: dict[str, list[str]] = {}
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    for item in found:
        if item.path is None:
            continue
        dest_dir = paths.submitted(item.student, assignment)
        dest = dest_dir / f"{assignment}.ipynb"
        if dest.exists():
            if filecmp.cmp(dest, item.path, shallow=False):
                continue
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            archive = paths.workspace / "archive" / item.student / assignment / f"{stamp}.ipynb"
            archive.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dest, archive)
            notes.setdefault(item.student, []).append(
                f"new submission; the previous one is kept in {paths.rel(archive)}"
            )
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, dest)
        (dest_dir / "timestamp.txt").write_text(item.timestamp or now)
    return notes


def _write_failure_feedback(
    path: Path, student: str, assignment: str, max_score: float, notes: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(assignment)}"
        f"</title></head><body><h1>{html.escape(assignment)} (Score: 0.0 / {max_score:g})</h1>"
        f"<p>Your notebook, {html.escape(student)}, could not be graded. What happened:</p>"
        f"<ul>{items}</ul><p>Run it top to bottom yourself (Kernel → Restart and Run All) "
        "before resubmitting.</p></body></html>"
    )


def _write_csv(path: Path, assignment: str, rows: list[GradeRow]) -> None:
    tmp = path.with_suffix(".part")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["student", "name", "assignment", "score", "max_score", "status", "feedback", "notes"]
        )
        for r in rows:
            writer.writerow(
                [
                    r.student,
                    r.name,
                    assignment,
                    f"{r.score:g}",
                    f"{r.max_score:g}",
                    r.status,
                    r.feedback,
                    " | ".join(r.notes),
                ]
            )
    tmp.replace(path)


def expected_json(root: Path, assignment: str) -> str:
    """The expected reports of an assignment as JSON (for instructors to inspect)."""
    paths = course_paths(root)
    src = paths.source(assignment) / f"{assignment}.ipynb"
    return json.dumps(judge.expected_reports(src).to_json(), indent=1)
