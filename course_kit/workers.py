"""Where the sandboxed runs of a grading batch happen: here, in worker processes, or on Dask.

Grading a batch has one part per submission that is slow and independent (running the student's
notebook in its own sandbox, ``instructor._grade_one``) and a short part that writes the
gradebook (import, judge, feedback), which the grader does alone, in order, so that the gradebook
is never written by two processes at once. This module runs the first part:

* ``jobs=1``: one after the other, in this process (the reference the others must equal);
* ``jobs=N``: N worker processes on this machine (``concurrent.futures``);
* ``scheduler="tcp://host:8786"``: the tasks of a Dask distributed cluster the department already
  runs (Dask on Kubernetes, on a batch system; ``dask.distributed.LocalCluster`` in the tests).
  Its workers must see the course folder at the same path (a shared file system).

A worker that dies mid-run (killed, out of memory) loses nothing: its submission is run again in
a process of its own, and only a submission whose run kills its process twice gets a row saying
"not graded" (with the reason).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Task:
    """One submission's sandboxed run: everything it needs, as plain data (it travels)."""

    root: Path  # the course root; the worker rebuilds the paths from nbgrader_config.py
    assignment: str
    student: str
    notebook: dict  # the submission, repaired, as nbformat's JSON
    template_db: Path
    settings: dict
    options: dict = field(default_factory=dict)  # timeout, limits, mode, timestamp


def default_jobs() -> int:
    """The cores this process may use (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_task(task: Task) -> Any:
    """Run one task (in whatever process or worker this is called): the sandboxed autograde."""
    import nbformat

    from . import instructor

    paths = instructor.course_paths(task.root)
    notebook = nbformat.from_dict(task.notebook)
    return instructor._grade_one(
        paths,
        task.assignment,
        task.student,
        notebook,
        task.template_db,
        task.settings,
        **task.options,
    )


def run_all(
    tasks: Sequence[Task],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    run: Callable[[Task], Any] = run_task,
) -> dict[str, Any]:
    """Run every task; returns ``{student: result}``. Results do not depend on where they ran.

    Args:
        tasks: one per submission.
        jobs: worker processes on this machine (1: here, one after the other).
        scheduler: the address of a Dask distributed scheduler; overrides ``jobs``.
        run: the function a worker calls (importable by the workers; tests swap it).

    Raises:
        ValueError: ``jobs`` below 1.
        RuntimeError: the Dask scheduler cannot be reached (nothing has been graded then).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"`jobs` must be a whole number of worker processes >= 1; got {jobs!r}")
    if not tasks:
        return {}
    if scheduler:
        return _on_dask(tasks, scheduler, run)
    if jobs == 1 or len(tasks) == 1:
        return {t.student: run(t) for t in tasks}
    return _in_processes(tasks, min(jobs, len(tasks)), run)


def _in_processes(tasks: Sequence[Task], jobs: int, run: Callable[[Task], Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {t.student: pool.submit(run, t) for t in tasks}
        lost = []
        for task in tasks:
            try:
                results[task.student] = futures[task.student].result()
            except BrokenProcessPool:  # a worker died: this task (and the queued ones) again
                lost.append(task)
    # When a worker dies the whole pool goes, and the tasks queued behind it never ran: each lost
    # task gets a fresh process of its own, twice at most, so only one that kills its own
    # process twice is given up.
    for task in lost:
        for attempt in range(2):
            with ProcessPoolExecutor(max_workers=1) as pool:
                try:
                    results[task.student] = pool.submit(run, task).result()
                    break
                except BrokenProcessPool as err:
                    if attempt == 1:
                        results[task.student] = _lost(task, err)
    return results


def _on_dask(tasks: Sequence[Task], scheduler: str, run: Callable[[Task], Any]) -> dict[str, Any]:
    try:
        from dask.distributed import Client
    except ImportError as err:
        raise RuntimeError(
            "--scheduler needs Dask's distributed scheduler: pip install 'distributed'"
        ) from err
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as err:
        raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
    try:
        # retries: Dask runs a task again on another worker when its worker dies mid-run
        futures = client.map(run, list(tasks), key=[f"grade-{t.student}" for t in tasks], retries=1)
        results = {}
        for task, future in zip(tasks, futures):
            try:
                results[task.student] = future.result()
            except Exception as err:  # noqa: BLE001 - the worker's failure is this row's problem
                results[task.student] = _lost(task, err)
        return results
    finally:
        client.close()


def _lost(task: Task, err: BaseException) -> Any:
    from .sandbox import SandboxResult

    return SandboxResult(
        notebook=None,
        returncode=None,
        log=f"{type(err).__name__}: {err}",
        mode="none",
        problem=f"the grading worker died twice running this submission ({type(err).__name__})",
    )
