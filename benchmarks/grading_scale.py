"""Grading that scales: a batch graded serially, with ``--jobs 2`` and on a local Dask cluster.

    .venv/bin/python -m benchmarks.grading_scale [--students 40] [--jobs 2] [--timeout 30]

Builds the tests' fixture course (assignment ``demo``) in a temporary folder with ``--students``
submissions (correct, untouched and partial in turn) and grades the same batch three ways, each
into a fresh copy: one sandbox at a time (the baseline), ``jobs`` worker processes, and a
``dask.distributed.LocalCluster`` of ``jobs`` workers. Prints submissions per minute and the
speed-up over the baseline measured in the same run, checks that every score agrees, and
estimates the wall time of a class of 300 on 1, 8 and 64 cores from the measured split of the
per-submission cost into its serial part (import, judge, feedback: the grader alone) and its
parallel part (the sandboxed run): ``t(k) = 300 · (serial + parallel / k)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from course_kit import instructor
from course_kit.fixture_course import make_course, make_submission

KINDS = ("correct", "untouched", "partial")


def batch(tmp: Path, students: int) -> tuple[Path, Path]:
    root = make_course(tmp)
    [released] = instructor.release(root)
    subs = tmp / "submissions"
    for i in range(students):
        (subs / f"s{i:03d}").mkdir(parents=True)
        nb = make_submission(released, KINDS[i % len(KINDS)])
        nbformat.write(nb, subs / f"s{i:03d}" / "demo.ipynb")
    return root, subs


def timed(tmp: Path, students: int, **options) -> tuple[float, dict[str, float]]:
    root, subs = batch(tmp, students)
    start = time.perf_counter()
    rows = instructor.grade("demo", subs, root=root, **options)
    return time.perf_counter() - start, {r.student: r.score for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=30, help="seconds per cell")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask row")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="course-kit-bench-scale-"))
    try:
        n = args.students
        runs: list[tuple[str, float, dict]] = []
        t1, ref = timed(base / "serial", n, timeout=args.timeout, jobs=1)
        runs.append(("serial (1 sandbox at a time)", t1, ref))
        tk, got = timed(base / "jobs", n, timeout=args.timeout, jobs=args.jobs)
        runs.append((f"--jobs {args.jobs} (worker processes)", tk, got))
        if not args.no_dask:
            from dask.distributed import LocalCluster

            with LocalCluster(
                n_workers=args.jobs, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster:
                td, got = timed(
                    base / "dask", n, timeout=args.timeout, scheduler=cluster.scheduler_address
                )
            runs.append((f"Dask LocalCluster, {args.jobs} workers", td, got))
        print(
            f"{n} submissions of the fixture assignment, {platform.processor() or 'cpu'}, "
            f"{os.cpu_count()} cores, per-cell timeout {args.timeout} s\n"
        )
        print("| run | wall time | submissions / min | speed-up | same scores as serial |")
        print("|---|---|---|---|---|")
        for name, t, scores in runs:
            same = "yes" if scores == ref else "NO"
            print(f"| {name} | {t:.1f} s | {60 * n / t:.1f} | {t1 / t:.2f}× | {same} |")
        k = args.jobs  # t1 = n (serial + parallel), tk = n (serial + parallel / k)
        parallel = max(0.0, (t1 - tk) / (n * (1 - 1 / k))) if k > 1 else 0.0
        serial_part = max(0.0, t1 / n - parallel)
        print(
            "\nEstimated wall time for a class of 300 (per-submission cost: "
            f"{serial_part:.2f} s serial + {parallel:.2f} s parallel):\n"
        )
        print("| cores | estimated wall time |\n|---|---|")
        for cores in (1, 8, 64):
            minutes = 300 * (serial_part + parallel / cores) / 60
            print(f"| {cores} | {minutes:.1f} min |")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
