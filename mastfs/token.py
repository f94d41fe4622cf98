"""The MAST API token: read from its file or variable, checked, and kept out of reach.

A token file holds exactly one token: printable ASCII without whitespace, at most
`MAX_TOKEN_LENGTH` characters, surrounded by any whitespace (a trailing newline, a CRLF). Anything
else is refused with one line naming the file and what is wrong with it, never its content: a
file with a second line may hold a password or a note, and error messages end up in logs and bug
reports. The file is opened without blocking (a FIFO would wait for a writer forever), must be a
regular file, and only its first `MAX_FILE_BYTES` are read.

A process that holds the token is made not dumpable (`protect_process`): no core file, no
`ptrace` and no `/proc/PID/environ` or `/proc/PID/mem` for anyone but root.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The variable a token is read from when no token file is named.
MAST_TOKEN_ENV = "MAST_API_TOKEN"

# MAST tokens are 32 hexadecimal characters; other bearer tokens (JWTs) run to a few hundred.
MAX_TOKEN_LENGTH = 512
# A token file is read this far and no further (a token and plenty of surrounding whitespace).
MAX_FILE_BYTES = 4096

_PRINTABLE = frozenset(range(0x21, 0x7F))
_WHITESPACE = b" \t\n\r\v\f"

# <linux/prctl.h>
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


class TokenError(Exception):
    """A token that cannot be used; the message is one line for the user, without the token."""


def parse_token(data: bytes, source: str) -> str:
    """The one token in `data` (a file's bytes or a variable's value), surrounding whitespace
    trimmed; `TokenError` naming `source` and what is wrong, never echoing `data`."""
    token = data.strip(_WHITESPACE)
    if not token:
        raise TokenError(f"{source} is empty: it must hold one MAST API token")
    if b"\n" in token or b"\r" in token:
        raise TokenError(f"{source} has more than one line: it must hold only the MAST API token")
    if any(byte in _WHITESPACE for byte in token):
        raise TokenError(f"{source} has whitespace inside the token: it must hold one token")
    if not all(byte in _PRINTABLE for byte in token):
        raise TokenError(
            f"{source} holds characters other than printable ASCII: it must hold one MAST API token"
        )
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(
            f"{source} holds {len(token)} characters, more than a MAST API token "
            f"(at most {MAX_TOKEN_LENGTH})"
        )
    return token.decode("ascii")


def mode_warning(path: Path, mode: int) -> str | None:
    """The warning for a token file whose permission bits let group or others read it."""
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"token file {path} is readable by {_who(mode)} "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
        )
    return None


def _who(mode: int) -> str:
    if mode & stat.S_IRGRP and mode & stat.S_IROTH:
        return "group and others"
    return "group" if mode & stat.S_IRGRP else "others"


def read_token_file(path: Path) -> tuple[str, str | None]:
    """The token in the file at `path` and the warning its mode deserves (or None)."""
    source = f"token file {path}"
    try:
        # O_NONBLOCK: opening a FIFO nobody writes returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise TokenError(f"cannot read {source}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenError(f"{source} is not a regular file")
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TokenError(f"cannot read {source}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise TokenError(f"{source} is larger than {MAX_FILE_BYTES} bytes: it must hold one token")
    return parse_token(data, source), mode_warning(path, info.st_mode)


def find_token(token_file: Path | None) -> tuple[str | None, str | None]:
    """The token every front end uses: from `token_file` (`--token-file`) when one is named,
    else from `$MAST_API_TOKEN`; None when neither holds one. With the warning the token
    file's mode deserves (or None). `TokenError` for an unusable file or variable."""
    if token_file is not None:
        return read_token_file(token_file)
    value = os.environb.get(MAST_TOKEN_ENV.encode())
    if value is None or not value.strip():
        return None, None
    return parse_token(value, f"environment variable {MAST_TOKEN_ENV}"), None


def read_token_fd(fd: int) -> str:
    """The token a parent passed on the pipe `fd` (closed here); see `daemon.spawn`."""
    try:
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TokenError(f"cannot read the token from descriptor {fd}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return parse_token(data[:MAX_FILE_BYTES], "the token passed by the parent process")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _prctl() -> Any:
    """libc's `prctl(option, arg2, arg3, arg4, arg5)`, or None off Linux/glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    prctl.restype = ctypes.c_int
    return prctl


def protect_process() -> bool:
    """Make this process not dumpable (Linux `PR_SET_DUMPABLE` 0); False where that failed.

    Not dumpable: no core file, no `ptrace` attach, and `/proc/PID/environ`, `mem`, `maps` owned
    by root, so neither another user nor a crash leaves the token (or cached exclusive-access
    bytes) on disk. `execve` resets the flag, so every process that holds the token calls this.
    """
    prctl = _prctl()
    if prctl is None:
        log.debug("prctl is not available: the process stays dumpable")
        return False
    if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("cannot make the process non-dumpable: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def is_dumpable() -> bool | None:
    """This process's `PR_GET_DUMPABLE`, or None where prctl is not available."""
    prctl = _prctl()
    if prctl is None:
        return None
    return bool(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
