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
from nbrun import ROOT

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
        deadline, model = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    model = json.load(response)
                break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, f"make lab exited early:\n{proc.stdout.read()}"
        assert model is not None, "JupyterLab did not answer within 120 s"
        assert model["name"] == "00_start_here.ipynb" and model["type"] == "notebook"
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(url, timeout=5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
