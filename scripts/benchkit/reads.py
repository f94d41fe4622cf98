"""Timed reads with dd (one reader, or parallel O_DIRECT quarters), and dd's output parsed."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError, MiB
from .procs import run, tail


@dataclass
class DD:
    """What dd reports: bytes copied and its own seconds."""

    nbytes: int
    seconds: float

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9


_DD_RE = re.compile(r"^(\d+) bytes .* copied, ([\d.e+-]+) s", re.MULTILINE)


def parse_dd(stderr: str) -> DD:
    m = _DD_RE.search(stderr)
    if m is None:
        raise BenchError(f"dd: {tail(stderr)}")
    return DD(int(m.group(1)), float(m.group(2)))


def dd(path: Path, expect: int, count_mib: int | None = None, timeout: float = 180) -> DD:
    """`dd if=path bs=1M`; a BenchError unless exactly `expect` bytes came back."""
    cmd = ["dd", f"if={path}", "of=/dev/null", "bs=1M"]
    if count_mib:
        cmd.append(f"count={count_mib}")
    done = run(cmd, timeout=timeout)
    result = parse_dd(done.stderr)
    if done.returncode != 0 or result.nbytes != expect:
        raise BenchError(f"dd read {result.nbytes} of {expect} bytes: {tail(done.stderr)}")
    return result


def direct_read_gbps(path: Path, size: int, readers: int = 4) -> float:
    """`readers` parallel `dd iflag=direct bs=8M` of `path`'s quarters, GB/s together.

    This is how mastfs reads its run files after a remount (8 MiB, four at a time, O_DIRECT).
    """
    part = size // readers // (8 * MiB)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["dd", f"if={path}", "of=/dev/null", "bs=8M", "iflag=direct",
             f"count={part}", f"skip={i * part}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(readers)
    ]  # fmt: skip
    nbytes = 0
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        nbytes += parse_dd(err).nbytes
    if nbytes != readers * part * 8 * MiB:
        raise BenchError(f"direct reads got {nbytes} bytes")
    return nbytes / (time.perf_counter() - started) / 1e9
