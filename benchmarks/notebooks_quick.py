"""Every notebook in quick mode under `make lab`'s own settings: wall, kernel CPU time, threads.

`make lab` starts JupyterLab with no thread variables (unlike the tests, which pin
``OMP_NUM_THREADS=1``); the kernel's threads come from ``pick_device()``'s policy
(``course_lib/threads.py``). This script runs each notebook the same way: a fresh kernel, an
environment without ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` /
``COURSE_THREADS``, ``COURSE_QUICK=1``, the network blocked as in the tests. It reports the wall
time of the whole notebook (kernel start included), the kernel's CPU time (user + system,
itself and its children: what the notebook costs whatever else runs on the machine) and the
thread line the notebook printed.

    python -m benchmarks.notebooks_quick                        # all of notebooks/
    python -m benchmarks.notebooks_quick notebooks/02_efros_leung.ipynb
    python -m benchmarks.notebooks_quick --env COURSE_THREADS=torch NB.ipynb  # torch's threads
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from course_kit.nbrun import ROOT, guard_cell, kernel_client

PINS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "COURSE_THREADS")
# the last cell writes the kernel's CPU time to a file (printing could be captured by a widget)
CPU_CELL = (
    "import resource as _r\n"
    "_s, _c = _r.getrusage(_r.RUSAGE_SELF), _r.getrusage(_r.RUSAGE_CHILDREN)\n"
    "with open({path!r}, 'w') as _f:\n"
    "    _f.write(str(_s.ru_utime + _s.ru_stime + _c.ru_utime + _c.ru_stime))\n"
)


def run_notebook(path: Path, extra_env: dict[str, str], timeout: int) -> dict[str, object]:
    """Execute ``path`` in quick mode as `make lab` would; wall, kernel CPU, threads, status."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, guard_cell())
    sockets = tempfile.TemporaryDirectory(prefix="course-kit-bench-")
    cpu_file = os.path.join(sockets.name, "cpu")
    nb.cells.append(nbformat.v4.new_code_cell(CPU_CELL.format(path=cpu_file)))
    saved = dict(os.environ)
    for var in PINS:
        os.environ.pop(var, None)
    os.environ.update(
        {"COURSE_QUICK": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    )
    os.environ.update(extra_env)
    status, cpu, threads = "ok", float("nan"), "?"
    start = time.perf_counter()
    try:
        client = kernel_client(nb, path, timeout=timeout, sockets=sockets.name)
        client.execute()
        with open(cpu_file) as f:
            cpu = float(f.read())
    except Exception as err:  # report and go on with the next notebook
        status = f"failed: {type(err).__name__}"
    finally:
        wall = time.perf_counter() - start
        sockets.cleanup()
        os.environ.clear()
        os.environ.update(saved)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            m = re.search(r"CPU threads: (\d+)", text)
            if m and threads == "?":
                threads = m.group(1)
    return {"wall": wall, "cpu": cpu, "threads": threads, "status": status}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/")
    parser.add_argument(
        "--env", action="append", default=[], help="extra VAR=value for the kernel (repeatable)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("*.ipynb")
    )
    extra = dict(item.split("=", 1) for item in args.env)
    print(
        f"cores: {os.cpu_count()}, load average before: "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, extra env: {extra or '-'}",
        file=sys.stderr,
    )
    print("| notebook | wall s | kernel CPU s | torch threads | status |")
    print("|---|---|---|---|---|")
    for path in paths:
        r = run_notebook(path, extra, args.timeout)
        print(
            f"| {path.stem} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['threads']} | {r['status']} |",
            flush=True,
        )
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}", file=sys.stderr)


if __name__ == "__main__":
    main()
