"""MAST's Portal API (`/api/v0/invoke`) as astroquery 0.4.11 speaks it, without astroquery.

- `Request`: one Mashup request (`service`, `params`, `pagesize`, `page`, `cacheBreaker`),
  form-encoded as `request=<url-encoded JSON>`; `complete` posts it again while the answer says
  EXECUTING, `rows` reads every page of it (as many as `paging.pagesFiltered` says).
- `observation_filters`: query criteria as the filter list astroquery's `build_filter_set`
  makes from the archive's columns configuration: continuous columns take `[min, max]` as one
  `{"min", "max"}` value, discrete ones take strings, a value with `*` or `%` becomes the one
  `freeText` pattern, and the column's `separator` is passed on.

Why not astroquery itself: importing `astroquery.mast` (and astropy) takes over a second of
every mount, which is more than mastfs's whole query of a small program takes against the real
archive's latency; its services keep per-request state on one session (no requests side by
side), and its answers become astropy Tables that mastfs turned back into rows. What it sends
and what it does with the answers is what this module does (`discovery_portal.py`,
`observations.py`, `utils.py` of astroquery 0.4.11; docs/architecture.md).

Every request goes through an `archive_http.GuardedAdapter` (token to the archive's origin only,
`--timeout`, `--max-response`, `--max-pages`, `--max-rows`, busy answers asked again).
"""

from __future__ import annotations

import difflib
import json
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

INVOKE_PATH = "/api/v0/invoke"
COLUMNS_CONFIG_PATH = "/portal/Mashup/Mashup.asmx/columnsconfig"
PAGESIZE = 50_000  # astroquery's default page size
_FORM = {"Content-type": "application/x-www-form-urlencoded", "Accept": "text/plain"}
_CONTINUOUS = ("double", "float", "numeric")

Row = dict[str, Any]


class MashupError(Exception):
    """The archive answered, but not with a result; the message says what it said."""


class BadCriterion(ValueError):
    """A criterion the columns configuration does not allow; the message says why."""


def post_form(
    session: requests.Session, url: str, body: str, extra: Mapping[str, str] | None = None
) -> requests.Response:
    return session.post(url, data=body, headers={**_FORM, **(extra or {})})


class Request:
    """One Mashup request of `service` with `params`, all of whose pages and polls share one
    `cacheBreaker` (as astroquery's do)."""

    def __init__(self, service: str, params: Mapping[str, Any]) -> None:
        self.mashup: dict[str, Any] = {
            "service": service,
            "params": dict(params),
            "format": "json",
            "pagesize": PAGESIZE,
            "page": 1,
            "cacheBreaker": str(uuid.uuid4()),
        }

    def complete(self, session: requests.Session, server: str) -> dict[str, Any]:
        """The current page's answer, posted again while it is EXECUTING. `MashupError` for an
        answer that is not a result; `requests.HTTPError` for an HTTP error status."""
        body = "request=" + urllib.parse.quote(json.dumps(self.mashup))
        while True:
            response = post_form(session, server + INVOKE_PATH, body)
            response.raise_for_status()
            try:
                doc = response.json()
            except ValueError:
                raise MashupError("its answer was not JSON") from None
            if not isinstance(doc, dict):
                raise MashupError("its answer was not a JSON object")
            state = doc.get("status")
            if state == "EXECUTING":
                continue
            if state != "COMPLETE":
                msg = doc.get("msg")
                raise MashupError(str(msg)[:300] if msg else f"it reported {str(state)[:20]!r}")
            return doc

    def rows(self, session: requests.Session, server: str) -> list[Row]:
        """Every row of every page."""
        out: list[Row] = []
        pages = 1
        while self.mashup["page"] <= pages:
            doc = self.complete(session, server)
            data = doc.get("data")
            out.extend(r for r in (data if isinstance(data, list) else []) if isinstance(r, dict))
            paging = doc.get("paging")
            found = paging.get("pagesFiltered") if isinstance(paging, dict) else None
            pages = found if type(found) is int and found > 0 else 1
            self.mashup["page"] += 1
        return out


def position(ra: float, dec: float, radius_deg: float) -> str:
    """The `position` parameter as astroquery writes it: "ra, dec, radius" in degrees."""
    return ", ".join(str(x) for x in (ra, dec, radius_deg))


def observation_filters(config: Mapping[str, Any], criteria: Mapping[str, Any]) -> list[Row]:
    """The Mashup filters of `criteria` (column → value or list of values), as astroquery's
    `build_filter_set` makes them from the columns configuration `config`."""
    filters: list[Row] = []
    for name, raw in criteria.items():
        values = list(raw) if isinstance(raw, list | tuple) else [raw]
        info = next((v for k, v in config.items() if k.lower() == name.lower()), None)
        if not isinstance(info, Mapping):
            close = difflib.get_close_matches(name, [str(k) for k in config], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise BadCriterion(f"Filter '{name}' does not exist.{hint}")
        kind = info.get("vot.datatype", info.get("type"))
        entry: Row = {"paramName": name}
        separator = info.get("separator")
        if separator:
            entry["separator"] = separator
        if kind in _CONTINUOUS or info.get("treatNumeric"):
            if len(values) < 2:
                raise BadCriterion(f"{name} is continuous: give a range MIN..MAX")
            entry["values"] = [{"min": values[0], "max": values[1]}]
        else:
            texts = [str(v) for v in values]
            wild = [t for t in texts if "*" in t or "%" in t]
            if len(wild) > 1:
                raise BadCriterion(f"{name}: only one value with a wildcard may be given")
            entry["values"] = [t for t in texts if t not in wild]
            if wild:
                entry["freeText"] = wild[0].replace("*", "%")
        filters.append(entry)
    return filters


def observation_request(
    filters: Sequence[Row], where: tuple[float, float, float] | None
) -> Request:
    """astroquery's `query_criteria` (`Mast.Caom.Filtered`, or `.Position` with a position) or,
    for a position without criteria, its `query_region` (`Mast.Caom.Cone`)."""
    if where is None:
        return Request("Mast.Caom.Filtered", {"columns": "*", "filters": list(filters)})
    ra, dec, radius = where
    if not filters:
        return Request("Mast.Caom.Cone", {"ra": ra, "dec": dec, "radius": radius})
    params = {"columns": "*", "filters": list(filters), "position": position(ra, dec, radius)}
    return Request("Mast.Caom.Filtered.Position", params)
