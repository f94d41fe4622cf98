"""HTTP range reads of MAST products: validated `206` bodies, retries, and a host-bound token.

Every byte the filesystem serves comes through `Fetcher.get_range` (or `get_whole` for servers
that ignore `Range`). The rules, learned from the peers' bug trackers:

* A `206` is checked against what was asked: the `Content-Range` start, end and total, and the
  body length. A short or shifted body is never returned, so it can never be cached.
* A `200` to a range request means the server ignores `Range`: `RangeIgnored` (carrying the size
  and ETag of the whole body) tells the cache to stream the file once with `get_whole` instead of
  downloading it again for every block.
* 5xx, 408, 429, connection resets, timeouts and truncated bodies are retried with jittered
  exponential backoff, honouring `Retry-After`, under an overall deadline; then `TransientError`.
* The MAST token goes only to the MAST server's origin (scheme, host, port). Redirects are
  followed here, by hand, so the `Authorization` header can be dropped on a cross-host hop.
  The token is never logged and `repr(Fetcher)` does not show it.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpcore
import httpx
import trio

log = logging.getLogger(__name__)

DOWNLOAD_PATH = "/api/v0.1/Download/file"
MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Bytes per socket read. httpcore reads 64 KiB at a time and every chunk then climbs through h11
# and five async generators; product bodies are MiBs, and 1 MiB reads halve the client's CPU time
# per GiB (measured 1.1 -> 0.55 s on loopback, docs/performance.md "Tuning notes").
SOCKET_READ_SIZE = 1 << 20

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RemoteInfo:
    """What the server says about a product's current bytes; a change means new content."""

    size: int
    etag: str | None
    last_modified: str | None

    def same_content(self, other: RemoteInfo) -> bool:
        """True unless size or ETag (when both sides have one) tell the contents apart."""
        if self.size != other.size:
            return False
        if self.etag is not None and other.etag is not None:
            return self.etag == other.etag
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
    """Internal: this attempt failed in a way another attempt may not."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


def tune_socket_reads(size: int = SOCKET_READ_SIZE) -> None:
    """Let httpcore read up to `size` bytes per socket read (process-wide, idempotent).

    `READ_NUM_BYTES` is a class attribute of httpcore's HTTP/1.1 connection, so this applies to
    every async client of the process; all it changes is the size of reads (and of the largest
    chunk a body iterator yields).
    """
    connection = getattr(httpcore, "AsyncHTTP11Connection", None)
    if connection is not None and getattr(connection, "READ_NUM_BYTES", size) < size:
        connection.READ_NUM_BYTES = size


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme))


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


def _info(response: httpx.Response, size: int) -> RemoteInfo:
    return RemoteInfo(size, response.headers.get("etag"), response.headers.get("last-modified"))


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class Fetcher:
    """Reads byte ranges of MAST products over one shared `httpx.AsyncClient`.

    The client must not follow redirects itself nor carry an `Authorization` header: this class
    adds the token per request, only for the MAST server's own origin.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        server: str,
        token: str | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if "authorization" in client.headers:
            raise ValueError("the HTTP client must not carry an Authorization header")
        self._client = client
        self.server = server.rstrip("/")
        self._origin = _origin(httpx.URL(self.server))
        self._token = token or None
        self.retry = retry or RetryPolicy()
        tune_socket_reads()
        self.counters: dict[str, int] = {
            "attempts": 0,
            "retries": 0,
            "bytes": 0,
            "redirects": 0,
        }

    def __repr__(self) -> str:
        return f"Fetcher(server={self.server!r}, token={'set' if self._token else 'none'})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def url_for(self, dataURI: str) -> str:
        return f"{self.server}{DOWNLOAD_PATH}?uri={urllib.parse.quote(dataURI, safe=':/')}"

    # -- public operations -------------------------------------------------------------------

    async def head(self, dataURI: str, *, retry: bool = True) -> RemoteInfo:
        """Size, ETag and Last-Modified of a product; `retry=False` makes one attempt only."""

        async def attempt() -> RemoteInfo:
            response = await self._send("HEAD", dataURI, {})
            try:
                self._check_status(response, dataURI, "HEAD")
                size = _content_length(response)
                if size is None:
                    raise BadResponse(f"{dataURI}: HEAD without Content-Length")
                return _info(response, size)
            finally:
                await response.aclose()

        return await self._retrying(f"HEAD {dataURI}", attempt, retry=retry)

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
        return pieces[0], info

    async def get_range_split(
        self,
        dataURI: str,
        start: int,
        end: int,
        piece_size: int,
        *,
        expected: RemoteInfo | None = None,
    ) -> tuple[list[bytes], RemoteInfo]:
        """`get_range`, its body cut into pieces of `piece_size` bytes (the last may be short).

        For the block cache: cutting while receiving copies each byte once, where joining the
        body and slicing it into blocks would copy it twice.
        """
        if not 0 <= start < end:
            raise ValueError(f"empty or negative range [{start}, {end})")
        if piece_size <= 0:
            raise ValueError(f"piece size {piece_size} must be positive")
        what = f"GET {dataURI} bytes {start}-{end - 1}"

        async def attempt() -> tuple[list[bytes], RemoteInfo]:
            headers = {"Range": f"bytes={start}-{end - 1}"}
            response = await self._send("GET", dataURI, headers)
            try:
                if response.status_code == 200:
                    size = _content_length(response)
                    if size is None:
                        raise BadResponse(f"{what}: 200 without Content-Length")
                    raise RangeIgnored(f"{what}: server ignored Range", _info(response, size))
                if response.status_code != 206:
                    self._check_status(response, dataURI, what)
                    raise BadResponse(f"{what}: unexpected status {response.status_code}")
                info = self._check_content_range(response, what, start, end)
                if expected is not None and not expected.same_content(info):
                    raise ContentChanged(f"{what}: content changed", info)
                pieces = await self._read_body(response, end - start, piece_size, what)
                return pieces, info
            finally:
                await response.aclose()

        return await self._retrying(what, attempt)

    async def get_whole(
        self,
        dataURI: str,
        sink: Callable[[int, bytes, RemoteInfo], Awaitable[None]],
        *,
        expected: RemoteInfo | None = None,
    ) -> RemoteInfo:
        """Stream a whole product once, calling `sink(offset, chunk, info)` in order.

        For servers that ignore `Range`. A retried attempt starts again from byte 0 (the server
        cannot resume) and skips what `sink` already received, so `sink` sees every byte once.
        """
        what = f"GET {dataURI} (whole)"
        delivered = 0
        first: RemoteInfo | None = expected

        async def attempt() -> RemoteInfo:
            nonlocal delivered, first
            response = await self._send("GET", dataURI, {})
            try:
                if response.status_code != 200:
                    self._check_status(response, dataURI, what)
                    raise BadResponse(f"{what}: unexpected status {response.status_code}")
                size = _content_length(response)
                if size is None:
                    raise BadResponse(f"{what}: 200 without Content-Length")
                info = _info(response, size)
                if first is not None and not first.same_content(info):
                    raise ContentChanged(f"{what}: content changed", info)
                first = info
                position = 0
                async for chunk in response.aiter_raw():
                    if position + len(chunk) > size:
                        raise BadResponse(f"{what}: body longer than Content-Length {size}")
                    skip = delivered - position
                    if skip < len(chunk):
                        piece = chunk[skip:] if skip > 0 else chunk
                        self.counters["bytes"] += len(piece)
                        await sink(delivered, piece, info)
                        delivered += len(piece)
                    position += len(chunk)
                if position != size:
                    raise _Retryable(f"{what}: body ended at {position} of {size} bytes")
                return info
            finally:
                await response.aclose()

        return await self._retrying(what, attempt)

    # -- plumbing ----------------------------------------------------------------------------

    async def _send(self, method: str, dataURI: str, headers: dict[str, str]) -> httpx.Response:
        """One request, following redirects by hand; the response is open (streamed)."""
        url = httpx.URL(self.url_for(dataURI))
        # Ranges count bytes of the stored file, not of a compressed transfer.
        headers = {"Accept-Encoding": "identity", **headers}
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if self._token is not None and _origin(url) == self._origin:
                sent["Authorization"] = f"token {self._token}"
            request = self._client.build_request(method, url, headers=sent)
            self.counters["attempts"] += 1
            response = await self._client.send(request, stream=True, follow_redirects=False)
            location = response.headers.get("location")
            if not (response.is_redirect and location):
                return response
            await response.aclose()
            url = url.join(location)
            self.counters["redirects"] += 1
            log.debug("%s %s redirected to %s", method, dataURI, url.copy_with(query=None))
        raise BadResponse(f"{method} {dataURI}: more than {MAX_REDIRECTS} redirects")

    def _check_status(self, response: httpx.Response, dataURI: str, what: str) -> None:
        """Raise the domain error for a failed status; return for 2xx."""
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403):
            reason = "no valid MAST token" if status == 401 else "token not authorized"
            raise NotAuthorized(f"{what}: {status} ({reason})", status)
        if status in (404, 410):
            raise NotFound(f"{what}: {status}")
        if status == 416:
            match = _UNSATISFIED_RANGE.match(response.headers.get("content-range", ""))
            size = int(match.group(1)) if match else None
            raise RangeNotSatisfiable(f"{what}: 416 (file size {size})", size)
        if status in _RETRY_STATUS or status >= 500:
            raise _Retryable(f"{what}: {status}", _retry_after(response.headers.get("retry-after")))
        raise FetchError(f"{what}: unexpected status {status}")

    @staticmethod
    def _check_content_range(
        response: httpx.Response, what: str, start: int, end: int
    ) -> RemoteInfo:
        header = response.headers.get("content-range", "")
        match = _CONTENT_RANGE.match(header)
        if match is None or match.group(3) == "*":
            raise BadResponse(f"{what}: bad Content-Range {header!r}")
        got_start, got_last, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
        info = _info(response, total)
        if got_start == start and got_last == end - 1 and end <= total:
            return info
        if got_start == start and got_last == total - 1 and total < end:
            # The server clipped the range at its end of file: the file is shorter than we
            # were told, so the caller's idea of the contents is stale.
            raise ContentChanged(f"{what}: file is now {total} bytes", info)
        raise BadResponse(f"{what}: Content-Range {header!r} does not match the request")

    async def _read_body(
        self, response: httpx.Response, length: int, piece_size: int, what: str
    ) -> list[bytes]:
        declared = _content_length(response)
        if declared is not None and declared != length:
            raise BadResponse(f"{what}: Content-Length {declared}, expected {length}")
        pieces: list[bytes] = []
        current: list[bytes | memoryview] = []
        filled = 0
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > length:
                raise BadResponse(f"{what}: body longer than {length} bytes")
            view = memoryview(chunk)
            while view:
                take = min(len(view), piece_size - filled)
                current.append(view[:take] if take < len(view) else view)
                view = view[take:]
                filled += take
                if filled == piece_size:
                    pieces.append(b"".join(current))
                    current, filled = [], 0
        self.counters["bytes"] += received
        if received != length:
            # A connection that ends early is a transport failure, worth another attempt.
            raise _Retryable(f"{what}: body ended after {received} of {length} bytes")
        if current:
            pieces.append(b"".join(current))
        return pieces

    async def _retrying(
        self, what: str, attempt: Callable[[], Awaitable[T]], *, retry: bool = True
    ) -> T:
        policy = self.retry
        deadline = trio.current_time() + policy.deadline
        tries = 0
        while True:
            tries += 1
            retry_after: float | None = None
            try:
                return await attempt()
            except _Retryable as exc:
                cause: Exception = exc
                retry_after = exc.retry_after
            except httpx.UnsupportedProtocol as exc:
                raise FetchError(f"{what}: {exc}") from exc
            except httpx.TransportError as exc:
                # Resets, refused connections, timeouts and truncated bodies.
                cause = exc
            limit = policy.attempts
            if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout)):
                limit = min(limit, policy.connect_attempts)
            delay = retry_after if retry_after is not None else policy.backoff(tries - 1)
            if not retry or tries >= limit or trio.current_time() + delay > deadline:
                raise TransientError(
                    f"{what}: {type(cause).__name__}: {cause} (gave up after {tries} attempts)"
                ) from cause
            self.counters["retries"] += 1
            log.debug("%s: %s; retry %d in %.2fs", what, cause, tries, delay)
            await trio.sleep(delay)
