"""A JupyterHub for the whole class, with nbgrader's exchange between users.

    make hub [HUB_PORT=8000] [HUB_IP=127.0.0.1] [STUDENTS=ann,bob] [INSTRUCTORS=prof]
    .venv/bin/python -m course_kit.hub --students ann,bob --instructors prof [--auth shared]

JupyterHub (from PyPI) behind configurable-http-proxy (from npm, installed into
``_build/hub/proxy`` on first use); each user's server is a local process running as that Unix
user in their own home folder, with the kit's environment as the kernel. The configuration is
``deploy/jupyterhub_config.py``; the course's settings (course id, exchange root, what students
must not see) are in ``deploy/settings.json``, which the Kubernetes files in ``deploy/`` repeat
(a test keeps them in step).

What keeps students apart is file permissions, not trust: homes are ``0700``; the instructor's
course (solutions, gradebook, submissions) lives in the instructor's home; the exchange is
nbgrader's (``inbound`` is write-only for students, feedback is found only by its hash). Students'
servers also run without the formgrader and the "Create Assignment" tools. What every user's
server runs (Python, the kit's packages, ``course_lib``) is installed by :func:`install_runtime`
into a folder of its own that every user can enter (``/opt/course-kit``), never from the kit's
checkout: the checkout holds the solutions, so ``serve`` refuses to start while other users can
enter it (:func:`checkout_problem`). It never changes the mode of a folder it did not create
(users' homes excepted: they are closed to ``0700``).

Users must exist on the machine (``useradd``); with ``--auth pam`` (the default) they log in with
their system password, with ``--auth shared`` with one shared password (demos and tests).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

from .nbrun import ROOT

DEPLOY = ROOT / "deploy"
SETTINGS_FILE = DEPLOY / "settings.json"
HUB_CONFIG = DEPLOY / "jupyterhub_config.py"
RUNTIME = ROOT / "_build" / "hub"
#: the file that marks a folder as made by :func:`install_runtime` (only such a folder is replaced)
RUNTIME_MARK = ".course-kit-runtime"


def settings() -> dict:
    """The course's hub settings (``deploy/settings.json``)."""
    return json.loads(SETTINGS_FILE.read_text())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    path.parent.chmod(0o755)


TERMINAL_CONFIG = """# Written by course_kit.hub: terminals keep the server's PATH (no login shell).
import os

c = get_config()  # noqa: F821
c.ServerApp.terminado_settings = {"shell_command": [os.environ.get("SHELL") or "/bin/sh"]}
"""


def user_config(
    role: str,
    out: str | Path,
    *,
    exchange_root: str | Path,
    course_id: str,
    ngshare_url: str | None = None,
) -> Path:
    """Write the Jupyter config folder a ``role`` user's server reads (``JUPYTER_CONFIG_PATH``).

    Args:
        role: ``"student"`` (nbgrader's exchange; no formgrader, no "Create Assignment", no course
            list) or ``"instructor"`` (the same exchange, and the course in ``~/course``).
        out: the folder to write (readable by every user: ``0755``).
        exchange_root: nbgrader's exchange folder (see :func:`prepare_exchange`).
        course_id: the course's id in the exchange.
        ngshare_url: use ngshare's service at this URL as the exchange instead of the folder
            (Kubernetes, where pods cannot be told apart by file permissions; needs the
            ``ngshare_exchange`` package in the image).

    Returns:
        ``out``.

    Raises:
        ValueError: an unknown role.
    """
    if role not in ("student", "instructor"):
        raise ValueError(f"`role` must be 'student' or 'instructor'; got {role!r}")
    out = Path(out)
    lines = [
        "# Written by course_kit.hub: nbgrader's exchange for this course.",
        "c = get_config()  # noqa: F821",
        f"c.CourseDirectory.course_id = {course_id!r}",
    ]
    if ngshare_url:
        lines += [
            "from ngshare_exchange import configureExchange",
            f"configureExchange(c, {ngshare_url!r})",
        ]
    else:
        lines.append(f"c.Exchange.root = {str(exchange_root)!r}")
    if role == "instructor":
        lines += [
            "import os",
            "c.CourseDirectory.root = os.path.expanduser(" + repr(settings()["course_root"]) + ")",
        ]
    _write(out / "nbgrader_config.py", "\n".join(lines) + "\n")
    # Jupyter's terminals start a login shell, whose /etc/profile resets PATH: `course-kit` and
    # the kit's Python would be "command not found". The user's shell without -l keeps PATH.
    _write(out / "jupyter_server_config.py", TERMINAL_CONFIG)
    if role == "student":
        hidden = settings()
        server = {
            "ServerApp": {
                "jpserver_extensions": {
                    name: False for name in hidden["student_disabled_server_extensions"]
                }
            }
        }
        _write(out / "jupyter_server_config.json", json.dumps(server, indent=2))
        page = {"disabledExtensions": dict.fromkeys(hidden["student_disabled_labextensions"], True)}
        _write(out / "labconfig" / "page_config.json", json.dumps(page, indent=2))
    return out


def prepare_exchange(root: str | Path) -> Path:
    """Create nbgrader's exchange folder: world-writable with the sticky bit, like ``/tmp``.

    Raises:
        RuntimeError: ``root`` exists with another mode (it is not changed: say so, not guess).
    """
    root = Path(root)
    if root.exists():
        if mode(root) != 0o1777:
            raise RuntimeError(
                f"the exchange {root} exists with mode {mode(root):04o}; nbgrader's exchange "
                f"must be 1777 (sticky, like /tmp): `chmod 1777 {root}` or name another --exchange"
            )
        return root
    _make_dirs(root)
    root.chmod(0o1777)
    return root


# `course-kit grade` in ~/course and the Formgrader must file grades under one course id in the
# gradebook (else the Formgrader shows 0 / 0 for what course-kit graded).
COURSE_ID_LINES = """
# Added by course_kit.hub: the course id of the hub's exchange and Formgrader.
c.CourseDirectory.course_id = {course_id!r}
"""


def install_course(home: str | Path, owner: str, *, source: Path = ROOT) -> Path:
    """Copy the course (``solutions/``, ``assignments/``, ``nbgrader_config.py``) into
    ``home/course`` for the instructor ``owner``, owned by them and closed to everyone else."""
    course = Path(home) / "course"
    course.mkdir(parents=True, exist_ok=True)
    for name in ("solutions", "assignments"):
        if not (course / name).exists():
            shutil.copytree(source / name, course / name)
    shutil.copy(source / "nbgrader_config.py", course / "nbgrader_config.py")
    with (course / "nbgrader_config.py").open("a") as config:
        config.write(COURSE_ID_LINES.format(course_id=settings()["course_id"]))
    (course / "grading").mkdir(exist_ok=True)  # the gradebook and submissions (nbgrader_config)
    course.chmod(0o700)  # solutions, gradebook, submissions: the instructor alone
    user = pwd.getpwnam(owner)
    for path in [course, *course.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    Path(home).chmod(0o700)
    return course


# ----------------------------------------------------------------- what users' servers run


def unreachable(path: str | Path) -> Path | None:
    """The first folder on the way to ``path`` (``path`` itself included) that users other than
    its owner and group cannot enter (no ``o+x``), or ``None`` when they can reach it.

    Symbolic links are followed: what counts is the real file a server would open."""
    target = Path(path).resolve()
    for folder in [*reversed(target.parents), target]:
        if folder.is_dir() and not mode(folder) & stat.S_IXOTH:
            return folder
    return None


def checkout_problem(root: Path = ROOT) -> str | None:
    """Why students could read the solutions in the kit's checkout ``root``, or ``None``.

    Every user's server runs from :func:`install_runtime`'s folder, so nothing needs the checkout
    open; ``serve`` refuses to start while ``solutions/`` (or ``grading/``) can be entered."""
    for name in ("solutions", "grading"):
        if (root / name).is_dir() and unreachable(root / name) is None:
            return (
                f"other users can enter {root / name}: students could read the solutions and "
                f"grading data in the kit's checkout. Close it (`chmod 700 {root}`) or clone the "
                "kit into a folder only you can enter, then make hub again (make hub never changes "
                "the mode of a folder it did not create)."
            )
    return None


def _venv_home(venv: Path) -> Path:
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip())
    raise RuntimeError(f"{venv / 'pyvenv.cfg'} names no `home`: is {venv} a virtual environment?")


def _make_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents as ``0755``; the existing ones are not touched."""
    missing = [p for p in [*reversed(folder.parents), folder] if not p.exists()]
    for path in missing:
        path.mkdir()
        path.chmod(0o755)


def _copy_python(base: Path, dest: Path) -> None:
    """Copy the Python installation ``base`` (without its site-packages and test suite)."""
    lib = f"python{sys.version_info.major}.{sys.version_info.minor}"

    def skip(folder: str, names: list[str]) -> list[str]:
        if Path(folder).name == lib and Path(folder).parent.name == "lib":
            return [n for n in names if n in ("site-packages", "test", "idlelib", "tkinter")]
        return []

    shutil.copytree(base, dest, symlinks=True, ignore=skip)
    (dest / "lib" / lib / "site-packages").mkdir(exist_ok=True)
    dest.chmod(0o755)
    # The binary's RUNPATH names the original lib/ (which others cannot enter): a wrapper puts the
    # copy's lib/ first for every process that starts this Python (servers, kernels, the grading
    # sandbox, which passes no LD_LIBRARY_PATH of its own). exec -a keeps argv[0], by which
    # Python finds its virtual environment.
    exe = dest / "bin" / lib
    real = exe.with_name(lib + "-bin")
    exe.rename(real)
    exe.write_text(
        "#!/bin/bash\n# Written by course_kit.hub: this Python's library is in ../lib.\n"
        f'export LD_LIBRARY_PATH="{dest / "lib"}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
        f'exec -a "$0" "{real}" "$@"\n'
    )
    exe.chmod(0o755)


def _clone_venv(venv: Path, dest: Path) -> None:
    """Copy ``venv`` to ``dest``: hard links where both are on one file system (seconds, no
    space), else a full copy. Files are later *replaced*, never edited, so ``venv`` is unchanged."""
    link = subprocess.run(["cp", "-a", "-l", str(venv), str(dest)], capture_output=True, text=True)
    if link.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        print(f"course_kit.hub: copying {venv} into {dest} (no hard links: {link.stderr.strip()})")
        subprocess.run(["cp", "-a", str(venv), str(dest)], check=True)
    dest.chmod(0o755)


def _replace_text(path: Path, old: str, new: str) -> None:
    data = path.read_bytes()
    if old.encode() not in data:
        return
    tmp = path.with_name(path.name + ".course-kit-tmp")
    tmp.write_bytes(data.replace(old.encode(), new.encode()))
    tmp.chmod(mode(path))
    os.replace(tmp, path)  # a new file: a hard-linked original keeps its text


def _relocate_venv(env: Path, *, old: Path, final: Path, python_home: Path, source: Path) -> None:
    """Point the cloned environment ``env`` (to live at ``final``) at ``python_home`` and give it
    plain copies of ``course_lib`` and ``course_kit`` instead of the checkout's editable ones."""
    cfg = env / "pyvenv.cfg"
    text = cfg.read_text().replace(str(_venv_home(env)), str(python_home))
    lines = [ln for ln in text.splitlines() if ln.split("=")[0].strip() != "command"]
    cfg.unlink()  # a hard link: the original keeps its text
    cfg.write_text("\n".join(lines) + "\n")
    cfg.chmod(0o644)
    for exe in (env / "bin").iterdir():
        if exe.is_symlink():
            target = os.readlink(exe)
            if os.path.isabs(target) and (python_home / Path(target).name).exists():
                exe.unlink()
                exe.symlink_to(python_home / Path(target).name)
        elif exe.is_file():
            _replace_text(exe, str(old), str(final))  # shebangs, activate scripts
    lib = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = env / "lib" / lib / "site-packages"
    for path in site.iterdir():
        if "course_kit" in path.name and (
            path.name.startswith("__editable__") or path.name.endswith(".dist-info")
        ):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for package in ("course_lib", "course_kit"):
        if (site / package).exists():
            shutil.rmtree(site / package)
        shutil.copytree(
            source / package, site / package, ignore=shutil.ignore_patterns("__pycache__")
        )


def install_runtime(
    prefix: str | Path, *, venv: str | Path | None = None, source: Path = ROOT
) -> dict[str, str]:
    """Install what every user's server runs into ``prefix``, a folder every user can enter.

    ``prefix/env`` is the kit's environment ``venv`` (default: the running one) cloned (hard
    links where possible) with ``course_lib`` and ``course_kit`` copied in from ``source``, so
    that nothing a server imports or opens lies in the checkout (which holds the solutions).
    When ``venv``'s Python lies where other users cannot enter (a pyenv Python in root's
    ``0700`` home), that Python is copied into ``prefix/python`` too. Made again on every call.

    Returns:
        ``{"python_bin": <the environment's bin folder>, "config_dir": <where the roles' Jupyter
        config goes>}`` (keywords of :func:`hub_environment`).

    Raises:
        RuntimeError: ``prefix`` exists and was not made here, a folder above it cannot be
            entered by other users, or a user other than root could not start the result.
    """
    prefix = Path(prefix).absolute()
    venv = Path(venv or sys.prefix).absolute()
    if prefix.exists() and any(prefix.iterdir()) and not (prefix / RUNTIME_MARK).is_file():
        raise RuntimeError(
            f"{prefix} exists and was not made by course_kit.hub: name an empty or new folder "
            "(make hub HUB_PREFIX=...)"
        )
    existing = next(p for p in [prefix, *prefix.parents] if p.exists())
    blocked = unreachable(existing)
    if blocked is not None:
        raise RuntimeError(
            f"other users cannot enter {blocked} (mode {mode(blocked):04o}), so students' servers "
            f"could not run what is installed in {prefix}: choose a prefix they can reach "
            "(make hub HUB_PREFIX=/opt/course-kit)"
        )
    _make_dirs(prefix)  # the folders it makes are 0755; existing ones keep their mode
    (prefix / RUNTIME_MARK).write_text("made by course_kit.hub.install_runtime; replaced by it\n")
    home = _venv_home(venv)
    if unreachable(home) is not None:
        base = home.resolve().parent
        print(f"course_kit.hub: {home} cannot be reached by other users: copying its Python")
        if (prefix / "python").exists():
            shutil.rmtree(prefix / "python")
        _copy_python(base, prefix / "python")
        home = prefix / "python" / "bin"
    final, fresh = prefix / "env", prefix / "env.new"
    shutil.rmtree(fresh, ignore_errors=True)
    _clone_venv(venv, fresh)
    _relocate_venv(fresh, old=venv, final=final, python_home=home, source=source)
    if final.exists():
        shutil.rmtree(final)
    fresh.rename(final)
    runtime = {"python_bin": str(final / "bin"), "config_dir": str(prefix / "config")}
    _check_runtime(runtime)
    return runtime


def _check_runtime(runtime: dict[str, str]) -> None:
    """Start the installed Python as ``nobody`` (a user with no rights to anything here)."""
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None or not _user_exists("nobody"):
        return
    code = "import course_lib, nbgrader, jupyterhub.singleuser; print(course_lib.__file__)"
    env = {"PATH": runtime["python_bin"] + ":/usr/bin:/bin", "HOME": "/"}
    done = subprocess.run(
        [runuser, "-u", "nobody", "--", runtime["python_bin"] + "/python", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    if done.returncode != 0:
        raise RuntimeError(
            "another user could not start the installed environment "
            f"({runtime['python_bin']}):\n{done.stderr[-1500:]}"
        )


def proxy_command(prefix: str | Path = RUNTIME / "proxy") -> Path:
    """configurable-http-proxy from npm, installed into ``prefix`` on first use.

    Raises:
        RuntimeError: npm is missing or the install failed (the message says what to do).
    """
    exe = Path(prefix) / "node_modules" / ".bin" / "configurable-http-proxy"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "JupyterHub needs configurable-http-proxy from npm, and npm is not installed: "
            "install Node.js and npm (Debian: `apt-get install nodejs npm`), then make hub again."
        )
    Path(prefix).mkdir(parents=True, exist_ok=True)
    package = settings()["proxy_package"]
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", package],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not exe.exists():
        raise RuntimeError(f"could not install {package} with npm:\n{done.stderr[-2000:]}")
    return exe


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hub_environment(
    *,
    runtime: Path,
    students: list[str],
    instructors: list[str],
    ip: str = "127.0.0.1",
    port: int = 8000,
    auth: str = "pam",
    password: str | None = None,
    api_token: str | None = None,
    exchange_root: str | Path | None = None,
    python_bin: str | Path | None = None,
    config_dir: str | Path | None = None,
) -> dict[str, str]:
    """Prepare ``runtime`` (config folders, exchange, proxy) and return the environment with which
    ``jupyterhub -f deploy/jupyterhub_config.py`` serves this course.

    ``python_bin`` and ``config_dir`` are what :func:`install_runtime` returned: the bin folder
    every user's server runs from and the folder for each role's Jupyter config, both where every
    user can read them (defaults, for tests of the configuration only: this interpreter's bin and
    ``runtime``). With a ``config_dir``, ``runtime`` (the hub's database, cookie secret and proxy)
    is closed to everyone but root.

    Raises:
        ValueError: no users, a user who is both student and instructor, an unknown ``auth``,
            or ``auth="shared"`` without a password of at least 8 characters.
    """
    if not students and not instructors:
        raise ValueError("`students` and `instructors` are both empty: name at least one user")
    both = sorted(set(students) & set(instructors))
    if both:
        raise ValueError(f"users cannot be both student and instructor: {both}")
    if auth not in ("pam", "shared"):
        raise ValueError(f"`auth` must be 'pam' or 'shared'; got {auth!r}")
    if auth == "shared" and (password is None or len(password) < 8):
        raise ValueError("`password` for auth='shared' must have at least 8 characters")
    conf = settings()
    runtime = Path(runtime)
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o755 if config_dir is None else 0o700)
    configs = Path(config_dir or runtime)
    _make_dirs(configs)  # 0755 where made: every user's server reads its role's folder
    exchange = prepare_exchange(exchange_root or conf["exchange_root"])
    for role in ("student", "instructor"):
        user_config(role, configs / role, exchange_root=exchange, course_id=conf["course_id"])
    env = {
        "COURSE_HUB_RUNTIME": str(runtime),
        "COURSE_HUB_CONFIG": str(configs),
        "COURSE_HUB_PROXY": str(proxy_command(runtime / "proxy")),
        "COURSE_HUB_IP": ip,
        "COURSE_HUB_PORT": str(port),
        "COURSE_HUB_HUB_PORT": str(free_port()),
        "COURSE_HUB_PROXY_API_PORT": str(free_port()),
        "COURSE_HUB_STUDENTS": ",".join(students),
        "COURSE_HUB_INSTRUCTORS": ",".join(instructors),
        "COURSE_HUB_AUTH": auth,
        "COURSE_HUB_PYTHON_BIN": str(python_bin or Path(sys.executable).parent),
    }
    if password is not None:
        env["COURSE_HUB_PASSWORD"] = password
    if api_token is not None:
        env["COURSE_HUB_API_TOKEN"] = api_token
    return env


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course_kit.hub", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the class's JupyterHub on this machine (root)")
    serve.add_argument("--ip", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--students", default="", help="comma-separated Unix user names")
    serve.add_argument("--instructors", default="", help="comma-separated Unix user names")
    serve.add_argument("--auth", choices=["pam", "shared"], default="pam")
    serve.add_argument("--exchange", default=None, help="exchange root (default: settings)")
    serve.add_argument(
        "--prefix",
        default=None,
        help="where what users' servers run is installed (default: settings, /opt/course-kit)",
    )
    config = sub.add_parser("config", help="write one role's Jupyter config (images, servers)")
    config.add_argument("--role", choices=["student", "instructor"], required=True)
    config.add_argument("--out", type=Path, required=True)
    config.add_argument("--exchange", default=None, help="exchange root (default: settings)")
    config.add_argument("--ngshare", default=None, help="ngshare's URL: the exchange (Kubernetes)")
    args = parser.parse_args(argv)
    conf = settings()
    if args.command == "config":
        exchange = args.exchange or conf["exchange_root"]
        user_config(
            args.role,
            args.out,
            exchange_root=exchange,
            course_id=conf["course_id"],
            ngshare_url=args.ngshare,
        )
        print(f"course_kit.hub: wrote the {args.role} config into {args.out}")
        return 0
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print(
            "course_kit.hub: JupyterHub must run as root to start each user's server as that "
            "user (their own home, file permissions between students): run `sudo make hub`.",
            file=sys.stderr,
        )
        return 2
    students, instructors = _names(args.students), _names(args.instructors)
    missing = [n for n in students + instructors if not _user_exists(n)]
    if missing:
        print(f"course_kit.hub: no such Unix users: {missing} (create them with useradd -m)")
        return 2
    problem = checkout_problem()
    if problem:
        print(f"course_kit.hub: {problem}", file=sys.stderr)
        return 2
    prefix = args.prefix or settings()["runtime_prefix"]
    print(f"course_kit.hub: installing what users' servers run into {prefix}")
    try:
        installed = install_runtime(prefix)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        print(f"course_kit.hub: {err}", file=sys.stderr)
        return 2
    password = None
    if args.auth == "shared":
        password = secrets.token_urlsafe(12)
        print(f"course_kit.hub: the shared password for every user is {password}")
    try:
        env = hub_environment(
            runtime=RUNTIME,
            students=students,
            instructors=instructors,
            ip=args.ip,
            port=args.port,
            auth=args.auth,
            password=password,
            exchange_root=args.exchange,
            **installed,
        )
    except (ValueError, RuntimeError) as err:
        print(f"course_kit.hub: {err}", file=sys.stderr)
        return 2
    for name in students + instructors:
        Path(pwd.getpwnam(name).pw_dir).chmod(0o700)  # homes closed to other users
    for name in instructors:
        install_course(pwd.getpwnam(name).pw_dir, name)
    os.environ.update(env)
    jupyterhub = Path(sys.executable).parent / "jupyterhub"
    os.chdir(RUNTIME)
    os.execv(jupyterhub, [str(jupyterhub), "-f", str(HUB_CONFIG)])
    return 0  # not reached


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def mode(path: str | Path) -> int:
    """The permission bits of ``path`` (``0o1777`` for the exchange)."""
    return stat.S_IMODE(Path(path).stat().st_mode)


if __name__ == "__main__":
    sys.exit(main())
