"""Product versions: what this process knows of each product's current bytes, and revalidation.

A version is named by its identity: the ETag and size, or the size and Last-Modified when the
server sends no ETag. Blocks are keyed by it, so blocks of two versions never mix. Any response
describing other contents replaces the version (`learn`), and the cache is told so it drops
what it holds of the old one. A product with a record on disk is revalidated once per process
with one HEAD (`validate`); an unreachable server leaves the cached version in use (offline
remount) and is tried again after `REVALIDATE_RETRY` seconds. On open, a product is
revalidated when the archive last confirmed it more than `metadata_ttl` seconds ago, so a
long-running mount sees a reprocessed file.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from mastfs.cache.stats import Counters
from mastfs.cache.store import DiskTier, block_key
from mastfs.fetch import Fetcher, FetchError, NotAuthorized, NotFound, RemoteInfo

log = logging.getLogger(__name__)

# How long an unreachable server is left alone before `validate` tries again.
REVALIDATE_RETRY = 30.0


def identity_of(info: RemoteInfo) -> str:
    """The part of a product's remote state that names its bytes."""
    if info.etag is not None:
        return json.dumps([info.etag, info.size])
    return json.dumps([None, info.size, info.last_modified])


@dataclass(frozen=True, slots=True)
class Version:
    """One version of one product; the identity is computed once, here."""

    uri: str
    info: RemoteInfo
    identity: str

    @classmethod
    def of(cls, uri: str, info: RemoteInfo) -> Version:
        return cls(uri, info, identity_of(info))

    @property
    def size(self) -> int:
        return self.info.size

    def block_key(self, index: int) -> str:
        return block_key(self.uri, self.identity, index)

    def memory_key(self, index: int) -> tuple[str, str, int]:
        return (self.uri, self.identity, index)


# Called with (old, new) when a product's contents changed, before the new version is recorded
# on disk: the cache drops the old version's blocks and pages there.
OnChange = Callable[[Version, Version], Awaitable[None]]


class Versions:
    """The current version of each product this process has met (the trio thread's)."""

    def __init__(
        self, disk: DiskTier, fetcher: Fetcher, counters: Counters, on_change: OnChange
    ) -> None:
        self._disk = disk
        self._fetcher = fetcher
        self._counters = counters
        self._on_change = on_change
        self._current: dict[str, Version] = {}
        # Products whose record on disk has been looked for (found or not).
        self._looked: set[str] = set()
        # When each product was last validated by the archive (trio clock).
        self._validated_at: dict[str, float] = {}
        self._validate_failed: dict[str, float] = {}
        self._validate_locks: dict[str, trio.Lock] = {}

    def current(self, uri: str) -> Version | None:
        """The version known in memory, without looking at the disk."""
        return self._current.get(uri)

    async def load(self, uri: str) -> Version | None:
        """The current version, looking for the product's record on disk the first time."""
        version = self._current.get(uri)
        if version is not None or uri in self._looked:
            return version
        info = await self._disk.get_meta(uri)
        if uri in self._looked:
            return self._current.get(uri)  # another task looked meanwhile
        self._looked.add(uri)
        if info is None:
            self._disk.mark_new(uri)
        elif uri not in self._current:
            self._current[uri] = Version.of(uri, info)
        return self._current.get(uri)

    async def learn(self, uri: str, remote: RemoteInfo) -> Version:
        """Record what a response said; the old version is dropped if the contents changed."""
        old = self._current.get(uri)
        self._validated_at[uri] = trio.current_time()
        if old is not None and old.info.same_content(remote):
            return old
        new = self._current[uri] = Version.of(uri, remote)
        self._looked.add(uri)
        if old is not None:
            log.info(
                "%s changed (size %d -> %d, ETag %s -> %s): dropping its cached blocks",
                uri,
                old.size,
                remote.size,
                old.info.etag,
                remote.etag,
            )
            self._counters.invalidations += 1
            await self._on_change(old, new)
        self._disk.note_meta(uri, remote)
        return new

    def _fresh(self, uri: str, max_age: float) -> bool:
        at = self._validated_at.get(uri)
        return at is not None and trio.current_time() - at <= max_age

    async def validate(self, uri: str, max_age: float = math.inf) -> None:
        """Revalidate a product with a known version (one HEAD) unless the archive confirmed it
        within `max_age` seconds (infinity: once per process; 0: every time).

        `NotAuthorized`/`NotFound` propagate; an unreachable server does not (the cached
        version stays in use, offline) and is tried again after `REVALIDATE_RETRY`.
        """
        if self._fresh(uri, max_age):
            return
        failed_at = self._validate_failed.get(uri)
        if failed_at is not None and trio.current_time() - failed_at < REVALIDATE_RETRY:
            return
        lock = self._validate_locks.setdefault(uri, trio.Lock())
        async with lock:
            if self._fresh(uri, max_age):
                return
            known = await self.load(uri)
            if known is None:
                # Nothing known: the first response will tell (no round trip spent here).
                if max_age == math.inf:
                    self._validated_at[uri] = trio.current_time()
                return
            self._counters.revalidations += 1
            self._counters.requests += 1
            try:
                # A generated file's answer has no length: the known size stands for it.
                fresh = await self._fetcher.head(uri, retry=False, size=known.size)
            except (NotAuthorized, NotFound):
                raise
            except FetchError as exc:
                log.info("cannot revalidate %s (%s): serving its cached blocks", uri, exc)
                self._validate_failed[uri] = trio.current_time()
                return
            await self.learn(uri, fresh)
            self._validate_failed.pop(uri, None)
