"""The class server end to end on loopback: JupyterHub, three Unix users, nbgrader's exchange.

An instructor and two students, each with a server spawned as their own Unix user in their own
home. Through the hub's and the servers' REST APIs: the instructor releases ``gram``; the students
list, fetch and submit (one with the solution's answers, submitted twice, of which the later is
graded; one untouched and after the deadline, which nbgrader records as late); a student's server
dies and comes back with the work kept; the instructor collects, autogrades,
generates and releases feedback; each student fetches feedback with their own score. Students'
servers have no formgrader, and file permissions (not trust) keep them out of the instructor's
course, the gradebook and each other's homes.

Needs root (servers run as other users), useradd and npm (configurable-http-proxy); skipped,
saying why, where one is missing. Everything it starts and every user it adds are removed.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from course_kit import hub
from course_kit.nbrun import ROOT

# One hub for the module: both tests run on the same xdist worker (make test: --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.hub, pytest.mark.xdist_group("hub")]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "course-kit-test"
COURSE = hub.settings()["course_id"]


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: JupyterHub starts each user's server as that Unix user"
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            return f"needs {tool} to add the course's Unix users"
    if shutil.which("npm") is None:
        return "needs npm for configurable-http-proxy (Debian: apt-get install npm)"
    try:
        hub.free_port()
    except OSError as err:
        return f"no free loopback port: {err}"
    return None


def _open_path_for_others(path: Path) -> list[tuple[Path, int]]:
    """Let other users traverse to ``path`` (o+x on each folder above it that lacks it, and on
    ``path`` itself when it is a folder: a checkout made by ``mktemp -d`` is 0700)."""
    changed, target = [], path.resolve()
    for folder in [*reversed(target.parents), *([target] if target.is_dir() else [])]:
        mode = stat.S_IMODE(folder.stat().st_mode)
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            changed.append((folder, mode))
    return changed


class Hub:
    """A running hub: REST calls as the service, or as a user with that user's token."""

    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.user_tokens: dict[str, str] = {}

    def call(self, method: str, path: str, *, user: str | None = None, data=None, raw=False):
        token = self.user_tokens[user] if user else self.token
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=body,
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")
        if raw:
            return status, payload.decode(errors="replace")
        return status, json.loads(payload) if payload else None

    def start(self, user: str, *, timeout: float = 240) -> None:
        status, _ = self.call("POST", f"/hub/api/users/{user}/server")
        assert status in (201, 202, 400), f"could not start {user}'s server: {status}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, info = self.call("GET", f"/hub/api/users/{user}")
            server = (info or {}).get("servers", {}).get("", {})
            if server.get("ready"):
                return
            time.sleep(1)
        raise AssertionError(f"{user}'s server did not become ready in {timeout} s")

    def login(self, user: str) -> None:
        status, token = self.call("POST", f"/hub/api/users/{user}/tokens", data={"note": "test"})
        assert status == 201, token
        self.user_tokens[user] = token["token"]


@pytest.fixture(scope="module")
def class_server():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(2)
    students, instructor = [f"ck{tag}ann", f"ck{tag}bob", f"ck{tag}cat"], f"ck{tag}prof"
    base = Path(tempfile.mkdtemp(prefix="course-kit-hub-"))
    base.chmod(0o755)
    opened = _open_path_for_others(Path(sys.executable)) + _open_path_for_others(ROOT)
    made, proc = [], None
    try:
        for name in [*students, instructor]:
            subprocess.run(
                ["useradd", "-m", "-b", str(base / "home"), "-s", "/bin/sh", name],
                check=True,
                capture_output=True,
            )
            made.append(name)
            Path(base / "home" / name).chmod(0o700)
        course = hub.install_course(base / "home" / instructor, instructor)
        token = secrets.token_hex(16)
        port = hub.free_port()
        env = hub.hub_environment(
            runtime=base / "runtime",
            students=students,
            instructors=[instructor],
            port=port,
            auth="shared",
            password=PASSWORD,
            api_token=token,
            exchange_root=base / "exchange",
        )
        log = open(base / "hub.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(hub.HUB_CONFIG)],
            env={**os.environ, **env},
            cwd=base / "runtime",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Hub(port, token)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the hub exited: {(base / 'hub.log').read_text()[-3000:]}")
            try:
                if server.call("GET", "/hub/api/")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the hub did not answer in 120 s")
        yield server, students, instructor, course, base
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for name in made:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", "-r", name], capture_output=True)
        for folder, mode in reversed(opened):
            folder.chmod(mode)
        shutil.rmtree(base, ignore_errors=True)


def _as(user: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *command], capture_output=True, text=True)


def _assignments(server: Hub, user: str) -> list[dict]:
    status, listing = server.call("GET", f"/user/{user}/assignments?course_id={COURSE}", user=user)
    assert status == 200 and listing["success"], listing
    return listing["value"]


def _action(server: Hub, user: str, action: str) -> dict:
    data = {"assignment_id": "gram", "course_id": COURSE}
    status, out = server.call("POST", f"/user/{user}/assignments/{action}", user=user, data=data)
    assert status == 200 and out.get("success", True), out
    return out


def _formgrader(server: Hub, instructor: str, path: str) -> dict:
    status, out = server.call("POST", f"/user/{instructor}/formgrader/api/{path}", user=instructor)
    assert status == 200 and out.get("success"), out
    return out


def test_the_whole_round_trip_through_the_hub(class_server):
    server, (ann, bob, _), prof, course, base = class_server
    for user in (prof, ann, bob):
        server.start(user)
        server.login(user)

    # Students' servers: no formgrader (server side) and its panels disabled (JupyterLab side).
    assert server.call("GET", f"/user/{ann}/formgrader/api/status", user=ann)[0] == 404
    assert server.call("GET", f"/user/{prof}/formgrader/api/status", user=prof)[0] == 200
    _, page = server.call("GET", f"/user/{ann}/lab", user=ann, raw=True)
    assert "@jupyter/nbgrader:formgrader" in page and "@jupyter/nbgrader:create-assignment" in page
    _, page = server.call("GET", f"/user/{prof}/lab", user=prof, raw=True)
    assert "@jupyter/nbgrader:formgrader" not in page

    # The instructor releases; both students see it, fetch it, and work.
    _formgrader(server, prof, "assignment/gram/assign")
    _formgrader(server, prof, "assignment/gram/release")
    for student in (ann, bob):
        assert [a["status"] for a in _assignments(server, student)] == ["released"]
        _action(server, student, "fetch")
    answers = json.loads((ROOT / "solutions" / "gram" / "gram.ipynb").read_text())
    status, _ = server.call(
        "PUT",
        f"/user/{ann}/api/contents/gram/gram.ipynb",
        user=ann,
        data={"type": "notebook", "format": "json", "content": answers},
    )
    assert status == 200
    _action(server, ann, "submit")
    latest = _action(server, ann, "submit")  # twice: the later one is collected
    ann_stamp = max(
        s["timestamp"]
        for a in latest["value"]
        if a["status"] == "submitted"
        for s in a["submissions"]
    )

    # The deadline passes (nbgrader's own late-submission handling records Bob as late).
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    due = now.strftime("%Y-%m-%dT%H:%M:%S")  # after Ann's submissions (to the second)
    status, _ = server.call(
        "PUT",
        f"/user/{prof}/formgrader/api/assignment/gram",
        user=prof,
        data={"duedate_notimezone": due, "duedate_timezone": "+0000"},
    )
    assert status == 200
    time.sleep(3)

    # Bob's server dies; the hub notices, starts it again, and his fetched work is still there.
    subprocess.run(["pkill", "-KILL", "-u", bob, "-f", "jupyterhub-singleuser"], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, info = server.call("GET", f"/hub/api/users/{bob}")
        if not info["servers"]:
            break
        time.sleep(1)
    server.start(bob)
    status, listing = server.call("GET", f"/user/{bob}/api/contents/gram", user=bob)
    assert status == 200 and "gram/gram.ipynb" in [f["path"] for f in listing["content"]]
    _action(server, bob, "submit")

    # File permissions keep students out of the instructor's course and each other's work.
    for target in (
        course / "solutions" / "gram" / "gram.ipynb",
        course / "grading",
        base / "home" / bob,
        base / "exchange" / COURSE / "inbound",
    ):
        assert _as(ann, "ls", str(target)).returncode != 0, f"{ann} can read {target}"

    # The instructor collects, grades, and releases feedback.
    _formgrader(server, prof, "assignment/gram/collect")
    for student in (ann, bob):
        _formgrader(server, prof, f"submission/gram/{student}/autograde")
    _formgrader(server, prof, "assignment/gram/generate_feedback")
    _formgrader(server, prof, "assignment/gram/release_feedback")
    status, rows = server.call("GET", f"/user/{prof}/formgrader/api/submissions/gram", user=prof)
    scores = {r["student"]: (r["score"], r["max_score"]) for r in rows}
    full = scores[ann][1]
    assert full > 0 and scores == {ann: (full, full), bob: (0.0, full)}, scores
    collected = (course / "grading" / "submitted" / ann / "gram" / "timestamp.txt").read_text()
    assert collected.strip() == ann_stamp, "the later of Ann's two submissions is the one graded"
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("gram", ann).total_seconds_late == 0
        assert gradebook.find_submission("gram", bob).total_seconds_late > 0

    # Each student fetches feedback, and it shows their own score.
    for student, score in ((ann, full), (bob, 0.0)):
        _action(server, student, "fetch_feedback")
        pages = list((base / "home" / student / "gram" / "feedback").rglob("gram.html"))
        assert pages, f"{student} has no feedback"
        text = max(pages, key=lambda p: p.stat().st_mtime).read_text()
        assert f"{score:g} / {full:g}" in text or f"{score} / {full}" in text, student


def test_a_student_fetches_and_submits_in_a_real_browser(class_server):
    """Cat logs in on the hub's page, opens the Assignments panel, fetches and submits."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium with apt-get)")
    from playwright.sync_api import sync_playwright

    server, (*_, cat), prof, course, base = class_server
    server.login(prof)
    if not (base / "exchange" / COURSE / "outbound" / "gram").is_dir():
        server.start(prof)
        _formgrader(server, prof, "assignment/gram/assign")
        _formgrader(server, prof, "assignment/gram/release")
    artifacts = ROOT / "test-artifacts" / "browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(240_000)
        try:
            page.goto(f"{server.base}/hub/login")
            page.fill("#username_input", cat)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(f"**/user/{cat}/lab**", timeout=300_000)
            page.wait_for_selector(".lm-MenuBar-itemLabel", timeout=300_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
            page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()
            page.locator("button", has_text=re.compile("^Fetch$")).first.click()
            page.locator("button", has_text=re.compile("^Submit$")).first.click()
            page.wait_for_selector("text=submitted", timeout=120_000)
        finally:
            page.screenshot(path=str(artifacts / "hub-student-submits.png"))
            browser.close()
    assert (base / "home" / cat / "gram" / "gram.ipynb").is_file()
    inbound = base / "exchange" / COURSE / "inbound"
    assert any(path.name.startswith(f"{cat}+gram+") for path in inbound.iterdir())
