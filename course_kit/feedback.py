"""Make nbgrader's feedback pages into pages a teacher would send.

:func:`polish_feedback` edits one generated page in place:

* the summary table names each graded cell by its grade id (``Test cell test_squares``);
* long lines wrap (code, outputs and tracebacks) instead of running off the page;
* MathJax is inlined from the installed ``jupyter-server-mathjax`` (MathJax 2.7) instead of
  loaded from a CDN, so formulas render offline; its fonts come from the same package on the
  grading machine and the reader's own fonts elsewhere;
* a page over ``max_bytes`` (outputs are already capped per cell) is cut with a note.

Tracebacks are cleaned before the page is made (``course_kit.nbgrader_hooks.CleanTracebacks``).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

CDN = re.compile(r'<script src="https://cdn[^"]*mathjax[^"]*">\s*</script>', re.I)
TOC = re.compile(
    r'<li><a href="#([^"]+)">(Test cell|Coding free-response|Written response|Task)</a>'
)
WRAP_CSS = """<style>
div.input_area pre, div.output_area pre, div.output_subarea pre, .output_text pre {
  white-space: pre-wrap; word-wrap: break-word; overflow-wrap: anywhere;
}
div.output_subarea { max-width: 100%; overflow-x: auto; }
</style>
"""
MARK = "<!-- course-kit: polished -->"


@lru_cache(maxsize=1)
def _mathjax() -> str | None:
    """MathJax 2.7 (core + the combined TeX/MathML/HTML-CSS config) as one inline script."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    core = static / "MathJax.js"
    combined = static / "config" / "TeX-AMS-MML_HTMLorMML-full.js"
    if not (core.is_file() and combined.is_file()):
        return None
    root = static.resolve().as_uri()
    setup = (
        "window.MathJax = {root: " + json.dumps(root) + ", "
        "tex2jax: {inlineMath: [['$','$'], ['\\\\(','\\\\)']], processEscapes: true}, "
        "'HTML-CSS': {availableFonts: ['STIX', 'TeX'], preferredFont: 'TeX', imageFont: null}};"
    )
    body = core.read_text() + "\n" + combined.read_text()
    body = body.replace("</script", "<\\/script")
    return f"<script>{setup}</script>\n<script>\n{body}\n</script>"


def polish_feedback(page: Path, *, max_bytes: int = 5_000_000) -> bool:
    """Polish one feedback page in place; False when there is no page."""
    page = Path(page)
    if not page.is_file():
        return False
    text = page.read_text(errors="replace")
    if MARK in text:
        return True
    text = TOC.sub(lambda m: f'<li><a href="#{m[1]}">{m[2]} <code>{m[1]}</code></a>', text)
    inline = _mathjax()
    if inline is not None:
        text = CDN.sub(lambda _m: inline, text, count=1)
    text = text.replace("</head>", WRAP_CSS + "</head>", 1)
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
