"""What a student's feedback page holds: tracebacks without library frames or grader folders,
capped outputs, grade ids in the summary, wrapped lines, MathJax without a CDN."""

from __future__ import annotations

import json
import re

from hostile_content import (
    MARKDOWN,
    OUTPUT_CELL,
    active_content,
    elements,
    markdown_cells,
    outputs,
    render,
    sha256,
)
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course_kit import instructor
from course_kit.feedback import clean_markdown, polish_feedback, sanitise_notebook
from course_kit.nbgrader_hooks import (
    CapOutputs,
    CleanTracebacks,
    clean_traceback,
    name_timeouts,
    timeout_error,
)
from course_kit.nbrun import ROOT

RED = "\x1b[0;31m"
TRACEBACK = [
    f"{RED}---------------------------------------------------------------------------\x1b[0m",
    "Cell \x1b[0;32mIn[5], line 3\x1b[0m\n      1 x = [1, 2]\n----> 3 normalise(x)\n",
    "Cell \x1b[0;32mIn[4], line 4\x1b[0m, in \x1b[0;36mnormalise\x1b[0;34m(values)\x1b[0m\n"
    "----> 4     return values / np.linalg.norm(values, ord=-7)\n",
    "File \x1b[0;32m/work/main/.venv/lib/python3.11/site-packages/numpy/linalg/linalg.py:2583"
    "\x1b[0m, in \x1b[0;36mnorm\x1b[0;34m(x, ord)\x1b[0m\n"
    "   2581 raise ValueError('Invalid norm order')\n",
    "File \x1b[0;32m/work/wt/grading/course_lib/grading.py:40\x1b[0m, in _fail\n",
    f"{RED}ValueError\x1b[0m: Invalid norm order for /tmp/course-kit-sandbox-x1/course/data.npy",
]


def test_tracebacks_keep_the_students_frames_only():
    out = clean_traceback(TRACEBACK)
    text = "\n".join(out)
    assert "In[5], line 3" in text and "In[4], line 4" in text  # the student's own cells
    assert "site-packages" not in text and "linalg.py" not in text
    assert "course_lib" not in text and "/work/" not in text and "/tmp/" not in text
    assert "2 frame(s) inside libraries not shown" in text
    assert out[-1].endswith("Invalid norm order for data.npy")


def test_clean_tracebacks_preprocessor_and_output_caps():
    cell = new_code_cell("x")
    cell.outputs = [
        new_output("error", ename="ValueError", evalue="bad /srv/grader/x.py", traceback=TRACEBACK),
        new_output("stream", name="stdout", text="y" * 5_000_000),
        new_output("display_data", data={"image/png": "A" * 3_000_000, "text/plain": "<Figure>"}),
    ]
    cell, _ = CleanTracebacks().preprocess_cell(cell, {}, 0)
    assert cell.outputs[0]["evalue"] == "bad x.py"
    cell, _ = CapOutputs(max_chars=1000, max_cell_bytes=200_000).preprocess_cell(cell, {}, 0)
    stream = cell.outputs[1]["text"]
    assert len(stream) < 1200 and "5,000,000 characters" in stream
    assert "image/png" not in cell.outputs[2]["data"]  # a 3 MB image: dropped, said so
    assert (
        "too large" in cell.outputs[2]["data"]["text/plain"]
        or "<Figure>" in (cell.outputs[2]["data"]["text/plain"])
    )
    many = new_code_cell("x")
    many.outputs = [new_output("stream", name="stdout", text="z" * 900) for _ in range(1000)]
    many, _ = CapOutputs(max_cell_bytes=50_000).preprocess_cell(many, {}, 0)
    assert len(many.outputs) < 100 and "removed by the grader" in many.outputs[-1]["text"]


CDN = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full"
PAGE = (
    """<!DOCTYPE html>
<html><head><meta charset="utf-8" />
<script src="CDN"> </script>
</head><body><div id="toc"><ol>
<li><a href="#test_squares">Test cell</a> (Score: 2.0 / 2.0)</li>
<li><a href="#essay">Written response</a> (Score: 0.0 / 1.0)</li>
</ol></div><p>$E_l = \\frac{1}{4N^2M^2}$</p></body></html>
"""
).replace("CDN", CDN)


def test_polished_page(tmp_path):
    page = tmp_path / "demo.html"
    page.write_text(PAGE)
    page.chmod(0o444)  # nbgrader writes feedback read-only
    assert polish_feedback(page)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")  # standards mode kept
    assert '<a href="#test_squares">Test cell <code>test_squares</code></a>' in text
    assert "Written response <code>essay</code>" in text
    assert "cdnjs" not in text and "MathJax.Hub" in text  # inlined
    assert "white-space: pre-wrap" in text
    before = text
    assert polish_feedback(page) and page.read_text() == before  # idempotent
    assert not polish_feedback(tmp_path / "missing.html")


# ----------------------------------------------------------------- student HTML made inert


def _hostile_notebook():
    cell = new_code_cell("display(...)")
    cell.outputs = outputs()
    return new_notebook(cells=[*markdown_cells(), cell])


def test_every_hostile_vector_is_active_in_nbgrader_pages_as_they_are():
    """The oracle works: each attack, rendered by nbgrader's templates without the kit's
    sanitising, is found by ``active_content`` (else the next test could not fail)."""
    for name, cell in zip(MARKDOWN, markdown_cells(), strict=True):
        assert active_content(render(new_notebook(cells=[cell]))), name
    found = "\n".join(active_content(render(_hostile_notebook())))
    for name in ("out-html-script", "out-markdown", "<img onerror"):  # width="1 onerror=..."
        assert name in found, name


def test_the_hostile_output_cell_is_python():
    compile(OUTPUT_CELL, "hostile cell", "exec")  # else the kernel makes no hostile outputs


def test_sanitised_notebook_renders_nothing_active_and_keeps_text_and_pictures():
    nb = _hostile_notebook()
    changes = sanitise_notebook(nb)
    assert len(changes) >= len(nb.cells) - 1, changes
    page = render(nb)
    # only the template's MathJax from a CDN (an empty body; polish_feedback replaces it)
    assert active_content(page) == ["<script> "] and page.count("cdnjs") == 1
    # the Formgrader's page holds its own scripts: the student adds none to them
    baseline = render(new_notebook(), "formgrade")
    assert sorted(active_content(render(nb, "formgrade"))) == sorted(active_content(baseline))
    assert "<b>bold is kept</b>" in page
    assert page.count("data:image/png;base64,iVBORw0KGgo") == 1  # the real picture stays
    mimes = {m for o in nb.cells[-1].outputs for m in o.get("data", {})}
    assert not {"application/javascript", "application/vnd.jupyter.widget-view+json"} & mimes
    assert "output removed by the grader" in json.dumps(nb)
    assert "pwned-beacon" not in "".join(c.source for c in nb.cells)
    assert sanitise_notebook(nb) == []  # a second pass finds nothing left


def test_sanitiser_keeps_honest_markdown_as_it_is():
    honest = (
        "## My answer\n\nThe loss is $E_l = \\frac{1}{4N^2M^2}\\sum (G - A)^2$, so `a < b`;"
        " see [the paper](https://arxiv.org/abs/1505.07376).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    assert clean_markdown(honest) == honest
    assert clean_markdown("<b>bold</b> and <sub>i</sub>") == "<b>bold</b> and <sub>i</sub>"
    cleaned = clean_markdown("[x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    assert "javascript" not in cleaned and "onerror" not in cleaned and "<a>x</a>" in cleaned


def test_feedback_page_has_a_content_security_policy_that_admits_only_its_mathjax(tmp_path):
    page = tmp_path / "demo.html"
    page.write_text(PAGE.replace("<p>$E_l", "<script>alert(1)</script><p>$E_l"))
    assert polish_feedback(page)
    text = page.read_text()
    head = text[: text.index("<script")]
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', head)
    assert policy, "no CSP <meta> before the first script"
    directives = dict(d.strip().split(" ", 1) for d in policy[1].split(";"))
    assert directives["default-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe-inline" not in directives["script-src"]
    allowed = set(re.findall(r"'(sha256-[^']+)'", directives["script-src"]))
    assert len(allowed) == 2  # MathJax's set-up and MathJax itself, by hash
    # every script but the student's is allowed: the hashes are those of the page's scripts
    assert [p for p in active_content(text, allowed_hashes=allowed)] == ["<script>alert(1)"]
    assert sha256("alert(1)") not in allowed


def test_wrap_css_is_a_style_of_the_page_not_text_inside_mathjax(tmp_path):
    page = tmp_path / "demo.html"
    page.write_text(PAGE)
    polish_feedback(page)
    text = page.read_text()
    parsed = elements(text)
    # before the fix it landed inside MathJax's script, where "</head>" first appears
    assert not [t for kind, _, t in parsed.texts if kind == "script" and "pre-wrap" in t]
    assert [t for kind, _, t in parsed.texts if kind == "style" and "pre-wrap" in t]


def test_a_timed_out_cells_verdict_names_the_time_limit():
    settings = instructor._exec_settings({"Execute": {"timeout": 30}}, 12)
    error = settings["Execute"]["error_on_timeout"]
    assert error["ename"] == "CellTimeoutError" and "time limit of 12 s" in error["evalue"]
    verdict = "Grader: 0 of 2 checks passed; this cell scores 0.\n  - check 'a': no result\n"
    timed_out, failed = new_code_cell("loop()"), new_code_cell("wrong()")
    timed_out.outputs = [new_output("error", **timeout_error(12))]
    failed.outputs = [new_output("error", ename="ValueError", evalue="x", traceback=[])]
    for cell in (timed_out, failed):
        mark = {"course-kit-verdict": True}
        cell.outputs.append(new_output("display_data", data={"text/plain": verdict}, metadata=mark))
    nb = new_notebook(cells=[timed_out, failed])
    assert name_timeouts(nb) == 1 and name_timeouts(nb) == 0  # once
    text = timed_out.outputs[1]["data"]["text/plain"]
    assert text.startswith(verdict.rstrip("\n"))
    assert "  - this cell ran past the time limit of 12 s per cell and was stopped." in text
    assert failed.outputs[1]["data"]["text/plain"] == verdict


def test_nbgrader_config_sanitises_autograded_notebooks_and_feedback():
    config = instructor.load_config(ROOT)
    hook = "course_kit.nbgrader_hooks.SanitiseStudentHTML"
    assert hook in config.GenerateFeedback.preprocessors
    assert hook in config.Autograde.autograde_preprocessors  # the Formgrader's button too
    feedback = list(config.GenerateFeedback.preprocessors)
    assert feedback.index(hook) > feedback.index("nbgrader.preprocessors.ClearHiddenTests")
