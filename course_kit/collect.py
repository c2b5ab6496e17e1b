"""Find each student's notebook in a folder or an LMS zip, as submissions really come.

* any file name and folder depth; a lone top folder (a zip of ``submissions/...``) is looked
  through; ``__MACOSX``, ``._*`` files, hidden folders and ``.ipynb_checkpoints`` are skipped;
* zips inside (a student's own zip, an LMS "zip of zips") are unpacked, up to three levels;
  a member whose path escapes its folder is skipped and named in the notes;
* LMS names: Blackboard ``<title>_<user>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>]`` (user ids may
  hold underscores: the title shared by all files is removed), Canvas
  ``<login>[_late]_<user id>_<submission id>_<file>``, Moodle folders
  ``<Full Name>_<id>_assignsubmission_file_``; otherwise the first folder below the base, or
  the file's own name, is the student;
* several notebooks of one student: the latest attempt (LMS time stamps), else the one named
  like the assignment, else the one most like it (its cells and graded functions), else the
  newest file; the choice is written in the notes;
* every name maps to a stable, safe id (:func:`safe_id`), kept beside the original name.

Nothing here raises for one student's problem: a student with no usable notebook still gets an
entry (``path=None``) and a note.
"""

from __future__ import annotations

import ast
import hashlib
import re
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

BLACKBOARD = re.compile(
    r"^(?P<pre>.+?)_attempt_(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<file>.*))?$"
)
CANVAS = re.compile(r"^(?P<login>[A-Za-z0-9]+)(?:_late)?_(?P<uid>\d+)_(?P<sub>\d+)_(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_\w*$")
SKIP_PARTS = ("__MACOSX", ".ipynb_checkpoints")
SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass
class Found:
    """One student's submission."""

    student: str  # the safe id used by nbgrader
    name: str  # the name as found (folder, file or LMS user)
    path: Path | None  # the notebook chosen, or None when none could be used
    timestamp: str | None = None  # "YYYY-MM-DD HH:MM:SS" from the LMS, if any
    notes: list[str] = field(default_factory=list)


def safe_id(name: str) -> str:
    """A stable id made of ``[A-Za-z0-9_.-]`` for any name.

    A name that is already safe is kept; any other (spaces, accents, other scripts) becomes its
    ASCII letters plus a short hash of the original, so two names never share an id.

    >>> safe_id("alice"), safe_id("José Núñez")
    ('alice', 'Jose_Nunez-652047')
    """
    name = name.strip()
    if name and not SAFE.search(name) and not name.startswith((".", "-")):
        return name
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = SAFE.sub("_", ascii_).strip("_.-")[:40] or "student"
    return f"{base}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _ts(stamp: str) -> str:
    """``2030-01-02-09-30-00`` → ``2030-01-02 09:30:00`` (dateutil misreads the former)."""
    d = stamp.split("-")
    return f"{d[0]}-{d[1]}-{d[2]} {d[3]}:{d[4]}:{d[5]}"


def _extract(archive: Path, dest: Path, notes: list[str], depth: int = 0) -> None:
    """Unpack a zip safely; zips inside are unpacked beside themselves (3 levels)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = Path(info.filename).parts
                if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename:
                    notes.append(f"skipped an unsafe path in {archive.name}: {info.filename!r}")
                    continue
                if any(p in SKIP_PARTS or p.startswith("._") for p in parts):
                    continue
                if info.file_size > 500 * 2**20:
                    notes.append(f"skipped {info.filename!r}: larger than 500 MB")
                    continue
                zf.extract(info, dest)
    except (zipfile.BadZipFile, OSError, RuntimeError) as err:
        notes.append(f"could not unpack {archive.name}: {err}")
        return
    if depth >= 3:
        return
    for inner in sorted(dest.rglob("*")):
        if inner.suffix.lower() == ".zip" and inner.is_file():
            target = inner.with_name(inner.stem)
            if target.exists():
                target = inner.with_name(inner.stem + "_zip")
            _extract(inner, target, notes, depth + 1)
            inner.unlink()


def _notebooks(base: Path) -> list[Path]:
    out = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if path.suffix.lower() != ".ipynb" or not path.is_file() or path.is_symlink():
            continue
        if any(p in SKIP_PARTS or p.startswith(".") for p in rel.parts):
            continue
        out.append(path)
    return out


def _base(folder: Path) -> Path:
    """Look through lone wrapper folders (``submissions/`` inside a zip)."""
    while True:
        entries = [
            e for e in folder.iterdir() if e.name not in SKIP_PARTS and not e.name.startswith(".")
        ]
        dirs = [e for e in entries if e.is_dir()]
        files = [e for e in entries if e.is_file() and e.suffix.lower() == ".ipynb"]
        if len(dirs) != 1 or files:
            return folder
        inner = [
            e for e in dirs[0].iterdir() if e.name not in SKIP_PARTS and not e.name.startswith(".")
        ]
        # descend only when the lone folder holds several students (folders or notebooks)
        if len(inner) < 2 or _is_student_folder(dirs[0]):
            return folder
        folder = dirs[0]


def _is_student_folder(folder: Path) -> bool:
    return bool(MOODLE.match(folder.name) or BLACKBOARD.match(folder.name))


def _lms_title(prefixes: list[str]) -> str:
    """The part all Blackboard prefixes share (``<title>_``), cut at an underscore."""
    if not prefixes:
        return ""
    if len(prefixes) == 1:
        pre = prefixes[0]
        return pre[: pre.index("_") + 1] if "_" in pre else ""
    first, last = min(prefixes), max(prefixes)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    common = first[:n]
    return common[: common.rfind("_") + 1] if "_" in common else ""


@dataclass
class _Candidate:
    name: str
    path: Path
    timestamp: str | None = None


def _candidates(base: Path, notebooks: list[Path]) -> list[_Candidate]:
    pre: dict[Path, tuple[str, str]] = {}  # path -> (prefix, timestamp) for Blackboard names
    for nb in notebooks:
        for part in reversed(nb.relative_to(base).parts):
            m = BLACKBOARD.match(Path(part).stem if part == nb.name else part)
            if m:
                pre[nb] = (m["pre"], _ts(m["ts"]))
                break
    title = _lms_title(sorted({p for p, _ in pre.values()}))
    out = []
    for nb in notebooks:
        rel = nb.relative_to(base)
        if nb in pre:
            prefix, stamp = pre[nb]
            out.append(_Candidate(prefix[len(title) :] or prefix, nb, stamp))
            continue
        moodle = next((MOODLE.match(p) for p in rel.parts[:-1] if MOODLE.match(p)), None)
        canvas = CANVAS.match(nb.name)
        if moodle:
            out.append(_Candidate(f"{moodle['name']}_{moodle['id']}", nb))
        elif len(rel.parts) >= 2:
            out.append(_Candidate(rel.parts[0], nb))
        elif canvas:
            out.append(_Candidate(canvas["login"], nb))
        else:
            out.append(_Candidate(nb.stem, nb))
    return out


def _graded_names(released: Path | None) -> set[str]:
    """Names of the functions the released notebook asks for (its answer cells)."""
    import nbformat

    if released is None or not Path(released).is_file():
        return set()
    names = set()
    for cell in nbformat.read(released, as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            names |= defined_names(cell.source)
    return names


def defined_names(source: str) -> set[str]:
    """Functions and classes a cell defines at top level (empty if it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set(re.findall(r"^def\s+(\w+)", source, flags=re.M))
    return {
        n.name
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def _likeness(path: Path, assignment: str, names: set[str]) -> int:
    """How much a notebook looks like the assignment (graded functions it defines)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return -1
    score = sum(3 for n in names if re.search(rf"def\s+{re.escape(n)}\s*\(", text))
    return score + (2 if assignment in text else 0)


def collect_submissions(
    submissions: Path, assignment: str, released: Path | None = None, keep: Path | None = None
) -> list[Found]:
    """Every student found in ``submissions`` (a folder or a zip), with the notebook chosen.

    The chosen notebooks are copied into ``keep`` (default: a new temporary folder)."""
    submissions = Path(submissions)
    notes_all: list[str] = []
    with tempfile.TemporaryDirectory(prefix="course-kit-collect-") as tmp:
        if submissions.is_file():
            if submissions.suffix.lower() == ".ipynb":
                folder = Path(tmp) / "single"
                folder.mkdir()
                (folder / submissions.name).write_bytes(submissions.read_bytes())
            elif zipfile.is_zipfile(submissions):
                folder = Path(tmp) / "zip"
                _extract(submissions, folder, notes_all)
            else:
                raise ValueError(
                    f"`submissions` must be a folder, a .zip or a .ipynb: {submissions}"
                )
        else:
            folder = Path(tmp) / "copy"
            _copy_tree(submissions, folder, notes_all)
        base = _base(folder)
        cands = _candidates(base, _notebooks(base))
        names = _graded_names(released)
        by_name: dict[str, list[_Candidate]] = {}
        for c in cands:
            by_name.setdefault(c.name, []).append(c)
        keep = Path(keep or tempfile.mkdtemp(prefix="course-kit-chosen-"))
        found = []
        for name, group in sorted(by_name.items()):
            chosen, note = _choose(group, assignment, names)
            notes = [note] if note else []
            copy = keep / safe_id(name) / chosen.path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(chosen.path.read_bytes())
            sid = safe_id(name)
            if sid != name:
                notes.append(
                    f"graded under the id {sid!r} (the name {name!r} has spaces or "
                    "characters nbgrader cannot use)"
                )
            found.append(Found(sid, name, copy, chosen.timestamp, notes))
    for item in found:
        item.notes = notes_all + item.notes if notes_all else item.notes
    return found


def _copy_tree(src: Path, dest: Path, notes: list[str]) -> None:
    """Copy the submissions folder (so zips inside can be unpacked without touching it)."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(p in SKIP_PARTS or p.startswith(".") for p in rel.parts):
            continue
        target = dest / rel
        if path.is_symlink():
            continue
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix.lower() == ".zip":
            _extract(path, target.with_suffix(""), notes)
        elif path.suffix.lower() == ".ipynb":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def _choose(group: list[_Candidate], assignment: str, names: set[str]) -> tuple[_Candidate, str]:
    if len(group) == 1:
        return group[0], ""
    listed = ", ".join(sorted(str(c.path.name) for c in group))
    stamped = [c for c in group if c.timestamp]
    if stamped:
        latest = max(stamped, key=lambda c: c.timestamp or "")
        return latest, f"{len(group)} attempts ({listed}); graded the latest ({latest.timestamp})"
    named = [c for c in group if c.path.name == f"{assignment}.ipynb"]
    if len(named) == 1:
        return named[0], f"{len(group)} notebooks ({listed}); graded {named[0].path.name}"
    scored = sorted(
        group, key=lambda c: (_likeness(c.path, assignment, names), c.path.stat().st_mtime)
    )
    best = scored[-1]
    return best, (
        f"{len(group)} notebooks ({listed}); graded {best.path.name}, the one that defines the "
        "assignment's functions"
    )
