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
    secret = tmp_path / "gradebook.db"  # beside the private folder, as the grader's files are
    secret.write_text("other students' grades")
    hidden = [secret, ROOT / "solutions", ROOT / "nbgrader_config.py", ROOT / "course_kit"]
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "data.txt").write_text("released data")
    code = f"""
import os
for path in {[str(p) for p in hidden]!r}:
    print(path, "visible" if os.path.exists(path) else "hidden")
for path in [{str(secret)!r}, "data.txt", "/evil.txt"]:
    try:
        open(path, "w").write("0")
        print("wrote", path)
    except OSError as err:
        print("write failed", path, type(err).__name__)
print("data:", open("data.txt").read())
open("mine.txt", "w").write("ok")
open(os.environ["TMPDIR"] + "/mine.txt", "w").write("ok")
import course_lib, numpy
print("imports ok", os.getcwd())
"""
    rc, out, used, _ = run(tmp_path, code)
    assert rc == 0 and used == "bwrap", out
    assert out.count("hidden") == 4 and "visible" not in out
    assert "wrote" not in out and out.count("write failed") == 3, out
    assert secret.read_text() == "other students' grades"
    assert (tmp_path / "course" / "data.txt").read_text() == "released data"
    assert "data: released data" in out
    assert f"imports ok {sandbox.INSIDE_ROOT}" in out
    # what it wrote stayed in its own tmpfs: nothing of it on the grader's disk
    assert not (tmp_path / "course" / "mine.txt").exists()
    assert not list((tmp_path / "scratch").iterdir())


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
    assert "hidden tests" in text and "capped only per file" in text
    with pytest.raises(RuntimeError, match="cannot sandbox with bubblewrap"):
        sandbox.run_sandboxed(["python", "-c", "1"], ROOT, wall_s=5, mode="bwrap")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        sandbox.run_sandboxed(["python", "-c", "1"], ROOT, wall_s=5, mode="docker")


# --------------------------------------------------------------------------- limits of a whole run

CAP = pytest.mark.skipif(
    sandbox.memory_cap_problem() is not None,
    reason=f"no cgroup for a total memory cap: {sandbox.memory_cap_problem()}",
)

CHILDREN = """
import os, time
pids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        block = bytearray(b"x") * (300 * 2**20)  # written, so really held
        time.sleep(2)
        os._exit(0)
    pids.append(pid)
held = 0
for pid in pids:
    _, status = os.waitpid(pid, 0)
    held += os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
print("HELD", held)
"""


@CAP
@pytest.mark.parametrize("mode", ["auto", "none"])
def test_a_submissions_processes_share_one_memory_cap(tmp_path, mode):
    # each child is within the per-process limit (1 GB); five of them together are not within
    # the cap (700 MB): at most two can hold their 300 MB at once, the others are killed
    rc, out, _, why = run(tmp_path, CHILDREN, mode=mode, memory_mb=1024, total_memory_mb=700)
    assert rc == 0 and "HELD" in out, out
    assert int(out.split("HELD")[1].split()[0]) <= 2, out
    assert why is not None and "memory cap of 700 MB" in why
    # the cgroup is gone afterwards: nothing of the run is left behind (only this process's own:
    # a grade running beside it, in the other test worker, has a live cgroup of its own)
    kind, base, _ = sandbox._cgroup_base()
    if base is not None:
        assert not list(base.glob(f"course-kit-{os.getpid()}-*"))


@needs_bwrap
def test_all_it_writes_shares_one_capped_tmpfs(tmp_path):
    code = """
import os
total = 0
for i in range(10):  # 10 x 20 MB, in its working folder and in /tmp
    folder = "." if i % 2 else os.environ["TMPDIR"]
    try:
        with open(f"{folder}/fill{i}.bin", "wb") as fh:
            for _ in range(20):
                fh.write(b"x" * 2**20)
    except OSError as err:
        print("full", err.errno)
    total += os.path.getsize(f"{folder}/fill{i}.bin")
print("WROTE MB", total / 2**20)
"""
    rc, out, _, _ = run(tmp_path, code, disk_mb=50)
    assert rc == 0 and "WROTE MB" in out, out
    assert float(out.split("WROTE MB")[1].split()[0]) <= 50
    assert "full 28" in out  # ENOSPC: the tmpfs is full, not a file too large


def test_the_whole_runs_time_limit_does_not_grow_with_the_cells():
    limits = sandbox.Limits()
    assert sandbox.wall_limit(30, 100_000, limits) == limits.wall_s <= 3600
    assert sandbox.wall_limit(30, 3, limits) == 30 * 5 + 90  # a short notebook: less
    with pytest.raises(ValueError, match="`Limits.wall_s` must be a whole number >= 1"):
        sandbox.Limits(wall_s=None)


# ----------------------------------------------------------------------------- the kernel alone

KERNEL_CELLS = [
    """
import os
print("cwd", os.getcwd(), sorted(os.listdir(".")))
print("data", open("data.txt").read())
print("others", [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())])
print("sandbox", os.environ.get("COURSE_KIT_SANDBOX"), "nbgrader", os.environ.get("NBGRADER_X"))
""",
    "import time\ntime.sleep(60)",
    "print('still alive')",
]


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_the_kernel_runs_alone_in_the_sandbox_and_is_interrupted_there(tmp_path, mode):
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook
    from traitlets.config import Config

    if mode == "bwrap" and not BWRAP:
        pytest.skip(f"no bubblewrap: {sandbox.sandbox_problem()}")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("released data")
    settings, cap = sandbox.kernel_sandbox(work, tmp_path, sandbox.Limits(), mode=mode)
    nb = new_notebook(cells=[new_code_cell(c) for c in KERNEL_CELLS])
    client = NotebookClient(
        nb,
        config=Config({"SandboxedKernelManager": settings}),
        kernel_manager_class=sandbox.SandboxedKernelManager,
        kernel_name="python3",
        timeout=5,
        interrupt_on_timeout=True,
        allow_errors=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "", "traceback": []},
        resources={"metadata": {"path": str(tmp_path)}},
    )
    os.environ["NBGRADER_X"] = "passed on"
    try:
        client.execute()
    finally:
        del os.environ["NBGRADER_X"]
        if cap is not None:
            cap.close()
    first = nb.cells[0].outputs[0]["text"]
    inside = sandbox.INSIDE_ROOT if mode == "bwrap" else str(work.resolve())
    assert f"cwd {inside} ['data.txt']" in first and "data released data" in first
    assert f"sandbox {mode} nbgrader passed on" in first
    if mode == "bwrap":  # its own PID namespace: only itself and the sandbox's init
        assert "others []" in first
    assert [o.get("ename") for o in nb.cells[1].outputs] == ["KeyboardInterrupt"]
    assert nb.cells[2].outputs[0]["text"] == "still alive\n"


@CAP
def test_a_cgroup_left_by_a_killed_grader_is_removed_and_one_in_use_is_not(tmp_path):
    kind, base, _ = sandbox._cgroup_base()
    if base is None:
        pytest.skip("a systemd scope: systemd removes it")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = base / f"course-kit-{dead.pid}-0000dead"
    stale.mkdir()
    live = sandbox.MemoryCap.make(64)
    try:
        sandbox.MemoryCap.make(64).close()
        assert not stale.exists() and live.path.is_dir()
    finally:
        live.close()
        if stale.exists():
            stale.rmdir()
    assert not live.path.exists()
