"""``make claims``: run notebooks in default mode and fail on any false claim.

    .venv/bin/python -m course_kit.claims [NOTEBOOK ...] [--timeout SECONDS]

Each notebook runs top to bottom in default mode (``COURSE_QUICK=0``), where a false
``course_lib.claims.claim`` raises; the executed copy is saved into ``_build/executed/full/``
(``make book`` renders from it). Prints a table of each notebook's time and claims.
"""

from __future__ import annotations

import argparse
import sys

from nbclient.exceptions import CellExecutionError

from .nbrun import ROOT, claims_in, execute, failure_message, save_cached


def main(argv: list[str] | None = None) -> int:
    """``make claims``: run notebooks in default mode; fail on any false claim or error."""
    parser = argparse.ArgumentParser(description="run notebooks in default mode, check claims")
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    names = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))
    status = 0
    rows = []
    for name in names:
        try:
            nb, seconds = execute(name, quick=False, timeout=args.timeout)
        except CellExecutionError as err:
            print(f"FAIL  {failure_message(err)}", flush=True)
            rows.append((name, "failed", "-", "-"))
            status = 1
            continue
        save_cached(nb, name, quick=False)
        verdicts = claims_in(nb)
        false = sorted(k for k, held in verdicts.items() if not held)
        print(f"ok    {name}  {seconds:.0f} s, {len(verdicts)} claims", flush=True)
        rows.append((name, f"{seconds:.0f} s", str(len(verdicts)), ", ".join(false) or "none"))
        if false:
            status = 1
    print("\n| notebook | default run | claims | false |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return status


if __name__ == "__main__":
    sys.exit(main())
