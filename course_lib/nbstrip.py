"""Strip a notebook's outputs: the git "clean" filter that `make lab` installs.

The kit's notebooks are committed without outputs. `make lab` registers this module as a git
filter for ``*.ipynb`` (see ``.gitattributes``), so ``git add`` stages a notebook *without* its
outputs, execution counts and widget state while the file on disk keeps them: a student who
commits their work does not commit megabytes of pictures, and ``git status`` stays quiet after
merely running a notebook. By hand::

    python -m course_lib.nbstrip notebook.ipynb ...   # strip these files in place
    python -m course_lib.nbstrip < in.ipynb > out.ipynb  # as git's filter does

Only the standard library is imported (git runs the filter for every staged notebook), and the
output is byte-for-byte what ``nbformat.write`` writes, so committed notebooks pass through
unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# notebook-level and cell-level metadata that only records a run (never the lesson)
RUN_METADATA = ("widgets", "signature")
CELL_RUN_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")


def strip_notebook(nb: dict) -> dict:
    """Remove outputs, execution counts and run-only metadata from a notebook dict (in place).

    Args:
        nb: a notebook as parsed JSON (nbformat 4).

    Returns:
        The same dict.
    """
    for key in RUN_METADATA:
        nb.get("metadata", {}).pop(key, None)
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
