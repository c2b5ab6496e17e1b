"""What a student's feedback page holds: tracebacks without library frames or grader folders,
capped outputs, grade ids in the summary, wrapped lines, MathJax without a CDN."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_output

from course_kit.feedback import polish_feedback
from course_kit.nbgrader_hooks import CapOutputs, CleanTracebacks, clean_traceback

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
