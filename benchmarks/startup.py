"""Start-up: what importing the kit and running a notebook's set-up cell costs, and what of it is
the kit's own.

Each row runs in a fresh Python process (median of ``--repeats``) and reports the process's CPU
time (user + system: robust to other work on the machine) and its wall time:

* ``python``: the interpreter alone;
* ``libraries``: ``import torch, numpy, matplotlib.pyplot, PIL.Image`` (what any notebook of
  this kind imports, kit or not);
* ``course_lib (all modules)``: every ``course_lib`` module, after the libraries;
* one row per notebook: its set-up cell (the first code cell: imports, ``pick_device()``,
  seeding, constants) run as a script with matplotlib's Agg backend, in quick mode.

"kit adds" is a row's CPU time minus the libraries' row: the cost the kit is responsible for.

    python -m benchmarks.startup                     # every notebook, 3 repeats
    python -m benchmarks.startup --notebooks notebooks/06_neural_texture_synthesis.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = "import torch, numpy, matplotlib.pyplot, PIL.Image\n"
KIT = LIBRARIES + (
    "import course_lib.device, course_lib.images, course_lib.samples, course_lib.features\n"
    "import course_lib.optim, course_lib.nets, course_lib.display, course_lib.widgets\n"
    "import course_lib.grading, course_lib.domains, course_lib.claims, course_lib.threads\n"
)
REPORT = (
    "\nimport json as _j, resource as _r\n"
    "_u = _r.getrusage(_r.RUSAGE_SELF)\n"
    "print('__cpu__', _j.dumps(_u.ru_utime + _u.ru_stime))\n"
)


def measure(source: str, repeats: int, cwd: Path) -> tuple[float, float]:
    """Median (CPU s, wall s) of running ``source`` in a fresh interpreter."""
    env = {**os.environ, "MPLBACKEND": "Agg", "COURSE_QUICK": "1", "PYTHONPATH": str(ROOT)}
    cpus, walls = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", source + REPORT],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"failed:\n{source}\n{done.stderr[-2000:]}")
        line = [x for x in done.stdout.splitlines() if x.startswith("__cpu__")][-1]
        cpus.append(json.loads(line.split(" ", 1)[1]))
    return statistics.median(cpus), statistics.median(walls)


def setup_cell(path: Path) -> str:
    """The notebook's first code cell (its imports, device, seed and constants)."""
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="*", default=None, help="default: all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    paths = (
        [Path(p).resolve() for p in args.notebooks]
        if args.notebooks is not None
        else sorted((ROOT / "notebooks").glob("*.ipynb"))
    )
    print(f"load average before: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print("| what | CPU s | wall s | kit adds (CPU s) |")
    print("|---|---|---|---|")
    base_cpu, base_wall = measure("pass\n", args.repeats, ROOT)
    print(f"| python | {base_cpu:.2f} | {base_wall:.2f} | - |", flush=True)
    lib_cpu, lib_wall = measure(LIBRARIES, args.repeats, ROOT)
    print(f"| libraries (torch, numpy, matplotlib, PIL) | {lib_cpu:.2f} | {lib_wall:.2f} | - |")
    cpu, wall = measure(KIT, args.repeats, ROOT)
    print(f"| course_lib (all modules) | {cpu:.2f} | {wall:.2f} | {cpu - lib_cpu:+.2f} |")
    for path in paths:
        cpu, wall = measure(LIBRARIES + setup_cell(path), args.repeats, path.parent)
        print(f"| {path.stem}: set-up cell | {cpu:.2f} | {wall:.2f} | {cpu - lib_cpu:+.2f} |")
        sys.stdout.flush()
    print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
