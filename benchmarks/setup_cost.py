"""What a student's first `make lab` costs: set-up time and the size of the environment.

Clones the repository into a scratch folder (its own fresh ``.venv``), runs the set-up steps one
after another (``make setup`` is what ``make lab`` installs before it starts JupyterLab;
``make setup-test`` is what ``make test`` adds), and prints one Markdown row per step: wall
time, the environment's size on disk after it, the number of installed distributions, and the
largest ones. The CPU column (user + system of make and everything it ran) does not grow when
other work shares the machine; the wall time does. pip's cache is off (``PIP_NO_CACHE_DIR=1``),
as on a student's first install.

    python -m benchmarks.setup_cost                        # HEAD: setup, then setup-test
    python -m benchmarks.setup_cost --rev ec463ae --steps setup   # an older kit, for comparison
    python -m benchmarks.setup_cost --make-args TORCH=cpu  # PyTorch's CPU-only wheels
    python -m benchmarks.setup_cost --dry-run              # `make -n` only (what the test runs)

Minutes and gigabytes: run it by hand, never in the tests (they use ``--dry-run``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def du_bytes(path: Path) -> int:
    """Bytes on disk under ``path`` (regular files, symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def site_packages_sizes(venv: Path, top: int = 4) -> tuple[int, list[tuple[str, int]]]:
    """How many distributions the environment holds, and its largest top-level folders."""
    site = next(venv.glob("lib/python3*/site-packages"), None)
    if site is None:
        return 0, []
    dists = len(list(site.glob("*.dist-info")))
    sizes = [(p.name, du_bytes(p)) for p in site.iterdir() if p.is_dir()]
    return dists, sorted(sizes, key=lambda s: -s[1])[:top]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(ROOT), help="repository to clone")
    parser.add_argument("--rev", default="HEAD", help="revision to check out")
    parser.add_argument("--steps", nargs="+", default=["setup", "setup-test"])
    parser.add_argument("--make-args", nargs="*", default=[], help="e.g. TORCH=cpu")
    parser.add_argument("--label", default=None, help="first column (default: the revision)")
    parser.add_argument("--dry-run", action="store_true", help="only `make -n` (seconds)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="course-kit-setup-"))
    clone = scratch / "kit"
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", args.rev], cwd=clone, check=True)
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_NO_CACHE_DIR"] = "1"
    label = args.label or rev
    print(f"scratch clone of {args.repo} at {rev} in {clone}", file=sys.stderr)
    print(
        "| kit | step | make arguments | wall s | CPU s | .venv GB | distributions | largest (GB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    try:
        for step in args.steps:
            cmd = ["make", *(["-n"] if args.dry_run else []), step, *args.make_args]
            start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (used.ru_utime + used.ru_stime)
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
                raise SystemExit(f"`{' '.join(cmd)}` failed ({done.returncode})")
            venv = clone / ".venv"
            size = du_bytes(venv) if venv.exists() else 0
            dists, largest = site_packages_sizes(venv)
            big = ", ".join(f"{n} {b / 1e9:.2f}" for n, b in largest) or "-"
            print(
                f"| {label} | make {step} | {' '.join(args.make_args) or '-'} | {wall:.0f} "
                f"| {cpu:.0f} | {size / 1e9:.2f} | {dists} | {big} |",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
