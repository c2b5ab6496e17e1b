"""Hostile HTML and JavaScript a student can put into a notebook, and a checker for pages.

Every vector, rendered as it is (nbconvert's templates do not sanitise), runs
``PROBE('<name>')`` in the reader's browser, or makes it request ``BEACON``, or hides or
covers the grader's verdict: the browser tests assert that ``window.pwned`` stays empty and
no request reaches the beacon on the pages the kit makes, and that both happen on the same
notebook rendered without the kit's sanitising (so the probe itself is known to work).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from html.parser import HTMLParser

from nbformat.v4 import new_markdown_cell, new_output

PROBE = "(window.pwned=window.pwned||[]).push"
BEACON = "http://127.0.0.1:9/pwned-beacon"


def _p(name: str) -> str:
    return f"{PROBE}('{name}')"


# markdown cells: raw HTML is passed through by markdown renderers that do not sanitise
MARKDOWN = {
    "md-script": f"<script>{_p('md-script')}</script>",
    "md-img-onerror": f'<img src="x" onerror="{_p("md-img-onerror")}">',
    "md-svg-onload": f'<svg onload="{_p("md-svg-onload")}"></svg>',
    "md-details-ontoggle": f'<details open ontoggle="{_p("md-details-ontoggle")}">x</details>',
    "md-iframe": (
        "<iframe srcdoc=\"<script>(parent.pwned=parent.pwned||[]).push('md-iframe')</script>\">"
        "</iframe>"
    ),
    "md-link-js": f"[click me](javascript:{_p('md-link-js')})",
    "md-a-js-entity": f'<a href="jav&#x09;ascript:{_p("md-a-js-entity")}">click</a>',
    "md-form": f'<form action="{BEACON}"><input name="q"><button>send</button></form>',
    "md-meta-refresh": f'<meta http-equiv="refresh" content="0; url={BEACON}?meta">',
    "md-base": f'<base href="{BEACON}/">',
    "md-object": f'<object data="{BEACON}?object"></object><embed src="{BEACON}?embed">',
    "md-remote-img": f'<img src="{BEACON}?img">',
    "md-style-hide": "<style>.output_text, .output_area, pre {display: none !important}</style>",
    "md-overlay": (
        '<div style="position:fixed;top:0;left:0;width:100%;height:100%;z-index:99999;'
        'background:white" class="navbar-fixed-top">All checks passed (10 points)</div>'
    ),
    "md-mxss": (
        f'<math><mtext><table><mglyph><style><img src=x onerror="{_p("md-mxss")}">'
        "</style></mglyph></table></mtext></math>"
    ),
}

# a code cell whose outputs carry the same kinds of attack (run by a kernel when graded)
_SVG = (
    f'<svg xmlns="http://www.w3.org/2000/svg" onload="{_p("out-svg")}">'
    f'<script>{_p("out-svg-script")}</script><rect width="10" height="10"/></svg>'
)
_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
_WIDGET = {
    "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2},
    "text/plain": "widget",
}
OUTPUT_CELL = "\n".join(
    [
        "from IPython.display import HTML, Javascript, SVG, Markdown, display",
        f"display(HTML({'<script>' + _p('out-html-script') + '</script><b>bold is kept</b>'!r}))",
        f"display(HTML({'<img src=x onerror=' + chr(34) + _p('out-html-img') + chr(34) + '>'!r}))",
        f"display(Javascript({_p('out-js')!r}))",
        f"display(SVG({_SVG!r}))",
        f"display(Markdown({'<script>' + _p('out-markdown') + '</script>'!r}))",
        f"display({_WIDGET!r}, raw=True)",
        # a picture whose size nbconvert writes unquoted into <img width=...>
        f"display({{'image/png': {_PNG!r}, 'text/plain': 'a picture'}}, raw=True,"
        f" metadata={{'image/png': {{'width': {'1 onerror=' + _p('out-png-width')!r}}}}})",
        f"print({'printed <script>' + _p('out-stream') + '</script>'!r})",
    ]
)


def markdown_cells():
    return [new_markdown_cell(f"Attack {name}:\n\n{text}\n") for name, text in MARKDOWN.items()]


def outputs():
    """The outputs OUTPUT_CELL makes, for tests without a kernel."""
    svg = _SVG
    png = _PNG
    return [
        new_output(
            "display_data",
            data={"text/html": f"<script>{_p('out-html-script')}</script><b>bold is kept</b>"},
        ),
        new_output("display_data", data={"application/javascript": _p("out-js")}),
        new_output("display_data", data={"image/svg+xml": svg}),
        new_output(
            "display_data", data={"text/markdown": f"<script>{_p('out-markdown')}</script>"}
        ),
        new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}},
        ),
        new_output(  # a picture whose size is written unquoted into <img width=...>
            "display_data",
            data={"image/png": png, "text/plain": "<Figure>"},
            metadata={"image/png": {"width": f"1 onerror={_p('out-png-width')}"}},
        ),
        new_output("display_data", data={"image/png": f'"><script>{_p("out-png")}</script>'}),
    ]


class _Elements(HTMLParser):
    """Every start tag with its attributes and whether it is in <body>; each script's and
    style sheet's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str], bool]] = []
        self.texts: list[tuple[str, dict[str, str], str]] = []  # (script|style, attrs, text)
        self._open: tuple[str, dict[str, str], list[str]] | None = None
        self._body = False

    def handle_starttag(self, tag, attrs):
        self._body = self._body or tag == "body"
        attrs = {k: v or "" for k, v in attrs}
        self.found.append((tag, attrs, self._body))
        if tag in ("script", "style"):
            self._open = (tag, attrs, [])

    def handle_data(self, data):
        if self._open is not None:
            self._open[2].append(data)

    def handle_endtag(self, tag):
        if self._open is not None and tag == self._open[0]:
            self.texts.append((tag, self._open[1], "".join(self._open[2])))
            self._open = None


def elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def sha256(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def active_content(page: str, *, allowed_hashes: set[str] = frozenset()) -> list[str]:
    """What in an HTML page could run or load something: scripts (other than those whose
    sha256 is allowed), event handlers, javascript:/data: links, frames, forms, plug-ins,
    <meta refresh>, <base>, <link>, <style> with position or display tricks, remote images."""
    parser = elements(page)
    problems = []
    for kind, attrs, body in parser.texts:
        if kind == "script" and attrs.get("type", "text/javascript") in (
            "text/javascript",
            "module",
            "",
        ):
            if sha256(body) not in allowed_hashes:
                problems.append(f"<script>{body[:60]}")
    for tag, attrs, in_body in parser.found:
        if tag in ("iframe", "frame", "object", "embed", "form", "base", "link", "applet"):
            problems.append(f"<{tag}>")
        if tag == "style" and in_body:
            problems.append("<style> in the body")
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            problems.append("<meta refresh>")
        for name, value in attrs.items():
            url = re.sub(r"[\x00-\x20]+", "", value).lower()
            if name.startswith("on"):
                problems.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "data", "xlink:href", "formaction"):
                if url.startswith(("javascript:", "vbscript:")) or "pwned-beacon" in url:
                    problems.append(f"<{tag} {name}={value[:40]}>")
                if url.startswith("data:") and not url.startswith("data:image/"):
                    problems.append(f"<{tag} {name}={value[:40]}>")
            if name == "style" and re.search(r"position:fixed|display:none", url):
                problems.append(f"<{tag} style={value[:40]}>")
    return problems


def render(nb, template: str = "feedback") -> str:
    """``nb`` as nbgrader renders it: its feedback page or its Formgrader page (without the
    grades, which come from the gradebook), through nbconvert's unsanitised templates."""
    import os

    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    static = os.path.join(os.path.dirname(handlers.__file__), "static")
    css = os.path.join(static, "node_modules", "bootstrap", "dist", "css")
    exporter = HTMLExporter(
        template_name=template,
        extra_template_basedirs=[handlers.template_path],
        extra_template_paths=[css],
    )
    resources = {
        "nbgrader": {"notebook": "demo", "score": 0, "max_score": 1, "late_penalty": 0},
        "assignment_id": "demo",
        "notebook_id": "demo",
        "submission_id": "x",
        "index": 0,
        "total": 1,
        "base_url": "",
        "student": "mallory",
        "last_name": "",
        "first_name": "",
        "notebook_path": "demo.ipynb",
    }
    nb = copy.deepcopy(nb)
    for cell in nb.cells:  # what nbgrader's GetGrades adds from the gradebook
        meta = cell.metadata.get("nbgrader")
        if meta and meta.get("grade"):
            meta.setdefault("score", 0.0)
            meta.setdefault("points", 1.0)
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    return html
