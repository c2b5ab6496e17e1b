"""Execute a notebook top to bottom in quick mode, the way the tests do.

    .venv/bin/python tests/nbrun.py notebooks/02_efros_leung.ipynb [--full] [--timeout 600]

Prints the time taken; on an error, the failing cell's index and source and the traceback.
The network is blocked inside the kernel (see ``netguard.py``); outputs are not saved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def guard_cell() -> nbformat.NotebookNode:
    """A first cell that blocks network sockets inside the kernel."""
    source = (HERE / "netguard.py").read_text()
    return nbformat.v4.new_code_cell(source + "\ninstall()\n")


def execute(path: str | Path, *, quick: bool = True, timeout: int = 600, env: dict | None = None):
    """Run ``path`` in a fresh kernel; returns (executed notebook, seconds).

    Raises ``CellExecutionError`` with the cell's source and traceback on the first error.
    """
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, guard_cell())
    saved = dict(os.environ)
    os.environ.update(
        {
            "COURSE_QUICK": "1" if quick else "0",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONWARNINGS": "default",
            "TQDM_DISABLE": "0",
        }
    )
    os.environ.update(env or {})
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        start = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)


def tagged_namespace(path: str | Path, tag: str = "testable") -> dict:
    """Execute only the code cells tagged ``tag`` (in order) and return their namespace.

    Lets a test check a function *as written in a notebook* against an independent computation
    without running the whole notebook: tag the cells that define it (and its imports).
    """
    nb = nbformat.read(Path(path), as_version=4)
    namespace: dict = {"__name__": f"notebook:{Path(path).stem}"}
    cells = [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{path} has no code cell tagged {tag!r}")
    for cell in cells:
        exec(compile(cell.source, f"{Path(path).name}[{tag}]", "exec"), namespace)
    return namespace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--full", action="store_true", help="default mode instead of quick mode")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    status = 0
    for name in args.notebooks:
        try:
            _, seconds = execute(name, quick=not args.full, timeout=args.timeout)
            print(f"ok    {name}  {seconds:.1f} s")
        except CellExecutionError as err:
            print(f"FAIL  {name}\n{err}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
