"""The repository's own rules: clean notebooks, one package list, the release is generated."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

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
    """environment.yml holds what the notebooks need (the test tools come with `make test`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
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


def test_notebook_tools_stay_out_of_the_notebooks_install():
    """`make lab` installs the dependencies only; pytest, ruff and playwright are test extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base, test = _names(project["dependencies"]), _names(project["optional-dependencies"]["test"])
    assert {"pytest", "ruff", "playwright"} <= set(test)
    assert not set(test) & set(base)
    assert {"torch", "torchvision", "jupyterlab", "ipykernel"} <= set(base)


def _git(repo, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the filter imports this checkout's course_lib
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=env
    )
    return done.stdout


def test_git_filter_stages_notebooks_without_outputs(tmp_path):
    """With the filter `make lab` defines, `git add` stages a run notebook without its outputs;
    the file on disk keeps them, and a clean notebook passes through byte for byte."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "student@example.org")
    _git(repo, "config", "user.name", "Student")
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    # the command `make git-filter` configures, with this interpreter and this checkout
    clean = f"'{sys.executable}' -m course_lib.nbstrip"
    _git(repo, "config", "filter.course-kit-nbstrip.clean", clean)
    make = (ROOT / "Makefile").read_text()
    assert "filter.course-kit-nbstrip.clean" in make and "-m course_lib.nbstrip" in make
    assert "filter=course-kit-nbstrip" in (repo / ".gitattributes").read_text()

    source = ROOT / "notebooks" / "00_start_here.ipynb"
    nb = nbformat.read(source, 4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="x" * 100_000),
            nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=" * 1000}),
        ]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    run = repo / "run.ipynb"
    nbformat.write(nb, run)
    shutil.copy(source, repo / "clean.ipynb")
    _git(repo, "add", "run.ipynb", "clean.ipynb", ".gitattributes")

    staged = json.loads(_git(repo, "show", ":run.ipynb"))
    code = [c for c in staged["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "widgets" not in staged["metadata"]
    staged_nb = nbformat.reads(_git(repo, "show", ":run.ipynb"), 4)
    assert [c.source for c in staged_nb.cells] == [c.source for c in nb.cells]
    assert len(_git(repo, "show", ":run.ipynb")) < len(run.read_text()) / 10
    assert json.loads(run.read_text())["cells"][-1]["cell_type"]  # the working copy is untouched
    assert any(c.get("outputs") for c in json.loads(run.read_text())["cells"])
    assert _git(repo, "show", ":clean.ipynb") == source.read_text()
    # running the notebook again does not show it as modified
    _git(repo, "commit", "-q", "-m", "work")
    assert _git(repo, "status", "--porcelain", "run.ipynb") == ""


def test_start_here_lists_every_graded_function():
    """Notebook 00's assignment table names each function a student implements (the solution
    cells of solutions/<id>/<id>.ipynb)."""
    start = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", 4)
    table = "\n".join(c.source for c in start.cells if c.cell_type == "markdown")
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| \[(\w+)\]\(\.\./assignments/.*$", table, re.M)
    }
    ids = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    assert sorted(rows) == ids
    for aid in ids:
        nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", 4)
        graded = [
            name
            for c in nb.cells
            if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source
            for name in re.findall(r"^def (\w+)", c.source, re.M)
        ]
        assert graded, aid
        missing = [name for name in graded if f"`{name}`" not in rows[aid]]
        assert not missing, f"00_start_here's {aid} row omits {missing}"
