"""How many CPU threads torch uses in the notebooks: one policy, applied by ``pick_device()``.

Every notebook calls :func:`course_lib.device.pick_device` in its set-up cell; that call applies
:func:`apply_thread_policy` and prints the result, so no notebook sets threads itself.

The policy, measured in ``benchmarks/threads.py`` (table in ``benchmarks/README.md``):

* torch's default is one thread per core. On a machine where anything else runs (another
  notebook, JupyterLab, a browser, other users of a shared server), its threads wait for each
  other at every operation: notebook 06 in quick mode took 134–204 s with the default threads
  and 41–58 s with one thread on the same 2-core machine.
* Small-operation code (Efros–Leung's many small products, quilting's FFTs, the seam's dynamic
  programme, the pyramids) gains nothing from more threads even on an idle machine.
* Convolutional networks (VGG-19, the generators) do gain on an idle machine, so the kit uses
  **half the usable cores, at most 4, at least 1**: one thread on a 2-core machine, where the
  other core is left to JupyterLab and everything else; 2 on 4 cores; 4 on 8 or more.

Who decides, first match wins:

1. ``COURSE_THREADS=N`` (``make lab THREADS=N``): exactly ``N`` threads; ``COURSE_THREADS=torch``
   leaves torch's own default.
2. ``OMP_NUM_THREADS`` set by someone (the tests pin it to 1): respected, nothing changed.
3. The policy above.
"""

from __future__ import annotations

import os

THREADS_ENV = "COURSE_THREADS"
MAX_POLICY_THREADS = 4


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def policy_threads(cores: int | None = None) -> int:
    """The kit's default: half the usable cores, at least 1, at most 4.

    >>> [policy_threads(c) for c in (1, 2, 4, 8, 64)]
    [1, 1, 2, 4, 4]
    """
    cores = usable_cores() if cores is None else cores
    return max(1, min(MAX_POLICY_THREADS, cores // 2))


def chosen_threads() -> tuple[int | None, str]:
    """The number of threads to use and why; ``None`` means "leave torch as it is".

    Raises:
        ValueError: ``COURSE_THREADS`` is neither a positive int nor ``torch``.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        if raw.lower() == "torch":
            return None, f"{THREADS_ENV}=torch: torch's default"
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(
                f"`{THREADS_ENV}` must be a positive int (threads) or 'torch'; got {raw!r}"
            )
        return int(raw), f"{THREADS_ENV}={raw}"
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        return None, f"OMP_NUM_THREADS={omp}"
    cores = usable_cores()
    return policy_threads(cores), f"the kit's policy for {cores} cores"


def apply_thread_policy() -> str:
    """Set torch's CPU threads by :func:`chosen_threads`; returns one line saying what and why.

    Safe to call more than once (each notebook's ``pick_device()`` calls it).
    """
    import torch

    n, why = chosen_threads()
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    n = torch.get_num_threads()
    return f"CPU threads: {n} ({why}; {THREADS_ENV}=N or `make lab THREADS=N` to change)"
