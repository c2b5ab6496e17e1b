"""Serial grading time per submission: the kit's `grade` (sandbox + judge) against plain nbgrader.

    .venv/bin/python -m benchmarks.grading [--students 4] [--modes bwrap none]
                                           [--assignment demo|gram|...]

Builds a course in a temporary folder (the tests' fixture assignment ``demo``, or a copy of a
real assignment from ``solutions/``), makes ``--students`` correct submissions, and times
(a) the baseline: one plain ``nbgrader autograde`` over all of them (no sandbox, no judge, no
feedback), and (b) ``course_kit.instructor.grade`` in each sandbox mode (collect, one sandboxed
autograde per submission, import, judge, feedback, CSV). Prints a Markdown table: total wall
time, seconds per submission, and the ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
from course_kit import instructor, judge, sandbox  # noqa: E402
from course_kit.fixture_course import make_course, make_submission  # noqa: E402


def real_course(tmp: Path, aid: str) -> Path:
    root = tmp / "course"
    (root / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / aid, root / "solutions" / aid)
    return root


def solved(source: Path, released: Path) -> nbformat.NotebookNode:
    """The release with every answer cell taken from the solution (markers removed)."""
    answers = {}
    for cell in nbformat.read(source, 4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers[meta["grade_id"]] = "\n".join(
                ln
                for ln in cell.source.splitlines()
                if "### BEGIN" not in ln and "### END" not in ln
            )
    nb = nbformat.read(released, 4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--modes", nargs="+", default=["bwrap", "none"], choices=["bwrap", "none"])
    parser.add_argument(
        "--assignment", default="demo", help="demo (fixture) or an id in solutions/"
    )
    parser.add_argument("--timeout", type=int, default=60)
    args = parser.parse_args()
    modes = [m for m in args.modes if m != "bwrap" or sandbox.sandbox_problem() is None]
    rows = []
    with tempfile.TemporaryDirectory(prefix="course-kit-bench-") as tmp:
        tmp = Path(tmp)
        aid = args.assignment
        root = make_course(tmp) if aid == "demo" else real_course(tmp, aid)
        [released] = instructor.release(root, [aid])
        if aid == "demo":
            nb = make_submission(released, "correct")
        else:
            nb = solved(root / "solutions" / aid / f"{aid}.ipynb", released)
        subs = tmp / "subs"
        for i in range(args.students):
            (subs / f"s{i:03d}").mkdir(parents=True)
            nbformat.write(nb, subs / f"s{i:03d}" / f"{aid}.ipynb")
        # baseline: plain nbgrader over the same submissions, in a copy of the course
        base = tmp / "baseline"
        shutil.copytree(root, base)
        for i in range(args.students):
            dest = base / "grading" / "submitted" / f"s{i:03d}" / aid
            dest.mkdir(parents=True)
            nbformat.write(nb, dest / f"{aid}.ipynb")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        wall = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "autograde",
                aid,
                "--force",
                f"--Execute.timeout={args.timeout}",
            ],
            cwd=base,
            env=env,
            capture_output=True,
            check=False,
        )
        baseline = time.perf_counter() - wall
        rows.append(("plain nbgrader autograde (baseline)", baseline, None))
        paths = instructor.course_paths(root)  # the solution's run, cached, outside the timing
        source = paths.source(aid) / f"{aid}.ipynb"
        judge.expected_reports(source, cache_dir=paths.workspace / "judge")
        for mode in modes:
            wall = time.perf_counter()
            got = instructor.grade(
                aid, subs, root=root, timeout=args.timeout, sandbox_mode=mode, regrade=True
            )
            took = time.perf_counter() - wall
            full = sum(r.score == r.max_score for r in got)
            rows.append((f"course-kit grade, sandbox={mode}", took, full))
    n = args.students
    print(
        f"{n} correct submissions of `{aid}`, serial; {os.cpu_count()} CPUs, "
        f"{platform.machine()}, Python {platform.python_version()}\n"
    )
    print("| pipeline | total wall (s) | per submission (s) | × baseline | full marks |")
    print("|---|---|---|---|---|")
    for name, took, full in rows:
        ratio = took / baseline
        marks = "—" if full is None else f"{full}/{n}"
        print(f"| {name} | {took:.1f} | {took / n:.1f} | {ratio:.1f}× | {marks} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
