"""Real mounts for tests: started through the real CLI, always unmounted.

pyfuse3 allows one mount per process and an in-process bug would deadlock the test, so every
mount is a separate `mastfs mount` daemon. Teardown is idempotent and runs in `finally`:
`fusermount3 -u` and a wait for the daemon to exit (what `mastfs umount` does), then
`fusermount3 -u -z`, then SIGKILL of the daemon.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mastfs import system
from mastfs.system import mounted_paths

MASTFS = [sys.executable, "-m", "mastfs"]


def fuse_unavailable() -> str | None:
    """Why this machine cannot mount a FUSE filesystem, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "FUSE is not available: no /dev/fuse (a container needs --device /dev/fuse)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "FUSE is not available: /dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None:
        return "FUSE is not available: fusermount3 is not installed (apt-get install fuse3)"
    return None


def fuse_mounts() -> list[str]:
    return [point for point, (fstype, _) in mounted_paths().items() if fstype == "fuse.mastfs"]


def is_mounted(path: Path) -> bool:
    return str(path) in fuse_mounts()


def run_cli(
    args: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*MASTFS, *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


@dataclass
class Mount:
    path: Path
    cache_dir: Path
    pid: int | None
    result: subprocess.CompletedProcess[str]


def _daemon_pid(mountpoint: Path) -> int | None:
    # The daemon writes its pid to the runtime dir; read it through the same helper.
    from mastfs.runtime import pidfile_for

    try:
        return int(pidfile_for(mountpoint).read_text().strip())
    except (OSError, ValueError):
        return None


def process_gone(pid: int) -> bool:
    """True once `pid` has exited; a zombie waiting for its (re)parent to reap it counts."""
    return not system.pid_alive(pid)


def force_unmount(path: Path, pid: int | None) -> None:
    system.force_unmount(path, pid)


@contextmanager
def mounted(
    mountpoint: Path,
    args: Sequence[str],
    cache_dir: Path,
    server: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> Iterator[Mount]:
    """`mastfs mount ARGS MOUNTPOINT` in the background; unmounted however the test ends."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    argv = ["mount", *args, "--cache-dir", str(cache_dir)]
    if server:
        argv += ["--server", server]
    argv.append(str(mountpoint))
    result = run_cli(argv, timeout=timeout, env=env)
    pid = _daemon_pid(mountpoint)
    try:
        if result.returncode != 0:
            raise AssertionError(
                f"mount failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        assert is_mounted(mountpoint), f"{mountpoint} not mounted after ready"
        yield Mount(mountpoint, cache_dir, pid, result)
    finally:
        if is_mounted(mountpoint):
            # What `mastfs umount` does (unmount, wait for the daemon to exit), without starting
            # a Python for it; tests of the command itself run it.
            with suppress(subprocess.TimeoutExpired):
                if system.unmount(mountpoint, timeout=30).returncode == 0 and pid is not None:
                    system.wait_gone(pid, 15)
        force_unmount(mountpoint, pid)


@contextmanager
def traversable_dir(prefix: str) -> Iterator[Path]:
    """A folder other users (`nobody`) may traverse but not list or write, for mount points
    they use (pytest's own temporary folders are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class MountWedged(AssertionError):
    """A read of a mount did not finish in time; the mount was aborted."""


def abort_mount_of(path: Path | str) -> str | None:
    """End the daemon of the mastfs mount that holds `path` and lazy-unmount it.

    The kernel aborts a FUSE connection when its daemon's device closes: every request in
    flight fails, so a reader stuck on an unanswered request returns. Nothing here touches
    `path` itself (that could wait on the same daemon). The mount point, or None if `path`
    is on no mastfs mount.
    """
    target = os.path.abspath(path)
    points = [p for p in fuse_mounts() if target == p or target.startswith(p.rstrip("/") + "/")]
    if not points:
        return None
    point = max(points, key=len)
    pid = _daemon_pid(Path(point))
    if pid is not None:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    force_unmount(Path(point), pid)
    return point


def cleanup_stale_mounts(own: Path | None = None) -> None:
    """Lazy-unmount test mounts whose daemon is gone, and every mount under `own`.

    Only mount points under pytest's temporary directories are considered, and a live mount of
    another test session (or a user's own mount) is left alone: stale means the daemon died and
    the mount point answers ENOTCONN.
    """
    for point in fuse_mounts():
        if "/pytest-of-" not in point:
            continue
        mine = own is not None and Path(point).is_relative_to(own)
        if mine or _dead(point):
            subprocess.run(["fusermount3", "-u", "-z", point], capture_output=True, timeout=30)


def _dead(point: str) -> bool:
    try:
        os.stat(point)
    except OSError as exc:
        return exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False
