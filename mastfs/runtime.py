"""Where a mount keeps its pid file and its daemon log, and the defaults every front end shares.

The pid file lives in `$XDG_RUNTIME_DIR/mastfs`, or without one in a 0700 directory under the
user's default cache directory (never in a shared temporary directory, where another user could
plant a symlink in its place); the daemon's log in the cache directory's `logs/`. Both are
named by the mount point (`mount_id`), so `mastfs umount` finds them from the path alone, and
both are created owner-only without following symlinks (`mastfs.private`).

Every front end (the mount, `mastfs ls`, the fsspec filesystem) finds the archive server and the
cache directory the same way: `server_url` and `default_cache_dir`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mastfs.private import (
    PrivacyError,
    check_private_file,
    open_private,
    private_dir,
    write_private,
)

DEFAULT_SERVER = "https://mast.stsci.edu"
SERVER_ENV = "MASTFS_SERVER"


def server_url(value: str | None = None) -> str:
    """The archive's base URL: `value` (`--server`), else `$MASTFS_SERVER`, else MAST itself;
    `ValueError` naming it when it is not `http(s)://host[:port]`."""
    server = (value or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", server):
        raise ValueError(f"invalid server URL {server!r} (expected http(s)://host[:port])")
    return server


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mastfs"


def check_cache_dir(path: Path) -> Path:
    """The cache directory, created private if missing; `PrivacyError` if others could write
    it or it is not ours, `OSError` if it cannot be made."""
    return private_dir(path)


def runtime_dir() -> Path:
    """The user's private directory for pid files (created 0700, checked as ssh would)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "mastfs" if base else default_cache_dir() / "run"
    return private_dir(path)


def mount_id(mountpoint: Path) -> str:
    """A short stable name for a mount point: its pid file and daemon log are named by it."""
    return hashlib.sha256(str(Path(os.path.abspath(mountpoint))).encode()).hexdigest()[:16]


def pidfile_for(mountpoint: Path) -> Path:
    return runtime_dir() / f"{mount_id(mountpoint)}.pid"


def write_pid(mountpoint: Path) -> Path:
    """Record this process as the mount's daemon; the pid file's path."""
    path = pidfile_for(mountpoint)
    write_private(path, str(os.getpid()).encode())
    return path


def read_pid(mountpoint: Path) -> int | None:
    """The pid recorded for a mount point, or None."""
    try:
        path = pidfile_for(mountpoint)
        check_private_file(path)
        with os.fdopen(open_private(path, os.O_RDONLY), "rb") as reader:
            return int(reader.read(32).strip())
    except (OSError, ValueError, PrivacyError):
        return None


def log_path(cache_dir: Path, mountpoint: Path) -> Path:
    """The daemon's log file for `mountpoint` (its directory is created private)."""
    return private_dir(cache_dir / "logs") / f"mount-{mount_id(mountpoint)}.log"


def open_log(path: Path) -> int:
    """A descriptor appending to the daemon log at `path` (0600, never through a symlink)."""
    check_private_file(path)
    return open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
