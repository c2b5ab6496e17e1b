"""``make claims``: run notebooks in default mode and fail on any false claim; sabotage them.

    .venv/bin/python -m course_kit.claims [NOTEBOOK ...] [--timeout SECONDS]
    .venv/bin/python -m course_kit.claims --sabotage [NOTEBOOK ...]   # make claims SABOTAGE=1
    .venv/bin/python -m course_kit.claims --table [NOTEBOOK ...]      # the sabotage tables

Each notebook runs top to bottom in default mode (``COURSE_QUICK=0``), where a false
``course_lib.claims.claim`` raises; the executed copy is saved into ``_build/executed/full/``
(``make book`` renders from it). Prints a table of each notebook's time and claims.

**Sabotages.** A claim is only worth what it can catch. Each lesson notebook lists, in its
metadata, ways a change could break its technique::

    {"course_kit": {"sabotages": [{
        "name": "no-min-cut",                  # unique in the notebook
        "cell": "f3a1...",                     # the id of the code cell to change
        "replace": [["old text", "new text"]], # each old text must occur exactly once there
        "catches": ["seams-order", "seams-cut-each"],  # at least one must fail
        "size": "quick",                       # "quick": make test; "full": make claims SABOTAGE=1
        "broke": "the minimum error boundary cut (blocks pasted over the overlap)",
        "skip": ["a1b2..."]}]}}                # optional: cells the claims do not need

:func:`sabotaged` applies one to a copy of the notebook in memory (failing loudly if a text is
not found), keeps the cells up to the last one that names a claim in ``catches``, and
:func:`run_sabotage` executes that prefix (claims only report, ``COURSE_CLAIMS=report``) and says
whether at least one named claim failed (an error in a cell is not a catch).
``tests/test_sabotage.py`` runs the quick ones; this command's ``--sabotage`` runs every one at
its size (the full ones in default mode).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError

from .nbrun import (
    ROOT,
    claims_in,
    execute,
    failure_message,
    guard_cell,
    kernel_client,
    save_cached,
)

SIZES = ("quick", "full")


@dataclass(frozen=True)
class Sabotage:
    """One way to break a notebook's technique, and the claims that must notice."""

    notebook: Path
    name: str
    cell: str
    replace: tuple[tuple[str, str], ...]
    catches: tuple[str, ...]
    size: str
    broke: str
    skip: tuple[str, ...] = ()  # ids of cells the claims do not need (slow figures, widgets)

    @property
    def id(self) -> str:
        return f"{self.notebook.stem[:2]}:{self.name}"


def sabotages(path: str | Path) -> list[Sabotage]:
    """The sabotages listed in a notebook's metadata (``course_kit.sabotages``), checked for shape.

    Raises:
        ValueError: an entry misses a key, has an unknown ``size``, or repeats a name.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    found, names = [], set()
    for i, entry in enumerate(nb.metadata.get("course_kit", {}).get("sabotages", [])):
        missing = {"name", "cell", "replace", "catches", "size", "broke"} - set(entry)
        if missing:
            raise ValueError(f"{path.name}: sabotage #{i} misses {sorted(missing)}")
        if entry["size"] not in SIZES:
            raise ValueError(
                f"{path.name}: sabotage {entry['name']!r}: `size` must be one of {SIZES}; "
                f"got {entry['size']!r}"
            )
        if entry["name"] in names:
            raise ValueError(f"{path.name}: two sabotages are named {entry['name']!r}")
        if not entry["catches"] or not entry["replace"]:
            raise ValueError(f"{path.name}: sabotage {entry['name']!r} has no catches/replace")
        names.add(entry["name"])
        found.append(
            Sabotage(
                notebook=path,
                name=entry["name"],
                cell=entry["cell"],
                replace=tuple((old, new) for old, new in entry["replace"]),
                catches=tuple(entry["catches"]),
                size=entry["size"],
                broke=entry["broke"],
                skip=tuple(entry.get("skip", ())),
            )
        )
    return found


def _names_claim(source: str, name: str) -> bool:
    return re.search(rf"""["']{re.escape(name)}["']""", source) is not None


def sabotaged(sab: Sabotage) -> nbformat.NotebookNode:
    """A copy of the notebook with ``sab`` applied, cut after the last cell naming a caught claim.

    Raises:
        ValueError: the cell id is not a code cell of the notebook, a text to replace does not
            occur exactly once in it, or no cell names one of the ``catches`` claims.
    """
    nb = copy.deepcopy(nbformat.read(sab.notebook, as_version=4))
    where = sab.notebook.name
    cells = [i for i, c in enumerate(nb.cells) if c.get("id") == sab.cell]
    if len(cells) != 1 or nb.cells[cells[0]].cell_type != "code":
        raise ValueError(f"{where}: sabotage {sab.name!r}: no code cell with id {sab.cell!r}")
    cell = nb.cells[cells[0]]
    for old, new in sab.replace:
        count = cell.source.count(old)
        if count != 1:
            raise ValueError(
                f"{where}: sabotage {sab.name!r}: the text to replace occurs {count} times "
                f"(expected once) in cell {sab.cell!r}; the notebook changed, update the "
                f"sabotage:\n{old}"
            )
        cell.source = cell.source.replace(old, new)
    last = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and any(_names_claim(c.source, n) for n in sab.catches)
    ]
    if not last:
        raise ValueError(f"{where}: sabotage {sab.name!r}: no cell names a claim in {sab.catches}")
    if cells[0] > last[-1]:
        raise ValueError(
            f"{where}: sabotage {sab.name!r} changes cell {cells[0]}, after every claim it "
            f"names (last in cell {last[-1]}): it cannot be caught there"
        )
    nb.cells = nb.cells[: last[-1] + 1]
    for cell_id in sab.skip:
        drop = [c for c in nb.cells if c.get("id") == cell_id and c.cell_type == "code"]
        if (
            not drop
            or cell_id == sab.cell
            or any(_names_claim(drop[0].source, n) for n in sab.catches)
        ):
            raise ValueError(
                f"{where}: sabotage {sab.name!r}: `skip` names {cell_id!r}, which is not a code "
                f"cell before its claims, or is the sabotaged cell or names a caught claim"
            )
        nb.cells.remove(drop[0])
    return nb


def execute_notebook(nb, path: Path, *, quick: bool, timeout: int = 1800):
    """Run the in-memory notebook ``nb`` as if it were ``path`` (its folder is the working
    directory), with the network guard, claims only reporting.

    Returns (the executed copy, seconds, ``"ename: evalue"`` of the first error or ``""``): the
    cells before an error keep their outputs.
    """
    nb = copy.deepcopy(nb)
    nb.cells.insert(0, guard_cell())
    saved = dict(os.environ)
    os.environ.update(
        {
            "COURSE_QUICK": "1" if quick else "0",
            "COURSE_CLAIMS": "report",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        }
    )
    try:
        with tempfile.TemporaryDirectory(prefix="course-kit-kernel-") as sockets:
            client = kernel_client(nb, path, timeout=timeout, sockets=sockets)
            start = time.perf_counter()
            try:
                client.execute()
                error = ""
            except CellExecutionError as err:
                error = f"{err.ename}: {err.evalue}"
            return nb, time.perf_counter() - start, error
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class Verdict:
    sabotage: Sabotage
    claims: dict[str, bool]  # the caught claims as printed (absent: never printed)
    seconds: float
    error: str = ""
    lines: tuple[str, ...] = ()  # their CLAIM lines, with the numbers

    @property
    def caught(self) -> bool:
        """At least one named claim printed as false, and the notebook ran up to them: an error
        is not a catch (it may be a sabotage that no longer fits the notebook); put the check
        that would raise into a claim instead."""
        return not self.error and any(held is False for held in self.claims.values())

    @property
    def missing(self) -> list[str]:
        return [n for n in self.sabotage.catches if n not in self.claims]

    def line(self) -> str:
        shown = ", ".join(f"{n} {'holds' if h else 'FAILS'}" for n, h in self.claims.items())
        status = "caught" if self.caught else ("ERROR" if self.error else "MISSED")
        extra = f"; error: {self.error}" if self.error else ""
        where = f"{self.sabotage.id} ({self.sabotage.size}, {self.seconds:.0f} s)"
        return f"{status:7} {where}: {shown}{extra}"


def run_sabotage(sab: Sabotage, *, timeout: int = 1800) -> Verdict:
    """Apply ``sab``, execute the notebook up to its claims at ``sab.size``, read the verdicts.

    An error in a cell is reported, and is not a catch (:attr:`Verdict.caught`).
    """
    nb, seconds, error = execute_notebook(
        sabotaged(sab), sab.notebook, quick=sab.size == "quick", timeout=timeout
    )
    printed = claims_in(nb)
    lines = tuple(
        line
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
        for line in out.get("text", "").splitlines()
        if line.startswith("CLAIM ") and any(f"[{n}]" in line for n in sab.catches)
    )
    found = {n: printed[n] for n in sab.catches if n in printed}
    return Verdict(sab, found, seconds, error, lines)


def table(paths: list[str]) -> str:
    """The sabotage tables of ``paths`` in Markdown (for docs/CONTRIBUTING.md)."""
    rows = [
        "| notebook | sabotage | claims that catch it | size | what it broke |",
        "|---|---|---|---|---|",
    ]
    for path in paths:
        for sab in sabotages(path):
            catches = ", ".join(f"`{c}`" for c in sab.catches)
            rows.append(
                f"| {Path(path).stem[:2]} | `{sab.name}` | {catches} | {sab.size} | {sab.broke} |"
            )
    return "\n".join(rows)


def _run_claims(names: list[str], timeout: int) -> int:
    status = 0
    rows = []
    for name in names:
        try:
            nb, seconds = execute(name, quick=False, timeout=timeout)
        except CellExecutionError as err:
            print(f"FAIL  {failure_message(err)}", flush=True)
            rows.append((name, "failed", "-", "-"))
            status = 1
            continue
        save_cached(nb, name, quick=False)
        verdicts = claims_in(nb)
        false = sorted(k for k, held in verdicts.items() if not held)
        print(f"ok    {name}  {seconds:.0f} s, {len(verdicts)} claims", flush=True)
        rows.append((name, f"{seconds:.0f} s", str(len(verdicts)), ", ".join(false) or "none"))
        if false:
            status = 1
    print("\n| notebook | default run | claims | false |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return status


def _run_sabotages(names: list[str], timeout: int, sizes: tuple[str, ...]) -> int:
    status = 0
    for name in names:
        for sab in sabotages(name):
            if sab.size not in sizes:
                continue
            verdict = run_sabotage(sab, timeout=timeout)
            print(verdict.line(), flush=True)
            if not verdict.caught or verdict.missing:
                status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    """``make claims``: run notebooks in default mode; fail on any false claim or error."""
    parser = argparse.ArgumentParser(description="run notebooks in default mode, check claims")
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument(
        "--sabotage",
        action="store_true",
        help="apply each sabotage in the notebooks' metadata; fail unless a named claim fails",
    )
    parser.add_argument(
        "--size", choices=[*SIZES, "all"], default="all", help="with --sabotage: which ones"
    )
    parser.add_argument("--table", action="store_true", help="print the sabotage tables")
    args = parser.parse_args(argv)
    names = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))
    if args.table:
        print(table(names))
        return 0
    if args.sabotage:
        sizes = SIZES if args.size == "all" else (args.size,)
        return _run_sabotages(names, args.timeout, sizes)
    return _run_claims(names, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
