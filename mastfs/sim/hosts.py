"""The simulator's other hosts: where `/url/` products live, and the name resolver.

Each listens on a port (and, on loopback, an address) of its own, so it is another origin
than the archive, as the real ones are:

- **files** (`SimServer.files_url`): serves `mast:<MISSION>/url/<rest>` products at
  `/<mission>/<rest>` (path and query), where the archive's `Download/file` redirects under the
  `url_redirect` knob, as MAST sends SPITZER, HLA, GALEX and IUE products to other hosts. No
  token is wanted here: a request that carries one is counted (`tokens_elsewhere` in the file's
  stats). Under `redirect_ignores_range` it answers `Range` with 200 and the whole body.
- **resolver** (`SimServer.resolver_url`): the SANTA name resolver astroquery 0.4.11 asks
  (`GET /Santa-war/query?name=...&outputFormat=json[&resolver=...|&resolveAll=true]`),
  answering `{"resolvedCoordinate": [...], "status": ""}`.

Both take the archive's faults (latency, bandwidth, errors); the resolver is an API call. The
CRDS host, a third, has a module of its own (`api_crds.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mastfs.sim.api_downloads import serve_file
from mastfs.sim.api_portal import SANTA
from mastfs.sim.dispatch import Handler
from mastfs.sim.faults import RequestPlan
from mastfs.sim.handler import Route

if TYPE_CHECKING:
    from mastfs.sim.handler import BaseHandler, Request


def url_uri(target: str) -> str:
    """The `/url/` product a files-host request target names (`api_downloads.url_path`)."""
    path = target.split("://", 1)[1].partition("/")[2] if "://" in target else target[1:]
    mission, _, rest = path.partition("/")
    return f"mast:{mission.upper()}/url/{rest}"


def _url_file(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    uri = url_uri(h.path)
    serve_file(h, req.method, uri, h.sim.file(uri))


class FilesHandler(Handler):
    host_name = "files"
    routes = (Route((), _url_file, prefix="/", own_faults=True),)


class ResolverHandler(Handler):
    host_name = "resolver"
    routes = (SANTA,)
