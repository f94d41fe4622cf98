"""The Portal API services (`/api/v0/invoke`) of the archive simulator, as MAST answers them.

Pure request → response logic over a `Catalog`: the Mashup request JSON goes in, the response
JSON (`status`/`msg`/`paging`/`fields`/`data`) comes out; the HTTP side lives in `server.py`.
Filter semantics follow what astroquery's `build_filter_set` sends and MAST documents: filters
AND together; within a filter, discrete `values` and the `freeText` pattern OR together;
continuous columns take `{"min", "max"}` ranges; string matching ignores case.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mastfs.sim import ffi

if TYPE_CHECKING:
    from mastfs.sim.catalog import Catalog

log = logging.getLogger(__name__)

# MAST's documented default for a Mashup request without `pagesize` (api/v0 MashupRequest).
DEFAULT_PAGESIZE = 1000
# MAST caps any result at about this many rows.
MAX_PAGESIZE = 500_000

CONTINUOUS_TYPES = frozenset({"float", "double", "decimal", "numeric"})
NUMERIC_TYPES = CONTINUOUS_TYPES | {"int", "short", "long", "number", "unsignedbyte"}
SELECTED_FIELD = {"name": "_selected_", "type": "boolean"}
COUNT_COLUMN = "COUNT_BIG(*)"

# astroquery fetches columnsconfig under the service name for the filtered variants.
_COLUMNS_CONFIG_ALIASES = {
    "Mast.Caom.Filtered": "Mast.Caom.Cone",
    "Mast.Caom.Filtered.Position": "Mast.Caom.Cone",
}

Row = Mapping[str, Any]
# Set in a request by `Portal.invoke` when cone searches are to find FFI observations.
_FFI = "_mastsim_tess_ffi"
Predicate = Callable[[Row], bool]


class PortalError(Exception):
    """A request MAST would refuse. `http_status` 200 means "HTTP OK, status ERROR" (MAST's way
    of reporting service errors, which astroquery turns into RemoteServiceError)."""

    def __init__(self, msg: str, http_status: int = 200) -> None:
        super().__init__(msg)
        self.msg = msg
        self.http_status = http_status


def error_body(msg: str) -> dict[str, Any]:
    return {"status": "ERROR", "msg": msg, "data": [], "fields": []}


def parse_request(text: str | None) -> dict[str, Any]:
    """The decoded `request=` JSON of a Mashup call; PortalError(400) when unusable."""
    if text is None or not text.strip():
        raise PortalError("missing 'request' parameter (a Mashup request JSON object)", 400)
    try:
        req = json.loads(text)
    except json.JSONDecodeError as e:
        raise PortalError(f"request is not valid JSON: {e}", 400) from None
    if not isinstance(req, dict):
        raise PortalError("request must be a JSON object", 400)
    if not isinstance(req.get("service"), str) or not req["service"]:
        raise PortalError("request has no 'service'", 400)
    return req


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """SQL-LIKE as MAST's freeText uses it: `%` (and a literal `*`) match any run of characters.

    `_` is taken literally: MAST identifiers are full of underscores, and treating them as
    single-character wildcards would only ever widen a match.
    """
    parts = re.split(r"[%*]", pattern)
    return re.compile(".*".join(re.escape(p) for p in parts), re.IGNORECASE | re.DOTALL)


def angular_distance_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance (haversine, stable at small angles), all in degrees."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp = p2 - p1
    dl = math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Portal:
    """Answers Mashup requests from one catalog."""

    def __init__(
        self,
        catalog: Catalog,
        observation_fields: Sequence[tuple[str, str]],
        product_fields: Sequence[tuple[str, str]],
    ) -> None:
        self.catalog = catalog
        self.obs_fields = [{"name": n, "type": t} for n, t in observation_fields]
        self.product_fields = [{"name": n, "type": t} for n, t in product_fields]
        self.obs_types = {n: t.lower() for n, t in observation_fields}
        self._obs_names = {n.lower(): n for n, _ in observation_fields}

    # -- dispatch ------------------------------------------------------------------------------

    def invoke(self, req: Mapping[str, Any], ffi: bool = False) -> dict[str, Any]:
        """The answer to one Mashup request; `ffi`: cone searches also find TESS and TICA
        full-frame-image observations (`ffi.py`)."""
        if ffi:
            req = {**req, _FFI: True}
        service = req["service"]
        params = req.get("params") or {}
        if not isinstance(params, dict):
            raise PortalError("'params' must be a JSON object")
        handler = self._services().get(service)
        if handler is None:
            raise PortalError(
                f"Unknown service '{service}'. Services this archive offers: "
                + ", ".join(sorted(self._services()))
            )
        return handler(params, req)

    def _services(self) -> dict[str, Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]]:
        return {
            "Mast.Caom.Filtered": self._filtered,
            "Mast.Caom.Filtered.Position": self._filtered_position,
            "Mast.Caom.Cone": self._cone,
            "Mast.Caom.Products": self._products,
            "Mast.Name.Lookup": self._name_lookup,
            "Mast.Caom.All": self._caom_all,
        }

    def columns_config(self, col_config_id: str) -> dict[str, Any]:
        """columnsconfig JSON; `{}` for an unknown id, as MAST's service answers errors."""
        name = _COLUMNS_CONFIG_ALIASES.get(col_config_id, col_config_id)
        try:
            config = self.catalog.columns_config(name)
        except (KeyError, ValueError):
            return {}
        return dict(config) if config else {}

    def resolve(self, name: str) -> dict[str, Any] | None:
        """One SANTA/`Mast.Name.Lookup` result entry, or None when the name is unknown."""
        hit = self.catalog.resolve(name)
        if hit is None:
            return None
        ra, dec, canonical = hit
        return {
            "searchString": name.lower(),
            "resolver": "SIMBAD",
            "canonicalName": canonical,
            "ra": ra,
            "decl": dec,
            "radius": 0.0,
            "objectType": "",
            "cached": True,
            "resolverTime": 0,
        }

    # -- services ------------------------------------------------------------------------------

    def _filtered(self, params: dict[str, Any], req: Mapping[str, Any]) -> dict[str, Any]:
        predicates = self._compile_filters(params.get("filters"), require=True)
        rows = [r for r in self.catalog.observations if all(p(r) for p in predicates)]
        return self._observation_result(rows, params, req, distances=None)

    def _filtered_position(self, params: dict[str, Any], req: Mapping[str, Any]) -> dict[str, Any]:
        position = params.get("position")
        if not isinstance(position, str):
            raise PortalError("Mast.Caom.Filtered.Position needs 'position': \"ra, dec, radius\"")
        try:
            ra, dec, radius = (float(x) for x in position.split(","))
        except ValueError:
            raise PortalError(
                f'bad position {position!r}: expected "ra, dec, radius" in degrees'
            ) from None
        predicates = self._compile_filters(params.get("filters"), require=False)
        sky = self.catalog.observations + self._ffis(req, ra, dec)
        matching = [r for r in sky if all(p(r) for p in predicates)]
        rows, distances = self._within(matching, ra, dec, radius)
        return self._observation_result(rows, params, req, distances)

    def _cone(self, params: dict[str, Any], req: Mapping[str, Any]) -> dict[str, Any]:
        try:
            ra = float(params["ra"])
            dec = float(params["dec"])
            radius = float(params.get("radius", 0.2))
        except (KeyError, TypeError, ValueError):
            raise PortalError("Mast.Caom.Cone needs numeric 'ra', 'dec' and 'radius'") from None
        sky = self.catalog.observations + self._ffis(req, ra, dec)
        rows, distances = self._within(sky, ra, dec, radius)
        return self._observation_result(rows, params, req, distances)

    def _products(self, params: dict[str, Any], req: Mapping[str, Any]) -> dict[str, Any]:
        obsid = params.get("obsid")
        if isinstance(obsid, list):
            ids = [str(x).strip() for x in obsid]
        elif isinstance(obsid, (str, int)) and not isinstance(obsid, bool):
            ids = [x.strip() for x in str(obsid).split(",")]
        else:
            raise PortalError("Mast.Caom.Products needs 'obsid' (a comma-separated list)")
        ids = [x for x in ids if x]
        if not ids:
            raise PortalError("Mast.Caom.Products: 'obsid' is empty")
        rows: list[Row] = []
        for one in ids:
            rows.extend(self.catalog.products_for(one) or ffi.products(one))
        return self._paged(rows, [*self.product_fields, SELECTED_FIELD], req)

    def _name_lookup(self, params: dict[str, Any], req: Mapping[str, Any]) -> dict[str, Any]:
        name = params.get("input")
        if not isinstance(name, str) or not name.strip():
            raise PortalError("Mast.Name.Lookup needs 'input' (an object name)")
        hit = self.resolve(name.strip())
        return {
            "status": "COMPLETE",
            "msg": "",
            "resolvedCoordinate": [hit] if hit else [],
        }

    def _caom_all(self, params: dict[str, Any], req: Mapping[str, Any]) -> dict[str, Any]:
        # Only the part astroquery's list_missions reads: the obs_collection histogram.
        counts: dict[str, Any] = {}
        for row in self.catalog.observations:
            coll = row.get("obs_collection")
            if coll:
                counts[str(coll)] = counts.get(str(coll), 0) + 1
        hist = dict(counts, hist=sorted(counts.items()))
        column = {"text": "obs_collection", "ExtendedProperties": {"histObj": hist}}
        return {"status": "COMPLETE", "msg": "", "data": {"Tables": [{"Columns": [column]}]}}

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _ffis(req: Mapping[str, Any], ra: float, dec: float) -> list[dict[str, Any]]:
        return ffi.observations(ra, dec) if req.get(_FFI) else []

    def _within(
        self, rows: Iterable[Row], ra: float, dec: float, radius: float
    ) -> tuple[list[Row], list[float]]:
        if not (math.isfinite(ra) and math.isfinite(dec) and radius >= 0):
            raise PortalError("position must be finite, with radius >= 0 (degrees)")
        hits: list[tuple[float, int, Row]] = []
        for i, row in enumerate(rows):
            r_ra, r_dec = _as_float(row.get("s_ra")), _as_float(row.get("s_dec"))
            if r_ra is None or r_dec is None:
                continue
            d = angular_distance_deg(ra, dec, r_ra, r_dec)
            if d <= radius:
                hits.append((d, i, row))
        hits.sort(key=lambda h: (h[0], h[1]))  # nearest first, catalog order among equals
        return [h[2] for h in hits], [h[0] * 3600.0 for h in hits]

    def _observation_result(
        self,
        rows: Sequence[Row],
        params: Mapping[str, Any],
        req: Mapping[str, Any],
        distances: list[float] | None,
    ) -> dict[str, Any]:
        columns = params.get("columns", "*")
        if not isinstance(columns, str):
            raise PortalError('\'columns\' must be a string: "*", "COUNT_BIG(*)" or a list')
        if columns.replace(" ", "").upper() == COUNT_COLUMN:
            return {
                "status": "COMPLETE",
                "msg": "",
                "fields": [{"name": "Column1", "type": "int"}],
                "data": [{"Column1": len(rows)}],
                "paging": _paging(1, 1, 1, 1, 1),
            }
        fields = list(self.obs_fields)
        if distances is not None:
            fields += [{"name": "objID1", "type": "string"}, {"name": "distance", "type": "float"}]
            rows = [
                {**r, "objID1": r.get("objID"), "distance": d}
                for r, d in zip(rows, distances, strict=True)
            ]
        if columns.strip() not in ("", "*"):
            by_name = {f["name"].lower(): f for f in fields}
            wanted = []
            for col in columns.split(","):
                f = by_name.get(col.strip().lower())
                if f is None:
                    raise PortalError(f"Unknown column '{col.strip()}' in 'columns'")
                wanted.append(f)
            names = [f["name"] for f in wanted]
            rows = [{n: r.get(n) for n in names} for r in rows]
            fields = wanted
        return self._paged(rows, [*fields, SELECTED_FIELD], req)

    def _paged(
        self, rows: Sequence[Row], fields: list[dict[str, str]], req: Mapping[str, Any]
    ) -> dict[str, Any]:
        pagesize = _int_param(req, "pagesize", DEFAULT_PAGESIZE)
        page = _int_param(req, "page", 1)
        if pagesize < 1 or page < 1:
            raise PortalError("'page' and 'pagesize' must be positive integers")
        pagesize = min(pagesize, MAX_PAGESIZE)
        total = len(rows)
        pages = max(1, math.ceil(total / pagesize))
        chunk = rows[(page - 1) * pagesize : page * pagesize]
        return {
            "status": "COMPLETE",
            "msg": "",
            "percent complete": 100,
            "paging": _paging(page, pagesize, pages, len(chunk), total),
            "fields": fields,
            "data": list(chunk),
        }

    def _compile_filters(self, filters: Any, require: bool) -> list[Predicate]:
        if filters is None:
            filters = []
        if not isinstance(filters, list):
            raise PortalError("'filters' must be a list of {paramName, values} objects")
        if require and not filters:
            raise PortalError("Mast.Caom.Filtered needs at least one filter")
        return [self._compile_filter(f) for f in filters]

    def _compile_filter(self, f: Any) -> Predicate:
        if not isinstance(f, dict) or not isinstance(f.get("paramName"), str):
            raise PortalError(f'bad filter {f!r}: expected {{"paramName": ..., "values": [...]}}')
        column = self._obs_names.get(f["paramName"].lower())
        if column is None:
            raise PortalError(f"Unknown column '{f['paramName']}' in filters")
        values = f.get("values", [])
        if not isinstance(values, list):
            values = [values]
        free_text = f.get("freeText")
        separator = f.get("separator") or None
        numeric = self.obs_types.get(column, "string") in NUMERIC_TYPES

        ranges: list[tuple[float, float]] = []
        numbers: set[float] = set()
        texts: set[str] = set()
        for v in values:
            if isinstance(v, dict):
                lo, hi = _as_float(v.get("min")), _as_float(v.get("max"))
                if lo is None or hi is None:
                    raise PortalError(f"bad range {v!r} for '{column}': needs numeric min and max")
                ranges.append((lo, hi))
                continue
            n = _as_float(v) if numeric else None
            if n is not None:
                numbers.add(n)
            else:
                texts.add(_text(v).casefold())
        pattern = like_to_regex(free_text) if isinstance(free_text, str) and free_text else None
        if not (ranges or numbers or texts or pattern):
            return lambda row: True

        def matches(row: Row) -> bool:
            value = row.get(column)
            if value is None:
                return False
            if ranges or numbers:
                x = _as_float(value)
                if x is not None:
                    if x in numbers or any(lo <= x <= hi for lo, hi in ranges):
                        return True
            if texts or pattern:
                s = _text(value)
                parts = [s, *s.split(separator)] if separator and separator in s else [s]
                for part in parts:
                    if part.casefold() in texts:
                        return True
                    if pattern is not None and pattern.fullmatch(part):
                        return True
            return False

        return matches


def _int_param(req: Mapping[str, Any], key: str, default: int) -> int:
    value = req.get(key, default)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PortalError(f"'{key}' must be an integer, not {value!r}") from None


def _paging(page: int, size: int, pages: int, rows: int, total: int) -> dict[str, int]:
    return {
        "page": page,
        "pageSize": size,
        "pagesFiltered": pages,
        "rows": rows,
        "rowsFiltered": total,
        "rowsTotal": total,
    }
