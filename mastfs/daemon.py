"""How a mount reports to the user: printed in the foreground, or relayed from a daemon.

Without `--foreground`, `mastfs mount` runs the mount in a detached daemon: the parent starts
`python -m mastfs ARGS --foreground --ready-fd N` in a new session and reads the other end of
that pipe. The daemon sends one tagged line per event (`PipeReporter`): progress, a warning,
ready, or the error that stopped it. The parent prints each as a foreground mount would have
(`ConsoleReporter`) and returns once the mount is ready or has failed, so a user sees the same
lines either way; everything else the daemon says goes to its log file. The MAST token, if any,
reaches the daemon on a second pipe (`--token-fd N`), never in its arguments or environment.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mastfs import notify, runtime
from mastfs.safetext import clean

log = logging.getLogger(__name__)

# The tags of the ready pipe, one per line: "TAG text".
PROGRESS = "P"
WARNING = "W"
READY = "R"
ERROR = "E"
_PREFIX = {PROGRESS: "", WARNING: "warning: ", READY: "", ERROR: "error: "}

# The option that makes a `mastfs mount` the daemon of a parent waiting on file descriptor N.
READY_FD_OPTION = "--ready-fd"
# The option that hands the daemon its MAST token on a pipe, never in argv or the environment.
TOKEN_FD_OPTION = "--token-fd"
# Not passed on to the daemon: the token goes through the token pipe instead.
_TOKEN_ENV = "MAST_API_TOKEN"


class DaemonError(Exception):
    """The daemon went away without a word; the message is one line for the user."""


def show(tag: str, text: str, stream: TextIO | None = None) -> None:
    """Print one event as the user sees it (stderr unless `stream` says otherwise); text from
    the archive may be in it, so control characters never reach the terminal."""
    print(f"mastfs: {_PREFIX[tag]}{clean(text)}", file=stream or sys.stderr, flush=True)


class ConsoleReporter:
    """A foreground mount's (or `mastfs ls`'s) reporter: events go straight to stderr."""

    def progress(self, text: str) -> None:
        show(PROGRESS, text)

    def warning(self, text: str) -> None:
        show(WARNING, text)

    def ready(self, text: str) -> None:
        show(READY, text)


class PipeReporter:
    """The daemon's side of the ready pipe: each event is logged and sent as one tagged line.

    The pipe is closed after `ready` or `error`: the parent then exits, and a write to a pipe
    nobody reads must not fail the mount.
    """

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", buffering=1)

    def _send(self, tag: str, text: str) -> None:
        try:
            self._out.write(f"{tag} {clean(' '.join(text.split()))}\n")
            self._out.flush()
        except (OSError, ValueError):
            pass

    def progress(self, text: str) -> None:
        log.info("%s", text)
        self._send(PROGRESS, text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)
        self._send(WARNING, text)

    def ready(self, text: str) -> None:
        log.info("%s", text)
        self._send(READY, text)
        self.close()

    def error(self, text: str) -> None:
        self._send(ERROR, text)
        self.close()

    def close(self) -> None:
        try:
            self._out.close()
        except OSError:
            pass


def spawn(argv: Sequence[str], log_file: Path, token: str | None = None) -> int:
    """Run `mastfs ARGV` as a detached daemon and relay its reports until it is ready (0) or
    has failed (1); `DaemonError` if it exits without saying either.

    The daemon gets `token` on a pipe of its own, written and closed here: every local user can
    read a command line, and a process's initial environment stays in `/proc/PID/environ` for
    its whole life, so neither carries the token.
    """
    read_fd, write_fd = os.pipe()
    command = [
        sys.executable,
        "-m",
        "mastfs",
        *argv,
        "--foreground",
        READY_FD_OPTION,
        str(write_fd),
    ]
    pass_fds = [write_fd]
    token_fd = None
    if token is not None:
        token_fd = _token_pipe(token)
        command += [TOKEN_FD_OPTION, str(token_fd)]
        pass_fds.append(token_fd)
    # The daemon's readiness reaches systemd from here (`MAINPID=` names it), not from itself.
    env = {k: v for k, v in os.environ.items() if k not in (_TOKEN_ENV, notify.NOTIFY_SOCKET)}
    try:
        with os.fdopen(runtime.open_log(log_file), "ab") as out:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=pass_fds,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
    finally:
        os.close(write_fd)
        if token_fd is not None:
            os.close(token_fd)
    outcome: int | None = None
    with os.fdopen(read_fd) as pipe:
        for line in pipe:
            tag, _, text = line.rstrip("\n").partition(" ")
            if tag not in _PREFIX:
                log.debug("ready pipe: unknown line %r", line)
                continue
            # "mounted ..." is the command's result: stdout, where a script looks for it.
            show(tag, text, sys.stdout if tag == READY else None)
            if tag == READY:
                outcome = 0
                notify.ready(text, mainpid=child.pid)
            elif tag == ERROR:
                outcome = 1
    if outcome is None:
        code = child.wait()
        raise DaemonError(
            f"the mount process exited ({code}) before the mount was ready; log: {log_file}"
        )
    if outcome:
        child.wait(timeout=30)
    return outcome


def _token_pipe(token: str) -> int:
    """The read end of a pipe holding `token` and then end-of-file."""
    read_fd, write_fd = os.pipe()
    try:
        data = token.encode("ascii")
        # A token is far smaller than a pipe's buffer: the write never waits for a reader.
        if os.write(write_fd, data) != len(data):
            raise DaemonError("could not pass the MAST token to the mount process")
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd
