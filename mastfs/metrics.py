"""The opt-in Prometheus endpoint of a mount (`--metrics ADDR`): the status report's numbers.

Served by `prometheus_client`'s HTTP server in a thread of the daemon, bound only where the user
says (a bare port means loopback). It shows counters and sizes, never the query, file names or
the token: whoever can reach the address can read them. The collector reads plain numbers that
the trio thread updates, and measures the disk cache in the server's own thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mastfs.status import GAUGES

if TYPE_CHECKING:
    from mastfs.core import Core

DEFAULT_HOST = "127.0.0.1"


def parse_address(text: str) -> tuple[str, int]:
    """`9108` (loopback), `127.0.0.1:9108`, `[::1]:9108`, `0.0.0.0:9108` -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (sep and not host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid metrics address {text!r} (examples: 9108, 127.0.0.1:9108)")
    if not re.fullmatch(r"[\w.:-]*", host):
        raise ValueError(f"invalid metrics host {host!r} in {text!r}")
    return host or DEFAULT_HOST, int(port)


class MountCollector(Collector):
    def __init__(self, core: Core) -> None:
        self.core = core

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self.core.stats().items()):
            family = GaugeMetricFamily if name in GAUGES else CounterMetricFamily
            yield family(f"mastfs_{name}", f"mastfs {name.replace('_', ' ')}", value=value)
        summary = self.core.snapshot.summary
        index = self.core.cache.disk.index
        gauges = {
            "selected_files": ("files the selection shows", summary.selected_files),
            "selected_bytes": ("bytes the selection shows", summary.selected_bytes),
            "cache_disk_bytes": ("bytes in the disk cache", index.volume()),
            "cache_limit_bytes": ("bound of the disk cache", index.size_limit or 0),
            "fetch_errors": ("files whose last read failed", len(self.core.state.errors())),
        }
        for name, (text, value) in gauges.items():
            yield GaugeMetricFamily(f"mastfs_{name}", text, value=value)


@contextmanager
def serving(core: Core, address: tuple[str, int]) -> Iterator[tuple[str, int]]:
    """Serve the mount's metrics at `address` until the block ends (OSError if it cannot)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MountCollector(core))
    server, thread = start_http_server(address[1], addr=address[0], registry=registry)
    try:
        yield address
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
