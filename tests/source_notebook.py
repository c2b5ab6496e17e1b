"""Helpers for testing an nbgrader source notebook's cells directly: its answer cells as
functions, its grade cells as tests, and mutants of its answers (realistic student mistakes)."""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path

import nbformat
import numpy as np


@cache
def cells_by_id(path: Path) -> dict[str, nbformat.NotebookNode]:
    """The cells that carry nbgrader metadata, by grade id, in notebook order."""
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def grade_ids(path: Path, prefix: str = "") -> list[str]:
    """Ids of the grade (test) cells, optionally only those starting with ``prefix``."""
    return [
        gid
        for gid, c in cells_by_id(path).items()
        if c.metadata["nbgrader"].get("grade") and gid.startswith(prefix)
    ]


def namespace(path: Path, mutations: dict[str, list[tuple[str, str]]] | None = None) -> dict:
    """Run the cells tagged ``testable`` (setup, answers) with ``old -> new`` edits by grade id."""
    ns: dict = {"__name__": f"notebook:{path.stem}"}
    for gid, cell in cells_by_id(path).items():
        if cell.cell_type != "code" or "testable" not in cell.metadata.get("tags", []):
            continue
        source = cell.source
        for old, new in (mutations or {}).get(gid, []):
            assert old in source, f"mutation target {old!r} not found in {gid}"
            source = source.replace(old, new)
        exec(compile(source, f"{path.stem}[{gid}]", "exec"), ns)
    return ns


def run_cell(ns: dict, source: str, name: str) -> None:
    """Execute ``source`` in a copy of ``ns`` (test cells must not leak state)."""
    exec(compile(source, name, "exec"), dict(ns))


def run_grade_cell(path: Path, ns: dict, gid: str) -> None:
    """Execute the grade cell ``gid`` (hidden tests included) in a copy of ``ns``."""
    cell = cells_by_id(path)[gid]
    assert cell.metadata["nbgrader"]["grade"], gid
    run_cell(ns, cell.source, f"{path.stem}[{gid}]")


def mutate(ns: dict, source: str, answer_id: str, old: str, new: str) -> dict:
    """A copy of ``ns`` where the answer cell ``source`` is re-run with ``old`` → ``new``."""
    assert old in source, f"mutation target not found: {old!r}"
    buggy = dict(ns)
    exec(compile(source.replace(old, new), f"{answer_id}[mutant]", "exec"), buggy)
    return buggy


def run_every_grade_cell(path: Path) -> int:
    """Run every grade cell against the solution's own answers; returns how many ran."""
    ns = namespace(path)
    ids = grade_ids(path)
    for gid in ids:
        run_grade_cell(path, ns, gid)
    return len(ids)


def hidden_share(path: Path) -> float:
    """The share of the points carried by grade cells that hold hidden tests."""
    cells = cells_by_id(path)
    points = {gid: cells[gid].metadata["nbgrader"]["points"] for gid in grade_ids(path)}
    hidden = sum(p for gid, p in points.items() if "BEGIN HIDDEN TESTS" in cells[gid].source)
    return hidden / sum(points.values())


# ---- judged grade cells: the kernel reports, the judge compares (in-process stand-in) ----------
#
# Graded cells hand results to the grader with ``course_lib.grading.report(key, compute, ...)``.
# The real grader (course_kit.judge) compares a submission's reports with the solution's in a
# trusted process. These helpers do the same in-process so that the mutation tables can measure
# which student mistakes lose points: a cell scores when it runs without an error and every report
# matches the solution's (same keys; values compared as the solution's ``judging`` says).

DEFAULT_RTOL, DEFAULT_ATOL = 1e-4, 1e-6  # as course_kit.judge


def collect_reports(ns: dict, source: str, name: str) -> tuple[str | None, dict[str, dict]]:
    """Run ``source`` in a copy of ``ns``, catching its reports: ``(error or None, reports)``."""
    import course_lib.grading as grading

    reports: dict[str, dict] = {}

    def collector(payload):
        key = payload["key"]
        assert key not in reports, f"report key {key!r} used twice in {name}"
        reports[key] = payload

    real = grading._emit
    grading._emit = collector
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_cell(ns, source, name)
        # nbgrader scores a cell 0 when it writes to stderr, as a warning does
        error = f"warning: {caught[0].message}" if caught else None
    except Exception as err:  # noqa: BLE001 - a failing cell scores 0, like under nbgrader
        error = f"{type(err).__name__}: {err}"
    finally:
        grading._emit = real
    return error, reports


def _numbers(enc: dict) -> np.ndarray:
    arr = np.asarray(enc["array"], dtype=np.float64).reshape(enc["shape"])
    if enc.get("nonfinite") is not None:
        arr = np.where(np.asarray(enc["nonfinite"], dtype=bool).reshape(enc["shape"]), np.nan, arr)
    return arr


def _same(e, a, compare: str, rtol: float, atol: float) -> bool:
    """Encoded values ``e`` (expected) and ``a`` (actual) agree under ``compare``."""
    if isinstance(e, dict) and "array" in e:
        if not (isinstance(a, dict) and "array" in a) or list(e["shape"]) != list(a["shape"]):
            return False
        if compare == "shape":
            return True
        ea, aa = _numbers(e), _numbers(a)
        if compare == "equal":
            return bool(np.array_equal(ea, aa, equal_nan=True))
        return bool(np.allclose(aa, ea, rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(e, dict) and "float" in e:
        if isinstance(a, dict) and "float" in a:
            a = a["float"]
        if isinstance(a, bool) or not isinstance(a, (int, float)):
            return False
        ev = float(e["float"])
        if compare == "equal":
            return float(a) == ev
        return bool(np.isclose(float(a), ev, rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(e, dict) and "sequence" in e:
        return (
            isinstance(a, dict)
            and "sequence" in a
            and len(a["sequence"]) == len(e["sequence"])
            and all(_same(x, y, compare, rtol, atol) for x, y in zip(e["sequence"], a["sequence"]))
        )
    if isinstance(e, dict) and "mapping" in e:
        return (
            isinstance(a, dict)
            and "mapping" in a
            and set(a["mapping"]) == set(e["mapping"])
            and all(_same(v, a["mapping"][k], compare, rtol, atol) for k, v in e["mapping"].items())
        )
    return type(e) is type(a) and e == a


def _real_judge():
    """course_kit.judge's comparison, when the grader's judge is there (else None)."""
    try:
        from course_kit import judge

        return judge._compare, judge._decode
    except (ImportError, AttributeError):
        return None


def report_matches(expected: dict, actual: dict | None) -> bool:
    """One report of a submission against the solution's (whose ``judging`` alone counts).

    Uses course_kit.judge's own comparison when it is available; else the same rules here.
    """
    if actual is None:
        return False
    real = _real_judge()
    if real is not None and "value" in expected and "value" in actual:
        compare, decode = real
        judging = expected["judging"]
        why = compare(
            decode(expected["value"]),
            decode(actual["value"]),
            judging.get("compare", "close"),
            float(judging.get("rtol", DEFAULT_RTOL)),
            float(judging.get("atol", DEFAULT_ATOL)),
        )
        return why is None
    judging = expected["judging"]
    if "raised" in expected:  # the solution raises: the submission must raise the same type
        return actual.get("raised") == expected["raised"]
    if "raised" in actual:
        return False
    return _same(
        expected["value"],
        actual["value"],
        judging.get("compare", "close"),
        judging.get("rtol", DEFAULT_RTOL),
        judging.get("atol", DEFAULT_ATOL),
    )


@cache
def solution_reports(path: Path) -> dict[str, dict[str, dict]]:
    """Every grade cell's reports for the solution (the judge's trusted run)."""
    ns = namespace(path)
    out = {}
    for gid in grade_ids(path):
        error, reports = collect_reports(ns, cells_by_id(path)[gid].source, f"{path.stem}[{gid}]")
        assert error is None, f"the solution fails its own grade cell {gid}: {error}"
        assert reports, f"grade cell {gid} reports nothing"
        for key, rep in reports.items():  # what course_kit.judge requires of the solution
            raises = rep["judging"].get("compare") == "raises"
            assert raises == ("raised" in rep), f"{gid}[{key}]: compare='raises' iff it raises"
        assert any(
            r["judging"].get("compare") not in ("raises", "shape") for r in reports.values()
        ), f"grade cell {gid} checks only exceptions or shapes, which a submission can fake"
        out[gid] = reports
    return out


def cell_passes(path: Path, ns: dict, gid: str) -> bool:
    """Does grade cell ``gid`` score, for the answers in ``ns``?"""
    expected = solution_reports(path)[gid]
    error, got = collect_reports(ns, cells_by_id(path)[gid].source, f"{path.stem}[{gid}]")
    if error is not None or set(got) != set(expected):
        return False
    return all(report_matches(e, got.get(k)) for k, e in expected.items())


def points(path: Path) -> dict[str, float]:
    """Points of each grade cell."""
    cells = cells_by_id(path)
    return {gid: float(cells[gid].metadata["nbgrader"]["points"]) for gid in grade_ids(path)}


def score(path: Path, mutations: dict[str, list[tuple[str, str]]] | None = None) -> dict:
    """``{grade id: points scored}`` for the solution with ``mutations`` applied."""
    ns = namespace(path, mutations)
    return {gid: (p if cell_passes(path, ns, gid) else 0.0) for gid, p in points(path).items()}


def visible_share(path: Path) -> float:
    """The share of the points carried by grade cells without hidden tests."""
    return 1.0 - hidden_share(path)


def cells_without_reports(path: Path) -> list[str]:
    """Grade cells whose source holds no ``report(`` call."""
    cells = cells_by_id(path)
    return [gid for gid in grade_ids(path) if "report(" not in cells[gid].source]


def owner_of(owners: list[tuple[str, str]]):
    """``gid -> the answer function its cell tests``, from (grade-id prefix, function) pairs
    (longest prefixes first)."""

    def owner(gid: str) -> str:
        return next(fn for prefix, fn in owners if gid.startswith(prefix))

    return owner


def check_grading(path: Path, *, total: float, min_cells: int) -> None:
    """The assignment's grading is whole: every grade cell reports to the judge, the solution's
    reports cover every grade cell (at least ``min_cells``) and score full marks, the points sum
    to ``total``, and at least a third of them are visible."""
    gids = grade_ids(path)
    assert cells_without_reports(path) == []
    assert set(solution_reports(path)) == set(gids) and len(gids) >= min_cells
    assert score(path) == points(path)
    assert sum(points(path).values()) == total
    assert visible_share(path) >= 1 / 3


def check_mistake(path: Path, name: str, mutations: dict, owners: list[tuple[str, str]]) -> None:
    """The mistake ``name`` (edits of one answer cell: ``{answer id: [(old, new), ...]}``) loses
    points, and only in the grade cells that test that answer."""
    [fn] = mutations
    got, full = score(path, mutations), points(path)
    lost = {gid for gid in full if got[gid] < full[gid]}
    assert lost, f"{name!r} keeps {sum(got.values())}/{sum(full.values())}"
    owner = owner_of(owners)
    assert {owner(gid) for gid in lost} == {fn}, f"{name!r} also loses {sorted(lost)}"


# ---- recorded stand-ins (course_lib.grading.Recorded): baked from the solution's own run -------
#
# A hidden test that needs a dependency's true answers carries them as data:
# ``Recorded("block_mask", "<packed table>")``. ``record_tables`` re-runs such a grade cell with
# the solution, each ``Recorded`` replaced by a ``Recorder`` of the solution's own function, and
# returns the cell's source with fresh tables; ``python tests/source_notebook.py record <nb>``
# rewrites every such cell of a source notebook (run it after changing a solution or a test).

TABLE = re.compile(r'Recorded\(\s*"(?P<name>\w+)",\s*(?P<table>(?:"[A-Za-z0-9+/=]*"\s*)+)')


def _table_literal(table: str, indent: str, width: int = 88) -> str:
    chunks = [table[i : i + width] for i in range(0, len(table), width)] or [""]
    return "".join(f'{indent}"{c}"\n' for c in chunks)


EXPECTED = re.compile(r"Expected\(\s*(?P<table>(?:\"[A-Za-z0-9+/=]*\"\s*)+)")


class _NoCheck:  # stands in for course_lib.grading.Expected while its values are recorded
    def __init__(self, table):
        pass

    def check(self, *args, **kwargs):
        pass


def _pack(obj) -> str:
    import base64
    import json
    import zlib

    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def _rewrite(source: str, found: list, tables: list[str]) -> str:
    """``source`` with the table literals of the matches ``found`` replaced by ``tables``."""
    out, last = [], 0
    for match, table in zip(found, tables):
        start = match.start("table")
        line_start = source.rfind("\n", 0, start) + 1
        prefix = source[line_start:start]
        end = start + len(match.group("table").rstrip())
        if prefix.strip():  # the table starts on the line of the call: break the line
            base = prefix[: len(prefix) - len(prefix.lstrip())]
            literal = _table_literal(table, base + "    ")
            out.append(source[last:start] + "\n" + literal + base)
            end = start + len(match.group("table"))  # and keep the closing paren's own line
        else:
            out.append(source[last:line_start] + _table_literal(table, prefix).rstrip("\n"))
        last = end
    out.append(source[last:])
    return "".join(out)


def record_tables(path: Path, gid: str) -> tuple[str, list[str]]:
    """Grade cell ``gid`` with its tables re-recorded from the solution: every ``Recorded``
    (a dependency's answers) and its ``Expected`` (the results its reports must have).
    Returns ``(new source, [Recorded table, ...])`` in source order."""
    import course_lib.grading as grading

    ns = namespace(path)
    source = cells_by_id(path)[gid].source
    recorders: list = []

    def recording(name, table, *, decimals=6):  # stands in for the class Recorded
        assert name in ns, f"{gid}: Recorded({name!r}) names no function of the solution"
        recorders.append(grading.Recorder(ns[name], name, decimals=decimals))
        return recorders[-1]

    real = grading.Recorded, grading.Expected
    grading.Recorded, grading.Expected = recording, _NoCheck
    try:
        error, reports = collect_reports(ns, source, f"{path.stem}[{gid}]")
    finally:
        grading.Recorded, grading.Expected = real
    assert error is None, f"{gid} fails with the solution while recording: {error}"
    found = list(TABLE.finditer(source))
    assert len(found) == len(recorders), f"{gid}: one Recorded(...) literal per table, please"
    tables = [rec.table() for rec in recorders]
    source = _rewrite(source, found, tables)
    found = list(EXPECTED.finditer(source))
    assert len(found) <= 1, f"{gid}: one Expected(...) per cell"
    results = {
        k: {"raised": r["raised"]} if "raised" in r else {"value": r["value"]}
        for k, r in reports.items()
    }
    return _rewrite(source, found, [_pack(results)] * len(found)), tables


def tables_in(source: str) -> list[tuple[str, dict]]:
    """``[(name, {fingerprint: packed answer})]`` of the ``Recorded`` literals in ``source``."""
    import ast
    import base64
    import json
    import zlib

    out = []
    for match in TABLE.finditer(source):
        table = ast.literal_eval("(" + match.group("table") + ")")
        out.append((match["name"], json.loads(zlib.decompress(base64.b64decode(table)))))
    return out


def cells_with_tables(path: Path, expected: bool = False) -> list[str]:
    """Grade cells holding Recorded tables (and, with ``expected``, Expected ones)."""
    pattern = (
        re.compile(f"{TABLE.pattern}|{EXPECTED.pattern}".replace("(?P<table>", "("))
        if expected
        else TABLE
    )
    return [gid for gid in grade_ids(path) if pattern.search(cells_by_id(path)[gid].source)]


def rerecord(path: Path) -> list[str]:
    """Rewrite every grade cell of ``path`` that holds ``Recorded`` tables; returns their ids."""
    nb = nbformat.read(path, as_version=4)
    done = []
    for gid in cells_with_tables(path, expected=True):
        new, _ = record_tables(path, gid)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
                cell.source = new
        done.append(gid)
    nbformat.write(nb, path)
    cells_by_id.cache_clear()
    return done


if __name__ == "__main__":  # python tests/source_notebook.py record solutions/<id>/<id>.ipynb
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "record":
        sys.exit("usage: python tests/source_notebook.py record solutions/<id>/<id>.ipynb")
    print("re-recorded:", ", ".join(rerecord(Path(sys.argv[2]).resolve())) or "nothing")


def _fresh(value):
    """An argument for a second, independent call: random generators copied (so that the
    solution's call does not advance the test's generator)."""
    import copy

    import torch

    if isinstance(value, torch.Generator):
        twin = torch.Generator(device=value.device)
        twin.set_state(value.get_state())
        return twin
    if isinstance(value, np.random.Generator):
        return copy.deepcopy(value)
    return value


def stand_in_report(path: Path) -> dict[tuple[str, str], bool]:
    """``{(grade id, name): does the code stand-in ever answer differently from the solution's
    own function?}`` for every stand-in called in the solution's run of a grade cell (one that
    always agrees is a reference implementation in disguise). Recorded tables are left out."""
    import torch

    import course_lib.grading as grading

    ns = namespace(path)
    solution = dict(ns)  # the solution's own functions (ns itself holds the stand-ins in a block)
    differs: dict[tuple[str, str], bool] = {}
    real = grading.stand_ins
    for gid in grade_ids(path):

        def spied(name, stand_in, gid=gid):
            key = (gid, name)

            def call(*args, **kwargs):
                differs.setdefault(key, False)
                got = stand_in(*args, **kwargs)
                with torch.random.fork_rng():
                    try:
                        want = solution[name](
                            *map(_fresh, args), **{k: _fresh(v) for k, v in kwargs.items()}
                        )
                        same = _same(
                            grading._encode(want), grading._encode(got), "close", 1e-7, 1e-9
                        )
                    except Exception:  # noqa: BLE001 - the solution refuses: they differ
                        same = False
                differs[key] = differs[key] or not same
                return got

            return call

        class spying(real):  # noqa: N801
            def __init__(self, fn, **replacements):
                super().__init__(
                    fn,
                    **{
                        k: v if isinstance(v, grading.Recorded) or not callable(v) else spied(k, v)
                        for k, v in replacements.items()
                    },
                )

        grading.stand_ins = spying
        try:
            error, _ = collect_reports(ns, cells_by_id(path)[gid].source, f"{path.stem}[{gid}]")
        finally:
            grading.stand_ins = real
        assert error is None, f"{gid} fails with the solution under the spy: {error}"
    return differs


def calls_of(path: Path, name: str, skip: set[str]) -> set[str]:
    """Fingerprints of every call to the solution's ``name`` made by the grade cells not in
    ``skip`` (what a submission's own tests ask of ``name``)."""
    import course_lib.grading as grading

    ns = namespace(path)
    seen: set[str] = set()
    original = ns[name]

    def spy(*args, **kwargs):
        seen.add(grading.fingerprint(args, kwargs))
        return original(*args, **kwargs)

    ns[name] = spy
    for gid in grade_ids(path):
        if gid not in skip:
            collect_reports(ns, cells_by_id(path)[gid].source, f"{path.stem}[{gid}]")
    return seen


def check_stand_ins(path: Path) -> None:
    """No grade cell holds reference code: each code stand-in answers differently from the
    solution's function it replaces on some call; no grade cell defines a ``ref_*`` function or
    swaps ``__globals__`` by hand; every Recorded table equals a fresh recording from the
    solution, and holds no input that the function's own tests use."""
    cells = cells_by_id(path)
    for gid in grade_ids(path):
        source = cells[gid].source
        assert not re.search(r"def (ref|reference)_\w+|__globals__", source), gid
    agreeing = [key for key, differs in stand_in_report(path).items() if not differs]
    assert agreeing == [], f"stand-ins that always agree with the solution: {agreeing}"
    with_tables = cells_with_tables(path)
    for gid in with_tables:
        _, fresh = record_tables(path, gid)
        baked = tables_in(cells[gid].source)
        assert len(fresh) == len(baked), gid
        for (name, answers), table in zip(baked, fresh):
            import course_lib.grading as grading

            new = grading.Recorded(name, table)._answers
            assert set(new) == set(answers), f"{gid}: the table of {name} is stale: re-record it"
            for key, packed in answers.items():
                a, b = grading._unpack_value(packed), grading._unpack_value(new[key])
                assert _same(grading._encode(b), grading._encode(a), "close", 1e-9, 1e-12), gid
            own = calls_of(path, name, set(with_tables))
            assert not own & set(answers), f"{gid}: {name}'s own tests can look up the table"


# ---- local verdict = judged verdict ----------------------------------------------------------


def visible_ids(path: Path) -> list[str]:
    """Grade cells without hidden tests: what a student can check before submitting."""
    return [
        gid for gid in grade_ids(path) if "BEGIN HIDDEN TESTS" not in cells_by_id(path)[gid].source
    ]


def visible_verdicts(path: Path, mutations: dict | None = None) -> dict[str, tuple[bool, bool]]:
    """``{visible grade id: (passes locally, earns its points)}`` for the answers with
    ``mutations``. Locally: the cell runs to its end ("visible tests passed") without an
    exception. Judged: as ``course_kit.judge`` does, from the reports alone (a cell's error is
    not looked at), each expected key reported once and matching the solution's."""
    ns = namespace(path, mutations)
    out = {}
    for gid in visible_ids(path):
        expected = solution_reports(path)[gid]
        error, got = collect_reports(ns, cells_by_id(path)[gid].source, f"{path.stem}[{gid}]")
        local = error is None or error.startswith("warning:")
        judged = all(report_matches(e, got.get(k)) for k, e in expected.items())
        out[gid] = (local, judged)
    return out


def check_local_equals_judged(path: Path, mistakes: dict[str, dict]) -> None:
    """For the solution and every mistake of a mutation table, every visible cell's local
    verdict is its judged verdict ("visible tests passed" <=> its points are earned), and every
    visible cell checks each of its reports against the expected values written in it."""
    for gid in visible_ids(path):
        source = cells_by_id(path)[gid].source
        assert "visible tests passed" in source and EXPECTED.search(source), gid
        assert source.count("report(") == source.count("expect=expected"), gid
        assert len(re.findall(r"^\s*expected\s*=(?!=)", source, re.M)) == 1, (
            f"{gid} reuses `expected`"
        )
    disagree = []
    for name, mutations in {"the solution": None, **mistakes}.items():
        for gid, (local, judged) in visible_verdicts(path, mutations).items():
            if local != judged:
                disagree.append(
                    f"{name}: {gid} {'passes' if local else 'fails'} locally but "
                    f"{'earns' if judged else 'loses'} its points"
                )
    assert disagree == [], "\n".join(disagree)
    check_intro_share(path)


def check_intro_share(path: Path) -> None:
    """The intro says how many of the points a student can check before submitting."""
    intro = nbformat.read(path, as_version=4).cells[0].source
    found = re.search(r"check (\d+) of the (\d+) points", intro)
    assert found, "the intro does not say what share of the points the visible tests check"
    pts = points(path)
    visible = sum(pts[gid] for gid in visible_ids(path))
    assert (float(found[1]), float(found[2])) == (visible, sum(pts.values())), found[0]


def visible_failures(path: Path, mutations: dict | None = None) -> list[str]:
    """The messages of the visible cells that fail locally for the answers with ``mutations``."""
    ns = namespace(path, mutations)
    out = []
    for gid in visible_ids(path):
        error, _ = collect_reports(ns, cells_by_id(path)[gid].source, f"{path.stem}[{gid}]")
        if error is not None and not error.startswith("warning:"):
            out.append(f"{gid}: {error}")
    return out


def check_named_in_a_visible_cell(path: Path, mutations: dict, pattern: str) -> None:
    """A mistake fails a visible cell with a message (or hint) that names it."""
    failures = visible_failures(path, mutations)
    assert any(re.search(pattern, f, re.S) for f in failures), (pattern, failures)
