"""Readiness for systemd: the `sd_notify` protocol, one datagram to `$NOTIFY_SOCKET`.

A `Type=notify` service that runs `mastfs mount` learns that the mount is ready from `READY=1`
(with `MAINPID=` naming the background process when the command itself exits) and sees the
summary as the unit's status. Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent.
The protocol is a few lines of stdlib: the `systemd-python` binding needs libsystemd's headers
to build, and the pure-Python `sdnotify` package has not been released since 2017.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def send(*fields: str) -> bool:
    """Send `KEY=VALUE` fields to the service manager; whether there was one to tell."""
    address = os.environ.get(NOTIFY_SOCKET)
    if not address or address[0] not in "/@":
        return False
    # "@name" is a socket in the abstract namespace.
    target = "\0" + address[1:] if address[0] == "@" else address
    message = "\n".join(" ".join(f.split()) for f in fields).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(5)
            sock.sendto(message, target)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", address, exc)
        return False
    return True


def ready(status: str, mainpid: int | None = None) -> bool:
    fields = ["READY=1", f"STATUS={status}"]
    if mainpid is not None:
        fields.append(f"MAINPID={mainpid}")
    return send(*fields)


def stopping() -> bool:
    return send("STOPPING=1")
