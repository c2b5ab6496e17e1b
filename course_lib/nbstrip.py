"""Strip a notebook's outputs: the git "clean" filter that `make lab` installs.

The kit's notebooks are committed without outputs. `make lab` registers this module as a git
filter for ``*.ipynb`` (see ``.gitattributes``), so ``git add`` stages a notebook *without* its
outputs, execution counts and widget state while the file on disk keeps them: a student who
commits their work does not commit megabytes of pictures, and ``git status`` stays quiet after
merely running a notebook. What a run or a save rewrites besides (JupyterLab's
``kernelspec.display_name`` such as "Python 3 (ipykernel)", the whole ``language_info`` with
the Python version, per-cell timing and "trusted" flags) is normalised to what the course
commits. git itself calls a file whose size changed "modified" without running the filter, so
``make lab`` also tells JupyterLab to run :func:`refresh_git_index` after every save: a
notebook that was only run is then not "modified" and ``git pull`` can update it (``make
update`` does the same refresh first, for notebooks run elsewhere). By hand::

    python -m course_lib.nbstrip notebook.ipynb ...   # strip these files in place
    python -m course_lib.nbstrip < in.ipynb > out.ipynb  # as git's filter does

Only the standard library is imported (git runs the filter for every staged notebook), and the
output is byte-for-byte what ``nbformat.write`` writes, so committed notebooks pass through
unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# notebook-level and cell-level metadata that only records a run (never the lesson)
RUN_METADATA = ("widgets", "signature")
CELL_RUN_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "trusted")
# the kernelspec the course commits for its "python3" kernel: a run names the same kernel but
# JupyterLab writes its own display name ("Python 3 (ipykernel)")
PYTHON3_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def strip_notebook(nb: dict) -> dict:
    """Remove outputs, execution counts and run-only metadata from a notebook dict (in place);
    normalise the kernelspec of the "python3" kernel and ``language_info`` (only its name stays).

    Args:
        nb: a notebook as parsed JSON (nbformat 4).

    Returns:
        The same dict.
    """
    meta = nb.get("metadata", {})
    for key in RUN_METADATA:
        meta.pop(key, None)
    if isinstance(meta.get("kernelspec"), dict) and meta["kernelspec"].get("name") == "python3":
        meta["kernelspec"] = dict(PYTHON3_KERNELSPEC)
    if isinstance(meta.get("language_info"), dict):  # version, mimetype, ... filled in by a run
        meta["language_info"] = {"name": meta["language_info"].get("name", "python")}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in CELL_RUN_METADATA:
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def strip_text(text: str) -> str:
    """The stripped notebook as text, written the way ``nbformat.write`` writes it.

    Text that is not a JSON notebook comes back unchanged (git must never lose a file).
    """
    try:
        nb = json.loads(text)
    except ValueError:
        return text
    if not isinstance(nb, dict) or "cells" not in nb:
        return text
    return json.dumps(strip_notebook(nb), sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def refresh_git_index(os_path: str, **_: object) -> bool:
    """JupyterLab's post-save hook (``make lab`` sets ``ContentsManager.post_save_hook``): when
    a tracked notebook, stripped by the filter, is what git's index holds, ``git add`` it, which
    stores nothing new but records the file's new size and time, so ``git status`` and ``git
    pull`` see it unchanged. Files that really changed, untracked files and folders outside git
    are left alone; errors are swallowed (a save must never fail because of git).

    Returns:
        Whether the index entry was refreshed.
    """
    path = Path(os_path)
    if path.suffix != ".ipynb":
        return False

    def git(*args: str) -> int:
        done = subprocess.run(
            ["git", *args, "--", path.name], cwd=path.parent, capture_output=True, timeout=60
        )
        return done.returncode

    try:
        if git("ls-files", "--error-unmatch") != 0 or git("diff", "--quiet") != 0:
            return False
        return git("add") == 0
    except (OSError, subprocess.SubprocessError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Strip the files named in ``argv`` in place, or stdin to stdout when none are named."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        data = sys.stdin.buffer.read().decode("utf-8")
        sys.stdout.buffer.write(strip_text(data).encode("utf-8"))
        return 0
    for name in paths:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        stripped = strip_text(text)
        if stripped != text:
            path.write_text(stripped, encoding="utf-8")
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
