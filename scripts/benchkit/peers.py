"""The references mastfs is measured against, each measured the way its table row needs.

curl (the network limit, one stream or parallel ranges), the no-op FUSE filesystem (the FUSE
limit), rclone and httpdirfs (other HTTP filesystems, at their own defaults), astroquery's
`download_file` (what header-only access saves), a local file in the page cache, and the disk
under the cache (O_DIRECT reads).
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mastfs import system

from .common import NOOP, PY, RUNS, BenchError, GiB, MiB
from .mounts import fuse_process
from .procs import clean_env, concurrently, run, run_helper
from .reads import dd, direct_read_gbps
from .results import CpuSeconds, Result
from .session import Session

# -- curl --------------------------------------------------------------------------------------


def curl_gbps(session: Session, uri: str, size: int) -> float:
    """One curl of the whole product from the simulator: the network limit."""
    done = run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
         session.sim.download_url(uri)],
        timeout=120,
    )  # fmt: skip
    got, seconds = done.stdout.split()
    if int(float(got)) != size:
        raise BenchError(f"curl got {got} bytes")
    return size / float(seconds) / 1e9


def curl_ranges_gbps(session: Session, uris: tuple[str, ...], part: int) -> float:
    """One curl per product at once, each fetching its first `part` bytes: aggregate GB/s."""
    cmds = [
        ["curl", "-sf", "-o", "/dev/null", "-r", f"0-{part - 1}", "-w", "%{size_download}",
         session.sim.download_url(uri)]
        for uri in uris
    ]  # fmt: skip
    wall, outs, _ = concurrently(cmds)
    got = [int(float(out or 0)) for out in outs]
    if got != [part] * len(cmds):
        raise BenchError(f"parallel curls got {got}")
    return part * len(cmds) / wall / 1e9


# -- local files ---------------------------------------------------------------------------------


def write_local_file(path: Path, size: int) -> None:
    """`size` bytes of a repeated random MiB: the page-cache and disk references read it."""
    block = random.Random(1).randbytes(MiB)
    with path.open("wb") as f:
        for _ in range(size // MiB):
            f.write(block)


def page_cache_gbps(path: Path, size: int) -> float:
    """A local file read while in the page cache (the first read puts it there)."""
    dd(path, size)
    return dd(path, size).gbps


def disk_direct_gbps(session: Session, path: Path, size: int) -> float:
    """The disk's limit after a remount: the cache's files are read O_DIRECT, 8 MiB, 4 at once."""
    session.cold()
    return direct_read_gbps(path, size)


# -- the no-op FUSE filesystem ---------------------------------------------------------------


@contextmanager
def noop(session: Session, readahead_kb: int) -> Iterator[Path]:
    """scripts/noop_fuse.py serving `1gib.bin` and `big.bin` (the 4 GiB product's size)."""
    mnt = session.fresh("noop")
    cmd = [PY, str(NOOP), str(mnt), "--readahead-kb", str(readahead_kb)]
    cmd += ["--file", f"1gib.bin:{GiB}", "--file", f"big.bin:{session.big_size}"]
    with fuse_process(session, cmd, mnt, mnt / "1gib.bin", ready_line=True):
        yield mnt


# -- other HTTP filesystems --------------------------------------------------------------------


@dataclass(frozen=True)
class PeerFs:
    """An HTTP filesystem run at its own defaults (readahead included), own cache directory."""

    name: str  # its command, and its key in the results
    rounds: int  # fresh mounts measured; the median cold one is reported
    command: Callable[[str, Path, Path], list[str]]  # (files URL, mount point, cache) -> argv


def _rclone(files_url: str, mnt: Path, cache: Path) -> list[str]:
    return ["rclone", "mount", ":http:", str(mnt), "--http-url", files_url,
            "--vfs-cache-mode", "full", "--cache-dir", str(cache), "--config", "",
            "--read-only"]  # fmt: skip


def _httpdirfs(files_url: str, mnt: Path, cache: Path) -> list[str]:
    return ["httpdirfs", "-f", "--cache", "--cache-location", str(cache), files_url, str(mnt)]


# rclone's cold rate moves between runs (0.15-0.49 GB/s on one day), and the 3x goal is a ratio
# to it: a median of RUNS fresh mounts, like mastfs's own figure.
RCLONE = PeerFs("rclone", RUNS, _rclone)
# httpdirfs is an order of magnitude slower (17 s a run): once.
HTTPDIRFS = PeerFs("httpdirfs", 1, _httpdirfs)


@dataclass
class PeerRead(Result):
    """A peer filesystem's sequential read: cold (fresh mount and cache), then warm."""

    cold_gbps: float | None = None
    warm_gbps: float | None = None
    cold_cpu_s: CpuSeconds | None = None
    cold_fetched: int | None = None
    readahead_kb: int | None = None
    cold_gbps_runs: list[float] | None = None
    error: str | None = None


def peer_read(session: Session, peer: PeerFs, rel: str, size: int) -> PeerRead:
    """`peer.rounds` fresh mounts, each read cold then warm; errors go into the result."""
    if shutil.which(peer.name) is None:
        session.say(f"seq: {peer.name} not installed")
        return PeerRead(error="not installed")
    try:
        runs: list[PeerRead] = []
        for _ in range(peer.rounds):
            mnt, cache = session.fresh(peer.name), session.fresh(f"{peer.name}-cache")
            session.cold()
            argv = peer.command(f"{session.sim.url}/files/", mnt, cache)
            with fuse_process(session, argv, mnt, mnt / rel) as proc:
                readahead_kb = system.read_readahead_kb(mnt)
                session.sim.reset()
                with session.cpu(proc.pid) as cpu:
                    cold = dd(mnt / rel, size, timeout=120).gbps
                fetched = session.sim.file_bytes()
                warm = dd(mnt / rel, size).gbps
            shutil.rmtree(cache, ignore_errors=True)
            runs.append(PeerRead(cold, warm, cpu, fetched, readahead_kb))
            session.say(f"seq: {peer.name} cold {cold:.3f} GB/s, warm {warm:.2f} GB/s")
    except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
        session.say(f"seq: {peer.name} failed: {exc}")
        return PeerRead(error=str(exc))
    middle = sorted(runs, key=lambda one: one.cold_gbps or 0.0)[len(runs) // 2]
    return PeerRead(
        cold_gbps=middle.cold_gbps,
        warm_gbps=statistics.median(one.warm_gbps or 0.0 for one in runs),
        cold_cpu_s=middle.cold_cpu_s,
        cold_fetched=middle.cold_fetched,
        readahead_kb=runs[-1].readahead_kb,
        cold_gbps_runs=[one.cold_gbps or 0.0 for one in runs],
    )


# -- astroquery ----------------------------------------------------------------------------------


def astroquery_download(session: Session, uri: str, name: str) -> dict[str, Any]:
    """`Observations.download_file` of `uri` from the simulator, in a helper process.

    The helper's answer (seconds, status, bytes) plus the bytes the simulator served.
    """
    xdg = session.fresh("xdg")
    (xdg / "astropy").mkdir()
    (xdg / "astropy" / "astroquery.cfg").write_text(f"[mast]\nserver = {session.sim.url}\n")
    env = clean_env(XDG_CONFIG_HOME=str(xdg), XDG_CACHE_HOME=str(xdg / "cache"))
    target = session.fresh("download") / name
    session.sim.reset()
    got = run_helper("astroquery", uri, str(target), timeout=240, env=env)
    got["fetched"] = session.sim.file_bytes(uri)
    with suppress(OSError):
        target.unlink()
    return got
