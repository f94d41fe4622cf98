"""The archive simulator's HTTP server: `SimServer`, its lifecycle and its connections.

One `ThreadingHTTPServer` (HTTP/1.1 keep-alive, a daemon thread per connection) answers, by
API (routed in `dispatch.py`):

- Portal (`api_portal.py`): `POST|GET /api/v0/invoke` (Mashup requests, see `portal.py`),
  `POST /portal/Mashup/Mashup.asmx/columnsconfig` and the SANTA name resolver
  `GET /Santa-war/query`;
- downloads (`api_downloads.py`): `GET|HEAD /api/v0.1/Download/file?uri=...` with single byte
  ranges, validators (ETag, Last-Modified) and exclusive-access rules;
  `POST /api/v0.1/Download/bundle.sh`;
- auth (`api_auth.py`): `GET /whoami` (astroquery's login);
- directory view (`api_directory.py`): `/files/...`, the same bytes as an autoindex tree;
- control (`api_control.py`): `/__sim/...`, stats, fault knobs and content changes for tests.

Three more listeners are other hosts (`hosts.py`): `files_url` serves `mast:<MISSION>/url/...`
products (the archive redirects there under `url_redirect`), `resolver_url` the SANTA resolver,
`crds_url` the CRDS reference files the JWST products name (`api_crds.py`, `crds_files.py`).

Requests in absolute form (`GET http://host/path`) are served as if addressed to this server,
so a client whose hard-coded host (astroquery's SANTA resolver) cannot be configured can reach
the simulator through `HTTP_PROXY`.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from mastfs.sim.api_crds import CrdsHandler
from mastfs.sim.api_directory import Listing
from mastfs.sim.api_downloads import (
    CHUNK,
    UNSATISFIABLE,
    content_disposition,
    content_type,
    http_date,
    parse_range,
    quoted_etag,
)
from mastfs.sim.crds_files import CrdsFiles
from mastfs.sim.dispatch import Handler
from mastfs.sim.faults import Faults
from mastfs.sim.handler import MAX_REQUEST_BODY, SLOW_CHUNK
from mastfs.sim.hosts import FilesHandler, ResolverHandler
from mastfs.sim.portal import Portal
from mastfs.sim.stats import Stats

if TYPE_CHECKING:
    from mastfs.sim.catalog import Catalog, Token
    from mastfs.sim.content import SimFile

__all__ = [
    "CHUNK",
    "MAX_REQUEST_BODY",
    "SLOW_CHUNK",
    "UNSATISFIABLE",
    "SimServer",
    "content_disposition",
    "content_type",
    "http_date",
    "parse_range",
    "quoted_etag",
]

log = logging.getLogger(__name__)


class SimServer:
    """The simulator, serving in background threads. `url` is valid after `start()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        catalog: Catalog | None = None,
        faults: Faults | None = None,
        other_host: str | None = None,
    ) -> None:
        """`other_host`: the address of the files and resolver hosts (`hosts.py`); by default
        127.0.0.2 when the archive is on 127.0.0.1 (another host, so cookies do not cross),
        else the archive's own address (another port)."""
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
        self.expired_tokens = frozenset(catalog_module.EXPIRED_TOKENS)
        self.portal = Portal(
            catalog, catalog_module.OBSERVATION_FIELDS, catalog_module.PRODUCT_FIELDS
        )
        # The CRDS host's reference files and contexts.
        self.crds = CrdsFiles(catalog.files())
        self.url = ""
        # The second host (`/url/` products), the resolver's and CRDS's, valid after `start()`.
        self.files_url = ""
        self.resolver_url = ""
        self.crds_url = ""
        self.other_host = other_host
        self._others: list[tuple[_HTTPServer, threading.Thread]] = []
        self._changed: dict[str, SimFile] = {}
        self._lock = threading.Lock()
        self._listing: Listing | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        httpd = _HTTPServer((self.host, self.port), Handler, self)
        self._httpd = httpd
        host, port = str(httpd.server_address[0]), int(httpd.server_address[1])
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="mastsim", daemon=True
        )
        self._thread.start()
        other = self.other_host or ("127.0.0.2" if host == "127.0.0.1" else host)
        self.files_url = self._start_other(other, FilesHandler)
        self.resolver_url = self._start_other(other, ResolverHandler)
        self.crds_url = self._start_other(other, CrdsHandler)
        log.info(
            "archive simulator listening on %s (files host %s, resolver %s, CRDS %s)",
            self.url,
            self.files_url,
            self.resolver_url,
            self.crds_url,
        )

    def _start_other(self, host: str, handler: type) -> str:
        try:
            httpd = _HTTPServer((host, 0), handler, self)
        except OSError:
            if host == self.host:
                raise
            # No second loopback address here: the archive's, on another port.
            httpd = _HTTPServer((self.host, 0), handler, self)
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="mastsim", daemon=True
        )
        thread.start()
        self._others.append((httpd, thread))
        address, port = str(httpd.server_address[0]), int(httpd.server_address[1])
        return f"http://{f'[{address}]' if ':' in address else address}:{port}"

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
        others, self._others = self._others, []
        for other, thread in others:
            other.shutdown()
            other.server_close()
            other.close_connections()
            thread.join(timeout=5)
            other.join_handlers(timeout=5)
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

    def listing(self) -> Listing:
        with self._lock:
            if self._listing is None:
                self._listing = Listing.build(self.catalog.files())
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
