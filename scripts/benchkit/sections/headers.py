"""Section headers: `grep -r` over `headers/` of program 1999 on a modelled wide-area link.

The goal of issue 16: `grep -rl TARGNAME headers/` and `grep -r DATE-OBS headers/`, each on a
fresh mount with an empty cache, fetch on average no more than one block per HDU (a block of
the header cache, `HEADER_BLOCK_SIZE`) and finish at least 20x faster than reading each FITS
file's first MiB one after the other. The link: the simulator's `latency_ms` and `bandwidth`
knobs (80 ms before each answer, 25 MB/s per connection: the download manners of its "mast"
profile), set once the mount is ready. The reference is one client with one keep-alive
connection GETting `Range: bytes=0-1048575` of each FITS file in turn, measured on a sample
spread over the program and extrapolated to all its FITS files (a full run takes ~10 minutes).
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import time
import urllib.parse
from dataclasses import dataclass

from mastfs.cache import HEADER_BLOCK_SIZE

from ..common import META_PROGRAM, BenchError, MiB
from ..mounts import mastfs
from ..procs import run, tail
from ..results import Result
from ..session import Session

LINK = {"latency_ms": 80, "bandwidth": 25_000_000}
REFERENCE_SAMPLE = 120


@dataclass
class GrepRun(Result):
    command: str | None = None
    seconds: float | None = None
    matching_lines: int | None = None
    fetched: int | None = None
    requests: int | None = None
    header_blocks: int | None = None  # 64 KiB blocks of the header cache fetched
    blocks_per_hdu: float | None = None
    product_blocks_per_hdu: float | None = None  # fetched bytes in 1 MiB product blocks
    daemon_cpu_s: float | None = None
    sim_cpu_s: float | None = None
    load_before: float | None = None
    speedup: float | None = None


@dataclass
class HeadersResult(Result):
    program: str | None = None
    link: dict[str, int] | None = None
    header_block: int | None = None
    fits_files: int | None = None
    hdus: int | None = None
    grep_l: GrepRun | None = None
    grep_r: GrepRun | None = None
    reference_files: int | None = None
    reference_s_per_file: float | None = None
    reference_fetched: int | None = None
    reference_total_s: float | None = None  # extrapolated to every FITS file


def fits_uris(session: Session, csv_text: str) -> list[str]:
    rows = csv.DictReader(io.StringIO(csv_text))
    return sorted({r["URI"] for r in rows if r["Filename"].endswith(".fits")})


def first_mib_each(session: Session, uris: list[str]) -> tuple[float, int]:
    """Seconds and bytes of GETting the first MiB of each of `uris` in turn, one connection."""
    url = urllib.parse.urlsplit(session.sim.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    got = 0
    started = time.perf_counter()
    try:
        for uri in uris:
            target = urllib.parse.urlsplit(session.sim.download_url(uri))
            conn.request("GET", f"{target.path}?{target.query}",
                         headers={"Range": f"bytes=0-{MiB - 1}"})  # fmt: skip
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 206:
                raise BenchError(f"reference GET of {uri}: {resp.status}")
            got += len(body)
    finally:
        conn.close()
    return time.perf_counter() - started, got


def grep(session: Session, r: HeadersResult, pattern: str, options: str) -> GrepRun:
    """`grep OPTIONS PATTERN headers/` on a fresh mount of an empty cache, over the link."""
    cache = session.fresh("cache")
    session.cold()
    with mastfs(session, META_PROGRAM, cache) as m:
        if r.fits_files is None:
            listing = run(["cat", str(m.path / "selection.csv")], timeout=60).stdout
            r.fits_files = len(fits_uris(session, listing))
        session.sim.reset()
        session.sim.faults(**LINK)
        command = f"grep {options} {pattern} headers/"
        load = os.getloadavg()[0]
        try:
            with session.cpu(m.pid) as cpu:
                started = time.perf_counter()
                done = run(["sh", "-c", f"cd {m.path} && {command} | wc -l"], timeout=900)
                seconds = time.perf_counter() - started
        finally:
            session.sim.faults()
        if done.returncode != 0:
            raise BenchError(f"{command}: {tail(done.stderr)}")
        got = GrepRun(command, seconds, int(done.stdout.strip()))
        got.fetched = session.sim.file_bytes()
        got.requests = session.sim.file_requests()
        got.daemon_cpu_s, got.sim_cpu_s = round(cpu.daemon, 1), round(cpu.sim, 1)
        got.load_before = load
        counters = json.loads(os.getxattr(m.path, "user.mastfs.cache"))
        got.header_blocks = int(counters.get("headers.misses", 0))
        if r.hdus is None:
            count = f"find {m.path}/headers -name '*.txt' -exec cat {{}} + | grep -c '^# HDU '"
            hdus = run(["sh", "-c", count], timeout=600)
            r.hdus = int(hdus.stdout.strip() or 0)
    shutil.rmtree(cache, ignore_errors=True)
    if r.hdus:
        got.blocks_per_hdu = round(got.header_blocks / r.hdus, 3)
        got.product_blocks_per_hdu = round(got.fetched / MiB / r.hdus, 3)
    session.say(
        f"headers: {command}: {seconds:.1f} s, {got.requests} GETs, "
        f"{got.fetched / MiB:.0f} MiB, {got.blocks_per_hdu} header blocks per HDU, "
        f"CPU daemon {got.daemon_cpu_s} s, simulator {got.sim_cpu_s} s, load {load:.1f}"
    )
    return got


def measure(session: Session, r: HeadersResult) -> None:
    r.program, r.link, r.header_block = META_PROGRAM, LINK, HEADER_BLOCK_SIZE
    r.grep_l = grep(session, r, "TARGNAME", "-rl")
    r.grep_r = grep(session, r, "DATE-OBS", "-r")
    uris = fits_uris(session, _selection(session))
    step = max(1, len(uris) // REFERENCE_SAMPLE)
    sample = uris[::step][:REFERENCE_SAMPLE]
    session.sim.faults(**LINK)
    try:
        seconds, got = first_mib_each(session, sample)
    finally:
        session.sim.faults()
    r.reference_files = len(sample)
    r.reference_s_per_file = round(seconds / len(sample), 4)
    r.reference_fetched = got
    r.reference_total_s = round(r.reference_s_per_file * len(uris), 1)
    for g in (r.grep_l, r.grep_r):
        if g.seconds:
            g.speedup = round(r.reference_total_s / g.seconds, 1)
    session.say(
        f"headers: reference, first MiB of each FITS file in turn: {r.reference_s_per_file:.3f}"
        f" s per file x {len(uris)} files = {r.reference_total_s:.0f} s (sample of {len(sample)})"
    )


def _selection(session: Session) -> str:
    """selection.csv of the program, from `mastfs ls --csv` (no mount needed)."""
    from ..mounts import MASTFS

    done = run([*MASTFS, "ls", "--csv", "--program", META_PROGRAM, "--server", session.sim.url],
               timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"mastfs ls: {tail(done.stderr)}")
    return done.stdout
