"""`mastfs sim`: run the MAST-compatible archive simulator in the foreground.

The first line on stdout is the base URL (flushed at once), so a parent process can start it
with `--port 0` and read where it listens. SIGINT and SIGTERM stop it cleanly with exit 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from mastfs.sim import profiles
from mastfs.sim.faults import ENCODINGS, FRAMINGS, FaultConfigError, Faults, FaultSettings

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line instead of argparse's usage dump.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mastfs sim",
        description="A MAST-compatible archive simulator (Portal API, downloads, auth) on HTTP.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: requests)")
    p.add_argument(
        "--profile",
        choices=profiles.names(),
        default="fast",
        help='knobs to start with: "fast" (default: at once, no limits) or "mast" (the real '
        "archive's latency, bandwidth and manners; docs/simulator.md)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the profile's times by this (0.1: ten times faster), bandwidth by 1/it",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="set any knob (JSON value, e.g. no_etag='\"mast:\"' or burst_every=20); repeatable",
    )
    p.add_argument(
        "--other-host",
        help="address of the files, resolver and CRDS hosts (default 127.0.0.2 on loopback)",
    )
    f = p.add_argument_group("faults (all off by default; also settable via POST /__sim/faults)")
    f.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    f.add_argument("--bandwidth", type=int, default=0, help="body bytes/s per connection cap")
    f.add_argument("--error-rate", type=float, default=0.0, help="fraction 0..1 of 5xx answers")
    f.add_argument("--error-status", type=int, default=503, help="status of injected errors")
    f.add_argument(
        "--error-downloads-only", action="store_true", help="inject errors only into downloads"
    )
    f.add_argument("--reset-after", type=int, help="reset connections after N body bytes")
    f.add_argument("--reset-fraction", type=float, help="reset after this fraction of a body")
    f.add_argument("--stall-after", type=int, help="pause bodies after N bytes ...")
    f.add_argument("--stall-seconds", type=float, default=0.0, help="... for this many seconds")
    f.add_argument("--ignore-range", action="store_true", help="answer Range with 200 + all")
    f.add_argument(
        "--executing-polls", type=int, default=0, help="answer N polls per request EXECUTING"
    )
    f.add_argument("--fault-scope", default="", help="only URIs/paths containing this text")
    f.add_argument("--max-faults", type=int, help="stop injecting after this many faults")
    f.add_argument("--short-body", type=int, help="end download bodies N bytes early, then close")
    f.add_argument("--long-body", type=int, help="send N bytes more than each body promises")
    f.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="length",
        help="delimit download bodies by Content-Length (default), chunks, or connection close",
    )
    f.add_argument(
        "--content-encoding",
        choices=ENCODINGS,
        default="",
        help="compress download bodies and say so in Content-Encoding",
    )
    f.add_argument(
        "--identity-length",
        action="store_true",
        help="with --content-encoding, keep the unencoded Content-Length",
    )
    f.add_argument(
        "--wrong-length", type=int, default=0, help="add N (may be negative) to Content-Length"
    )
    return p


def _parse_sets(items: list[str]) -> dict[str, object]:
    """`--set KNOB=VALUE` items as knob values (JSON; a bare word is a string)."""
    out: dict[str, object] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq or not name.strip():
            raise FaultConfigError(f"--set {item!r}: expected KNOB=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[name.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        flags = dataclasses.asdict(
            FaultSettings(
                latency_ms=args.latency_ms,
                bandwidth=args.bandwidth,
                error_rate=args.error_rate,
                error_status=args.error_status,
                error_downloads_only=args.error_downloads_only,
                reset_after=args.reset_after,
                reset_fraction=args.reset_fraction,
                stall_after=args.stall_after,
                stall_seconds=args.stall_seconds,
                ignore_range=args.ignore_range,
                executing_polls=args.executing_polls,
                scope=args.fault_scope,
                max_faults=args.max_faults,
                short_body=args.short_body,
                long_body=args.long_body,
                framing=args.framing,
                content_encoding=args.content_encoding,
                encoded_length=not args.identity_length,
                wrong_length=args.wrong_length,
            )
        )
        # Flags left at their defaults do not undo the profile's knobs; --set can.
        overrides = {k: v for k, v in flags.items() if v != getattr(FaultSettings(), k)}
        overrides.update(_parse_sets(args.set))
        faults = Faults(profiles.settings(args.profile, args.time_scale))
        faults.update(overrides)  # checks each knob's name and type
    except FaultConfigError as e:
        print(f"mastfs sim: error: {e}", file=sys.stderr)
        return 2

    from mastfs.sim.server import SimServer

    server = SimServer(host=args.host, port=args.port, faults=faults, other_host=args.other_host)
    try:
        server.start()
    except OSError as e:
        print(
            f"mastfs sim: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(server.url, flush=True)
        tokens = ", ".join(
            f"{t.token} ({t.display_name}: {', '.join(sorted(t.proposals)) or 'no EA programs'})"
            for t in server.tokens.values()
        )
        print(
            f"mastfs sim: MAST archive simulator on {server.url} "
            f"({len(server.catalog.observations)} observations, profile {args.profile}); "
            f"files host {server.files_url}, resolver {server.resolver_url}, "
            f"CRDS {server.crds_url}; tokens: {tokens}. "
            "Ctrl-C stops it.",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
