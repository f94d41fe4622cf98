"""Section parallel: 8 dd processes each reading 512 MiB of a different product, against 8 curls
of the same ranges."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from .. import peers
from ..common import PARALLEL_MIB, PROGRAM, BenchError, MiB
from ..mounts import mastfs
from ..procs import concurrently
from ..reads import parse_dd
from ..results import CpuSeconds, Result
from ..session import Session
from ..sim import rel_path


@dataclass
class ParallelResult(Result):
    curl_gbps: float | None = None
    cpu_s: CpuSeconds | None = None
    mastfs_gbps: float | None = None
    mastfs_each_gbps: list[float] | None = None
    fetched: int | None = None
    requests: int | None = None


def measure(session: Session, r: ParallelResult) -> None:
    part = PARALLEL_MIB * MiB
    r.curl_gbps = peers.curl_ranges_gbps(session, session.parallel, part)
    session.say(f"parallel: 8 curls {r.curl_gbps:.2f} GB/s aggregate")
    cache = session.fresh("cache")
    session.cold()
    with mastfs(session, PROGRAM, cache) as m:
        session.sim.reset()
        cmds = [
            ["dd", f"if={m.path / rel_path(uri)}", "of=/dev/null", "bs=1M",
             f"count={PARALLEL_MIB}"]
            for uri in session.parallel
        ]  # fmt: skip
        with session.cpu(m.pid) as cpu:
            wall, _, errs = concurrently(cmds)
        r.cpu_s = cpu
        each = [parse_dd(err) for err in errs]
        if any(d.nbytes != part for d in each):
            raise BenchError(f"parallel dd read {[d.nbytes for d in each]}")
        r.mastfs_gbps = part * len(cmds) / wall / 1e9
        r.mastfs_each_gbps = [d.gbps for d in each]
        r.fetched = session.sim.file_bytes()
        r.requests = session.sim.file_requests()
    shutil.rmtree(cache, ignore_errors=True)
    session.say(
        f"parallel: mastfs {r.mastfs_gbps:.2f} GB/s aggregate, "
        f"{r.fetched / MiB:.0f} MiB fetched for {len(cmds) * PARALLEL_MIB} MiB read"
    )
