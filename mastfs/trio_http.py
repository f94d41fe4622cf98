"""HTTP/1.1 requests on the trio thread: range GETs without a worker thread each.

`fetch.Fetcher` sends a range GET to a plain `http://` origin it reaches directly (no proxy)
through this transport; every other request (TLS, a proxy, HEAD, whole-file streams) goes the
worker-thread way with http.client. Why two ways: with a thread per request, each request and
each piece of its body that arrives wakes a thread that must take the GIL back from the trio
thread and ~70 others. Over program 1999's `headers/` (8,775 GETs, 64 at once) that cost ~5 ms
of daemon CPU a GET and 70 ms of hand-offs in each one's 236 ms; on the trio thread the same
`grep -r` took 26 s instead of 46 and half the CPU (docs/performance.md, "Headers").

Transport only: a connection pool, the request, the answer's head (status and headers, as an
`email.message.Message` like http.client's) and the body, read into the caller's buffer
(framed by `Content-Length`, by chunks or by the connection's end). What
the answer means is the caller's to check, as for http.client's; redirects are the caller's
to follow, and one to a place this transport does not go (TLS, a proxy) is `Unsupported`
there. Plain `email` and `socket`: h11 would copy every body byte three times more, and these
answers need nothing of it but the head and the framing.
"""

from __future__ import annotations

import contextlib
import email.message
import re
import socket
import time
from dataclasses import dataclass
from typing import Final

import trio

Origin = tuple[str, str, int]

# A head longer than this is refused (http.client allows 100 headers of 64 KiB; MAST's are ~1 KiB).
MAX_HEAD: Final = 64 << 10
# Bytes one receive of a head asks for.
HEAD_RECV: Final = 16 << 10
# What a request target, header name and header value may not hold (http.client's rules).
_UNSAFE_TARGET: Final = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_HEADER: Final = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_UNSAFE_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class TransportError(Exception):
    """No answer, or a broken one: the connection is closed. `connect` when none was made."""

    def __init__(self, message: str, *, connect: bool = False) -> None:
        super().__init__(message)
        self.connect = connect


class Unsupported(Exception):
    """A request this transport does not make (the caller's redirect led to TLS or a proxy)."""


class _Connection:
    __slots__ = ("origin", "raw", "sock")

    def __init__(self, origin: Origin, raw: socket.socket) -> None:
        self.origin = origin
        self.raw = raw
        self.sock = trio.socket.from_stdlib_socket(raw)

    def quiet(self) -> bool:
        """Nothing waits on the idle connection: no end of stream, no bytes beyond the last
        answer (which must never be read as the next one)."""
        try:
            self.raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # the end of the stream, or bytes nobody asked for

    def close(self) -> None:
        if self.raw.fileno() == -1:
            return
        # A task waiting on the socket is woken with an error (in a trio run; a pool closed
        # from outside one has none waiting).
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.notify_closing(self.raw)
        self.raw.close()


@dataclass(slots=True)
class _Head:
    status: int
    headers: email.message.Message
    keep_alive: bool
    rest: bytes


class Pool:
    """Idle keep-alive connections per origin, for the trio thread."""

    def __init__(self, connect_timeout: float, read_timeout: float, max_idle: int) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: dict[Origin, list[_Connection]] = {}

    async def request(
        self, origin: Origin, method: str, target: str, headers: dict[str, str]
    ) -> Answer:
        """Send a request and read its answer's head. A kept-alive connection the server has
        closed since is not a failure: the request goes again on a new one."""
        request = _request_bytes(origin, method, target, headers)
        while True:
            connection, reused = self._take(origin)
            if connection is None:
                connection = await self._connect(origin)
            try:
                head = await self._exchange(connection, request)
            except TransportError:
                connection.close()
                if reused:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return Answer(self, connection, head, method)

    def give(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) < self.max_idle and connection.quiet():
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take(self, origin: Origin) -> tuple[_Connection | None, bool]:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.quiet():
                return connection, True
            connection.close()
        return None, False

    async def _connect(self, origin: Origin) -> _Connection:
        _, host, port = origin
        with trio.move_on_after(self.connect_timeout) as scope:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                message = f"cannot connect to {host}:{port}: {exc}"
                raise TransportError(message, connect=True) from exc
        if scope.cancelled_caught:
            raise TransportError(f"cannot connect to {host}:{port}: timed out", connect=True)
        # The stream's socket, detached from the stream, as a plain socket of our own.
        raw = socket.socket(fileno=stream.socket.detach())
        raw.setblocking(False)
        return _Connection(origin, raw)

    async def _exchange(self, connection: _Connection, request: bytes) -> _Head:
        sock = connection.sock
        buffer = b""
        with trio.move_on_after(self.read_timeout) as scope:
            try:
                sent = 0
                while sent < len(request):
                    sent += await sock.send(request[sent:])
                while True:
                    end = buffer.find(b"\r\n\r\n")
                    if end >= 0:
                        head = _parse_head(buffer[:end])
                        buffer = buffer[end + 4 :]
                        if 100 <= head.status < 200:
                            continue  # an interim answer: the real one follows
                        head.rest = buffer
                        return head
                    if len(buffer) > MAX_HEAD:
                        raise TransportError(f"answer head longer than {MAX_HEAD} bytes")
                    chunk = await sock.recv(HEAD_RECV)
                    if not chunk:
                        raise TransportError("the connection ended before an answer")
                    buffer += chunk
            except OSError as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        assert scope.cancelled_caught
        raise TransportError(f"no answer within {self.read_timeout:g} s")


class Answer:
    """An answer whose head is read; its body is read with `read_into` (framed by its
    `Content-Length`, by chunks, or by the connection's end, as http.client reads them)."""

    def __init__(self, pool: Pool, connection: _Connection, head: _Head, method: str) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = head.status
        self.headers = head.headers
        self._rest = head.rest
        self._keep_alive = head.keep_alive
        self._chunked = _is_chunked(head.headers)
        length = None if self._chunked else _content_length(head.headers)
        if method == "HEAD" or head.status in (204, 304):
            length = 0
        self.length = length
        # Bytes of the body still to come (None: until its last chunk, or the end of the
        # connection); of the current chunk, when chunked.
        self._left = length
        self._chunk_left = 0
        self._ended = length == 0

    async def read_into(self, view: memoryview, rate: float, window: float) -> tuple[int, str]:
        """Fill `view` from the body: (bytes received, why it stopped short or ""). Fewer bytes
        without a reason only at the body's end. A transport error, a broken chunk, a silence
        of the read timeout, or fewer than `rate` bytes/s over `window` seconds stops early
        with its reason, and the connection is closed."""
        want = len(view) if self._left is None else min(len(view), self._left)
        got = 0
        mark, mark_got = time.monotonic(), 0
        try:
            with trio.move_on_after(self._pool.read_timeout) as scope:
                while got < want and not self._ended:
                    n = await self._receive(view[got:want])
                    if not n:
                        break
                    got += n
                    # Each receive may wait a whole read timeout, not the body altogether.
                    scope.deadline = trio.current_time() + self._pool.read_timeout
                    now = time.monotonic()
                    if now - mark >= window:
                        if got - mark_got < rate * (now - mark):
                            return self._stop(got, f"slower than {rate:g} bytes/s")
                        mark, mark_got = now, got
        except (OSError, TransportError) as exc:
            return self._stop(got, f"{type(exc).__name__}: {exc}")
        if scope.cancelled_caught:
            return self._stop(got, f"TimeoutError: no bytes within {self._pool.read_timeout:g} s")
        if self._left is not None:
            self._left -= got
            if got < want:
                return self._stop(got, "")
        return got, ""

    async def at_end(self) -> bool:
        """True if the body has no more bytes (reads one byte to tell when it cannot know)."""
        if self._ended or self._left == 0:
            return True
        probe = memoryview(bytearray(1))
        try:
            with trio.fail_after(self._pool.read_timeout):
                n = await self._receive(probe)
        except (trio.TooSlowError, OSError, TransportError):
            self.close()
            return False
        if n:
            self.close()
        return not n

    def finish(self) -> None:
        """Done with the answer: its connection is kept if the body was read whole."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        whole = self._left == 0 or (self._chunked and self._ended)
        if whole and not self._rest and self._keep_alive:
            self._pool.give(connection)
        else:
            connection.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _stop(self, got: int, reason: str) -> tuple[int, str]:
        self.close()
        return got, reason

    async def _receive(self, view: memoryview) -> int:
        """Some body bytes into `view`; 0 at the body's end."""
        if not self._chunked:
            if self._rest:
                n = min(len(self._rest), len(view))
                view[:n] = self._rest[:n]
                self._rest = self._rest[n:]
                return n
            connection = self._connection
            if connection is None:
                raise TransportError("the connection was closed")
            n = await connection.sock.recv_into(view, len(view))
            if not n:
                self._ended = True
            return n
        if self._chunk_left == 0:
            size_line = await self._line()
            size = size_line.partition(b";")[0].strip()
            try:
                self._chunk_left = int(size, 16)
            except ValueError:
                raise TransportError(f"bad chunk size {size_line[:40]!r}") from None
            if self._chunk_left == 0:
                while await self._line():  # trailers, up to the empty line
                    pass
                self._ended = True
                return 0
        if not self._rest:
            await self._more()
        n = min(len(self._rest), len(view), self._chunk_left)
        view[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        self._chunk_left -= n
        if self._chunk_left == 0 and await self._line():
            raise TransportError("a chunk longer than its size")
        return n

    async def _line(self) -> bytes:
        while (end := self._rest.find(b"\r\n")) < 0:
            if len(self._rest) > MAX_HEAD:
                raise TransportError("a chunk line too long")
            await self._more()
        line, self._rest = self._rest[:end], self._rest[end + 2 :]
        return line

    async def _more(self) -> None:
        connection = self._connection
        if connection is None:
            raise TransportError("the connection was closed")
        chunk = await connection.sock.recv(HEAD_RECV)
        if not chunk:
            raise TransportError("the connection ended inside a chunk")
        self._rest += chunk


def _parse_head(raw: bytes) -> _Head:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not (code.isdigit() and len(code) == 3):
        raise TransportError(f"bad status line {lines[0][:80]!r}")
    headers = email.message.Message()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            raise TransportError(f"bad header line {line[:80]!r}")
        headers[name] = value.strip()
    tokens = {t.strip().lower() for t in ",".join(headers.get_all("connection", [])).split(",")}
    keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
    return _Head(int(code), headers, keep_alive, b"")


def _is_chunked(headers: email.message.Message) -> bool:
    codings = ",".join(headers.get_all("transfer-encoding", [])).split(",")
    return codings[-1].strip().lower() == "chunked"


def _content_length(headers: email.message.Message) -> int | None:
    if headers.get_all("transfer-encoding"):
        return None
    values = headers.get_all("content-length", [])
    if len(set(values)) != 1 or not values[0].strip().isdigit():
        return None
    return int(values[0])


def _request_bytes(origin: Origin, method: str, target: str, headers: dict[str, str]) -> bytes:
    """The request's head; `TransportError` for a target or header that would split it (a
    redirect's `Location` with spaces or control characters, a token with a line break), as
    http.client refuses them."""
    _, host, port = origin
    if _UNSAFE_TARGET.search(target):
        raise TransportError(f"refusing to request {target[:80]!r}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {_host_header(host, port)}"]
    for name, value in headers.items():
        if _UNSAFE_HEADER.search(name) or _UNSAFE_VALUE.search(value):
            raise TransportError(f"refusing to send header {name[:40]!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == 80 else f"{name}:{port}"
