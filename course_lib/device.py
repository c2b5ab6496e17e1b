"""Devices, seeding and timing (the run-mode switches live in ``course_lib.mode``).

Notebooks call :func:`pick_device` once at the top, print it, and pass ``device`` along; the
library itself never picks a device (new tensors follow their inputs). :func:`pick_device` also
applies the kit's CPU thread policy (:mod:`course_lib.threads`) and prints it, in one line.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_choice

# The run-mode switches moved to course_lib.mode; these names stay for notebooks that import them
# from here.
from .mode import QUICK_ENV, quick_mode  # noqa: F401
from .mode import under_nbgrader as grading  # noqa: F401

DEVICE_ENV = "COURSE_DEVICE"


def pick_device(prefer: str | None = None, *, threads: bool = True) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    Also sets how many CPU threads torch uses, by :func:`course_lib.threads.apply_thread_policy`
    (``COURSE_THREADS``, else a pinned ``OMP_NUM_THREADS``, else half the usable cores, at most
    4), and prints that line: with torch's default on a busy 2-core machine, notebooks ran 3-4
    times slower (benchmarks/threads.py).

    Args:
        prefer: ``"cuda"``, ``"mps"`` or ``"cpu"`` to force one (also read from the
            ``COURSE_DEVICE`` environment variable); ``None`` picks automatically.
        threads: apply the thread policy and print it (``False``: leave threads alone).

    Returns:
        A ``torch.device``.

    Raises:
        ValueError: an unknown name, or a device that is not available here.

    Example:
        >>> pick_device("cpu", threads=False)
        device(type='cpu')
    """
    device = _choose(prefer or os.environ.get(DEVICE_ENV) or None)
    if threads:
        from .threads import apply_thread_policy

        print(apply_thread_policy())
    return device


def _choose(prefer: str | None) -> torch.device:
    if prefer is not None:
        check_choice(prefer, "prefer", ["cuda", "mps", "cpu"])
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("`prefer` is 'cuda' but no CUDA device is available; use 'cpu'")
        if prefer == "mps" and not _mps_available():
            raise ValueError("`prefer` is 'mps' but MPS is not available; use 'cpu'")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device).

    Args:
        seed: the seed.
        deterministic: also ask torch for deterministic algorithms (slower on the GPU).

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``, for functions that take one.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int; got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work on ``device`` (a no-op on the CPU)."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type == "cuda":
        if torch.cuda.is_available():
            torch.cuda.synchronize(dev)
    elif dev.type == "mps" and _mps_available():
        torch.mps.synchronize()


@dataclass
class Timer:
    """Wall-clock timer that synchronises the GPU before reading the clock.

    Use as a context manager; ``elapsed`` holds seconds afterwards.

    Example:
        >>> with Timer("cpu") as t:
        ...     _ = torch.ones(100).sum()
        >>> t.elapsed >= 0
        True
    """

    device: torch.device | str | None = "cpu"
    elapsed: float = field(default=0.0, init=False)
    _start: float = field(default=0.0, init=False, repr=False)

    def __enter__(self) -> Timer:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.elapsed = time.perf_counter() - self._start

    def __str__(self) -> str:
        return f"{self.elapsed:.3f} s"


def memory_report(device: torch.device | str = "cpu") -> str:
    """One line about memory: allocated / peak for CUDA, the process's resident size otherwise."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        mib = 2**20
        return (
            f"{dev}: {torch.cuda.memory_allocated(dev) / mib:.1f} MiB allocated, "
            f"peak {torch.cuda.max_memory_allocated(dev) / mib:.1f} MiB, "
            f"{torch.cuda.get_device_properties(dev).total_memory / mib:.0f} MiB total"
        )
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return f"{dev}: process peak resident memory {peak:.1f} MiB"
    except ImportError:  # pragma: no cover - Windows
        return f"{dev}: memory report not available on this platform"


def environment_report(device: torch.device | None = None) -> dict[str, str]:
    """Versions and device facts for a notebook's environment check."""
    import matplotlib
    import skimage
    import torchvision

    dev = device or pick_device(threads=False)
    report = {
        "device": str(dev),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "scikit-image": skimage.__version__,
        "quick mode": str(quick_mode()),
        "cpu threads": str(torch.get_num_threads()),
    }
    if dev.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(dev)
    try:
        import ipywidgets

        report["ipywidgets"] = ipywidgets.__version__
    except ImportError:  # pragma: no cover
        report["ipywidgets"] = "missing"
    return report
