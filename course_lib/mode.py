"""Run-mode switches: quick mode and "nbgrader is executing this notebook".

Quick mode (``COURSE_QUICK=1``, set by the tests and ``make book QUICK=1``, and implied by
nbgrader's ``NBGRADER_EXECUTION``) shrinks sizes and iterations so a notebook runs in about a
minute; default mode gives the pictures the lecture shows.
"""

from __future__ import annotations

import os

QUICK_ENV = "COURSE_QUICK"


def under_nbgrader() -> bool:
    """True while nbgrader executes the notebook (autograde or validate)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def quick_mode() -> bool:
    """True when notebooks should shrink sizes and iterations.

    Set by ``COURSE_QUICK=1`` (the tests and ``make book QUICK=1``) and implied by nbgrader's
    ``NBGRADER_EXECUTION``, so that grading a submission takes seconds.

    >>> quick_mode() in (True, False)
    True
    """
    flag = os.environ.get(QUICK_ENV, "").strip().lower()
    return flag not in ("", "0", "false", "no") or under_nbgrader()
