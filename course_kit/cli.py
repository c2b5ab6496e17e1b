"""The ``course-kit`` command: ``course-kit release`` and ``course-kit grade ID SUBMISSIONS``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import instructor, sandbox, workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course-kit", description=__doc__)
    parser.add_argument("--root", type=Path, default=None, help="course root (default: found)")
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="regenerate assignments/ from solutions/")
    rel.add_argument("assignments", nargs="*", help="ids (default: all)")
    rel.add_argument(
        "--force",
        action="store_true",
        help="overwrite released notebooks that hold answers (a copy is kept first)",
    )
    gr = sub.add_parser("grade", help="collect, autograde, feedback and grades CSV")
    gr.add_argument("assignment")
    gr.add_argument("submissions", type=Path, help="a folder or an LMS zip")
    gr.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    gr.add_argument(
        "--sandbox",
        choices=sandbox.MODES,
        default="auto",
        help="bwrap: isolate each submission with bubblewrap (fail if it cannot); none: no "
        "namespaces (trusted submissions only); auto (default): bwrap where it works",
    )
    gr.add_argument(
        "--regrade",
        action="store_true",
        help="grade again submissions unchanged since they were graded (default: kept)",
    )
    gr.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="submissions run at once in worker processes (default: the cores available)",
    )
    gr.add_argument(
        "--scheduler",
        default=None,
        help="a Dask distributed scheduler (tcp://host:8786) whose workers run the submissions",
    )
    gr.add_argument(
        "--db",
        default=None,
        help="the gradebook's database URL (e.g. postgresql://host/course; default: sqlite)",
    )
    gr.add_argument("--memory-mb", type=int, default=None, help="memory per process (MB)")
    gr.add_argument("--cpu-s", type=int, default=None, help="CPU seconds per process")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for path in instructor.release(args.root, args.assignments or None, force=args.force):
                print(f"released {path}")
            return 0
        limits = sandbox.Limits()
        if args.memory_mb:
            limits.memory_mb = args.memory_mb
        if args.cpu_s:
            limits.cpu_s = args.cpu_s
        rows = instructor.grade(
            args.assignment,
            args.submissions,
            root=args.root,
            timeout=args.timeout,
            limits=limits,
            sandbox_mode=args.sandbox,
            regrade=args.regrade,
            jobs=args.jobs or workers.default_jobs(),
            scheduler=args.scheduler,
            db_url=args.db,
        )
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"course-kit: {err}", file=sys.stderr)
        return 2
    width = max(len(r.student) for r in rows)
    for r in rows:
        flag = "" if not r.notes else "  ! " + "; ".join(r.notes)
        print(f"{r.student:<{width}}  {r.score:6.2f} / {r.max_score:g}  {r.feedback}{flag}")
    paths = instructor.course_paths(args.root or instructor.project_root())
    print(f"grades: {paths.workspace / f'grades_{args.assignment}.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
