"""The archive adapter: a MAST query in, a list of `Product` rows out.

Everything here blocks (`requests`); the mount calls it through `trio.to_thread.run_sync`.
The requests are those astroquery 0.4.11 makes (`mashup.py` says why not astroquery itself):
`/whoami` to check the token, the observations' columns configuration (asked for at once, beside
the login), one observation query (`Mast.Caom.Filtered`, `.Position` or `Mast.Caom.Cone` for a
`--target`, resolved by `resolver.py`), then the product lists in batches (`product_lists.py`).
TESS and TICA full-frame-image observations are left out of the product lists, as astroquery
leaves them out. The archive's base URL is always configurable.

Every request goes through `archive_http` (the token only to the configured origin; timeouts,
size, page and row limits). Every value of a product row is validated here, before anything else
sees it (`product_from_values`): a size outside 0..2^50 drops the row (counted, with a warning),
a time is clamped to `MIN_MTIME..MAX_MTIME`, a string is made valid Unicode without control
characters (`safetext.clean`) and cut to `MAX_TEXT` characters.

Query results are kept as JSON in the cache directory, keyed by server and query, so a remount of
the same query works when the archive cannot be reached, for whatever is cached. Only validated
rows are stored, and rows read back are validated again.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mastfs import archive_http, mashup
from mastfs import resolver as resolver_mod
from mastfs.archive_http import LimitExceeded, Limits
from mastfs.model import Product, User
from mastfs.private import PrivacyError, private_dir, read_private, write_private
from mastfs.product_lists import BatchFailed, ProductLists
from mastfs.resolver import DEFAULT_RESOLVER
from mastfs.safetext import clean

log = logging.getLogger(__name__)

MJD_UNIX_EPOCH = 40587.0
QUERY_CACHE_VERSION = 1
# A cached query result larger than this is not read (200,000 rows take about 120 MB).
QUERY_CACHE_MAX_BYTES = 512 << 20

_ALL_FIELDS = [f.name for f in fields(Product)]
_PRODUCT_FIELDS = [f.name for f in fields(Product) if f.name not in ("instrument_name", "mtime")]

class _Write:
    """One query result to write to the cache: in a thread once `start`ed, or at `finish`."""

    def __init__(self, write: Callable[[], None]) -> None:
        self._write = write
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.archive: Archive | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="query-cache")
                self._thread.start()

    def finish(self) -> None:
        """Written when this returns (here, if no thread was started)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                self._thread = threading.current_thread()
        if thread is None:
            self._write()
        elif thread is not threading.current_thread():
            thread.join()


# Query results not yet known to be in the cache, by file (`Archive._store_cached`).
_WRITES: dict[Path, _Write] = {}
_WRITES_LOCK = threading.Lock()
_TEXT_FIELDS = [f.name for f in fields(Product) if f.type == "str"]
# A product's size: anything outside 0..MAX_SIZE (1 PiB) is not a size.
MAX_SIZE = 1 << 50
# Times (POSIX seconds) are clamped to 1970-01-01 .. 2100-01-01.
MIN_MTIME = 0.0
MAX_MTIME = 4102444800.0
# Longer strings are cut: no MAST value comes near, and an xattr value must stay below 64 KiB.
MAX_TEXT = 4096


class ArchiveError(Exception):
    """A query that cannot be answered; the message is one line for the user."""


class ArchiveUnreachable(ArchiveError):
    """The archive did not answer at all (connection refused, DNS, timeout)."""


class InvalidRow(ValueError):
    """A product row that cannot be shown; the message says why, for the warning."""


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
    # Product rows left out because a value was invalid (`InvalidRow`).
    dropped: int = 0


class Archive:
    """One MAST server, one `requests` session, one optional token, one set of `Limits`.

    Once a request found the archive unreachable (refused, or silent past `Limits.timeout`), the
    live query is not tried again: `products` answers from the cache or fails at once, so a
    silent archive costs one timeout, not one per request.
    """

    def __init__(
        self,
        server: str,
        cache_dir: Path,
        token: str | None = None,
        limits: Limits | None = None,
        resolver: str = DEFAULT_RESOLVER,
    ) -> None:
        self.server = server.rstrip("/")
        self.resolver = resolver
        self._cache_dir = Path(cache_dir)
        self._token = token
        self.limits = limits or Limits()
        # Asked for at once, beside the login (`_columns_config`), or earlier (`prefetch`).
        self._columns = _early(self.server, token, self.limits)
        self._session = _session()
        self._http = archive_http.GuardedAdapter(self.server, token, self.limits)
        archive_http.install(self._session, self._http)
        self._unreachable: ArchiveUnreachable | None = None

    def __repr__(self) -> str:
        return f"Archive({self.server!r}, token={'set' if self._token else 'none'})"

    def login(self) -> User | None:
        """Validate the token with the archive's `/whoami`; None when anonymous.

        The token is never put in the session's cookie jar (as astroquery's `login` would): the
        transport adds it to requests for this server only.
        """
        if not self._token:
            return None
        try:
            with self._http.query():
                response = self._session.get(self.server + "/whoami")
                response.raise_for_status()
                info = response.json()
        except Exception as exc:
            raise self._wrap(exc, "logging in") from exc
        if not isinstance(info, dict) or info.get("anon", True):
            raise ArchiveError("the MAST token was rejected by the archive (expired or invalid)")
        attrib = info.get("attrib")
        name = attrib.get("display_name") if isinstance(attrib, dict) else None
        return User(display_name=_text(name) or "authenticated user")

    def products(self, query: Query, progress: Callable[[str], None]) -> QueryResult:
        """All product rows of the query; falls back to the cached answer when offline."""
        if query.is_empty():
            raise ArchiveError("no query given: use --program, --target or another criterion")
        try:
            if self._unreachable is not None:
                raise self._unreachable
            deadline = time.monotonic() + self.limits.query_time
            with self._http.query(deadline):
                result = self._query_live(query, progress, deadline)
        except ArchiveUnreachable as exc:
            cached = self._load_cached(query)
            if cached is None:
                raise
            cached.from_cache = True
            cached.notes.append(f"{exc}; using the query result cached earlier")
            return cached
        self._store_cached(query, result)
        return result

    def _wrap(self, exc: BaseException, doing: str) -> ArchiveError:
        wrapped = _wrap(exc, self.server, doing)
        if isinstance(wrapped, ArchiveUnreachable):
            self._unreachable = wrapped
        return wrapped

    # -- live query ---------------------------------------------------------------------------

    def _query_live(
        self, query: Query, progress: Callable[[str], None], deadline: float
    ) -> QueryResult:
        notes: list[str] = []
        progress(f"querying {self.server} for {query.describe()}")
        try:
            filters = mashup.observation_filters(
                self._columns_config(), query.astroquery_criteria()
            )
        except mashup.BadCriterion as exc:
            raise ArchiveError(f"invalid criterion: {exc}") from None
        where = None
        if query.target:
            ra, dec = self._resolve(query.target, notes)
            where = (ra, dec, query.radius_deg)
        try:
            observations = mashup.observation_request(filters, where).rows(
                self._session, self.server
            )
        except Exception as exc:
            raise self._wrap(exc, "querying observations") from exc
        if not observations:
            raise ArchiveError(f"no observations match {query.describe()} at {self.server}")
        observations, ffis = _without_ffis(observations)
        if ffis:
            notes.append(
                f"left out {ffis} TESS/TICA full-frame-image observation{'s' if ffis > 1 else ''}"
                " (enormous product lists; astroquery leaves them out too: use TESScut)"
            )
        if not observations:
            raise ArchiveError(
                f"only full-frame-image observations match {query.describe()} at {self.server}"
            )
        by_obsid = {str(o.get("obsid")): o for o in observations}
        obsids = sorted(by_obsid, key=_natural)
        # Rows become Products batch by batch: holding 50,000 row dicts at once would double
        # the peak memory of a big program.
        products: list[Product] = []
        dropped = _Dropped()

        def take(rows: Sequence[dict[str, Any]]) -> None:
            for row in rows:
                try:
                    products.append(_product(row, by_obsid))
                except InvalidRow as bad:
                    dropped.add(str(bad), row.get("dataURI"))

        lists = ProductLists(self.server, self._token, self.limits)
        try:
            lists.fetch(obsids, deadline, take, progress, self._http.rows)
        except BatchFailed as exc:
            # Not "unreachable": the archive answered the observation query; a cached
            # result would hide which product list failed.
            raise ArchiveError(f"the archive at {self.server} {exc}") from None
        except LimitExceeded as exc:
            raise self._wrap(exc, "listing products") from exc
        finally:
            lists.close()
        malformed = self._http.malformed_rows + lists.malformed_rows
        dropped.count += malformed
        summary = f"{len(observations)} observations, {len(products)} product rows"
        progress(summary + (f" ({dropped.count} invalid rows dropped)" if dropped.count else ""))
        return QueryResult(
            products=products,
            observations=len(observations),
            notes=notes + dropped.notes(malformed),
            dropped=dropped.count,
        )

    def _resolve(self, name: str, notes: list[str]) -> tuple[float, float]:
        """Name → (ra, dec): the resolver astroquery 0.4.11 asks, else the archive's lookup
        (`resolver.py`); a fallback is noted for the user."""
        try:
            found = resolver_mod.resolve(name, self._session, self.resolver, self.server, _text)
        except resolver_mod.NotResolved as exc:
            raise ArchiveError(str(exc)) from None
        if found.note:
            notes.append(found.note)
        return found.ra, found.dec

    def _columns_config(self) -> dict[str, Any]:
        """The observations' columns configuration (asked for when the archive was made)."""
        columns = self._columns.result()
        if isinstance(columns, BaseException):
            raise self._wrap(columns, "querying observations")
        if columns is None:
            # Asked again, on this session, for the error it gives.
            try:
                response = mashup.post_form(
                    self._session,
                    self.server + mashup.COLUMNS_CONFIG_PATH,
                    "colConfigId=" + COLUMNS_CONFIG,
                )
                response.raise_for_status()
                columns = response.json()
            except Exception as exc:
                raise self._wrap(exc, "querying observations") from exc
            if not isinstance(columns, dict) or not columns:
                raise ArchiveError(
                    f"the archive at {self.server} sent no columns configuration for its "
                    "observations"
                )
        return columns

    # -- query-result cache ---------------------------------------------------------------------

    def _cache_file(self, query: Query) -> Path:
        return self._cache_dir / "queries" / f"{query.key(self.server)}.json"

    def keep_results(self) -> None:
        """Write the query results of `products` to the cache, in threads of their own: seconds
        of CPU for 50,000 rows, which a mount should not spend while it builds its tree (call
        this once it has). Written at the latest when the process exits (`flush_query_cache`)
        or a later `_load_cached` of the same query needs them."""
        with _WRITES_LOCK:
            pending = [w for w in _WRITES.values() if w.archive is self]
        for write in pending:
            write.start()

    def _store_cached(self, query: Query, result: QueryResult) -> None:
        """Register the result to be written (`keep_results`)."""
        path = self._cache_file(query)
        products = tuple(result.products)

        def write() -> None:
            doc = {
                "version": QUERY_CACHE_VERSION,
                "server": self.server,
                "query": asdict(query),
                "observations": result.observations,
                # Not `asdict`, which deep-copies each row: ten times slower.
                "products": [{name: getattr(p, name) for name in _ALL_FIELDS} for p in products],
            }
            try:
                private_dir(path.parent)
                write_private(path, json.dumps(doc).encode())
            except (OSError, PrivacyError) as exc:
                log.warning("could not cache the query result in %s: %s", path.parent, exc)

        pending = _Write(write)
        pending.archive = self
        with _WRITES_LOCK:
            _WRITES[path] = pending

    def _load_cached(self, query: Query) -> QueryResult | None:
        path = self._cache_file(query)
        with _WRITES_LOCK:
            writing = _WRITES.pop(path, None)
        if writing is not None:
            writing.finish()
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
        if not isinstance(doc, dict) or doc.get("version") != QUERY_CACHE_VERSION:
            return None
        rows, observations = doc.get("products"), doc.get("observations")
        if not isinstance(rows, list) or type(observations) is not int:
            return None
        # Validated again: the file may predate a check, or have been edited.
        products: list[Product] = []
        dropped = _Dropped()
        for row in rows:
            try:
                if not isinstance(row, dict):
                    raise InvalidRow("not a product row")
                products.append(product_from_values(row))
            except InvalidRow as bad:
                dropped.add(str(bad), row.get("dataURI") if isinstance(row, dict) else None)
        return QueryResult(
            products=products,
            observations=observations,
            notes=dropped.notes(),
            dropped=dropped.count,
        )


def flush_query_cache() -> None:
    """Write every query result this process has not written yet, or wait until it is."""
    with _WRITES_LOCK:
        writing = list(_WRITES.values())
        _WRITES.clear()
    for write in writing:
        write.finish()


atexit.register(flush_query_cache)


class _Dropped:
    """Rows left out of a result: how many, and why (with the first row for each reason)."""

    def __init__(self) -> None:
        self.count = 0
        self._reasons: Counter[str] = Counter()
        self._first: dict[str, str] = {}

    def add(self, reason: str, uri: Any) -> None:
        self.count += 1
        self._reasons[reason] += 1
        self._first.setdefault(reason, _text(uri)[:200])

    def notes(self, malformed: int = 0) -> list[str]:
        notes = [
            f"dropped {n} product row{'s' if n > 1 else ''} with {reason}"
            + (f" (first: {self._first[reason]})" if self._first[reason] else "")
            for reason, n in sorted(self._reasons.items())
        ]
        if malformed:
            notes.append(f"dropped {malformed} rows that were not JSON objects")
        return notes


# The columns configuration astroquery asks for before an observation query (it says which
# columns are continuous and their separators): asked for when an `Archive` is made, beside the
# login, on a session of its own.
COLUMNS_CONFIG = "Mast.Caom.Cone"
_PREFETCH = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="columns")


_EARLY: dict[tuple[str, str | None, Limits], concurrent.futures.Future[Any]] = {}
_EARLY_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child (a `multiprocessing` worker reading `mast://`) has none of the parent's
    threads: the parent's pool would take its work and never run it, and its lock may have
    been held at the fork. The child starts with its own, and no answer of the parent's."""
    global _PREFETCH, _EARLY_LOCK
    _PREFETCH = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="columns")
    _EARLY_LOCK = threading.Lock()
    _EARLY.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def prefetch(server: str, token: str | None, limits: Limits) -> None:
    """Ask for the columns configuration now, for the `Archive` of the same server, token and
    limits to take: a mount starts this before it imports the rest of itself."""
    key = (server.rstrip("/"), token, limits)
    with _EARLY_LOCK:
        if key not in _EARLY:
            _EARLY[key] = _PREFETCH.submit(_columns_config, *key)


def _early(server: str, token: str | None, limits: Limits) -> concurrent.futures.Future[Any]:
    with _EARLY_LOCK:
        found = _EARLY.pop((server, token, limits), None)
    return found or _PREFETCH.submit(_columns_config, server, token, limits)


def _session() -> Any:
    import requests

    return requests.Session()


def _columns_config(server: str, token: str | None, limits: Limits) -> Any:
    """The observations' columns configuration; None when the answer is not one (it is asked
    again for the error), the exception when the archive could not be reached (so that a
    silent archive costs one timeout, not two)."""
    import requests

    session = _session()
    adapter = archive_http.GuardedAdapter(server, token, limits)
    archive_http.install(session, adapter)
    try:
        with adapter.query():
            response = mashup.post_form(
                session, server + mashup.COLUMNS_CONFIG_PATH, "colConfigId=" + COLUMNS_CONFIG
            )
        doc = response.json() if response.status_code == 200 else None
    except (requests.Timeout, requests.ConnectionError) as exc:
        return exc
    except (requests.RequestException, ValueError):
        return None
    finally:
        session.close()
    return doc if isinstance(doc, dict) and doc else None


def _wrap(exc: BaseException, server: str, doing: str) -> ArchiveError:
    """One line for the user; anything the archive said in it is cleaned first."""
    import requests

    if isinstance(exc, LimitExceeded):
        return ArchiveError(f"{exc} while {doing} at {server}; the limit can be raised")
    if isinstance(exc, requests.Timeout | TimeoutError):
        return ArchiveUnreachable(f"the archive at {server} did not answer while {doing}: {exc}")
    if isinstance(exc, requests.ConnectionError):
        return ArchiveUnreachable(f"cannot reach the archive at {server} while {doing}")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return ArchiveError(
            f"the archive at {server} answered HTTP {exc.response.status_code} while {doing}"
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArchiveError(f"the archive at {server} failed while {doing}: {_text(text)[:300]}")


def _product(row: dict[str, Any], observations: dict[str, dict[str, Any]]) -> Product:
    """A product row joined with its observation's instrument and time, validated."""
    values = {name: row.get(name) for name in _PRODUCT_FIELDS}
    parent = (
        observations.get(_text(values["parent_obsid"]))
        or observations.get(_text(values["obsID"]))
        or {}
    )
    values["instrument_name"] = parent.get("instrument_name")
    values["mtime"] = _mjd_to_unix(parent.get("t_max"))
    return product_from_values(values)


# -- validation at the boundary: nothing from the archive goes further unchecked -----------------


def product_from_values(values: Mapping[str, Any]) -> Product:
    """A `Product` from raw field values (a live row, or a row of the query cache).

    `InvalidRow` when the row cannot be shown: a size that is not an integer in 0..MAX_SIZE
    (a missing size is 0, as before), or no `dataURI`. Everything else is repaired: strings are
    `_text`, `calib_level` outside 0..99 is 0, `mtime` (POSIX seconds) is clamped.
    """
    size = valid_size(values.get("size"))
    if size is None:
        raise InvalidRow("an invalid size")
    texts = {name: _text(values.get(name)) for name in _TEXT_FIELDS}
    if not texts["dataURI"]:
        raise InvalidRow("no dataURI")
    return Product(
        **texts,
        size=size,
        calib_level=valid_level(values.get("calib_level")),
        mtime=valid_mtime(values.get("mtime")),
    )


def valid_size(raw: Any) -> int | None:
    """A size in bytes, 0 when unknown (null), None when not a size at all."""
    if raw is None:
        return 0
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if type(raw) is not int or not 0 <= raw <= MAX_SIZE:
        return None
    return raw


def valid_level(raw: Any) -> int:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return raw if type(raw) is int and 0 <= raw <= 99 else 0


def valid_mtime(raw: Any) -> float:
    """POSIX seconds clamped to MIN_MTIME..MAX_MTIME; 0 when unknown or not a number."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 0.0
    try:
        value = float(raw)
    except OverflowError:  # an integer beyond any float
        value = math.inf if raw > 0 else -math.inf
    if math.isnan(value):
        return 0.0
    return round(min(max(value, MIN_MTIME), MAX_MTIME), 3)


def _text(raw: Any) -> str:
    """A field's string: `clean` (no control characters, valid Unicode), at most MAX_TEXT
    characters, interned: rows repeat the same values (a shared file under many parents, one
    description per product type), and interning keeps 50,000 rows in tens of MB."""
    if raw is None:
        return ""
    text = clean(raw if type(raw) is str else str(raw))
    return sys.intern(text[:MAX_TEXT])


def _mjd_to_unix(mjd: Any) -> float:
    """An MJD as POSIX seconds, unclamped (`valid_mtime` clamps); 0 when not a number."""
    try:
        value = float(mjd)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if math.isnan(value):
        return 0.0
    return (value - MJD_UNIX_EPOCH) * 86400.0


# astroquery 0.4.11 leaves observations of these targets out of product requests.
FFI_TARGETS = frozenset({"TESS FFI", "TICA FFI"})


def _without_ffis(observations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The observations less TESS and TICA full-frame images, and how many those were."""
    kept = [o for o in observations if o.get("target_name") not in FFI_TARGETS]
    return kept, len(observations) - len(kept)


def _natural(obsid: str) -> tuple[int, str]:
    # isascii: `int` refuses some digits `isdigit` accepts ("²"); the length bounds `int`'s work.
    if obsid.isascii() and obsid.isdigit() and len(obsid) < 30:
        return int(obsid), ""
    return 0, obsid


def proposals_with_exclusive(products: Sequence[Product]) -> dict[str, str]:
    """One exclusive-access dataURI per proposal: enough to learn whether a login may read it."""
    found: dict[str, str] = {}
    for p in products:
        if p.is_exclusive and p.proposal_id not in found:
            found[p.proposal_id] = p.dataURI
    return found
