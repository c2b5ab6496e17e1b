"""Make nbgrader's feedback pages into pages a teacher would send, and student content inert.

:func:`polish_feedback` edits one generated page in place:

* the summary table names each graded cell by its grade id (``Test cell test_squares``);
* long lines wrap (code, outputs, tracebacks and the grader's verdicts) instead of running off
  the page;
* MathJax is inlined from the installed ``jupyter-server-mathjax`` (MathJax 2.7) instead of
  loaded from a CDN, so formulas render offline; its fonts come from the same package on the
  grading machine and the reader's own fonts elsewhere; its Safe extension is inlined too (a
  student's math makes no ``javascript:`` link and no ``\\style`` overlay);
* a Content-Security-Policy ``<meta>`` allows no script but the page's own MathJax (by hash;
  scripts MathJax loads itself are allowed through ``'strict-dynamic'``), no frames, forms,
  plug-ins, ``<base>`` or remote images, so anything a student slipped past the sanitiser
  still cannot run;
* a page over ``max_bytes`` (outputs are already capped per cell) is cut with a note.

:func:`sanitise_notebook` makes everything a student wrote inert before a page is made from it
(the autograded notebook that the Formgrader shows, and the feedback): markdown cells and HTML,
Markdown and SVG outputs are cleaned with bleach (an allow-list: no scripts, event handlers,
``javascript:`` links, styles, frames, forms, ``<meta>`` or ``<base>``; images only as
``data:image/...``), JavaScript and widget outputs are dropped, image metadata that the
templates write into attributes is checked. Plain text, PNG/JPEG images and math are kept.

Tracebacks are cleaned before the page is made (``course_kit.nbgrader_hooks.CleanTracebacks``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import os
import re
from functools import lru_cache
from pathlib import Path

import bleach
from bleach.css_sanitizer import CSSSanitizer

CDN = re.compile(r'<script src="https://cdn[^"]*mathjax[^"]*">\s*</script>', re.I)
TOC = re.compile(
    r'<li><a href="#([^"]+)">(Test cell|Coding free-response|Written response|Task)</a>'
)
HEAD = re.compile(r"<head(\s[^>]*)?>", re.I)
WRAP_CSS = """<style>
div.input_area pre, div.output_area pre, div.output_subarea pre, .output_text pre {
  white-space: pre-wrap; word-wrap: break-word; overflow-wrap: anywhere;
  word-break: normal;  /* nbconvert's break-all cut "scores" into "sco" + "res" */
}
div.output_subarea { max-width: 100%; overflow-x: auto; }
</style>
"""
MARK = "<!-- course-kit: polished -->"

# --------------------------------------------------------------------------- sanitising

# What student HTML may hold: text structure, tables, lists, images. No scripts, styles,
# frames, forms, <meta>, <base>, <link>, <object>, <svg> (SVG outputs are cleaned apart).
HTML_TAGS = frozenset(
    "a abbr b blockquote br caption cite code col colgroup dd del details div dl dt em "
    "figcaption figure h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small "
    "span strong sub summary sup table tbody td tfoot th thead tr u ul var".split()
)
SVG_TAGS = frozenset(
    "svg g defs path rect circle ellipse line polyline polygon text tspan title desc "
    "clipPath linearGradient radialGradient stop symbol use marker pattern mask".split()
)
SVG_ATTRS = frozenset(
    "viewBox width height x y x1 x2 y1 y2 cx cy r rx ry d points transform fill stroke "
    "stroke-width stroke-linecap stroke-linejoin stroke-dasharray stroke-miterlimit "
    "stroke-opacity fill-opacity fill-rule opacity clip-path clip-rule id offset stop-color "
    "stop-opacity font-size font-family font-weight text-anchor dominant-baseline "
    "gradientUnits gradientTransform patternUnits preserveAspectRatio version xmlns "
    "xmlns:xlink href xlink:href markerWidth markerHeight refX refY orient mask".split()
)
_IMAGE_SRC = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*\Z")
# classes that the page's own style sheets give meaning to (pandas tables, Pygments tokens,
# heading anchors); any other class could borrow the page's layout (fixed bars, hidden, ...)
_CLASS_OK = re.compile(r"(dataframe|anchor-link|highlight|[a-z]{1,3}[0-9]?)\Z")
SAFE_MIMES = frozenset(
    {
        "text/plain",
        "text/html",
        "text/markdown",
        "text/latex",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/svg+xml",
        "application/json",
        "application/vnd.course-kit.report+json",  # the judge reads it; never rendered
    }
)
DROPPED = "[{what} output removed by the grader: active content from a notebook is not shown]"


def _url(value: str) -> str:
    """A URL as a browser reads it: entities decoded, no white space or control characters,
    lower case (bleach hands the callables the value with its entities)."""
    return re.sub(r"[\x00-\x20\x7f]+", "", html.unescape(value)).lower()


def _html_attr(tag: str, name: str, value: str) -> bool:
    if name in ("title", "alt"):
        return True
    if name == "class":
        return all(_CLASS_OK.match(c) for c in value.split())
    if tag == "a":  # bleach then allows http(s), mailto and relative links only
        return name == "href" and not _url(value).startswith("data:")
    if tag == "img":
        if name == "src":
            return bool(_IMAGE_SRC.match(html.unescape(value)))
        return name in ("width", "height") and value.isdigit()
    if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and name == "id":
        return True  # markdown headings' anchors
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan", "align") and len(value) < 10
    if tag == "ol":
        return name == "start" and value.isdigit()
    return False


def _svg_attr(tag: str, name: str, value: str) -> bool:
    if name in ("href", "xlink:href"):
        return _url(value).startswith("#")  # a reference inside the same picture only
    if name == "style":  # then cleaned by the CSS sanitiser (matplotlib styles every path)
        return "url(" not in _url(value).replace("url(#", "")
    return name in SVG_ATTRS and "url(" not in _url(value).replace("url(#", "")


_HTML = bleach.Cleaner(
    tags=HTML_TAGS,
    attributes=_html_attr,
    protocols={"http", "https", "mailto", "data"},
    strip=True,
    strip_comments=True,
)
_SVG = bleach.Cleaner(
    tags=SVG_TAGS,
    attributes=_svg_attr,
    protocols=set(),
    css_sanitizer=CSSSanitizer(),
    strip=True,
    strip_comments=True,
)


def clean_html(html: str) -> str:
    """Student HTML with everything active removed (bleach, the allow-list above)."""
    return _HTML.clean(html)


def clean_svg(svg: str) -> str:
    """An SVG picture without scripts, event handlers, styles, links or foreign content."""
    svg = re.sub(r"\A\s*<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>)?", "", svg)  # prologue: not HTML
    return _SVG.clean(svg)


def clean_markdown(source: str) -> str:
    """The markdown unchanged when its rendering (nbconvert's, as the templates use) holds
    nothing the sanitiser removes; else the sanitised rendering (HTML is valid markdown)."""
    from nbconvert.filters.markdown import markdown2html

    rendered = markdown2html(source)
    cleaned = clean_html(rendered)
    return source if cleaned == rendered else cleaned


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _is_base64(value) -> bool:
    try:
        base64.b64decode("".join(_text(value).split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _clean_output(out) -> list[str]:
    """Clean one output in place; returns what was removed."""
    removed: list[str] = []
    data = out.get("data")
    if not isinstance(data, dict):
        return removed
    for mime in list(data):
        value = data[mime]
        if mime not in SAFE_MIMES:
            del data[mime]
            removed.append(mime)
        elif mime == "text/html":
            data[mime] = clean_html(_text(value))
        elif mime == "text/markdown":
            data[mime] = clean_markdown(_text(value))
        elif mime == "image/svg+xml":
            data[mime] = clean_svg(_text(value))
        elif mime in ("image/png", "image/jpeg", "image/gif") and not _is_base64(value):
            del data[mime]
            removed.append(mime)
    if removed:  # said where the output was (its text/plain would only say "<... object>")
        what = "JavaScript" if any("javascript" in m for m in removed) else ", ".join(removed)
        data["text/plain"] = DROPPED.format(what=what)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("filenames", None)  # the templates would load these paths as images
        for mime, entry in list(meta.items()):
            if isinstance(entry, dict) and mime.startswith(("image/", "text/")):
                for key in ("width", "height"):  # written unquoted into <img ...>
                    if key in entry and not isinstance(entry[key], int | float):
                        del entry[key]
                entry.pop("isolated", None)
    return removed


def sanitise_notebook(nb) -> list[str]:
    """Make a (student's, executed) notebook safe to render as HTML, in place.

    Markdown cells, and HTML/Markdown/SVG outputs are cleaned with bleach; JavaScript, widget
    and any other output type not in ``SAFE_MIMES`` are dropped (a text note stays where
    nothing else would); raw cells become plain text; ``widgets`` metadata is removed. Plain
    text, PNG/JPEG images, LaTeX (shown escaped) and the kit's report outputs are kept.
    Returns one line per cell that was changed (for logs)."""
    changes: list[str] = []
    nb.get("metadata", {}).pop("widgets", None)
    for i, cell in enumerate(nb.get("cells", [])):
        kind = cell.get("cell_type")
        if kind == "markdown":
            source = _text(cell.get("source", ""))
            cleaned = clean_markdown(source)
            if cleaned != source:
                cell["source"] = cleaned
                changes.append(f"cell {i}: markdown sanitised")
            if _attachments_unsafe(cell):
                cell.pop("attachments", None)
                changes.append(f"cell {i}: attachments removed")
        elif kind == "raw":
            cell.setdefault("metadata", {}).pop("raw_mimetype", None)
            cell.setdefault("metadata", {}).pop("format", None)
        elif kind == "code":
            for out in cell.get("outputs", []) or []:
                removed = _clean_output(out)
                if removed:
                    changes.append(f"cell {i}: {', '.join(removed)} output removed")
    return changes


def _attachments_unsafe(cell) -> bool:
    """Attachments are shown as images (``attachment:`` links); only base64 images pass."""
    for bundle in (cell.get("attachments") or {}).values():
        for mime, value in (bundle or {}).items():
            if mime not in ("image/png", "image/jpeg", "image/gif") or not _is_base64(value):
                return True
    return False


# --------------------------------------------------------------------------- the page


@lru_cache(maxsize=1)
def _mathjax() -> tuple[str, list[str]] | None:
    """MathJax 2.7 (core + the combined TeX/MathML/HTML-CSS config) as inline scripts, and
    the scripts' bodies (for the Content-Security-Policy hashes)."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    core = static / "MathJax.js"
    combined = static / "config" / "TeX-AMS-MML_HTMLorMML-full.js"
    safe = static / "extensions" / "Safe.js"  # math: no \style overlays, no javascript: \href
    if not (core.is_file() and combined.is_file() and safe.is_file()):
        return None
    root = static.resolve().as_uri()
    setup = (
        "window.MathJax = {root: " + json.dumps(root) + ", extensions: ['Safe.js'], "
        "tex2jax: {inlineMath: [['$','$'], ['\\\\(','\\\\)']], processEscapes: true}, "
        "'HTML-CSS': {availableFonts: ['STIX'], preferredFont: 'STIX', webFont: 'STIX-Web', "
        "imageFont: null}};"
    )
    body = "\n" + "\n".join(p.read_text() for p in (core, combined, safe)) + "\n"
    body = body.replace("</script", "<\\/script")
    return f"<script>{setup}</script>\n<script>{body}</script>", [setup, body]


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def content_security_policy(scripts: list[str]) -> str:
    """The page's policy: only the given inline scripts (and what they load) may run."""
    script_src = " ".join(_sha256(s) for s in scripts) + " 'strict-dynamic'" if scripts else ""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script_src or chr(39) + 'none' + chr(39)}",
            "style-src 'unsafe-inline'",  # nbconvert's and MathJax's inline styles
            "img-src data:",
            "font-src data: file:",  # MathJax's fonts from the grading machine's package
            "base-uri 'none'",
            "form-action 'none'",
            "frame-src 'none'",
            "object-src 'none'",
        ]
    )


def polish_feedback(page: Path, *, max_bytes: int = 5_000_000) -> bool:
    """Polish one feedback page in place; False when there is no page."""
    page = Path(page)
    if not page.is_file():
        return False
    text = page.read_text(errors="replace")
    if MARK in text:
        return True
    text = TOC.sub(lambda m: f'<li><a href="#{m[1]}">{m[2]} <code>{m[1]}</code></a>', text)
    # before MathJax is inlined: its code holds "</head>" too
    text = text.replace("</head>", WRAP_CSS + "</head>", 1)
    mathjax = _mathjax()
    scripts: list[str] = []
    if mathjax is not None and CDN.search(text):
        text = CDN.sub(lambda _m: mathjax[0], text, count=1)
        scripts = mathjax[1]
    else:
        text = CDN.sub("", text, count=1)  # a CDN script would be blocked anyway
    csp = content_security_policy(scripts)
    meta = f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
    head = HEAD.search(text)
    text = text[: head.end()] + "\n" + meta + text[head.end() :] if head else meta + text
    if len(text.encode()) > max_bytes:
        cut = text[: max_bytes // 2]
        text = cut + (
            "<p><b>[The rest of this page was cut by the grader: it was larger than "
            f"{max_bytes // 1_000_000} MB.]</b></p></body></html>"
        )
    mode = page.stat().st_mode
    os.chmod(page, mode | 0o200)
    page.write_text(text + "\n" + MARK + "\n")
    os.chmod(page, mode)
    return True
