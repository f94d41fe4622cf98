"""The archive adapter's HTTP transport: what its `requests` sessions may send and accept.

The adapter speaks to MAST as astroquery does (`mashup.py`), through `requests.Session`s, which
by themselves have no timeout, no size limit, and would carry a token cookie to any host a
redirect names. `install` mounts a `GuardedAdapter` on such a session for every URL, so that each
request (`archive.py`, `product_lists.py`, `resolver.py`), and each redirect hop, passes
through it:

- **The token** is added here, as astroquery's `mast_token` cookie, to requests for the
  configured origin (scheme, host and port) only; no cookie jar ever holds it. A hop to another
  origin, or from https to http, goes without it. It is not in the request object a debug log
  prints either.
- **Busy answers** (429, 502, 503, 504) are asked again after the `Retry-After` they name (or
  growing pauses), a few times, within the query's time.
- **Time**: every request, from connecting to its last body byte, ends within `Limits.timeout`: a
  watchdog shuts the socket down, so a server that stalls or trickles cannot outlast it. Each
  query (`GuardedAdapter.query`) ends within `Limits.query_time`.
- **Size**: an answer is read here in full, decompressed, and refused past `Limits.max_response`
  bytes. The pages and polls of one Portal request count together: astroquery keeps every page
  until it has the last. (So `stream=True` streams nothing: this session carries the Portal API,
  `/whoami` and name resolution only; product bytes go through `fetch.py`.)
- **Portal answers** (`/api/v0/invoke`): no page past `Limits.max_pages` is requested; rows count
  against `Limits.max_rows` per query; a value astroquery cannot type (an integer beyond 64 bits,
  a word in a number column, an unknown column type) is replaced before the rows are read, so
  one bad row cannot fail a query. What the values mean is checked in `archive.py`.

Used from one thread at a time (`archive.Archive` is).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger(__name__)

TOKEN_COOKIE = "mast_token"
INVOKE_PATH = "/api/v0/invoke"
MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
# astroquery pages by rewriting `"page": N,` in the url-encoded body (discovery_portal.py).
_PAGE = re.compile(r"%22page%22%3A%20(\d{1,12})%2C")
_INT64 = (-(2**63), 2**63 - 1)
# What astroquery's `utils.parse_type` knows; anything else makes its `astype` fail.
_INT_TYPES = frozenset({"int", "short", "long", "number"})
_FLOAT_TYPES = frozenset({"double", "float", "decimal"})
_OTHER_TYPES = frozenset({"char", "string", "datetime", "date", "boolean", "binary"})
# Put in an integer cell astroquery could not convert: negative, so no size or level accepts it.
INVALID_INT = -1


# Answers that mean "busy, ask again": asked again up to BUSY_ATTEMPTS times in all, after the
# `Retry-After` they name (at most BUSY_MAX_WAIT) or pauses of 0.5, 1, 2, 4 s.
BUSY = frozenset({429, 502, 503, 504})
BUSY_ATTEMPTS = 5
BUSY_FIRST_PAUSE = 0.5
BUSY_MAX_PAUSE = 4.0
BUSY_MAX_WAIT = 120.0


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date); None if absent or
    not understood."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value[:9]))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may cost; docs/usage.md lists them with their flags."""

    # Seconds for one request, from connecting to the last byte of its answer.
    timeout: float = 60.0
    # Bytes of one answer after decompression; all pages of one Portal request together.
    max_response: int = 128 << 20
    # Portal rows (observations and products together) of one query.
    max_rows: int = 100_000
    # Pages of one Portal request (MAST caps a result at about 500,000 rows: 10 pages of 50,000).
    max_pages: int = 20
    # Seconds for a whole query: logging in, or observations and every product list.
    query_time: float = 600.0


class LimitExceeded(requests.RequestException):
    """An answer went past one of the `Limits`; the message says which and how to raise it."""


class ArchiveTimeout(requests.Timeout):
    """A request did not end within `Limits.timeout`."""


Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL, ports made explicit; None for anything else."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, parts.hostname.lower(), port


# -- the watchdog: a hard deadline for one request, whatever the server does ---------------------

_current = threading.local()


class _Watch:
    """Shuts down the sockets of one request's connections if its deadline passes first."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._done = False
        self.fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def watch(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)
            if self.fired:
                _shutdown(connection)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for connection in self._connections:
                _shutdown(connection)

    def __enter__(self) -> _Watch:
        _current.watch = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
        _current.watch = None


def _shutdown(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _WatchedPool:
    """Hands every connection a request uses, new or reused, to that request's watchdog."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.watch(conn)
        return conn


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    pass


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# -- the adapter ------------------------------------------------------------------------------


class GuardedAdapter(HTTPAdapter):
    """A `requests` adapter bound to one archive origin, one token and its `Limits`.

    Attributes: `limits`; `rows` (Portal rows of the current query); `malformed_rows` (rows that
    were not JSON objects, left out of the answer astroquery sees).
    """

    def __init__(self, server: str, token: str | None, limits: Limits) -> None:
        super().__init__()
        found = origin(server)
        if found is None:
            raise ValueError(f"not an http(s) URL: {server!r}")
        self._origin = found
        self._token = token or None
        self.limits = limits
        self._query_deadline: float | None = None
        self.rows = 0
        self.malformed_rows = 0
        # The Portal request whose pages are being read, and their bytes so far.
        self._answer_key = ""
        self._answer_bytes = 0

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager

    @contextlib.contextmanager
    def query(self, deadline: float | None = None) -> Iterator[None]:
        """One query's budget: its deadline (`query_time` from now, or the `time.monotonic()`
        value given, for a part of a query) and its row count."""
        self._query_deadline = (
            time.monotonic() + self.limits.query_time if deadline is None else deadline
        )
        self.rows = 0
        self.malformed_rows = 0
        try:
            yield
        finally:
            self._query_deadline = None
            self._answer_key, self._answer_bytes = "", 0

    # -- one request (or one redirect hop) ----------------------------------------------------

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """One request (or redirect hop); asked again while the archive answers it is busy
        (`BUSY`), after the `Retry-After` it names or a growing pause, within the query."""
        pause = BUSY_FIRST_PAUSE
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            response = self._send_once(request, verify, cert, proxies)
            if response.status_code not in BUSY or attempt == BUSY_ATTEMPTS:
                return response
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            wait, pause = (pause if wait is None else wait), min(pause * 2, BUSY_MAX_PAUSE)
            if not self._time_for(wait):
                return response
            log.info("the archive answered %d; asking again in %.1f s", response.status_code, wait)
            response.close()
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _time_for(self, wait: float) -> bool:
        """Whether a pause of `wait` seconds and one more request fit the query's time."""
        if wait > BUSY_MAX_WAIT:
            return False
        if self._query_deadline is None:
            return wait < self.limits.timeout
        return time.monotonic() + wait < self._query_deadline

    def _send_once(
        self, request: requests.PreparedRequest, verify: Any, cert: Any, proxies: Any
    ) -> requests.Response:
        seconds, by_query = self._request_time()
        body = _text_body(request.body)
        self._check_page(body)
        key = _PAGE.sub("", body) if body else f"{request.method} {request.url}"
        if key != self._answer_key:
            self._answer_key, self._answer_bytes = key, 0
        wire = self._with_token(request)
        with _Watch(seconds) as watch:
            try:
                response = super().send(
                    wire,
                    stream=True,
                    timeout=(seconds, seconds),
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
                try:
                    self._read(response)
                except BaseException:
                    response.close()
                    raise
            except LimitExceeded:
                raise
            except (requests.RequestException, OSError) as exc:
                if not (watch.fired or isinstance(exc, requests.Timeout)):
                    raise
                raise self._late(by_query) from exc
            if watch.fired:
                # A body without a length ends where the watchdog cut it: not an answer.
                raise self._late(by_query)
        # What hooks, logs and the next redirect hop see: the request without the token.
        response.request = request
        # Every answer read here is JSON, which is UTF-8 (RFC 8259): a charset the answer claims
        # is not believed, and bytes that are not UTF-8 become U+FFFD, not an error.
        response.encoding = "utf-8"
        if urllib.parse.urlsplit(request.url or "").path.endswith(INVOKE_PATH):
            _check_portal_json(response, self)
        return response

    def _request_time(self) -> tuple[float, bool]:
        """Seconds this request may take, and whether the query's deadline is what bounds it."""
        seconds = self.limits.timeout
        if self._query_deadline is None:
            return seconds, False
        left = self._query_deadline - time.monotonic()
        if left <= 0:
            raise self._late(True)
        return (left, True) if left < seconds else (seconds, False)

    def _late(self, by_query: bool) -> requests.RequestException:
        if by_query:
            return LimitExceeded(
                f"the query took longer than {self.limits.query_time:g} s (--max-query-time)"
            )
        return ArchiveTimeout(f"no complete answer within {self.limits.timeout:g} s (--timeout)")

    def _check_page(self, body: str) -> None:
        m = _PAGE.search(body) if body else None
        if m and int(m.group(1)) > self.limits.max_pages:
            raise LimitExceeded(
                f"the archive's answer runs to more than {self.limits.max_pages} pages "
                "(--max-pages)"
            )

    def _with_token(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """The request as sent: the token cookie for our origin only, never one from the jar."""
        wire = request.copy()
        header = wire.headers.get("Cookie") or ""
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        cookies = [
            c.strip()
            for c in header.split(";")
            if c.strip() and c.strip().partition("=")[0].strip() != TOKEN_COOKIE
        ]
        if self._token is not None and origin(wire.url or "") == self._origin:
            cookies.append(f"{TOKEN_COOKIE}={self._token}")
        if cookies:
            wire.headers["Cookie"] = "; ".join(cookies)
        else:
            wire.headers.pop("Cookie", None)
        return wire

    def _read(self, response: requests.Response) -> None:
        """The whole body, decompressed, within what this answer may still take."""
        allowed = self.limits.max_response - self._answer_bytes
        claimed = response.headers.get("Content-Length", "")
        identity = response.headers.get("Content-Encoding", "identity").lower() == "identity"
        if identity and claimed.isdigit() and int(claimed) > allowed:
            raise self._too_large()
        chunks = []
        size = 0
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > allowed:
                raise self._too_large()
            chunks.append(chunk)
        self._answer_bytes += size
        response._content = b"".join(chunks)

    def _too_large(self) -> LimitExceeded:
        return LimitExceeded(
            f"an answer of the archive is larger than {_mib(self.limits.max_response)} "
            "(--max-response)"
        )

    def count_rows(self, rows: int) -> None:
        self.rows += rows
        if self.rows > self.limits.max_rows:
            raise LimitExceeded(
                f"the archive's answer has more than {self.limits.max_rows} rows (--max-rows)"
            )


def install(session: requests.Session, adapter: GuardedAdapter) -> None:
    """Route every request of `session` through `adapter`."""
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter)
    session.max_redirects = MAX_REDIRECTS
    # Whatever put the token in the jar before (astroquery's own login) must not send it.
    session.cookies.set(TOKEN_COOKIE, None)


def _text_body(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("latin-1")
    return body if isinstance(body, str) else ""


def _mib(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


# -- Portal answers astroquery can type ---------------------------------------------------------


def _check_portal_json(response: requests.Response, adapter: GuardedAdapter) -> None:
    """Make `response.json()` return an answer astroquery can type, counting its rows once.

    Wrapping the parse (astroquery parses each answer twice) costs no extra parse and keeps no
    parsed copy alive.
    """
    parse = response.json
    counted = False

    def json(**kwargs: Any) -> Any:
        nonlocal counted
        doc = parse(**kwargs)
        malformed = portal_document(doc)
        if not counted:
            counted = True
            adapter.malformed_rows += malformed
            if isinstance(doc, dict) and doc.get("status") == "COMPLETE":
                data = doc.get("data")
                adapter.count_rows(len(data) if isinstance(data, list) else 0)
        return doc

    response.json = json  # type: ignore[method-assign]


def portal_document(doc: Any) -> int:
    """Fix, in place, what in a Portal answer would make astroquery's table conversion fail.

    Rows that are not JSON objects are removed (their number is returned); an unknown column
    type becomes `string`; integer cells astroquery cannot convert become `INVALID_INT`, number
    cells it cannot convert become null (masked).
    """
    if not isinstance(doc, dict):
        return 0
    fields, data = doc.get("fields"), doc.get("data")
    if not isinstance(fields, list) or not isinstance(data, list):
        return 0
    ints: list[str] = []
    floats: list[str] = []
    for f in fields:
        if not isinstance(f, dict):
            continue
        kind = str(f.get("type", "")).lower()
        name = f.get("name")
        if not isinstance(name, str):
            continue
        if kind in _INT_TYPES:
            ints.append(name)
        elif kind in _FLOAT_TYPES:
            floats.append(name)
        elif kind not in _OTHER_TYPES:
            f["type"] = "string"
    rows = [row for row in data if isinstance(row, dict)]
    malformed = len(data) - len(rows)
    if malformed:
        data[:] = rows
    for row in rows:
        for name in ints:
            value = row.get(name)
            if value is not None and not (type(value) is int and _INT64[0] <= value <= _INT64[1]):
                row[name] = _as_int64(value)
        for name in floats:
            value = row.get(name)
            if value is not None and type(value) is not float:
                row[name] = _as_float(value)
    return malformed


def _as_int64(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        ok = math.isfinite(value) and _INT64[0] <= value <= _INT64[1]
        return int(value) if ok else INVALID_INT
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            return INVALID_INT
        return number if _INT64[0] <= number <= _INT64[1] else INVALID_INT
    return INVALID_INT


def _as_float(value: Any) -> float | None:
    if isinstance(value, int | str):
        try:
            return float(value)
        except (OverflowError, ValueError):
            return None
    return None
