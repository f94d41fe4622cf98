"""Commands that act on a running mount through its mount point: unmount, re-select, status.

A running mount is reached only as any program could reach it: the unmount tool, the
extended attributes of its root (`xattrs.py`), and the pid file its daemon writes. Each command
takes plain values and raises `ControlError` with one line for the user.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mastfs import runtime, system
from mastfs.selection import Selection
from mastfs.xattrs import XATTR_SELECTION, XATTR_STATUS, XATTR_SUMMARY

log = logging.getLogger(__name__)

# How long `umount` waits for the daemon to exit once the kernel has let go of the mount.
EXIT_TIMEOUT = 15.0
# How long a lazy unmount waits for an idle daemon before saying it lives on.
LAZY_GRACE = 2.0


class ControlError(Exception):
    """A command on a running mount failed; the message is one line for the user."""


@dataclass(frozen=True)
class SelectionInfo:
    """What a mount's root says about its selection."""

    selection: str  # as JSON (`Selection.to_json`)
    summary: str  # `12 of 40 files selected (...)`


def _mastfs_mount(mountpoint: Path) -> Path:
    """The absolute path of `mountpoint` (named as the user gave it in errors), if it is ours."""
    path = Path(os.path.abspath(mountpoint))
    if not system.is_mastfs_mount(path):
        raise ControlError(f"{mountpoint} is not a mastfs mount")
    return path


def _daemon_pid(path: Path) -> int | None:
    return runtime.read_pid(path)


def umount(mountpoint: Path, lazy: bool = False) -> str | None:
    """Unmount (`lazy`: even if busy), then wait for the mount's process to exit; with `lazy`
    a note when it still serves readers of the detached mount."""
    path = _mastfs_mount(mountpoint)
    # Read before unmounting: the daemon removes its pid file on the way out.
    pid = _daemon_pid(path)
    command = system.unmount_command(path, lazy=lazy)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        text = reason[-1] if reason else f"{command[0]} exited {done.returncode}"
        if "busy" in text.lower():
            raise ControlError(
                f"{mountpoint} is busy (a process is using it); close it or use --lazy"
            )
        raise ControlError(f"cannot unmount {mountpoint}: {text}")
    if pid is None:
        return None
    if lazy:
        # Detached: the kernel keeps the connection until the last open file is closed, and
        # the daemon serves those readers until then. Not an error to wait for.
        if system.wait_gone(pid, LAZY_GRACE):
            return None
        return (
            f"{mountpoint} is detached; its mount process {pid} ends when the last program "
            "reading from it closes its files"
        )
    if not system.wait_gone(pid, EXIT_TIMEOUT):
        raise ControlError(f"unmounted, but the mount process {pid} has not exited")
    return None


def select(mountpoint: Path, selection: Selection | None = None) -> SelectionInfo:
    """Change the mount's selection (when given); the selection and summary it then shows."""
    path = _mastfs_mount(mountpoint)
    if selection is not None:
        try:
            os.setxattr(path, XATTR_SELECTION, selection.to_json().encode())
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise ControlError("the mount rejected the selection") from exc
            raise ControlError(
                f"cannot change the selection of {mountpoint}: {exc.strerror}"
            ) from exc
    try:
        return SelectionInfo(
            selection=os.getxattr(path, XATTR_SELECTION).decode(),
            summary=os.getxattr(path, XATTR_SUMMARY).decode(),
        )
    except OSError as exc:
        # E.g. ENOTCONN: the mount's process has died and left the mount point behind.
        raise ControlError(f"cannot read the selection of {mountpoint}: {exc.strerror}") from exc


def status(mountpoint: Path) -> dict[str, object]:
    """The mount's status report (`status.gather`), which only its owner and root may read."""
    path = _mastfs_mount(mountpoint)
    try:
        raw = os.getxattr(path, XATTR_STATUS)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ControlError(
                f"the status of {mountpoint} is for the user who mounted it (and root) only"
            ) from exc
        raise ControlError(f"cannot read the status of {mountpoint}: {exc.strerror}") from exc
    try:
        report = json.loads(raw)
    except ValueError as exc:
        raise ControlError(f"{mountpoint} answered a malformed status") from exc
    if not isinstance(report, dict):
        raise ControlError(f"{mountpoint} answered a malformed status")
    return report
