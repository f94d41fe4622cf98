"""Section memory: the mount daemon's RSS while dd streams the 4 GiB product (at 1, 2, 4 GiB)."""

from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ..common import PROGRAM, BenchError, GiB
from ..mounts import mastfs
from ..procs import cpu_seconds, memory_kb
from ..reads import parse_dd
from ..results import CpuSeconds, Result
from ..session import Session
from ..sim import rel_path


@dataclass
class MemoryResult(Result):
    after_mount_kb: dict[str, int] | None = None  # VmHWM, VmRSS
    cpu_s: CpuSeconds | None = None
    stream_gbps: float | None = None
    samples: list[dict[str, int]] | None = None  # at_bytes, VmHWM, VmRSS
    end_kb: dict[str, int] | None = None


def measure(session: Session, r: MemoryResult) -> None:
    cache = session.fresh("cache")
    session.cold()
    rel = rel_path(session.big)
    sim_pid = session.sim.proc.pid
    with mastfs(session, PROGRAM, cache) as m:
        if m.pid is None:
            raise BenchError("no daemon pid")
        r.after_mount_kb = memory_kb(m.pid)
        proc = subprocess.Popen(
            ["dd", f"if={m.path / rel}", "of=/dev/null", "bs=1M"],
            stderr=subprocess.PIPE,
            text=True,
        )
        cpu_before = (cpu_seconds(m.pid), cpu_seconds(sim_pid))
        marks = [GiB, 2 * GiB, 4 * GiB]
        samples: list[dict[str, int]] = []
        deadline = time.monotonic() + 240
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise BenchError("dd of the 4 GiB product timed out")
                pos = 0
                with suppress(OSError, ValueError):
                    info = Path(f"/proc/{proc.pid}/fdinfo/0").read_text()
                    pos = int(info.split("pos:")[1].split()[0])
                while marks and pos >= marks[0]:
                    samples.append({"at_bytes": marks.pop(0), **memory_kb(m.pid)})
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate()
        result = parse_dd(err)
        r.cpu_s = CpuSeconds(
            daemon=cpu_seconds(m.pid) - cpu_before[0], sim=cpu_seconds(sim_pid) - cpu_before[1]
        )
        r.stream_gbps = result.gbps
        r.samples = samples
        r.end_kb = end_kb = memory_kb(m.pid)
    shutil.rmtree(cache, ignore_errors=True)
    session.say(
        "memory: streaming: "
        + ", ".join(
            f"{s['at_bytes'] // GiB} GiB RSS {s.get('VmRSS', 0) / 1024:.0f} MB" for s in samples
        )
        + f"; peak {end_kb.get('VmHWM', 0) / 1024:.0f} MB;"
        f" {result.gbps:.2f} GB/s over {result.nbytes / GiB:.1f} GiB"
    )
