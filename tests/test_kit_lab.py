"""`make lab` really starts JupyterLab: on a free loopback port, serving the start notebook."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
import tomllib

from course_kit.nbrun import ROOT


def make_dry_run(tmp_path, *args: str, stamps: tuple[str, ...] = ()) -> str:
    """What `make -n ARGS` would run, for a .venv in tmp_path holding the given stamps."""
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    for stamp in stamps:
        (venv / stamp).touch()
        os.utime(venv / stamp, (time.time() + 60, time.time() + 60))  # newer than pyproject
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA_")}
    done = subprocess.run(
        ["make", "-n", *args, f"VENV={venv}", "CHROMIUM=/bin/true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout


def pip_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " -m pip install" in line]


def test_make_lab_installs_only_what_the_notebooks_need(tmp_path):
    first = pip_lines(make_dry_run(tmp_path, "lab"))
    assert len(first) == 1 and first[0].endswith("-m pip install --quiet -e ."), first
    assert "download.pytorch.org" not in "\n".join(first)  # default: PyPI's wheel (CUDA on Linux)
    # no second kernel: the notebooks' "python3" is the environment's own
    assert "ipykernel install" not in make_dry_run(tmp_path, "lab")


def test_make_test_after_make_lab_adds_only_the_test_extras(tmp_path):
    lines = pip_lines(make_dry_run(tmp_path, "test", stamps=(".course-kit-installed",)))
    assert lines and all(line.endswith('-e ".[test]"') for line in lines), lines
    both = (".course-kit-installed", ".course-kit-test-installed")
    assert not pip_lines(make_dry_run(tmp_path, "test", stamps=both))
    assert not pip_lines(make_dry_run(tmp_path, "lab", stamps=(".course-kit-installed",)))


def test_make_lab_torch_cpu_uses_pytorchs_cpu_index_first(tmp_path):
    lines = pip_lines(make_dry_run(tmp_path, "lab", "TORCH=cpu"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_reqs = [r for r in project["dependencies"] if r.split(">")[0] in ("torch", "torchvision")]
    assert len(lines) == 2 and len(torch_reqs) == 2, lines
    assert lines[0].endswith("--index-url https://download.pytorch.org/whl/cpu"), lines[0]
    for req in torch_reqs:  # the same version ranges as pyproject.toml
        assert f'"{req.replace(" ", "")}"' in lines[0], (req, lines[0])
    assert lines[1].endswith("-m pip install --quiet -e ."), lines  # then the rest, from PyPI
    cuda = pip_lines(make_dry_run(tmp_path, "lab", "TORCH=cu126"))[0]
    assert cuda.endswith("--index-url https://download.pytorch.org/whl/cu126")


def test_make_lab_threads_and_git_filter(tmp_path):
    text = make_dry_run(tmp_path, "lab", "THREADS=2", stamps=(".course-kit-installed",))
    assert "COURSE_THREADS=2 " in text and "/jupyter lab" in text
    assert "COURSE_THREADS" not in make_dry_run(tmp_path, "lab", stamps=(".course-kit-installed",))
    assert "git config filter.course-kit-nbstrip.clean" in text


def test_make_lab_uses_an_active_course_kit_conda_environment(tmp_path):
    prefix = tmp_path / "conda-env"
    env = {**os.environ, "CONDA_DEFAULT_ENV": "course-kit", "CONDA_PREFIX": str(prefix)}
    done = subprocess.run(
        ["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, env=env, check=True
    )
    assert f"{prefix}/bin/python -m pip install --quiet -e ." in done.stdout
    assert f"{prefix}/bin/jupyter lab" in done.stdout and ".venv" not in done.stdout
    other = {**env, "CONDA_DEFAULT_ENV": "base"}
    done = subprocess.run(
        ["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, env=other, check=True
    )
    assert ".venv/bin/jupyter lab" in done.stdout and str(prefix) not in done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_the_start_notebook():
    port, token = free_port(), "course-kit-test"
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"PORT={port}", "NO_BROWSER=1", f"TOKEN={token}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"},
    )
    url = f"http://127.0.0.1:{port}/api/contents/notebooks/00_start_here.ipynb?content=0"
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        deadline, model = time.time() + 240, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    model = json.load(response)
                break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, f"make lab exited early:\n{proc.stdout.read()}"
        assert model is not None, "JupyterLab did not answer within 240 s"
        assert model["name"] == "00_start_here.ipynb" and model["type"] == "notebook"
        # the whole kit is reachable from the file browser, assignments included
        top = urllib.request.Request(
            url.split("/api/contents/")[0] + "/api/contents?content=1", headers=request.headers
        )
        with urllib.request.urlopen(top, timeout=10) as response:
            names = {item["name"] for item in json.load(response)["content"]}
        assert {"notebooks", "assignments", "README.md"} <= names
        # one kernel in the launcher: the environment's own python3, which the notebooks name
        specs = urllib.request.Request(
            url.split("/api/contents/")[0] + "/api/kernelspecs", headers=request.headers
        )
        with urllib.request.urlopen(specs, timeout=10) as response:
            kernels = json.load(response)["kernelspecs"]
        assert "python3" in kernels and "course-kit" not in kernels, sorted(kernels)
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(url, timeout=5)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything `make` started with it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue
