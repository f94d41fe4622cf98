"""A hostile archive: a real HTTP server on loopback in front of another one (the simulator).

`hostile(upstream)` starts a `HostileProxy` and stops it however the test ends. Every request it
receives is recorded (`seen`, `saw`) and answered by the first rule that matches it, else
forwarded to the upstream unchanged (the answer streamed back, so byte-range reads of big files
pass through as they are). A rule pairs a match with an action:

    with hostile(sim_url) as proxy, hostile(sim_url) as elsewhere:
        proxy.on(portal("Mast.Caom.Products"), rows({"size": 10**20}, where=named("_cal.fits")))
        proxy.on(path("/whoami"), redirect(elsewhere.url))
        ...                                   # the client under test talks to proxy.url
        assert not elsewhere.saw(TOKEN)

Matches: `any_request`, `path(prefix)`, `portal(service)` (a Portal `/api/v0/invoke` request,
of one service or any); `on(..., times=n)` applies a rule to the first n matches only.

Actions, each a function of one `Exchange`:
- `rows(change, where=...)`, `portal_doc(change)`, `body(change)`, `headers(**set)`: forward,
  then rewrite the answer (Portal rows, the whole Portal JSON, the body bytes, headers).
- `redirect(base, status)`: send the client to `base` + the same path and query.
- `stall()`: read the request and never answer, until the proxy closes.
- `trickle(step, interval)`: forward, then send the answer `step` bytes at a time.
- `gzip_bomb(size)`: `Content-Encoding: gzip`, a small body that inflates to `size` bytes of JSON.
- `page_forever()`: every Portal answer says one more page follows.
- `executing_forever()`: every Portal answer says the query is still executing.
- `lie_length(extra)`: a `Content-Length` `extra` bytes longer than the body, then close.
- `lie_encoding(encoding)`: a `Content-Encoding` the body does not have.
- `canned(status, headers, body)`: a fixed answer.

Stalls and trickles end when the proxy closes, and after `MAX_HOLD` seconds at most.
"""

from __future__ import annotations

import functools
import http.client
import json
import socketserver
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

MAX_HOLD = 120.0
INVOKE = "/api/v0/invoke"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


# -- what was received and what is sent ------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    target: str  # path and query, as on the request line
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def raw(self) -> bytes:
        """Everything received: request line, headers and body."""
        head = [f"{self.method} {self.target}", *(f"{k}: {v}" for k, v in self.headers)]
        return "\r\n".join(head).encode("latin-1", "replace") + b"\r\n\r\n" + self.body

    def portal(self) -> dict[str, Any] | None:
        """The Portal request (`request=` JSON, in the body or the query), if this is one."""
        if not self.path.endswith(INVOKE):
            return None
        text = self.body.decode("latin-1") or self.target.partition("?")[2]
        found = urllib.parse.parse_qs(text).get("request")
        try:
            doc = json.loads(found[0]) if found else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def set_header(self, name: str, value: str | None) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))

    def json(self) -> Any:
        return json.loads(self.body)


Match = Callable[[Seen], bool]
Action = Callable[["Exchange"], None]


@dataclass
class _Rule:
    match: Match
    action: Action
    times: int | None


class Exchange:
    """One request being answered: what an action works with."""

    def __init__(self, handler: _Handler, seen: Seen) -> None:
        self._handler = handler
        self.seen = seen
        self.proxy = handler.server

    def forward(self) -> Answer:
        """The upstream's whole answer to this request."""
        conn, response = self._upstream()
        try:
            return Answer(response.status, response.getheaders(), response.read())
        finally:
            conn.close()

    def pass_through(self) -> None:
        """Forward, streaming the upstream's answer back as it comes."""
        conn, response = self._upstream()
        try:
            length = response.getheader("Content-Length")
            self._head(
                response.status,
                [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP],
                length=int(length) if length is not None else None,
            )
            if self.seen.method == "HEAD":
                return
            while chunk := response.read(1 << 16):
                self._handler.wfile.write(chunk)
        finally:
            conn.close()

    def send(
        self,
        answer: Answer,
        *,
        length: int | None = None,
        step: int | None = None,
        interval: float = 0.0,
    ) -> None:
        """Write `answer`; its `Content-Length` is `length` if given (the connection is then
        closed after the body), else the body's. With `step`, the body goes out `step` bytes
        every `interval` seconds."""
        headers = [(k, v) for k, v in answer.headers if k.lower() not in _HOP_BY_HOP]
        lie = length is not None
        self._head(answer.status, headers, length=length if lie else len(answer.body), close=lie)
        if self.seen.method == "HEAD":
            return
        body = answer.body
        if step is None:
            self._handler.wfile.write(body)
            return
        for start in range(0, len(body), step):
            if self.proxy.closing.wait(interval):
                return
            self._handler.wfile.write(body[start : start + step])
            self._handler.wfile.flush()

    def hold(self) -> None:
        """Answer nothing until the proxy closes (or MAX_HOLD), then drop the connection."""
        self.proxy.closing.wait(MAX_HOLD)
        self._handler.close_connection = True

    def _head(
        self, status: int, headers: list[tuple[str, str]], length: int | None, close: bool = False
    ) -> None:
        h = self._handler
        h.send_response(status)
        for key, value in headers:
            h.send_header(key, value)
        if length is None or close:
            h.send_header("Connection", "close")
            h.close_connection = True
        if length is not None:
            h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.flush()

    def _upstream(self) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parts = urllib.parse.urlsplit(self.proxy.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        headers = {k: v for k, v in self.seen.headers if k.lower() not in _HOP_BY_HOP}
        conn.request(self.seen.method, self.seen.target, self.seen.body or None, headers)
        return conn, conn.getresponse()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileProxy

    def handle_one_request(self) -> None:
        with suppress(ConnectionError, TimeoutError):
            super().handle_one_request()

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, tuple(self.headers.items()), body)
        action = self.server.record(seen)
        (action or _pass_through)(Exchange(self, seen))

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _pass_through(ex: Exchange) -> None:
    ex.pass_through()


class HostileProxy(socketserver.ThreadingTCPServer):
    """See the module docstring. `url` is where clients go; `upstream` where it forwards."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._seen: list[Seen] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def on(self, match: Match, action: Action, times: int | None = None) -> HostileProxy:
        """Answer requests that `match` with `action` (the first `times` of them only)."""
        with self._lock:
            self._rules.append(_Rule(match, action, times))
        return self

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def saw(self, secret: str) -> bool:
        """Whether `secret` appeared anywhere in any request received (line, headers, body,
        raw or URL-encoded)."""
        needles = {secret.encode(), urllib.parse.quote(secret, safe="").encode()}
        return any(n in seen.raw() for seen in self.seen for n in needles)

    def record(self, seen: Seen) -> Action | None:
        with self._lock:
            self._seen.append(seen)
            for rule in self._rules:
                if rule.times != 0 and rule.match(seen):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.action
        return None


@contextmanager
def hostile(upstream: str) -> Iterator[HostileProxy]:
    """A `HostileProxy` in front of `upstream`, serving until the block ends."""
    proxy = HostileProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield proxy
    finally:
        proxy.closing.set()
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


# -- matches -------------------------------------------------------------------------------------


def any_request(seen: Seen) -> bool:
    return True


def path(prefix: str) -> Match:
    return lambda seen: seen.path.startswith(prefix)


def portal(service: str | None = None) -> Match:
    """A Portal request (of `service`, e.g. `Mast.Caom.Products`, or any)."""

    def match(seen: Seen) -> bool:
        doc = seen.portal()
        return doc is not None and (service is None or doc.get("service") == service)

    return match


# -- actions -------------------------------------------------------------------------------------


def body(change: Callable[[bytes], bytes]) -> Action:
    def action(ex: Exchange) -> None:
        answer = ex.forward()
        answer.body = change(answer.body)
        ex.send(answer)

    return action


def headers(**values: str | None) -> Action:
    """Forward, then set (or with None remove) headers: `headers(Content_Type="...")`."""

    def action(ex: Exchange) -> None:
        answer = ex.forward()
        for name, value in values.items():
            answer.set_header(name.replace("_", "-"), value)
        ex.send(answer)

    return action


def portal_doc(change: Callable[[dict[str, Any], Seen], None]) -> Action:
    """Forward, then change the Portal answer's JSON in place (written back with escapes, so
    lone surrogates, NUL and ESC survive as `\\uXXXX`)."""

    def action(ex: Exchange) -> None:
        answer = ex.forward()
        doc = answer.json()
        change(doc, ex.seen)
        answer.body = json.dumps(doc).encode()
        ex.send(answer)

    return action


def rows(
    change: Mapping[str, Any] | Callable[[dict[str, Any]], None],
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> Action:
    """Forward, then update (a mapping) or change (a function) each row of the Portal answer
    for which `where` holds (every row without it)."""

    def rewrite(doc: dict[str, Any], seen: Seen) -> None:
        for row in doc.get("data") or ():
            if where is None or where(row):
                if callable(change):
                    change(row)
                else:
                    row.update(change)

    return portal_doc(rewrite)


def named(suffix: str, column: str = "productFilename") -> Callable[[dict[str, Any]], bool]:
    """Rows whose `column` ends with `suffix`."""
    return lambda row: str(row.get(column, "")).endswith(suffix)


def redirect(base: str, status: int = 302) -> Action:
    def action(ex: Exchange) -> None:
        ex.send(Answer(status, [("Location", base.rstrip("/") + ex.seen.target)]))

    return action


def stall() -> Action:
    return lambda ex: ex.hold()


def trickle(step: int = 1, interval: float = 0.2) -> Action:
    def action(ex: Exchange) -> None:
        ex.send(ex.forward(), step=step, interval=interval)

    return action


@functools.lru_cache(maxsize=4)
def _bomb(size: int) -> bytes:
    head, tail = b'{"status": "COMPLETE", "msg": "", "fields": [], "data": []', b"}"
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip format
    out = [packer.compress(head)]
    spaces = b" " * (1 << 20)
    for _ in range(size >> 20):
        out.append(packer.compress(spaces))
    out += [packer.compress(tail), packer.flush()]
    return b"".join(out)


def gzip_bomb(size: int = 512 << 20) -> Action:
    """A valid gzip body of a few hundred KB that inflates to `size` bytes of valid JSON."""

    def action(ex: Exchange) -> None:
        head = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
        ex.send(Answer(200, head, _bomb(size)))

    return action


def page_forever() -> Action:
    """Forward, then claim that one more page follows this one, whatever page was asked."""

    def more(doc: dict[str, Any], seen: Seen) -> None:
        paging = doc.get("paging")
        if isinstance(paging, dict):
            paging["pagesFiltered"] = int(paging.get("page", 1)) + 1

    return portal_doc(more)


def executing_forever() -> Action:
    running = json.dumps({"status": "EXECUTING", "msg": "", "percent complete": 0}).encode()
    return canned(200, {"Content-Type": "application/json"}, running)


def lie_length(extra: int = 1000) -> Action:
    def action(ex: Exchange) -> None:
        answer = ex.forward()
        ex.send(answer, length=len(answer.body) + extra)

    return action


def lie_encoding(encoding: str = "gzip") -> Action:
    return headers(Content_Encoding=encoding)


def canned(status: int, head: Mapping[str, str] | None = None, data: bytes = b"") -> Action:
    def action(ex: Exchange) -> None:
        ex.send(Answer(status, list((head or {}).items()), data))

    return action
