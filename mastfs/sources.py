"""Where a product's bytes come from: the cloud copy, the site cache tier, the archive, or CRDS.

`Sources` is the `Fetcher` a mount reads through. Its own requests go to the archive
(`Fetcher`, with the token); it adds two other sources, each a `Fetcher` of its own that is
never given the token:

* **the site cache tier** (`--data-cache`, `datacache.TierChoice`): a reverse proxy in front of
  the archive that the nodes of a site share (docs/scale-out.md). Public products' range reads
  go there first; a cache that fails (no connection, a 5xx, a cut or malformed answer, a `200`
  to a range) is left for the next choice at once, and the read goes on from there, DIRECT
  last when allowed. Exclusive-access products, HEADs and everything else go to the archive.
* **the cloud copy** (`--source cloud`, `cloud.py`): public products of the missions in the
  bucket are read there, with anonymous range GETs of the key the archive's `path_lookup`
  names; a product the bucket does not have (no key, 403/404) is read from the archive (or
  the tier). A product read from the cloud stays there (its HEADs too): the bucket's ETag is
  not the archive's, so changing source would be a change of version.

* **CRDS** (`--references`, `crds.py`): the calibration reference files a mount shows in
  `references/` (URIs `crds:{observatory}/{name}`) are read, HEADs included, from their
  mission's CRDS server by `CrdsFetcher`, which has no token; nothing else goes there.

A cache tier can be stale or lie. What it says about a product must agree with the archive:
its first answer is checked against a HEAD to the archive (sent alongside, so it costs no
wait), and an answer describing other contents than the cache expects is settled by asking
the archive. A tier that disagrees with the archive is bypassed for that product (until
`reset_after`), and the archive's word is what the block cache learns: the version checks
(`cache/versions.py`) then keep blocks of two versions from ever mixing.
"""

from __future__ import annotations

import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import trio

from mastfs import cloud, crds
from mastfs.datacache import DEFAULT_RESET_AFTER, DIRECT, DataCacheSpec, TierChoice
from mastfs.fetch import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    USER_AGENT,
    BadResponse,
    ContentChanged,
    Fetcher,
    FetchError,
    NotAuthorized,
    NotFound,
    RangeIgnored,
    RangeNotSatisfiable,
    RemoteInfo,
    RetryPolicy,
)

log = logging.getLogger(__name__)

# Answers from the cloud that mean "read this product elsewhere".
_NOT_IN_CLOUD = (NotFound, NotAuthorized, BadResponse, RangeIgnored)
# Answers from a cache that are about the product, not the cache: the archive is asked.
_PRODUCT_ANSWER = (NotFound, NotAuthorized, RangeNotSatisfiable)


@dataclass
class RouteCounters:
    """What the other sources did (shown with the fetcher's counters, `http_*`)."""

    tier_failovers: int = 0
    tier_stale: int = 0
    cloud_missing: int = 0


class _TryNext(Exception):
    """Internal: this source cannot serve this request; the cause is chained."""


class CloudFetcher(Fetcher):
    """Range reads of the cloud copy: anonymous GETs of `bucket_url/key`, never a token."""

    def __init__(self, bucket_url: str, retry: RetryPolicy, **options: object) -> None:
        super().__init__(bucket_url, None, retry, **options)  # type: ignore[arg-type]
        # Filled on the trio thread before any request for the product is made.
        self.keys: dict[str, str] = {}

    def url_for(self, dataURI: str) -> str:
        return cloud.object_url(self.server, self.keys[dataURI])


class CrdsFetcher(Fetcher):
    """Range reads and HEADs of reference files (`crds:` URIs), each from its observatory's
    CRDS server. No token: CRDS is public, and the MAST token is for MAST alone."""

    def __init__(
        self, servers: Mapping[str, crds.CrdsServer], retry: RetryPolicy, **options: object
    ) -> None:
        self.bases = {s.observatory: s.url for s in servers.values()}
        first = next(iter(self.bases.values()), crds.DEFAULT_SERVERS["JWST"][1])
        super().__init__(first, None, retry, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"CrdsFetcher({self.bases!r})"

    def url_for(self, dataURI: str) -> str:
        observatory, _ = crds.split_uri(dataURI)
        return crds.reference_url(self.bases[observatory], dataURI)


class Sources(Fetcher):
    """The archive, plus the site cache tier and the cloud copy for public products."""

    def __init__(
        self,
        server: str,
        token: str | None,
        retry: RetryPolicy | None = None,
        *,
        timeout: float = READ_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        data_cache: DataCacheSpec | None = None,
        cloud_url: str | None = None,
        reset_after: float = DEFAULT_RESET_AFTER,
        crds_servers: Mapping[str, crds.CrdsServer] | None = None,
    ) -> None:
        super().__init__(
            server,
            token,
            retry,
            timeout=timeout,
            connect_timeout=connect_timeout,
            ssl_context=ssl_context,
        )
        options = {"timeout": timeout, "connect_timeout": connect_timeout}
        # A cache gets a short share of the deadline and one retry: failing over to the next
        # choice is the retry, and the archive still has time to answer within --timeout.
        side = RetryPolicy(
            attempts=2,
            base_delay=0.05,
            max_delay=0.5,
            deadline=max(1.0, self.retry.deadline / 4),
            connect_attempts=1,
        )
        self._tiers = {
            url: Fetcher(url, None, side, ssl_context=ssl_context, **options)  # type: ignore[arg-type]
            for url in (data_cache.urls if data_cache else ())
        }
        self._choice = TierChoice(data_cache, reset_after) if data_cache else None
        self._reset_after = reset_after
        self._cloud = (
            CloudFetcher(cloud_url, self.retry, ssl_context=ssl_context, **options)
            if cloud_url
            else None
        )
        self.crds = (
            CrdsFetcher(crds_servers, self.retry, ssl_context=ssl_context, **options)
            if crds_servers
            else None
        )
        self._cloud_keys: dict[str, str | None] = {}
        self._lookups: dict[str, trio.Event] = {}
        # None until `limit_token_to` has named the exclusive-access products: until then
        # every product is read from the archive.
        self._exclusive: frozenset[str] | None = None
        # Products a cache served stale: read from the archive until then (trio clock).
        self._stale_until: dict[str, float] = {}
        self.routes = RouteCounters()

    def __repr__(self) -> str:
        tiers = ", ".join(self._tiers)
        return f"Sources(server={self.server!r}, tiers=[{tiers}], cloud={self._cloud is not None})"

    @property  # type: ignore[override]
    def counters(self) -> dict[str, int]:
        """The archive's counters (`bytes`: bytes from the archive), then the other sources'."""
        out = dict(self._direct_counters)
        out["tier_bytes"] = sum(t.counters["bytes"] for t in self._tiers.values())
        out["tier_attempts"] = sum(t.counters["attempts"] for t in self._tiers.values())
        out["tier_failovers"] = self.routes.tier_failovers
        out["tier_stale"] = self.routes.tier_stale
        if self._cloud is not None:
            out["cloud_bytes"] = self._cloud.counters["bytes"]
            out["cloud_missing"] = self.routes.cloud_missing
        if self.crds is not None:
            out["crds_bytes"] = self.crds.counters["bytes"]
            out["crds_attempts"] = self.crds.counters["attempts"]
        return out

    @counters.setter
    def counters(self, value: dict[str, int]) -> None:
        self._direct_counters = value

    def _count(self, name: str, n: int = 1) -> None:
        with self._counters_lock:
            self._direct_counters[name] += n

    def limit_token_to(self, dataURIs: Iterable[str]) -> None:
        exclusive = frozenset(dataURIs)
        super().limit_token_to(exclusive)
        self._exclusive = exclusive

    def close(self) -> None:
        super().close()
        for tier in self._tiers.values():
            tier.close()
        if self._cloud is not None:
            self._cloud.close()
        if self.crds is not None:
            self.crds.close()

    # -- the routed operations ---------------------------------------------------------------

    def _reference(self, dataURI: str) -> CrdsFetcher | None:
        """The CRDS fetcher when `dataURI` is a reference file's."""
        return self.crds if self.crds is not None and crds.is_crds_uri(dataURI) else None

    async def head(
        self, dataURI: str, *, retry: bool = True, size: int | None = None
    ) -> RemoteInfo:
        if (reference := self._reference(dataURI)) is not None:
            return await reference.head(dataURI, retry=retry, size=size)
        if await self._in_cloud(dataURI):
            try:
                assert self._cloud is not None
                return await self._cloud.head(dataURI, retry=retry, size=size)
            except _NOT_IN_CLOUD as exc:
                self._not_in_cloud(dataURI, exc)
        return await super().head(dataURI, retry=retry, size=size)

    async def get_range_split(
        self,
        dataURI: str,
        start: int,
        end: int,
        piece_size: int,
        *,
        expected: RemoteInfo | None = None,
        size: int | None = None,
    ) -> tuple[list[memoryview], RemoteInfo]:
        if (reference := self._reference(dataURI)) is not None:
            return await reference.get_range_split(
                dataURI, start, end, piece_size, expected=expected, size=size
            )
        if await self._in_cloud(dataURI):
            try:
                assert self._cloud is not None
                return await self._cloud.get_range_split(
                    dataURI, start, end, piece_size, expected=expected, size=size
                )
            except _NOT_IN_CLOUD as exc:
                self._not_in_cloud(dataURI, exc)
        last: BaseException | None = None
        for url in self._tier_order(dataURI):
            if url == DIRECT:
                break
            try:
                return await self._from_tier(
                    url, dataURI, start, end, piece_size, expected, size
                )
            except _TryNext as exc:
                last = exc.__cause__
                if dataURI in self._stale_until:
                    break  # this product is read from the archive now
        else:
            if last is not None and dataURI not in self._stale_until:
                # Every cache failed and DIRECT is not allowed.
                assert isinstance(last, FetchError)
                raise last
        return await super().get_range_split(
            dataURI, start, end, piece_size, expected=expected, size=size
        )

    async def get_whole(
        self,
        dataURI: str,
        sink: Callable[[int, bytes, RemoteInfo], Awaitable[None]],
        *,
        expected: RemoteInfo | None = None,
        size: int | None = None,
    ) -> RemoteInfo:
        if (reference := self._reference(dataURI)) is not None:
            return await reference.get_whole(dataURI, sink, expected=expected, size=size)
        return await super().get_whole(dataURI, sink, expected=expected, size=size)

    # -- the site cache tier -----------------------------------------------------------------

    def _tier_order(self, dataURI: str) -> list[str]:
        """The caches to try for this product, DIRECT last when allowed; `[DIRECT]` for what
        goes to the archive only (exclusive-access, unclassified, or served stale)."""
        if self._choice is None or not self._is_public(dataURI):
            return [DIRECT]
        now = trio.current_time()
        until = self._stale_until.get(dataURI)
        if until is not None:
            if now < until:
                return [DIRECT]
            del self._stale_until[dataURI]
        return self._choice.order(now)

    async def _from_tier(
        self,
        url: str,
        dataURI: str,
        start: int,
        end: int,
        piece_size: int,
        expected: RemoteInfo | None,
        size: int | None,
    ) -> tuple[list[memoryview], RemoteInfo]:
        tier = self._tiers[url]
        archive: list[RemoteInfo] = []

        async def ask_archive() -> None:
            try:
                archive.append(await Fetcher.head(self, dataURI, retry=False))
            except FetchError as exc:
                log.debug("%s: cannot check the cache's answer with the archive: %s", url, exc)

        failure: FetchError | None = None
        async with trio.open_nursery() as nursery:
            if expected is None:
                nursery.start_soon(ask_archive)
            try:
                pieces, info = await tier.get_range_split(
                    dataURI, start, end, piece_size, expected=expected, size=size
                )
            except FetchError as exc:
                # Handled outside the nursery, which would wrap it in an exception group.
                failure = exc
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise await self._tier_answer_refused(url, dataURI, expected, failure) from failure
        if archive and not archive[0].same_content(info):
            self._served_stale(url, dataURI, info, archive[0])
            raise _TryNext from ContentChanged(f"{dataURI}: stale in {url}", info)
        return pieces, info

    async def _tier_answer_refused(
        self, url: str, dataURI: str, expected: RemoteInfo | None, exc: FetchError
    ) -> Exception:
        """What to raise for a cache's failed answer: `_TryNext`, or the archive's
        `ContentChanged` when the product changed there."""
        if isinstance(exc, ContentChanged):
            # The cache describes other contents than expected: the archive decides.
            truth = await Fetcher.head(self, dataURI)
            assert expected is not None
            if not expected.same_content(truth):
                return ContentChanged(f"{dataURI}: changed in the archive", truth)
            self._served_stale(url, dataURI, exc.info, truth)
        elif isinstance(exc, _PRODUCT_ANSWER):
            log.info("%s answered %s: asking the next source", url, exc)
        else:
            self._tier_failed(url, exc)
        return _TryNext()

    def _tier_failed(self, url: str, exc: FetchError) -> None:
        assert self._choice is not None
        self.routes.tier_failovers += 1
        log.warning("data cache %s failed (%s): using the next choice", url, exc)
        self._choice.failed(url, trio.current_time())

    def _served_stale(self, url: str, dataURI: str, said: RemoteInfo, truth: RemoteInfo) -> None:
        self.routes.tier_stale += 1
        log.warning(
            "data cache %s has another version of %s than the archive (size %d, ETag %s; "
            "archive: size %d, ETag %s): reading it from the archive",
            url,
            dataURI,
            said.size,
            said.etag,
            truth.size,
            truth.etag,
        )
        self._stale_until[dataURI] = trio.current_time() + self._reset_after

    def _is_public(self, dataURI: str) -> bool:
        return self._exclusive is not None and dataURI not in self._exclusive

    # -- the cloud copy ----------------------------------------------------------------------

    async def _in_cloud(self, dataURI: str) -> bool:
        """Whether to read the product from the cloud copy (its key looked up once)."""
        if self._cloud is None or not self._is_public(dataURI):
            return False
        if not cloud.in_cloud_mission(dataURI):
            return False
        if dataURI not in self._cloud_keys:
            event = self._lookups.get(dataURI)
            if event is not None:
                await event.wait()
            else:
                event = self._lookups[dataURI] = trio.Event()
                try:
                    await self._look_up(dataURI)
                finally:
                    del self._lookups[dataURI]
                    event.set()
        return self._cloud_keys.get(dataURI) is not None

    async def _look_up(self, dataURI: str) -> None:
        url = cloud.lookup_url(self.server, [dataURI])
        try:
            keys = await trio.to_thread.run_sync(self._fetch_lookup, url, [dataURI])
        except (OSError, cloud.CloudPathError, ValueError) as exc:
            # Not remembered: the next read asks again; this one goes to the archive.
            log.info("path_lookup for %s failed (%s): reading it from the archive", dataURI, exc)
            return
        key = keys[dataURI]
        self._cloud_keys[dataURI] = key
        if key is None:
            self.routes.cloud_missing += 1
            log.info("%s: no cloud path; reading it from the archive", dataURI)
        else:
            assert self._cloud is not None
            self._cloud.keys[dataURI] = key

    def _fetch_lookup(self, url: str, dataURIs: list[str]) -> dict[str, str | None]:
        """One path_lookup request (worker thread); no token: the service needs none."""
        request = urllib.request.Request(
            url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"}
        )
        seconds = min(self.retry.deadline, READ_TIMEOUT)
        try:
            with urllib.request.urlopen(request, timeout=seconds) as answer:
                body = answer.read(cloud.MAX_LOOKUP_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise cloud.CloudPathError(f"path_lookup answered {exc.code}") from exc
        return cloud.parse_lookup(body, dataURIs)

    def _not_in_cloud(self, dataURI: str, exc: FetchError) -> None:
        self.routes.cloud_missing += 1
        log.info("%s not in the cloud copy (%s): reading it from the archive", dataURI, exc)
        self._cloud_keys[dataURI] = None
