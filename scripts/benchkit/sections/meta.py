"""Section meta: program 1999 (10k products): mount until ready, ls -lR and find, twice.

Against a local copy of the same tree (directories and sparse files): what the VFS costs
without FUSE. Also the daemon's peak RSS after the listings.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from ..common import META_PROGRAM, BenchError
from ..mounts import mastfs
from ..procs import memory_kb, run, tail
from ..results import Result
from ..session import Session


@dataclass
class MetaResult(Result):
    mount_ready_s: float | None = None
    ls_lR_1_s: float | None = None
    find_1_s: float | None = None
    entries: int | None = None
    ls_lR_2_s: float | None = None
    find_2_s: float | None = None
    ls_R_1_s: float | None = None
    ls_R_2_s: float | None = None
    daemon_kb: dict[str, int] | None = None
    local_ls_lR_1_s: float | None = None
    local_find_1_s: float | None = None
    local_ls_lR_2_s: float | None = None
    local_find_2_s: float | None = None


def timed(shell: str) -> tuple[float, str]:
    """Seconds `sh -c shell` took, and its output."""
    started = time.perf_counter()
    done = run(["sh", "-c", shell], timeout=120)
    if done.returncode != 0:
        raise BenchError(f"{shell}: {tail(done.stderr)}")
    return time.perf_counter() - started, done.stdout.strip()


def measure(session: Session, r: MetaResult) -> None:
    cache = session.fresh("cache")
    session.cold()
    with mastfs(session, META_PROGRAM, cache) as m:
        r.mount_ready_s = m.ready_s
        session.say(f"meta: program {META_PROGRAM} mounted in {m.ready_s:.1f} s")
        r.ls_lR_1_s, _ = timed(f"ls -lR {m.path} > /dev/null")
        r.find_1_s, count = timed(f"find {m.path} | wc -l")
        r.entries = int(count)
        r.ls_lR_2_s, _ = timed(f"ls -lR {m.path} > /dev/null")
        r.find_2_s, count = timed(f"find {m.path} | wc -l")
        r.entries = int(count)
        r.ls_R_1_s, _ = timed(f"ls -R {m.path} > /dev/null")
        r.ls_R_2_s, _ = timed(f"ls -R {m.path} > /dev/null")
        if m.pid is not None:
            r.daemon_kb = memory_kb(m.pid)
        listing = run(["find", str(m.path), "-printf", "%y %s %P\\n"], timeout=120).stdout
    session.say(
        f"meta: {r.entries} entries; ls -lR {r.ls_lR_1_s:.2f} / {r.ls_lR_2_s:.2f} s,"
        f" find {r.find_1_s:.2f} / {r.find_2_s:.2f} s, ls -R {r.ls_R_1_s:.2f} / "
        f"{r.ls_R_2_s:.2f} s"
    )
    local = session.fresh("tree")
    for line in listing.splitlines():
        kind, size, rel = line.split(" ", 2)
        if not rel:
            continue
        if kind == "d":
            (local / rel).mkdir(parents=True, exist_ok=True)
        else:
            with (local / rel).open("wb") as f:
                f.truncate(int(size))
    r.local_ls_lR_1_s, _ = timed(f"ls -lR {local} > /dev/null")
    r.local_find_1_s, _ = timed(f"find {local} | wc -l")
    r.local_ls_lR_2_s, _ = timed(f"ls -lR {local} > /dev/null")
    r.local_find_2_s, _ = timed(f"find {local} | wc -l")
    shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    session.say(f"meta: local copy ls -lR {r.local_ls_lR_2_s:.3f} s, find {r.local_find_2_s:.3f} s")
