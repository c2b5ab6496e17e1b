"""Test-session set-up: no test opens a network socket (loopback only), quiet plotting."""

from __future__ import annotations

import os

import pytest

from course_kit import netguard

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one thread each (and in the kernels they start), or
    # torch's spinning threads fight over the cores and everything runs many times slower.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Block every non-loopback connection for the whole session (see netguard.py)."""
    netguard.install()
    yield


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
