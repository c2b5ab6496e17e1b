"""The repository's own rules: clean notebooks, one package list, the release is generated."""

from __future__ import annotations

import json
import re
import shutil

import nbformat
import pytest
import tomllib

from course_kit.nbrun import ROOT

NOTEBOOKS = (
    sorted(ROOT.glob("notebooks/*.ipynb"))
    + sorted(ROOT.glob("solutions/*/*.ipynb"))
    + sorted(ROOT.glob("assignments/*/*.ipynb"))
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs (clear them before committing)"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


def test_notebooks_are_numbered_in_lecture_order():
    names = [p.name for p in sorted(ROOT.glob("notebooks/*.ipynb"))]
    assert names[0] == "00_start_here.ipynb"
    numbers = [int(n[:2]) for n in names]
    assert all(re.match(r"\d\d_[a-z0-9_]+\.ipynb$", n) for n in names), names
    assert numbers == sorted(set(numbers))


def _names(requirements):
    return {
        re.split(r"[<>=!~\[ ]", r.strip(), maxsplit=1)[0].lower(): r.replace(" ", "")
        for r in requirements
    }


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["test"])
    text = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+- ([A-Za-z][^\n#]*)$", text.split("- pip:")[1], re.M)
    listed = _names(pip_lines)
    assert listed == wanted


def test_release_is_what_make_release_generates(tmp_path):
    """assignments/ equals a fresh `nbgrader generate_assignment` of solutions/."""
    from course_kit import instructor

    ids = instructor.assignment_ids(ROOT)
    if not ids:
        pytest.skip("no assignments yet")
    copy = tmp_path / "course"
    copy.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", copy)
    shutil.copytree(ROOT / "solutions", copy / "solutions")
    instructor.release(copy)
    for aid in ids:
        fresh = sorted(
            p.relative_to(copy) for p in (copy / "assignments" / aid).rglob("*") if p.is_file()
        )
        committed = sorted(
            p.relative_to(ROOT) for p in (ROOT / "assignments" / aid).rglob("*") if p.is_file()
        )
        assert fresh == committed, f"assignments/{aid}: run `make release`"
        for rel in fresh:
            a, b = copy / rel, ROOT / rel
            if rel.suffix == ".ipynb":
                assert nbformat.read(a, 4) == nbformat.read(b, 4), f"{rel}: run `make release`"
            else:
                assert a.read_bytes() == b.read_bytes(), f"{rel}: run `make release`"


def test_course_lib_holds_no_graded_piece():
    graded = re.compile(
        r"def (gram_matrix|style_loss|min_error_boundary_cut|cut_mask|"
        r"overlap_error|cycle_consistency_loss|identity_loss|gan_loss|"
        r"generator_objective|discriminator_objective|patch_nce_loss\w*|"
        r"sample_patches)\b"
    )
    hits = [p.name for p in (ROOT / "course_lib").glob("*.py") if graded.search(p.read_text())]
    assert not hits, f"graded pieces must not be importable from course_lib: {hits}"


def test_grading_folder_is_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "grading/" in ignored and ".venv/" in ignored
