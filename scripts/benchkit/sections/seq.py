"""Section seq: cold, warm and after-remount sequential reads of the 1 GiB product.

Against curl (the network limit), the no-op FUSE filesystem at the same readahead (the FUSE
limit), a local file in the page cache, the disk under the cache, rclone and httpdirfs.
Rounds interleave each reference with the mastfs runs it is compared with, so that the load of
other jobs on a shared machine drifts into both sides of a ratio alike; medians are reported.
"""

from __future__ import annotations

import shutil
import statistics
from contextlib import ExitStack
from dataclasses import dataclass, field

from mastfs import system

from .. import peers
from ..common import PROGRAM, READAHEADS, RUNS, GiB, MiB
from ..mounts import mastfs
from ..peers import PeerRead
from ..reads import dd
from ..results import CpuSeconds, Result
from ..session import Session
from ..sim import rel_path


@dataclass
class MastfsSeqRun(Result):
    """One round of mastfs: cold, warm in the same mount, after remounts (cache on disk)."""

    mount_ready_s: float | None = None
    readahead_kb: int | None = None
    readahead_wait_s: float | None = None
    cold_gbps: float | None = None
    cold_cpu_s: CpuSeconds | None = None
    cold_fetched: int | None = None
    cold_requests: int | None = None
    warm_gbps: float | None = None
    remount_gbps: float | None = None
    remount_cpu_s: CpuSeconds | None = None
    remount_fetched: int | None = None
    remount_dropped_gbps: float | None = None
    remount_dropped_fetched: int | None = None


@dataclass
class MastfsSeq(Result):
    """mastfs at one readahead: every round, and the medians."""

    runs: list[MastfsSeqRun] = field(default_factory=list)
    cold_gbps: float | None = None
    warm_gbps: float | None = None
    remount_gbps: float | None = None
    remount_dropped_gbps: float | None = None
    readahead_kb: int | None = None


@dataclass
class NoopSeq(Result):
    """The no-op FUSE filesystem at one readahead: cold and warm, every round and medians."""

    cold_gbps_runs: list[float] = field(default_factory=list)
    warm_gbps_runs: list[float] = field(default_factory=list)
    readahead_kb: int | None = None
    cold_gbps: float | None = None
    warm_gbps: float | None = None


@dataclass
class SeqResult(Result):
    curl_gbps_runs: list[float] = field(default_factory=list)
    local_pagecache_gbps_runs: list[float] = field(default_factory=list)
    disk_direct_gbps_runs: list[float] = field(default_factory=list)
    noop_ra1024: NoopSeq = field(default_factory=NoopSeq)
    mastfs_ra1024: MastfsSeq = field(default_factory=MastfsSeq)
    noop_ra0: NoopSeq = field(default_factory=NoopSeq)
    mastfs_ra0: MastfsSeq = field(default_factory=MastfsSeq)
    curl_gbps: float | None = None
    local_pagecache_gbps: float | None = None
    disk_direct_gbps: float | None = None
    rclone: PeerRead | None = None
    httpdirfs: PeerRead | None = None

    def noop(self, readahead_kb: int) -> NoopSeq:
        return self.noop_ra1024 if readahead_kb == 1024 else self.noop_ra0

    def mastfs(self, readahead_kb: int) -> MastfsSeq:
        return self.mastfs_ra1024 if readahead_kb == 1024 else self.mastfs_ra0


def measure(session: Session, r: SeqResult) -> None:
    size = GiB
    rel = rel_path(session.one_gib)
    # The page cache limit: a local file of the same size, read while cached.
    local = session.tmp / "local-1gib.bin"
    peers.write_local_file(local, size)
    with ExitStack() as stack:
        noops = {ra: stack.enter_context(peers.noop(session, ra)) for ra in READAHEADS}
        for ra, mnt in noops.items():
            r.noop(ra).readahead_kb = system.read_readahead_kb(mnt)
        for round_ in range(1, RUNS + 1):
            r.curl_gbps_runs.append(peers.curl_gbps(session, session.one_gib, size))
            r.local_pagecache_gbps_runs.append(peers.page_cache_gbps(local, size))
            r.disk_direct_gbps_runs.append(peers.disk_direct_gbps(session, local, size))
            for ra in READAHEADS:
                # The FUSE limit with the same readahead: cold (page cache dropped), warm.
                n = r.noop(ra)
                session.cold()
                n.cold_gbps_runs.append(dd(noops[ra] / "1gib.bin", size).gbps)
                n.warm_gbps_runs.append(dd(noops[ra] / "1gib.bin", size).gbps)
                one = mastfs_once(session, ra, rel, size)
                r.mastfs(ra).runs.append(one)
                session.say(_progress(round_, one, n, r))
    local.unlink()
    r.curl_gbps = statistics.median(r.curl_gbps_runs)
    r.local_pagecache_gbps = statistics.median(r.local_pagecache_gbps_runs)
    r.disk_direct_gbps = statistics.median(r.disk_direct_gbps_runs)
    for ra in READAHEADS:
        n, out = r.noop(ra), r.mastfs(ra)
        n.cold_gbps = statistics.median(n.cold_gbps_runs)
        n.warm_gbps = statistics.median(n.warm_gbps_runs)
        out.cold_gbps = statistics.median(x.cold_gbps or 0.0 for x in out.runs)
        out.warm_gbps = statistics.median(x.warm_gbps or 0.0 for x in out.runs)
        out.remount_gbps = statistics.median(x.remount_gbps or 0.0 for x in out.runs)
        out.remount_dropped_gbps = statistics.median(
            x.remount_dropped_gbps or 0.0 for x in out.runs
        )
        out.readahead_kb = out.runs[-1].readahead_kb
    r.rclone = peers.peer_read(session, peers.RCLONE, rel, size)
    r.httpdirfs = peers.peer_read(session, peers.HTTPDIRFS, rel, size)


def mastfs_once(session: Session, ra: int, rel: str, size: int) -> MastfsSeqRun:
    """mastfs: cold, warm (same mount), after a remount (cache files still in the OS page
    cache), after a remount with the page cache dropped (cache files read from disk). CPU
    seconds of the daemon and of the simulator say who is busy."""
    one = MastfsSeqRun()
    cache = session.fresh("cache")
    sim = session.sim
    try:
        session.cold()
        with mastfs(session, PROGRAM, cache, ra) as m:
            one.mount_ready_s = m.ready_s
            one.readahead_kb = m.readahead_kb
            one.readahead_wait_s = m.readahead_wait_s
            sim.reset()
            with session.cpu(m.pid) as cpu:
                one.cold_gbps = dd(m.path / rel, size).gbps
            one.cold_cpu_s = cpu
            one.cold_fetched = sim.file_bytes()
            one.cold_requests = sim.file_requests()
            one.warm_gbps = dd(m.path / rel, size).gbps
        with mastfs(session, PROGRAM, cache, ra) as m:
            sim.reset()
            with session.cpu(m.pid) as cpu:
                one.remount_gbps = dd(m.path / rel, size).gbps
            one.remount_cpu_s = cpu
            one.remount_fetched = sim.file_bytes()
        session.cold()
        with mastfs(session, PROGRAM, cache, ra) as m:
            sim.reset()
            one.remount_dropped_gbps = dd(m.path / rel, size).gbps
            one.remount_dropped_fetched = sim.file_bytes()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return one


def _progress(round_: int, one: MastfsSeqRun, n: NoopSeq, r: SeqResult) -> str:
    cpu = one.cold_cpu_s or CpuSeconds()
    return (
        f"seq {round_}/{RUNS} ra={one.readahead_kb} KiB: mastfs cold "
        f"{one.cold_gbps:.2f} GB/s ({one.cold_requests} GETs, "
        f"{(one.cold_fetched or 0) / MiB:.0f} MiB; CPU s daemon "
        f"{cpu.daemon:.1f}, sim {cpu.sim:.1f})"
        f", warm {one.warm_gbps:.2f}, remount {one.remount_gbps:.2f}, "
        f"remount + drop_caches {one.remount_dropped_gbps:.2f} | no-op FUSE "
        f"cold {n.cold_gbps_runs[-1]:.2f}, warm {n.warm_gbps_runs[-1]:.2f}"
        f" | curl {r.curl_gbps_runs[-1]:.2f}, local page cache "
        f"{r.local_pagecache_gbps_runs[-1]:.2f}, disk (O_DIRECT) "
        f"{r.disk_direct_gbps_runs[-1]:.2f}"
    )
