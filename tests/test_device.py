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


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_thread_policy_is_half_the_cores_at_most_four():
    from course_lib import threads

    assert [threads.policy_threads(c) for c in (1, 2, 3, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 4, 4]
    assert threads.usable_cores() >= 1


def test_who_chooses_threads(monkeypatch, keep_threads):
    from course_lib import threads

    monkeypatch.delenv("COURSE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.chosen_threads() == (4, "the kit's policy for 8 cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # pinned by someone (the tests): left alone
    assert threads.chosen_threads()[0] is None
    monkeypatch.setenv("COURSE_THREADS", "3")  # the kit's own setting wins
    assert threads.chosen_threads() == (3, "COURSE_THREADS=3")
    monkeypatch.setenv("COURSE_THREADS", "torch")
    assert threads.chosen_threads()[0] is None
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("COURSE_THREADS", bad)
        with pytest.raises(ValueError, match=f"`COURSE_THREADS` must be a positive int.*{bad!r}"):
            threads.chosen_threads()


def test_pick_device_applies_and_prints_the_thread_policy(monkeypatch, capsys, keep_threads):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    monkeypatch.setenv("COURSE_THREADS", "1")
    device.pick_device("cpu")
    assert torch.get_num_threads() == 1
    assert "CPU threads: 1 (COURSE_THREADS=1" in capsys.readouterr().out
    monkeypatch.delenv("COURSE_THREADS")
    from course_lib import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    device.pick_device("cpu")
    assert torch.get_num_threads() == 2
    assert "CPU threads: 2 (the kit's policy for 4 cores" in capsys.readouterr().out
    torch.set_num_threads(3)
    device.pick_device("cpu", threads=False)  # left alone, silent
    assert torch.get_num_threads() == 3 and capsys.readouterr().out == ""
