"""One benchmark run's state: temporary directory, simulator, notes, clock, page-cache dropping.

Every section receives the `Session`; it owns the simulator and the temporary directory and
`close()` removes both.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mastfs.sim.catalog import BIG_4G_URI, ONE_GIB_URI, PARALLEL_URIS

from .procs import cpu_seconds, drop_caches, run
from .results import CpuSeconds
from .sim import Simulator


class Session:
    """The run's shared state.

    t0:         monotonic start, for the progress lines
    tmp:        the run's temporary directory (mount points, caches, local copies)
    sim:        the simulator every section reads from
    notes:      caveats for the table (printed below it)
    can_drop:   whether the page cache can be dropped (root)
    one_gib, big, parallel: the products read; big_size: the 4 GiB product's size
    """

    def __init__(self, tmp_parent: str | None, sim_args: Sequence[str] = ()) -> None:
        self.t0 = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="mastfs-bench-", dir=tmp_parent)).absolute()
        self.notes: list[str] = []
        self._n = 0
        self.one_gib, self.big, self.parallel = ONE_GIB_URI, BIG_4G_URI, tuple(PARALLEL_URIS)
        try:
            self.sim = Simulator(self.tmp / "sim.log", sim_args)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        try:
            self.big_size = self.head_size(BIG_4G_URI)
        except BaseException:
            self.close()
            raise
        self.can_drop = drop_caches()
        if not self.can_drop:
            self.note("drop_caches needs root: page cache NOT dropped between cold runs")

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.say(f"note: {text}")

    def fresh(self, name: str) -> Path:
        """A new empty directory in the run's temporary directory."""
        self._n += 1
        path = self.tmp / f"{name}-{self._n}"
        path.mkdir()
        return path

    def head_size(self, uri: str) -> int:
        done = run(["curl", "-sfI", self.sim.download_url(uri)], timeout=30)
        m = re.search(r"^content-length:\s*(\d+)", done.stdout, re.IGNORECASE | re.MULTILINE)
        if m is None:
            raise SystemExit(f"bench: HEAD {uri} failed: {done.stdout} {done.stderr}")
        return int(m.group(1))

    def cold(self) -> None:
        """Drop the page cache before a cold measurement, when allowed."""
        if self.can_drop:
            drop_caches()

    @contextmanager
    def cpu(self, pid: int | None) -> Iterator[CpuSeconds]:
        """CPU seconds (user + system) of `pid` and of the simulator during the block."""
        got = CpuSeconds()
        before = (cpu_seconds(pid), cpu_seconds(self.sim.proc.pid))
        wall = time.perf_counter()
        yield got
        got.wall = time.perf_counter() - wall
        got.daemon = cpu_seconds(pid) - before[0]
        got.sim = cpu_seconds(self.sim.proc.pid) - before[1]

    def close(self) -> None:
        self.sim.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
