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
