"""Request and byte counters of the archive simulator, served at `/__sim/stats`.

Tests and benchmarks use them to prove what a client did: how many requests reached the archive
for a product, how many bytes went over the wire, and how many were ranged (206) or refused.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


def status_class(status: int) -> str:
    """Exact for 200, 206 and 304 (clients care which); "4xx"/"5xx" for the rest."""
    if status in (200, 206, 304):
        return str(status)
    return f"{status // 100}xx"


@dataclass
class _FileCounters:
    requests: int = 0
    bytes: int = 0
    methods: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    resets: int = 0
    # Requests by the host that answered them ("archive", "files": the second host, "crds").
    hosts: Counter[str] = field(default_factory=Counter)
    # Requests at a host other than the archive that carried a MAST token or Authorization.
    tokens_elsewhere: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "methods": dict(self.methods),
            "status": dict(self.statuses),
            "resets": self.resets,
            "hosts": dict(self.hosts),
            "tokens_elsewhere": self.tokens_elsewhere,
        }


class Stats:
    """Thread-safe counters: per data URI for files, per endpoint/service for the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._files: dict[str, _FileCounters] = {}
            self._endpoints: Counter[str] = Counter()
            self._services: Counter[str] = Counter()
            self._statuses: Counter[str] = Counter()
            self._requests = 0
            self._bytes = 0

    def record(self, endpoint: str, status: int, sent: int) -> None:
        """One non-file request (metadata, auth, directory listings).

        The server records a request just before writing its answer, so a client that has read
        a response always finds it counted.
        """
        with self._lock:
            self._requests += 1
            self._bytes += sent
            self._endpoints[endpoint] += 1
            self._statuses[status_class(status)] += 1

    def record_service(self, service: str) -> None:
        with self._lock:
            self._services[service] += 1

    def _file(self, uri: str) -> _FileCounters:
        c = self._files.get(uri)
        if c is None:
            c = self._files[uri] = _FileCounters()
        return c

    def record_file(
        self, uri: str, method: str, status: int, sent: int = 0, host: str = "archive"
    ) -> None:
        """One request for a product's bytes, counted before its answer goes out."""
        with self._lock:
            self._requests += 1
            self._bytes += sent
            self._endpoints["file"] += 1
            self._statuses[status_class(status)] += 1
            c = self._file(uri)
            c.requests += 1
            c.bytes += sent
            c.methods[method] += 1
            c.statuses[status_class(status)] += 1
            c.hosts[host] += 1

    def mark_token_elsewhere(self, uri: str) -> None:
        """A request for `uri` at a host other than the archive carried a MAST token (or any
        Authorization)."""
        with self._lock:
            self._file(uri).tokens_elsewhere += 1

    def add_file_bytes(self, uri: str, n: int) -> None:
        """Body bytes of a product handed to the socket (negative to take back a failed write)."""
        with self._lock:
            self._bytes += n
            self._file(uri).bytes += n

    def mark_reset(self, uri: str) -> None:
        with self._lock:
            self._file(uri).resets += 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "totals": {
                    "requests": self._requests,
                    "bytes": self._bytes,
                    "status": dict(self._statuses),
                    "file_requests": sum(c.requests for c in self._files.values()),
                    "file_bytes": sum(c.bytes for c in self._files.values()),
                },
                "endpoints": dict(self._endpoints),
                "services": dict(self._services),
                "files": {uri: c.to_json() for uri, c in self._files.items()},
            }
