"""Run ``nbgrader autograde`` for ONE submission in a sandbox.

Each submission is graded in a private copy of the course made for it alone: a temporary folder
holding the submission, the assignment's non-notebook files and a gradebook that knows only the
assignment (no students, no scores). The real course folder (``solutions/``, the gradebook,
other submissions) is not there. The grader (``course_kit.instructor``) then reads the executed
notebook back as *data* and writes the scores into the real gradebook itself.

With bubblewrap (``bwrap``, Debian package ``bubblewrap``; ``make setup`` installs it when it can)
the run also gets:

* its own mount namespace: only the Python installation, the virtual environment, the folders
  of ``course_lib``/``course_kit`` (read-only) and the private copy (read-write) are visible;
* no network (its own network namespace), its own PID namespace (it cannot see or signal the
  grader or other submissions: ``os.kill(os.getppid(), 9)`` ends only its own run), its own
  session, IPC and host name;
* as root: a separate user id (``nobody``) for the submission's processes.

Always (with or without bubblewrap), resource limits set in the child with
``resource.setrlimit``: memory (``RLIMIT_DATA``: heap and anonymous memory, the limit torch
respects; ``RLIMIT_AS`` is set too, higher, because importing torch alone maps ~4 GB of address
space), CPU seconds (``RLIMIT_CPU``), processes and threads (``RLIMIT_NPROC``), the size of any
file written (``RLIMIT_FSIZE``), no core dumps; plus a wall-clock limit for the whole run and a
cap on every output (:class:`course_kit.nbgrader_hooks.CapOutputs`).

Without bubblewrap (``mode="none"``, or ``"auto"`` where it cannot run) the submission still runs
in the private copy, in its own session, under the same limits, but as *your* user and without
namespaces: it could read (and write) any file your user can, open network connections, and
signal your processes. :func:`sandbox_problem` says why bubblewrap cannot be used.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSIDE_ROOT = "/course"
NOBODY = 65534
MODES = ("auto", "bwrap", "none")


@dataclass
class Limits:
    """Resource limits for one submission's run (per process, except ``wall_s`` and ``nproc``)."""

    memory_mb: int = 3072  # RLIMIT_DATA: heap + anonymous mappings of each process
    cpu_s: int = 900  # RLIMIT_CPU: CPU seconds of each process
    nproc: int = 256  # RLIMIT_NPROC: processes + threads of the sandbox's user
    fsize_mb: int = 64  # RLIMIT_FSIZE: largest file a process may write
    wall_s: int | None = None  # whole run; default: from the per-cell timeout and cell count


@dataclass
class SandboxResult:
    """What came back from one run."""

    notebook: Path | None  # the executed (autograded) notebook, or None
    returncode: int | None
    log: str  # the tail of nbgrader's log
    mode: str  # "bwrap" or "none"
    problem: str | None = None  # why nothing (or not everything) came back


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


FALLBACK_WARNING = (
    "grading WITHOUT bubblewrap: {why}. Each submission still runs in a private copy of the "
    "course with limits on memory, CPU time, processes and file size, but as your own user and "
    "without namespaces: student code could read and write any file you can (solutions/, the "
    "gradebook, other submissions), use the network and signal your processes. Grade untrusted "
    "submissions only where bubblewrap works."
)


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
    """Folders the sandbox must see read-only: Python, the venv, course_lib and course_kit."""
    import course_kit
    import course_lib

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    paths.add(Path(sys.executable).resolve().parent.parent)
    for mod in (course_lib, course_kit):
        paths.add(Path(mod.__file__).resolve().parent)
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
    import course_kit
    import course_lib

    dirs = []
    for mod in (course_lib, course_kit):
        parent = str(Path(mod.__file__).resolve().parent.parent)
        if parent not in dirs:
            dirs.append(parent)
    return os.pathsep.join(dirs)


def _bwrap_args(private: Path, scratch: Path, as_nobody: bool) -> list[str]:
    # /tmp first: the folders bound below may live under /tmp (a clone in a temporary folder),
    # and a mount made after them would hide them.
    args = [shutil.which("bwrap") or "bwrap", *_system_binds(), "--bind", str(scratch), "/tmp"]
    made: set[str] = set()
    binds = _python_paths()
    for path in binds:
        for parent in reversed(path.parents):
            text = str(parent)
            if (
                text == "/"
                or text in made
                or any(parent == b or b in parent.parents for b in binds)
            ):
                continue
            if text in ("/usr", "/etc") or text.startswith("/usr/"):
                continue
            args += ["--perms", "0755", "--dir", text]
            made.add(text)
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(private), INSIDE_ROOT]
    args += [
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if not as_nobody:
        args += ["--unshare-user"]
    args += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--chdir", INSIDE_ROOT]
    return args


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


def _limiter(limits: Limits, nproc: int):
    mb = 2**20

    def apply() -> None:
        data = limits.memory_mb * mb
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        space = data + 8 * 2**30  # torch maps ~4 GB of address space just to import
        resource.setrlimit(resource.RLIMIT_AS, (space, space))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        fsize = limits.fsize_mb * mb
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _chown_tree(path: Path, uid: int) -> None:
    os.chown(path, uid, uid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def run_sandboxed(
    argv: list[str],
    private: Path,
    *,
    wall_s: int,
    limits: Limits | None = None,
    mode: str = "auto",
    log_path: Path | None = None,
) -> tuple[int | None, str, str, str | None]:
    """Run ``argv`` (``python`` means this environment's interpreter) with ``private`` as its
    folder: at ``/course`` inside bubblewrap, else in place. Returns (exit status, the tail of
    its output, the mode used, why it was stopped or None)."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}")
    limits = limits or Limits()
    private = Path(private).resolve()
    scratch = private.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    problem = sandbox_problem() if mode != "none" else "it was switched off (mode='none')"
    use_bwrap = problem is None
    if mode == "bwrap" and not use_bwrap:
        raise RuntimeError(f"cannot sandbox with bubblewrap: {problem}")
    as_nobody = use_bwrap and os.geteuid() == 0
    tmp_inside = "/tmp" if use_bwrap else str(scratch)
    env = {
        "PATH": os.pathsep.join([str(_python().parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": tmp_inside,
        "TMPDIR": tmp_inside,
        "PYTHONPATH": _pythonpath(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "JUPYTER_RUNTIME_DIR": f"{tmp_inside}/jupyter-runtime",
        "IPYTHONDIR": f"{tmp_inside}/ipython",
        "MPLCONFIGDIR": f"{tmp_inside}/matplotlib",
        "COURSE_KIT_SANDBOX": "bwrap" if use_bwrap else "none",
    }
    if _torch_home() is not None:
        env["TORCH_HOME"] = str(_torch_home())
    cmd = [str(_python()) if a == "python" else a for a in argv]
    if use_bwrap:
        prefix = _bwrap_args(private, scratch, as_nobody)
        if as_nobody:
            _chown_tree(private, NOBODY)
            _chown_tree(scratch, NOBODY)
            prefix += [
                "--",
                shutil.which("setpriv") or "/usr/bin/setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
            ]
            nproc = _user_tasks(NOBODY) + limits.nproc
        else:
            prefix.append("--")
            nproc = _user_tasks(os.getuid()) + limits.nproc
        cmd = prefix + cmd
    else:
        nproc = _user_tasks(os.getuid()) + limits.nproc
    log_path = Path(log_path or private.parent / "sandbox.log")
    why = None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=private,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_limiter(limits, nproc),
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=wall_s)
        except subprocess.TimeoutExpired:
            why = f"stopped after {wall_s} s (the whole run's time limit)"
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = proc.wait()
    if as_nobody:  # hand the files back to the grader
        _chown_tree(private, os.getuid())
        _chown_tree(scratch, os.getuid())
    return rc, _tail(log_path), "bwrap" if use_bwrap else "none", why


def run_autograde(
    private: Path,
    assignment: str,
    student: str,
    *,
    timeout: int,
    n_cells: int,
    limits: Limits | None = None,
    mode: str = "auto",
) -> SandboxResult:
    """``nbgrader autograde ASSIGNMENT --student STUDENT`` in the private course ``private``.

    ``private`` holds ``nbgrader_config.py`` (see :func:`write_config`), ``gradebook.db``,
    ``source/<assignment>/`` and ``submitted/<student>/<assignment>/``. Returns the executed
    notebook (``autograded/...``) when nbgrader wrote one.
    """
    limits = limits or Limits()
    use_bwrap = mode != "none" and sandbox_problem() is None
    root_inside = INSIDE_ROOT if use_bwrap else str(Path(private).resolve())
    argv = ["python", "-m", "nbgrader", "autograde", assignment, "--student", student]
    argv += ["--force", f"--CourseDirectory.root={root_inside}"]
    wall = limits.wall_s or timeout * (n_cells + 2) + 90
    rc, tail, used, why = run_sandboxed(
        argv,
        private,
        wall_s=wall,
        limits=limits,
        mode=mode,
        log_path=Path(private).parent / "autograde.log",
    )
    out = Path(private) / "autograded" / student / assignment / f"{assignment}.ipynb"
    # nbgrader writes the sanitized notebook before it runs it: a run that did not finish
    # (killed, out of time) leaves that unexecuted copy behind, which must not be graded
    done = rc == 0 and why is None and out.is_file() and not out.is_symlink()
    notebook = out if done else None
    if notebook is None and why is None:
        why = _explain(tail, rc)
    return SandboxResult(notebook, rc, tail, used, why)


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


def write_config(private: Path, settings: dict[str, dict], *, root_inside: str) -> None:
    """The private course's ``nbgrader_config.py``: the instructor's execution settings only."""
    lines = ["c = get_config()  # noqa: F821 - written by course_kit.sandbox"]
    lines += [
        f"c.CourseDirectory.root = {root_inside!r}",
        "c.CourseDirectory.source_directory = 'source'",
        "c.CourseDirectory.release_directory = 'release'",
        "c.CourseDirectory.submitted_directory = 'submitted'",
        "c.CourseDirectory.autograded_directory = 'autograded'",
        "c.CourseDirectory.feedback_directory = 'feedback'",
        f"c.CourseDirectory.db_url = {'sqlite:///' + root_inside + '/gradebook.db'!r}",
        "c.Autograde.autograde_preprocessors = ["
        "'nbgrader.preprocessors.Execute', 'nbgrader.preprocessors.IgnorePattern', "
        "'nbconvert.preprocessors.ClearMetadataPreprocessor', "
        "'nbgrader.preprocessors.LimitOutput', 'course_kit.nbgrader_hooks.CapOutputs', "
        "'nbgrader.preprocessors.SaveAutoGrades', 'nbgrader.preprocessors.CheckCellMetadata']",
    ]
    for section, values in settings.items():
        for name, value in values.items():
            lines.append(f"c.{section}.{name} = {value!r}")
    (Path(private) / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
