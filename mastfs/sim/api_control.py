"""The test-control API under `/__sim/`: stats, fault knobs, content changes, health.

It answers any method (a wrong one gets a 404 naming it) and is never subject to faults.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mastfs.sim.api_downloads import quoted_etag
from mastfs.sim.faults import FaultConfigError, RequestPlan
from mastfs.sim.portal import error_body

if TYPE_CHECKING:
    from mastfs.sim.handler import BaseHandler, Request

PREFIX = "/__sim/"


def control(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    sim = h.sim
    method, path = req.method, req.path
    try:
        payload = json.loads(req.body) if req.body.strip() else {}
    except json.JSONDecodeError as e:
        h.send_json(400, error_body(f"body is not JSON: {e}"))
        return
    if not isinstance(payload, dict):
        h.send_json(400, error_body("body must be a JSON object"))
        return
    if path == "/__sim/stats" and method in ("GET", "HEAD"):
        h.send_json(200, sim.stats.to_json())
    elif path == "/__sim/stats/reset" and method == "POST":
        sim.stats.reset()
        h.send_json(200, {"status": "OK"})
    elif path == "/__sim/faults" and method in ("GET", "HEAD"):
        h.send_json(200, sim.faults.to_json())
    elif path == "/__sim/faults" and method == "POST":
        try:
            sim.faults.update(payload)
        except FaultConfigError as e:
            h.send_json(400, error_body(str(e)))
            return
        h.send_json(200, sim.faults.to_json())
    elif path in ("/__sim/faults/reset", "/__sim/faults/clear") and method == "POST":
        sim.faults.clear()
        h.send_json(200, sim.faults.to_json())
    elif path == "/__sim/change" and method == "POST":
        uri = payload.get("uri")
        generation = payload.get("generation")
        if not isinstance(uri, str) or (generation is not None and not isinstance(generation, int)):
            h.send_json(400, error_body('expected {"uri": "mast:...", "generation"?: N}'))
            return
        try:
            new = sim.change(uri, generation)
        except KeyError:
            h.send_json(404, error_body(f"File not found: {uri}"))
            return
        answer = {
            "uri": uri,
            "etag": quoted_etag(new.etag),
            "generation": new.generation,
            "size": new.size,
        }
        h.send_json(200, answer)
    elif path == "/__sim/health":
        urls = {
            "url": sim.url,
            "files_url": sim.files_url,
            "resolver_url": sim.resolver_url,
            "crds_url": sim.crds_url,
        }
        h.send_json(200, {"status": "OK", **urls})
    else:
        h.send_json(404, error_body(f"unknown control endpoint {method} {path}"))
