"""Test code that reads a mount through a real client library, run in a child Python.

astropy, Pillow or `json` must read the mount through the kernel as a user's program does; in
the pytest process, a daemon that stops answering would leave pytest in a system call no signal
reaches. A `PythonChild` runs such a function in a long-lived child process (one for the
session, `shared_child`, so astropy is imported once) and waits for its answer against a
deadline: when it misses it, the mount's daemon is killed (the kernel then fails the requests
in flight), the child is reaped and the test fails with `MountWedged`.

Functions are sent by reference (pickle), so they must be defined at a module's top level;
arguments and results must pickle too. An exception raised in the child is raised again here,
with the child's traceback attached as a note.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from tests.support.mounting import MountWedged, abort_mount_of

ROOT = Path(__file__).resolve().parents[2]
CALL_TIMEOUT = 180.0
_HEADER = struct.Struct("!Q")
R = TypeVar("R")

_SERVE = """
import pickle, struct, sys, traceback
channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
sys.stdout = sys.stderr  # whatever the test code prints stays off the channel
header = struct.Struct("!Q")
while True:
    head = channel_in.read(header.size)
    if len(head) < header.size:
        break
    request = channel_in.read(header.unpack(head)[0])
    try:
        func, args = pickle.loads(request)
        answer = ("ok", func(*args), "")
    except BaseException as exc:
        answer = ("error", exc, traceback.format_exc())
    try:
        data = pickle.dumps(answer)
    except Exception:
        data = pickle.dumps(("error", AssertionError(repr(answer[1])), answer[2]))
    channel_out.write(header.pack(len(data)) + data)
    channel_out.flush()
"""


class PythonChild:
    """A child Python that runs one function at a time for the test process."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                env=env,
            )
        return self._proc

    def call(
        self,
        func: Callable[..., R],
        *args: Any,
        timeout: float = CALL_TIMEOUT,
        mount: Path | str | None = None,
    ) -> R:
        """`func(*args)` in the child. If it outlives `timeout`, the mount holding `mount` (by
        default: a `Path` among `args`, or the `path` of one) is aborted."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        request = pickle.dumps((func, args))
        proc.stdin.write(_HEADER.pack(len(request)) + request)
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        try:
            head = self._read(proc, _HEADER.size, deadline)
            kind, value, trace = pickle.loads(self._read(proc, _HEADER.unpack(head)[0], deadline))
        except TimeoutError:
            proc.send_signal(signal.SIGKILL)
            paths = (
                [mount]
                if mount is not None
                else [a for a in args if isinstance(a, Path)]
                or [a.path for a in args if isinstance(getattr(a, "path", None), Path)]
            )
            aborted = [abort_mount_of(p) for p in paths]
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            raise MountWedged(
                f"{func.__qualname__} did not finish within {timeout:.0f} s in a child process; "
                f"aborted the mount at {[a for a in aborted if a]}"
            ) from None
        if kind == "error":
            value.add_note(f"raised in a child process:\n{trace}")
            raise value
        return value  # type: ignore[no-any-return]

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], size: int, deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        data = b""
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise AssertionError(f"the child process exited ({proc.wait()})")
            data += chunk
        return data

    def close(self) -> None:
        """End the child: it exits when its input closes; killed if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """End a child started by a test: SIGTERM, then SIGKILL if it has not exited within 10 s;
    its pipes closed."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


_shared: PythonChild | None = None


def shared_child() -> PythonChild:
    """The test session's child Python (started on first use; astropy is imported once)."""
    global _shared
    if _shared is None:
        _shared = PythonChild()
    return _shared


def close_shared_child() -> None:
    if _shared is not None:
        _shared.close()
