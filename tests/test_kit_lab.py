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


def make_dry_run(tmp_path, *args: str, stamps: tuple[str, ...] = (), probe: bool = False) -> str:
    """What `make -n ARGS` would run, for a .venv in tmp_path holding the given stamps; on a
    machine without an NVIDIA GPU and without PyTorch's index unless ARGS set NVIDIA_SMI and
    TORCH_PROBE (the last definition on make's command line wins); ``probe=True`` keeps the
    Makefile's own TORCH_PROBE."""
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    for stamp in stamps:
        (venv / stamp).touch()
        os.utime(venv / stamp, (time.time() + 60, time.time() + 60))  # newer than pyproject
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA_")}
    done = subprocess.run(
        ["make", "-n", "NVIDIA_SMI=false", *([] if probe else ["TORCH_PROBE=false"]), *args]
        + [f"VENV={venv}", "CHROMIUM=/bin/true"],
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


def test_make_lab_without_a_gpu_picks_pytorchs_cpu_wheels_when_the_index_answers(tmp_path):
    """No NVIDIA GPU: the CPU index when it answers, else PyPI's default wheel (as in CI, which
    cannot reach PyTorch's index), each with a message; a GPU, or TORCH=..., decides alone."""
    cpu = make_dry_run(tmp_path, "lab", "TORCH_PROBE=true")
    lines = pip_lines(cpu)
    assert len(lines) == 2, lines
    assert lines[0].endswith("--index-url https://download.pytorch.org/whl/cpu"), lines
    assert "no NVIDIA GPU found: PyTorch's CPU-only wheels" in cpu
    unreachable = make_dry_run(tmp_path, "lab", "TORCH_PROBE=false")
    assert pip_lines(unreachable) == pip_lines(make_dry_run(tmp_path, "lab", "TORCH=pypi"))
    assert (
        len(pip_lines(unreachable)) == 1 and "download.pytorch.org" not in pip_lines(unreachable)[0]
    )
    assert "did not answer within 4 s: PyPI's default wheel" in unreachable
    gpu = make_dry_run(tmp_path, "lab", "NVIDIA_SMI=echo GPU 0: NVIDIA H100", "TORCH_PROBE=true")
    assert len(pip_lines(gpu)) == 1 and "an NVIDIA GPU was found" in gpu
    forced = make_dry_run(tmp_path, "lab", "TORCH=cu126", "TORCH_PROBE=true")
    assert pip_lines(forced)[0].endswith("--index-url https://download.pytorch.org/whl/cu126")
    # nothing is probed or installed once .venv is made
    made = make_dry_run(tmp_path, "lab", "TORCH_PROBE=true", stamps=(".course-kit-installed",))
    assert not pip_lines(made) and "NVIDIA" not in made


def test_make_lab_probes_the_cpu_index_for_real(tmp_path):
    """The probe itself (not replaced): an index that answers on loopback, then a closed port."""
    import http.server
    import threading

    (tmp_path / "site" / "cpu" / "torch").mkdir(parents=True)
    (tmp_path / "site" / "cpu" / "torch" / "index.html").write_text("<a>torch</a>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(tmp_path / "site"), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        lines = pip_lines(make_dry_run(tmp_path, "lab", f"TORCH_URL={url}", probe=True))
    finally:
        server.shutdown()
        server.server_close()
    assert lines[0].endswith(f"--index-url {url}/cpu"), lines
    closed = f"http://127.0.0.1:{free_port()}"
    text = make_dry_run(tmp_path, "lab", f"TORCH_URL={closed}", probe=True)
    assert len(pip_lines(text)) == 1 and "did not answer within" in text


def test_make_lab_threads_and_git_filter(tmp_path):
    text = make_dry_run(tmp_path, "lab", "THREADS=2", stamps=(".course-kit-installed",))
    assert "COURSE_THREADS=2 " in text and "/jupyter lab" in text
    assert "COURSE_THREADS" not in make_dry_run(tmp_path, "lab", stamps=(".course-kit-installed",))
    assert "git config filter.course-kit-nbstrip.clean" in text
    # JupyterLab refreshes git's index after each save (a run-only notebook stays unmodified)
    assert "--ContentsManager.post_save_hook=course_lib.nbstrip.refresh_git_index" in text


def test_make_lab_uses_an_active_course_kit_conda_environment(tmp_path):
    prefix = tmp_path / "conda-env"
    env = {**os.environ, "CONDA_DEFAULT_ENV": "course-kit", "CONDA_PREFIX": str(prefix)}
    done = subprocess.run(
        ["make", "-n", "lab", "TORCH_PROBE=false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert f"{prefix}/bin/python -m pip install --quiet -e ." in done.stdout
    assert f"{prefix}/bin/jupyter lab" in done.stdout and ".venv" not in done.stdout
    other = {**env, "CONDA_DEFAULT_ENV": "base"}
    done = subprocess.run(
        ["make", "-n", "lab", "TORCH_PROBE=false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=other,
        check=True,
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
