"""`scripts/bench`: arguments, the run of the sections, bench.json and the docs' table.

Imports of the measuring code wait until the arguments are parsed, so `--list` and `--helper`
start quickly (and `--list` needs none of the project's dependencies).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __doc__ as package_doc
from .common import BUDGET_S, DOC, ROOT, SECTION_NAMES
from .table import BEGIN, END, Row, render_block, render_table, write_doc

if TYPE_CHECKING:
    from .session import Session


def parse_args(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description=(package_doc or "").split("\n\nThe package, by layer:")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--only", help="comma-separated sections (default: all); leaves docs alone")
    p.add_argument("--list", action="store_true", help="list the sections and exit")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out", help="where bench.json goes")
    p.add_argument("--tmp", help="parent of the temporary directory (default: $TMPDIR or /tmp)")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/performance.md")
    p.add_argument("--helper", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    from .wan import add_arguments

    add_arguments(p)
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    p, args = parse_args(argv)
    if args.helper:
        from .helper import helper_main

        helper_main(args.helper[0], args.helper[1:])
        return 0
    if args.wan:
        if args.list:
            from .wan import WAN_SECTIONS

            print("\n".join(WAN_SECTIONS))
            return 0
        logging.basicConfig(level=logging.WARNING)
        from .wan import main as wan_main

        return wan_main(args)
    if args.list:
        print("\n".join(SECTION_NAMES))
        return 0
    chosen = SECTION_NAMES
    if args.only:
        chosen = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in chosen if s not in SECTION_NAMES]
        if unknown:
            p.error(
                f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTION_NAMES)}"
            )
    for tool in ("curl", "dd", "fusermount3", "timeout"):
        if shutil.which(tool) is None:
            p.error(f"{tool} is required")
    logging.basicConfig(level=logging.WARNING)

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    return run(args, chosen)


def run(args: argparse.Namespace, chosen: tuple[str, ...]) -> int:
    from .goals import build_rows
    from .sections import SECTIONS, run_section
    from .session import Session

    started = datetime.datetime.now(datetime.UTC)
    load_start = os.getloadavg()
    session = Session(args.tmp)
    session.say(f"simulator {session.sim.url} (pid {session.sim.proc.pid}); temp {session.tmp}")
    results: dict[str, Any] = {}
    try:
        for name in chosen:
            if time.monotonic() - session.t0 > BUDGET_S:
                results[name] = {"error": "skipped: time budget spent"}
                session.say(f"{name}: skipped (time budget)")
                continue
            results[name] = run_section(session, SECTIONS[name])
    finally:
        session.close()
    command = "scripts/bench" + (f" --only {args.only}" if args.only else "")
    report(args, "bench", command, session, (started, load_start), results, build_rows(results))
    return 0


def report(
    args: argparse.Namespace,
    kind: str,
    command: str,
    session: Session,
    start: tuple[datetime.datetime, tuple[float, float, float]],
    results: dict[str, Any],
    rows: list[Row],
    notes: list[str] | None = None,
    markers: tuple[str, str] = (BEGIN, END),
) -> None:
    """Print the table, write `kind`.json (or `kind`-partial.json with --only) and, for a
    full run, the table between `markers` in docs/performance.md. `start`: when the run
    started and the load average then; `notes` default to the session's."""
    from .machine import machine

    started, load_start = start
    seconds = time.monotonic() - session.t0
    info = machine()
    info["loadavg_start"], info["loadavg_end"] = load_start, os.getloadavg()
    notes = session.notes if notes is None else notes
    when = f"{started:%Y-%m-%d %H:%M}"
    block = render_block(command, when, seconds, info, render_table(rows), notes)
    print()
    print(block)
    args.out.mkdir(parents=True, exist_ok=True)
    out = {
        "date": started.isoformat(),
        "command": command,
        "seconds": seconds,
        "machine": info,
        "notes": notes,
        "results": results,
        "table": [row.to_json() for row in rows],
    }
    name = f"{kind}.json" if not args.only else f"{kind}-partial.json"
    (args.out / name).write_text(json.dumps(out, indent=1) + "\n")
    print(f"raw numbers: {args.out / name}")
    if not args.only and not args.no_doc:
        write_doc(block, *markers)
        print(f"table written to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
