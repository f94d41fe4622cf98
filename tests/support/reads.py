"""Reads of a mounted path from a child process, with a timeout.

A read that the daemon never answers leaves its caller in the kernel, where no signal reaches
it; inside pytest that is a run that never ends. Here the caller is a child process (`cat`,
`stat`, `find`, `dd`, `getfattr`, or the session's child Python for `os` calls whose errno
matters), and when it misses its deadline the mount's daemon is killed, which aborts the FUSE
connection, ends every request in flight and fails the test with `MountWedged` instead.

Failures come back as the `OSError` (same errno) the call in process would have raised.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

from tests.support.mounting import MountWedged, abort_mount_of

READ_TIMEOUT = 60.0
# errno for the message a tool prints (strerror, and getfattr's own words for ENODATA).
_ERRNO_OF = {os.strerror(code): code for code in errno.errorcode} | {
    "No such attribute": errno.ENODATA
}


def run_reader(
    argv: Sequence[str], path: Path | str, timeout: float = READ_TIMEOUT, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` (which reads `path`); kill it and abort the mount if it outlives `timeout`."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Error messages are parsed back into errno values: the C locale's words.
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        aborted = abort_mount_of(path)
        # Reaped only once the aborted connection has failed its request.
        with suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=15)
        raise MountWedged(
            f"{' '.join(map(str, argv))} did not finish within {timeout:.0f} s; "
            f"aborted the mount at {aborted}"
        ) from None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _check(done: subprocess.CompletedProcess[bytes], path: Path | str) -> bytes:
    if done.returncode == 0:
        return done.stdout
    message = done.stderr.decode(errors="replace").strip().splitlines()
    last = message[-1] if message else ""
    reason = last.rpartition(": ")[2]
    code = _ERRNO_OF.get(reason)
    if code is None:
        raise AssertionError(f"{done.args} failed ({done.returncode}): {last}")
    raise OSError(code, os.strerror(code), str(path))


def read_bytes(path: Path | str, timeout: float = READ_TIMEOUT) -> bytes:
    return _check(run_reader(["cat", "--", str(path)], path, timeout), path)


def read_text(path: Path | str, timeout: float = READ_TIMEOUT) -> str:
    return read_bytes(path, timeout).decode("utf-8")


def pread(path: Path | str, offset: int, size: int, timeout: float = READ_TIMEOUT) -> bytes:
    """`size` bytes at `offset` (fewer at the end of the file), as `os.pread` of a new fd."""
    argv = [
        "dd",
        f"if={path}",
        "bs=1M",
        f"skip={offset}",
        f"count={size}",
        "iflag=skip_bytes,count_bytes,fullblock",
        "status=none",
    ]
    return _check(run_reader(argv, path, timeout), path)


def sha256(path: Path | str, timeout: float = READ_TIMEOUT) -> str:
    """The hex SHA-256 of the whole file."""
    out = _check(run_reader(["sha256sum", "--", str(path)], path, timeout), path)
    return out.split()[0].decode()


def listdir(path: Path | str, timeout: float = READ_TIMEOUT) -> list[str]:
    argv = ["find", str(path), "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"]
    out = _check(run_reader(argv, path, timeout), path)
    return [os.fsdecode(name) for name in out.split(b"\0") if name]


def stat(path: Path | str, timeout: float = READ_TIMEOUT) -> os.stat_result:
    """`os.stat(path)` (following symlinks), taken by `stat(1)`."""
    fmt = "%f %i %d %h %u %g %s %.9X %.9Y %.9Z"
    out = _check(run_reader(["stat", "-L", "--printf", fmt, "--", str(path)], path, timeout), path)
    raw_mode, *ints, atime, mtime, ctime = out.decode().split()
    mode, ino, dev, nlink, uid, gid, size = int(raw_mode, 16), *map(int, ints)
    times = {"st_atime": float(atime), "st_mtime": float(mtime), "st_ctime": float(ctime)}
    seconds = (int(float(atime)), int(float(mtime)), int(float(ctime)))
    return os.stat_result((mode, ino, dev, nlink, uid, gid, size, *seconds), times)


def exists(path: Path | str, timeout: float = READ_TIMEOUT) -> bool:
    """`Path.exists`: False where there is nothing (or no directory on the way)."""
    try:
        stat(path, timeout)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def getxattr(path: Path | str, name: str, timeout: float = READ_TIMEOUT) -> bytes:
    argv = ["getfattr", "--absolute-names", "--only-values", "-n", name, "--", str(path)]
    return _check(run_reader(argv, path, timeout), path)


def os_call(func: str, *args: Any, timeout: float = READ_TIMEOUT) -> Any:
    """`os.<func>(*args)` in the session's child Python; its result, or its OSError (same errno).

    For calls whose exact errno a test checks (writes to a read-only mount, attributes of
    namespaces the mount does not serve, `access`, `statvfs`). An `open` is closed at once and
    returns None; `walk` returns its whole list.
    """
    from tests.support.child import shared_child

    path = next((a for a in args if isinstance(a, (str, Path))), "")
    return shared_child().call(_os_call, func, args, timeout=timeout, mount=path)


def _os_call(func: str, args: tuple[Any, ...]) -> Any:
    """In the child: the call itself."""
    result = getattr(os, func)(*args)
    if func == "open":
        os.close(result)
        return None
    if func == "walk":
        return list(result)
    return result


def is_dir(path: Path | str, timeout: float = READ_TIMEOUT) -> bool:
    """`Path.is_dir`: False where there is nothing (or no directory on the way)."""
    try:
        return S_ISDIR(stat(path, timeout).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def is_file(path: Path | str, timeout: float = READ_TIMEOUT) -> bool:
    """`Path.is_file`: False where there is nothing (or no directory on the way)."""
    try:
        return S_ISREG(stat(path, timeout).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
