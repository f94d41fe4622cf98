"""`scripts/fault-matrix`: arguments, the run of the cases, the table, fault-matrix.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import cases as C
from .common import DOC, MatrixError
from .scenarios import Outcome, run_case, world
from .table import render, summary, write_doc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/fault-matrix",
        description="Every fault of the archive simulator against real mastfs mounts, every "
        "byte compared with a second (honest) simulator; prints one markdown table.",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="the mounts' --timeout (10)")
    p.add_argument("--only", metavar="CASES", help="comma-separated case names (see --list)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--out", type=Path, metavar="JSON", help="write the outcomes as JSON here")
    p.add_argument("--doc", action="store_true", help=f"write the table into {DOC.name}")
    p.add_argument(
        "--patience", type=float, default=180.0,
        help="seconds a reader may take before it counts as hung and is killed (180)",
    )  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        chosen = C.by_name(args.only)
    except KeyError as exc:
        print(f"fault-matrix: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.list:
        for case in C.CASES:
            readers = "/".join(case.readers) or "-"
            print(f"{case.name:16} {readers:11} {case.what}")
        return 0
    if os.geteuid() != 0:
        print("fault-matrix: not root: the full-disk case is skipped", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="mastfs-fault-matrix-"))
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        with world(tmp, args.timeout, C.SCRIPT_SIZES, args.patience) as w:
            for n, case in enumerate(chosen):
                if case.needs_root and os.geteuid() != 0:
                    outcomes.append(Outcome(case.name, "-", skipped="needs root"))
                    continue
                for reader in case.readers or ("-",):
                    out = run_case(w, case, reader, product=n)
                    outcomes.append(out)
                    if out.skipped is not None:
                        continue
                    print(
                        f"fault-matrix: {case.name}/{reader}: {out.corrupt} corrupt, "
                        f"{out.error_count} errors, slowest {out.slowest:.2f} s, "
                        f"recovered {out.recovered} ({out.seconds:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    except MatrixError as exc:
        print(f"fault-matrix: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    block = render(outcomes, args.timeout)
    print(block)
    print()
    print(summary(outcomes))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "timeout": args.timeout,
            "seconds": round(time.monotonic() - started, 1),
            "outcomes": [out.to_json() for out in outcomes],
        }
        args.out.write_text(json.dumps(body, indent=2) + "\n")
    if args.doc:
        stamp = time.strftime("%Y-%m-%d")
        write_doc(
            DOC,
            f"Run of {stamp}, `scripts/fault-matrix --timeout {args.timeout:g}`:\n\n"
            f"{block}\n\n{summary(outcomes)}",
        )
    bad = any(out.corrupt or not out.recovered_ok for out in outcomes if out.skipped is None)
    return 1 if bad else 0
