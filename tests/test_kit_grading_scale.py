"""Grading that scales: worker processes and a Dask cluster give the grades serial grading gives.

The same batch of the fixture course is graded one at a time, with ``jobs=2`` and on a local Dask
cluster of two workers, and into a PostgreSQL gradebook (a throwaway server started from the
machine's own PostgreSQL, when it has one); every score and status must agree. A worker that dies
mid-run costs a rerun, not a submission; an unreachable gradebook database, or one whose driver
is missing, stops the batch before anything runs.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from course_kit import instructor, workers
from course_kit.fixture_course import make_course, make_submission

pytestmark = pytest.mark.slow

KINDS = {"alice": "correct", "bob": "untouched", "carol": "partial", "frank": "syntax"}


def _batch(tmp: Path):
    root = make_course(tmp)
    [released] = instructor.release(root)
    subs = tmp / "submissions"
    for student, kind in KINDS.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(make_submission(released, kind), subs / student / "demo.ipynb")
    return root, subs


def _grades(rows) -> dict[str, tuple[float, float, str]]:
    return {r.student: (r.score, r.max_score, r.status) for r in rows}


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root, subs = _batch(tmp_path_factory.mktemp("serial"))
    return _grades(instructor.grade("demo", subs, root=root, timeout=10))


def test_serial_grades_are_the_reference(serial):
    assert serial["alice"][0] == serial["alice"][1] == 6
    assert serial["bob"][0] == 0 and 0 < serial["carol"][0] < 6


def test_worker_processes_give_the_same_grades(serial, tmp_path):
    root, subs = _batch(tmp_path)
    assert _grades(instructor.grade("demo", subs, root=root, timeout=10, jobs=2)) == serial


def test_a_dask_cluster_gives_the_same_grades(serial, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    root, subs = _batch(tmp_path)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        rows = instructor.grade(
            "demo", subs, root=root, timeout=10, scheduler=cluster.scheduler_address
        )
    assert _grades(rows) == serial


def _dies_once(task: workers.Task) -> str:
    """A worker that dies (like one killed for memory) the first time it sees a task."""
    marker = Path(task.settings["marker_dir"]) / task.student
    if not marker.exists():
        marker.write_text("died")
        os._exit(9)
    return f"ran {task.student}"


def _task(student: str, marker_dir: Path) -> workers.Task:
    return workers.Task(
        root=marker_dir,
        assignment="demo",
        student=student,
        notebook={},
        template_db=marker_dir,
        settings={"marker_dir": str(marker_dir)},
    )


def test_a_worker_that_dies_mid_run_loses_no_submission(tmp_path):
    tasks = [_task(s, tmp_path) for s in ("ann", "bob", "cat")]
    results = workers.run_all(tasks, jobs=2, run=_dies_once)
    assert results == {"ann": "ran ann", "bob": "ran bob", "cat": "ran cat"}


def test_a_worker_that_always_dies_gives_a_row_saying_so(tmp_path):
    results = workers.run_all([_task("ann", tmp_path)] * 2, jobs=2, run=_always_dies)
    assert results["ann"].notebook is None
    assert "worker died twice" in results["ann"].problem


def _always_dies(task: workers.Task) -> str:
    os._exit(9)


def test_bad_jobs_say_what_is_wrong():
    with pytest.raises(ValueError, match="`jobs` must be a whole number of worker processes >= 1"):
        workers.run_all([], jobs=0)


def test_an_unreachable_database_stops_before_anything_is_written(tmp_path):
    root, subs = _batch(tmp_path)
    url = "postgresql://grader:secret@127.0.0.1:9/course"
    with pytest.raises(RuntimeError, match="cannot reach the gradebook database") as err:
        instructor.grade("demo", subs, root=root, timeout=10, db_url=url)
    assert "secret" not in str(err.value)  # never print a password
    assert not (root / "grading" / "submitted").exists()


def test_a_missing_database_driver_is_named(tmp_path):
    root, subs = _batch(tmp_path)
    with pytest.raises(RuntimeError, match="its driver is not installed") as err:
        instructor.grade("demo", subs, root=root, timeout=10, db_url="mysql://me:pw@host/course")
    assert "pw" not in str(err.value) and "nothing was graded" in str(err.value)


def test_a_malformed_database_url_is_named(tmp_path):
    root, subs = _batch(tmp_path)
    with pytest.raises(RuntimeError, match="`db_url` must be an SQLAlchemy URL"):
        instructor.grade("demo", subs, root=root, timeout=10, db_url="not a url")


# ------------------------------------------------------------------ a real PostgreSQL gradebook


def _postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "createdb").exists():
        return Path(found).resolve().parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(debian[-1]).parent if debian else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a Unix socket in a temporary folder, database ``course``;
    as root it runs as the ``postgres`` user (the server refuses root)."""
    pytest.importorskip("psycopg")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server on this machine (Debian: apt install postgresql)")
    home = Path(tempfile.mkdtemp(prefix="course-kit-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", "5433"

    def pg(*cmd: str) -> None:
        done = subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{cmd[0]} failed: {done.stderr[-1000:]}"

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "grader", "--no-sync")
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(home / "log"), "-o",
           f"-k {home} -p {port} -c listen_addresses=''", "start")  # fmt: skip
        pg(str(bindir / "createdb"), "-h", str(home), "-p", port, "-U", "grader", "course")
        yield f"postgresql://grader@/course?host={home}&port={port}"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def test_worker_processes_grade_into_postgresql_as_into_sqlite(serial, postgres_url, tmp_path):
    root, subs = _batch(tmp_path)
    rows = instructor.grade("demo", subs, root=root, timeout=10, jobs=2, db_url=postgres_url)
    assert _grades(rows) == serial
    with Gradebook(postgres_url) as gb:  # the scores are in the server's gradebook
        stored = {s: gb.find_submission("demo", s).score for s in KINDS}
    assert stored == {s: serial[s][0] for s in KINDS}
    with Gradebook(f"sqlite:///{root / 'grading' / 'gradebook.db'}") as gb:  # release made it
        assert gb.students == []  # and no grade went into it
