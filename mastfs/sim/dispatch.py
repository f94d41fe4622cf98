"""Routes each request to its API: control, downloads, directory view, Portal, auth.

Order of decisions: the `/__sim/` control API takes any method; other methods than GET, HEAD
and POST get 405; downloads and directory files plan their faults per data URI; every other
path gets the request's fault plan (latency, injected errors) before its API sees it.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from mastfs.sim import api_auth, api_control, api_directory, api_downloads, api_portal, api_s3
from mastfs.sim.faults import NO_FAULTS, RequestPlan
from mastfs.sim.handler import BaseHandler, Request, Route
from mastfs.sim.portal import error_body


def _root(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    h.send(
        200,
        b"mastsim: a MAST-compatible archive simulator. See /files/ and /__sim/stats.\n",
        [("Content-Type", "text/plain; charset=utf-8")],
        stat="root",
    )


ROUTES: tuple[Route, ...] = (
    *api_downloads.ROUTES,
    *api_directory.ROUTES,
    *api_portal.ROUTES,
    *api_auth.ROUTES,
    *api_s3.ROUTES,
    Route(("/",), _root),
)


class Handler(BaseHandler):
    # What this server answers: the archive's routes (hosts.py gives its other hosts theirs).
    routes: tuple[Route, ...] = ROUTES

    def route(self, method: str) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):
            # Absolute form (a client using us as its HTTP proxy): serve it as if addressed here.
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        path, _, query_string = target.partition("?")
        query = parse_qs(query_string, keep_blank_values=True)
        try:
            # Read any body, whatever the method, so the next request on the connection parses.
            body = self.read_body()
        except ValueError as e:
            self.close_connection = True
            self.send_json(413 if "large" in str(e) else 400, error_body(str(e)))
            return
        req = Request(method, path, query, body)

        if path.startswith(api_control.PREFIX):
            api_control.control(self, req, NO_FAULTS)
            return
        if method not in ("GET", "HEAD", "POST"):
            self.send_json(
                405, error_body(f"method {method} not allowed"), [("Allow", "GET, HEAD, POST")]
            )
            return

        route = next((r for r in self.routes if r.matches(path)), None)
        if route is not None and route.own_faults:
            route.handle(self, req, NO_FAULTS)
            return
        plan = self.sim.faults.plan(path, False, route is not None and route.api)
        if plan.latency:
            time.sleep(plan.latency)
        if plan.error_status is not None:
            answer = error_body("simulated server error")
            self.send_json(plan.error_status, answer, plan.error_headers(), stat="error")
            return
        if route is None:
            self.send_json(404, error_body(f"no such endpoint: {path}"), stat="unknown")
            return
        route.handle(self, req, plan)
