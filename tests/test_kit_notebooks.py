"""Every notebook under notebooks/ and solutions/ runs top to bottom in quick mode.

A notebook lists the claims (``course_lib.claims.claim``) that hold even at quick size in its
metadata, ``{"course_kit": {"quick_claims": ["name", ...]}}``; each must print as held.

Each executed notebook is saved into the cache (``_build/executed/``) that ``make book`` and
``tests/test_kit_book.py`` render from, so ``make test`` executes every notebook only once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from course_kit.nbrun import ROOT, claims_in, execute, failure_message, save_cached

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "solutions").glob("*/*.ipynb")
)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_notebook_runs_in_quick_mode(path: Path) -> None:
    try:
        nb, seconds = execute(path, quick=True, timeout=300)
    except CellExecutionError as err:
        pytest.fail(failure_message(err), pytrace=False)
    errors = [
        (i, out.get("ename"))
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: error outputs in cells {errors}"
    printed = claims_in(nb)
    expected = nb.metadata.get("course_kit", {}).get("quick_claims", [])
    missing = [name for name in expected if name not in printed]
    false = [name for name in expected if printed.get(name) is False]
    assert not missing, f"{path.name}: claims listed in its metadata were never printed: {missing}"
    assert not false, f"{path.name}: claims that should hold in quick mode did not: {false}"
    save_cached(nb, path, quick=True)
    print(f"{path.name}: {seconds:.1f} s")
