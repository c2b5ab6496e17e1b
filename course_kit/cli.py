"""The ``course-kit`` command: ``course-kit release`` and ``course-kit grade ID SUBMISSIONS``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import instructor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course-kit", description=__doc__)
    parser.add_argument("--root", type=Path, default=None, help="course root (default: found)")
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="regenerate assignments/ from solutions/")
    rel.add_argument("assignments", nargs="*", help="ids (default: all)")
    gr = sub.add_parser("grade", help="collect, autograde, feedback and grades CSV")
    gr.add_argument("assignment")
    gr.add_argument("submissions", type=Path, help="a folder or an LMS zip")
    gr.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for path in instructor.release(args.root, args.assignments or None):
                print(f"released {path}")
            return 0
        rows = instructor.grade(
            args.assignment, args.submissions, root=args.root, timeout=args.timeout
        )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"course-kit: {err}", file=sys.stderr)
        return 2
    width = max(len(r.student) for r in rows)
    for r in rows:
        flag = "" if not r.notes else "  ! " + "; ".join(r.notes)
        print(f"{r.student:<{width}}  {r.score:6.2f} / {r.max_score:g}  {r.feedback}{flag}")
    print(f"grades: grading/grades_{args.assignment}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
