"""Grading that scales: worker processes and a Dask cluster give the grades serial grading gives.

The same batch of the fixture course is graded one at a time, with ``jobs=2`` and on a local Dask
cluster of two workers; every score and status must agree. A worker that dies mid-run costs a
rerun, not a submission; an unreachable gradebook database stops the batch before anything runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

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
