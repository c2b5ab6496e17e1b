"""Run every benchmark in turn (``make bench``); each prints its own Markdown table.

Commit the tables to ``benchmarks/README.md`` with the machine they were measured on. Numbers
are ratios against a baseline timed in the same run, never assertions in tests.
"""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = [
    "benchmarks.efros_leung",
    "benchmarks.quilting",
    "benchmarks.style_transfer",
    "benchmarks.threads",
    "benchmarks.startup",
    "benchmarks.notebooks_quick",
    "benchmarks.grading",
    "benchmarks.grading_scale",
    "benchmarks.gpu",
]
# benchmarks.setup_cost (a fresh clone's `make setup`: minutes, gigabytes) runs only by hand


def main() -> None:
    for name in BENCHMARKS:
        print(f"\n### {name}\n", flush=True)
        saved = sys.argv
        sys.argv = [name]
        try:
            runpy.run_module(name, run_name="__main__")
        except SystemExit as done:
            if done.code not in (None, 0):
                raise
        finally:
            sys.argv = saved


if __name__ == "__main__":
    main()
