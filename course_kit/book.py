"""Build the course book: execute the notebooks and render them as a static site.

    .venv/bin/python -m course_kit.book [--quick] [--out _build/book] [NOTEBOOK ...]
    make book [QUICK=1] [NOTEBOOKS="notebooks/00_start_here.ipynb notebooks/02_efros_leung.ipynb"]

Every notebook (default: all of ``notebooks/``) is executed the way the tests run it
(``course_kit/nbrun.py``: a fresh kernel, the network blocked, ``COURSE_QUICK`` set by ``--quick``),
or taken from the cache ``_build/executed/`` when an identical notebook was already executed
against the same ``course_lib`` (``make test`` fills it). The site, rendered with nbconvert and
the template in ``book/templates/course_page``, has:

* ``index.html`` — the course map (the table from ``notebooks/00_start_here.ipynb``), the pages
  of this build, and the released assignments;
* one page per notebook, with every figure embedded, and links between pages;
* ``assignments/<id>.html`` — each released assignment (``assignments/<id>/<id>.ipynb``, never
  ``solutions/``) rendered unexecuted, with the notebook beside it to download.

Widgets become static: a slider's figure at its starting value (the notebooks also draw a static
grid for the book), a progress bar its final line. A notebook that fails to execute fails the
build (exit 1) with its name, the failing cell and the traceback, after the others have run.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

from .nbrun import CACHE, ROOT, execute_cached, failure_message

TEMPLATES = ROOT / "book" / "templates"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MAP_HEADING = "## The map of the unit"
LINK = re.compile(
    r'<a\s+href="(?P<href>[^"#]*\.ipynb)(?P<anchor>#[^"]*)?"[^>]*>(?P<text>.*?)</a>', re.S
)


@dataclass
class Page:
    """One page of the book: where its notebook is, where its HTML goes, its title."""

    source: Path  # the notebook, absolute
    href: str  # the page, relative to the site root
    title: str


class BuildError(RuntimeError):
    """Some notebooks failed to execute; the message names each and its failing cell."""


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The text of the notebook's first ``# heading``, else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    return fallback


def released_assignments(folder: Path) -> list[Path]:
    """The released student notebooks ``<folder>/<id>/<id>.ipynb`` (never solutions)."""
    return sorted(p for p in Path(folder).glob("*/*.ipynb") if p.stem == p.parent.name)


# ---- widgets → static output ---------------------------------------------------------------


def _model_tree(state: dict, model_id: str) -> list[dict]:
    """The model ``model_id`` and every model below it (children, depth first)."""
    model = state.get(model_id)
    if model is None:
        return []
    found = [model]
    for child in model.get("state", {}).get("children", []):
        found += _model_tree(state, str(child).removeprefix("IPY_MODEL_"))
    return found


def _control_text(model: dict) -> str | None:
    s, name = model.get("state", {}), model.get("model_name", "")
    label = s.get("description") or name.removesuffix("Model")
    if "Slider" in name and "value" in s:
        return f"<code>{html.escape(str(label))}</code> slider ({s.get('min')} to {s.get('max')})"
    if "_options_labels" in s:
        options = s["_options_labels"]
        shown = ", ".join(map(str, options[:6])) + (", …" if len(options) > 6 else "")
        return f"<code>{html.escape(str(label))}</code> menu ({html.escape(shown)})"
    if name in ("CheckboxModel", "ToggleButtonModel", "TextModel", "ButtonModel"):
        return f"<code>{html.escape(str(label))}</code> {name.removesuffix('Model').lower()}"
    return None


def _progress_text(models: list[dict]) -> str:
    parts = []
    for model in models:
        s, name = model.get("state", {}), model.get("model_name", "")
        if name in ("HTMLModel", "LabelModel") and s.get("value"):
            parts.append(re.sub(r"<[^>]+>", "", html.unescape(str(s["value"]))).strip())
        elif "Progress" in name:
            value, top = float(s.get("value", 0) or 0), float(s.get("max", 1) or 1)
            filled = int(round(20 * min(max(value / top, 0.0), 1.0))) if top > 0 else 0
            parts.append("|" + "█" * filled + " " * (20 - filled) + "|")
    return " ".join(p for p in parts if p)


def static_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Replace widget outputs by what a reader of a static page can see.

    A widget with controls (``course_lib.widgets.interact_figure``) becomes a note naming the
    controls, followed by the outputs its ``Output`` area captured when the notebook ran (the
    figure at the starting values). A progress bar becomes its final line of text. The widget
    state is then dropped, so the page loads no widget JavaScript.
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs, seen = [], set()
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW) if "data" in out else None
            if view is None:
                outputs.append(out)
                continue
            model_id = view.get("model_id", "")
            if model_id in seen:  # the same widget displayed and returned: show it once
                continue
            seen.add(model_id)
            models = _model_tree(state, model_id)
            controls = [c for c in map(_control_text, models) if c]
            captured = [
                nbformat.from_dict(o)
                for m in models
                if m.get("model_name") == "OutputModel"
                for o in m.get("state", {}).get("outputs", [])
            ]
            if controls or captured:
                note = (
                    "Interactive in JupyterLab: "
                    + (", ".join(controls) if controls else "a live output")
                    + ". The book shows the output at the starting values."
                )
                outputs.append(_html_output(f'<p class="book-widget">{note}</p>'))
                outputs += captured
            elif any("Progress" in m.get("model_name", "") for m in models):
                text = html.escape(_progress_text(models))
                outputs.append(_html_output(f'<div class="book-progress">{text}</div>'))
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return nb


def _html_output(markup: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data={"text/html": markup})


# ---- links -----------------------------------------------------------------------------------


def rewrite_links(markup: str, *, page: Page, targets: dict[Path, str]) -> str:
    """Point links to notebooks at their pages; a notebook not in the book loses its link.

    ``targets`` maps each notebook in the book (absolute path) to its page (relative to the
    site root); links are resolved relative to ``page.source``'s folder.
    """
    depth = page.href.count("/")
    up = "../" * depth

    def replace(match: re.Match) -> str:
        href, anchor, text = match["href"], match["anchor"] or "", match["text"]
        if re.match(r"^[a-z]+:", href):  # an absolute URL: leave it
            return match[0]
        target = (page.source.parent / href).resolve()
        if target in targets:
            return f'<a href="{up}{targets[target]}{anchor}">{text}</a>'
        title = f"{target.name} is not part of this build"
        return f'<span class="book-missing" title="{html.escape(title)}">{text}</span>'

    return LINK.sub(replace, markup)


# ---- the build -------------------------------------------------------------------------------


def execute_all(
    notebooks: list[Path], *, quick: bool, cache: Path, timeout: int, log=print
) -> dict[Path, nbformat.NotebookNode]:
    """Execute (or take from the cache) each notebook; raise ``BuildError`` naming every failure."""
    executed, failures = {}, []
    for path in notebooks:
        start = time.perf_counter()
        try:
            nb, seconds, cached = execute_cached(path, quick=quick, timeout=timeout, cache=cache)
        except CellExecutionError as err:
            failures.append(failure_message(err))
            log(f"FAIL  {_rel(path)}: cell {getattr(err, 'cell_index', '?')} ({err.ename})")
            continue
        except (CellTimeoutError, DeadKernelError) as err:  # a cell ran too long, a kernel died
            failures.append(f"{_rel(path)}: {type(err).__name__}: {err}")
            log(f"FAIL  {_rel(path)}: {type(err).__name__}")
            continue
        how = "cached" if cached else f"executed in {time.perf_counter() - start:.1f} s"
        log(f"ok    {_rel(path)}  ({how}; {seconds:.1f} s when it ran)")
        executed[path] = nb
    if failures:
        names = ", ".join(f.split(":", 1)[0] for f in failures)
        raise BuildError(
            f"{len(failures)} notebook(s) failed to execute: {names}\n\n" + "\n\n".join(failures)
        )
    return executed


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


MATHJAX_CONFIG = "?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def copy_mathjax(out: Path) -> str | None:
    """Copy MathJax (from the ``jupyter-server-mathjax`` package) into ``out/_static/mathjax`` so
    that the equations render offline; returns its URL relative to the site root, or ``None``
    (the pages then load MathJax from its CDN) when the package is missing."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():
        return None
    shutil.copytree(static, out / "_static" / "mathjax")
    return "_static/mathjax/MathJax.js" + MATHJAX_CONFIG


def _exporter() -> HTMLExporter:
    return HTMLExporter(template_name="course_page", extra_template_basedirs=[str(TEMPLATES)])


def _mode_line(nb: nbformat.NotebookNode, quick: bool) -> str:
    seconds = nb.metadata.get("course_kit", {}).get("seconds")
    mode = "quick mode (COURSE_QUICK=1)" if quick else "default mode"
    return f"executed in {mode}" + (f", {seconds:.0f} s" if seconds is not None else "")


def _render(exporter: HTMLExporter, nb, page: Page, *, targets, nav: dict, out: Path) -> Path:
    """Render ``nb`` as ``out/page.href``; ``nav`` holds prev, next, pages, assignments, mode
    with hrefs relative to the site root (made relative to this page here)."""
    root = "../" * page.href.count("/")

    def local(link):
        return None if link is None else {**link, "href": root + link["href"]}

    book = {
        "root": root,
        "here": page.href,
        "prev": local(nav.get("prev")),
        "next": local(nav.get("next")),
        "pages": [local(p) for p in nav["pages"]],
        "assignments": [local(p) for p in nav["assignments"]],
        "mode": nav.get("mode", ""),
        "mathjax": root + nav["mathjax"] if nav.get("mathjax") else None,
    }
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": page.title}, "book": book}
    )
    target = out / page.href
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rewrite_links(body, page=page, targets=targets), encoding="utf-8")
    return target


def index_notebook(
    start: Path, pages: list[Page], assignments: list[Page], modes: dict[str, str], *, at: Path
) -> nbformat.NotebookNode:
    """The index page as a notebook of Markdown cells: the start notebook's opening and its
    course map, the pages of this build, and the released assignments.

    Links point at the notebooks, relative to the folder ``at`` (the start notebook's), as in
    the start notebook itself; ``rewrite_links`` then points them at the pages.
    """

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, at)).as_posix()

    nb0 = nbformat.read(start, as_version=4) if start.is_file() else nbformat.v4.new_notebook()
    markdown = [c.source for c in nb0.cells if c.cell_type == "markdown"]
    intro = markdown[0] if markdown else "# Style and Content, Texture Synthesis"
    course_map = next((m for m in markdown if MAP_HEADING in m), None)
    cells = [intro]
    if course_map:
        cells.append(course_map)
    rows = "\n".join(
        f"| [{p.title}]({link(p.source)}) | `{_rel(p.source)}` | {modes.get(p.href, '')} |"
        for p in pages
    )
    cells.append(f"## The pages of this book\n\n| page | notebook | run |\n|---|---|---|\n{rows}")
    if assignments:
        rows = "\n".join(
            # raw HTML, class first: rewrite_links leaves this link to the downloadable copy alone
            f'| [{a.title}]({link(a.source)}) | <a class="book-download" '
            f'href="{a.href.removesuffix(".html")}.ipynb" download>{a.source.name}</a> |'
            for a in assignments
        )
        body = f"| assignment | notebook |\n|---|---|\n{rows}"
    else:
        body = "No assignment has been released yet (`make release` generates them)."
    cells.append(
        "## Assignments\n\nThe released versions, without solutions: open one in JupyterLab, "
        "fill in the functions marked `YOUR CODE HERE`, run its tests, submit.\n\n" + body
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def build(
    notebooks: list[Path] | None = None,
    *,
    out: Path = ROOT / "_build" / "book",
    quick: bool = False,
    cache: Path = CACHE,
    timeout: int = 600,
    root: Path = ROOT,
    assignments: Path | None = None,
    log=print,
) -> Path:
    """Execute ``notebooks`` (default: ``notebooks/*.ipynb``) and write the site into ``out``.

    ``assignments`` is the folder of released assignments (default ``root/assignments``); links
    to ``root/assignments/<id>/<id>.ipynb`` point at their pages wherever the folder is.
    Returns the index page. Raises ``BuildError`` when a notebook fails (nothing is written).
    """
    assignments_dir = Path(assignments) if assignments else root / "assignments"
    notebooks = [Path(p).resolve() for p in (notebooks or sorted(root.glob("notebooks/*.ipynb")))]
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such notebook: {', '.join(missing)}")
    executed = execute_all(notebooks, quick=quick, cache=cache, timeout=timeout, log=log)

    pages = [Page(p, f"{p.stem}.html", notebook_title(executed[p], p.stem)) for p in notebooks]
    released = released_assignments(assignments_dir)
    assignments = [
        Page(p, f"assignments/{p.stem}.html", notebook_title(nbformat.read(p, 4), p.stem))
        for p in released
    ]
    index_page = Page(root / "notebooks" / "index.ipynb", "index.html", "Course map")
    targets = {p.source: p.href for p in pages + assignments}
    for a in assignments:  # where the notebooks' links expect the released versions
        targets[(root / "assignments" / a.source.parent.name / a.source.name).resolve()] = a.href
    nav = {
        "pages": [{"href": p.href, "title": p.title} for p in pages],
        "assignments": [{"href": a.href, "title": a.title} for a in assignments],
    }
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    nav["mathjax"] = copy_mathjax(out)
    exporter = _exporter()
    modes = {}
    for i, page in enumerate(pages):
        nb = static_widgets(executed[page.source])
        modes[page.href] = _mode_line(nb, quick)
        links = {
            **nav,
            "prev": nav["pages"][i - 1] if i > 0 else None,
            "next": nav["pages"][i + 1] if i + 1 < len(pages) else None,
            "mode": modes[page.href],
        }
        _render(exporter, nb, page, targets=targets, nav=links, out=out)
    for page in assignments:
        nb = nbformat.read(page.source, as_version=4)
        mode = "released version, not executed: download the notebook to work on it"
        _render(exporter, nb, page, targets=targets, nav={**nav, "mode": mode}, out=out)
        shutil.copy(page.source, out / f"{page.href.removesuffix('.html')}.ipynb")
    start = root / "notebooks" / "00_start_here.ipynb"
    index = index_notebook(start, pages, assignments, modes, at=index_page.source.parent)
    first = nav["pages"][0] if nav["pages"] else None
    mode = f"{len(pages)} notebooks, " + ("quick mode" if quick else "default mode")
    links = {**nav, "next": first, "mode": mode}
    target = _render(exporter, index, index_page, targets=targets, nav=links, out=out)
    log(f"book: {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--quick", action="store_true", help="COURSE_QUICK=1: small and fast")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "book")
    parser.add_argument("--cache", type=Path, default=CACHE, help="executed notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    try:
        build(
            args.notebooks or None,
            out=args.out,
            quick=args.quick,
            cache=args.cache,
            timeout=args.timeout,
        )
    except (BuildError, FileNotFoundError) as err:
        print(f"make book: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
