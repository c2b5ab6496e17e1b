"""Sabotage the lessons: each notebook's ways to break its technique must make a named claim fail.

The sabotages live in each notebook's metadata (``course_kit.sabotages``; see
``course_kit/claims.py`` and docs/CONTRIBUTING.md). Here: every entry is well formed and still
applies to the notebook as it is (all sizes, no execution), and the quick-size ones are executed
(the notebook up to the claims they name, in quick mode) and must be caught. The full-size ones
run with ``make claims SABOTAGE=1``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course_kit.claims import Sabotage, run_sabotage, sabotaged, sabotages
from course_kit.nbrun import ROOT

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ALL = [s for path in LESSONS for s in sabotages(path)]
QUICK = [s for s in ALL if s.size == "quick"]


def _quick_claims(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return nb.metadata.get("course_kit", {}).get("quick_claims", [])


@pytest.mark.parametrize("sab", ALL, ids=lambda s: s.id)
def test_sabotage_still_applies_to_the_notebook(sab: Sabotage) -> None:
    """The text each sabotage replaces is still in its cell (else it would test nothing)."""
    nb = sabotaged(sab)
    assert any(new in c.source for c in nb.cells for _, new in sab.replace if new)
    if sab.size == "quick":  # caught at quick size: its claims must hold there unsabotaged
        not_quick = set(sab.catches) - set(_quick_claims(sab.notebook))
        assert not not_quick, (
            f"{sab.id} runs at quick size, but {sorted(not_quick)} are not in the notebook's "
            f"quick_claims (claims that hold at quick size without the sabotage)"
        )


@pytest.mark.notebook
@pytest.mark.parametrize("sab", QUICK, ids=lambda s: s.id)
def test_quick_sabotage_is_caught_by_a_named_claim(sab: Sabotage) -> None:
    verdict = run_sabotage(sab, timeout=300)
    print(verdict.line())
    assert not verdict.error, f"{sab.id}: the sabotaged notebook raised {verdict.error}"
    assert not verdict.missing, f"{sab.id}: claims never printed: {verdict.missing}"
    assert verdict.caught, (
        f"{sab.id} ({sab.broke}) was not caught: every named claim held\n"
        + "\n".join(verdict.lines)
    )


def _tiny_notebook(tmp_path: Path) -> Path:
    cells = [
        nbformat.v4.new_code_cell("from course_lib.claims import claim\nx = 0.2", id="setup"),
        nbformat.v4.new_code_cell(
            'claim("small", x, lambda v: v < 0.5, "x is small", expect="< 0.5")', id="check"
        ),
        nbformat.v4.new_code_cell("raise RuntimeError('never reached')", id="after"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["course_kit"] = {
        "quick_claims": ["small"],
        "sabotages": [
            {
                "name": "big-x",
                "cell": "setup",
                "replace": [["x = 0.2", "x = 0.7"]],
                "catches": ["small"],
                "size": "quick",
                "broke": "x",
            }
        ],
    }
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_harness_runs_up_to_the_claim_and_sees_it_fail(tmp_path):
    """The harness itself: sabotaged, the claim fails; unsabotaged, it holds (the cell after the
    claim, which would raise, is not run)."""
    (sab,) = sabotages(_tiny_notebook(tmp_path))
    caught = run_sabotage(sab, timeout=60)
    assert caught.claims == {"small": False} and caught.caught and not caught.error
    held = run_sabotage(Sabotage(**{**sab.__dict__, "replace": ()}), timeout=60)
    assert held.claims == {"small": True} and not held.caught
    zero = Sabotage(**{**sab.__dict__, "replace": (("x = 0.2", "x = 1 / 0"),)})
    broken = run_sabotage(zero, timeout=60)
    assert broken.error.startswith("ZeroDivisionError") and not broken.caught  # not a catch


@pytest.mark.parametrize(
    "change, match",
    [
        ({"replace": [["x = 0.9", "x = 1"]]}, "occurs 0 times"),
        ({"cell": "nope"}, "no code cell with id 'nope'"),
        ({"catches": ["other"]}, "no cell names a claim in"),
        ({"cell": "after", "replace": [["never", "n"]]}, "after every claim it names"),
        ({"skip": ("nope",)}, "`skip` names 'nope'"),
        ({"skip": ("check",)}, "`skip` names 'check'"),  # the claim's own cell
    ],
)
def test_a_sabotage_that_no_longer_applies_fails_loudly(tmp_path, change, match):
    (sab,) = sabotages(_tiny_notebook(tmp_path))
    sab = Sabotage(
        **{**sab.__dict__, **change, "replace": tuple(change.get("replace", sab.replace))}
    )
    with pytest.raises(ValueError, match=match):
        sabotaged(sab)


def test_skip_leaves_out_the_cells_the_claims_do_not_need(tmp_path):
    path = _tiny_notebook(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell("import time; time.sleep(600)", id="slow"))
    nbformat.write(nb, path)
    (sab,) = sabotages(path)
    kept = sabotaged(Sabotage(**{**sab.__dict__, "skip": ("slow",)}))
    assert [c.id for c in kept.cells] == ["setup", "check"]
    assert [c.id for c in sabotaged(sab).cells] == ["setup", "slow", "check"]
