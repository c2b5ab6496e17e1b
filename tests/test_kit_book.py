"""`make book`: the rendered course book (course_kit/book.py).

The tests marked ``book`` build the whole book in quick mode. ``make test`` runs them after the
notebook tests, which leave every executed notebook in ``_build/executed/``: the build renders
those copies and executes only what is missing or changed. For a quicker look while developing,
``COURSE_BOOK_NOTEBOOKS="notebooks/00_start_here.ipynb notebooks/02_efros_leung.ipynb"``
restricts the build to those notebooks (CI leaves it unset: every notebook).
"""

from __future__ import annotations

import base64
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from course_kit import book
from course_kit.nbrun import ROOT, cache_key, cached_path, load_cached, save_cached

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG = (  # a 1 x 1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
)


# ---- fast unit tests (run with the main suite) ----------------------------------------------


def _widget(model_name: str, **state) -> dict:
    return {"model_name": model_name, "model_module": "@jupyter-widgets/controls", "state": state}


def _view(model_id: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output(
        "display_data",
        data={WIDGET_VIEW: {"model_id": model_id, "version_major": 2}, "text/plain": "VBox()"},
    )


def test_static_widgets_shows_a_sliders_captured_figure_and_a_progress_bars_last_line():
    figure = nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "F"})
    state = {
        "box": _widget("VBoxModel", children=["IPY_MODEL_row", "IPY_MODEL_out"]),
        "row": _widget("HBoxModel", children=["IPY_MODEL_size"]),
        "size": _widget("IntSliderModel", description="size", min=32, max=256, value=96),
        "out": _widget("OutputModel", outputs=[figure]),
        "bar": _widget("HBoxModel", children=["IPY_MODEL_d", "IPY_MODEL_p", "IPY_MODEL_s"]),
        "d": _widget("HTMLModel", value="steps: 100%"),
        "p": _widget("FloatProgressModel", value=50, max=100),
        "s": _widget("HTMLModel", value="50/50 [00:01&lt;00:00]"),
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {book.WIDGET_STATE: {"state": state}}
    nb.cells = [
        nbformat.v4.new_code_cell("interact", outputs=[_view("box"), _view("box")]),
        nbformat.v4.new_code_cell("train", outputs=[_view("bar")]),
    ]
    book.static_widgets(nb)
    first, second = nb.cells[0].outputs, nb.cells[1].outputs
    assert "widgets" not in nb.metadata  # no widget JavaScript on the page
    assert not any(WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.outputs)
    assert len(first) == 2, "the widget was displayed twice but is shown once"
    assert "<code>size</code> slider (32 to 256)" in first[0].data["text/html"]
    assert first[1].data["image/png"] == PNG
    line = second[0].data["text/html"]
    assert "steps: 100%" in line and "|" + "█" * 10 + " " * 10 + "|" in line
    assert "50/50 [00:01&amp;lt;00:00]" in line or "50/50 [00:01&lt;00:00]" in line


def test_rewrite_links_points_at_pages_and_unlinks_notebooks_outside_the_book(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nb_a, nb_b = tmp_path / "notebooks/00_a.ipynb", tmp_path / "notebooks/01_b.ipynb"
    released = tmp_path / "assignments/gram/gram.ipynb"
    targets = {nb_a: "00_a.html", nb_b: "01_b.html", released: "assignments/gram.html"}
    markup = (
        '<a href="01_b.ipynb#Top">next</a> <a href="../assignments/gram/gram.ipynb">gram</a> '
        '<a href="02_missing.ipynb">later</a> <a href="https://example.org/x.ipynb">web</a>'
    )
    page = book.Page(nb_a, "00_a.html", "A")
    out = book.rewrite_links(markup, page=page, targets=targets)
    assert '<a href="01_b.html#Top">next</a>' in out
    assert '<a href="assignments/gram.html">gram</a>' in out
    assert '<span class="book-missing"' in out and ">later</span>" in out
    assert '<a href="https://example.org/x.ipynb">web</a>' in out
    # from a page one folder down, the same notebook is one level up
    page = book.Page(released, "assignments/gram.html", "gram")
    out = book.rewrite_links(
        '<a href="../../notebooks/01_b.ipynb">b</a>', page=page, targets=targets
    )
    assert out == '<a href="../01_b.html">b</a>'


def test_the_cache_is_keyed_by_the_notebook_and_the_mode_and_drops_stale_copies(tmp_path):
    path = tmp_path / "n.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, path)
    key = cache_key(path, quick=True)
    assert key != cache_key(path, quick=False)
    assert load_cached(path, quick=True, cache=tmp_path / "c") is None
    first = save_cached(nb, path, quick=True, cache=tmp_path / "c")
    assert load_cached(path, quick=True, cache=tmp_path / "c") == nb
    assert load_cached(path, quick=False, cache=tmp_path / "c") is None
    nb.cells.append(nbformat.v4.new_markdown_cell("changed"))
    nbformat.write(nb, path)
    assert cache_key(path, quick=True) != key
    assert load_cached(path, quick=True, cache=tmp_path / "c") is None  # a changed notebook
    second = save_cached(nb, path, quick=True, cache=tmp_path / "c")
    assert second == cached_path(path, quick=True, cache=tmp_path / "c") != first
    assert not first.exists(), "the stale copy is removed"


# ---- the build (after the notebook tests: `make test` runs these in a second pytest run) -----


@pytest.mark.book
@pytest.mark.slow
def test_a_failing_notebook_fails_the_build_with_its_name_and_cell(tmp_path, capsys):
    bad = tmp_path / "07_broken.ipynb"
    cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('the failing cell')"),
        nbformat.v4.new_code_cell("y = 2"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, bad)
    out = tmp_path / "site"
    code = book.main([str(bad), "--quick", "--out", str(out), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1
    assert "07_broken.ipynb: cell 2 failed: ValueError: the failing cell" in err
    assert "raise ValueError('the failing cell')" in err  # the cell's source and the traceback
    assert not out.exists(), "nothing is written when a notebook fails"


class _Page(HTMLParser):
    """The links, images and element ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links, self.images, self.ids, self.text = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _book_notebooks() -> list[Path]:
    chosen = os.environ.get("COURSE_BOOK_NOTEBOOKS", "").split()
    return [ROOT / p for p in chosen] or sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """A folder of released assignments: the repository's ``assignments/`` when it has some,
    else a fresh ``make release`` of ``solutions/`` in a temporary course copy."""
    if book.released_assignments(ROOT / "assignments"):
        return ROOT / "assignments"
    from course_kit import instructor

    copy = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", copy)
    shutil.copytree(ROOT / "solutions", copy / "solutions")
    instructor.release(copy)
    return copy / "assignments"


@pytest.fixture(scope="module")
def site(tmp_path_factory, released) -> Path:
    """The book of every notebook in quick mode, built from the cache the notebook tests fill."""
    out = tmp_path_factory.mktemp("book")
    book.build(_book_notebooks(), out=out, quick=True, assignments=released)
    return out


def _png_outputs(nb: nbformat.NotebookNode) -> int:
    """PNG images a reader should see: cell outputs plus the figures captured by widgets."""
    state = nb.metadata.get("widgets", {}).get(book.WIDGET_STATE, {}).get("state", {})
    count = 0
    for cell in nb.cells:
        seen = set()
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            count += "image/png" in data
            view = data.get(WIDGET_VIEW)
            if view and view["model_id"] not in seen:
                seen.add(view["model_id"])
                for model in book._model_tree(state, view["model_id"]):
                    for o in model["state"].get("outputs", []):
                        count += "image/png" in o.get("data", {})
    return count


@pytest.mark.book
@pytest.mark.slow
def test_every_notebook_has_a_page_with_all_its_figures(site):
    for path in _book_notebooks():
        page = site / f"{path.stem}.html"
        assert page.is_file(), f"no page for {path.name}"
        parsed = _parse(page)
        pngs = [s for s in parsed.images if s.startswith("data:image/png;base64,")]
        nb = load_cached(path, quick=True)
        assert nb is not None, f"{path.name}: the build left no executed copy in the cache"
        expected = _png_outputs(nb)
        assert expected >= 1, f"{path.name} shows no picture at all"
        assert len(pngs) >= expected, (
            f"{page.name}: {len(pngs)} images, the notebook made {expected}"
        )
        for src in pngs:  # real PNGs, not empty placeholders
            assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        text = "".join(parsed.text)
        assert "Traceback" not in text, f"{page.name} shows a traceback"
        assert book.notebook_title(nb, path.stem) in text


@pytest.mark.book
@pytest.mark.slow
def test_index_has_the_course_map_navigation_and_the_released_assignments(site, released):
    index = _parse(site / "index.html")
    text = "".join(index.text)
    assert "The map of the unit" in text
    pages = [f"{p.stem}.html" for p in _book_notebooks()]
    for name in pages:
        assert name in index.links, f"the index does not link to {name}"
    # prev / next run through the notebooks in order
    for before, after in zip(pages, pages[1:]):
        assert after in _parse(site / before).links and before in _parse(site / after).links
    notebooks = book.released_assignments(released)
    assert notebooks, "no released assignment to link to"
    for nb_path in notebooks:
        aid = nb_path.stem
        assert f"assignments/{aid}.html" in index.links
        assert f"assignments/{aid}.ipynb" in index.links  # the notebook to download
        html = (site / "assignments" / f"{aid}.html").read_text(encoding="utf-8")
        assert "YOUR CODE HERE" in html, f"{aid}: not the released version"
        assert "BEGIN SOLUTION" not in html and "BEGIN HIDDEN TESTS" not in html
        assert nbformat.read(site / "assignments" / f"{aid}.ipynb", 4) == nbformat.read(nb_path, 4)
    assert not list(site.rglob("*solution*")), "solutions must not be published"


@pytest.mark.book
@pytest.mark.slow
def test_links_between_pages_resolve(site):
    pages = sorted(site.rglob("*.html"))
    ids = {p: _parse(p).ids for p in pages}
    broken = []
    for page in pages:
        for href in _parse(page).links:
            url = urlsplit(href)
            if url.scheme or href.startswith("data:"):
                continue  # the web (papers, MathJax) is not part of the book
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if not target.is_file():
                broken.append(f"{page.relative_to(site)} → {href}")
            elif (  # browsers match the fragment as written, then decoded
                url.fragment
                and target.suffix == ".html"
                and not {url.fragment, unquote(url.fragment)} & ids[target]
            ):
                broken.append(f"{page.relative_to(site)} → {href} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)
    for page in pages:  # only the released assignments are offered as notebooks (to download)
        notebooks = [h for h in _parse(page).links if urlsplit(h).path.endswith(".ipynb")]
        stray = [h for h in notebooks if not urlsplit(h).scheme and "assignments/" not in h]
        assert not stray, f"{page.name} links to notebooks instead of their pages: {stray}"


@pytest.mark.book
@pytest.mark.slow
def test_equations_render_offline_with_the_books_own_mathjax(site):
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file()
    for page in [site / "index.html", *site.glob("assignments/*.html")]:
        html = page.read_text(encoding="utf-8")
        depth = page.relative_to(site).as_posix().count("/")
        assert f'src="{"../" * depth}_static/mathjax/MathJax.js' in html, page.name
        assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in html, page.name
