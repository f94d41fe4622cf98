"""What a mount needs before anything is spawned: its mount point and cache directory checked.

Light on purpose: `mastfs mount` checks these in the parent process, which then starts the
daemon; importing `mount.py` there (FUSE, trio, the cache) would cost the parent its time.
"""

from __future__ import annotations

import os
from pathlib import Path

from mastfs import runtime, system
from mastfs.private import PrivacyError


class MountError(Exception):
    """A mount that cannot start; the message is one line for the user."""


# -- checks that need no network ---------------------------------------------------------------


def check_mountpoint(path: Path) -> Path:
    """The mount point must be an existing, empty, not yet mounted directory."""
    resolved = Path(os.path.abspath(path))
    if system.is_mounted(resolved):
        raise MountError(f"{path} is already a mount point (run: mastfs umount {path})")
    if not resolved.exists():
        raise MountError(f"mount point {path} does not exist (create it with: mkdir -p {path})")
    if not resolved.is_dir():
        raise MountError(f"mount point {path} is not a directory")
    try:
        if any(resolved.iterdir()):
            raise MountError(f"mount point {path} is not empty")
    except PermissionError as exc:
        raise MountError(f"mount point {path} cannot be read: {exc.strerror}") from exc
    return resolved


def check_cache_dir(path: Path) -> Path:
    """The cache directory, created private if missing; refused if others could write it."""
    try:
        return runtime.check_cache_dir(path)
    except PrivacyError as exc:
        raise MountError(str(exc)) from exc
    except OSError as exc:
        raise MountError(
            f"cache directory {path} cannot be written: {exc.strerror or exc}"
        ) from exc
