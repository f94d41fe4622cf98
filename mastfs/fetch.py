"""HTTP range reads of MAST products: validated `206` bodies, retries, and a host-bound token.

Every byte the filesystem serves comes through `Fetcher.get_range_split` (or `get_whole` for
servers that ignore `Range`). The rules, learned from the peers' bug trackers:

* A `206` is checked against what was asked: the `Content-Range` start, end and total, and the
  body length. A short or shifted body is never returned, so it can never be cached.
* A `200` to a range request means the server ignores `Range`: `RangeIgnored` (carrying the size
  and ETag of the whole body) tells the cache to stream the file once with `get_whole` instead of
  downloading it again for every block.
* Bodies are the stored bytes, exactly: only the `identity` content coding is accepted (mastfs
  asks for it; a compressed answer is a `BadResponse`, never decoded into a guess), a body is
  delimited by `Content-Length` or by chunks, never both, and one shorter or longer than
  promised is retried. Bytes a server sends beyond an answer are never read as the next answer:
  a connection with anything waiting on it is closed, not reused.
* 5xx, 408, 429, connection resets, timeouts and truncated bodies are retried with jittered
  exponential backoff, honouring `Retry-After`, under an overall deadline; then `TransientError`.
* The MAST token goes only to the MAST server's origin (scheme, host, port): never to another
  host or port, never over `http` when the server is `https`. Redirects are followed here, by
  hand; once a chain of redirects has left the server's origin the token is not sent again in
  it, not even to the server's own origin, since the foreign hop chose that URL. The token is
  never logged and `repr(Fetcher)` does not show it. Once `limit_token_to` has named the
  products that need it (exclusive-access ones), only their requests carry it: a public
  product read by another user of a shared mount goes out without the owner's token.

The transport is the standard library's `http.client`, run in worker threads, over keep-alive
connections shared by those threads. It replaced httpx (the project's first choice) on measured
grounds (docs/performance.md, "Tuning notes"): a product body is received with `readinto`
straight into the buffer the cache keeps, with the GIL released while the kernel copies, at a
quarter of the CPU httpx's async client took, which copied every byte three times on the trio
thread that also answers every FUSE request. The async API is unchanged: each
attempt runs in a thread, retries and backoff stay on the trio side.
"""

from __future__ import annotations

import email.message
import email.utils
import http.client
import logging
import random
import re
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from mastfs import buffers, trio_http
from mastfs.link import Link, LinkEstimate

log = logging.getLogger(__name__)

DOWNLOAD_PATH = "/api/v0.1/Download/file"
MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Seconds to wait for a connection, and for each socket read of an answer.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# Bytes one `readinto` of a body asks for. A buffered read that fails part-way (a reset)
# returns nothing of what it had copied, so a cut loses at most this much of what arrived,
# and the next attempt goes on from there (`_Retryable.progressed`).
READ_CHUNK = 256 * 1024
# The low-speed limit of a body (`LowSpeed`): CVMFS and curl users set about this much.
LOW_SPEED_RATE = 16 << 10
LOW_SPEED_WINDOW = 10.0
LOW_SPEED_MIN_WINDOW = 1.0
# Idle keep-alive connections kept per origin (one per worker thread that may need one).
MAX_IDLE_CONNECTIONS = 32
# Bytes per read of a whole-file stream (servers that ignore Range).
WHOLE_CHUNK = 1 << 20
# What sending on a kept-alive connection the server has since closed raises.
_CLOSED_BY_SERVER = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)
# Error bodies up to this size are read, so their connection can be used again.
_SMALL_BODY = 64 << 10
USER_AGENT = "mastfs (python http.client)"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RemoteInfo:
    """What the server says about a product's current bytes; a change means new content."""

    size: int
    etag: str | None
    last_modified: str | None

    def same_content(self, other: RemoteInfo) -> bool:
        """True unless the size, the ETag (when both sides have one) or else Last-Modified
        (when both have one) tell the contents apart. JWST products are reprocessed in place,
        often at the same size: without an ETag, Last-Modified is what shows it."""
        if self.size != other.size:
            return False
        if self.etag is not None and other.etag is not None:
            return self.etag == other.etag
        if self.last_modified is not None and other.last_modified is not None:
            return self.last_modified == other.last_modified
        return True


class FetchError(Exception):
    """A product's bytes could not be read; the message names the product and the range."""


class NotFound(FetchError):
    """The archive does not have this product (404/410)."""


class NotAuthorized(FetchError):
    """401 (no or invalid token) or 403 (token not authorized for this product)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TransientError(FetchError):
    """Retries ran out (server errors, resets, timeouts); the cause is chained."""


class ContentChanged(FetchError):
    """The server now has different bytes (size or ETag) than the caller expected."""

    def __init__(self, message: str, info: RemoteInfo) -> None:
        super().__init__(message)
        self.info = info


class VersionChanged(FetchError):
    """The product changed under an open file: that file's reads fail rather than mix the
    bytes of two versions (new opens see the new version)."""


class RangeNotSatisfiable(FetchError):
    """416: the range lies outside the file; `size` is the server's total when it said it."""

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size


class BadResponse(FetchError):
    """The server broke the protocol (wrong `Content-Range`, missing length): not retried."""


class RangeIgnored(FetchError):
    """The server answered a range request with `200` and the whole body; `info` describes it."""

    def __init__(self, message: str, info: RemoteInfo) -> None:
        super().__init__(message)
        self.info = info


class _Retryable(Exception):
    """Internal: this attempt failed in a way another attempt may not. `progressed`: it
    received bytes the next attempt goes on from (a body cut part-way)."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, progressed: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.progressed = progressed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Jittered exponential backoff under an overall deadline (seconds)."""

    attempts: int = 10
    base_delay: float = 0.25
    max_delay: float = 8.0
    deadline: float = 60.0
    # A refused or timed-out connection means the server is down, not flaky: an offline
    # mount should answer EIO in a second, not after a minute of retries.
    connect_attempts: int = 3

    def backoff(self, attempt: int) -> float:
        # "Equal jitter": never zero (no tight loops), never in lock-step with other clients.
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


Origin = tuple[str, str, int]


def _origin(url: str) -> Origin:
    """(scheme, host, port) of a URL; `FetchError` for a scheme other than http(s)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise FetchError(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"bad port in {url!r}") from exc
    return (scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _info(headers: email.message.Message, size: int) -> RemoteInfo:
    return RemoteInfo(size, headers.get("etag"), headers.get("last-modified"))


def _content_length(headers: email.message.Message) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _size_of(headers: email.message.Message, known: int | None, what: str) -> int:
    """A whole body's size: its `Content-Length`, else the catalogue's (`known`), else a
    `BadResponse` (nothing would tell a cut body from a whole one)."""
    size = _content_length(headers)
    if size is not None:
        return size
    if known is None:
        raise BadResponse(f"{what}: 200 without Content-Length")
    return known


def _check_body_headers(headers: email.message.Message, what: str) -> None:
    """`BadResponse` unless the body is the stored bytes, delimited one way.

    A coded body (gzip, ...) is not the product's bytes and its length is not the product's: it
    is refused rather than decoded (mastfs sends `Accept-Encoding: identity`, so only a broken
    server or middlebox codes it). `Transfer-Encoding` other than plain `chunked` is framing
    http.client would not undo, and one beside `Content-Length` is ambiguous (RFC 9112 6.3).
    """
    codings = [
        c.strip().lower() for c in ",".join(headers.get_all("content-encoding", [])).split(",")
    ]
    if any(c not in ("", "identity") for c in codings):
        raise BadResponse(f"{what}: Content-Encoding {', '.join(filter(None, codings))!r} refused")
    transfer = headers.get_all("transfer-encoding", [])
    if transfer:
        if [t.strip().lower() for t in transfer] != ["chunked"]:
            raise BadResponse(f"{what}: Transfer-Encoding {', '.join(transfer)!r} refused")
        if headers.get("content-length") is not None:
            raise BadResponse(f"{what}: both Transfer-Encoding and Content-Length")


@dataclass(frozen=True, slots=True)
class LowSpeed:
    """Abandon a body that brings fewer than `rate` bytes/s over `window` seconds."""

    rate: int
    window: float

    @classmethod
    def within(cls, deadline: float) -> LowSpeed:
        """A limit that lets a stalled attempt be abandoned, and retried on a fresh
        connection, well within an overall `deadline`."""
        return cls(LOW_SPEED_RATE, max(LOW_SPEED_MIN_WINDOW, min(LOW_SPEED_WINDOW, deadline / 4)))


@dataclass(slots=True)
class _Progress:
    """A range read across its attempts (`Fetcher.get_range_split`)."""

    view: memoryview | None
    got: int = 0
    seen: RemoteInfo | None = None
    request: int = 0


class _ConnectFailed(_Retryable):
    """Internal: no connection could be made (refused, unreachable, timed out)."""


class _Connection:
    """One keep-alive connection to an origin, possibly through an HTTP proxy."""

    def __init__(
        self,
        origin: Origin,
        proxy: Origin | None,
        connect_timeout: float,
        read_timeout: float,
        context: ssl.SSLContext | None = None,
    ) -> None:
        scheme, host, port = origin
        self.origin = origin
        # Through a proxy, plain HTTP asks for absolute URLs; HTTPS tunnels with CONNECT.
        self.absolute = proxy is not None and scheme == "http"
        address = (host, port) if proxy is None else (proxy[1], proxy[2])
        self.conn: http.client.HTTPConnection
        if scheme == "https":
            self.conn = http.client.HTTPSConnection(
                *address, timeout=connect_timeout, context=context
            )
        else:
            self.conn = http.client.HTTPConnection(*address, timeout=connect_timeout)
        if proxy is not None and scheme == "https":
            self.conn.set_tunnel(host, port)
        self._read_timeout = read_timeout

    def request(self, method: str, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        if self.conn.sock is None:
            try:
                self.conn.connect()
            except ssl.SSLCertVerificationError as exc:
                self.conn.close()
                raise FetchError(f"{self.origin[1]}: TLS certificate not trusted: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                host, port = self.origin[1], self.origin[2]
                raise _ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
            sock = self.conn.sock
            assert sock is not None
            sock.settimeout(self._read_timeout)
        if self.absolute:
            target = url
        else:
            parts = urllib.parse.urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.conn.request(method, target, headers=headers)
        return self.conn.getresponse()

    def quiet(self) -> bool:
        """True if nothing waits on the idle connection: no end of stream, and no bytes the
        server sent beyond its last answer, which must never be read as the next answer."""
        sock = self.conn.sock
        if sock is None:
            return False
        try:
            sock.settimeout(0.0)
            try:
                waiting = sock.recv(1)
            finally:
                sock.settimeout(self._read_timeout)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except OSError:
            return False
        if waiting:
            log.warning("%s:%d sent bytes beyond its answer: connection dropped", *self.origin[1:])
        return False

    def close(self) -> None:
        self.conn.close()


class _Pool:
    """Idle keep-alive connections per origin, shared by the worker threads."""

    def __init__(
        self, connect_timeout: float, read_timeout: float, context: ssl.SSLContext | None = None
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.context = context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()

    def take(self, origin: Origin) -> tuple[_Connection, bool]:
        """A connection to `origin`, and whether it was used before (the server may have
        closed it since)."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                connection = idle.pop() if idle else None
            if connection is None:
                break
            # Checked again here: bytes may have come in while it sat idle.
            if connection.quiet():
                return connection, True
            connection.close()
        proxy = _proxy_for(origin)
        return _Connection(
            origin, proxy, self.connect_timeout, self.read_timeout, self.context
        ), False

    def give(self, connection: _Connection) -> None:
        if not connection.quiet():
            connection.close()
            return
        with self._lock:
            idle = self._idle.setdefault(connection.origin, [])
            if len(idle) < MAX_IDLE_CONNECTIONS:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()


def _proxy_for(origin: Origin) -> Origin | None:
    """The proxy the environment (`https_proxy`, `no_proxy`, ...) names for `origin`."""
    scheme, host, _ = origin
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        return _origin(proxy)
    except FetchError:
        log.warning("ignoring the %s proxy setting: not an http(s) URL", scheme)
        return None


class _Answer:
    """A response being read in a worker thread; gives its connection back once read whole."""

    def __init__(self, pool: _Pool, connection: _Connection, response: http.client.HTTPResponse):
        self._pool = pool
        self._connection: _Connection | None = connection
        self.response = response
        self.status = response.status
        self.headers = response.headers

    def read_into(self, view: memoryview, low_speed: LowSpeed | None = None) -> tuple[int, str]:
        """Fill `view` from the body: (bytes received, why it stopped short or "").

        Fewer bytes without a reason only at the body's end. A transport error, or fewer
        than `low_speed.rate` bytes/s over a `low_speed.window` (a stall or a trickle, as
        curl's --speed-limit), stops early with its reason; the bytes before it are kept by
        the caller, and the connection is dropped.
        """
        got = 0
        mark, mark_got = time.monotonic(), 0
        try:
            while got < len(view):
                n = self.response.readinto(view[got : got + READ_CHUNK])
                if not n:
                    break
                got += n
                if low_speed is not None:
                    now = time.monotonic()
                    if now - mark >= low_speed.window:
                        if got - mark_got < low_speed.rate * (now - mark):
                            self.close()
                            return got, f"slower than {low_speed.rate} bytes/s"
                        mark, mark_got = now, got
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return got, f"{type(exc).__name__}: {exc}"
        return got, ""

    def at_end(self) -> bool:
        """True if the body has no more bytes (reads one byte to tell when it cannot know)."""
        if self.response.isclosed():
            return True
        try:
            return not self.response.read(1)
        except (OSError, http.client.HTTPException):
            return False

    def finish(self) -> None:
        """Done with the answer: its connection goes back to the pool if nothing is left unread."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        response = self.response
        if not response.isclosed() and response.length is not None:
            if response.length <= _SMALL_BODY:
                try:
                    response.read()
                except (OSError, http.client.HTTPException):
                    pass
        if response.isclosed() and not response.will_close:
            self._pool.give(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Drop the connection (an error, or a body we will not read)."""
        connection, self._connection = self._connection, None
        # The response holds the socket too (http.client hands it over when the server said
        # `Connection: close`): closed here, not whenever the collector gets to it, so the
        # server sees the connection end now.
        self.response.close()
        if connection is not None:
            connection.close()


class Fetcher:
    """Reads byte ranges of MAST products; the token is added per request, only for the MAST
    server's own origin. Thread-safe; `close` drops the idle connections.
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        retry: RetryPolicy | None = None,
        *,
        timeout: float = READ_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context`: what https connections trust (default: the system's CAs)."""
        self.server = server.rstrip("/")
        self._origin = _origin(self.server)
        self._token = token or None
        # None: every request to the MAST origin carries the token (`limit_token_to`).
        self._token_uris: frozenset[str] | None = None
        self.retry = retry or RetryPolicy()
        # A body that stalls or trickles is abandoned after the low-speed window and retried
        # on a fresh connection; the socket timeout is that window too, so a silent server
        # cannot hold an attempt longer. Both fit the overall deadline several times.
        self._low = LowSpeed.within(self.retry.deadline)
        self._pool = _Pool(
            min(connect_timeout, max(LOW_SPEED_MIN_WINDOW, self.retry.deadline / 2)),
            min(timeout, self._low.window),
            ssl_context,
        )
        # Range GETs to a plain-HTTP origin reached directly go from the trio thread
        # (`trio_http`); a product redirected to TLS or through a proxy goes the
        # worker-thread way from then on.
        self._loop_pool = trio_http.Pool(
            self._pool.connect_timeout, self._pool.read_timeout, MAX_IDLE_CONNECTIONS
        )
        self._loop_origins: dict[Origin, bool] = {}
        self._threads_for: set[str] = set()
        self._counters_lock = threading.Lock()
        # Round trip and per-connection rate, from the range answers (under the lock).
        self._link = LinkEstimate()
        self.counters: dict[str, int] = {
            "attempts": 0,
            "retries": 0,
            "bytes": 0,
            "redirects": 0,
            # Attempts under way now (a gauge, for `mastfs status` and the metrics).
            "in_flight": 0,
        }

    def __repr__(self) -> str:
        return f"Fetcher(server={self.server!r}, token={'set' if self._token else 'none'})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def link(self) -> Link | None:
        """The link as the range answers so far measured it (`mastfs.link`)."""
        with self._counters_lock:
            return self._link.current()

    def limit_token_to(self, dataURIs: Iterable[str]) -> None:
        """Send the token only with requests for these products from now on."""
        self._token_uris = frozenset(dataURIs)

    def url_for(self, dataURI: str) -> str:
        return f"{self.server}{DOWNLOAD_PATH}?uri={urllib.parse.quote(dataURI, safe=':/')}"

    def close(self) -> None:
        self._pool.close()
        self._loop_pool.close()

    # -- public operations -------------------------------------------------------------------

    async def head(
        self, dataURI: str, *, retry: bool = True, size: int | None = None
    ) -> RemoteInfo:
        """Size, ETag and Last-Modified of a product; `retry=False` makes one attempt only.

        `size`: what the catalogue says, taken when the answer has no `Content-Length` (a
        generated file); without it such an answer is a `BadResponse`.
        """
        what = f"HEAD {dataURI}"

        def attempt() -> RemoteInfo:
            answer = self._open("HEAD", dataURI, {})
            try:
                self._check_status(answer, dataURI, what)
                _check_body_headers(answer.headers, what)
                return _info(answer.headers, _size_of(answer.headers, size, what))
            finally:
                answer.finish()

        return await self._retrying(what, attempt, retry=retry)

    async def get_range(
        self, dataURI: str, start: int, end: int, *, expected: RemoteInfo | None = None
    ) -> tuple[bytes, RemoteInfo]:
        """Bytes [start, end) of a product, exactly, and what the server said about the file.

        With `expected`, a response describing other contents (size or ETag) raises
        `ContentChanged` before its body is read. A server that ignores `Range` raises
        `RangeIgnored`; the caller decides whether to stream the whole file.
        """
        pieces, info = await self.get_range_split(
            dataURI, start, end, end - start, expected=expected
        )
        return bytes(pieces[0]), info

    async def get_range_split(
        self,
        dataURI: str,
        start: int,
        end: int,
        piece_size: int,
        *,
        expected: RemoteInfo | None = None,
        size: int | None = None,
    ) -> tuple[list[memoryview], RemoteInfo]:
        """`get_range`, its body in pieces of `piece_size` bytes (the last may be short).

        `size`: the catalogue's size of the product, which `RangeIgnored` carries when a `200`
        does not say its length (default: `expected`'s).

        For the block cache: the body is received once, into one buffer, and the pieces are
        views of it (no copy). Nothing else holds or writes that buffer.
        """
        if not 0 <= start < end:
            raise ValueError(f"empty or negative range [{start}, {end})")
        if piece_size <= 0:
            raise ValueError(f"piece size {piece_size} must be positive")
        what = f"GET {dataURI} bytes {start}-{end - 1}"
        length = end - start
        # Across attempts: the bytes received so far (kept when a body is cut: the next
        # request asks only for the rest), what the first answer said about the file (every
        # later one must describe the same contents), and the size of the next request, halved
        # by each cut down to one piece.
        progress = _Progress(None, seen=expected, request=length)
        known = size if size is not None else (expected.size if expected is not None else None)

        def admit(answer: _Answer | trio_http.Answer, part: str, lo: int, hi: int) -> memoryview:
            """Check an answer's head for bytes [lo, hi); the buffer its body goes into."""
            if answer.status in (200, 206):
                _check_body_headers(answer.headers, part)
            if answer.status == 200:
                total = _size_of(answer.headers, known, part)
                raise RangeIgnored(f"{part}: server ignored Range", _info(answer.headers, total))
            if answer.status != 206:
                self._check_status(answer, dataURI, part)
                raise BadResponse(f"{part}: unexpected status {answer.status}")
            info = self._check_content_range(answer, part, lo, hi)
            if progress.seen is not None and not progress.seen.same_content(info):
                raise ContentChanged(f"{part}: content changed", info)
            progress.seen = info
            declared = _content_length(answer.headers)
            if declared is not None and declared != hi - lo:
                raise BadResponse(f"{part}: Content-Length {declared}, expected {hi - lo}")
            if progress.view is None:
                # Taken once the answer is known good (the previous range's buffer is back in
                # the pool by then).
                progress.view = buffers.take(length)
            return progress.view

        def settle(
            part: str, lo: int, hi: int, got: tuple[int, str], sent: float, headed: float
        ) -> None:
            """Count a body's bytes; a cut one (or too slow) is kept and the rest asked for, in
            smaller requests, on a fresh connection."""
            received, stopped = got
            self._count("bytes", received)
            if not stopped:
                with self._counters_lock:
                    self._link.record(headed - sent, received, time.monotonic() - headed)
            if received < hi - lo:
                progress.got += received
                progress.request = max(piece_size, progress.request // 2)
                reason = stopped or "the connection ended"
                raise _Retryable(
                    f"{part}: body stopped after {received} of {hi - lo} bytes ({reason})",
                    progressed=received > 0,
                )

        def done(view: memoryview) -> tuple[list[memoryview], RemoteInfo]:
            # Nothing here keeps the buffer once its pieces are returned: it goes back to the
            # pool when the caller lets them go.
            progress.view = None
            assert progress.seen is not None
            return [view[i : i + piece_size] for i in range(0, length, piece_size)], progress.seen

        def next_range() -> tuple[int, int, str, dict[str, str]]:
            lo = start + progress.got
            hi = min(end, lo + progress.request)
            return lo, hi, f"GET {dataURI} bytes {lo}-{hi - 1}", {"Range": f"bytes={lo}-{hi - 1}"}

        def attempt() -> tuple[list[memoryview], RemoteInfo]:
            while True:
                lo, hi, part, asked = next_range()
                sent = time.monotonic()
                answer = self._open("GET", dataURI, asked)
                headed = time.monotonic()
                try:
                    view = admit(answer, part, lo, hi)
                    got = progress.got
                    body = answer.read_into(view[got : got + hi - lo], self._low)
                    settle(part, lo, hi, body, sent, headed)
                    if _content_length(answer.headers) is None and not answer.at_end():
                        # Chunked or ended by the connection: more than the range is not the
                        # range, and nothing of it can be trusted.
                        raise _Retryable(f"{part}: body longer than {hi - lo} bytes")
                    progress.got += body[0]
                except BaseException:
                    answer.close()
                    raise
                finally:
                    answer.finish()
                if progress.got == length:
                    return done(view)

        async def attempt_on_loop() -> tuple[list[memoryview], RemoteInfo]:
            # `attempt`, its requests sent from the trio thread (`trio_http`).
            while True:
                if dataURI in self._threads_for:
                    return await _in_thread(attempt)
                lo, hi, part, asked = next_range()
                sent = time.monotonic()
                try:
                    answer = await self._open_on_loop(dataURI, asked)
                except trio_http.Unsupported:
                    self._threads_for.add(dataURI)
                    return await _in_thread(attempt)
                headed = time.monotonic()
                try:
                    view = admit(answer, part, lo, hi)
                    got = progress.got
                    low = self._low
                    body = await answer.read_into(view[got : got + hi - lo], low.rate, low.window)
                    settle(part, lo, hi, body, sent, headed)
                    if answer.length is None and not await answer.at_end():
                        raise _Retryable(f"{part}: body longer than {hi - lo} bytes")
                    progress.got += body[0]
                except BaseException:
                    answer.close()
                    raise
                finally:
                    answer.finish()
                if progress.got == length:
                    return done(view)

        if self._on_loop(dataURI):
            return await self._retrying(what, attempt_on_loop, in_thread=False)
        return await self._retrying(what, attempt)

    async def get_whole(
        self,
        dataURI: str,
        sink: Callable[[int, bytes, RemoteInfo], Awaitable[None]],
        *,
        expected: RemoteInfo | None = None,
        size: int | None = None,
    ) -> RemoteInfo:
        """Stream a whole product once, calling `sink(offset, chunk, info)` in order.

        For servers that ignore `Range`. A body without `Content-Length` (chunked, or ended by
        the connection: a generated file) must bring the catalogue's `size` (default:
        `expected`'s) exactly; a shorter one is a cut, a longer one a `BadResponse`. A retried
        attempt asks for the rest (`Range: bytes=N-`): a `206` from there resumes, a `200`
        starts again from byte 0 and skips what `sink` already received, so `sink` sees every
        byte once.
        """
        what = f"GET {dataURI} (whole)"
        delivered = 0
        first: RemoteInfo | None = expected
        known = size if size is not None else (expected.size if expected is not None else None)

        async def attempt() -> RemoteInfo:
            nonlocal delivered, first
            asked = {"Range": f"bytes={delivered}-"} if delivered else {}
            answer = await _in_thread(self._open, "GET", dataURI, asked)
            try:
                if answer.status not in (200, 206) or (answer.status == 206 and not asked):
                    self._check_status(answer, dataURI, what)
                    raise BadResponse(f"{what}: unexpected status {answer.status}")
                _check_body_headers(answer.headers, what)
                if answer.status == 206:
                    # Only a resumed attempt asks for a range: an earlier answer said the size.
                    assert first is not None
                    info = self._check_content_range(answer, what, delivered, first.size)
                    position, total = delivered, info.size
                else:
                    total = _size_of(answer.headers, known, what)
                    info, position = _info(answer.headers, total), 0
                if first is not None and not first.same_content(info):
                    raise ContentChanged(f"{what}: content changed", info)
                first = info
                buffer = memoryview(bytearray(WHOLE_CHUNK))
                while position < total:
                    want = min(WHOLE_CHUNK, total - position)
                    n, stopped = await _in_thread(answer.read_into, buffer[:want], self._low)
                    self._count("bytes", n)
                    skip = delivered - position
                    if skip < n:
                        piece = bytes(buffer[max(skip, 0) : n])
                        await sink(delivered, piece, info)
                        delivered += len(piece)
                    position += n
                    if n < want:
                        reason = stopped or "the connection ended"
                        raise _Retryable(
                            f"{what}: body stopped at {position} of {total} bytes ({reason})"
                        )
                if _content_length(answer.headers) is None and not await _in_thread(answer.at_end):
                    raise BadResponse(f"{what}: body longer than the catalogue's {total} bytes")
                return info
            except BaseException:
                answer.close()
                raise
            finally:
                answer.finish()

        return await self._retrying(what, attempt, in_thread=False)

    # -- plumbing (worker threads) -----------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._counters_lock:
            self.counters[name] += n

    def _open(self, method: str, dataURI: str, headers: dict[str, str]) -> _Answer:
        """One request, following redirects by hand; the answer's body is still unread."""
        url = self.url_for(dataURI)
        with_token = self._may_send_token(dataURI)
        for _ in range(MAX_REDIRECTS + 1):
            origin = _origin(url)
            # Same scheme, host and port only; and once the chain has left the server's origin,
            # a hop back to it was chosen by the foreign host: no token for the rest of it.
            with_token = with_token and origin == self._origin
            answer = self._request(origin, method, url, self._headers(headers, with_token))
            location = answer.headers.get("location")
            if not (answer.status in _REDIRECT_STATUS and location):
                return answer
            answer.finish()
            url = urllib.parse.urljoin(url, location)
            self._count("redirects")
            log.debug("%s %s redirected to %s", method, dataURI, url.partition("?")[0])
        raise BadResponse(f"{method} {dataURI}: more than {MAX_REDIRECTS} redirects")

    def _may_send_token(self, dataURI: str) -> bool:
        return self._token is not None and (
            self._token_uris is None or dataURI in self._token_uris
        )

    def _headers(self, headers: dict[str, str], with_token: bool) -> dict[str, str]:
        # Ranges count bytes of the stored file, not of a compressed transfer.
        sent = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT, **headers}
        if with_token:
            sent["Authorization"] = f"token {self._token}"
        return sent

    def _on_loop(self, dataURI: str) -> bool:
        """Whether a range GET of the product goes from the trio thread (`trio_http`)."""
        if dataURI in self._threads_for:
            return False
        return self._direct_http(_origin(self.url_for(dataURI)))

    def _direct_http(self, origin: Origin) -> bool:
        direct = self._loop_origins.get(origin)
        if direct is None:
            direct = origin[0] == "http" and _proxy_for(origin) is None
            self._loop_origins[origin] = direct
        return direct

    async def _open_on_loop(self, dataURI: str, headers: dict[str, str]) -> trio_http.Answer:
        """`_open` from the trio thread; `trio_http.Unsupported` when a redirect leads where
        it does not go (TLS, a proxy)."""
        url = self.url_for(dataURI)
        with_token = self._may_send_token(dataURI)
        for _ in range(MAX_REDIRECTS + 1):
            origin = _origin(url)
            if not self._direct_http(origin):
                raise trio_http.Unsupported(f"a redirect to {origin[0]}://{origin[1]}")
            with_token = with_token and origin == self._origin  # as in `_open`
            parts = urllib.parse.urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            self._count("attempts")
            try:
                answer = await self._loop_pool.request(
                    origin, "GET", target, self._headers(headers, with_token)
                )
            except trio_http.TransportError as exc:
                if exc.connect:
                    raise _ConnectFailed(str(exc)) from exc
                raise _Retryable(str(exc)) from exc
            location = answer.headers.get("location")
            if not (answer.status in _REDIRECT_STATUS and location):
                return answer
            answer.finish()
            url = urllib.parse.urljoin(url, location)
            self._count("redirects")
        raise BadResponse(f"GET {dataURI}: more than {MAX_REDIRECTS} redirects")

    def _request(self, origin: Origin, method: str, url: str, headers: dict[str, str]) -> _Answer:
        while True:
            connection, reused = self._pool.take(origin)
            self._count("attempts")
            try:
                response = connection.request(method, url, headers)
            except _Retryable:
                raise
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if reused and isinstance(exc, _CLOSED_BY_SERVER):
                    # A kept-alive connection the server has closed since: not a failure. (A
                    # timeout is one: it must not cost a second, uncounted attempt.)
                    continue
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            return _Answer(self._pool, connection, response)

    def _check_status(self, answer: _Answer | trio_http.Answer, dataURI: str, what: str) -> None:
        """Raise the domain error for a failed status; return for 2xx."""
        status = answer.status
        if 200 <= status < 300:
            return
        if status in (401, 403):
            reason = "no valid MAST token" if status == 401 else "token not authorized"
            raise NotAuthorized(f"{what}: {status} ({reason})", status)
        if status in (404, 410):
            raise NotFound(f"{what}: {status}")
        if status == 416:
            match = _UNSATISFIED_RANGE.match(answer.headers.get("content-range", ""))
            size = int(match.group(1)) if match else None
            raise RangeNotSatisfiable(f"{what}: 416 (file size {size})", size)
        if status in _RETRY_STATUS or status >= 500:
            raise _Retryable(f"{what}: {status}", _retry_after(answer.headers.get("retry-after")))
        raise FetchError(f"{what}: unexpected status {status}")

    @staticmethod
    def _check_content_range(
        answer: _Answer | trio_http.Answer, what: str, start: int, end: int
    ) -> RemoteInfo:
        header = answer.headers.get("content-range", "")
        match = _CONTENT_RANGE.match(header)
        if match is None or match.group(3) == "*":
            raise BadResponse(f"{what}: bad Content-Range {header!r}")
        got_start, got_last, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
        info = _info(answer.headers, total)
        if got_start == start and got_last == end - 1 and end <= total:
            return info
        if got_start == start and got_last == total - 1 and total < end:
            # The server clipped the range at its end of file: the file is shorter than we
            # were told, so the caller's idea of the contents is stale.
            raise ContentChanged(f"{what}: file is now {total} bytes", info)
        raise BadResponse(f"{what}: Content-Range {header!r} does not match the request")

    # -- retries (trio) ------------------------------------------------------------------------

    async def _retrying(
        self,
        what: str,
        attempt: Callable[[], Any],
        *,
        retry: bool = True,
        in_thread: bool = True,
    ) -> Any:
        """Run `attempt` (in a worker thread, or awaited with `in_thread=False`) until it
        succeeds, fails for good, or the policy runs out.

        An attempt that brought bytes the next one goes on from (`_Retryable.progressed`) is
        not a failure of the server: it does not count against `attempts`, and the backoff
        starts over. A server that cuts every body after some bytes then delivers the range
        within the deadline; eight cuts landing on one range of a sequential read had
        exhausted the backoff's share of a short `--timeout` (fault matrix, case `reset`).
        """
        policy = self.retry
        deadline = trio.current_time() + policy.deadline
        tries = 0
        failures = 0  # attempts in a row that brought nothing
        while True:
            tries += 1
            self._count("in_flight")
            try:
                if in_thread:
                    return await _in_thread(attempt)
                return await attempt()
            except _Retryable as exc:
                cause = exc
            finally:
                self._count("in_flight", -1)
            failures = 0 if cause.progressed else failures + 1
            limit = policy.attempts
            if isinstance(cause, _ConnectFailed):
                limit = min(limit, policy.connect_attempts)
            retry_after = cause.retry_after
            delay = retry_after if retry_after is not None else policy.backoff(max(failures - 1, 0))
            if not retry or failures >= limit or trio.current_time() + delay > deadline:
                raise TransientError(f"{what}: {cause} (gave up after {tries} attempts)") from cause
            self._count("retries")
            log.debug("%s: %s; retry %d in %.2fs", what, cause, tries, delay)
            await trio.sleep(delay)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    # Abandoned on cancellation: the thread ends by itself (its socket has a timeout) and its
    # result, a private buffer, is dropped; an unmount never waits for a stalled server.
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
