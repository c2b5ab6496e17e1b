"""deploy/: make hub's configuration, the Kubernetes image and the Helm values say the same."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
import tomllib
import yaml
from traitlets.config import Config

from course_kit import hub, sandbox
from course_kit.nbrun import ROOT

DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


# Zero to JupyterHub's chart keys that these values use (its values schema is not on this
# machine and the tests run offline: a key the chart does not know fails here, not in helm).
CHART_KEYS = {
    "": {"custom", "hub", "singleuser", "proxy", "scheduling", "prePuller", "ingress", "cull"},
    "hub": {"config", "services", "extraConfig", "loadRoles", "extraEnv", "networkPolicy"},
    "singleuser": {
        "image",
        "defaultUrl",
        "cmd",
        "cpu",
        "memory",
        "storage",
        "extraEnv",
        "lifecycleHooks",
        "networkPolicy",
        "uid",
        "fsGid",
    },
    "singleuser.storage": {
        "type",
        "capacity",
        "extraVolumes",
        "extraVolumeMounts",
        "homeMountPath",
    },
}
# What a site's secrets.yaml fills in (never committed): with it the hub starts.
CONFIGURED = {
    "custom": {"instructors": ["prof"]},
    "hub": {
        "config": {
            "GenericOAuthenticator": {
                "client_id": "course",
                "client_secret": "s3cret",
                "oauth_callback_url": "https://hub.example.org/hub/oauth_callback",
                "authorize_url": "https://login.example.org/authorize",
                "token_url": "https://login.example.org/token",
                "userdata_url": "https://login.example.org/userinfo",
            },
            "Authenticator": {"allowed_users": ["prof", "ann", "bob"]},
        },
        "services": {"ngshare": {"apiToken": "0123456789abcdef"}},
    },
}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _run_hub_config(values: dict, monkeypatch) -> Config:
    """What Zero to JupyterHub's hub does with these values: ``hub.config`` into ``c``, then each
    ``hub.extraConfig`` snippet in name order with ``z2jh.get_config`` reading the values."""

    def get_config(key: str, default=None):
        node = values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    monkeypatch.setitem(sys.modules, "z2jh", types.SimpleNamespace(get_config=get_config))
    c = Config()
    for app, cfg in values["hub"].get("config", {}).items():
        c[app].update(cfg)
    for _, snippet in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(snippet, "<extraConfig>", "exec"), {"c": c, "get_config": lambda: c})
    return c


def test_helm_values_carry_the_course_settings(values):
    conf = hub.settings()
    assert values["custom"]["course_id"] == conf["course_id"]
    assert values["singleuser"]["defaultUrl"] == conf["default_url"]
    for section, keys in CHART_KEYS.items():
        node = values
        for part in filter(None, section.split(".")):
            node = node[part]
        assert set(node) <= keys, f"{section or 'top level'}: keys the chart lacks: {node.keys()}"
    # no volume shared between pods: on Kubernetes every pod has uid 1000, so file permissions
    # cannot keep students apart on a shared exchange; the exchange is ngshare's API
    storage = values["singleuser"]["storage"]
    assert storage["extraVolumes"] == [] and storage["extraVolumeMounts"] == []
    assert values["hub"]["services"]["ngshare"]["url"] in values["custom"]["ngshare_url"]


def test_the_values_refuse_to_start_until_configured(values, monkeypatch):
    """Attack: deploying the committed values as they are. The chart's own default lets anyone
    log in (as the instructor, too); these refuse to start and say what to fill in."""
    with pytest.raises(SystemExit) as refused:
        _run_hub_config(values, monkeypatch)
    message = str(refused.value)
    for part in (
        "GenericOAuthenticator.client_id is still CHANGE-ME",
        "allowed_users is empty",
        "custom.instructors is empty",
        "ngshare.apiToken is not set",
    ):
        assert part in message, message
    c = _run_hub_config(_merge(values, CONFIGURED), monkeypatch)
    assert c.JupyterHub.authenticator_class == "generic-oauth"


@pytest.mark.parametrize(
    "change, named",
    [
        ({"hub": {"config": {"JupyterHub": {"authenticator_class": "dummy"}}}}, "'dummy'"),
        ({"hub": {"config": {"Authenticator": {"allow_all": True}}}}, "allow_all"),
        ({"hub": {"config": {"Authenticator": {"allowed_users": []}}}}, "allowed_users"),
        ({"hub": {"services": {"ngshare": {"apiToken": ""}}}}, "apiToken"),
        ({"custom": {"instructors": []}}, "custom.instructors"),
    ],
)
def test_each_way_to_open_the_hub_is_refused(values, monkeypatch, change, named):
    with pytest.raises(SystemExit, match=re.escape(named)):
        _run_hub_config(_merge(_merge(values, CONFIGURED), change), monkeypatch)


def test_roles_give_only_instructors_the_course(values, monkeypatch, tmp_path):
    c = _run_hub_config(_merge(values, CONFIGURED), monkeypatch)
    hook = c.KubeSpawner.pre_spawn_hook

    def spawner(name):
        user = types.SimpleNamespace(name=name)
        return types.SimpleNamespace(user=user, image=None, environment={}, lifecycle_hooks={})

    ann, prof = spawner("ann"), spawner("prof")
    hook(ann)
    hook(prof)
    assert ann.image is None and ann.lifecycle_hooks == {}  # the students' image, no course
    assert ann.environment["JUPYTER_CONFIG_PATH"] == "/etc/course-kit/student"
    assert prof.image == values["custom"]["instructor_image"]
    assert prof.environment["JUPYTER_CONFIG_PATH"] == "/etc/course-kit/instructor"
    # the instructor's first start copies the image's course into ~/course (0700), once
    command = prof.lifecycle_hooks["postStart"]["exec"]["command"]
    image_course = tmp_path / "srv" / "course"
    (image_course / "solutions" / "gram").mkdir(parents=True)
    (image_course / "solutions" / "gram" / "gram.ipynb").write_text("{}")
    script = command[-1].replace("/srv/course", str(image_course))
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run([*command[:-1], script], check=True, env=env)
    assert (home / "course" / "solutions" / "gram" / "gram.ipynb").read_text() == "{}"
    assert (home / "course" / "grading").is_dir() and hub.mode(home / "course") == 0o700
    (home / "course" / "solutions" / "gram" / "gram.ipynb").write_text("graded work")
    subprocess.run([*command[:-1], script], check=True, env=env)  # a restart keeps the work
    assert (home / "course" / "solutions" / "gram" / "gram.ipynb").read_text() == "graded work"


def _context(ignore_file: Path, paths: list[str]) -> set[str]:
    """The paths Docker sends as the build context under ``ignore_file``'s rules (last match
    wins; a rule matching a folder matches what is inside; ``**`` spans folders)."""
    rules = []
    for line in ignore_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((re.compile(regex), keep))
    sent = set()
    for path in paths:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        included = True
        for regex, keep in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                included = keep
        if included:
            sent.add(path)
    return sent


@pytest.fixture(scope="module")
def repository_paths() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    # what a working copy also holds: the grading folders, environments, builds, git itself
    made = [
        "grading/gradebook.db",
        "grading/judge/gram-expected.json",
        "grading/submitted/ann/gram/gram.ipynb",
        ".venv/bin/python",
        "_build/hub/jupyterhub.sqlite",
        ".git/config",
        "course_lib/__pycache__/x.cpython-311.pyc",
        "solutions/gram/.ipynb_checkpoints/gram-checkpoint.ipynb",
    ]
    assert "solutions/gram/gram.ipynb" in tracked
    return tracked + made


SECRET = re.compile(r"^(solutions|grading|\.venv|_build|\.git|tests|notebooks)/|__pycache__")


def test_the_student_image_is_built_from_what_students_need_only(repository_paths):
    """Attack: ``COPY . /srv/course-kit`` put solutions/, grading/ and .venv into every pod."""
    sent = _context(ROOT / ".dockerignore", repository_paths)
    leaked = sorted(p for p in sent if SECRET.search(p))
    assert not leaked, f"the student image would contain: {leaked[:10]}"
    for needed in ("pyproject.toml", "README.md", "course_lib/__init__.py", "course_kit/hub.py"):
        assert needed in sent, needed
    assert "deploy/settings.json" in sent  # course_kit.hub config reads it in the build


def test_the_instructor_image_adds_the_course_and_nothing_else(repository_paths):
    ignore = DEPLOY / "instructor.Dockerfile.dockerignore"
    sent = _context(ignore, repository_paths)
    assert "solutions/gram/gram.ipynb" in sent and "nbgrader_config.py" in sent
    assert "assignments/gram/gram.ipynb" in sent
    leaked = sorted(p for p in sent if re.search(r"^(grading|\.venv|_build|\.git)/|checkpoint", p))
    assert not leaked, leaked
    docker = (DEPLOY / "instructor.Dockerfile").read_text()
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) ", docker, flags=re.M):
        assert any(p == source or p.startswith(source + "/") for p in sent), source


def test_the_image_bakes_both_roles_with_ngshare():
    docker = (DEPLOY / "Dockerfile").read_text()
    for role in ("student", "instructor"):
        line = re.search(
            rf"--role {role} --out (\S+)\s*\\?\s*--exchange \S+ --ngshare (\S+)", docker
        )
        assert line, f"the Dockerfile does not write the {role} config"
        assert line[1] == f"/etc/course-kit/{role}" and line[2] in docker
    assert "ENV JUPYTER_CONFIG_PATH=/etc/course-kit/student" in docker
    assert '[hub]"' in docker and "ngshare_exchange" in docker and "bubblewrap" in docker
    instructor = (DEPLOY / "instructor.Dockerfile").read_text()
    assert "ENV JUPYTER_CONFIG_PATH=/etc/course-kit/instructor" in instructor
    # course-kit grade in ~/course files grades under the Formgrader's course id
    assert f"c.CourseDirectory.course_id = '{hub.settings()['course_id']}'" in instructor


def test_the_ngshare_config_replaces_the_exchange_folder(tmp_path):
    url = "http://ngshare:8080/services/ngshare"
    assert hub.main(["config", "--role", "student", "--out", str(tmp_path), "--ngshare", url]) == 0
    text = (tmp_path / "nbgrader_config.py").read_text()
    assert f"configureExchange(c, {url!r})" in text and "Exchange.root" not in text
    assert "CourseDirectory.root" not in text


def test_grading_in_a_pod_without_user_namespaces_says_so(tmp_path, monkeypatch):
    """A pod that forbids user namespaces: bubblewrap fails, and the grade says it runs without
    the sandbox (auto) or refuses (--sandbox bwrap)."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: str(fake))
    monkeypatch.setattr(sandbox, "_BWRAP_PROBLEM", {})
    why = sandbox.sandbox_problem()
    assert "cannot create namespaces" in why and "No permissions" in why
    assert "WITHOUT bubblewrap" in sandbox.FALLBACK_WARNING.format(why=why)
    with pytest.raises(RuntimeError, match="cannot sandbox with bubblewrap"):
        sandbox.run_sandboxed(["python", "-c", "1"], ROOT, wall_s=5, mode="bwrap")


def test_the_hub_extra_pins_the_same_jupyterhub_as_the_tests():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    hub_extra = project["optional-dependencies"]["hub"]
    assert any(r.startswith("jupyterhub") for r in hub_extra)
    assert set(hub_extra) <= set(project["optional-dependencies"]["test"])


def test_student_config_hides_the_instructor_tools(tmp_path):
    out = hub.user_config("student", tmp_path, exchange_root="/x/exchange", course_id="c1")
    page = json.loads((out / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    assert page == dict.fromkeys(hub.settings()["student_disabled_labextensions"], True)
    server = json.loads((out / "jupyter_server_config.json").read_text())
    assert set(server["ServerApp"]["jpserver_extensions"].values()) == {False}
    nbgrader = (out / "nbgrader_config.py").read_text()
    assert "c.Exchange.root = '/x/exchange'" in nbgrader and "course_id = 'c1'" in nbgrader
    assert "CourseDirectory.root" not in nbgrader  # only instructors have a course folder
    instructor = hub.user_config("instructor", tmp_path / "i", exchange_root="/x", course_id="c1")
    assert "CourseDirectory.root" in (instructor / "nbgrader_config.py").read_text()
    assert not (instructor / "labconfig").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"students": [], "instructors": []}, "name at least one user"),
        ({"students": ["a"], "instructors": ["a"]}, "both student and instructor"),
        ({"students": ["a"], "instructors": [], "auth": "ldap"}, "`auth` must be"),
        ({"students": ["a"], "instructors": [], "auth": "shared", "password": "x"}, "8 characters"),
    ],
)
def test_bad_hub_settings_say_what_is_wrong(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hub.hub_environment(runtime=tmp_path, exchange_root=tmp_path / "ex", **kwargs)


def test_user_config_rejects_an_unknown_role(tmp_path):
    with pytest.raises(ValueError, match="`role` must be 'student' or 'instructor'; got 'ta'"):
        hub.user_config("ta", tmp_path, exchange_root="/x", course_id="c")


# ------------------------------------------------ make hub: what students' servers can reach


def _open_tmp() -> Path:
    base = Path(tempfile.mkdtemp(prefix="course-kit-reach-"))
    base.chmod(0o755)  # made here: the tests below close and open only what they made
    return base


def test_unreachable_names_the_folder_others_cannot_enter():
    base = _open_tmp()
    try:
        home = base / "root"
        (home / "pyenv" / "bin").mkdir(parents=True)
        home.chmod(0o700)  # a pyenv Python in root's home
        python = home / "pyenv" / "bin" / "python3"
        python.write_text("")
        if hub.unreachable(base) is not None:
            pytest.skip(f"{base} itself cannot be reached by other users here")
        assert hub.unreachable(python) == home
        home.chmod(0o711)
        assert hub.unreachable(python) is None
    finally:
        shutil.rmtree(base)


def test_make_hub_refuses_a_checkout_students_could_read(monkeypatch, capsys):
    """Attack: a student's kernel opens <checkout>/solutions/gram/gram.ipynb. make hub checks the
    checkout before it installs or starts anything, and says what to do."""
    base = _open_tmp()
    try:
        kit = base / "kit"
        (kit / "solutions" / "gram").mkdir(parents=True)
        kit.chmod(0o755)
        if hub.unreachable(base) is not None:
            pytest.skip(f"{base} itself cannot be reached by other users here")
        problem_of = hub.checkout_problem
        problem = problem_of(kit)
        assert problem and f"chmod 700 {kit}" in problem and "solutions" in problem
        monkeypatch.setattr(hub, "checkout_problem", lambda root=kit: problem)
        monkeypatch.setattr(hub.os, "geteuid", lambda: 0)
        monkeypatch.setattr(hub, "_user_exists", lambda name: True)

        def must_not_run(*args, **kwargs):
            raise AssertionError("installed before checking the checkout")

        monkeypatch.setattr(hub, "install_runtime", must_not_run)
        assert hub.main(["serve", "--students", "ann", "--instructors", "prof"]) == 2
        assert "chmod 700" in capsys.readouterr().err
        kit.chmod(0o700)
        assert problem_of(kit) is None
        assert hub.mode(kit) == 0o700
    finally:
        shutil.rmtree(base)


def test_install_runtime_never_opens_a_folder_it_did_not_make():
    base = _open_tmp()
    try:
        closed = base / "srv"
        closed.mkdir()
        closed.chmod(0o750)
        if hub.unreachable(base) is not None:
            pytest.skip(f"{base} itself cannot be reached by other users here")
        with pytest.raises(RuntimeError, match=r"other users cannot enter .*srv \(mode 0750\)"):
            hub.install_runtime(closed / "course-kit")
        assert hub.mode(closed) == 0o750 and not (closed / "course-kit").exists()
        someone_elses = base / "opt"
        someone_elses.mkdir()
        (someone_elses / "keep.txt").write_text("mine")
        with pytest.raises(RuntimeError, match="was not made by course_kit.hub"):
            hub.install_runtime(someone_elses)
        assert (someone_elses / "keep.txt").read_text() == "mine"
        exchange = base / "exchange"
        exchange.mkdir()
        exchange.chmod(0o755)
        with pytest.raises(RuntimeError, match=r"mode 0755; nbgrader's exchange must be 1777"):
            hub.prepare_exchange(exchange)
        assert hub.mode(exchange) == 0o755
    finally:
        shutil.rmtree(base)


def test_feedback_can_be_released_after_course_kit_grade(tmp_path, monkeypatch):
    """Attack (issue 25.2): `course-kit grade` then "Release Feedback" stopped with
    FileNotFoundError timestamp.txt: nbgrader's release reads the submission's timestamp and
    secret from the feedback folder, which nbgrader's own autograde fills and the kit's did not."""
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
    from nbgrader.utils import notebook_hash

    from course_kit import exchange
    from course_kit.instructor import course_paths

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # alembic
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    paths = course_paths(tmp_path)
    paths.workspace.mkdir()
    with Gradebook(paths.db_url) as gradebook:  # graded by the kit: no timestamps recorded
        gradebook.add_assignment("gram")
        for student in ("ann", "bob", "lms"):
            gradebook.add_student(student)
            gradebook.update_or_create_submission("gram", student)
    lms = paths.submitted("lms", "gram")  # an LMS upload: a timestamp, no exchange secret
    lms.mkdir(parents=True)
    (lms / "timestamp.txt").write_text("2026-12-07 23:59:00.000000 UTC")
    secrets = {"ann": "a" * 128, "bob": "b" * 128}
    for student, secret in secrets.items():
        sub = paths.submitted(student, "gram")
        sub.mkdir(parents=True)
        (sub / "gram.ipynb").write_text("{}")
        (sub / "timestamp.txt").write_text("2026-12-07 20:00:00.000000 UTC")
        (sub / "submission_secret.txt").write_text(secret)
        paths.feedback(student, "gram").mkdir(parents=True)
        (paths.feedback(student, "gram") / "gram.html").write_text(f"<p>{student}'s feedback")
    paths.autograded("ann", "gram").mkdir(parents=True)  # bob's notebook could not be graded
    root = tmp_path / "exchange"
    root.mkdir()
    root.chmod(0o1777)
    config = copy.deepcopy(paths.config)
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.assignment_id = "gram"
    config.CourseDirectory.course_id = "c1"
    config.Exchange.root = str(root)

    def release() -> None:
        cd = CourseDirectory(config=config)
        ExchangeReleaseFeedback(coursedir=cd, config=config).start()

    with pytest.raises(FileNotFoundError, match="timestamp.txt"):
        release()  # what the kit's grade left before
    written = exchange.keep_submission_files(paths, "gram", ["ann", "bob", "lms"])
    assert len(written) == 6  # ann: autograded + feedback, bob: feedback only
    assert not paths.autograded("bob", "gram").exists()
    release()
    for student, secret in secrets.items():
        page = root / "c1" / "feedback" / f"{notebook_hash(secret=secret, notebook_id='gram')}.html"
        assert page.read_text() == f"<p>{student}'s feedback"
    # the Formgrader lists a submission as graded only when the gradebook has its timestamp
    with Gradebook(paths.db_url) as gradebook:
        for student in secrets:
            stamp = gradebook.find_submission("gram", student).timestamp
            assert stamp is not None and stamp.strftime("%Y-%m-%d %H:%M") == "2026-12-07 20:00"
        assert gradebook.find_submission("gram", "lms").timestamp is None


def test_the_hub_state_is_root_only_and_the_role_configs_readable(tmp_path, monkeypatch):
    """The hub's database and cookie secret stay in a root-only runtime folder; the roles'
    config (which every user's server reads) goes where install_runtime put the environment."""
    monkeypatch.setattr(hub, "proxy_command", lambda prefix: Path("/bin/true"))
    env = hub.hub_environment(
        runtime=tmp_path / "runtime",
        students=["ann"],
        instructors=["prof"],
        exchange_root=tmp_path / "exchange",
        python_bin="/opt/course-kit/env/bin",
        config_dir=tmp_path / "opt" / "config",
    )
    assert hub.mode(tmp_path / "runtime") == 0o700
    assert env["COURSE_HUB_CONFIG"] == str(tmp_path / "opt" / "config")
    assert env["COURSE_HUB_PYTHON_BIN"] == "/opt/course-kit/env/bin"
    for role in ("student", "instructor"):
        folder = tmp_path / "opt" / "config" / role
        assert hub.mode(folder) == 0o755 and hub.mode(folder / "nbgrader_config.py") == 0o644
    assert hub.mode(tmp_path / "opt" / "config") & 0o005 == 0o005
    terminal = (tmp_path / "opt" / "config" / "student" / "jupyter_server_config.py").read_text()
    assert '"shell_command"' in terminal  # a plain shell: a login shell resets PATH
