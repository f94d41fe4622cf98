"""The cloud copy: MAST's `path_lookup` service and an S3-style anonymous bucket `stpubdata`.

- `GET /api/v0.1/path_lookup/?uri=...&uri=...` answers `{uri: {"status_code": 200, "path":
  "/jwst/public/..."}}`, and `{"status_code": 404, "path": null}` for an unknown product, as
  MAST does (docs: mast-api.md §6); more than `MAX_LOOKUP` URIs get 414.
- `GET|HEAD /stpubdata/<key>` (path-style S3, no credentials) serves the object's bytes with a
  single range (`206`), `200` without one (or for several: S3 ignores multi-range), `416` past
  the end, `404 NoSuchKey` (XML) for a key the bucket does not hold. The object's ETag is the
  bucket's own, not the archive's, as on AWS.

What the bucket holds: the PUBLIC JWST and HST files, except previews' thumbnails
(`*_thumb.png`), so that clients meet a product that is only in the archive. Keys follow the
observed layout: HST `hst/public/<first 4 of dataset>/<dataset>/<file>`; JWST levels 1-2
`jwst/public/jw<PID>/jw<PID><obs><visit>/<file>`, level 3 `jwst/public/jw<PID>/L3/t/o<obs>/<file>`,
and (invented: the layout is not known) `jwst/public/jw<PID>/L3/<file>` for program-wide files
(pools). Bytes sent are counted in the stats under `s3://stpubdata/<key>`, apart from the
archive's downloads of the same product.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from mastfs.sim.api_downloads import (
    content_type,
    http_date,
    parse_range,
    span_of,
    stream_body,
)
from mastfs.sim.faults import RequestPlan
from mastfs.sim.handler import Route
from mastfs.sim.portal import error_body

if TYPE_CHECKING:
    from mastfs.sim.catalog import Catalog
    from mastfs.sim.content import SimFile
    from mastfs.sim.handler import BaseHandler, Request

BUCKET = "stpubdata"
BUCKET_PREFIX = f"/{BUCKET}/"
PATH_LOOKUP = "/api/v0.1/path_lookup/"
MAX_LOOKUP = 50
_JWST_EXPOSURE = re.compile(r"^jw(\d{5})(\d{3})(\d{3})")
_JWST_LEVEL3 = re.compile(r"^jw(\d{5})-o(\d{3})")
_JWST_PROGRAM = re.compile(r"^jw(\d{5})_")


def archive_path(f: SimFile) -> str | None:
    """The archive's path of a file (what path_lookup says), None for other missions."""
    name = f.filename
    if f.collection == "HST":
        dataset = f.dataset.lower()
        return f"/hst/public/{dataset[:4]}/{dataset}/{name}"
    if f.collection != "JWST":
        return None
    if m := _JWST_EXPOSURE.match(name):
        return f"/jwst/public/jw{m[1]}/jw{m[1]}{m[2]}{m[3]}/{name}"
    if m := _JWST_LEVEL3.match(name):
        return f"/jwst/public/jw{m[1]}/L3/t/o{m[2]}/{name}"
    if m := _JWST_PROGRAM.match(name):
        return f"/jwst/public/jw{m[1]}/L3/{name}"
    return None


def in_bucket(f: SimFile) -> bool:
    return f.dataRights == "PUBLIC" and not f.filename.endswith("_thumb.png")


_index_lock = threading.Lock()
_indexes: dict[int, tuple[Catalog, dict[str, str]]] = {}


def _keys(catalog: Catalog) -> dict[str, str]:
    """Bucket key → data URI of every file the bucket holds (built once per catalog)."""
    with _index_lock:
        held = _indexes.get(id(catalog))
        if held is None or held[0] is not catalog:
            index = {}
            for f in catalog.files():
                path = archive_path(f)
                if path is not None and in_bucket(f):
                    index[path.lstrip("/")] = f.uri
            held = _indexes[id(catalog)] = (catalog, index)
        return held[1]


def path_lookup(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    uris = req.query.get("uri") or []
    if len(uris) > MAX_LOOKUP:
        h.send_json(414, error_body("Request-URI Too Large"), plan=plan, stat="path_lookup")
        return
    answer = {}
    for uri in uris:
        f = h.sim.file(uri)
        path = archive_path(f) if f is not None else None
        answer[uri] = {"status_code": 200 if path else 404, "path": path}
    h.send_json(200, answer, plan=plan, stat="path_lookup")


def _s3_error(h: BaseHandler, status: int, code: str, key: str, stat: str) -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Key>{key}</Key><RequestId>mastsim</RequestId></Error>"
    ).encode()
    h.send(status, body, [("Content-Type", "application/xml")], uri=stat)


def s3_object(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    sim = h.sim
    key = unquote(req.path[len(BUCKET_PREFIX) :])
    stat = f"s3://{BUCKET}/{key}"
    uri = _keys(sim.catalog).get(key)
    f = sim.file(uri) if uri is not None else None
    fault = sim.faults.plan(uri or stat, True)
    if fault.latency:
        time.sleep(fault.latency)
    if fault.error_status is not None:
        _s3_error(h, fault.error_status, "InternalError", key, stat)
        return
    if f is None:
        _s3_error(h, 404, "NoSuchKey", key, stat)
        return
    size = f.size
    etag = '"' + hashlib.md5(f"s3|{f.etag}".encode(), usedforsecurity=False).hexdigest() + '"'
    headers = [
        ("Content-Type", content_type(f.filename)),
        ("Accept-Ranges", "bytes"),
        ("ETag", etag),
        # Uploaded to the bucket a day after the archive had it.
        ("Last-Modified", http_date(f.last_modified + 86400)),
        ("x-amz-request-id", "mastsim"),
    ]
    rng = parse_range(h.headers.get("Range"), size)
    if rng is not None and not isinstance(rng, tuple):
        _s3_error(h, 416, "InvalidRange", key, stat)
        return
    status, start, end = span_of(rng, size, headers)
    sim.stats.record_file(stat, req.method, status)
    h.write(h.head(status, headers, end - start))
    h.sent_headers = True
    if req.method == "HEAD" or end == start:
        return
    stream_body(h, f, stat, start, end, fault)


ROUTES = (
    Route((PATH_LOOKUP, PATH_LOOKUP.rstrip("/")), path_lookup),
    Route((), s3_object, prefix=BUCKET_PREFIX, own_faults=True),
)
