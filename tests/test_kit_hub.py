"""The class server end to end on loopback: JupyterHub, four Unix users, nbgrader's exchange.

An instructor and students, each with a server spawned as their own Unix user in their own
home, running what ``course_kit.hub.install_runtime`` installed outside the kit's checkout (which
is closed to other users, as ``make hub`` demands). Through the hub's and the servers' REST and
websocket APIs: the instructor releases ``gram``; the students list, fetch and submit (one with
the solution's answers, submitted twice, of which the later is graded; one untouched and after
the deadline); a student's server dies and comes back with the work kept; the instructor collects
in the Formgrader, grades with the recommended sandboxed ``course-kit grade`` typed into a Lab
terminal, and releases feedback in the Formgrader; each student fetches feedback with their own
score. Code run in a student's and the instructor's kernels then tries to read the solutions,
grading data and other students' work: what each role can read is asserted and written to
``test-artifacts/hub/access.md`` (the table in deploy/README.md), with the round trip's time.

Needs root (servers run as other users), useradd and npm (configurable-http-proxy); skipped,
saying why, where one is missing. Everything it starts and every user it adds are removed, and
the checkout's mode is put back.
"""

from __future__ import annotations

import asyncio
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
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

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


def _close_for_others(path: Path) -> list[tuple[Path, int]]:
    """What ``make hub`` asks of the admin: the kit's checkout (it holds the solutions) closed to
    other users. Returns what to put back."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if hub.checkout_problem(path) is None:
        return []
    path.chmod(mode & ~0o007)
    return [(path, mode)]


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
    opened = _close_for_others(ROOT)
    made, proc = [], None
    try:
        assert hub.checkout_problem(ROOT) is None
        began = time.monotonic()
        installed = hub.install_runtime(base / "opt")
        print(f"install_runtime: {time.monotonic() - began:.0f} s")
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
            **installed,
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


def _websocket(server: Hub, user: str, path: str):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = "ws" + server.base[len("http") :] + path
    headers = {"Authorization": f"token {server.user_tokens[user]}"}
    return websocket_connect(HTTPRequest(url, headers=headers))


def _in_kernel(server: Hub, user: str, code: str, timeout: float = 180) -> str:
    """Run ``code`` in a new kernel of ``user``'s server (as a student would); its stdout."""
    status, kernel = server.call("POST", f"/user/{user}/api/kernels", user=user, data={})
    assert status == 201, kernel

    async def run() -> str:
        conn = await _websocket(server, user, f"/user/{user}/api/kernels/{kernel['id']}/channels")
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": user}
        header |= {"session": uuid.uuid4().hex, "version": "5.3", "date": ""}
        content = {"code": code, "silent": False, "store_history": False}
        content |= {"user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        conn.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
        out: list[str] = []
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            assert raw is not None, f"{user}'s kernel closed the connection: {out}"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                conn.close()
                return "".join(out)

    try:
        return asyncio.run(run())
    finally:
        server.call("DELETE", f"/user/{user}/api/kernels/{kernel['id']}", user=user)


def _in_terminal(server: Hub, user: str, command: str, timeout: float = 900) -> tuple[int, str]:
    """Type ``command`` into a new Lab terminal of ``user``'s server; its exit status and output."""
    status, term = server.call("POST", f"/user/{user}/api/terminals", user=user, data={})
    assert status == 200, term

    async def run() -> tuple[int, str]:
        conn = await _websocket(server, user, f"/user/{user}/terminals/websocket/{term['name']}")
        conn.write_message(json.dumps(["stdin", command + "; echo COURSE-KIT-EXIT=$?\r"]))
        out, deadline = "", time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            assert raw is not None, f"{user}'s terminal closed: {out[-3000:]}"
            kind, *rest = json.loads(raw)
            out += rest[0] if kind == "stdout" and rest else ""
            done = re.search(r"COURSE-KIT-EXIT=(\d+)", out)
            if done:
                conn.close()
                return int(done[1]), out
        raise AssertionError(f"{command!r} did not finish in {timeout} s: {out[-3000:]}")

    try:
        return asyncio.run(run())
    finally:
        server.call("DELETE", f"/user/{user}/api/terminals/{term['name']}", user=user)


# Run in a user's kernel: which of these paths can that user open (a folder: list)?
PROBE = """
import json, os, course_lib
seen = {}
for label, path in json.loads(%r).items():
    try:
        if os.path.isdir(os.path.expanduser(path)):
            os.listdir(os.path.expanduser(path))
        else:
            open(os.path.expanduser(path), "rb").close()
        seen[label] = True
    except OSError:
        seen[label] = False
print("PROBE" + json.dumps({"readable": seen, "course_lib": course_lib.__file__}))
"""


def _probe(server: Hub, user: str, targets: dict[str, str]) -> tuple[dict[str, bool], str]:
    out = _in_kernel(server, user, PROBE % json.dumps(targets))
    found = json.loads(out[out.index("PROBE") + len("PROBE") :])
    return found["readable"], found["course_lib"]


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

    # The Formgrader works in its own tab (JupyterHub >= 4.1 forbids framing it in Lab).
    request = urllib.request.Request(
        f"{server.base}/user/{prof}/formgrader",
        headers={"Authorization": f"token {server.user_tokens[prof]}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200 and "formgrader" in response.read().decode().lower()
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]

    # The instructor releases; both students see it, fetch it, and work.
    started = time.monotonic()
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

    # The recommended path: collect in the Formgrader, grade in the sandbox with course-kit in a
    # Lab terminal (the documented command: PATH and the course root must work there), release
    # feedback in the Formgrader (it needs timestamp.txt and submission_secret.txt).
    _formgrader(server, prof, "assignment/gram/collect")
    graded_at = time.monotonic()
    code, out = _in_terminal(server, prof, "cd ~/course && course-kit grade gram grading/submitted")
    grading_s = time.monotonic() - graded_at
    assert code == 0, out[-3000:]
    assert "grades: " in out and "WITHOUT bubblewrap" not in out, out[-3000:]  # sandboxed
    assert "not graded" not in out, out[-3000:]
    _formgrader(server, prof, "assignment/gram/release_feedback")
    status, rows = server.call("GET", f"/user/{prof}/formgrader/api/submissions/gram", user=prof)
    scores = {r["student"]: (r["score"], r["max_score"]) for r in rows}
    full = scores[ann][1]
    assert full > 0 and scores == {ann: (full, full), bob: (0.0, full)}, scores
    collected = (course / "grading" / "submitted" / ann / "gram" / "timestamp.txt").read_text()
    assert collected.strip() == ann_stamp, "the later of Ann's two submissions is the one graded"

    # Each student fetches feedback and reads it in their server: their own score.
    for student, score in ((ann, full), (bob, 0.0)):
        _action(server, student, "fetch_feedback")
        pages = list((base / "home" / student / "gram" / "feedback").rglob("gram.html"))
        assert pages, f"{student} has no feedback"
        page = max(pages, key=lambda p: p.stat().st_mtime).relative_to(base / "home" / student)
        url = f"/user/{student}/api/contents/{urllib.parse.quote(str(page))}"
        status, model = server.call("GET", url, user=student)
        assert status == 200, model
        text = model["content"]
        assert f"{score:g} / {full:g}" in text or f"{score} / {full}" in text, student
    round_trip_s = time.monotonic() - started

    # What each role's server can read: code in their kernels tries (as students would).
    judged = sorted((course / "grading" / "judge").glob("*expected*"))
    assert judged, "the grade left no expected report to probe"
    targets = {
        "the kit's checkout: solutions/gram/gram.ipynb": ROOT / "solutions/gram/gram.ipynb",
        "the course: solutions (hidden tests)": course / "solutions/gram/gram.ipynb",
        "the gradebook (grading/gradebook.db)": course / "grading/gradebook.db",
        "expected reports (grading/judge/*)": judged[0],
        "grades CSV (grading/grades_gram.csv)": course / "grading/grades_gram.csv",
        "collected submissions (grading/submitted)": course / "grading/submitted" / bob,
        "another student's home (bob's notebook)": base / "home" / bob / "gram/gram.ipynb",
        "the exchange's inbound (every submission)": base / "exchange" / COURSE / "inbound",
        "the released assignment (exchange outbound)": base
        / "exchange"
        / COURSE
        / "outbound/gram/gram.ipynb",
    }
    for label, path in targets.items():
        assert path.exists(), f"nothing to probe for {label}: {path}"
    targets_text = {label: str(path) for label, path in targets.items()}
    targets_text["their own home"] = "~"
    seen = {}
    for user in (ann, prof):
        seen[user], course_lib_file = _probe(server, user, targets_text)
        assert ROOT.resolve() not in Path(course_lib_file).resolve().parents, course_lib_file
        assert not (Path(course_lib_file).parents[1] / "solutions").exists(), course_lib_file
    readable_by_ann = {label for label, ok in seen[ann].items() if ok}
    assert readable_by_ann == {
        "the released assignment (exchange outbound)",
        "their own home",
    }, f"{ann} (a student) can read: {sorted(readable_by_ann)}"
    readable_by_prof = {label for label, ok in seen[prof].items() if ok}
    assert readable_by_prof >= {
        "the course: solutions (hidden tests)",
        "the gradebook (grading/gradebook.db)",
        "expected reports (grading/judge/*)",
        "the exchange's inbound (every submission)",
    } and not readable_by_prof & {
        "the kit's checkout: solutions/gram/gram.ipynb",
        "another student's home (bob's notebook)",
    }, f"{prof} (the instructor) can read: {sorted(readable_by_prof)}"
    _write_access_table(seen, ann, prof, round_trip_s, grading_s)


def _write_access_table(seen, student, instructor, round_trip_s, grading_s) -> None:
    out = ROOT / "test-artifacts" / "hub"
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| what (probed from the user's kernel) | student | instructor |", "|---|---|---|"]
    for label in seen[student]:
        cells = ["reads" if seen[u][label] else "no" for u in (student, instructor)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        f"round trip (release -> fetch -> submit -> collect -> grade -> feedback fetched): "
        f"{round_trip_s:.0f} s, of which course-kit grade {grading_s:.0f} s",
    ]
    (out / "access.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


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
