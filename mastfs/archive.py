"""The astroquery adapter: a MAST query in, a list of `Product` rows out.

Everything here blocks (astroquery uses `requests`); the mount calls it through
`trio.to_thread.run_sync`. astroquery fixes its MAST URLs when it is imported, so each `Archive`
builds its own `ObservationsClass` and points that instance's URL attributes at `server`
(`mast-api.md` §2): the archive's base URL is always configurable, without touching astroquery's
configuration file.

Query results are kept as JSON in the cache directory, keyed by server and query, so a remount of
the same query works when the archive cannot be reached, for whatever is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mastfs.model import Product, User
from mastfs.private import PrivacyError, private_dir, read_private, write_private

log = logging.getLogger(__name__)

# astroquery 0.4.11 sends every obsid in one request; MAST advises a few at a time (seeds, JWST
# primer): batches keep each request well inside the server's timeout and give progress.
PRODUCT_BATCH = 100
MJD_UNIX_EPOCH = 40587.0
QUERY_CACHE_VERSION = 1
# A cached query result larger than this is not read (200,000 rows take about 120 MB).
QUERY_CACHE_MAX_BYTES = 512 << 20

_PRODUCT_FIELDS = [f.name for f in fields(Product) if f.name not in ("instrument_name", "mtime")]
_INT_FIELDS = {"size", "calib_level"}


class ArchiveError(Exception):
    """A query that cannot be answered; the message is one line for the user."""


class ArchiveUnreachable(ArchiveError):
    """The archive did not answer at all (connection refused, DNS, timeout)."""


@dataclass(frozen=True)
class Query:
    """What to ask MAST for. At least one field must be set."""

    programs: tuple[str, ...] = ()
    target: str | None = None
    radius_deg: float = 0.2
    collection: tuple[str, ...] = ()
    instrument: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    criteria: tuple[tuple[str, str], ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.programs
            or self.target
            or self.collection
            or self.instrument
            or self.filters
            or self.criteria
        )

    def describe(self) -> str:
        parts: list[str] = []
        if self.programs:
            parts.append("program " + ",".join(self.programs))
        if self.target:
            parts.append(f"target {self.target!r} within {self.radius_deg:g} deg")
        if self.collection:
            parts.append("collection " + ",".join(self.collection))
        if self.instrument:
            parts.append("instrument " + ",".join(self.instrument))
        if self.filters:
            parts.append("filters " + ",".join(self.filters))
        parts.extend(f"{k}={v}" for k, v in self.criteria)
        return ", ".join(parts) or "(empty query)"

    def key(self, server: str) -> str:
        doc = json.dumps({"server": server.rstrip("/"), "query": asdict(self)}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:32]

    def astroquery_criteria(self) -> dict[str, Any]:
        crit: dict[str, Any] = {}
        if self.programs:
            crit["proposal_id"] = list(self.programs)
        if self.collection:
            crit["obs_collection"] = list(self.collection)
        if self.instrument:
            crit["instrument_name"] = list(self.instrument)
        if self.filters:
            crit["filters"] = list(self.filters)
        for key, value in self.criteria:
            crit[key] = _criterion_value(value)
        return crit


def _criterion_value(value: str) -> Any:
    """`t_min=59000..60000` is a range; `a,b` a list; anything else a single value."""
    if ".." in value:
        lo, _, hi = value.partition("..")
        try:
            return [float(lo), float(hi)]
        except ValueError as exc:
            raise ArchiveError(f"invalid range {value!r}: expected MIN..MAX numbers") from exc
    if "," in value:
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


@dataclass
class QueryResult:
    products: list[Product]
    observations: int
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)


class Archive:
    """One MAST server, one astroquery session, one optional token."""

    def __init__(self, server: str, cache_dir: Path, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self._cache_dir = Path(cache_dir)
        self._token = token
        self._obs = _observations_for(self.server)

    def __repr__(self) -> str:
        return f"Archive({self.server!r}, token={'set' if self._token else 'none'})"

    def login(self) -> User | None:
        """Validate the token with the archive's auth info endpoint; None when anonymous."""
        if not self._token:
            return None
        from astroquery.exceptions import LoginError

        try:
            self._obs.login(token=self._token)
            info = self._obs.session_info(verbose=False)
        except LoginError as exc:
            raise ArchiveError(
                "the MAST token was rejected by the archive (expired or invalid)"
            ) from exc
        except Exception as exc:
            raise _wrap(exc, self.server, "logging in") from exc
        name = (info.get("attrib") or {}).get("display_name") or "authenticated user"
        return User(display_name=str(name))

    def products(self, query: Query, progress: Callable[[str], None]) -> QueryResult:
        """All product rows of the query; falls back to the cached answer when offline."""
        if query.is_empty():
            raise ArchiveError("no query given: use --program, --target or another criterion")
        try:
            result = self._query_live(query, progress)
        except ArchiveUnreachable as exc:
            cached = self._load_cached(query)
            if cached is None:
                raise
            cached.from_cache = True
            cached.notes.append(f"{exc}; using the query result cached earlier")
            return cached
        self._store_cached(query, result)
        return result

    # -- live query ---------------------------------------------------------------------------

    def _query_live(self, query: Query, progress: Callable[[str], None]) -> QueryResult:
        criteria = query.astroquery_criteria()
        progress(f"querying {self.server} for {query.describe()}")
        try:
            if query.target:
                coords = self._resolve(query.target)
                if criteria:
                    table = self._obs.query_criteria(
                        coordinates=coords, radius=f"{query.radius_deg} deg", **criteria
                    )
                else:
                    table = self._obs.query_region(coords, radius=f"{query.radius_deg} deg")
            else:
                table = self._obs.query_criteria(**criteria)
        except ArchiveError:
            raise
        except Exception as exc:
            raise _wrap(exc, self.server, "querying observations") from exc
        if len(table) == 0:
            raise ArchiveError(f"no observations match {query.describe()} at {self.server}")
        observations = _rows(table)
        by_obsid = {str(o.get("obsid")): o for o in observations}
        obsids = sorted(by_obsid, key=_natural)
        # Rows become Products batch by batch: holding 50,000 row dicts at once would double
        # the peak memory of a big program.
        products: list[Product] = []
        for start in range(0, len(obsids), PRODUCT_BATCH):
            batch = obsids[start : start + PRODUCT_BATCH]
            try:
                ptable = self._obs.get_product_list(batch)
            except Exception as exc:
                if "empty" in str(exc).lower():
                    continue
                raise _wrap(exc, self.server, "listing products") from exc
            products.extend(_product(row, by_obsid) for row in _rows(ptable))
            del ptable
            if len(obsids) > PRODUCT_BATCH:
                progress(
                    f"product lists: {start + len(batch)}/{len(obsids)} observations, "
                    f"{len(products)} product rows"
                )
        progress(f"{len(observations)} observations, {len(products)} product rows")
        return QueryResult(products=products, observations=len(observations))

    def _resolve(self, name: str) -> Any:
        """Name → SkyCoord through the archive's own `Mast.Name.Lookup` service.

        astroquery 0.4.11 resolves names at a hard-coded resolver host that cannot be redirected;
        asking the configured server keeps every request on the archive the user chose.
        """
        from astropy.coordinates import SkyCoord

        request = {"service": "Mast.Name.Lookup", "params": {"input": name, "format": "json"}}
        body = "request=" + urllib.parse.quote(json.dumps(request))
        session = self._obs._portal_api_connection._session
        try:
            response = session.post(
                self.server + "/api/v0/invoke",
                data=body,
                headers={"Content-type": "application/x-www-form-urlencoded"},
                timeout=60,
            )
            response.raise_for_status()
            found = response.json().get("resolvedCoordinate") or []
        except Exception as exc:
            raise _wrap(exc, self.server, f"resolving {name!r}") from exc
        if not found:
            raise ArchiveError(f"could not resolve target name {name!r}")
        return SkyCoord(float(found[0]["ra"]), float(found[0]["decl"]), unit="deg")

    # -- query-result cache ---------------------------------------------------------------------

    def _cache_file(self, query: Query) -> Path:
        return self._cache_dir / "queries" / f"{query.key(self.server)}.json"

    def _store_cached(self, query: Query, result: QueryResult) -> None:
        path = self._cache_file(query)
        doc = {
            "version": QUERY_CACHE_VERSION,
            "server": self.server,
            "query": asdict(query),
            "observations": result.observations,
            "products": [asdict(p) for p in result.products],
        }
        try:
            private_dir(path.parent)
            write_private(path, json.dumps(doc).encode())
        except (OSError, PrivacyError) as exc:
            log.warning("could not cache the query result in %s: %s", path.parent, exc)

    def _load_cached(self, query: Query) -> QueryResult | None:
        path = self._cache_file(query)
        try:
            private_dir(path.parent)
            doc = json.loads(read_private(path, QUERY_CACHE_MAX_BYTES))
        except FileNotFoundError:
            return None
        except PrivacyError as exc:
            log.warning("ignoring the cached query result: %s", exc)
            return None
        except (OSError, ValueError):
            return None
        if doc.get("version") != QUERY_CACHE_VERSION:
            return None
        products = [Product(**_interned(p)) for p in doc["products"]]
        return QueryResult(products=products, observations=int(doc["observations"]))


def _observations_for(server: str) -> Any:
    """A private astroquery `ObservationsClass` whose URLs point at `server`."""
    from astroquery.mast import ObservationsClass

    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("astroquery").setLevel(logging.WARNING)
    obs = ObservationsClass()
    portal = obs._portal_api_connection
    portal.MAST_REQUEST_URL = server + "/api/v0/invoke"
    portal.COLUMNS_CONFIG_URL = server + "/portal/Mashup/Mashup.asmx/columnsconfig"
    portal.MAST_DOWNLOAD_URL = server + "/api/v0.1/Download/file"
    portal.MAST_BUNDLE_URL = server + "/api/v0.1/Download/bundle"
    obs._auth_obj.SESSION_INFO_URL = server + "/whoami"
    service = obs._service_api_connection
    service.SERVICE_URL = server
    service.REQUEST_URL = server + "/api/v0.1/"
    service.MAST_DOWNLOAD_URL = server + "/api/v0.1/Download/file"
    return obs


def _wrap(exc: BaseException, server: str, doing: str) -> ArchiveError:
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout | TimeoutError):
        return ArchiveUnreachable(f"cannot reach the archive at {server} while {doing}")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return ArchiveError(
            f"the archive at {server} answered HTTP {exc.response.status_code} while {doing}"
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArchiveError(f"the archive at {server} failed while {doing}: {text}")


def _rows(table: Any) -> list[dict[str, Any]]:
    """An astropy Table as plain dicts, masked cells as None."""
    import numpy as np

    columns: dict[str, list[Any]] = {}
    for name in table.colnames:
        col = table[name]
        values = col.tolist() if not hasattr(col, "mask") else _masked_list(col)
        columns[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
    return [dict(zip(columns, vals, strict=True)) for vals in zip(*columns.values(), strict=True)]


def _masked_list(col: Any) -> list[Any]:
    mask = col.mask
    data = col.data.data.tolist() if hasattr(col.data, "data") else col.tolist()
    if mask is False or mask is None:
        return list(data)
    flags = mask.tolist() if hasattr(mask, "tolist") else [bool(mask)] * len(data)
    return [None if m else v for v, m in zip(data, flags, strict=True)]


def _product(row: dict[str, Any], observations: dict[str, dict[str, Any]]) -> Product:
    values: dict[str, Any] = {}
    for name in _PRODUCT_FIELDS:
        raw = row.get(name)
        if name in _INT_FIELDS:
            values[name] = _as_int(raw)
        else:
            # Rows repeat the same values (a shared file under many parents, one description
            # per product type): interning keeps 50,000 rows of a big program in tens of MB.
            values[name] = "" if raw is None else sys.intern(str(raw))
    parent = observations.get(values["parent_obsid"]) or observations.get(values["obsID"]) or {}
    values["instrument_name"] = sys.intern(str(parent.get("instrument_name") or ""))
    values["mtime"] = _mjd_to_unix(parent.get("t_max"))
    return Product(**values)


def _interned(row: dict[str, Any]) -> dict[str, Any]:
    return {k: sys.intern(v) if isinstance(v, str) else v for k, v in row.items()}


def _as_int(raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return 0
    return value if value >= 0 else 0


def _mjd_to_unix(mjd: Any) -> float:
    try:
        value = float(mjd)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(value):
        return 0.0
    return round((value - MJD_UNIX_EPOCH) * 86400.0, 3)


def _natural(obsid: str) -> tuple[int, str]:
    return (int(obsid), "") if obsid.isdigit() else (0, obsid)


def proposals_with_exclusive(products: Sequence[Product]) -> dict[str, str]:
    """One exclusive-access dataURI per proposal: enough to learn whether a login may read it."""
    found: dict[str, str] = {}
    for p in products:
        if p.is_exclusive and p.proposal_id not in found:
            found[p.proposal_id] = p.dataURI
    return found
