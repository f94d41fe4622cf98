"""MAST's Portal API over HTTP: Mashup `invoke`, `columnsconfig` and the SANTA name resolver.

The answers come from `portal.Portal`; this module only unpacks requests and frames answers.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
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
        settings = h.sim.faults.settings
        result = h.sim.portal.invoke(mashup, ffi=settings.tess_ffi)
        if mashup["service"] == PRODUCTS:
            _product_manners(h, mashup, result)
    except PortalError as e:
        h.send_json(e.http_status, error_body(e.msg), plan=plan, stat="invoke")
        return
    except UnicodeDecodeError:
        h.send_json(400, error_body("request is not UTF-8"), plan=plan, stat="invoke")
        return
    h.send_json(200, result, plan=plan, stat="invoke")


PRODUCTS = "Mast.Caom.Products"


def _product_manners(h: BaseHandler, mashup: dict[str, Any], result: dict[str, Any]) -> None:
    """A product list as the real archive serves one: too big a request gets its connection
    reset, a big result takes server time (knobs `products_max_*`, `product_ms_per_row`)."""
    settings = h.sim.faults.settings
    obsid = (mashup.get("params") or {}).get("obsid")
    ids = obsid if isinstance(obsid, list) else str(obsid or "").split(",")
    asked = len([x for x in ids if str(x).strip()])
    rows = int((result.get("paging") or {}).get("rowsFiltered") or 0)
    too_many = settings.products_max_obs is not None and asked > settings.products_max_obs
    too_big = settings.products_max_rows is not None and rows > settings.products_max_rows
    if too_many or too_big:
        h.sim.stats.record_service(PRODUCTS + " (reset)")
        h.abort()
    key = json.dumps({k: v for k, v in mashup.items() if k != "page"}, sort_keys=True)
    cost = h.sim.faults.product_cost(key, rows)
    if cost > 0:
        time.sleep(cost)


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


SANTA = Route(("/Santa-war/query", "/Santa-war/query/"), santa, api=True)
ROUTES = (
    Route(("/api/v0/invoke",), invoke, api=True),
    Route(("/portal/Mashup/Mashup.asmx/columnsconfig",), columns_config, api=True),
    SANTA,
)
