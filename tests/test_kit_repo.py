"""The repository's own rules: clean notebooks, one package list, the release is generated."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

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


# --- a student's clone: run notebooks, pull the course's commits, keep edits (issue 26) ------


def _notebook(*sources: str) -> nbformat.NotebookNode:
    """A committed-style notebook: code cells with these sources, a markdown cell between each."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, source in enumerate(sources):
        nb.cells += [nbformat.v4.new_markdown_cell(f"## step {i}\n\ntext\n\nmore text\n")]
        nb.cells += [nbformat.v4.new_code_cell(source)]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def _make(repo, target, venv, *extra, env=None):
    """`make TARGET` with this checkout's Makefile, run in the scratch repository."""
    return subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), target, f"VENV={venv}", "TORCH=pypi", *extra],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env or {**os.environ},
    )


def _fake_venv(tmp_path):
    """A stand-in for .venv: this interpreter as its python, stamps newer than pyproject.toml."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    for stamp in (".course-kit-installed",):
        (venv / stamp).touch()
        os.utime(venv / stamp, (time.time() + 600, time.time() + 600))
    return venv


def _course_and_clone(tmp_path, notebooks: dict):
    """An upstream "course" repository holding the filter, course_lib's update and these
    notebooks, and a student's clone of it with the filter `make git-filter` defines."""
    course, clone = tmp_path / "course", tmp_path / "student"
    course.mkdir()
    _git(course, "init", "-q", "-b", "main")
    for repo in (course,):
        _git(repo, "config", "user.email", "instructor@example.org")
        _git(repo, "config", "user.name", "Instructor")
    (course / "course_lib").mkdir()
    for name in ("__init__.py", "nbstrip.py", "update.py"):
        shutil.copy(ROOT / "course_lib" / name, course / "course_lib" / name)
    shutil.copy(ROOT / ".gitattributes", course / ".gitattributes")
    (course / "pyproject.toml").write_text("")
    for rel, nb in notebooks.items():
        (course / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, course / rel)
    _git(course, "add", ".")
    _git(course, "commit", "-q", "-m", "the course")
    _git(tmp_path, "clone", "-q", str(course), str(clone))
    _git(clone, "config", "user.email", "student@example.org")
    _git(clone, "config", "user.name", "Student")
    venv = _fake_venv(tmp_path)
    done = _make(clone, "git-filter", venv)
    assert done.returncode == 0, done.stderr
    assert "nbstrip" in _git(clone, "config", "filter.course-kit-nbstrip.clean")
    return course, clone, venv


def _jupyterlab_save(path, hook=True):
    """What JupyterLab writes on save after a run, besides outputs (display name, the full
    language_info, per-cell timing), then the post-save hook `make lab` gives it."""
    nb = nbformat.read(path, 4)
    nb.metadata.kernelspec.display_name = "Python 3 (ipykernel)"
    nb.metadata.language_info = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    for cell in nb.cells:
        cell.metadata["execution"] = {"iopub.execute_input": "2026-12-07T10:00:00.000Z"}
        cell.metadata["trusted"] = True
    nbformat.write(nb, path)
    if hook:
        from course_lib.nbstrip import refresh_git_index

        refresh_git_index(os_path=str(path), model={}, contents_manager=None)


def _run_for_real(path, hook=True):
    import nbclient

    nb = nbformat.read(path, 4)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120, record_timing=True).execute()
    nbformat.write(nb, path)
    _jupyterlab_save(path, hook)


def _upstream_edit(course, rel, old, new, message):
    path = course / rel
    path.write_text(path.read_text().replace(old, new))
    _git(course, "commit", "-q", "-am", message)


@pytest.mark.slow
def test_a_run_notebook_stays_clean_and_make_update_keeps_the_students_edits(tmp_path):
    lesson = _notebook("print('lesson')", "x = 2\nx * 21", "print('end')")
    work = _notebook("def answer():\n    return None", "print(answer())", "print('done')")
    course, clone, venv = _course_and_clone(
        tmp_path, {"notebooks/lesson.ipynb": lesson, "assignments/a/a.ipynb": work}
    )
    # a notebook only run (really, in a kernel) and saved the JupyterLab way is not modified...
    _run_for_real(clone / "notebooks/lesson.ipynb")
    assert "42" in (clone / "notebooks/lesson.ipynb").read_text()  # it did run
    assert "3.11.7" in (clone / "notebooks/lesson.ipynb").read_text()
    assert _git(clone, "status", "--porcelain") == ""
    # ... so a plain `git pull` of a later course commit updates it
    _upstream_edit(course, "notebooks/lesson.ipynb", "print('lesson')", "print('v2')", "v2")
    _git(clone, "pull", "-q", "--no-rebase")
    assert "print('v2')" in (clone / "notebooks/lesson.ipynb").read_text()

    # the student writes their answer and runs it; the course then fixes the last cell of the
    # same assignment and the lesson again: `make update` brings both in, keeping the answer
    answer = clone / "assignments/a/a.ipynb"
    answer.write_text(answer.read_text().replace("return None", "return 42"))
    _run_for_real(answer)
    _run_for_real(clone / "notebooks/lesson.ipynb", hook=False)  # e.g. run in VS Code
    _upstream_edit(course, "assignments/a/a.ipynb", "print('done')", "print('fixed')", "fix")
    _upstream_edit(course, "notebooks/lesson.ipynb", "print('end')", "print('v3')", "v3")
    with pytest.raises(subprocess.CalledProcessError):  # what a plain pull says
        _git(clone, "pull", "-q", "--no-rebase")
    done = _make(clone, "update", venv)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "your edits are back: assignments/a/a.ipynb" in done.stdout
    mine = nbformat.read(answer, 4)
    sources = [c.source for c in mine.cells if c.cell_type == "code"]
    assert sources == ["def answer():\n    return 42", "print(answer())", "print('fixed')"]
    # the cells the course did not change keep their outputs (the stash holds none)
    assert mine.cells[3].outputs[0]["text"] == "42\n"
    lesson_now = nbformat.read(clone / "notebooks/lesson.ipynb", 4)
    assert [c.source for c in lesson_now.cells if c.cell_type == "code"][-1] == "print('v3')"
    assert _git(clone, "rev-parse", "HEAD") == _git(course, "rev-parse", "HEAD")
    assert _git(clone, "stash", "list") == ""
    assert _git(clone, "status", "--porcelain") == " M assignments/a/a.ipynb\n"


def test_make_update_with_a_conflict_keeps_both_versions(tmp_path):
    work = _notebook("def answer():\n    return None", "print('done')")
    course, clone, venv = _course_and_clone(tmp_path, {"assignments/a/a.ipynb": work})
    answer = clone / "assignments/a/a.ipynb"
    answer.write_text(answer.read_text().replace("return None", "return 'mine'"))
    _upstream_edit(course, "assignments/a/a.ipynb", "return None", "return 'TODO'", "hint")
    done = _make(clone, "update", venv)
    assert done.returncode != 0
    assert "assignments/a/a.ipynb: yours as it was; the course's new version: a.course.ipynb" in (
        done.stdout
    ), done.stdout + done.stderr
    assert "return 'mine'" in answer.read_text()  # nothing of the student's is lost
    course_copy = clone / "assignments/a/a.course.ipynb"
    assert "return 'TODO'" in course_copy.read_text()
    nbformat.validate(nbformat.read(answer, 4))  # no conflict markers inside the JSON
    assert _git(clone, "rev-parse", "HEAD") == _git(course, "rev-parse", "HEAD")
    assert "your edits before `make update`" in _git(clone, "stash", "list")
    assert "UU" not in _git(clone, "status", "--porcelain")


def test_make_update_when_the_pull_fails_changes_nothing(tmp_path):
    work = _notebook("def answer():\n    return None")
    course, clone, venv = _course_and_clone(tmp_path, {"assignments/a/a.ipynb": work})
    answer = clone / "assignments/a/a.ipynb"
    answer.write_text(answer.read_text().replace("return None", "return 'mine'"))
    shutil.rmtree(course)  # the course cannot be reached
    done = _make(clone, "update", venv)
    assert done.returncode != 0 and "`git pull` failed, nothing was changed" in done.stderr
    assert "return 'mine'" in answer.read_text() and _git(clone, "stash", "list") == ""


def test_the_git_filter_survives_make_clean_venv(tmp_path):
    """After `make clean-venv` the filter runs python3 (nbstrip needs only the standard
    library), or passes files through where there is none: never an error on `git status`."""
    nb = _notebook("print(1)")
    course, clone, venv = _course_and_clone(tmp_path, {"n.ipynb": nb})
    shutil.rmtree(venv)  # what `make clean-venv` does
    os.utime(clone / "n.ipynb", (time.time() + 5, time.time() + 5))  # git must run the filter
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True)
    assert status.stderr == b"" and status.stdout == b"", status.stderr
    run = nbformat.read(clone / "n.ipynb", 4)
    run.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nbformat.write(run, clone / "n.ipynb")
    _jupyterlab_save(clone / "n.ipynb")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True)
    assert status.stderr == b"" and status.stdout == b""  # python3 strips it
    # no python3 at all (only git and cat on PATH): the notebook passes through, silently
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "cat"):
        (bare / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bare), "HOME": str(tmp_path)}
    (clone / "n.ipynb").touch()
    status = subprocess.run(["git", "status"], cwd=clone, capture_output=True, env=env)
    assert status.returncode == 0 and status.stderr == b"", status.stderr
    assert b"modified:   n.ipynb" in status.stdout


def test_start_here_slide_index_names_real_sections():
    """Notebook 00's index from the lecture's slides to notebook sections: every section it names
    is a heading of that notebook (a renamed heading leaves no stale entry), and every lecture
    notebook 01-15 is reached."""
    start = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", 4)
    (index,) = [c.source for c in start.cells if c.source.startswith("## From the lecture's")]
    links = re.findall(r"\[(\d\d) § ((?:[^\]\\]|\\.)+)\]\((\d\d_\w+\.ipynb)\)", index)
    assert len(links) >= 30, links
    for number, section, name in links:
        assert name.startswith(number), (number, name)
        nb = nbformat.read(ROOT / "notebooks" / name, 4)
        headings = {
            line.lstrip("#").strip()
            for c in nb.cells
            if c.cell_type == "markdown"
            for line in c.source.splitlines()
            if line.startswith("#")
        }
        assert section in headings, f"00's slide index: {name} has no heading {section!r}"
    assert {n for n, _, _ in links} == {f"{i:02d}" for i in range(1, 16)}


def test_no_notebook_sets_torch_threads_itself():
    """One place decides threads: pick_device() applies course_lib/threads.py's policy (and
    `make lab THREADS=N`); a notebook's own torch.set_num_threads would silently override both."""
    setters = re.compile(r"set_num_threads|set_num_interop_threads|OMP_NUM_THREADS")
    hits = [
        f"{path.name} cell {i}"
        for path in sorted(ROOT.glob("notebooks/*.ipynb"))
        for i, cell in enumerate(nbformat.read(path, 4).cells)
        if cell.cell_type == "code" and setters.search(cell.source)
    ]
    assert not hits, f"these set threads themselves (leave it to pick_device()): {hits}"
