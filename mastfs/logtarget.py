"""The background daemon's logs in syslog or journald, through `/dev/log`.

`--log syslog` (or `auto` under systemd, which sets `INVOCATION_ID` for what it starts) sends
the daemon's log records to the local syslog socket, which journald serves where it runs, with
the identifier `mastfs` and the daemon's pid. Otherwise they stay in the log file in the cache
directory. The stdlib's `SysLogHandler` speaks the protocol; `systemd-python`'s journal handler
would need libsystemd's headers to build.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket

ADDRESS = "/dev/log"
FORMAT = "mastfs[%(process)d]: %(levelname)s %(name)s: %(message)s"


def wanted(choice: str) -> bool:
    """Whether `--log CHOICE` means syslog here."""
    if choice == "syslog":
        return True
    return choice == "auto" and bool(os.environ.get("INVOCATION_ID")) and os.path.exists(ADDRESS)


def handler(formatter: logging.Formatter, address: str = ADDRESS) -> logging.Handler:
    """A handler writing to the syslog socket at `address` (OSError if nothing listens)."""
    # The handler itself would drop records quietly until a listener appears: ask first.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
    out = logging.handlers.SysLogHandler(
        address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON
    )
    out.setFormatter(formatter)
    return out


def use_syslog(choice: str, formatter: logging.Formatter, address: str = ADDRESS) -> bool:
    """Send the root logger's records to syslog instead of stderr (the log file) when `choice`
    says so; whether it did."""
    if not wanted(choice):
        return False
    new = handler(formatter, address)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(new)
    return True
