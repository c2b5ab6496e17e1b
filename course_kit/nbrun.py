"""Execute a notebook top to bottom in quick mode, the way the tests do.

    .venv/bin/python -m course_kit.nbrun notebooks/02_efros_leung.ipynb [--full] [--timeout 600]

Prints the time taken; on an error, the failing cell's index and source and the traceback.
The network is blocked inside the kernel (see ``netguard.py``).

Executed notebooks can be kept in a cache (``_build/executed/``, keyed by a hash of the
notebook, the mode and ``course_lib``'s sources): ``tests/test_kit_notebooks.py`` saves every
notebook it runs there, and ``make book`` (``course_kit/book.py``) renders from it, so ``make test``
executes each notebook once. ``--save`` saves what this command runs into the cache too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import time
import types
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / "_build" / "executed"
GUARD_TAG = "course-kit-netguard"


def guard_cell() -> nbformat.NotebookNode:
    """A first cell that blocks network sockets inside the kernel."""
    source = (HERE / "netguard.py").read_text()
    cell = nbformat.v4.new_code_cell(source + "\ninstall()\n")
    cell.metadata["tags"] = [GUARD_TAG]
    return cell


def _without_guard(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop the guard cell; the cells after it are numbered from [1] again, as a reader expects."""
    kept = [c for c in nb.cells if GUARD_TAG not in c.metadata.get("tags", [])]
    if len(kept) == len(nb.cells):
        return nb
    nb.cells = kept
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("execution_count"):
            cell.execution_count -= 1
            for out in cell.get("outputs", []):
                if out.get("execution_count"):
                    out.execution_count -= 1
    return nb


def failing_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index (in the notebook as saved, without the guard cell) of the first cell with an error."""
    cells = [c for c in nb.cells if GUARD_TAG not in c.metadata.get("tags", [])]
    for i, cell in enumerate(cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return None


def failure_message(err: CellExecutionError) -> str:
    """``<notebook>: cell <i> failed: <error>`` followed by nbclient's source and traceback."""
    where = getattr(err, "notebook", "notebook")
    index = getattr(err, "cell_index", None)
    cell = f"cell {index}" if index is not None else "a cell"
    return f"{where}: {cell} failed: {err.ename}: {err.evalue}\n{err}"


def kernel_client(
    nb: nbformat.NotebookNode, path: Path, *, timeout: int, sockets: str
) -> NotebookClient:
    """A client that runs ``nb`` (read from ``path``, whose folder is the working directory) in a
    fresh ``python3`` kernel talking over Unix sockets in the folder ``sockets``.

    Unix sockets, not TCP: with several kernels starting at once, two could be handed the same
    free TCP port, and a lost message leaves the client waiting until the timeout.
    """
    km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
    return NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(path).parent)}},
    )


def execute(path: str | Path, *, quick: bool = True, timeout: int = 600, env: dict | None = None):
    """Run ``path`` in a fresh kernel; returns (executed notebook, seconds).

    Raises ``CellExecutionError`` with the cell's source and traceback on the first error; the
    error also carries ``notebook`` (the path, relative to the repository when inside it) and
    ``cell_index`` (the failing cell's index in the file, counting markdown cells, from 0).
    The returned notebook records the mode and time in ``metadata["course_kit"]``.
    """
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, guard_cell())
    saved = dict(os.environ)
    os.environ.update(
        {
            "COURSE_QUICK": "1" if quick else "0",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        }
    )
    os.environ.update(env or {})
    sockets = tempfile.TemporaryDirectory(prefix="course-kit-kernel-")
    try:
        client = kernel_client(nb, path, timeout=timeout, sockets=sockets.name)
        start = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as err:
            err.notebook = _display_path(path)
            err.cell_index = failing_cell(nb)
            raise
        seconds = time.perf_counter() - start
        nb.metadata.setdefault("course_kit", {}).update(
            {"quick": quick, "seconds": round(seconds, 1)}
        )
        return nb, seconds
    finally:
        sockets.cleanup()
        os.environ.clear()
        os.environ.update(saved)


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def cache_key(path: str | Path, *, quick: bool) -> str:
    """A hash of the notebook's bytes, the mode, every source file of ``course_lib``, and this
    runner (``nbrun.py``, ``netguard.py``)."""
    digest = hashlib.sha256(b"quick" if quick else b"full")
    digest.update(Path(path).read_bytes())
    runner = [HERE / "nbrun.py", HERE / "netguard.py"]
    for source in runner + sorted((ROOT / "course_lib").rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            digest.update(str(source.relative_to(ROOT)).encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _cache_stem(path: str | Path) -> str:
    return _display_path(Path(path)).replace("/", "__").removesuffix(".ipynb")


def cached_path(path: str | Path, *, quick: bool, cache: Path = CACHE) -> Path:
    """Where the executed copy of ``path`` lives in ``cache`` for this mode and these sources."""
    mode = "quick" if quick else "full"
    return Path(cache) / mode / f"{_cache_stem(path)}-{cache_key(path, quick=quick)}.ipynb"


def load_cached(path: str | Path, *, quick: bool, cache: Path = CACHE):
    """The cached executed notebook, or ``None`` when there is none for the current sources."""
    target = cached_path(path, quick=quick, cache=cache)
    return nbformat.read(target, as_version=4) if target.is_file() else None


def save_cached(nb, path: str | Path, *, quick: bool, cache: Path = CACHE) -> Path:
    """Save an executed notebook (without the guard cell) into ``cache``; drop stale copies.

    Written to a temporary file and renamed, so parallel test workers never see half a file.
    """
    target = cached_path(path, quick=quick, cache=cache)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f"{_cache_stem(path)}-*.ipynb"):
        if stale != target:
            stale.unlink(missing_ok=True)
    nb = _without_guard(nbformat.from_dict(nb))
    partial = target.with_suffix(f".{os.getpid()}.partial")
    nbformat.write(nb, partial)
    os.replace(partial, target)
    return target


def execute_cached(
    path: str | Path, *, quick: bool = True, timeout: int = 600, cache: Path = CACHE
) -> tuple[nbformat.NotebookNode, float, bool]:
    """The executed notebook from ``cache`` when its sources are unchanged, else execute and save.

    Returns (notebook without the guard cell, seconds it took to execute, whether it was cached).
    """
    nb = load_cached(path, quick=quick, cache=cache)
    if nb is not None:
        return nb, float(nb.metadata.get("course_kit", {}).get("seconds", 0.0)), True
    nb, seconds = execute(path, quick=quick, timeout=timeout)
    save_cached(nb, path, quick=quick, cache=cache)
    return _without_guard(nb), seconds, False


def tagged_namespace(path: str | Path, tag: str = "testable") -> dict:
    """Execute only the code cells tagged ``tag`` (in order) and return their namespace.

    Lets a test check a function *as written in a notebook* against an independent computation
    without running the whole notebook: tag the cells that define it (and its imports).
    """
    nb = nbformat.read(Path(path), as_version=4)
    # a real module in sys.modules, so that what needs one (dataclasses, pickling) works
    module = types.ModuleType(f"notebook_{Path(path).stem}")
    sys.modules[module.__name__] = module
    namespace: dict = module.__dict__
    cells = [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{path} has no code cell tagged {tag!r}")
    for cell in cells:
        exec(compile(cell.source, f"{Path(path).name}[{tag}]", "exec"), namespace)
    return namespace


# "full": false at quick size, printed as "checked in the full run" (course_lib.claims)
CLAIM_LINE = re.compile(r"^CLAIM (?P<status>ok  |FAIL|full) \[(?P<name>[^\]]+)\] (?P<text>.*)$")


def claims_in(nb: nbformat.NotebookNode) -> dict[str, bool]:
    """The claims an executed notebook printed (``course_lib.claims.claim``): name -> held.

    A name printed twice (a cell run in a loop) keeps its last verdict.
    """
    found: dict[str, bool] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "stream" or out.get("name") != "stdout":
                continue
            for line in out.get("text", "").splitlines():
                match = CLAIM_LINE.match(line)
                if match:
                    found[match["name"]] = match["status"] == "ok  "
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--full", action="store_true", help="default mode instead of quick mode")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--save", action="store_true", help="save into the cache (_build/executed)")
    args = parser.parse_args()
    status = 0
    for name in args.notebooks:
        try:
            nb, seconds = execute(name, quick=not args.full, timeout=args.timeout)
            print(f"ok    {name}  {seconds:.1f} s")
            if args.save:
                print(f"      saved {save_cached(nb, name, quick=not args.full)}")
        except CellExecutionError as err:
            print(f"FAIL  {failure_message(err)}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
