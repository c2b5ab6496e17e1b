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
servers also run without the formgrader and the "Create Assignment" tools.

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


def settings() -> dict:
    """The course's hub settings (``deploy/settings.json``)."""
    return json.loads(SETTINGS_FILE.read_text())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    path.parent.chmod(0o755)


def user_config(role: str, out: str | Path, *, exchange_root: str | Path, course_id: str) -> Path:
    """Write the Jupyter config folder a ``role`` user's server reads (``JUPYTER_CONFIG_PATH``).

    Args:
        role: ``"student"`` (nbgrader's exchange; no formgrader, no "Create Assignment", no course
            list) or ``"instructor"`` (the same exchange, and the course in ``~/course``).
        out: the folder to write (readable by every user: ``0755``).
        exchange_root: nbgrader's exchange folder (see :func:`prepare_exchange`).
        course_id: the course's id in the exchange.

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
        f"c.Exchange.root = {str(exchange_root)!r}",
    ]
    if role == "instructor":
        lines += [
            "import os",
            "c.CourseDirectory.root = os.path.expanduser(" + repr(settings()["course_root"]) + ")",
        ]
    _write(out / "nbgrader_config.py", "\n".join(lines) + "\n")
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
    """Create nbgrader's exchange folder: world-writable with the sticky bit, like ``/tmp``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o1777)
    return root


def install_course(home: str | Path, owner: str, *, source: Path = ROOT) -> Path:
    """Copy the course (``solutions/``, ``assignments/``, ``nbgrader_config.py``) into
    ``home/course`` for the instructor ``owner``, owned by them and closed to everyone else."""
    course = Path(home) / "course"
    course.mkdir(parents=True, exist_ok=True)
    for name in ("solutions", "assignments"):
        if not (course / name).exists():
            shutil.copytree(source / name, course / name)
    shutil.copy(source / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "grading").mkdir(exist_ok=True)  # the gradebook and submissions (nbgrader_config)
    user = pwd.getpwnam(owner)
    for path in [course, *course.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    Path(home).chmod(0o700)
    return course


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
) -> dict[str, str]:
    """Prepare ``runtime`` (config folders, exchange, proxy) and return the environment with which
    ``jupyterhub -f deploy/jupyterhub_config.py`` serves this course.

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
    runtime.chmod(0o755)
    exchange = prepare_exchange(exchange_root or conf["exchange_root"])
    for role in ("student", "instructor"):
        user_config(role, runtime / role, exchange_root=exchange, course_id=conf["course_id"])
    env = {
        "COURSE_HUB_RUNTIME": str(runtime),
        "COURSE_HUB_PROXY": str(proxy_command(runtime / "proxy")),
        "COURSE_HUB_IP": ip,
        "COURSE_HUB_PORT": str(port),
        "COURSE_HUB_HUB_PORT": str(free_port()),
        "COURSE_HUB_PROXY_API_PORT": str(free_port()),
        "COURSE_HUB_STUDENTS": ",".join(students),
        "COURSE_HUB_INSTRUCTORS": ",".join(instructors),
        "COURSE_HUB_AUTH": auth,
        "COURSE_HUB_PYTHON_BIN": str(Path(sys.executable).parent),
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
    config = sub.add_parser("config", help="write one role's Jupyter config (images, servers)")
    config.add_argument("--role", choices=["student", "instructor"], required=True)
    config.add_argument("--out", type=Path, required=True)
    config.add_argument("--exchange", default=None, help="exchange root (default: settings)")
    args = parser.parse_args(argv)
    conf = settings()
    if args.command == "config":
        exchange = args.exchange or conf["exchange_root"]
        user_config(args.role, args.out, exchange_root=exchange, course_id=conf["course_id"])
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
