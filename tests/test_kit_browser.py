"""The kit as students meet it: JupyterLab in a real browser (headless Chromium, Playwright).

JupyterLab runs from this environment on a free loopback port with a token, serving a temporary
copy of the start notebook and of a released assignment (JupyterLab saves what it runs; the
repository stays clean). Playwright drives Debian's Chromium (``/usr/bin/chromium``, or
``$COURSE_CHROMIUM``); it never downloads a browser. ``make test`` installs Chromium with apt-get
when it is missing and can be installed; otherwise these tests are skipped and say why.

Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from course_kit.nbrun import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"
TOKEN = "course-kit-browser-test"
RUN_TIMEOUT_MS = 600_000  # a loaded 2-core CI machine runs notebook 00 in quick mode in ~1 min


def _skip_reason() -> str | None:
    if not CHROMIUM.is_file():
        return (
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; "
            "`make test` does this when apt-get can be used) or set COURSE_CHROMIUM"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (it is in the `test` extra: `make setup`)"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _released_assignment(workdir: Path) -> Path:
    """The released ``gram`` assignment (or the first one): the committed one, or else a fresh
    ``make release`` into a temporary course copy."""
    from course_kit import instructor

    committed = sorted((ROOT / "assignments").glob("*/*.ipynb"))
    if committed:
        pick = [p for p in committed if p.stem == "gram"] or committed
        return pick[0]
    copy = workdir / "course"
    copy.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", copy)
    shutil.copytree(ROOT / "solutions", copy / "solutions")
    ids = instructor.assignment_ids(copy)
    if not ids:
        pytest.skip("no assignment in solutions/ to release")
    aid = "gram" if "gram" in ids else ids[0]
    instructor.release(copy, [aid])
    return copy / "assignments" / aid / f"{aid}.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving copies of notebook 00 and an assignment; yields
    (base URL, served folder)."""
    work = tmp_path_factory.mktemp("lab")
    served = work / "served"
    (served / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", served / "notebooks")
    assignment = _released_assignment(work)
    shutil.copytree(assignment.parent, served / "assignments" / assignment.parent.name)
    # every cell stays in the page (no virtual scrolling), so the test can find it
    settings = work / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = _free_port()
    env = {**os.environ, "COURSE_QUICK": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("MPLBACKEND", None)  # the test session's Agg would hide the kernel's inline figures
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={served}",
        f"--LabApp.user_settings_dir={work / 'settings'}",
        f"--LabApp.workspaces_dir={work / 'workspaces'}",
        # kernels talk over Unix sockets, not loopback TCP ports picked and then bound (a port
        # taken meanwhile by another kernel on a busy machine loses the messages sent to it)
        "--KernelManager.transport=ipc",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (work / "lab.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=served, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"JupyterLab exited:\n{(work / 'lab.log').read_text()}"
            assert time.time() < deadline, "JupyterLab did not answer within 180 s"
            try:
                request = urllib.request.Request(
                    f"{base}/api/status", headers={"Authorization": f"token {TOKEN}"}
                )
                with urllib.request.urlopen(request, timeout=5):
                    break
            except OSError:
                time.sleep(1)
        yield base, served, assignment.stem
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # what the page showed at the end, pass or fail
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"))
    context.close()


def _open(page, base: str, path: str):
    page.goto(f"{base}/lab/tree/{path}?token={TOKEN}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=180_000)
    news = page.locator(".jp-toast-button", has_text=re.compile("^No$"))  # "Jupyter news?" toast
    try:
        news.click(timeout=5_000)
    except Exception:  # no toast this time
        pass
    # the kernel is up and idle before we run anything
    page.wait_for_function(
        """() => {
            const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            return el && el.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
        }""",
        timeout=180_000,
    )


def _wait_until_done(page, n_code_cells: int, timeout_ms: int = RUN_TIMEOUT_MS):
    """Every code cell has run: a number in its prompt, none still queued (``[*]``)."""
    page.wait_for_function(
        """(n) => {
            const prompts = [...document.querySelectorAll('.jp-Cell.jp-CodeCell .jp-InputPrompt')];
            const done = prompts.filter(p => /\\[\\d+\\]/.test(p.textContent));
            return prompts.length === n && done.length === n;
        }""",
        arg=n_code_cells,
        timeout=timeout_ms,
    )


def _menu(page, menu: str, item: str):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


def _select_first_cell(page):
    """Focus the notebook (so that menu commands act on it) in command mode, on its first cell."""
    page.locator(".jp-NotebookPanel .jp-Cell").first.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")


def _run_all(page):
    """Run ▸ Run All Cells, again if no cell has started within a minute (a click can land
    while JupyterLab is still settling)."""
    for _ in range(3):
        _select_first_cell(page)
        _menu(page, "Run", "Run All Cells")
        try:
            page.wait_for_function(
                """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                    .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""",
                timeout=60_000,
            )
            return
        except Exception:  # playwright's TimeoutError
            continue
    raise AssertionError("Run All Cells did not start any cell")


def _saved(page, path: Path) -> nbformat.NotebookNode:
    """Save the notebook from the browser (Ctrl+S) and read what JupyterLab wrote."""
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.time() + 60
    while path.stat().st_mtime_ns == before and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    return nbformat.read(path, as_version=4)


def _errors(nb: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    return [
        (i, o.get("ename", ""), o.get("evalue", ""))
        for i, cell in enumerate(nb.cells)
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def test_start_notebook_runs_shows_images_and_its_slider_redraws_the_figure(lab, page):
    base, served, _ = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _open(page, base, "notebooks/00_start_here.ipynb")
    path = served / "notebooks" / "00_start_here.ipynb"
    n_code = sum(c.cell_type == "code" for c in nbformat.read(path, 4).cells)
    _run_all(page)
    _wait_until_done(page, n_code)

    page.screenshot(path=str(ARTIFACTS / "00_start_here_run_all.png"))
    text = page.locator(".jp-NotebookPanel .jp-OutputArea").all_inner_texts()
    assert not any("Traceback (most recent call last)" in t for t in text), "a cell shows an error"
    images = page.locator(".jp-NotebookPanel .jp-RenderedImage img")
    assert images.count() >= 3, f"{images.count()} images shown"
    assert all(
        src.startswith("data:image/png")
        for src in images.evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    )

    # (.first: the cell both displays and returns the widget, so JupyterLab shows two views of
    # the same model, and moving one moves both)
    slider = page.locator(".widget-slider", has=page.locator("label", has_text="size")).first
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    assert readout.inner_text().strip() == "96"
    figure = page.locator(".widget-output .jp-RenderedImage img").first
    figure.wait_for()
    before = figure.get_attribute("src")
    page.screenshot(path=str(ARTIFACTS / "00_start_here_slider_before.png"))

    handle = slider.locator(".noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")  # one step: 96 → 112
    page.wait_for_function(
        """([old]) => {
            const img = document.querySelector('.widget-output .jp-RenderedImage img');
            return img && img.getAttribute('src') !== old;
        }""",
        arg=[before],
        timeout=120_000,
    )
    assert readout.inner_text().strip() == "112"
    figure.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "00_start_here.png"))

    nb = _saved(page, path)
    assert not _errors(nb), f"error outputs: {_errors(nb)}"
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


def test_assignment_visible_tests_say_that_a_function_is_not_implemented(lab, page):
    base, served, aid = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = served / "assignments" / aid / f"{aid}.ipynb"
    released = nbformat.read(path, 4)
    visible = [
        i
        for i, c in enumerate(released.cells)
        if c.cell_type == "code" and "check_implemented(" in c.source
    ]
    assert visible, f"{aid}: no visible test calls check_implemented"
    _open(page, base, f"assignments/{aid}/{aid}.ipynb")

    # as a student does: run the code cells one after the other, past the failures (Run All
    # would stop at the first failing test); each one finishes before the next starts
    cells = page.locator(".jp-NotebookPanel .jp-Cell")
    assert cells.count() == len(released.cells)
    for i, cell in enumerate(released.cells):
        if cell.cell_type != "code":
            continue
        prompt = cells.nth(i).locator(".jp-InputPrompt")
        prompt.click()
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Enter")
        prompt.filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=RUN_TIMEOUT_MS)
    _wait_until_done(page, sum(c.cell_type == "code" for c in released.cells))

    first = page.locator(".jp-Cell").nth(visible[0])
    first.locator(".jp-OutputArea").scroll_into_view_if_needed()
    message = first.locator(".jp-OutputArea").inner_text()
    assert "CheckFailed" in message and "is not implemented yet" in message, message
    assert "replace `raise NotImplementedError()` with your code" in message
    page.screenshot(path=str(ARTIFACTS / f"{aid}_not_implemented.png"))

    nb = _saved(page, path)
    errors = _errors(nb)
    assert {i for i, _, _ in errors} >= set(visible), "a visible test did not fail"
    unfriendly = [e for e in errors if e[1] != "CheckFailed" or "not implemented yet" not in e[2]]
    assert not unfriendly, f"errors that do not tell the student what to do: {unfriendly}"


# ---------------------------------------------------------------------------------------------
# Student HTML and JavaScript are inert in the feedback page and in the Formgrader (issue 24.3);
# the grader's verdicts wrap (issue 25.6). One hostile submission of the fixture course is
# graded for real (sandbox, judge, nbgrader's feedback); each page is also opened made from the
# same notebook *without* the kit's sanitising, where the student's scripts do run: the probe
# is known to work, so "nothing ran" means something.

HOSTILE_TIMEOUT = 10  # s per cell: the submission's sum_of_squares loops forever
# what runs by itself on opening a page made without the kit's sanitising (the Formgrader also
# runs JavaScript outputs: it loads jQuery, which they need)
RUN_WITHOUT_SANITISING = {
    "md-script",
    "md-img-onerror",
    "md-details-ontoggle",
    "md-svg-onload",
    "md-iframe",
    "out-html-script",
    "out-markdown",
    "out-png-width",
}


@pytest.fixture(scope="module")
def hostile_grading(tmp_path_factory):
    from hostile_content import OUTPUT_CELL, markdown_cells
    from nbformat.v4 import new_code_cell, new_markdown_cell

    from course_kit import instructor
    from course_kit.fixture_course import make_course, make_submission

    tmp = tmp_path_factory.mktemp("hostile-pages")
    root = make_course(tmp)
    [released] = instructor.release(root)
    nb = make_submission(released, "partial")  # a wrong normalise: verdicts with messages
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "squares":
            cell.source = "def sum_of_squares(values):\n    while True:\n        pass\n"
    honest = new_markdown_cell(  # math stays; MathJax makes no javascript: link (Safe.js)
        "My notes: the Gram loss is $E_l = \\frac{1}{4N^2M^2}$, "
        "see $\\href{javascript:(window.pwned=window.pwned||[]).push('math-href')}{here}$."
    )
    nb.cells[1:1] = [honest, *markdown_cells(), new_code_cell(OUTPUT_CELL)]
    (tmp / "subs" / "mallory").mkdir(parents=True)
    nbformat.write(nb, tmp / "subs" / "mallory" / "demo.ipynb")
    [row] = instructor.grade("demo", tmp / "subs", root=root, timeout=HOSTILE_TIMEOUT)
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(root / "grading" / "gradebook.db")) as gb:
        submission = gb.find_submission_notebook("demo", "demo", "mallory").id
    return {
        "root": root,
        "feedback": root / row.feedback,
        "submission": submission,
        "executed": root / "grading" / "executed" / "mallory" / "demo" / "demo.ipynb",
        "autograded": root / "grading" / "autograded" / "mallory" / "demo" / "demo.ipynb",
        "tmp": tmp,
    }


def _visit(browser, url: str, *, width: int = 1280, settle_ms: int = 1500) -> dict:
    """Open ``url`` in a fresh context; what the student's probes did: ``pwned`` (scripts
    that ran), ``beacon`` (requests to the student's server, answered here) and the page."""
    from hostile_content import BEACON

    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    beacon: list[str] = []

    def block(route):  # recorded; "204 No Content" leaves the page where it is
        beacon.append(route.request.url)
        route.fulfill(status=204, body="")

    page.route(BEACON.split("/pwned")[0] + "/pwned-beacon**", block)
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(settle_ms)  # an onerror, a toggle event or a refresh fires by now
    return {"context": context, "page": page, "beacon": beacon, "pwned": _pwned(page)}


def _pwned(page) -> list[str]:
    return sorted(page.evaluate("window.pwned || []"))


def test_feedback_page_runs_no_student_script_and_its_verdicts_wrap(browser, hostile_grading):
    from hostile_content import render

    from course_kit.feedback import polish_feedback

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seen = _visit(browser, hostile_grading["feedback"].as_uri(), width=480)
    page = seen["page"]
    try:
        page.screenshot(path=str(ARTIFACTS / "hostile_feedback.png"), full_page=True)
        assert seen["pwned"] == [] and seen["beacon"] == [], seen
        assert page.url == hostile_grading["feedback"].as_uri()  # no refresh, no <base> trick
        page.wait_for_function("document.querySelectorAll('.MathJax').length > 1")  # math
        links = page.evaluate("[...document.querySelectorAll('a')].map(a => a.href)")
        assert not [u for u in links if u.lower().startswith("javascript:")], links
        verdicts = page.locator(".output_subarea pre", has_text=re.compile("^Grader: "))
        assert verdicts.count() >= 3
        for i in range(verdicts.count()):
            verdict = verdicts.nth(i)
            verdict.scroll_into_view_if_needed()
            assert verdict.is_visible()
            layout = verdict.evaluate(
                """(pre) => {
                    const style = getComputedStyle(pre), box = pre.getBoundingClientRect();
                    const range = document.createRange();
                    range.selectNodeContents(pre);
                    const text = range.getBoundingClientRect();
                    const hit = document.elementFromPoint(box.left + 5, box.top + 5);
                    return {whiteSpace: style.whiteSpace, wrap: style.overflowWrap,
                            textRight: text.right, width: document.documentElement.clientWidth,
                            scroll: pre.scrollWidth, client: pre.clientWidth,
                            covered: !(hit && pre.contains(hit))};
                }"""
            )
            assert layout["whiteSpace"] == "pre-wrap" and layout["wrap"] == "anywhere", layout
            assert layout["textRight"] <= layout["width"], layout  # no line runs off-screen
            assert layout["scroll"] <= layout["client"] + 1, layout
            assert not layout["covered"], layout  # no student element laid over the verdict
        timed_out = verdicts.filter(has_text="time limit")
        assert f"time limit of {HOSTILE_TIMEOUT} s per cell" in timed_out.first.inner_text()
    finally:
        seen["context"].close()

    # the same notebook as the sandbox executed it, rendered by nbgrader's template without
    # the kit's sanitising and policy: the student's scripts run (the probe works) ...
    raw = nbformat.read(hostile_grading["executed"], 4)
    bare = hostile_grading["tmp"] / "unsanitised.html"
    bare.write_text(render(raw))
    seen = _visit(browser, bare.as_uri())
    seen["context"].close()
    assert RUN_WITHOUT_SANITISING <= set(seen["pwned"]), seen
    assert seen["beacon"], "the probe's server was not reached"
    # ... and the Content-Security-Policy alone stops them (a second, independent layer)
    polish_feedback(bare)
    seen = _visit(browser, bare.as_uri())
    seen["context"].close()
    assert seen["pwned"] == [], seen


@pytest.fixture(scope="module")
def formgrader(hostile_grading):
    """A Jupyter server with nbgrader's Formgrader on the hostile course; yields its URL."""
    root = hostile_grading["root"]
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--KernelManager.transport=ipc",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = hostile_grading["tmp"] / "formgrader.log"
    log = log_path.open("w")
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"the server exited:\n{log_path.read_text()}"
            assert time.time() < deadline, "the Jupyter server did not answer within 180 s"
            try:
                request = urllib.request.Request(
                    f"{base}/formgrader/api/status", headers={"Authorization": f"token {TOKEN}"}
                )
                with urllib.request.urlopen(request, timeout=5):
                    break
            except OSError:
                time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_formgrader_runs_no_student_script(browser, hostile_grading, formgrader):
    url = f"{formgrader}/formgrader/submissions/{hostile_grading['submission']}/?token={TOKEN}"
    seen = _visit(browser, url, settle_ms=3000)
    try:
        page = seen["page"]
        page.screenshot(path=str(ARTIFACTS / "hostile_formgrader.png"))
        assert "mallory" in page.content() and page.locator(".cell").count() > 10
        assert seen["pwned"] == [] and seen["beacon"] == [], seen
    finally:
        seen["context"].close()

    # the notebook as executed, unsanitised, in the same place: the Formgrader runs its
    # scripts with the instructor logged in (what issue 24 found): the probe works
    autograded = hostile_grading["autograded"]
    kept = autograded.read_bytes()
    mode = autograded.stat().st_mode
    try:
        os.chmod(autograded, mode | 0o200)
        shutil.copyfile(hostile_grading["executed"], autograded)
        seen = _visit(browser, url, settle_ms=3000)
        seen["context"].close()
    finally:
        autograded.write_bytes(kept)
        os.chmod(autograded, mode)
    assert RUN_WITHOUT_SANITISING | {"out-js"} <= set(seen["pwned"]), seen
