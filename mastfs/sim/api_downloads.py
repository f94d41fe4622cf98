"""File downloads: `Download/file` with ranges, validators and access rules; `bundle.sh`.

A file body goes out as large memoryview chunks through `socket.sendall`; the per-chunk loop
does no fault or bandwidth checks unless a fault is configured, which keeps one stream well
above 1 GB/s on loopback.
"""

from __future__ import annotations

import email.utils
import gzip
import shlex
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from mastfs.sim.api_auth import access_denied
from mastfs.sim.api_auth import token as auth_token
from mastfs.sim.faults import Lie, RequestPlan
from mastfs.sim.handler import Route
from mastfs.sim.portal import error_body

if TYPE_CHECKING:
    from mastfs.sim.content import SimFile
    from mastfs.sim.handler import BaseHandler, Request

CHUNK = 1 << 20  # fast-path write size: large enough that per-call overhead vanishes

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


def span_of(
    rng: tuple[int, int] | None, size: int, headers: list[tuple[str, str]]
) -> tuple[int, int, int]:
    """(status, start, end) of the answer to a satisfiable range (None: the whole body); a
    `Content-Range` is appended to `headers` for a 206."""
    if rng is None:
        return 200, 0, size
    headers.append(("Content-Range", f"bytes {rng[0]}-{rng[1]}/{size}"))
    return 206, rng[0], rng[1] + 1


def _etag_list(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _weak_match(header: str, etag: str | None) -> bool:
    def bare(t: str) -> str:
        return t[2:] if t.startswith("W/") else t

    return any(t == "*" or (etag and bare(t) == bare(etag)) for t in _etag_list(header))


def _strong_match(header: str, etag: str | None) -> bool:
    if etag is None:
        # The file exists, so `*` matches; no tag can match an answer without an ETag.
        return header.strip() == "*"
    if etag.startswith("W/"):
        return False
    return any(t == "*" or t == etag for t in _etag_list(header))


def _is_date(value: str) -> bool:
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return True


def download(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    uri = (req.query.get("uri") or [""])[0]
    if req.method == "POST" and not uri:
        uri = (parse_qs(req.body.decode("utf-8", "replace")).get("uri") or [""])[0]
    if not uri:
        h.send_json(400, error_body("missing 'uri' parameter"), stat="file")
        return
    serve_file(h, req.method, uri, h.sim.file(uri))


def note_token_elsewhere(h: BaseHandler, uri: str) -> None:
    """Count a request for `uri` at a host other than the archive that carries a MAST token
    or any `Authorization`: a leak, whatever the answer."""
    if h.host_name != "archive" and (h.headers.get("Authorization") or auth_token(h)):
        h.sim.stats.mark_token_elsewhere(uri)


def serve_file(
    h: BaseHandler, method: str, uri: str, f: SimFile | None, mime: str | None = None
) -> None:
    """Answer a request for the bytes of `uri` (also the directory view's file links, the
    second host's `/url/` files, `hosts.py`, and the CRDS host's, `api_crds.py`); `mime`: the
    Content-Type, if not the file name's."""
    sim = h.sim
    note_token_elsewhere(h, uri)
    plan = sim.faults.plan(uri, True)
    if plan.latency:
        time.sleep(plan.latency)
    if plan.error_status is not None:
        body = error_body("simulated server error")
        h.send_json(plan.error_status, body, plan.error_headers(), uri=uri)
        return
    if f is None:
        h.send_json(404, error_body(f"File not found: {uri}"), uri=uri)
        return
    manners = sim.faults.settings
    if h.host_name == "archive":
        if manners.url_redirect and is_url_product(uri) and sim.files_url:
            location = sim.files_url + url_path(uri)
            h.send_json(302, error_body("found elsewhere"), [("Location", location)], uri=uri)
            return
        denied = access_denied(h, f)
        if denied is not None:
            status, msg = denied
            extra = [("WWW-Authenticate", 'Bearer realm="mast"')] if status == 401 else []
            h.send_json(status, error_body(msg), extra, uri=uri)
            return
    ignore_range = plan.ignore_range or (h.host_name == "files" and manners.redirect_ignores_range)
    has_etag = not (manners.no_etag and manners.no_etag in uri)
    no_length = bool(manners.no_length and manners.no_length in uri)

    size = f.size
    etag = quoted_etag(f.etag) if has_etag else None
    headers = [
        ("Content-Type", mime or content_type(f.filename)),
        ("Accept-Ranges", "none" if ignore_range else "bytes"),
        *([("ETag", etag)] if etag else []),
        ("Last-Modified", http_date(f.last_modified)),
        ("Content-Disposition", content_disposition(f.filename)),
    ]
    hdrs = h.headers
    if_match = hdrs.get("If-Match")
    if if_match and not _strong_match(if_match, etag):
        h.send_json(412, error_body("precondition failed: ETag does not match"), uri=uri)
        return
    if_none_match = hdrs.get("If-None-Match")
    not_modified = False
    if if_none_match:
        not_modified = _weak_match(if_none_match, etag)
    elif hdrs.get("If-Modified-Since"):
        ims = hdrs["If-Modified-Since"]
        since = email.utils.parsedate_to_datetime(ims) if _is_date(ims) else None
        not_modified = since is not None and int(f.last_modified) <= since.timestamp()
    if not_modified:
        validators = [(k, v) for k, v in headers if k in ("ETag", "Last-Modified")]
        h.send(304, b"", validators, uri=uri)
        return

    rng = None if ignore_range else parse_range(hdrs.get("Range"), size)
    if rng is not None and hdrs.get("If-Range") and not _if_range_holds(h, f, etag):
        rng = None
    if isinstance(rng, _Unsatisfiable):
        headers = [("Content-Range", f"bytes */{size}"), ("Accept-Ranges", "bytes")]
        h.send_json(416, error_body(f"range not satisfiable (size {size})"), headers, uri=uri)
        return
    status, start, end = span_of(rng, size, headers)
    length: int | None = end - start

    lie = plan.lie(method)
    if lie is not None:
        send_lie(h, method, f, status, headers, start, end, lie)
        return
    if no_length:
        headers.append(("Transfer-Encoding", "chunked"))
        h.chunked = method != "HEAD"
        length = None
    sim.stats.record_file(uri, method, status, host=h.host_name)
    h.write(h.head(status, headers, length))
    h.sent_headers = True
    if method == "HEAD" or end == start:
        if h.chunked:
            h.write(b"0\r\n\r\n")
        return
    stream_body(h, f, uri, start, end, plan)


def stream_body(
    h: BaseHandler, f: SimFile, stat: str, start: int, end: int, plan: RequestPlan
) -> None:
    """Bytes [start, end) of `f` as the body (its headers sent), counted under `stat`: the fast
    path, or the slow one when `plan` has body faults or a bandwidth cap."""
    body_plan = plan.body(end - start)
    h.body_sent = 0
    h.stat_uri = stat
    if body_plan is None:
        for chunk in f.iter_range(start, end, CHUNK):
            h.write_body(chunk)
    else:
        h.stream_slow(f.iter_range(start, end, CHUNK), end - start, body_plan)
    if h.chunked:
        h.write(b"0\r\n\r\n")


def is_url_product(uri: str) -> bool:
    """`mast:<MISSION>/url/...`: a product another host serves."""
    mission, sep, rest = uri.removeprefix("mast:").partition("/")
    return uri.startswith("mast:") and bool(mission) and bool(sep) and rest.startswith("url/")


def url_path(uri: str) -> str:
    """Where the second host serves a `/url/` product: `/<mission>/<rest>` (`hosts.py`)."""
    mission, _, rest = uri.removeprefix("mast:").partition("/")
    return f"/{mission.lower()}/{rest.removeprefix('url/')}"


def send_lie(
    h: BaseHandler,
    method: str,
    f: SimFile,
    status: int,
    headers: list[tuple[str, str]],
    start: int,
    end: int,
    lie: Lie,
) -> None:
    """Answer with bytes [start, end) of `f` as the lying knobs say (docs/simulator.md).

    The body is built in memory: lies are for tests, on files of a few MiB.
    """
    with_body = method != "HEAD"
    body = bytes(f.read(start, end - start)) if with_body or lie.content_encoding else b""
    declared = end - start
    if lie.content_encoding == "gzip":
        encoded = gzip.compress(body, compresslevel=1, mtime=0)
        headers = [*headers, ("Content-Encoding", "gzip")]
        if lie.encoded_length:
            declared = len(encoded)
        body = encoded
    declared = max(0, declared + lie.wrong_length)
    if lie.short_body:
        body = body[: max(0, len(body) - lie.short_body)]
    if lie.long_body:
        body += _FILLER * (lie.long_body // len(_FILLER)) + _FILLER[: lie.long_body % len(_FILLER)]
    length: int | None = declared
    if lie.framing == "chunked":
        headers = [*headers, ("Transfer-Encoding", "chunked")]
        length = None
    elif lie.framing == "close":
        length = None
    # The client waits for a promised byte that never comes: end the connection after a body
    # shorter than its Content-Length, and after one that only the connection's end delimits.
    # After a longer body it stays open, so the extra bytes come before the next answer on it.
    if lie.framing == "close" or (lie.framing == "length" and len(body) < declared):
        h.close_connection = True
    h.sim.stats.record_file(f.uri, method, status)
    h.write(h.head(status, headers, length))
    h.sent_headers = True
    if method == "HEAD":
        return
    h.body_sent = 0
    h.stat_uri = f.uri
    view = memoryview(body)
    if lie.framing == "chunked":
        for i in range(0, len(view), CHUNK):
            piece = view[i : i + CHUNK]
            h.write(b"%x\r\n" % len(piece))
            h.write_body(piece)
            h.write(b"\r\n")
        h.write(b"0\r\n\r\n")
    else:
        # One write: a client that has read the promised bytes finds the extra ones waiting.
        h.write_body(view)


# What a long body appends: recognisably not product bytes.
_FILLER = b"EXTRA BYTES FROM A LYING ARCHIVE\n"


def _if_range_holds(h: BaseHandler, f: SimFile, etag: str | None) -> bool:
    value = h.headers["If-Range"].strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not etag.startswith("W/") and value == etag
    if not _is_date(value):
        return False
    return int(email.utils.parsedate_to_datetime(value).timestamp()) == int(f.last_modified)


def _comment(text: str) -> str:
    """Text safe to put after `#` in a shell script (no line breaks)."""
    return text.replace("\r", " ").replace("\n", " ")


def bundle(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    """A curl script downloading the requested URIs, like MAST's `bundle.sh`."""
    uris = list(req.query.get("uri") or [])
    uris += parse_qs(req.body.decode("utf-8", "replace")).get("uri") or []
    host = h.headers.get("Host") or f"{h.sim.host}:{h.sim.port}"
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
        f = h.sim.file(uri)
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
    h.send(200, body_out, headers, plan, stat="bundle")


ROUTES = (
    Route(("/api/v0.1/Download/file", "/jwst/api/v0.1/Download/file"), download, own_faults=True),
    Route(("/api/v0.1/Download/bundle.sh", "/api/v0.1/Download/bundle"), bundle, api=True),
)
