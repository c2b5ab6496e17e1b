"""Run ONE submission's notebook with only its Jupyter kernel inside a sandbox.

nbgrader's ``autograde`` has two halves. The grader's half restores the test cells (hidden ones
included) from a gradebook, sends the cells to the kernel one by one, times them out, caps their
outputs and saves the scores. The kernel's half runs whatever code it is sent. Only the kernel is
untrusted, so only the kernel runs in the sandbox: :func:`run_autograde` runs ``nbgrader
autograde`` as a process of the grader's own (outside the sandbox, under resource limits) over a
private copy of the course made for this submission alone (the submission, a gradebook that knows
only the assignment, the assignment's other files); its ``Execute`` step
(:class:`SandboxedExecute`) starts the kernel with :class:`SandboxedKernelManager`, inside
bubblewrap, and talks to it over Unix-domain sockets that the kernel makes on its own tmpfs and
nbgrader reaches through ``/proc/<kernel pid>/root`` (the sandbox has its own network namespace,
so TCP on the loopback would not reach it). The grader
(``course_kit.instructor``) then reads the executed notebook back as *data* and writes the scores
into the real gradebook itself.

**What the sandbox guarantees, with bubblewrap** (``bwrap``, Debian package ``bubblewrap``;
``make setup`` installs it when it can):

* the kernel's file system holds only read-only system folders (``/usr``, ``/etc``), the Python
  installation and virtual environment, ``course_lib`` (not ``course_kit``), torchvision's weight
  cache, the assignment's released non-notebook files and its connection file (read-only), and
  one size-capped tmpfs (:attr:`Limits.disk_mb`) for everything it may write: ``/tmp`` with its
  working folder ``/tmp/course`` and its sockets; the rest is read-only. No gradebook, no notebook
  holding hidden tests, no ``solutions/``, no other submission, no grader folder is in it, at
  any time: a test cell reaches the kernel only as the code it is asked to execute, when its
  turn comes;
* its own PID namespace (it sees only its own processes: not nbgrader, which holds the tests and
  the gradebook, nor the grader or other submissions; ``os.kill(os.getppid(), 9)`` ends only its
  own run), network namespace (no network), IPC namespace, session and host name; as root, a
  separate user id (``nobody``) with no capabilities;
* the kernel and everything it starts share one memory cap (:attr:`Limits.total_memory_mb`, a
  cgroup) where the machine offers one (see below); the tmpfs's pages count towards it too.

**Always** (with or without bubblewrap): resource limits per process set with
``resource.setrlimit`` on nbgrader's process and on the kernel: memory (``RLIMIT_DATA``: heap
and anonymous memory, the limit torch respects; ``RLIMIT_AS`` too, higher, because importing
torch alone maps ~4 GB of address space), CPU seconds (``RLIMIT_CPU``), processes and threads
(``RLIMIT_NPROC``), the size of any file written (``RLIMIT_FSIZE``), no core dumps; a wall-clock
limit for the whole run that does not grow past :attr:`Limits.wall_s` whatever the number of
cells; a per-cell timeout (nbgrader's, outside the kernel's reach) and a cap on every output
(:class:`course_kit.nbgrader_hooks.CapOutputs`).

**The total memory cap** needs a cgroup this process may create: a cgroup v2 folder delegated to
it with the ``memory`` controller, ``systemd-run --scope`` (``--user`` when not root) on a
systemd machine with cgroup v2, or a writable cgroup v1 ``memory`` hierarchy (as root in many
containers and VMs), tried in that order. Where none is available (:func:`memory_cap_problem`
says why), each process is still limited, but five processes may each use ``memory_mb``.

**What it does not guarantee.** Without bubblewrap (``mode="none"``, or ``"auto"`` where it
cannot run) the kernel runs as *your* user with no namespaces: it could read (and write) any
file your user can (``solutions/``, the gradebook and this submission's private copy with the
hidden tests, other submissions), read the memory of the grader's processes through ``/proc``,
open network connections and signal your processes; its writable folder is a folder on your disk
(only each file's size is capped). :func:`sandbox_problem` says why bubblewrap cannot be used.
Even with it: the hidden tests of a cell are code the kernel executes, so student code running
*during or after* that cell can see that cell's source (as nbgrader has always allowed); the
Python installation and the operating system's files are readable; the CPU is shared (no CPU
share is reserved per submission); and nbgrader's process, outside the sandbox, parses the
kernel's messages (limited like the kernel, but not isolated from the grader's files).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import Dict

TMP_INSIDE = "/tmp"
INSIDE_ROOT = "/tmp/course"  # the kernel's working folder inside the sandbox
NOBODY = 65534
MODES = ("auto", "bwrap", "none")
MB = 2**20


@dataclass
class Limits:
    """Resource limits for one submission's run.

    Per process: ``memory_mb``, ``cpu_s``, ``fsize_mb``. For the whole run: ``nproc`` (processes
    and threads of the sandbox's user), ``wall_s`` (however many cells the notebook has),
    ``total_memory_mb`` (all its processes together, where a cgroup can be made: see
    :func:`memory_cap_problem`) and ``disk_mb`` (everything it writes, with bubblewrap).
    """

    memory_mb: int = 3072  # RLIMIT_DATA: heap + anonymous mappings of each process
    cpu_s: int = 900  # RLIMIT_CPU: CPU seconds of each process
    nproc: int = 256  # RLIMIT_NPROC: processes + threads of the sandbox's user
    fsize_mb: int = 64  # RLIMIT_FSIZE: largest file a process may write
    wall_s: int = 1200  # the whole run, whatever the number of cells
    total_memory_mb: int = 4096  # the kernel and all it starts, together (a cgroup)
    disk_mb: int = 512  # the sandbox's writable folders together (a size-capped tmpfs)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`Limits.{name}` must be a whole number >= 1; got {value!r}")


@dataclass
class SandboxResult:
    """What came back from one run."""

    notebook: Path | None  # the executed (autograded) notebook, or None
    returncode: int | None
    log: str  # the tail of nbgrader's log
    mode: str  # "bwrap" or "none"
    problem: str | None = None  # why nothing (or not everything) came back


# ----------------------------------------------------------------------------- bubblewrap

_BWRAP_PROBLEM: dict[str, str | None] = {}


def sandbox_problem() -> str | None:
    """None when bubblewrap can isolate a run here; otherwise why not (a sentence)."""
    if "v" in _BWRAP_PROBLEM:
        return _BWRAP_PROBLEM["v"]
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        why = (
            "bubblewrap (bwrap) is not installed: install the Debian/Ubuntu package "
            "`bubblewrap` (`sudo apt-get install bubblewrap`, done by `make setup` when it can)"
        )
    else:
        cmd = [bwrap, *_system_binds(), "--unshare-all", "--die-with-parent"]
        if os.geteuid() != 0:
            cmd.append("--unshare-user")
        cmd += ["--", "/bin/true" if Path("/bin/true").exists() else "/usr/bin/true"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            why = None
            if proc.returncode != 0:
                why = (
                    "bubblewrap cannot create namespaces here ("
                    + (proc.stderr.strip().splitlines() or ["no message"])[-1]
                    + "); unprivileged user namespaces may be disabled "
                    "(sysctl kernel.unprivileged_userns_clone=1) or a container forbids them"
                )
        except (OSError, subprocess.SubprocessError) as err:
            why = f"bubblewrap could not be started ({err})"
    _BWRAP_PROBLEM["v"] = why
    return why


def _bwrap_sizes_tmpfs() -> bool:
    """Whether this bubblewrap can cap a tmpfs's size (``--size``, bubblewrap >= 0.7)."""
    if "size" not in _BWRAP_PROBLEM:
        try:
            text = subprocess.run(
                [shutil.which("bwrap") or "bwrap", "--help"], capture_output=True, text=True
            ).stdout
        except OSError:
            text = ""
        _BWRAP_PROBLEM["size"] = None if "--size" in text else "no --size"
    return _BWRAP_PROBLEM["size"] is None


FALLBACK_WARNING = (
    "grading WITHOUT bubblewrap: {why}. Each submission's kernel still runs in a private folder "
    "with limits on memory, CPU time, processes and file size, but as your own user and "
    "without namespaces: student code could read and write any file you can (solutions/, the "
    "gradebook, the hidden tests of its own private copy, other submissions), use the network "
    "and signal your processes, and its disk use is capped only per file. Grade untrusted "
    "submissions only where bubblewrap works."
)


def limits_warnings(limits: Limits | None = None) -> list[str]:
    """Sentences saying which of :class:`Limits` cannot be enforced on this machine."""
    limits = limits or Limits()
    out = []
    why = memory_cap_problem()
    if why is not None:
        out.append(
            f"no total memory cap per submission ({why}): each process is still limited to "
            f"{limits.memory_mb} MB, but a submission's processes together are not held to "
            f"{limits.total_memory_mb} MB"
        )
    if sandbox_problem() is None and not _bwrap_sizes_tmpfs():
        out.append(
            "this bubblewrap cannot cap the size of the sandbox's tmpfs (--size needs "
            "bubblewrap 0.7 or newer): its writes are limited per file and by the memory cap only"
        )
    return out


def _system_binds() -> list[str]:
    """Read-only views of the system folders a Python process needs."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        p = Path(top)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            args += ["--ro-bind", top, top]
    return args + ["--dev", "/dev", "--proc", "/proc"]


def _python_paths() -> list[Path]:
    """Folders the kernel must see read-only: Python, the venv, ``course_lib``, torch's cache.

    Not ``course_kit`` (the grader's code: the kernel has no use for it) and not the repository.
    """
    import course_lib

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    paths.add(Path(sys.executable).resolve().parent.parent)
    paths.add(Path(course_lib.__file__).resolve().parent)
    torch_home = _torch_home()
    if torch_home is not None:
        paths.add(torch_home)
    skip = {Path("/usr"), Path("/etc"), Path("/")}
    out = sorted(p for p in paths if p not in skip and not str(p).startswith("/usr/"))
    # drop paths inside other paths (a venv inside the repository, say)
    return [p for p in out if not any(q != p and q in p.parents for q in out)]


def _torch_home() -> Path | None:
    """torchvision's cache (for ImageNet weights when present), as the expected run sees it."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    path = Path(home)
    return path.resolve() if path.is_dir() else None


def _python() -> Path:
    """This interpreter, through the virtual environment's real folder (a symlinked venv
    folder is not visible in the sandbox; the resolved one is)."""
    venv_python = Path(sys.prefix).resolve() / "bin" / Path(sys.executable).name
    return venv_python if venv_python.exists() else Path(sys.executable)


def _pythonpath() -> str:
    import course_lib

    return str(Path(course_lib.__file__).resolve().parent.parent)


def _bind(args: list[str], made: set[str], binds: list[Path], src: Path, kind: str) -> None:
    """``--ro-bind``/``--bind`` ``src`` at the same path, its missing parents made 0755 first."""
    for parent in reversed(src.parents):
        text = str(parent)
        if text in ("/", "/usr", "/etc", TMP_INSIDE) or text.startswith("/usr/") or text in made:
            continue
        if any(parent == b or b in parent.parents for b in binds):
            continue
        args += ["--perms", "0755", "--dir", text]
        made.add(text)
    args += [kind, str(src), str(src)]


def _bwrap_args(workdir: Path, limits: Limits, as_nobody: bool) -> tuple[list[str], list[str]]:
    """bubblewrap and its options (the views listed in the module's docstring, namespaces, the
    working folder :data:`INSIDE_ROOT`, in which each entry of ``workdir`` is bound read-only),
    and what comes after its ``--``: ``setpriv`` to become ``nobody`` when run as root."""
    # /tmp first: the folders bound below may live under /tmp (a clone in a temporary folder),
    # and a mount made after them would hide them.
    args = [shutil.which("bwrap") or "bwrap", *_system_binds(), "--perms", "01777"]
    if _bwrap_sizes_tmpfs():
        args += ["--size", str(limits.disk_mb * MB)]
    args += ["--tmpfs", TMP_INSIDE, "--perms", "0777", "--dir", INSIDE_ROOT]
    made: set[str] = set()
    binds = _python_paths()
    for path in binds:
        _bind(args, made, binds, path, "--ro-bind")
    for entry in sorted(Path(workdir).iterdir()):
        args += ["--ro-bind", str(entry.resolve()), f"{INSIDE_ROOT}/{entry.name}"]
    args += ["--remount-ro", "/"]
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try"]
    if not as_nobody:
        args += ["--unshare-user"]
    args += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--chdir", INSIDE_ROOT]
    if not as_nobody:
        return args, []
    return args, [
        shutil.which("setpriv") or "/usr/bin/setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]


# ----------------------------------------------------------------------------- memory cap

_CGROUP: dict[str, tuple] = {}


def _mounts(fstype: str) -> list[tuple[str, str, set[str]]]:
    """(root inside the hierarchy, mount point, super options) of mounts of ``fstype``."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] == fstype:
            out.append((fields[3], fields[4], set(tail[2].split(","))))
    return out


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path in the v2 hierarchy (None) or the v1 one of ``controller``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        num, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        if controller is None and num == "0" and ctrls == "":
            return path
        if controller is not None and controller in ctrls.split(","):
            return path
    return None


def _under(mount: tuple[str, str, set[str]], path: str) -> Path:
    root, point, _ = mount
    rel = path[len(root) :] if root != "/" and path.startswith(root) else path
    return Path(point + "/" + rel.lstrip("/")).resolve()


def _v2_base() -> tuple[Path | None, str]:
    mounts, path = _mounts("cgroup2"), _own_cgroup(None)
    if not mounts or path is None:
        return None, "no cgroup v2 hierarchy"
    base = _under(mounts[0], path)
    try:
        available = (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None, "cgroup v2 is not readable"
    if "memory" not in available:  # never switched on here: that is the administrator's
        return None, "this process's cgroup v2 does not delegate the memory controller"
    return (base, "") if os.access(base, os.W_OK) else (None, "cgroup v2 is read-only here")


def _systemd_base() -> tuple[bool, str]:
    run = shutil.which("systemd-run")
    if run is None or not Path("/run/systemd/system").is_dir():
        return False, "systemd is not running"
    probe = [run, *(["--user"] if os.geteuid() else []), "--scope", "--quiet", "--collect"]
    probe += ["-p", "MemoryMax=268435456", "--", "sh", "-c"]
    probe.append('cat "/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup)/memory.max"')
    try:
        out = subprocess.run(probe, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    ok = out.strip() == "268435456"
    return ok, "" if ok else "systemd-run cannot make a scope with MemoryMax here"


def _v1_base() -> tuple[Path | None, str]:
    mounts = [m for m in _mounts("cgroup") if "memory" in m[2]]
    path = _own_cgroup("memory")
    if not mounts or path is None:
        return None, "no cgroup v1 memory hierarchy"
    base = _under(mounts[0], path)
    if not (base / "memory.limit_in_bytes").is_file() or not os.access(base, os.W_OK):
        return None, "the cgroup v1 memory hierarchy is read-only here"
    return base, ""


def _cgroup_base() -> tuple[str | None, Path | None, str | None]:
    """(kind "v2" / "systemd" / "v1", the folder a run's cgroup is made in, why none)."""
    if "v" not in _CGROUP:
        whys = []
        found: tuple = (None, None)
        base, why = _v2_base()
        whys.append(why)
        if base is not None:
            found = ("v2", base)
        else:
            ok, why = _systemd_base()
            whys.append(why)
            if ok:
                found = ("systemd", None)
            else:
                base, why = _v1_base()
                whys.append(why)
                if base is not None:
                    found = ("v1", base)
        _CGROUP["v"] = (*found, None if found[0] else "; ".join(whys))
    return _CGROUP["v"]


def memory_cap_problem() -> str | None:
    """None when a total memory cap per run (a cgroup) can be set here; otherwise why not."""
    return _cgroup_base()[2]


@dataclass
class MemoryCap:
    """A cgroup holding one run's kernel and everything it starts, with a memory cap.

    Made beside nothing else: a child of this process's own cgroup (v2 or v1), or a transient
    systemd scope. :meth:`close` kills what is left in it and removes it.
    """

    kind: str  # "v2", "v1" or "systemd"
    limit_mb: int
    path: Path | None = None  # the cgroup's folder (v2, v1)
    unit: str = field(default_factory=lambda: f"course-kit-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    @classmethod
    def make(cls, limit_mb: int) -> MemoryCap | None:
        """A new cgroup capped at ``limit_mb`` (swap included), or None where none can be made."""
        kind, base, _ = _cgroup_base()
        if kind is None:
            return None
        cap = cls(kind, limit_mb)
        if kind == "systemd":
            return cap
        _remove_stale(base)
        cap.path = base / cap.unit
        cap.path.mkdir()  # OSError: the caller notes that this run has no cap
        limit = str(limit_mb * MB)
        files = ["memory.max", "memory.swap.max"] if kind == "v2" else []
        files = files or ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        try:
            (cap.path / files[0]).write_text(limit)
        except OSError:
            cap.close()
            raise
        try:
            (cap.path / files[1]).write_text("0" if kind == "v2" else limit)
        except OSError:
            pass  # no swap accounting: there is no swap to escape to either
        return cap

    @property
    def procs(self) -> str | None:
        """The file a process writes its pid into to join (None for a systemd scope)."""
        return str(self.path / "cgroup.procs") if self.path else None

    def prefix(self) -> list[str]:
        """What to run a command through to put it in the cgroup (systemd only)."""
        if self.kind != "systemd":
            return []
        user = ["--user"] if os.geteuid() else []
        return [
            shutil.which("systemd-run") or "systemd-run",
            *user,
            "--scope",
            "--quiet",
            "--collect",
            f"--unit={self.unit}",
            "-p",
            f"MemoryMax={self.limit_mb * MB}",
            "-p",
            "MemorySwapMax=0",
            "--",
        ]

    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for going over the cap."""
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        try:
            text = (self.path / name).read_text() if self.path else ""
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        """Kill every process still in the cgroup, then remove it."""
        if self.kind == "systemd":
            user = ["--user"] if os.geteuid() else []
            subprocess.run(
                ["systemctl", *user, "kill", "--signal=SIGKILL", self.unit],
                capture_output=True,
                check=False,
            )
            return
        for _ in range(100):
            try:
                pids = [int(p) for p in Path(self.procs).read_text().split()]
                if not pids:
                    self.path.rmdir()
                    return
            except FileNotFoundError:
                return
            except OSError:
                pids = []  # rmdir refused: a process is still leaving
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)


def _remove_stale(base: Path) -> None:
    """Remove the empty cgroups left by grading processes that were killed before they could
    (``course-kit-<pid>-...`` whose process is gone); a cgroup still in use is never removed."""
    for old in base.glob("course-kit-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                old.rmdir()  # refused while a process is in it
            except OSError:
                pass


# ----------------------------------------------------------------------------- starting a process


def _user_tasks(uid: int) -> int:
    """Processes + threads now running under ``uid`` (RLIMIT_NPROC counts them all)."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


_PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only
_PR_SET_PDEATHSIG = 1


def _tighten(which: int, wanted: tuple[int, int]) -> None:
    """``setrlimit`` that never asks for more than the hard limit already in force: a user other
    than root cannot raise it, and the kernel runs under nbgrader, which runs under these same
    limits (its ``RLIMIT_NPROC`` was counted when fewer processes existed)."""
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        wanted = (min(wanted[0], hard), min(wanted[1], hard))
    resource.setrlimit(which, wanted)


def _limiter(limits: Limits, nproc: int, procs: str | None = None, *, pdeathsig: bool = False):
    """What the child runs before ``exec``: join the cgroup ``procs``, set the limits, and (for a
    kernel) die with its parent. Everything is computed before the fork."""
    data = limits.memory_mb * MB
    space = data + 8 * 2**30  # torch maps ~4 GB of address space just to import
    fsize = limits.fsize_mb * MB
    cpu = (limits.cpu_s, limits.cpu_s + 5)

    def apply() -> None:
        if procs is not None:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))
        if pdeathsig and _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _tighten(resource.RLIMIT_DATA, (data, data))
        _tighten(resource.RLIMIT_AS, (space, space))
        _tighten(resource.RLIMIT_CPU, cpu)
        _tighten(resource.RLIMIT_NPROC, (nproc, nproc))
        _tighten(resource.RLIMIT_FSIZE, (fsize, fsize))
        _tighten(resource.RLIMIT_CORE, (0, 0))

    return apply


def _env(tmp: str, use_bwrap: bool) -> dict[str, str]:
    """A minimal environment (nothing of the grader's), with ``tmp`` as home and temp folder."""
    env = {
        "PATH": os.pathsep.join([str(_python().parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": tmp,
        "TMPDIR": tmp,
        "PYTHONPATH": _pythonpath(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "JUPYTER_RUNTIME_DIR": f"{tmp}/jupyter-runtime",
        "IPYTHONDIR": f"{tmp}/ipython",
        "MPLCONFIGDIR": f"{tmp}/matplotlib",
        "COURSE_KIT_SANDBOX": "bwrap" if use_bwrap else "none",
    }
    if _torch_home() is not None:
        env["TORCH_HOME"] = str(_torch_home())
    return env


@dataclass
class Jail:
    """How to start one process in the sandbox (made by :func:`jail`; plain data, so that it
    travels to nbgrader's process in the private course's ``nbgrader_config.py``)."""

    outer: list[str]  # the memory cap's prefix (``systemd-run ... --``), or []
    bwrap: list[str]  # bubblewrap and its options, without ``--`` (empty without bubblewrap)
    inner: list[str]  # after bubblewrap's ``--``: ``setpriv ...`` as root, or []
    env: dict[str, str]
    cwd: str  # the folder the process starts in, seen from outside
    uid: int | None  # the user it runs as when not ours (nobody), else None
    procs: str | None  # the cgroup.procs file it joins, or None
    limits: dict
    mode: str  # "bwrap" or "none"

    def command(self, argv: list[str], extra: list[str] = ()) -> list[str]:
        """``argv`` run in the sandbox; ``extra``: more bubblewrap options."""
        if not self.bwrap:
            return self.outer + list(argv)
        return self.outer + self.bwrap + list(extra) + ["--"] + self.inner + list(argv)

    def preexec(self, *, pdeathsig: bool = False):
        uid = os.getuid() if self.uid is None else self.uid
        nproc = _user_tasks(uid) + self.limits["nproc"]
        return _limiter(Limits(**self.limits), nproc, self.procs, pdeathsig=pdeathsig)


def jail(
    workdir: Path,
    scratch: Path,
    limits: Limits,
    *,
    use_bwrap: bool,
    cap: MemoryCap | None,
) -> Jail:
    """The sandbox for one run. With bubblewrap, the entries of ``workdir`` are bound read-only
    in :data:`INSIDE_ROOT`; without it the process runs in ``workdir`` itself (writable) with
    ``scratch`` as its temporary folder."""
    as_nobody = use_bwrap and os.geteuid() == 0
    bwrap, inner = _bwrap_args(Path(workdir), limits, as_nobody) if use_bwrap else ([], [])
    tmp = TMP_INSIDE if use_bwrap else str(scratch)
    return Jail(
        outer=cap.prefix() if cap else [],
        bwrap=bwrap,
        inner=inner,
        env=_env(tmp, use_bwrap),
        cwd=str(workdir),
        uid=NOBODY if as_nobody else None,
        procs=cap.procs if cap else None,
        limits=asdict(limits),
        mode="bwrap" if use_bwrap else "none",
    )


def _use_bwrap(mode: str) -> bool:
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}")
    problem = sandbox_problem() if mode != "none" else "it was switched off (mode='none')"
    if mode == "bwrap" and problem is not None:
        raise RuntimeError(f"cannot sandbox with bubblewrap: {problem}")
    return problem is None


def _wait(proc: subprocess.Popen, wall_s: int) -> tuple[int, str | None]:
    """Wait for ``proc`` at most ``wall_s`` seconds; kill its process group after that."""
    try:
        return proc.wait(timeout=wall_s), None
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait(), f"stopped after {wall_s} s (the whole run's time limit)"


def _oom_note(cap: MemoryCap | None) -> str | None:
    if cap is None or not cap.oom_kills():
        return None
    return (
        f"{cap.oom_kills()} process(es) of the submission were killed: together they went over "
        f"the memory cap of {cap.limit_mb} MB"
    )


def run_sandboxed(
    argv: list[str],
    private: Path,
    *,
    wall_s: int,
    limits: Limits | None = None,
    mode: str = "auto",
    log_path: Path | None = None,
) -> tuple[int | None, str, str, str | None]:
    """Run ``argv`` (``python`` means this environment's interpreter) in the sandbox, all of it:
    with bubblewrap, the files of ``private`` are visible read-only in its working folder
    :data:`INSIDE_ROOT` (what it writes there stays in the sandbox's tmpfs); without, it runs in
    ``private`` itself. Returns (exit status, the tail of its output, the mode used, why it was
    stopped or None)."""
    use_bwrap = _use_bwrap(mode)
    limits = limits or Limits()
    private = Path(private).resolve()
    scratch = private.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    cap = MemoryCap.make(limits.total_memory_mb)
    try:
        box = jail(private, scratch, limits, use_bwrap=use_bwrap, cap=cap)
        cmd = box.command([str(_python()) if a == "python" else a for a in argv])
        log_path = Path(log_path or private.parent / "sandbox.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=private,
                env=box.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=box.preexec(),
                start_new_session=True,
            )
            rc, why = _wait(proc, wall_s)
        why = why or _oom_note(cap)
    finally:
        if cap is not None:
            cap.close()
    return rc, _tail(log_path), box.mode, why


# ----------------------------------------------------------------------------- the kernel


KERNEL_DIR = "/tmp/.jupyter-kernel"  # inside: the kernel's sockets, on the capped tmpfs


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel in the sandbox described by ``jail`` (a
    :class:`Jail` as a dict) and talks to it over Unix-domain sockets.

    With bubblewrap the sockets are made by the kernel in :data:`KERNEL_DIR`, on the sandbox's
    own capped tmpfs (so nothing it can write is on the grader's disk), and reached from outside
    through ``/proc/<kernel pid>/root``; the connection file (``sockets["folder"]``, the
    grader's) is bound into the sandbox read-only. Without bubblewrap both are in that folder.
    The kernel gets the jail's environment (plus nbgrader's ``NBGRADER_*`` variables), not
    nbgrader's; it is interrupted by a message on its control channel (a signal would reach
    bubblewrap, not the kernel); and it dies with nbgrader's process.
    """

    jail = Dict(help="a course_kit.sandbox.Jail as a dict").tag(config=True)
    sockets = Dict(help="{'folder': the grader's folder for the connection file}").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        folder = self.sockets["folder"]
        self.transport = "ipc"
        inside = self.jail["mode"] == "bwrap"
        self.ip = f"{KERNEL_DIR}/k" if inside else os.path.join(folder, "k")
        self.connection_file = os.path.join(folder, "kernel.json")

    @property
    def kernel_spec(self):  # type: ignore[override]
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        return spec

    def write_connection_file(self, **kwargs) -> None:  # type: ignore[override]
        super().write_connection_file(**kwargs)
        if os.path.exists(self.connection_file):  # for nobody; its folder is the grader's, 0700
            os.chmod(self.connection_file, 0o644)

    async def _async_launch_kernel(self, kernel_cmd, **kw):  # type: ignore[override]
        box = Jail(**self.jail)
        env = dict(box.env)
        env.update({k: v for k, v in (kw.get("env") or {}).items() if k.startswith("NBGRADER_")})
        # parent 1: no parent poller (inside, the kernel's parent is the sandbox's init, not
        # nbgrader); it dies with nbgrader by bubblewrap's --die-with-parent and its own death
        # signal instead
        env["JPY_PARENT_PID"] = "1"
        kw.update(env=env, cwd=box.cwd, independent=True, preexec_fn=box.preexec(pdeathsig=True))
        if box.mode != "bwrap":
            await super()._async_launch_kernel(box.command(kernel_cmd), **kw)
            return
        outside, inside = os.path.realpath(self.connection_file), f"{KERNEL_DIR}/kernel.json"
        argv = [inside if a == outside else a for a in kernel_cmd]
        read, write = os.pipe()
        extra = ["--perms", "0777", "--dir", KERNEL_DIR, "--ro-bind", outside, inside]
        extra += ["--info-fd", str(write)]
        try:
            await super()._async_launch_kernel(box.command(argv, extra), pass_fds=(write,), **kw)
        finally:
            os.close(write)
        # from now on (the control socket, the client's channels) the sockets are reached
        # through the kernel's own root
        self.ip = f"/proc/{_sandboxed_pid(read)}/root{KERNEL_DIR}/k"

    _launch_kernel = _async_launch_kernel  # type: ignore[assignment]


def _sandboxed_pid(fd: int, timeout: float = 60.0) -> int:
    """The pid (outside) of the command bubblewrap runs: the child of the sandbox's init, whose
    pid bubblewrap writes as JSON on ``fd`` (``--info-fd``). Closes ``fd``."""
    deadline = time.monotonic() + timeout
    data, info = b"", None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        while info is None and time.monotonic() < deadline:
            if not select.select([fh], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            chunk = fh.read(4096)
            if not chunk:
                break
            data += chunk
            try:
                info = json.loads(data)
            except ValueError:
                continue
    if info is None:
        raise RuntimeError(f"bubblewrap did not start the kernel's sandbox ({data[:200]!r})")
    init = int(info["child-pid"])
    while time.monotonic() < deadline:
        kids = _children(init)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise RuntimeError("the kernel's sandbox started no kernel")


def _children(pid: int) -> list[int]:
    """The children of ``pid`` (raises RuntimeError when it is gone)."""
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            raise RuntimeError("the kernel's sandbox ended as it started") from None
    out = []  # a kernel without /proc/<pid>/task/<pid>/children (CONFIG_PROC_CHILDREN)
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == str(pid):
            out.append(int(status.parent.name))
    return out


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` (configured as ``Execute``) with the kernel in the sandbox."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # set after the configuration is loaded: no setting can take the kernel out of the sandbox
        self.kernel_manager_class = SandboxedKernelManager


def _readable(path: Path) -> None:
    """Let the sandbox's user read everything under ``path``."""
    for dirpath, _, filenames in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def wall_limit(timeout: int, n_cells: int, limits: Limits) -> int:
    """The whole run's time limit: enough for every cell to time out, never above
    ``limits.wall_s`` (a notebook of 100,000 cells gets no more time than one of 10)."""
    return min(limits.wall_s, timeout * (n_cells + 2) + 90)


def kernel_sandbox(
    workdir: Path, base: Path, limits: Limits, *, mode: str = "auto"
) -> tuple[dict, MemoryCap | None]:
    """The settings of :class:`SandboxedKernelManager` (a traitlets config section) for one
    run whose kernel works in ``workdir``'s files, its sockets and scratch folders made in
    ``base``; and the run's memory cap (or None), which the caller closes after the run. Where
    the cap could not be made although cgroups are available, ``settings["note"]`` says why."""
    use_bwrap = _use_bwrap(mode)
    workdir, base = Path(workdir).resolve(), Path(base).resolve()
    scratch, sockets = base / "scratch", base / "kernel"
    scratch.mkdir(exist_ok=True)
    sockets.mkdir(mode=0o700)
    _readable(workdir)
    note = None
    try:
        cap = MemoryCap.make(limits.total_memory_mb)
    except OSError as err:  # available a moment ago: say so rather than stop the batch
        cap, note = None, f"no total memory cap for this run ({type(err).__name__}: {err})"
    try:
        box = jail(workdir, scratch, limits, use_bwrap=use_bwrap, cap=cap)
    except BaseException:
        if cap is not None:
            cap.close()
        raise
    settings = {"jail": asdict(box), "sockets": {"folder": str(sockets)}}
    if note:
        settings["note"] = note  # for the caller; not a setting of the manager
    return settings, cap


def run_autograde(
    private: Path,
    workdir: Path,
    assignment: str,
    student: str,
    *,
    timeout: int,
    n_cells: int,
    limits: Limits | None = None,
    mode: str = "auto",
) -> SandboxResult:
    """``nbgrader autograde ASSIGNMENT --student STUDENT`` in the private course ``private``,
    run by the grader, with the kernel in the sandbox (working folder: ``workdir``'s files).

    ``private`` holds ``nbgrader_config.py`` (see :func:`write_config`; the kernel's sandbox is
    added here), ``gradebook.db``, ``source/<assignment>/`` and
    ``submitted/<student>/<assignment>/``; none of it is visible to the kernel. Returns the
    executed notebook (``autograded/...``) when nbgrader wrote one.
    """
    limits = limits or Limits()
    private = Path(private).resolve()
    settings, cap = kernel_sandbox(workdir, private.parent, limits, mode=mode)
    note = settings.pop("note", None)
    try:
        with open(private / "nbgrader_config.py", "a") as fh:
            for name, value in settings.items():
                fh.write(f"c.SandboxedKernelManager.{name} = {value!r}\n")
        argv = [str(_python()), "-m", "nbgrader", "autograde", assignment, "--student", student]
        argv += ["--force", f"--CourseDirectory.root={private}"]
        log_path = private.parent / "autograde.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=private,
                env=_env(str(private.parent / "scratch"), settings["jail"]["mode"] == "bwrap"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_limiter(limits, _user_tasks(os.getuid()) + limits.nproc),
                start_new_session=True,
            )
            rc, why = _wait(proc, wall_limit(timeout, n_cells, limits))
        oom = _oom_note(cap)
    finally:
        if cap is not None:
            cap.close()
    tail = _tail(log_path)
    out = private / "autograded" / student / assignment / f"{assignment}.ipynb"
    # nbgrader writes the sanitized notebook before it runs it: a run that did not finish
    # (killed, out of time) leaves that unexecuted copy behind, which must not be graded
    done = rc == 0 and why is None and out.is_file() and not out.is_symlink()
    notebook = out if done else None
    if notebook is None and why is None:
        why = oom or _explain(tail, rc)
    elif oom:
        why = oom if why is None else f"{why}; {oom}"
    if note:
        why = note if why is None else f"{why}; {note}"
    return SandboxResult(notebook, rc, tail, settings["jail"]["mode"], why)


def _tail(path: Path, size: int = 20_000) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - size))
        return fh.read().decode("utf-8", "replace")


def _explain(log: str, rc: int | None) -> str:
    if rc is not None and rc > 128 and rc - 128 in signal.Signals._value2member_map_:
        rc = -(rc - 128)  # bubblewrap passes a signal on as 128 + its number
    if rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else rc
        return f"the grading process was killed ({name}), by the submission or a limit"
    for needle, text in (
        (
            "DeadKernelError",
            "the Python kernel died (the notebook exited, crashed or ran out of memory)",
        ),
        ("MemoryError", "the notebook ran out of memory"),
        ("Kernel died", "the Python kernel died"),
        ("CellTimeoutError", "a cell ran past the time limit"),
        ("NotJSONError", "the file is not a valid notebook"),
    ):
        if needle in log:
            return text
    return f"nbgrader stopped (exit {rc}) without grading the notebook"


AUTOGRADE_PREPROCESSORS = [
    "course_kit.sandbox.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "course_kit.nbgrader_hooks.CapOutputs",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.CheckCellMetadata",
]


def write_config(private: Path, settings: dict[str, dict]) -> None:
    """The private course's ``nbgrader_config.py``: the instructor's execution settings only
    (the kernel's sandbox is added by :func:`run_autograde`)."""
    root = str(Path(private).resolve())
    lines = ["c = get_config()  # noqa: F821 - written by course_kit.sandbox"]
    lines += [
        f"c.CourseDirectory.root = {root!r}",
        "c.CourseDirectory.source_directory = 'source'",
        "c.CourseDirectory.release_directory = 'release'",
        "c.CourseDirectory.submitted_directory = 'submitted'",
        "c.CourseDirectory.autograded_directory = 'autograded'",
        "c.CourseDirectory.feedback_directory = 'feedback'",
        f"c.CourseDirectory.db_url = {'sqlite:///' + root + '/gradebook.db'!r}",
        f"c.Autograde.autograde_preprocessors = {AUTOGRADE_PREPROCESSORS!r}",
    ]
    for section, values in settings.items():
        for name, value in values.items():
            lines.append(f"c.{section}.{name} = {value!r}")
    (Path(private) / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
