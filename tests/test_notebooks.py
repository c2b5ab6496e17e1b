"""Every notebook under notebooks/ and solutions/ runs top to bottom in quick mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbrun import ROOT, execute

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "solutions").glob("*/*.ipynb")
)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_notebook_runs_in_quick_mode(path: Path) -> None:
    nb, seconds = execute(path, quick=True, timeout=600)
    errors = [
        (i, out.get("ename"))
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: error outputs in cells {errors}"
    print(f"{path.name}: {seconds:.1f} s")
