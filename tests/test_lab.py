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

from course_kit.nbrun import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
