"""This machine's mounts and processes: mountinfo, process liveness, unmounting, FUSE tuning.

Shared by the CLI, the mount daemon, the tests, the benchmark and the no-op FUSE reference,
so that each of these questions has one answer. Blocking and small; no trio.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

log = logging.getLogger(__name__)

MASTFS_FSTYPES = ("fuse.mastfs", "fuse")
# What the FUSE connection of a mount is tuned to (see `tune_fuse_connection`).
FUSE_MAX_BACKGROUND = 64
FUSE_CONGESTION_THRESHOLD = 48


def mounted_paths() -> dict[str, tuple[str, str]]:
    """Mount point -> (fstype, "major:minor") from /proc/self/mountinfo."""
    found: dict[str, tuple[str, str]] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) < 5 or not right:
            continue
        point = parts[4].encode().decode("unicode_escape")
        found[point] = (right.split()[0], parts[2])
    return found


def absolute(path: Path | str) -> str:
    """A path as mountinfo spells it (absolute, not resolved through symlinks)."""
    return os.path.abspath(path)


def is_mounted(path: Path | str, fstype: str | None = None) -> bool:
    entry = mounted_paths().get(absolute(path))
    return entry is not None and (fstype is None or entry[0] == fstype)


def is_mastfs_mount(path: Path | str) -> bool:
    entry = mounted_paths().get(absolute(path))
    return entry is not None and entry[0] in MASTFS_FSTYPES


def device_of(path: Path | str) -> str | None:
    """The "major:minor" of the mount at `path`, or None when nothing is mounted there."""
    entry = mounted_paths().get(absolute(path))
    return entry[1] if entry else None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting to be reaped counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; whether it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def fusermount() -> list[str]:
    """The unmount command for FUSE mounts of this machine (without its flags)."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    return [tool, "-u"] if tool else ["umount"]


def unmount_command(path: Path | str, lazy: bool = False) -> list[str]:
    base = fusermount()
    if base == ["umount"]:
        return ["umount", *(["-l"] if lazy else []), absolute(path)]
    return [*base, *(["-z"] if lazy else []), absolute(path)]


def unmount(
    path: Path | str, lazy: bool = False, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the unmount command; its completed process (the caller reads the outcome)."""
    return subprocess.run(
        unmount_command(path, lazy), capture_output=True, text=True, timeout=timeout
    )


def force_unmount(path: Path | str, pid: int | None, grace: float = 5.0) -> None:
    """Lazy-unmount `path` if mounted, then give `pid` `grace` seconds before SIGKILL.

    Idempotent; for teardown paths (tests, benchmarks) that must leave nothing behind.
    """
    if is_mounted(path):
        with suppress(subprocess.TimeoutExpired):
            unmount(path, lazy=True)
    if pid is not None and not wait_gone(pid, grace):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, grace)


def bdi_readahead_path(path: Path | str) -> Path | None:
    device = device_of(path)
    return None if device is None else Path("/sys/class/bdi") / device / "read_ahead_kb"


def read_readahead_kb(path: Path | str) -> int | None:
    """The kernel readahead of the mount at `path`, in KiB (None when unknown)."""
    bdi = bdi_readahead_path(path)
    try:
        return None if bdi is None else int(bdi.read_text())
    except (OSError, ValueError):
        return None


def set_readahead_kb(path: Path | str, readahead_kb: int) -> bool:
    """Write the mount's readahead once; whether it reads back as written.

    The kernel resets the value when it processes FUSE INIT, so a daemon calls this until it
    holds (`mount.tune_readahead`). Needs root.
    """
    bdi = bdi_readahead_path(path)
    if bdi is None:
        return False
    bdi.write_text(str(readahead_kb))
    return int(bdi.read_text()) == readahead_kb


def tune_fuse_connection(path: Path | str) -> None:
    """More FUSE requests in flight for the mount at `path` (kernel defaults: 12 and 9)."""
    device = device_of(path)
    if device is None:
        return
    minor = device.partition(":")[2]
    conn = Path("/sys/fs/fuse/connections") / minor
    for name, value in (
        ("max_background", FUSE_MAX_BACKGROUND),
        ("congestion_threshold", FUSE_CONGESTION_THRESHOLD),
    ):
        try:
            (conn / name).write_text(str(value))
        except OSError as exc:
            log.debug("fuse connection %s: cannot set %s: %s", minor, name, exc)
