"""The parent's side of a reader child (reader.py): start it, follow its reads, tally them.

A reader that outlives its deadline is killed (SIGKILL ends a FUSE request it waits on); if it
still does not exit, the caller's `abort` ends the mount's daemon, which fails every request in
flight. Either way the run is marked `wedged`, and nothing here ever blocks without a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PY, RANDOM_CHUNK, READER, SEQ_CHUNK, clean_env


@dataclass
class Tally:
    """What one or more readers saw."""

    reads: int = 0
    bytes: int = 0
    corrupt: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    wedged: int = 0
    unfinished: int = 0

    def add(self, other: Tally) -> None:
        self.reads += other.reads
        self.bytes += other.bytes
        self.corrupt += other.corrupt
        self.errors.update(other.errors)
        self.slowest = max(self.slowest, other.slowest)
        self.wedged += other.wedged
        self.unfinished += other.unfinished

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "reads": self.reads,
            "bytes": self.bytes,
            "corrupt": self.corrupt,
            "errors": dict(self.errors),
            "slowest_s": round(self.slowest, 3),
            "wedged": self.wedged,
            "unfinished": self.unfinished,
        }


def spec(
    path: Path,
    mode: str,
    size: int,
    ref: Path,
    count: int = 0,
    seed: int = 0,
    pause_after: int | None = None,
) -> dict[str, Any]:
    """A reader's arguments: `mode` "seq" (the whole file, 1 MiB reads) or "random"."""
    chunk = SEQ_CHUNK if mode == "seq" else RANDOM_CHUNK
    return {
        "path": str(path), "mode": mode, "chunk": chunk, "count": count, "seed": seed,
        "ref": str(ref), "size": size, "pause_after": pause_after,
    }  # fmt: skip


class Reader:
    """One reader child, followed line by line."""

    def __init__(self, args: dict[str, Any], abort: Callable[[], None] | None = None) -> None:
        self.abort = abort
        self.tally = Tally()
        self.ended = False
        self.paused = False
        self._buffer = b""
        self.complaint = ""
        self.proc = subprocess.Popen(
            [PY, str(READER), json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )

    def _take(self, record: dict[str, Any]) -> None:
        if "paused" in record:
            self.paused = True
        elif "end" in record:
            self.ended = True
        else:
            t = self.tally
            t.reads += 1
            t.bytes += int(record["n"])
            t.corrupt += int(record["bad"])
            t.slowest = max(t.slowest, float(record["s"]))
            if record["err"] is not None:
                t.errors[str(record["err"])] += 1

    def _pump(self, until: float) -> bool:
        """Take what the child printed, waiting until `until`; False once it has closed."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, until - time.monotonic()))
        if not ready:
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._take(json.loads(line))
        return True

    def wait_reads(self, n: int, deadline: float) -> bool:
        """Wait until the child has reported `n` reads (or paused); whether it did in time."""
        open_ = True
        while open_ and self.tally.reads < n and not self.paused:
            if time.monotonic() >= deadline:
                return False
            open_ = self._pump(deadline)
        return self.tally.reads >= n or self.paused

    def wait_paused(self, deadline: float) -> bool:
        """Wait until the child has paused (`pause_after`); whether it did in time."""
        open_ = True
        while open_ and not self.paused:
            if time.monotonic() >= deadline:
                return False
            open_ = self._pump(deadline)
        return self.paused

    def resume(self) -> None:
        assert self.proc.stdin is not None
        self.paused = False
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self, deadline: float) -> Tally:
        """Follow the child to its end, or kill it at `deadline`; its tally."""
        while self._pump(deadline):
            if time.monotonic() >= deadline:
                self._kill()
                break
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._kill()
        if not self.ended:
            self.tally.unfinished += 1
            if self.proc.stderr is not None and self.proc.returncode is not None:
                self.complaint = self.proc.stderr.read().decode(errors="replace").strip()[-300:]
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.tally

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.tally.wedged += 1
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                if self.abort is not None:
                    self.abort()
                self.proc.wait(timeout=30)


def run_all(readers: list[Reader], deadline: float) -> Tally:
    """Finish every reader (each by the same deadline); their tallies together."""
    total = Tally()
    for reader in readers:
        total.add(reader.finish(deadline))
    return total
