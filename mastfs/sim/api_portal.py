"""MAST's Portal API over HTTP: Mashup `invoke`, `columnsconfig` and the SANTA name resolver.

The answers come from `portal.Portal`; this module only unpacks requests and frames answers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from mastfs.sim.faults import NO_FAULTS, RequestPlan
from mastfs.sim.handler import Route
from mastfs.sim.portal import PortalError, error_body, parse_request

if TYPE_CHECKING:
    from mastfs.sim.handler import BaseHandler, Request


def invoke(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    stats = h.sim.stats
    try:
        text: str | None
        if req.method == "POST" and req.body.lstrip().startswith(b"{"):
            text = req.body.decode("utf-8")
        else:
            form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
            found = form.get("request") or req.query.get("request")
            text = found[0] if found else None
        mashup = parse_request(text)
        stats.record_service(mashup["service"])
        # `plan is NO_FAULTS` when no fault is set or the request is out of scope.
        if plan is not NO_FAULTS and h.sim.faults.executing_poll(
            json.dumps(mashup, sort_keys=True)
        ):
            h.send_json(
                200,
                {"status": "EXECUTING", "msg": "", "percent complete": 0},
                plan=plan,
                stat="invoke",
            )
            return
        result = h.sim.portal.invoke(mashup)
    except PortalError as e:
        h.send_json(e.http_status, error_body(e.msg), plan=plan, stat="invoke")
        return
    except UnicodeDecodeError:
        h.send_json(400, error_body("request is not UTF-8"), plan=plan, stat="invoke")
        return
    h.send_json(200, result, plan=plan, stat="invoke")


def columns_config(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    config_id = (form.get("colConfigId") or req.query.get("colConfigId") or [""])[0]
    h.send_json(200, h.sim.portal.columns_config(config_id), plan=plan, stat="columnsconfig")


def santa(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    names = req.query.get("name") or []
    resolver = (req.query.get("resolver") or [""])[0].upper()
    resolve_all = (req.query.get("resolveAll") or ["false"])[0].lower() == "true"
    entries = []
    for name in names:
        hit = h.sim.portal.resolve(name)
        if hit is None:
            continue
        if resolve_all:
            entries += [dict(hit, resolver="SIMBAD"), dict(hit, resolver="NED")]
        else:
            entries.append(dict(hit, resolver=resolver or "SIMBAD"))
    h.send_json(200, {"resolvedCoordinate": entries, "status": ""}, plan=plan, stat="santa")


ROUTES = (
    Route(("/api/v0/invoke",), invoke),
    Route(("/portal/Mashup/Mashup.asmx/columnsconfig",), columns_config),
    Route(("/Santa-war/query", "/Santa-war/query/"), santa),
)
