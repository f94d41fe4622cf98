"""Section random: 64 KiB pread()s at seeded random offsets of the 4 GiB product.

mastfs cold (fresh cache), a second pass in the same mount, and after a remount (disk cache);
against HTTP range GETs on one connection and the no-op FUSE filesystem.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
from dataclasses import dataclass

from .. import peers
from ..common import PROGRAM, RANDOM_READS, RANDOM_SEED, RANDOM_SIZE, MiB
from ..mounts import mastfs
from ..procs import run_helper
from ..results import CpuSeconds, Result
from ..session import Session
from ..sim import rel_path


@dataclass
class Latencies(Result):
    """One pass of reads: latency percentiles and the rate of one reader."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    mibps: float

    @classmethod
    def of(cls, lat: list[float]) -> Latencies:
        return cls(
            p50_ms=pct(lat, 50) * 1000,
            p99_ms=pct(lat, 99) * 1000,
            mean_ms=statistics.fmean(lat) * 1000,
            mibps=len(lat) * RANDOM_SIZE / sum(lat) / MiB,
        )


@dataclass
class RandomResult(Result):
    http: Latencies | None = None
    noop_cold: Latencies | None = None
    noop_warm: Latencies | None = None
    cpu_s: CpuSeconds | None = None
    fetched: int | None = None
    requests: int | None = None
    cold: Latencies | None = None
    second_pass: Latencies | None = None
    remount_fetched: int | None = None
    remount: Latencies | None = None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _passes(got: dict[str, list[list[float]]]) -> list[Latencies]:
    return [Latencies.of(p) for p in got["passes"]]


def measure(session: Session, r: RandomResult) -> None:
    sim = session.sim
    rng = random.Random(RANDOM_SEED)
    offsets = [rng.randrange(0, session.big_size - RANDOM_SIZE) for _ in range(RANDOM_READS)]
    offsets_file = session.tmp / "offsets.json"
    offsets_file.write_text(json.dumps(offsets))
    rel = rel_path(session.big)

    [r.http] = _passes(run_helper("http", sim.download_url(session.big), str(offsets_file)))
    session.say(f"random: HTTP range GETs p50 {r.http.p50_ms:.2f} ms")
    with peers.noop(session, 1024) as mnt:
        session.cold()
        got = run_helper("pread", str(mnt / "big.bin"), str(offsets_file), "2")
    r.noop_cold, r.noop_warm = _passes(got)
    session.say(
        f"random: no-op FUSE p50 {r.noop_cold.p50_ms:.3f} ms cold, "
        f"{r.noop_warm.p50_ms:.3f} ms second pass"
    )
    cache = session.fresh("cache")
    session.cold()
    with mastfs(session, PROGRAM, cache) as m:
        sim.reset()
        with session.cpu(m.pid) as cpu:
            got = run_helper("pread", str(m.path / rel), str(offsets_file), "2", timeout=300)
        r.cpu_s = cpu
        r.fetched = sim.file_bytes(session.big)
        r.requests = sim.file_requests(session.big)
    r.cold, r.second_pass = _passes(got)
    session.say(
        f"random: mastfs cold p50 {r.cold.p50_ms:.2f} ms p99 {r.cold.p99_ms:.2f}"
        f" ms ({r.requests} GETs, {r.fetched / MiB:.0f} MiB); second pass p50 "
        f"{r.second_pass.p50_ms:.3f} ms"
    )
    with mastfs(session, PROGRAM, cache) as m:
        sim.reset()
        got = run_helper("pread", str(m.path / rel), str(offsets_file), "1", timeout=300)
        r.remount_fetched = sim.file_bytes(session.big)
    [r.remount] = _passes(got)
    shutil.rmtree(cache, ignore_errors=True)
    session.say(
        f"random: mastfs after remount p50 {r.remount.p50_ms:.3f} ms, {r.remount.mibps:.0f} MiB/s"
    )
