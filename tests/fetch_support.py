"""Helpers for the byte-path tests (fetch, cache): the simulator's control plane over HTTP.

Tests see the simulator as a client would: request and byte counts come from `/__sim/stats`,
faults and content changes go through `/__sim/faults` and `/__sim/change`. Only the expected
bytes (`SimFile.read`) come from the simulator's own objects.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from mastfs.fetch import RetryPolicy

MiB = 1 << 20
AUTHORIZED_TOKEN = "mastsim-authorized-6543"
UNAUTHORIZED_TOKEN = "mastsim-unauthorized"
# Short delays: tests retry many times without taking long.
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.05, deadline=20.0)


class Sim:
    """The session simulator, driven through its HTTP control endpoints."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.url: str = server.url
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def close(self) -> None:
        self.http.post("/__sim/faults/clear").raise_for_status()
        self.http.close()

    def reset_stats(self) -> None:
        self.http.post("/__sim/stats/reset").raise_for_status()

    def file_stats(self, uri: str) -> dict[str, Any]:
        files = self.http.get("/__sim/stats").json()["files"]
        return files.get(uri, {"requests": 0, "bytes": 0, "methods": {}, "status": {}})

    def gets(self, uri: str) -> int:
        return int(self.file_stats(uri)["methods"].get("GET", 0))

    def heads(self, uri: str) -> int:
        return int(self.file_stats(uri)["methods"].get("HEAD", 0))

    def sent(self, uri: str) -> int:
        return int(self.file_stats(uri)["bytes"])

    def faults(self, **knobs: Any) -> None:
        self.http.post("/__sim/faults", json=knobs).raise_for_status()

    def clear_faults(self) -> None:
        self.http.post("/__sim/faults/clear").raise_for_status()

    def change(self, uri: str, generation: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"uri": uri}
        if generation is not None:
            body["generation"] = generation
        response = self.http.post("/__sim/change", json=body)
        response.raise_for_status()
        return dict(response.json())

    def file(self, uri: str) -> Any:
        """The simulator's current version of a file (after changes)."""
        return self.server.file(uri)

    def expected(self, uri: str, offset: int, length: int) -> bytes:
        return bytes(self.file(uri).read(offset, length))

    def pick(
        self,
        rights: str = "PUBLIC",
        proposal: str | None = None,
        min_size: int = 0,
        max_size: int = 1 << 62,
        index: int = 0,
        unaligned: bool = False,
    ) -> Any:
        """A deterministic catalog file with these properties."""
        files = sorted(
            (
                f
                for f in self.server.catalog.files()
                if f.dataRights == rights
                and min_size <= f.size <= max_size
                and (proposal is None or str(f.proposal_id) == proposal)
                and (not unaligned or f.size % MiB != 0)
            ),
            key=lambda f: f.uri,
        )
        assert files, f"catalog has no {rights} file of {min_size}-{max_size} bytes for {proposal}"
        return files[index % len(files)]


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _RedirectHandler)


class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def _redirect(self) -> None:
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(302)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = _redirect
    do_HEAD = _redirect

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def redirector(target: str) -> Iterator[_Recorder]:
    """A loopback server (another origin) that records headers and redirects to `target`."""
    server = _Recorder(target)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
