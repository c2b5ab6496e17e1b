"""Find each student's notebook in a folder or an LMS zip, as submissions really come.

* any file name and folder depth; a lone top folder (a zip of ``submissions/...``) is looked
  through; ``__MACOSX``, ``._*`` files, hidden folders and ``.ipynb_checkpoints`` are skipped;
* zips inside (a student's own zip, an LMS "zip of zips") are unpacked, up to three levels;
  a member whose path escapes its folder is skipped and named in the notes; only notebooks
  and zips are written out (other files are only listed), within the budgets of
  :class:`Limits` (per member, per student's zip, per upload, a file count, a compression
  ratio): a zip bomb stops at its budget with a note saying which;
* LMS names: Blackboard ``<title>_<user>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>]`` (user ids may
  hold underscores: the title shared by all files is removed), Canvas
  ``<login>[_late]_<user id>_<submission id>_<file>``, Moodle folders
  ``<Full Name>_<id>_assignsubmission_file_``; otherwise the first folder below the base, or
  the file's own name, is the student;
* several notebooks of one student: the latest attempt (LMS time stamps), else the one named
  like the assignment, else the one most like it (its cells and graded functions), else the
  newest file; the choice is written in the notes;
* every name maps to a stable, safe id (:func:`safe_id`), kept beside the original name; two
  different names never share an id (:func:`assign_ids`).

Nothing here raises for one student's problem: every submitter found (a folder, an LMS name, a
loose file) gets an entry; one with no usable notebook (only a ``.py`` or a ``.pdf``, an empty
folder, a notebook that is a symbolic link) has ``path=None`` and ``problem`` says what was
found.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
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
KEPT = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")  # names used as their own id
HASHED = re.compile(r"-[0-9a-fA-F]{6,}$")  # how every made-up id ends (a kept name never does)
JUNK = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Found:
    """One student's submission."""

    student: str  # the safe id used by nbgrader
    name: str  # the name as found (folder, file or LMS user)
    path: Path | None  # the notebook chosen, or None when none could be used
    timestamp: str | None = None  # "YYYY-MM-DD HH:MM:SS" from the LMS, if any
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why there is no notebook to grade (path is None)


@dataclass
class Limits:
    """What unpacking one upload may write (a zip of zips can unpack to terabytes).

    Sizes are the sizes a zip declares for its members, which bound what is written (Python's
    zipfile stops at the declared size). Only notebooks and zips are written at all.
    """

    member: int = 200 * 2**20  # one notebook or zip inside
    student: int = 500 * 2**20  # everything unpacked from one student's own zip
    upload: int = 2 * 2**30  # everything unpacked from the upload
    files: int = 20_000  # members listed in the upload, all zips together
    depth: int = 3  # zips inside zips inside the upload
    ratio: int = 200  # a member over 1 MB that unpacks to more than ratio × its packed size


DEFAULT_LIMITS = Limits()


class _Budget:
    """What is left to unpack, for the upload and for the student's zip being unpacked."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.upload = limits.upload
        self.files = limits.files

    def take(self, info: zipfile.ZipInfo, student: list[int] | None) -> str | None:
        """None when ``info`` may be written (and its size is spent), else why not."""
        size, lim = info.file_size, self.limits
        if size > lim.member:
            return f"larger than {lim.member / 2**20:.0f} MB"
        if size > 2**20 and size > lim.ratio * max(info.compress_size, 1):
            return (
                f"it unpacks to {size / max(info.compress_size, 1):.0f} times its packed size "
                "(a zip bomb?)"
            )
        if student is not None and size > student[0]:
            return f"the {lim.student / 2**20:.0f} MB budget of one student's zip is spent"
        if size > self.upload:
            return f"the upload's {lim.upload / 2**30:g} GB budget is spent"
        if student is not None:
            student[0] -= size
        self.upload -= size
        return None


def safe_id(name: str) -> str:
    """A stable id made of ``[A-Za-z0-9_.-]`` for any name.

    A name of lower-case letters, digits and ``_.-`` is kept (unless it ends like a made-up
    id, ``-`` and six or more hex digits); any other (capitals, spaces, accents, other scripts,
    a trailing blank) becomes its ASCII letters plus a short hash of the whole name. Kept ids
    never end like made-up ones, so a kept name and a hashed one never meet, not even ignoring
    case; two hashed names meet only if their hashes agree, which :func:`assign_ids` checks.
    The name is read in Unicode NFC form first (``José`` typed on a Mac is the same name).

    >>> safe_id("alice"), safe_id("José Núñez"), safe_id("alice ") != safe_id("alice")
    ('alice', 'Jose_Nunez-652047', True)
    """
    return _made_id(unicodedata.normalize("NFC", name), 6)


def _made_id(name: str, n: int) -> str:
    if KEPT.match(name) and not HASHED.search(name):
        return name
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = SAFE.sub("_", ascii_).strip("_.-")[:40] or "student"
    return f"{base}-{hashlib.sha1(name.encode()).hexdigest()[:n]}"


def assign_ids(names, known: dict[str, str] | None = None) -> dict[str, str]:
    """Ids for ``names``, distinct from each other and from ``known`` (id -> name of earlier
    runs) even ignoring case: :func:`safe_id`, with a longer hash where a short one meets
    another name's (two names whose 24-bit hashes agree, by chance or by design)."""
    taken = {
        i.lower(): unicodedata.normalize("NFC", n)
        for i, n in (known or {}).items()
        if isinstance(i, str) and isinstance(n, str)
    }
    out = {}
    for name in sorted(set(names)):
        nfc = unicodedata.normalize("NFC", name)
        for n in (6, 12, 40):
            sid = _made_id(nfc, n)
            if taken.get(sid.lower(), nfc) == nfc or sid == nfc:
                break
        else:  # pragma: no cover - a full SHA-1 collision between two names
            raise ValueError(f"two submitters' names give the same id: {name!r}")
        taken[sid.lower()] = nfc
        out[name] = sid
    return out


def _ts(stamp: str) -> str:
    """``2030-01-02-09-30-00`` → ``2030-01-02 09:30:00`` (dateutil misreads the former)."""
    d = stamp.split("-")
    return f"{d[0]}-{d[1]}-{d[2]} {d[3]}:{d[4]}:{d[5]}"


def _extract(
    archive: Path,
    dest: Path,
    notes: list[tuple[Path, str]],
    budget: _Budget,
    depth: int = 0,
    student: list[int] | None = None,
) -> None:
    """Unpack a zip safely; zips inside are unpacked beside themselves (``limits.depth``
    levels). Notes are ``(folder, text)``: the folder tells whose they are."""
    lim = budget.limits
    # the upload itself (student None): its members are single files, each under the member
    # limit; a zip inside it is a student's own zip, with a student's budget
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > budget.files:
                notes.append((dest, f"did not unpack {archive.name}: more than {lim.files} files"))
                return
            budget.files -= len(infos)
            for info in infos:
                parts = Path(info.filename).parts
                if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename:
                    notes.append(
                        (dest, f"skipped an unsafe path in {archive.name}: {info.filename!r}")
                    )
                    continue
                if any(p in SKIP_PARTS or p.startswith("._") for p in parts):
                    continue
                if info.is_dir():
                    (dest / info.filename).mkdir(parents=True, exist_ok=True)
                    continue
                if Path(info.filename).suffix.lower() not in (".ipynb", ".zip"):
                    _placeholder(dest / info.filename)  # listed, not written
                    continue
                why = budget.take(info, student)
                if why:
                    why = f"skipped {info.filename!r} in {archive.name}: {why}"
                    notes.append((dest / info.filename, why))
                    continue
                try:
                    zf.extract(info, dest)
                except OSError as err:  # a name clash inside the zip: that member only
                    notes.append(
                        (dest / info.filename, f"could not unpack {info.filename!r}: {err}")
                    )
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, EOFError) as err:
        notes.append((dest, f"could not unpack {archive.name}: {err}"))
        return
    for inner in sorted(dest.rglob("*")):
        if inner.suffix.lower() == ".zip" and inner.is_file() and inner.stat().st_size:
            if depth >= lim.depth:
                why = f"did not unpack {inner.name}: zips nested more than {lim.depth} deep"
                notes.append((inner, why))
                continue
            target = inner.with_name(inner.stem)
            if target.exists():
                target = inner.with_name(inner.stem + "_zip")
            own = student if student is not None else [lim.student]
            _extract(inner, target, notes, budget, depth + 1, own)
            inner.unlink()


def _placeholder(path: Path) -> None:
    """An empty stand-in for a file that was found but is not needed (it is only listed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass


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
    note: str | None = None  # not a file: a note about this submitter's files


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
    submissions: Path,
    assignment: str,
    released: Path | None = None,
    keep: Path | None = None,
    *,
    known: dict[str, str] | None = None,
    limits: Limits | None = None,
) -> list[Found]:
    """Every submitter found in ``submissions`` (a folder or a zip), with the notebook chosen.

    The chosen notebooks are copied into ``keep`` (default: a new temporary folder). ``known``
    maps the ids of earlier runs to their names (no new name gets one of them); ``limits``
    bound what is unpacked (default :data:`DEFAULT_LIMITS`)."""
    submissions = Path(submissions)
    notes: list[tuple[Path, str]] = []
    links: set[Path] = set()
    budget = _Budget(limits or DEFAULT_LIMITS)
    with tempfile.TemporaryDirectory(prefix="course-kit-collect-") as tmp:
        if submissions.is_file():
            if submissions.suffix.lower() == ".ipynb":
                folder = Path(tmp) / "single"
                folder.mkdir()
                (folder / submissions.name).write_bytes(submissions.read_bytes())
            elif zipfile.is_zipfile(submissions):
                folder = Path(tmp) / "zip"
                _extract(submissions, folder, notes, budget)
            else:
                raise ValueError(
                    f"`submissions` must be a folder, a .zip or a .ipynb: {submissions}"
                )
        else:
            folder = Path(tmp) / "copy"
            _copy_tree(submissions, folder, notes, links, budget)
        folder.mkdir(exist_ok=True)
        base = _base(folder)
        by_name: dict[str, list[_Candidate]] = {}
        for c in _candidates(base, _files(base, links)):
            by_name.setdefault(c.name, []).append(c)
        for top in _empty_folders(base):
            by_name.setdefault(top, [])
        owners = _owners(base, by_name)
        batch = []  # notes about the upload as a whole, or about no one found
        for where, text in notes:
            owner = _owner_of(base, where, owners)
            if owner is None and where != base and base in where.parents:
                owner = where.relative_to(base).parts[0]  # a zip that yielded nothing
                by_name.setdefault(owner, [])
                owners[owner] = owner
            if owner is None:
                batch.append(text)
            else:
                by_name.setdefault(owner, []).append(_Candidate(owner, where, note=text))
        ids = assign_ids(by_name, known)
        names = _graded_names(released)
        keep = Path(keep or tempfile.mkdtemp(prefix="course-kit-chosen-"))
        found = [
            _found(name, ids[name], group, links, assignment, names, keep)
            for name, group in sorted(by_name.items())
        ]
    for item in found:
        item.notes = batch + item.notes
    return found


def _found(
    name: str,
    sid: str,
    group: list[_Candidate],
    links: set[Path],
    assignment: str,
    names: set[str],
    keep: Path,
) -> Found:
    """One submitter's entry: the notebook chosen among their files, or what was found."""
    notes = [c.note for c in group if c.note]
    files = [c for c in group if not c.note]
    books = [c for c in files if c.path.suffix.lower() == ".ipynb" and c.path not in links]
    if sid != name:
        notes.append(
            f"graded under the id {sid!r} (the name {name!r} has capitals, spaces or "
            "characters nbgrader cannot use, or looks like a made-up id)"
        )
    if not books:
        return Found(sid, name, None, None, notes, problem=_what_was_found(files, links))
    chosen, note = _choose(books, assignment, names)
    copy = keep / sid / chosen.path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(chosen.path.read_bytes())
    return Found(sid, name, copy, chosen.timestamp, ([note] if note else []) + notes)


def _what_was_found(files: list[_Candidate], links: set[Path]) -> str:
    if not files:
        return "no notebook found: nothing was submitted (an empty folder, or all skipped)"
    shown = []
    for c in sorted(files, key=lambda c: c.path.name)[:6]:
        kind = " (a symbolic link, not followed)" if c.path in links else ""
        shown.append(f"{c.path.name}{kind}")
    more = f" and {len(files) - 6} more" if len(files) > 6 else ""
    return f"no notebook found; the submission holds {', '.join(shown)}{more}"


def _files(base: Path, links: set[Path]) -> list[Path]:
    """Every file under ``base`` that a submitter handed in (hidden files and junk left out)."""
    out = []
    for path in sorted(set(base.rglob("*")) | {p for p in links if base in p.parents}):
        rel = path.relative_to(base)
        if path not in links and (path.is_dir() or not path.is_file()):
            continue
        if any(p in SKIP_PARTS or p.startswith(".") for p in rel.parts) or path.name in JUNK:
            continue
        out.append(path)
    return out


def _empty_folders(base: Path) -> list[str]:
    """Top-level folders holding no file at all (a submitter who handed in nothing)."""
    out = []
    for d in sorted(base.iterdir()):
        if d.name in SKIP_PARTS or d.name.startswith(".") or d.is_symlink() or not d.is_dir():
            continue
        if not any(p.is_file() for p in d.rglob("*")):
            moodle = MOODLE.match(d.name)
            out.append(f"{moodle['name']}_{moodle['id']}" if moodle else d.name)
    return out


def _owners(base: Path, by_name: dict[str, list[_Candidate]]) -> dict[str, str]:
    """The top-level entry (folder or file) of ``base`` behind each submitter's files."""
    owners = {}
    for name, group in by_name.items():
        for c in group:
            owners[c.path.relative_to(base).parts[0]] = name
        owners.setdefault(name, name)  # an empty folder
    return owners


def _owner_of(base: Path, where: Path, owners: dict[str, str]) -> str | None:
    if where == base or base not in where.parents:
        return None
    return owners.get(where.relative_to(base).parts[0])


def _copy_tree(
    src: Path, dest: Path, notes: list[tuple[Path, str]], links: set[Path], budget: _Budget
) -> None:
    """Copy the submissions folder (so zips inside can be unpacked without touching it):
    notebooks and zips are copied, other files only listed, symbolic links never followed."""
    lim = budget.limits
    for top, dirs, files in os.walk(src, followlinks=False):
        here = Path(top)
        rel_dir = here.relative_to(src)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_PARTS and not d.startswith("."))
        (dest / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in sorted(dirs):
            if (here / name).is_symlink():
                links.add(dest / rel_dir / name)
        for name in sorted(files):
            path, target = here / name, dest / rel_dir / name
            if name.startswith(".") or name in JUNK:
                continue
            if path.is_symlink():
                links.add(target)
                continue
            suffix = path.suffix.lower()
            if suffix not in (".ipynb", ".zip"):
                _placeholder(target)
                continue
            size = path.stat().st_size
            why = (
                f"larger than {lim.member / 2**20:.0f} MB"
                if size > lim.member
                else f"the upload's {lim.upload / 2**30:g} GB budget is spent"
                if size > budget.upload
                else None
            )
            if why:
                notes.append((target.parent, f"skipped {name!r}: {why}"))
                continue
            budget.upload -= size
            if suffix == ".zip":
                _extract(path, target.with_suffix(""), notes, budget, 0, [lim.student])
            else:
                shutil.copyfile(path, target)


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
