"""Mounts the benchmark makes: mastfs daemons and other FUSE processes, always unmounted.

Teardown runs in `finally` and is idempotent: the filesystem's own unmount first, then
`mastfs.system`'s lazy unmount and kill, then the mount point is removed.
"""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mastfs import system
from mastfs.runtime import pidfile_for

from .common import PY, BenchError
from .procs import clean_env, run, tail
from .session import Session

MASTFS = [PY, "-m", "mastfs"]


@dataclass
class Mounted:
    """A mastfs mount that is ready, with the readahead it reads with."""

    path: Path
    pid: int | None
    ready_s: float
    readahead_kb: int | None
    readahead_wait_s: float = 0.0
    log: Path | None = None


@contextmanager
def mastfs(
    session: Session,
    program: str,
    cache_dir: Path,
    readahead_kb: int = 1024,
    server: str | None = None,
    extra: Sequence[str] = (),
) -> Iterator[Mounted]:
    """`mastfs mount --program P [EXTRA]` of the session's simulator (or `server`) on a fresh
    mount point."""
    mnt = session.fresh("mnt")
    cmd = [*MASTFS, "mount", "--program", program, "--server", server or session.sim.url, *extra]
    cmd += ["--cache-dir", str(cache_dir), "--readahead-kb", str(readahead_kb), str(mnt)]
    started = time.perf_counter()
    done = run(cmd, timeout=300)
    ready = time.perf_counter() - started
    pid: int | None = None
    with suppress(OSError, ValueError):
        pid = int(pidfile_for(mnt).read_text().strip())
    try:
        if done.returncode != 0 or not system.is_mounted(mnt):
            raise BenchError(f"mastfs mount failed: {tail(done.stderr)}")
        # Ready is reported just before the daemon raises the readahead (it waits for FUSE
        # INIT): measure only once the value is in place.
        want = readahead_kb if readahead_kb > 0 else None
        waited = time.monotonic()
        deadline = waited + 5
        ra = system.read_readahead_kb(mnt)
        while want is not None and ra != want and time.monotonic() < deadline:
            time.sleep(0.005)
            ra = system.read_readahead_kb(mnt)
        waited = time.monotonic() - waited
        logs = sorted((cache_dir / "logs").glob("mount-*.log"))
        yield Mounted(mnt, pid, ready, ra, waited, logs[-1] if logs else None)
    finally:
        if system.is_mounted(mnt):
            with suppress(subprocess.TimeoutExpired):
                run([*MASTFS, "umount", str(mnt)], timeout=60)
        system.force_unmount(mnt, pid, grace=15)
        with suppress(OSError):
            mnt.rmdir()


@contextmanager
def fuse_process(
    session: Session, cmd: list[str], mnt: Path, probe: Path, ready_line: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """A FUSE filesystem run in the foreground as our child, until `probe` is visible in it.

    With `ready_line`, it must first print a line starting with "ready" (scripts/noop_fuse.py).
    """
    name = Path(cmd[0]).name
    logf = (session.tmp / f"{mnt.name}.log").open("w")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE if ready_line else logf,
        stderr=logf,
        text=True,
        env=clean_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        if ready_line:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline() if ready else ""
            if not line.startswith("ready"):
                raise BenchError(f"{cmd[0]} did not start: {line!r}")
        while not system.is_mounted(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{name} did not mount (log {logf.name})")
            time.sleep(0.05)
        while run(["stat", str(probe)], timeout=30).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{probe} not visible through {name}")
            time.sleep(0.1)
        yield proc
    finally:
        if system.is_mounted(mnt):
            with suppress(subprocess.TimeoutExpired):
                system.unmount(mnt)
        _reap(proc)
        if system.is_mounted(mnt):
            with suppress(subprocess.TimeoutExpired):
                system.unmount(mnt, lazy=True)
        if proc.stdout is not None:
            proc.stdout.close()
        logf.close()
        with suppress(OSError):
            mnt.rmdir()


def _reap(proc: subprocess.Popen[str]) -> None:
    """Wait for our child after its unmount; terminate, then kill, if it does not exit."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
