"""The archive simulator's HTTP server: MAST's Portal API, downloads, auth and a directory view.

One `ThreadingHTTPServer` (HTTP/1.1 keep-alive, a daemon thread per connection) answers:

- `POST|GET /api/v0/invoke` (Mashup requests, see `portal.py`) and
  `POST /portal/Mashup/Mashup.asmx/columnsconfig`;
- `GET|HEAD /api/v0.1/Download/file?uri=...` with single byte ranges, validators (ETag,
  Last-Modified) and exclusive-access rules; `POST /api/v0.1/Download/bundle.sh`;
- `GET /whoami` (astroquery's login) and the SANTA name resolver `GET /Santa-war/query`;
- `/files/...`: the same bytes as an Apache/nginx-style autoindex tree;
- `/__sim/...`: stats, fault knobs and content changes for tests.

Requests in absolute form (`GET http://host/path`) are served as if addressed to this server,
so a client whose hard-coded host (astroquery's SANTA resolver) cannot be configured can reach
the simulator through `HTTP_PROXY`.

File bodies go out as large memoryview chunks through `socket.sendall`; the per-chunk loop does
no fault or bandwidth checks unless a fault is configured, which keeps one stream well above
1 GB/s on loopback.
"""

from __future__ import annotations

import email.utils
import html
import json
import logging
import shlex
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, quote, unquote, urlsplit

from mastfs.sim.faults import NO_FAULTS, BodyPlan, FaultConfigError, Faults, RequestPlan
from mastfs.sim.portal import Portal, PortalError, error_body, parse_request
from mastfs.sim.stats import Stats

if TYPE_CHECKING:
    from mastfs.sim.catalog import Catalog, Token
    from mastfs.sim.content import SimFile

log = logging.getLogger(__name__)

EXCLUSIVE_ACCESS = "EXCLUSIVE_ACCESS"
CHUNK = 1 << 20  # fast-path write size: large enough that per-call overhead vanishes
SLOW_CHUNK = 64 * 1024  # write size when faults must be checked between writes
MAX_REQUEST_BODY = 16 << 20

_CONTENT_TYPES = {
    ".fits": "application/fits",
    ".fit": "application/fits",
    ".fts": "application/fits",
    ".gz": "application/gzip",
    ".json": "application/json",
    ".csv": "text/csv",
    ".ecsv": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".html": "text/html; charset=utf-8",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".asdf": "application/octet-stream",
}


def content_type(filename: str) -> str:
    dot = filename.rfind(".")
    default = "application/octet-stream"
    return _CONTENT_TYPES.get(filename[dot:].lower(), default) if dot >= 0 else default


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII-safe quoted fallback and the exact name per RFC 6266/8187."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def quoted_etag(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


class _Unsatisfiable:
    """Marker: the Range header asks only for bytes past the end."""


UNSATISFIABLE = _Unsatisfiable()


def parse_range(header: str | None, size: int) -> tuple[int, int] | _Unsatisfiable | None:
    """One `Range: bytes=...` spec → inclusive (first, last), UNSATISFIABLE, or None = send all.

    Multiple ranges are answered with the whole body (RFC 9110 lets a server ignore Range; S3
    does the same), as are syntactically invalid headers.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return (max(0, size - n), size - 1)
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    a = int(first)
    b = int(last) if last else size - 1
    if last and b < a:
        return None
    if a >= size:
        return UNSATISFIABLE
    return (a, min(b, size - 1))


def _etag_list(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _weak_match(header: str, etag: str) -> bool:
    def bare(t: str) -> str:
        return t[2:] if t.startswith("W/") else t

    return any(t == "*" or bare(t) == bare(etag) for t in _etag_list(header))


def _strong_match(header: str, etag: str) -> bool:
    if etag.startswith("W/"):
        return False
    return any(t == "*" or t == etag for t in _etag_list(header))


@dataclass
class _Listing:
    """The `/files/` tree: collection → dataset → filename → (uri, size, mtime)."""

    tree: dict[str, dict[str, dict[str, tuple[str, int, float]]]]

    @classmethod
    def build(cls, files: Iterable[SimFile]) -> _Listing:
        tree: dict[str, dict[str, dict[str, tuple[str, int, float]]]] = {}
        for f in files:
            folder = tree.setdefault(f.collection, {}).setdefault(f.dataset, {})
            folder.setdefault(f.filename, (f.uri, f.size, f.last_modified))
        return cls(tree)


class SimServer:
    """The simulator, serving in background threads. `url` is valid after `start()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        catalog: Catalog | None = None,
        faults: Faults | None = None,
    ) -> None:
        if catalog is None:
            from mastfs.sim.catalog import default_catalog

            catalog = default_catalog()
        from mastfs.sim import catalog as catalog_module

        self.host = host
        self.port = port
        self.catalog = catalog
        self.faults = faults if faults is not None else Faults()
        self.stats = Stats()
        self.tokens: dict[str, Token] = dict(catalog_module.TOKENS)
        self.portal = Portal(
            catalog, catalog_module.OBSERVATION_FIELDS, catalog_module.PRODUCT_FIELDS
        )
        self.url = ""
        self._changed: dict[str, SimFile] = {}
        self._lock = threading.Lock()
        self._listing: _Listing | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self._httpd = httpd
        host, port = str(httpd.server_address[0]), int(httpd.server_address[1])
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="mastsim", daemon=True
        )
        self._thread.start()
        log.info("archive simulator listening on %s", self.url)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        httpd.join_handlers(timeout=5)
        log.info("archive simulator on %s stopped", self.url)

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- files ---------------------------------------------------------------------------------

    def file(self, uri: str) -> SimFile | None:
        changed = self._changed.get(uri)
        return changed if changed is not None else self.catalog.file(uri)

    def change(self, uri: str, generation: int | None = None) -> SimFile:
        """Give `uri` new bytes and a new ETag (same size), as when MAST reprocesses a file."""
        with self._lock:
            current = self.file(uri)
            if current is None:
                raise KeyError(uri)
            new = current.with_generation(
                current.generation + 1 if generation is None else generation
            )
            self._changed[uri] = new
        log.info("content of %s changed: generation %d, ETag %s", uri, new.generation, new.etag)
        return new

    def listing(self) -> _Listing:
        with self._lock:
            if self._listing is None:
                self._listing = _Listing.build(self.catalog.files())
            return self._listing


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, sim: SimServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._run_handler, args=(request, client_address), daemon=True)
        with self._conns_lock:
            self._conns[t] = request
        t.start()

    def _run_handler(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(threading.current_thread(), None)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they can exit."""
        with self._conns_lock:
            socks = list(self._conns.values())
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_handlers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._conns_lock:
            threads = list(self._conns)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            # A client dropping an idle keep-alive connection is normal, not an error.
            log.debug("connection from %s ended: %s", client_address, exc)
            return
        log.exception("unhandled error serving %s", client_address)


class _ClientGone(Exception):
    """The peer closed the connection while we were writing."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mastsim/0.1"
    sys_version = ""
    # Idle keep-alive connections are dropped after this long.
    timeout = 300
    server: _HTTPServer

    # -- plumbing ------------------------------------------------------------------------------

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

    def _dispatch(self, method: str) -> None:
        self._sent_headers = False
        self._stat_uri: str | None = None
        self._body_sent = 0
        try:
            self._route(method)
        except _ClientGone:
            self.close_connection = True
        except Exception:
            log.exception("error handling %s %s", method, self.path)
            if self._sent_headers:
                self.close_connection = True
            else:
                self._send_json(500, error_body("internal error in the archive simulator"))

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self.connection.sendall(data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as e:
            raise _ClientGone() from e

    def _head(self, status: int, headers: list[tuple[str, str]], length: int) -> bytes:
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
            f"Content-Length: {length}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(
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
        head = self._head(status, headers or [], len(body))
        no_body = self.command == "HEAD" or status == 304
        sent = 0 if no_body else len(body)
        if uri is not None:
            self.sim.stats.record_file(uri, self.command, status, sent)
        elif stat is not None:
            self.sim.stats.record(stat, status, sent)
        self._sent_headers = True
        if no_body:
            self._write(head)
        elif plan.bandwidth:
            self._write(head)
            self._body_sent = 0
            self._stat_uri = None
            self._stream_slow([body], len(body), BodyPlan(bandwidth=plan.bandwidth))
        else:
            self._write(head + body)

    def _send_json(
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
        self._send(status, body, hdrs, plan, stat=stat, uri=uri)

    def _write_body(self, chunk: bytes | memoryview) -> None:
        """Write part of a body, counting it first (see `_send`) and taking it back on failure."""
        n = len(chunk)
        uri = self._stat_uri
        if uri is not None:
            self.sim.stats.add_file_bytes(uri, n)
        try:
            self._write(chunk)
        except _ClientGone:
            if uri is not None:
                self.sim.stats.add_file_bytes(uri, -n)
            raise
        self._body_sent += n

    def _read_body(self) -> bytes:
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

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() in ("token", "bearer") and value.strip():
                return value.strip()
        cookie_header = self.headers.get("Cookie")
        if cookie_header:
            try:
                cookies = SimpleCookie(cookie_header)
            except CookieError:
                return None
            morsel = cookies.get("mast_token")
            if morsel is not None and morsel.value:
                return morsel.value
        return None

    # -- routing -------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        path, _, query_string = target.partition("?")
        query = parse_qs(query_string, keep_blank_values=True)
        try:
            # Read any body, whatever the method, so the next request on the connection parses.
            body = self._read_body()
        except ValueError as e:
            self.close_connection = True
            self._send_json(413 if "large" in str(e) else 400, error_body(str(e)))
            return

        if path.startswith("/__sim/"):
            self._control(method, path, body)
            return
        if method not in ("GET", "HEAD", "POST"):
            self._send_json(
                405, error_body(f"method {method} not allowed"), [("Allow", "GET, HEAD, POST")]
            )
            return

        if path in ("/api/v0.1/Download/file", "/jwst/api/v0.1/Download/file"):
            uri = (query.get("uri") or [""])[0]
            if method == "POST" and not uri:
                uri = (parse_qs(body.decode("utf-8", "replace")).get("uri") or [""])[0]
            self._download(method, uri)
            return
        if path == "/files" or path.startswith("/files/"):
            self._files(method, path)
            return

        plan = self.sim.faults.plan(path, False)
        if plan.latency:
            time.sleep(plan.latency)
        if plan.error_status is not None:
            self._send_json(plan.error_status, error_body("simulated server error"), stat="error")
            return

        if path == "/api/v0/invoke":
            self._invoke(method, query, body, plan)
        elif path == "/portal/Mashup/Mashup.asmx/columnsconfig":
            self._columns_config(query, body, plan)
        elif path == "/whoami":
            self._whoami(plan)
        elif path in ("/Santa-war/query", "/Santa-war/query/"):
            self._santa(query, plan)
        elif path in ("/api/v0.1/Download/bundle.sh", "/api/v0.1/Download/bundle"):
            self._bundle(query, body, plan)
        elif path == "/":
            self._send(
                200,
                b"mastsim: a MAST-compatible archive simulator. See /files/ and /__sim/stats.\n",
                [("Content-Type", "text/plain; charset=utf-8")],
                stat="root",
            )
        else:
            self._send_json(404, error_body(f"no such endpoint: {path}"), stat="unknown")

    # -- Portal API ----------------------------------------------------------------------------

    def _invoke(
        self, method: str, query: dict[str, list[str]], body: bytes, plan: RequestPlan
    ) -> None:
        stats = self.sim.stats
        try:
            text: str | None
            if method == "POST" and body.lstrip().startswith(b"{"):
                text = body.decode("utf-8")
            else:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
                found = form.get("request") or query.get("request")
                text = found[0] if found else None
            req = parse_request(text)
            stats.record_service(req["service"])
            # `plan is NO_FAULTS` when no fault is set or the request is out of scope.
            if plan is not NO_FAULTS and self.sim.faults.executing_poll(
                json.dumps(req, sort_keys=True)
            ):
                self._send_json(
                    200,
                    {"status": "EXECUTING", "msg": "", "percent complete": 0},
                    plan=plan,
                    stat="invoke",
                )
                return
            result = self.sim.portal.invoke(req)
        except PortalError as e:
            self._send_json(e.http_status, error_body(e.msg), plan=plan, stat="invoke")
            return
        except UnicodeDecodeError:
            self._send_json(400, error_body("request is not UTF-8"), plan=plan, stat="invoke")
            return
        self._send_json(200, result, plan=plan, stat="invoke")

    def _columns_config(self, query: dict[str, list[str]], body: bytes, plan: RequestPlan) -> None:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        config_id = (form.get("colConfigId") or query.get("colConfigId") or [""])[0]
        self._send_json(
            200, self.sim.portal.columns_config(config_id), plan=plan, stat="columnsconfig"
        )

    def _santa(self, query: dict[str, list[str]], plan: RequestPlan) -> None:
        names = query.get("name") or []
        resolver = (query.get("resolver") or [""])[0].upper()
        resolve_all = (query.get("resolveAll") or ["false"])[0].lower() == "true"
        entries = []
        for name in names:
            hit = self.sim.portal.resolve(name)
            if hit is None:
                continue
            if resolve_all:
                entries += [dict(hit, resolver="SIMBAD"), dict(hit, resolver="NED")]
            else:
                entries.append(dict(hit, resolver=resolver or "SIMBAD"))
        self._send_json(200, {"resolvedCoordinate": entries, "status": ""}, plan=plan, stat="santa")

    # -- auth ----------------------------------------------------------------------------------

    def _whoami(self, plan: RequestPlan) -> None:
        token = self._token()
        known = self.sim.tokens.get(token) if token else None
        if known is None:
            info: dict[str, Any] = {
                "anon": True,
                "attrib": {},
                "eppn": None,
                "ezid": None,
                "scopes": [],
                "session": None,
                "token": None,
            }
        else:
            first, _, last = known.display_name.partition(" ")
            user = known.display_name.lower().replace(" ", ".").replace("..", ".")
            info = {
                "anon": False,
                "attrib": {
                    "uuid": f"mastsim-{abs(hash(known.token)) % 10**12:012d}",
                    "first_name": first,
                    "last_name": last,
                    "display_name": known.display_name,
                    "internal": "0",
                    "email": f"{user}@example.org",
                    "Jwstcalengdataaccess": "false",
                },
                "eppn": f"{user}@example.org",
                "ezid": user,
                "scopes": ["mast:user:info", "mast:exclusive_access"],
                "session": None,
                "token": known.token,
            }
        self._send_json(200, info, plan=plan, stat="whoami")

    def _access_denied(self, f: SimFile) -> tuple[int, str] | None:
        """None if this request may read `f`, else (401|403, message)."""
        if (f.dataRights or "").upper() != EXCLUSIVE_ACCESS:
            return None
        token = self._token()
        if token is None:
            return 401, f"{f.uri} is exclusive access: authentication required"
        user = self.sim.tokens.get(token)
        if user is None:
            return 401, "invalid or expired MAST API token"
        if str(f.proposal_id) not in user.proposals:
            return 403, (
                f"{user.display_name} is not authorized for exclusive-access data of program "
                f"{f.proposal_id}"
            )
        return None

    # -- files ---------------------------------------------------------------------------------

    def _download(self, method: str, uri: str) -> None:
        if not uri:
            self._send_json(400, error_body("missing 'uri' parameter"), stat="file")
            return
        self._serve_file(method, uri, self.sim.file(uri))

    def _serve_file(self, method: str, uri: str, f: SimFile | None) -> None:
        sim = self.sim
        plan = sim.faults.plan(uri, True)
        if plan.latency:
            time.sleep(plan.latency)
        if plan.error_status is not None:
            self._send_json(plan.error_status, error_body("simulated server error"), uri=uri)
            return
        if f is None:
            self._send_json(404, error_body(f"File not found: {uri}"), uri=uri)
            return
        denied = self._access_denied(f)
        if denied is not None:
            status, msg = denied
            extra = [("WWW-Authenticate", 'Bearer realm="mast"')] if status == 401 else []
            self._send_json(status, error_body(msg), extra, uri=uri)
            return

        size = f.size
        etag = quoted_etag(f.etag)
        headers = [
            ("Content-Type", content_type(f.filename)),
            ("Accept-Ranges", "none" if plan.ignore_range else "bytes"),
            ("ETag", etag),
            ("Last-Modified", http_date(f.last_modified)),
            ("Content-Disposition", content_disposition(f.filename)),
        ]
        h = self.headers
        if_match = h.get("If-Match")
        if if_match and not _strong_match(if_match, etag):
            self._send_json(412, error_body("precondition failed: ETag does not match"), uri=uri)
            return
        if_none_match = h.get("If-None-Match")
        not_modified = False
        if if_none_match:
            not_modified = _weak_match(if_none_match, etag)
        elif h.get("If-Modified-Since"):
            ims = h["If-Modified-Since"]
            since = email.utils.parsedate_to_datetime(ims) if _is_date(ims) else None
            not_modified = since is not None and int(f.last_modified) <= since.timestamp()
        if not_modified:
            validators = [(k, v) for k, v in headers if k in ("ETag", "Last-Modified")]
            self._send(304, b"", validators, uri=uri)
            return

        rng = None if plan.ignore_range else parse_range(h.get("Range"), size)
        if rng is not None and h.get("If-Range") and not self._if_range_holds(f, etag):
            rng = None
        if isinstance(rng, _Unsatisfiable):
            headers = [("Content-Range", f"bytes */{size}"), ("Accept-Ranges", "bytes")]
            self._send_json(
                416, error_body(f"range not satisfiable (size {size})"), headers, uri=uri
            )
            return
        if rng is None:
            status, start, end = 200, 0, size
        else:
            status, start, end = 206, rng[0], rng[1] + 1
            headers.append(("Content-Range", f"bytes {rng[0]}-{rng[1]}/{size}"))
        length = end - start

        sim.stats.record_file(uri, method, status)
        self._write(self._head(status, headers, length))
        self._sent_headers = True
        if method == "HEAD" or length == 0:
            return
        body_plan = plan.body(length)
        self._body_sent = 0
        self._stat_uri = uri
        if body_plan is None:
            for chunk in f.iter_range(start, end, CHUNK):
                self._write_body(chunk)
        else:
            self._stream_slow(f.iter_range(start, end, CHUNK), length, body_plan)

    def _if_range_holds(self, f: SimFile, etag: str) -> bool:
        value = self.headers["If-Range"].strip()
        if value.startswith(('"', "W/")):
            return not etag.startswith("W/") and value == etag
        if not _is_date(value):
            return False
        return int(email.utils.parsedate_to_datetime(value).timestamp()) == int(f.last_modified)

    def _stream_slow(
        self, chunks: Iterable[bytes | memoryview], length: int, plan: BodyPlan
    ) -> None:
        """Write a body under faults: bandwidth cap, one stall, a reset.

        Progress is kept in `self._body_sent`, so the stats stay right when the body is cut.
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
                sent = self._body_sent
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
                self._write_body(view[:piece])
                view = view[piece:]
                if plan.bandwidth:
                    ahead = self._body_sent / plan.bandwidth - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        if plan.reset_at is not None and self._body_sent < length:
            self._reset_connection()

    def _reset_connection(self) -> NoReturn:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed server or middlebox would."""
        self.close_connection = True
        if self._stat_uri is not None:
            self.sim.stats.mark_reset(self._stat_uri)
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass
        raise _ClientGone()

    def _bundle(self, query: dict[str, list[str]], body: bytes, plan: RequestPlan) -> None:
        uris = list(query.get("uri") or [])
        uris += parse_qs(body.decode("utf-8", "replace")).get("uri") or []
        host = self.headers.get("Host") or f"{self.sim.host}:{self.sim.port}"
        base = f"http://{host}"
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        lines = [
            "#!/bin/sh",
            "#",
            f"# Download script from the MAST archive simulator at {base} ({stamp}).",
            "# Usage: sh mastDownload.sh [TOKEN]; the token may also come from $MAST_API_TOKEN.",
            "#",
            'MAST_API_TOKEN="${1:-$MAST_API_TOKEN}"',
            'DOWNLOAD_FOLDER="${DOWNLOAD_FOLDER:-MAST_' + stamp + '}"',
            'if [ -n "$MAST_API_TOKEN" ]; then AUTH="Authorization: token $MAST_API_TOKEN";'
            ' else AUTH="X-No-Token: 1"; fi',
            "",
        ]
        for uri in uris:
            f = self.sim.file(uri)
            if f is None:
                lines.append(f"# not found: {_comment(uri)}")
                continue
            rel = shlex.quote(f"{f.collection}/{f.dataset}/{f.filename}")
            url = shlex.quote(f"{base}/api/v0.1/Download/file?uri={quote(uri, safe=':/')}")
            lines += [
                f"echo '<<< Downloading File: '{shlex.quote(uri)}",
                f'echo "                  To: $DOWNLOAD_FOLDER/"{rel}',
                'curl -H "$AUTH" --globoff --location-trusted -f --progress-bar --create-dirs'
                f' --output "$DOWNLOAD_FOLDER/"{rel} {url}',
                "",
            ]
        lines.append("exit 0")
        body_out = ("\n".join(lines) + "\n").encode()
        headers = [
            ("Content-Type", "text/x-shellscript; charset=utf-8"),
            ("Content-Disposition", f'attachment; filename="mastDownload_{stamp}.sh"'),
        ]
        self._send(200, body_out, headers, plan, stat="bundle")

    # -- directory view ------------------------------------------------------------------------

    def _files(self, method: str, path: str) -> None:
        parts = [unquote(p) for p in path.split("/")[2:]]
        if path == "/files" or (len(parts) in (1, 2) and parts[-1] != ""):
            # Directory without its trailing slash: redirect like nginx, so relative links work.
            self._send(301, b"", [("Location", path + "/")], stat="files")
            return
        tree = self.sim.listing().tree
        if len(parts) == 3 and parts[2]:
            entry = tree.get(parts[0], {}).get(parts[1], {}).get(parts[2])
            if entry is None:
                self._files_not_found(path)
                return
            self._serve_file(method, entry[0], self.sim.file(entry[0]))
            return
        plan = self.sim.faults.plan(path, False)
        if plan.latency:
            time.sleep(plan.latency)
        if plan.error_status is not None:
            self._send_json(plan.error_status, error_body("simulated server error"), stat="files")
            return
        names = [p for p in parts if p]
        rows: list[tuple[str, bool, int, float]]
        if not names:
            rows = [(c, True, 0, _newest(tree[c].values())) for c in sorted(tree)]
        elif len(names) == 1 and names[0] in tree:
            datasets = tree[names[0]]
            rows = [(d, True, 0, _newest([datasets[d]])) for d in sorted(datasets)]
        elif len(names) == 2 and names[1] in tree.get(names[0], {}):
            files = tree[names[0]][names[1]]
            rows = [(n, False, files[n][1], files[n][2]) for n in sorted(files)]
        else:
            self._files_not_found(path)
            return
        body = _autoindex(path, rows)
        self._send(200, body, [("Content-Type", "text/html; charset=utf-8")], plan, stat="files")

    def _files_not_found(self, path: str) -> None:
        body = f"<html><body><h1>404 Not Found</h1><p>{html.escape(path)}</p></body></html>\n"
        self._send(404, body.encode(), [("Content-Type", "text/html; charset=utf-8")], stat="files")

    # -- control -------------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> None:
        sim = self.sim
        try:
            payload = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError as e:
            self._send_json(400, error_body(f"body is not JSON: {e}"))
            return
        if not isinstance(payload, dict):
            self._send_json(400, error_body("body must be a JSON object"))
            return
        if path == "/__sim/stats" and method in ("GET", "HEAD"):
            self._send_json(200, sim.stats.to_json())
        elif path == "/__sim/stats/reset" and method == "POST":
            sim.stats.reset()
            self._send_json(200, {"status": "OK"})
        elif path == "/__sim/faults" and method in ("GET", "HEAD"):
            self._send_json(200, sim.faults.to_json())
        elif path == "/__sim/faults" and method == "POST":
            try:
                sim.faults.update(payload)
            except FaultConfigError as e:
                self._send_json(400, error_body(str(e)))
                return
            self._send_json(200, sim.faults.to_json())
        elif path in ("/__sim/faults/reset", "/__sim/faults/clear") and method == "POST":
            sim.faults.clear()
            self._send_json(200, sim.faults.to_json())
        elif path == "/__sim/change" and method == "POST":
            uri = payload.get("uri")
            generation = payload.get("generation")
            if not isinstance(uri, str) or (
                generation is not None and not isinstance(generation, int)
            ):
                self._send_json(400, error_body('expected {"uri": "mast:...", "generation"?: N}'))
                return
            try:
                new = sim.change(uri, generation)
            except KeyError:
                self._send_json(404, error_body(f"File not found: {uri}"))
                return
            self._send_json(
                200,
                {
                    "uri": uri,
                    "etag": quoted_etag(new.etag),
                    "generation": new.generation,
                    "size": new.size,
                },
            )
        elif path == "/__sim/health":
            self._send_json(200, {"status": "OK", "url": sim.url})
        else:
            self._send_json(404, error_body(f"unknown control endpoint {method} {path}"))


def _comment(text: str) -> str:
    """Text safe to put after `#` in a shell script (no line breaks)."""
    return text.replace("\r", " ").replace("\n", " ")


def _is_date(value: str) -> bool:
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return True


def _newest(folders: Iterable[dict[str, tuple[str, int, float]]]) -> float:
    return max((e[2] for folder in folders for e in folder.values()), default=0.0)


def _autoindex(path: str, rows: list[tuple[str, bool, int, float]]) -> bytes:
    """nginx-style autoindex HTML: relative hrefs, directories end with `/`."""
    title = html.escape(path)
    out = [
        f"<html>\n<head><title>Index of {title}</title></head>\n<body>\n",
        f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>\n',
    ]
    for name, is_dir, size, mtime in rows:
        shown = name + ("/" if is_dir else "")
        href = quote(name) + ("/" if is_dir else "")
        stamp = time.strftime("%d-%b-%Y %H:%M", time.gmtime(mtime))
        pad = " " * max(1, 51 - len(shown))
        size_text = "-" if is_dir else str(size)
        out.append(
            f'<a href="{html.escape(href)}">{html.escape(shown)}</a>{pad}{stamp} {size_text:>19}\n'
        )
    out.append("</pre><hr></body>\n</html>\n")
    return "".join(out).encode()
