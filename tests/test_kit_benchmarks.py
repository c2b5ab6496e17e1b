"""The benchmark scripts still run: each, at a tiny size, prints a Markdown table whose rows hold
numbers. (Their timings are measured and committed in benchmarks/README.md, never asserted.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course_kit.nbrun import ROOT

CASES = {
    "benchmarks.efros_leung": ["--cases", "12:16:5", "--threads", "1"],
    "benchmarks.quilting": ["--sample", "48", "--block", "16", "--sizes", "48"],
    "benchmarks.style_transfer": ["--sizes", "32", "--steps", "1", "--rounds", "1"],
    "benchmarks.threads": "--scale 0.02 --repeats 1 --only small --threads 1".split(),
    "benchmarks.startup": ["--notebooks", "notebooks/00_start_here.ipynb", "--repeats", "1"],
    "benchmarks.setup_cost": ["--dry-run"],
    "benchmarks.grading": ["--students", "1", "--modes", "none", "--timeout", "30"],
    "benchmarks.grading_scale": ["--students", "2", "--no-dask", "--timeout", "30"],
    "benchmarks.gpu": ["--scale", "0.25", "--steps", "1", "--repeats", "1"],
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_benchmark_prints_a_table(module: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, *CASES[module]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(rows) >= 3, done.stdout  # header, separator, at least one measurement
    header, data = rows[0].split("|")[1:-1], rows[2].split("|")[1:-1]
    assert len(data) == len(header), (rows[0], rows[2])
    assert any(any(ch.isdigit() for ch in cell) for cell in data[1:]), rows[2]
