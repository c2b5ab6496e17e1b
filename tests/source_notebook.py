"""Helpers for testing an nbgrader source notebook's cells directly: its answer cells as
functions, its grade cells as tests, and mutants of its answers (realistic student mistakes)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import nbformat


@cache
def cells_by_id(path: Path) -> dict[str, nbformat.NotebookNode]:
    """The cells that carry nbgrader metadata, by grade id, in notebook order."""
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def grade_ids(path: Path, prefix: str = "") -> list[str]:
    """Ids of the grade (test) cells, optionally only those starting with ``prefix``."""
    return [
        gid
        for gid, c in cells_by_id(path).items()
        if c.metadata["nbgrader"].get("grade") and gid.startswith(prefix)
    ]


def namespace(path: Path, mutations: dict[str, list[tuple[str, str]]] | None = None) -> dict:
    """Run the cells tagged ``testable`` (setup, answers) with ``old -> new`` edits by grade id."""
    ns: dict = {"__name__": f"notebook:{path.stem}"}
    for gid, cell in cells_by_id(path).items():
        if cell.cell_type != "code" or "testable" not in cell.metadata.get("tags", []):
            continue
        source = cell.source
        for old, new in (mutations or {}).get(gid, []):
            assert old in source, f"mutation target {old!r} not found in {gid}"
            source = source.replace(old, new)
        exec(compile(source, f"{path.stem}[{gid}]", "exec"), ns)
    return ns


def run_cell(ns: dict, source: str, name: str) -> None:
    """Execute ``source`` in a copy of ``ns`` (test cells must not leak state)."""
    exec(compile(source, name, "exec"), dict(ns))


def run_grade_cell(path: Path, ns: dict, gid: str) -> None:
    """Execute the grade cell ``gid`` (hidden tests included) in a copy of ``ns``."""
    cell = cells_by_id(path)[gid]
    assert cell.metadata["nbgrader"]["grade"], gid
    run_cell(ns, cell.source, f"{path.stem}[{gid}]")


def mutate(ns: dict, source: str, answer_id: str, old: str, new: str) -> dict:
    """A copy of ``ns`` where the answer cell ``source`` is re-run with ``old`` → ``new``."""
    assert old in source, f"mutation target not found: {old!r}"
    buggy = dict(ns)
    exec(compile(source.replace(old, new), f"{answer_id}[mutant]", "exec"), buggy)
    return buggy


def run_every_grade_cell(path: Path) -> int:
    """Run every grade cell against the solution's own answers; returns how many ran."""
    ns = namespace(path)
    ids = grade_ids(path)
    for gid in ids:
        run_grade_cell(path, ns, gid)
    return len(ids)


def hidden_share(path: Path) -> float:
    """The share of the points carried by grade cells that hold hidden tests."""
    cells = cells_by_id(path)
    points = {gid: cells[gid].metadata["nbgrader"]["points"] for gid in grade_ids(path)}
    hidden = sum(p for gid, p in points.items() if "BEGIN HIDDEN TESTS" in cells[gid].source)
    return hidden / sum(points.values())
