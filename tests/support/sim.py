"""Helpers for the byte-path tests (fetch, cache): the simulator's control plane over HTTP.

Tests see the simulator as a client would: request and byte counts come from `/__sim/stats`,
faults and content changes go through `/__sim/faults` and `/__sim/change`. Only the expected
bytes (`SimFile.read`) come from the simulator's own objects.

`canned` is a real loopback HTTP server for the malformed answers the simulator never gives
(a shifted `Content-Range`, a body shorter or longer than its headers say, `Retry-After`): it
writes each status line, header and body byte itself, so it can break the protocol on purpose.
"""

from __future__ import annotations

import http
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from mastfs.fetch import RetryPolicy
from mastfs.model import Product

MiB = 1 << 20
AUTHORIZED_TOKEN = "mastsim-authorized-6543"
UNAUTHORIZED_TOKEN = "mastsim-unauthorized"
# Short delays: tests retry many times without taking long.
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.05, deadline=20.0)
# The simulator's profiles the tests that matter run under (the `profile` fixture), and how
# much faster than the real archive the "mast" one runs in tests: 10 ms API calls, 1.6 ms per
# request, 1.25 GB/s per connection.
PROFILES = ("fast", "mast")
TEST_TIME_SCALE = 0.02


class SimControl:
    """A simulator's HTTP control endpoints (stats, faults, changes), from any process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def close(self) -> None:
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

    def wait_for_bytes(self, uri: str, n: int, timeout: float = 30.0) -> None:
        """Until the archive has sent at least `n` bytes of `uri` (a read is under way)."""
        deadline = time.monotonic() + timeout
        while self.sent(uri) < n:
            assert time.monotonic() < deadline, f"{uri}: fewer than {n} bytes sent in {timeout} s"
            time.sleep(0.02)

    def faults(self, **knobs: Any) -> None:
        self.http.post("/__sim/faults", json=knobs).raise_for_status()

    def clear_faults(self) -> None:
        self.http.post("/__sim/faults/clear").raise_for_status()

    def profile(self, name: str, **knobs: Any) -> dict[str, Any]:
        """Every knob as profile `name` sets it (at `TEST_TIME_SCALE`), then `knobs`."""
        import dataclasses

        from mastfs.sim import profiles

        self.clear_faults()
        settings = dataclasses.asdict(profiles.settings(name, TEST_TIME_SCALE, **knobs))
        self.faults(**settings)
        return settings

    def urls(self) -> dict[str, str]:
        """The archive's URL and its other hosts' (`files_url`, `resolver_url`, `crds_url`)."""
        return dict(self.http.get("/__sim/health").json())

    def change(self, uri: str, generation: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"uri": uri}
        if generation is not None:
            body["generation"] = generation
        response = self.http.post("/__sim/change", json=body)
        response.raise_for_status()
        return dict(response.json())


class Sim(SimControl):
    """The session simulator: its control endpoints, and its catalog's files in process."""

    def __init__(self, server: Any) -> None:
        super().__init__(server.url)
        self.server = server

    def close(self) -> None:
        """Clears the faults a test set, then closes the connection."""
        self.clear_faults()
        super().close()

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
                # `/url/` products (HLA) live on another host: only when asked for.
                and "/url/" not in f.uri
            ),
            key=lambda f: f.uri,
        )
        assert files, f"catalog has no {rights} file of {min_size}-{max_size} bytes for {proposal}"
        return files[index % len(files)]


# -- canned answers: a loopback server that says exactly what a test tells it to ------------------


@dataclass(frozen=True)
class Canned:
    """One raw HTTP answer. Unless `close`, a `Content-Length` of the body is added when
    `headers` has none (keep-alive needs one); with `close` the headers go out as given and
    the connection is closed after the body, which then ends wherever `body` ends."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    close: bool = False


@dataclass(frozen=True)
class Request:
    """A request as the canned server received it (header names in lower case)."""

    method: str
    target: str  # path and query, as on the request line
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


# handler(request) -> the answer
CannedHandler = Callable[[Request], Canned]


class CannedServer(socketserver.ThreadingTCPServer):
    """HTTP/1.1 on 127.0.0.1 with keep-alive; see `canned`."""

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, handler: CannedHandler) -> None:
        self.handler = handler
        self.seen: list[Request] = []
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _CannedConnection)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.seen)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, before its thread starts, so `drop_connections` cannot miss it.
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def drop_connections(self) -> None:
        """End every open connection, so that their threads return."""
        with self.lock:
            connections = list(self.connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _CannedConnection(socketserver.StreamRequestHandler):
    server: CannedServer

    def handle(self) -> None:
        try:
            while self._one_exchange():
                pass
        except OSError:
            pass  # the client (or `drop_connections`) closed the connection
        finally:
            with self.server.lock:
                self.server.connections.discard(self.connection)

    def _one_exchange(self) -> bool:
        """Read one request and write its answer; False when the connection is done."""
        line = self.rfile.readline(65537)
        if not line.strip():
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := self.rfile.readline(65537)).strip():
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        # The Fetcher sends GET and HEAD only: no request body to read.
        request = Request(method, target, headers)
        with self.server.lock:
            self.server.seen.append(request)
        answer = self.server.handler(request)
        out = dict(answer.headers)
        if answer.close:
            out["Connection"] = "close"
        elif not any(name.lower() == "content-length" for name in out):
            out["Content-Length"] = str(len(answer.body))
        try:
            reason = http.HTTPStatus(answer.status).phrase
        except ValueError:
            reason = "Whatever"
        head = [f"HTTP/1.1 {answer.status} {reason}", *(f"{k}: {v}" for k, v in out.items())]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            self.wfile.write(answer.body)
        self.wfile.flush()
        return not answer.close


@contextmanager
def canned(handler: CannedHandler) -> Iterator[CannedServer]:
    """A loopback HTTP server whose every answer is `handler(request)`.

    Connections are kept alive (several requests each) unless an answer says `close`; HEAD
    answers carry no body. `server.seen` lists the requests received, in order.
    """
    server = CannedServer(handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.drop_connections()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def redirector(target: str) -> Iterator[CannedServer]:
    """A loopback server (another origin) that records requests (`seen`) and redirects each to
    the same path and query on `target`."""
    with canned(lambda request: Canned(302, {"Location": target + request.target})) as server:
        yield server


def product_of(f: Any) -> Product:
    """A minimal catalog row for a simulator file, for tests that drive the core directly."""
    return Product(
        dataURI=f.uri,
        productFilename=f.uri.rsplit("/", 1)[-1],
        obs_id="o",
        obs_collection="JWST",
        size=f.size,
    )
