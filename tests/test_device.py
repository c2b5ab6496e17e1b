"""course_lib.device: device choice, seeding, timer, quick mode."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_lib import device


def test_pick_device_override_and_errors(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert device.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert device.pick_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="`prefer` must be one of"):
        device.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            device.pick_device("cuda")


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    device.seed_everything(3)
    first = draw()
    gen = device.seed_everything(3)
    assert draw() == first
    assert torch.equal(
        torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(3))
    )
    with pytest.raises(TypeError, match="`seed`"):
        device.seed_everything(1.5)


def test_quick_mode_flags(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("COURSE_QUICK", "0")
    assert not device.quick_mode()
    monkeypatch.setenv("COURSE_QUICK", "1")
    assert device.quick_mode()
    monkeypatch.setenv("COURSE_QUICK", "")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert device.quick_mode() and device.grading()


def test_timer_and_reports():
    with device.Timer("cpu") as t:
        sum(range(10000))
    assert t.elapsed > 0 and str(t).endswith(" s")
    assert "MiB" in device.memory_report("cpu")
    report = device.environment_report(torch.device("cpu"))
    assert report["torch"] == torch.__version__ and report["device"] == "cpu"
