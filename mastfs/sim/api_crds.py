"""The CRDS host (`SimServer.crds_url`): reference files and contexts, as CRDS serves them.

Routes, as jwst-crds.stsci.edu answers them:

- `GET|HEAD /unchecked_get/references/{observatory}/{name}`: a reference file
  (`crds_files.py`), with single byte ranges and validators like any product download;
- `GET|HEAD /unchecked_get/mappings/{observatory}/{name}`: a context (`jwst_1241.pmap`).

Names are looked up exactly, never used as paths; anything else is 404. Answers are
`application/octet-stream`, take the download faults (latency, bandwidth, errors, resets,
stalls; `scope="crds:"` confines them here) and count in the stats under `crds:{obs}/{name}`,
host `"crds"`; a request carrying `Authorization` (or a MAST token cookie) counts in that
file's `tokens_elsewhere`. Under the `crds_unavailable` knob every answer is 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mastfs.sim.api_downloads import note_token_elsewhere, serve_file
from mastfs.sim.crds_files import crds_uri
from mastfs.sim.dispatch import Handler
from mastfs.sim.handler import Route
from mastfs.sim.portal import error_body

if TYPE_CHECKING:
    from mastfs.sim.faults import RequestPlan
    from mastfs.sim.handler import BaseHandler, Request

PREFIX = "/unchecked_get/"
MIME = "application/octet-stream"


def _crds(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    what, _, rest = req.path.removeprefix(PREFIX).partition("/")
    observatory, _, name = rest.partition("/")
    known = req.path.startswith(PREFIX) and what in ("references", "mappings")
    uri = crds_uri(observatory, name) if known and observatory and name else None
    if h.sim.faults.settings.crds_unavailable:
        if uri is not None:
            note_token_elsewhere(h, uri)
        h.send_json(503, error_body("CRDS is unavailable"), uri=uri, stat="crds")
        return
    if req.method not in ("GET", "HEAD"):
        allow = [("Allow", "GET, HEAD")]
        h.send_json(405, error_body(f"method {req.method} not allowed"), allow, stat="crds")
        return
    if uri is None:
        h.send_json(404, error_body(f"no such CRDS file: {req.path}"), stat="crds")
        return
    files = h.sim.crds
    if what == "references":
        found = files.reference(observatory, name)
    else:
        found = files.mapping(observatory, name)
    serve_file(h, req.method, uri, found, MIME)


class CrdsHandler(Handler):
    host_name = "crds"
    routes = (Route((), _crds, prefix="/", own_faults=True),)
