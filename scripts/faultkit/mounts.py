"""Mounts the matrix makes: real `mastfs mount` daemons, killed on purpose or always unmounted.

Teardown runs in `finally` and is idempotent: `mastfs umount`, then `mastfs.system`'s lazy
unmount and kill. The daemon's pid comes from its pid file (`mastfs.runtime.pidfile_for`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from mastfs import system
from mastfs.runtime import pidfile_for

from .common import MASTFS, PROGRAM, MatrixError, clean_env


def run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`timeout -k 5 T cmd`: a command that touches a wedged mount must not wedge us."""
    return subprocess.run(
        ["timeout", "-k", "5", str(int(timeout)), *cmd],
        capture_output=True, text=True, env=clean_env(), timeout=timeout + 15,
    )  # fmt: skip


def tail(text: str, n: int = 2) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[:300]


class Mount:
    """A `mastfs mount --program 2734` daemon of `server` at `path` over `cache_dir`."""

    def __init__(self, path: Path, cache_dir: Path, server: str, timeout: float) -> None:
        self.path = path
        self.cache_dir = cache_dir
        self.server = server
        self.timeout = timeout
        self.pid: int | None = None

    def start(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        cmd = [*MASTFS, "mount", "--program", PROGRAM, "--server", self.server]
        cmd += ["--cache-dir", str(self.cache_dir), "--timeout", str(self.timeout)]
        # Every open asks the archive whether the product changed: the content-change cases.
        cmd += ["--metadata-ttl", "0", str(self.path)]
        done = run(cmd, timeout=180)
        self.pid = None
        with suppress(OSError, ValueError):
            self.pid = int(pidfile_for(self.path).read_text().strip())
        if done.returncode != 0 or not system.is_mounted(self.path):
            self.stop()
            raise MatrixError(f"mastfs mount failed: {tail(done.stderr)}")

    def kill9(self) -> None:
        """SIGKILL the daemon, as a crash would; the dead mount point is detached."""
        if self.pid is not None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            system.wait_gone(self.pid, 15)
        system.force_unmount(self.path, self.pid, grace=5)

    def daemon_written_bytes(self) -> int:
        """Bytes the daemon has written to storage so far (/proc/PID/io), 0 when unknown."""
        with suppress(OSError, ValueError, TypeError):
            for line in Path(f"/proc/{self.pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if system.is_mounted(self.path):
            with suppress(subprocess.TimeoutExpired):
                run([*MASTFS, "umount", str(self.path)], timeout=60)
        system.force_unmount(self.path, self.pid, grace=15)

    def product(self, rel: str) -> Path:
        """The product at `rel` in this mount, once `stat` (a child, with a deadline) sees it."""
        path = self.path / rel
        deadline = time.monotonic() + 30
        while run(["stat", str(path)], timeout=30).returncode != 0:
            if time.monotonic() > deadline:
                raise MatrixError(f"{rel} is not in the mount")
            time.sleep(0.2)
        return path


@contextmanager
def mounted(path: Path, cache_dir: Path, server: str, timeout: float) -> Iterator[Mount]:
    """A started mount, stopped however the block ends."""
    mount = Mount(path, cache_dir, server, timeout)
    try:
        mount.start()
        yield mount
    finally:
        mount.stop()
        with suppress(OSError):
            path.rmdir()


@contextmanager
def small_filesystem(path: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of `size_mib` MiB at `path` (owner-only, as a cache directory must be); root."""
    path.mkdir(parents=True, exist_ok=True)
    done = run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(path)], 30
    )
    if done.returncode != 0:
        raise MatrixError(f"cannot mount a tmpfs (needs root): {tail(done.stderr)}")
    try:
        yield path
    finally:
        run(["umount", "-l", str(path)], 30)
