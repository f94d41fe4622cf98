"""The simulator's request plumbing: framing, writing, throttling and counting responses.

`BaseHandler` knows HTTP/1.1 on a socket and nothing of MAST: it reads request bodies, writes
heads and bodies (counted in the stats before they go out), streams under body faults, and
turns errors into answers. `dispatch.Handler` adds the routes; the API modules (`api_*.py`)
write their answers through the methods here.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, NoReturn

from mastfs.sim.faults import NO_FAULTS, BodyPlan, RequestPlan
from mastfs.sim.portal import error_body

if TYPE_CHECKING:
    from mastfs.sim.server import SimServer, _HTTPServer

log = logging.getLogger(__name__)

SLOW_CHUNK = 64 * 1024  # write size when faults must be checked between writes
MAX_REQUEST_BODY = 16 << 20


@dataclass(frozen=True)
class Request:
    """A parsed request: its method, path (without query), query parameters and body."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes


Handle = Callable[["BaseHandler", Request, RequestPlan], None]


@dataclass(frozen=True)
class Route:
    """Paths one API answers. `own_faults`: it plans faults itself (per data URI, not path);
    `api`: an API call, slowed by `api_latency_ms`."""

    paths: tuple[str, ...]
    handle: Handle
    prefix: str = ""
    own_faults: bool = False
    api: bool = False

    def matches(self, path: str) -> bool:
        return path in self.paths or bool(self.prefix and path.startswith(self.prefix))


class ClientGone(Exception):
    """The peer closed the connection while we were writing."""


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mastsim/0.1"
    sys_version = ""
    # Idle keep-alive connections are dropped after this long.
    timeout = 300
    server: _HTTPServer
    # Which of the simulator's hosts this is, in the file stats ("archive", "files").
    host_name = "archive"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK can
        # add 40 ms to small responses.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def sim(self) -> SimServer:
        return self.server.sim

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _not_allowed(self) -> None:
        self._dispatch(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def route(self, method: str) -> None:
        raise NotImplementedError

    def _dispatch(self, method: str) -> None:
        self.sent_headers = False
        self.stat_uri: str | None = None
        self.body_sent = 0
        # Body writes go out as HTTP chunks (an answer without Content-Length).
        self.chunked = False
        try:
            self.route(method)
        except ClientGone:
            self.close_connection = True
        except Exception:
            log.exception("error handling %s %s", method, self.path)
            if self.sent_headers:
                self.close_connection = True
            else:
                self.send_json(500, error_body("internal error in the archive simulator"))

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        try:
            self.connection.sendall(data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as e:
            raise ClientGone() from e

    def head(self, status: int, headers: list[tuple[str, str]], length: int | None) -> bytes:
        """The status line and headers; `length` None sends no Content-Length (a lying answer's
        chunked or close-delimited body)."""
        self.log_request(status)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            *(f"{k}: {v}" for k, v in headers),
        ]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        plan: RequestPlan = NO_FAULTS,
        *,
        stat: str | None = None,
        uri: str | None = None,
    ) -> None:
        """A complete small response, in one write unless throttled.

        It is counted in the stats (as endpoint `stat`, or as a request for file `uri`) before
        it is written, so a client never reads an answer the stats do not show yet.
        """
        head = self.head(status, headers or [], len(body))
        no_body = self.command == "HEAD" or status == 304
        sent = 0 if no_body else len(body)
        if uri is not None:
            self.sim.stats.record_file(uri, self.command, status, sent, self.host_name)
        elif stat is not None:
            self.sim.stats.record(stat, status, sent)
        self.sent_headers = True
        if no_body:
            self.write(head)
        elif plan.bandwidth:
            self.write(head)
            self.body_sent = 0
            self.stat_uri = None
            self.stream_slow([body], len(body), BodyPlan(bandwidth=plan.bandwidth))
        else:
            self.write(head + body)

    def send_json(
        self,
        status: int,
        obj: Any,
        headers: list[tuple[str, str]] | None = None,
        plan: RequestPlan = NO_FAULTS,
        *,
        stat: str | None = None,
        uri: str | None = None,
    ) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        hdrs = [("Content-Type", "application/json; charset=utf-8"), *(headers or [])]
        self.send(status, body, hdrs, plan, stat=stat, uri=uri)

    def write_body(self, chunk: bytes | memoryview) -> None:
        """Write part of a body, counting it first (see `send`) and taking it back on failure."""
        n = len(chunk)
        uri = self.stat_uri
        if uri is not None:
            self.sim.stats.add_file_bytes(uri, n)
        try:
            if self.chunked and n:
                self.write(b"%x\r\n" % n)
                self.write(chunk)
                self.write(b"\r\n")
            else:
                self.write(chunk)
        except ClientGone:
            if uri is not None:
                self.sim.stats.add_file_bytes(uri, -n)
            raise
        self.body_sent += n

    def stream_slow(
        self, chunks: Iterable[bytes | memoryview], length: int, plan: BodyPlan
    ) -> None:
        """Write a body under faults: bandwidth cap, one stall, a reset.

        Progress is kept in `self.body_sent`, so the stats stay right when the body is cut.
        """
        started = time.monotonic()
        step = SLOW_CHUNK
        if plan.bandwidth:
            # About 20 writes a second keeps the rate smooth without flooding syscalls.
            step = max(1024, min(SLOW_CHUNK, plan.bandwidth // 20))
        stall_at = plan.stall_at
        for chunk in chunks:
            view = memoryview(chunk)
            while len(view):
                sent = self.body_sent
                if plan.reset_at is not None and sent >= plan.reset_at:
                    self._reset_connection()
                if stall_at is not None and sent >= stall_at:
                    stall_at = None
                    time.sleep(plan.stall_seconds)
                piece = min(step, len(view))
                # Never write past a pending stall or reset point in one go.
                for mark in (stall_at, plan.reset_at):
                    if mark is not None and sent < mark:
                        piece = min(piece, mark - sent)
                self.write_body(view[:piece])
                view = view[piece:]
                if plan.bandwidth:
                    ahead = self.body_sent / plan.bandwidth - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        if plan.reset_at is not None and self.body_sent < length:
            self._reset_connection()

    def abort(self) -> NoReturn:
        """End this request's connection with a TCP RST, before any answer."""
        self._reset_connection()

    def _reset_connection(self) -> NoReturn:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed server or middlebox would."""
        self.close_connection = True
        if self.stat_uri is not None:
            self.sim.stats.mark_reset(self.stat_uri)
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass
        raise ClientGone()

    # -- reading -------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_REQUEST_BODY:
                    raise ValueError("request body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""
