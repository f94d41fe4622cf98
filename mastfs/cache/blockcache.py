"""The read path: a FUSE read becomes `BlockCache.read(dataURI, size, offset, length)`.

Each block is looked for in the memory tier, then among the flights in progress (concurrent
readers of a block share one request), then on disk, and only then fetched with an HTTP range
request; the bytes are assembled from the blocks. What each of those tiers is, and the policies
around them, live in their own modules (docs/architecture.md lists them); this one only wires
them and walks a read through them.

Blocks are never copied inside the process: received (or read from a run file) into a pooled
page-aligned buffer (`mastfs.buffers`), they go from there to the kernel (a hand-over or the
read reply) and to disk (an `O_DIRECT` write of the views themselves).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from mastfs.cache.blocks import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_METADATA_TTL,
    DEFAULT_PARALLEL,
    DEFAULT_PARALLEL_MAX,
    DEFAULT_READAHEAD_MAX,
    DEFAULT_REQUEST_MAX,
    Block,
    Layout,
)
from mastfs.cache.budget import MemoryBudget
from mastfs.cache.flights import Flight, Flights
from mastfs.cache.handover import Give, HandOver
from mastfs.cache.memory import MemoryTier
from mastfs.cache.prefetch import Obtained, Prefetcher
from mastfs.cache.readahead import Policy, Stream
from mastfs.cache.stats import Counters
from mastfs.cache.store import ABSENT, BlockIndex, DiskTier, derived_key, tag_of
from mastfs.cache.tasks import Background, run_background
from mastfs.cache.tuning import tune_process
from mastfs.cache.versions import Version, Versions
from mastfs.cache.whole import WholeStreams
from mastfs.fetch import (
    ContentChanged,
    Fetcher,
    FetchError,
    RangeIgnored,
    RangeNotSatisfiable,
    TransientError,
    VersionChanged,
)

log = logging.getLogger(__name__)

# Rounds of a read before giving up on contents that change under it.
MAX_ROUNDS = 8
# Seconds `aclose` waits for fetched blocks to reach the disk.
CLOSE_WRITE_GRACE = 10.0

BlockFlight = Flight[tuple[str, Block]]


class BlockCache:
    """Product bytes by block: memory tier, shared disk cache, single-flight fetches, readahead.

    Get one with `BlockCache.open_cache` (an async context manager), whose background work
    (readahead, disk writes, whole-file streams) lives in a nursery the cache owns.

    State, each piece owned by one object:
      layout       block arithmetic (`blocks.Layout`)
      counters     what the cache served and fetched (`stats.Counters`)
      budget       the memory budget's accounts (`budget.MemoryBudget`)
      memory       the memory tier, an LRU of blocks (`memory.MemoryTier`)
      disk         the on-disk store, trio side (`store.DiskTier`)
      versions     each product's current version, revalidation (`versions.Versions`)
      flights      blocks being obtained, by (dataURI, index) (`flights.Flights`)
      prefetcher   streams and readahead (`prefetch.Prefetcher`, `readahead.Policy`)
      hand_over    readahead given to the kernel (`handover.HandOver`)
      whole        products streamed whole (`whole.WholeStreams`)
    """

    def __init__(
        self,
        fetcher: Fetcher,
        index: BlockIndex,
        background: Background,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        readahead_max: int = DEFAULT_READAHEAD_MAX,
        request_max: int = DEFAULT_REQUEST_MAX,
        parallel: int = DEFAULT_PARALLEL,
        parallel_max: int = DEFAULT_PARALLEL_MAX,
        metadata_ttl: float = DEFAULT_METADATA_TTL,
        on_change: Callable[[str], None] | None = None,
        on_prefetched: Give | None = None,
    ) -> None:
        self.layout = Layout(block_size)
        self._fetcher = fetcher
        self._background = background
        self._on_change = on_change
        self.counters = Counters()
        self.budget = MemoryBudget(memory_limit)
        self.memory = MemoryTier(self.budget.tier)
        self.disk = DiskTier(index, self.counters, readers=max(2, parallel), background=background)
        self.versions = Versions(self.disk, fetcher, self.counters, self._version_changed)
        self.flights: Flights[tuple[str, int], tuple[str, Block]] = Flights()
        self.hand_over = HandOver(on_prefetched, self.budget, self.counters, block_size)
        policy = Policy(
            block_size,
            readahead_blocks=max(0, readahead_max // block_size),
            request_blocks=max(1, request_max // block_size),
        )
        self.prefetcher = Prefetcher(
            policy,
            self.budget,
            background,
            self.hand_over,
            self._obtain_ahead,
            self.versions.current,
            fetcher.link,
            parallel,
            parallel_max,
        )
        self.whole = WholeStreams(
            fetcher,
            self.flights,
            self.versions,
            self.counters,
            background,
            block_size,
            self._deliver_streamed,
        )
        self.metadata_ttl = metadata_ttl
        self._closed = False

    @property
    def block_size(self) -> int:
        return self.layout.block_size

    @property
    def directory(self) -> Path:
        return self.disk.directory

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open_cache(
        cls,
        fetcher: Fetcher,
        directory: Path,
        size_limit: int,
        *,
        nursery: trio.Nursery | None = None,
        **options: Any,
    ) -> AsyncIterator[BlockCache]:
        """A cache whose background work lives in a nursery of its own, started in `nursery`
        (or in one opened here). Also tunes the process for the cache's threads."""
        tune_process()
        Layout(options.get("block_size", DEFAULT_BLOCK_SIZE))  # a bad size fails before any I/O
        index = await trio.to_thread.run_sync(BlockIndex, Path(directory), size_limit)
        await trio.to_thread.run_sync(index.remove_orphans)
        if nursery is None:
            async with trio.open_nursery() as own, cls._running(fetcher, index, own, options) as c:
                yield c
        else:
            async with cls._running(fetcher, index, nursery, options) as cache:
                yield cache

    @classmethod
    @asynccontextmanager
    async def _running(
        cls, fetcher: Fetcher, index: BlockIndex, nursery: trio.Nursery, options: dict[str, Any]
    ) -> AsyncIterator[BlockCache]:
        try:
            background: Background = await nursery.start(run_background)
            cache = cls(fetcher, index, background, **options)
        except BaseException:
            await trio.to_thread.run_sync(index.close)
            raise
        try:
            yield cache
        finally:
            await cache.aclose()

    async def aclose(self) -> None:
        """Let fetched blocks reach the disk, stop background work, close the disk store."""
        if self._closed:
            return
        self._closed = True
        # The write budget bounds the wait; then whatever readahead is on the network stops.
        with trio.move_on_after(CLOSE_WRITE_GRACE):
            await self.budget.writes.wait_empty()
        await self._background.stop()
        await self.disk.flush_behind()
        log.debug("block cache %s: %s", self.directory, self.stats())
        await self.disk.close()

    async def wait_idle(self) -> None:
        """Wait until no background work runs (for tests and benchmarks)."""
        await self._background.wait_idle()

    def stats(self) -> dict[str, int]:
        """`stats.Counters`, the memory in use, and the HTTP client's counters (`http_*`)."""
        out = self.counters.as_dict()
        out["memory_bytes"] = self.memory.size
        out["readahead_inflight_bytes"] = self.budget.fetching.used
        out["blocks_in_flight"] = len(self.flights)
        shape = self.prefetcher.shape()
        out["readahead_parallel"] = shape.parallel
        out["readahead_request_bytes"] = shape.request_blocks * self.block_size
        link = self._fetcher.link()
        if link is not None:
            out["link_rtt_us"] = int(link.rtt * 1e6)
            out["link_rate_bps"] = int(link.rate)
        for name, value in self._fetcher.counters.items():
            out[f"http_{name}"] = value
        return out

    async def get_derived(self, version: Version, kind: str) -> bytes | None:
        """What was kept of `kind` made from this version (`keep_derived`), from disk."""
        return await self.disk.get_derived(derived_key(version.uri, version.identity, kind))

    def keep_derived(self, version: Version, kind: str, data: bytes) -> None:
        """Keep bytes made from a version (a header text) on disk, with its blocks: evicted
        with them, dropped when the product changes. Written in the background."""
        self.disk.note_derived(
            derived_key(version.uri, version.identity, kind),
            tag_of(version.uri, version.identity),
            data,
        )

    async def cached_bytes(self, dataURI: str, size: int) -> int:
        """Bytes of the product's current version on disk (0 when no version is known)."""
        version = await self.versions.load(dataURI)
        if version is None:
            return 0
        indices = await self.disk.cached_indices(dataURI, version.identity)
        count = self.layout.count(size)
        return sum(self.layout.length(i, size) for i in indices if 0 <= i < count)

    async def disk_usage(self) -> tuple[int, int | None]:
        """(bytes on disk, the bound) of the shared block cache."""
        return await self.disk.volume(), self.disk.index.size_limit

    # -- the public reads --------------------------------------------------------------------

    async def open(self, dataURI: str, size: int) -> Version | None:
        """The revalidation point of a product: one HEAD when the archive last confirmed its
        version more than `metadata_ttl` seconds ago. Returns the version an open file reads
        (None while nothing is known: the first read tells, `current_version`).

        `NotAuthorized`/`NotFound` from the server propagate; an unreachable server does not:
        the cached blocks are served (offline remount).
        """
        await self.versions.validate(dataURI, self.metadata_ttl)
        return self.versions.current(dataURI)

    async def probe(self, dataURI: str) -> Version:
        """The product's current version when the caller knows nothing of it (no catalogue row,
        no size): the one this process or the disk knows, revalidated as `open` does, else what
        the read of its first block says. That one ranged GET tells the size as a HEAD would and
        brings the bytes every reader asks for first (a FITS header), in one round trip instead
        of two. `NotAuthorized`/`NotFound`/`FetchError` from the archive propagate."""
        version = await self.open(dataURI, 0)
        if version is None:
            # A product shorter than a block answers with its real size (`ContentChanged`,
            # learnt by `read`); one longer, with exactly the block.
            await self.read(dataURI, self.block_size, 0, 1)
            version = self.versions.current(dataURI)
        if version is None:
            self.counters.requests += 1
            version = await self.versions.learn(dataURI, await self._fetcher.head(dataURI))
        return version

    def current_version(self, dataURI: str) -> Version | None:
        """The version the last read of the product was served from."""
        return self.versions.current(dataURI)

    async def read(
        self,
        dataURI: str,
        size: int,
        offset: int,
        length: int,
        version: Version | None = None,
        *,
        keep: bool = True,
    ) -> Block:
        """`length` bytes at `offset` (fewer at end of file); `size` is the catalogue size.

        With `version` (an open file's), the bytes are of that version or the read fails with
        `VersionChanged`: never a mix of two. Within one block the answer may be a read-only
        view of it (`Layout.assemble`). `keep=False`: what this read fetches goes to its
        readers only, neither to the memory tier nor to disk (bytes wanted once, for what is
        made of them).
        """
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length: {offset}, {length}")
        counters = self.counters
        counters.reads += 1
        if length == 0:
            return b""
        uri = dataURI
        await self.versions.validate(uri)
        started = trio.current_time()
        memory_hits = counters.memory_hits
        bound = version
        for _ in range(MAX_ROUNDS):
            version = await self.versions.load(uri)
            if bound is not None and (version is None or version.identity != bound.identity):
                raise VersionChanged(f"{uri} changed in the archive while open")
            file_size = version.size if version is not None else size
            end = min(offset + length, file_size)
            if offset >= end:
                return b""
            first, last = self.layout.span(offset, end)
            disk = True
            if version is not None and self._small_random_read(version, first, last, offset, end):
                part = await self.disk.get_part(
                    version.block_key(first),
                    self.layout.length(first, version.size),
                    offset - self.layout.start(first),
                    end - self.layout.start(first),
                )
                if isinstance(part, bytes | memoryview):
                    counters.hits += 1
                    counters.disk_hits += 1
                    counters.disk_partial_reads += 1
                    counters.bytes_served += len(part)
                    self._note_read(uri, version, offset, end, file_size, fetched=0)
                    return part
                # No row: the network it is, without asking the disk a second time.
                disk = part is not ABSENT
            stop = self._fetch_stop(uri, version, file_size, last, offset)
            fetched = await self._obtain(
                uri, version, file_size, range(first, stop), background=False, disk=disk, keep=keep
            )
            if fetched is None:
                continue  # the product changed under the fetch
            got = fetched
            if stop > last + 1:
                got = {index: got[index] for index in range(first, last + 1) if index in got}
            identities = {identity for identity, _ in got.values()}
            if len(got) != last - first + 1 or len(identities) != 1:
                continue
            current = self.versions.current(uri)
            if current is not None and identities != {current.identity}:
                continue
            if bound is not None and identities != {bound.identity}:
                raise VersionChanged(f"{uri} changed in the archive while open")
            result = self.layout.assemble(
                {index: data for index, (_, data) in got.items()}, first, last, offset, end
            )
            counters.bytes_served += len(result)
            if counters.memory_hits - memory_hits < last - first + 1:
                counters.stalls += 1
                counters.stall_us += int((trio.current_time() - started) * 1e6)
            stream = self._note_read(uri, version or current, offset, end, file_size, stop)
            if stop > last + 1 and stream is not None:
                # The rest of the run this read fetched goes to the kernel like readahead.
                self.prefetcher.hand_over_later(uri, range(last, stop), fetched, stream)
            return result
        raise TransientError(f"{dataURI}: contents kept changing while reading {offset}+{length}")

    def _note_read(
        self,
        uri: str,
        version: Version | None,
        offset: int,
        end: int,
        file_size: int,
        fetched: int,
    ) -> Stream | None:
        if self.whole.ignores_ranges(uri):
            return None
        return self.prefetcher.note_read(uri, version, offset, end, file_size, fetched)

    def _small_random_read(
        self, version: Version, first: int, last: int, offset: int, end: int
    ) -> bool:
        """Whether a read is better served by reading just its bytes from disk.

        A small read that continues none of the product's streams, of a block not in memory or
        in flight: after a remount, a random 64 KiB read then costs a 64 KiB disk read instead
        of the whole block's. Sequential readers still load whole blocks from their second read
        on, readahead included.
        """
        uri = version.uri
        if first != last or end - offset > self.block_size // 2:
            return False
        if self.whole.ignores_ranges(uri) or (uri, first) in self.flights:
            return False
        if self.memory.get(version.memory_key(first)) is not None:
            return False
        return not self.prefetcher.streams.continues(uri, offset)

    def _fetch_stop(
        self, uri: str, version: Version | None, file_size: int, last: int, offset: int
    ) -> int:
        """Where a foreground read's fetch should stop (exclusive block index): past its own
        blocks only for a sequential miss (`Policy.run_end`)."""
        policy = self.prefetcher.policy
        if version is None or not policy.enabled or self.whole.ignores_ranges(uri):
            return last + 1

        def missing(index: int) -> bool:
            return (uri, index) not in self.flights and version.memory_key(index) not in self.memory

        sequential = self.prefetcher.streams.continues(uri, offset, min_run=self.block_size // 2)
        if not missing(last) or not sequential:
            return last + 1
        return policy.run_end(last, file_size, missing, self.prefetcher.shape().request_blocks)

    # -- obtaining blocks --------------------------------------------------------------------

    async def _obtain_ahead(
        self, uri: str, version: Version | None, file_size: int, indices: Sequence[int]
    ) -> Obtained | None:
        return await self._obtain(uri, version, file_size, indices, background=True)

    async def _obtain(
        self,
        uri: str,
        version: Version | None,
        file_size: int,
        indices: Sequence[int],
        *,
        background: bool,
        disk: bool = True,
        keep: bool = True,
    ) -> Obtained | None:
        """The blocks at `indices` that could be had: memory, then flights, disk, network.

        None: the product changed under the fetch (the caller starts over). A block missing
        from the result was abandoned by another task; the caller retries. Background calls do
        not wait for other tasks' flights. `disk=False` skips the disk (the caller just found
        the blocks absent there).
        """
        counters = self.counters
        out: Obtained = {}
        owned: list[tuple[int, BlockFlight]] = []
        waiting: list[tuple[int, BlockFlight]] = []
        for index in indices:
            if version is not None:
                data = self.memory.get(version.memory_key(index))
                if data is not None:
                    out[index] = (version.identity, data)
                    if not background:
                        counters.hits += 1
                        counters.memory_hits += 1
                    continue
            flight, mine = self.flights.claim((uri, index), background)
            (owned if mine else waiting).append((index, flight))
        if owned:
            try:
                complete = await self._fill(
                    uri, version, file_size, owned, background, disk, keep
                )
            except trio.Cancelled:
                # The reader gave up (its deadline) or the mount is closing: whoever waits on
                # these blocks is released now with an error, not left to find out alone.
                if not background:
                    gave_up = TransientError(
                        f"{uri}: no answer in time for the read these blocks waited on"
                    )
                    for index, flight in owned:
                        self.flights.fail((uri, index), flight, gave_up)
                raise
            except FetchError as exc:
                # Other readers of a foreground flight share its error; a background failure
                # only makes them try for themselves.
                for index, flight in owned:
                    if background:
                        self.flights.abandon((uri, index), flight)
                    else:
                        self.flights.fail((uri, index), flight, exc)
                raise
            finally:
                for index, flight in owned:
                    self.flights.abandon((uri, index), flight)
            if not complete:
                return None
            for index, flight in owned:
                if flight.value is not None:
                    out[index] = flight.value
                elif flight.error is not None and not background:
                    raise flight.error
        if background:
            return out
        for index, flight in waiting:
            value = await flight.wait()
            if value is not None:
                out[index] = value
                counters.hits += 1
        return out

    def _resolve(
        self,
        uri: str,
        index: int,
        flight: BlockFlight | None,
        version: Version,
        data: Block,
        keep: bool = True,
    ) -> None:
        """A block to whoever waits for it, and to the memory tier unless it is not kept."""
        if keep:
            self.memory.put(version.memory_key(index), data)
        if flight is not None:
            self.flights.resolve((uri, index), flight, (version.identity, data))

    async def _fill(
        self,
        uri: str,
        version: Version | None,
        file_size: int,
        owned: list[tuple[int, BlockFlight]],
        background: bool,
        disk: bool,
        keep: bool = True,
    ) -> bool:
        """Resolve our own flights from disk (unless `disk` is False) or the network; False
        when the product changed under the fetch."""
        if not self.disk.may_hold(uri, [index for index, _ in owned]):
            disk = False
        rest = owned
        if version is not None and disk:
            found = await self.disk.get_many([version.block_key(index) for index, _ in owned])
            rest = []
            for (index, flight), data in zip(owned, found, strict=True):
                if data is not None and len(data) == self.layout.length(index, version.size):
                    self._resolve(uri, index, flight, version, data)
                    if not background:
                        self.counters.hits += 1
                        self.counters.disk_hits += 1
                elif not flight.done:
                    if data is not None:
                        log.warning("%s block %d: cached length %d is wrong", uri, index, len(data))
                    rest.append((index, flight))
        if not rest:
            return True
        if self.whole.ignores_ranges(uri):
            if not background:  # readahead has nothing to add to a whole-file stream
                await self.whole.fill(uri, version, file_size, rest)
            return True
        request_blocks = self.prefetcher.shape().request_blocks
        run: list[tuple[int, BlockFlight]] = []
        for item in rest:
            if run and (item[0] != run[-1][0] + 1 or len(run) >= request_blocks):
                if not await self._fetch_run(uri, version, file_size, run, background, keep):
                    return False
                run = []
            run.append(item)
        return await self._fetch_run(uri, version, file_size, run, background, keep)

    async def _fetch_run(
        self,
        uri: str,
        version: Version | None,
        file_size: int,
        run: list[tuple[int, BlockFlight]],
        background: bool,
        keep: bool = True,
    ) -> bool:
        """One range request for a run of consecutive blocks; False when the product changed
        (or turned out to ignore ranges) and the read must start over. The blocks go to memory
        and disk unless `keep` is False."""
        counters = self.counters
        bs = self.block_size
        start = run[0][0] * bs
        end = min((run[-1][0] + 1) * bs, file_size)
        expected = version.info if version is not None else None
        counters.requests += 1
        try:
            if background:
                async with self.prefetcher.network:
                    pieces, remote = await self._fetcher.get_range_split(
                        uri, start, end, bs, expected=expected, size=file_size
                    )
            else:
                pieces, remote = await self._fetcher.get_range_split(
                    uri, start, end, bs, expected=expected, size=file_size
                )
        except ContentChanged as exc:
            await self.versions.learn(uri, exc.info)
            return False
        except RangeIgnored as exc:
            self.whole.note_ignored(uri)
            await self.versions.learn(uri, exc.info)
            return False
        except RangeNotSatisfiable:
            # The file may have shrunk under us; a HEAD tells.
            counters.requests += 1
            fresh = await self._fetcher.head(uri, size=file_size)
            if expected is not None and expected.same_content(fresh):
                raise
            await self.versions.learn(uri, fresh)
            return False
        counters.bytes_fetched += end - start
        counters.misses += len(run)
        if background:
            counters.readahead_requests += 1
            counters.readahead_bytes += end - start
        current = await self.versions.learn(uri, remote)
        if end != min((run[-1][0] + 1) * bs, current.size):
            # The run's blocks are not the current version's blocks (its last one ends
            # elsewhere): keep nothing. A size other than the one asked for does not matter
            # otherwise (`probe` asks for the first block of a product of unknown size).
            return False
        blocks: list[tuple[int, Block]] = []
        for (index, flight), piece in zip(run, pieces, strict=True):
            self._resolve(uri, index, flight, current, piece, keep)
            blocks.append((index, piece))
        if keep:
            await self._store(current, blocks)
        return True

    async def _store(self, version: Version, blocks: list[tuple[int, Block]]) -> None:
        """Write blocks to disk, in the background while the write budget allows (disk writes
        are the slowest stage of a cold read here; past the budget the reader waits)."""
        self.disk.note_written(version.uri, [index for index, _ in blocks])
        reservation = self.budget.admit_background_write(sum(len(data) for _, data in blocks))
        if reservation is None:
            await self.disk.put_many(version.uri, version.identity, blocks)
            return

        async def write() -> None:
            with reservation:
                await self.disk.put_many(version.uri, version.identity, blocks)

        self._background.spawn(write)

    async def _deliver_streamed(self, version: Version, index: int, data: bytes) -> None:
        """A block of a whole-file stream: to its waiting reader, memory and disk."""
        flight = self.flights.get((version.uri, index))
        if flight is not None and not flight.done:
            self.counters.misses += 1
            self._resolve(version.uri, index, flight, version, data)
        self.disk.note_written(version.uri, [index])
        await self.disk.put_many(version.uri, version.identity, [(index, data)])

    async def _version_changed(self, old: Version, new: Version) -> None:
        """Drop everything held of the old version, then tell the front end (which drops the
        kernel's pages of the file)."""
        self.memory.drop(old.uri)
        self.hand_over.stop(old.uri)
        await self.disk.retire(old.uri, old.identity, new.identity)
        # A hand-over that began before the change may still be pushing old bytes.
        await self.hand_over.drained(old.uri)
        if self._on_change is not None:
            self._on_change(old.uri)
