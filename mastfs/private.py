"""Private files and directories: created owner-only, and refused when others could touch them.

mastfs keeps exclusive-access bytes, query results, pid files and logs on disk. Everything it
creates there is created 0700 (directories) or 0600 (files) from the start, never chmod-ed
afterwards, and opened without following a symlink in the last component. A directory or file
that already exists must belong to this user and be writable by nobody else, as ssh's
StrictModes demands of `~/.ssh`: otherwise another local user could have planted what mastfs
would read (a pickled row, a path that leads out of the cache) or swap it later.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class PrivacyError(Exception):
    """A path others could have touched; the message names it and the fix, in one line."""


def check_owned(path: Path, st: os.stat_result, kind: str) -> None:
    """Refuse `path` (already `lstat`-ed) unless it belongs to us and only we may write it."""
    uid = os.geteuid()
    if st.st_uid != uid:
        raise PrivacyError(
            f"{kind} {path} belongs to uid {st.st_uid}, not to you (uid {uid}): "
            f"use a directory of your own (--cache-dir)"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PrivacyError(
            f"{kind} {path} is writable by others (mode {stat.S_IMODE(st.st_mode):o}): "
            f"run chmod go-w {path}"
        )


def private_dir(path: Path, *, check: bool = True) -> Path:
    """`path` as a directory of ours: missing components are created 0700; the last one, new
    or not, must be a real directory (not a symlink) that we own and only we may write."""
    path = Path(os.path.abspath(path))
    missing = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for component in reversed(missing):
        try:
            os.mkdir(component, DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile by another process: checked below like any other
    if check:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise PrivacyError(f"directory {path} cannot be used: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise PrivacyError(f"{path} is {what}: mastfs needs a directory of its own there")
        check_owned(path, st, "directory")
    return path


def check_private_file(path: Path) -> None:
    """If `path` exists it must be a regular file (not a symlink) we own, not writable by
    others."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise PrivacyError(f"{path} is not a regular file: remove it")
    check_owned(path, st, "file")


def open_private(path: Path | str, flags: int) -> int:
    """`os.open` for our files: 0600 when created, never through a symlink."""
    return os.open(path, flags | _NOFOLLOW, FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a new 0600 file renamed over it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_private(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of our file `path` (refused if others could have written it)."""
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as reader:
        st = os.fstat(reader.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PrivacyError(f"{path} is not a regular file: remove it")
        check_owned(path, st, "file")
        return reader.read(limit)


def confined(root: Path | str, relative: str) -> str:
    """`root/relative` if `relative` names something inside `root`; ValueError otherwise.

    For paths read from the cache's index, which must never lead out of the cache.
    """
    if not relative or "\0" in relative or os.path.isabs(relative):
        raise ValueError(f"not a relative path: {relative!r}")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"path leaves its directory: {relative!r}")
    return os.path.join(root, relative)
