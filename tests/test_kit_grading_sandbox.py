"""The sandbox one submission is graded in (course_kit.sandbox), tried with small hostile Python
programs instead of whole notebooks: what it can see, reach, allocate, start and kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from course_kit import sandbox
from course_kit.nbrun import ROOT

BWRAP = sandbox.sandbox_problem() is None
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"no bubblewrap: {sandbox.sandbox_problem()}")


def run(tmp_path, code, *, mode="auto", wall_s=120, **limits):
    private = tmp_path / "course"
    private.mkdir(exist_ok=True)
    rc, out, used, why = sandbox.run_sandboxed(
        ["python", "-c", code],
        private,
        wall_s=wall_s,
        limits=sandbox.Limits(**limits),
        mode=mode,
    )
    return rc, out, used, why


@needs_bwrap
def test_it_sees_only_its_own_folder(tmp_path):
    secret = tmp_path / "gradebook.db"
    secret.write_text("other students' grades")
    code = f"""
import os
for path in [{str(secret)!r}, {str(ROOT / "solutions")!r}, {str(ROOT / "nbgrader_config.py")!r}]:
    print(path, "visible" if os.path.exists(path) else "hidden")
try:
    open({str(secret)!r}, "w").write("0")
    print("wrote the gradebook")
except OSError as err:
    print("write failed", type(err).__name__)
open("/course/mine.txt", "w").write("ok")
import course_lib, numpy
print("imports ok", os.getcwd())
"""
    rc, out, used, _ = run(tmp_path, code)
    assert rc == 0 and used == "bwrap", out
    assert out.count("hidden") == 3 and "visible" not in out
    assert "wrote the gradebook" not in out and secret.read_text() == "other students' grades"
    assert "imports ok /course" in out
    assert (tmp_path / "course" / "mine.txt").read_text() == "ok"


@needs_bwrap
def test_no_network_even_to_the_graders_loopback(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port = server.getsockname()[1]
    got = []

    def accept():
        try:
            conn, _ = server.accept()
            got.append(conn.recv(10))
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"STOLEN")
    print("connected")
except OSError as err:
    print("no network:", type(err).__name__)
"""
    _, out, _, _ = run(tmp_path, code)
    thread.join(6)
    server.close()
    assert "no network" in out and got == []


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_memory_file_size_and_wall_time_are_limited(tmp_path, mode):
    code = """
import numpy as np
try:
    big = np.ones(3 * 2**30, dtype=np.uint8)
    print("ALLOCATED")
except MemoryError:
    print("3 GiB: MemoryError")
try:
    with open("big.bin", "wb") as fh:
        fh.write(b"x" * (80 * 2**20))
    print("WROTE 80 MB")
except OSError as err:
    print("file too large:", err.errno)
"""
    rc, out, used, _ = run(tmp_path, code, mode=mode, memory_mb=1024, fsize_mb=16)
    assert used == ("bwrap" if BWRAP and mode == "auto" else "none")
    assert "3 GiB: MemoryError" in out and "ALLOCATED" not in out, out
    assert "file too large" in out and "WROTE" not in out
    _, _, _, why = run(tmp_path, "import time; time.sleep(60)", mode=mode, wall_s=3)
    assert why is not None and "3 s" in why


@needs_bwrap
def test_a_fork_bomb_is_bounded_and_kill_reaches_only_the_sandbox(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])  # one of the grader's own processes
    try:
        code = """
import os, signal, time
children = []
try:
    for _ in range(3000):
        pid = os.fork()
        if pid == 0:
            time.sleep(3)
            os._exit(0)
        children.append(pid)
    print("FORKED ALL")
except OSError:
    print("FORK STOPPED AFTER", len(children))
for pid in children:
    os.waitpid(pid, 0)
print("parent is pid", os.getppid())
os.kill(-1, signal.SIGKILL)
"""
        started = time.monotonic()
        rc, out, _, _ = run(tmp_path, code, nproc=64)
        assert "FORK STOPPED AFTER" in out and "FORKED ALL" not in out, out
        assert int(out.split("FORK STOPPED AFTER")[1].split()[0]) <= 64
        assert "parent is pid" in out and "parent is pid " + str(os.getpid()) not in out
        assert time.monotonic() - started < 100
        assert bystander.poll() is None  # still running
        os.kill(bystander.pid, 0)
    finally:
        bystander.send_signal(signal.SIGTERM)
        bystander.wait()


def test_without_bubblewrap_it_says_why_and_how(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_BWRAP_PROBLEM", {})
    why = sandbox.sandbox_problem()
    assert "bubblewrap" in why and "apt-get install bubblewrap" in why
    text = sandbox.FALLBACK_WARNING.format(why=why)
    assert "WITHOUT bubblewrap" in text and "could read and write any file you can" in text
    with pytest.raises(RuntimeError, match="cannot sandbox with bubblewrap"):
        sandbox.run_sandboxed(["python", "-c", "1"], ROOT, wall_s=5, mode="bwrap")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        sandbox.run_sandboxed(["python", "-c", "1"], ROOT, wall_s=5, mode="docker")
