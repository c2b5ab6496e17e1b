"""Bring the course's new commits into a student's clone without losing their edits:
``make update`` (``python -m course_lib.update``).

1. Notebooks and assignments you changed (tracked files that differ from your last commit, as
   git sees them through the notebook filter: a notebook you only ran is not "changed") are
   copied whole into ``.git/course-kit-update/<time>/`` and put aside with ``git stash``.
2. ``git pull --no-rebase`` brings the course's commits in.
3. ``git stash pop`` puts your edits back, and every cell that is as it was gets its outputs
   back from the copy (the stash holds notebooks without outputs). Where the course changed
   the same lines as you, your version stays in place and the course's new one is written
   beside it as ``<name>.course<suffix>``; the stash is kept (``git stash list``) and the
   message says what to do.

When the pull itself fails (no network, a file of yours in the way) your edits are put back and
nothing changes. Only the standard library is used, so it runs without ``.venv``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# used for the stash (and a merge commit) only when git has no identity configured
FALLBACK_IDENTITY = ("-c", "user.name=course kit student", "-c", "user.email=student@localhost")


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise UpdateError(f"`git {' '.join(args)}` failed:\n{done.stderr.strip()}")
    return done


class UpdateError(RuntimeError):
    """A step failed; the message says what happened and what to do."""


def _identity() -> tuple[str, ...]:
    has = _git("config", "user.email", check=False).stdout.strip()
    return () if has else FALLBACK_IDENTITY


def _changed_files() -> list[str]:
    """Tracked files that differ from HEAD (through the filter), staged or not. A notebook that
    was only run first gets its index entry refreshed (git calls a file whose size changed
    "modified" without running the filter; ``git diff`` runs it)."""
    out = _git("status", "--porcelain", "--untracked-files=no", "-z").stdout
    listed = [entry[3:] for entry in out.split("\0") if entry[3:]]
    for rel in listed:
        if (
            rel.endswith(".ipynb")
            and _git("diff", "--quiet", "--", rel, check=False).returncode == 0
        ):
            _git("add", "--", rel, check=False)  # the same content: records the new size only
    out = _git("status", "--porcelain", "--untracked-files=no", "-z").stdout
    return [entry[3:] for entry in out.split("\0") if entry[3:]]


def _keep_copy(paths: list[str], top: Path) -> Path:
    backup = top / ".git" / "course-kit-update" / time.strftime("%Y%m%d-%H%M%S")
    for rel in paths:
        if (top / rel).is_file():
            (backup / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(top / rel, backup / rel)
    return backup


def _beside(path: Path, tag: str) -> Path:
    """``name.<tag>.ipynb`` next to ``path`` (numbered when that exists)."""
    n, candidate = 1, path.with_name(f"{path.stem}.{tag}{path.suffix}")
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{tag}{n}{path.suffix}")
    return candidate


def _restore_outputs(paths: list[str], top: Path, backup: Path) -> None:
    """Give the notebooks put back their outputs from the copy: every code cell whose id and
    source are as they were gets its outputs and execution count back (the stash holds
    notebooks as git stores them, without outputs)."""
    for rel in paths:
        saved, now = backup / rel, top / rel
        if not (rel.endswith(".ipynb") and saved.is_file() and now.is_file()):
            continue
        try:
            old = json.loads(saved.read_text(encoding="utf-8"))
            new = json.loads(now.read_text(encoding="utf-8"))
            cells = {(c.get("id"), _source(c)): c for c in old["cells"]}
        except (ValueError, KeyError, TypeError):
            continue
        restored = 0
        for cell in new.get("cells", []):
            before = cells.get((cell.get("id"), _source(cell)))
            if cell.get("cell_type") == "code" and before and before.get("outputs"):
                cell["outputs"] = before["outputs"]
                cell["execution_count"] = before.get("execution_count")
                restored += 1
        if restored:
            text = json.dumps(new, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
            now.write_text(text, encoding="utf-8")


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _resolve_conflicts(top: Path, stash: str, backup: Path) -> list[tuple[str, Path | None]]:
    """After a conflicting ``stash pop``: your version (outputs included) at each path, the
    course's new one beside it (``None`` where the course deleted the file)."""
    conflicted = _git("diff", "--name-only", "--diff-filter=U", "-z").stdout.split("\0")
    moved = []
    for rel in filter(None, conflicted):
        course = None
        theirs = subprocess.run(["git", "show", f"HEAD:{rel}"], capture_output=True)
        if theirs.returncode == 0:
            course = _beside(top / rel, "course")
            course.write_bytes(theirs.stdout)
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        if (backup / rel).is_file():
            shutil.copy2(backup / rel, top / rel)
        else:
            (top / rel).write_bytes(_git_bytes("show", f"{stash}:{rel}"))
        moved.append((rel, course))
    _git("reset", "-q")  # nothing staged, nothing unmerged: the edits are in the work tree
    return moved


def _git_bytes(*args: str) -> bytes:
    return subprocess.run(["git", *args], capture_output=True, check=True).stdout


def update() -> int:
    """Stash, pull, reapply (see the module docstring). Returns 0, or 1 with a message."""
    if _git("rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        raise UpdateError("not inside a git clone of the course: nothing to update")
    top = Path(_git("rev-parse", "--show-toplevel").stdout.strip())
    git_dir = Path(_git("rev-parse", "--git-dir").stdout.strip())
    if (git_dir if git_dir.is_absolute() else Path.cwd() / git_dir).joinpath("MERGE_HEAD").exists():
        raise UpdateError("a merge is in progress: finish it (git commit) or `git merge --abort`")
    if _git("diff", "--name-only", "--diff-filter=U").stdout.strip():
        raise UpdateError("files are in conflict from before: resolve them, then `git add` them")
    if _git("rev-parse", "--abbrev-ref", "@{upstream}", check=False).returncode != 0:
        raise UpdateError("this branch follows no remote branch: `git pull <remote> <branch>`")
    changed = _changed_files()
    ident = _identity()
    stash = None
    if changed:
        backup = _keep_copy(changed, top)
        print(f"course kit: putting your edits aside ({len(changed)} files; a copy: {backup})")
        _git(*ident, "stash", "push", "-m", "course kit: your edits before `make update`")
        stash = _git("rev-parse", "stash@{0}").stdout.strip()
    pulled = _git(*ident, "pull", "--no-rebase", "--no-edit", check=False)
    if pulled.returncode != 0:
        _git("merge", "--abort", check=False)
        if stash:
            _git("stash", "pop", check=False)
        raise UpdateError(
            f"`git pull` failed, nothing was changed (your edits are back in place):\n"
            f"{(pulled.stderr or pulled.stdout).strip()}"
        )
    print(pulled.stdout.strip())
    if not stash:
        print("course kit: up to date (you had no edits to put back)")
        return 0
    popped = _git("stash", "pop", check=False)
    if popped.returncode == 0:
        _restore_outputs(changed, top, backup)
        print(f"course kit: updated; your edits are back: {', '.join(changed)}")
        return 0
    moved = _resolve_conflicts(top, stash, backup)
    lines = [
        f"  {rel}: yours as it was; the course's new version: {c.name if c else '(deleted)'}"
        for rel, c in moved
    ]
    print(
        "course kit: updated, but the course changed the same parts as you in:\n"
        + "\n".join(lines)
        + "\n  Copy what you need from the course's version into yours (or the other way round),"
        "\n  then delete the .course file. Your other edits are back in place; a copy of all of"
        f"\n  them stays in `git stash list` (and {backup}): `git stash drop` once you are done."
    )
    return 1


def main() -> int:
    try:
        return update()
    except UpdateError as error:
        print(f"course kit: make update: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
