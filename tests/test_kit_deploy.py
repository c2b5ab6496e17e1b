"""deploy/: make hub's configuration, the Kubernetes image and the Helm values say the same."""

from __future__ import annotations

import json
import re

import pytest
import tomllib
import yaml

from course_kit import hub
from course_kit.nbrun import ROOT

DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


def test_helm_values_carry_the_course_settings(values):
    conf = hub.settings()
    assert values["custom"]["course_id"] == conf["course_id"]
    assert values["custom"]["exchange_root"] == conf["exchange_root"]
    assert values["singleuser"]["defaultUrl"] == conf["default_url"]
    mounts = values["singleuser"]["storage"]["extraVolumeMounts"]
    assert [m["mountPath"] for m in mounts] == [conf["exchange_root"]]
    hook = values["hub"]["extraConfig"]["course-kit-roles"]
    assert "/etc/course-kit/{role}" in hook and "custom.instructors" in hook


def test_the_image_bakes_both_roles_with_the_same_exchange():
    docker = (DEPLOY / "Dockerfile").read_text()
    conf = hub.settings()
    for role in ("student", "instructor"):
        line = re.search(rf"--role {role} --out (\S+)\s*\\?\s*--exchange (\S+)", docker)
        assert line, f"the Dockerfile does not write the {role} config"
        assert line[1] == f"/etc/course-kit/{role}" and line[2] == conf["exchange_root"]
    assert "ENV JUPYTER_CONFIG_PATH=/etc/course-kit/student" in docker
    assert '[hub]"' in docker and "jupyterhub-singleuser" in docker


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
