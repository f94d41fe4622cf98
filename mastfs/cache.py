"""The block cache: product bytes in fixed blocks, on disk across mounts, in memory while hot.

A FUSE read becomes `BlockCache.read(dataURI, size, offset, length)`; the cache answers from a
memory tier (an LRU of recent blocks under a byte budget), then from a persistent
`diskcache.Cache` shared by every mount and process using the same directory, and only then with
an HTTP range request through `fetch.Fetcher`. Concurrent readers of a block share one request
(single flight, s3ql's MultiLock idea: a dict of in-flight blocks, each with a `trio.Event`).

Block size: 1 MiB. The two costs pull in opposite directions:

* A cold random read pays for its whole block. FITS readers seek from header to header and read
  a few KiB each; with 1 MiB blocks `fits.getheader` on a 4 GiB product moves 1 MiB and a
  ten-extension file about 10 MiB (4 MiB blocks would make that 40 MiB, 8 MiB blocks 80 MiB).
  mountpoint-s3's cache and the astrocut/fsspec tuning settled on 1 MiB for the same reason.
* Per-request and per-block overhead. The kernel sends 128 KiB FUSE reads, so one block serves
  eight of them from the memory tier. Sequential streams do not fetch block by block: readahead
  asks for runs of up to `request_max` (8 MiB) in one range GET, several in parallel (one 4 MiB
  range at a time already reaches 0.66 GB/s on loopback, baselines.md). What 1 MiB blocks do
  cost is a diskcache row and file per MiB: ~0.1 ms to read back, far below a FUSE request.

Readahead follows mountpoint-s3 and JuiceFS: a read continuing one of a product's recent streams
(up to four, so interleaved readers keep theirs) is sequential. After half a block of sequential
reads the window starts at one block and doubles each time the reader enters a new block, up to
`readahead_max` (64 MiB); it is topped up once half of it has been consumed, so a steady stream
asks for 32 MiB at a time in 8 MiB ranges. Random reads never grow a window: a cold 64 KiB read
fetches one block. Readahead runs in the cache's task group; its network requests queue on a
`CapacityLimiter` (foreground reads never do), the bytes it has in flight are capped at half the
memory budget, and its failures are logged at debug level and never fail a read.

Blocks are keyed by (dataURI, content identity, block index): the identity is the ETag (or the
size and Last-Modified when the server sends no ETag), recorded per product in the same
diskcache. Any response describing other contents replaces the record and drops the old blocks;
`open()` re-checks a product with cached blocks once per process with one HEAD, and serves from
the cache when the server cannot be reached. Every block but a product's last is exactly
`block_size` bytes; lengths are checked on the way in and out, and diskcache writes a value's
file before committing its row, so a crash never leaves a short block behind. Blocks are written
in the background by one writer thread, within a byte budget past which readers wait (disk
writes are the slowest stage of a cold read on this project's machines). The disk cache evicts by
store time (see `__init__`). A failing disk (full, read-only) is logged once and reads are served
from memory.

A server that ignores `Range` (200 with the whole body) is remembered per product; the product is
then streamed once in the background, every block stored as it passes, and readers wait only for
their own blocks.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
import trio

from mastfs.fetch import (
    ContentChanged,
    Fetcher,
    FetchError,
    NotAuthorized,
    NotFound,
    RangeIgnored,
    RangeNotSatisfiable,
    RemoteInfo,
    TransientError,
)

log = logging.getLogger(__name__)

KiB = 1 << 10
MiB = 1 << 20
DEFAULT_BLOCK_SIZE = 1 * MiB
DEFAULT_MEMORY_LIMIT = 256 * MiB
DEFAULT_READAHEAD_MAX = 64 * MiB
DEFAULT_REQUEST_MAX = 8 * MiB
DEFAULT_PARALLEL = 4
# Streams remembered per product: enough for a few interleaved readers of one file.
MAX_STREAMS = 4
# Products whose streams are remembered (the oldest product's are forgotten first).
MAX_STREAM_PRODUCTS = 1024
# How long an unreachable server is left alone before `open()` tries to revalidate again.
REVALIDATE_RETRY = 30.0
# Rounds of a read before giving up on contents that change under it.
MAX_ROUNDS = 8
# Seconds `aclose` waits for fetched blocks to reach the disk.
CLOSE_WRITE_GRACE = 10.0


def identity_of(info: RemoteInfo) -> str:
    """The part of a product's remote state that names its bytes."""
    if info.etag is not None:
        return json.dumps([info.etag, info.size])
    return json.dumps([None, info.size, info.last_modified])


def _block_key(uri: str, identity: str, index: int) -> str:
    return json.dumps(["b", uri, identity, index])


def _meta_key(uri: str) -> str:
    return json.dumps(["m", uri])


def _tag(uri: str, identity: str) -> str:
    return json.dumps([uri, identity])


# O_DIRECT wants the buffer, offset and length aligned to the device's logical block size;
# a page is a multiple of every size Linux uses.
_DIRECT_ALIGN = mmap.PAGESIZE


class _BlockDisk(diskcache.Disk):
    """diskcache's file storage, tuned for 1 MiB blocks (see "Tuning notes" in performance.md).

    Measured per GiB stored here, the stock `Disk` spent 2.5-4 s of CPU: a new random
    two-level directory for almost every file (1,276 `mkdir` for 1,024 blocks) and buffered
    writes into page-cache pages the VM first has to fault in. This class keeps diskcache's
    rows, eviction, tags and cross-process sharing, and changes only where and how value files
    are written:

    * A block's file goes into one directory per (product, identity), so a product costs one
      `mkdir`; the name keeps a random part (diskcache deletes the old file of a replaced row
      after its commit, so two writes of one key must never share a file).
    * Files are written and read with `O_DIRECT` through a reused, page-aligned buffer per
      thread: no page cache to fill, and the copy into the buffer is the only one. Filesystems
      without `O_DIRECT` (tmpfs) get ordinary buffered I/O.
    """

    def __init__(self, directory: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self._direct = hasattr(os, "O_DIRECT")
        self._local = threading.local()

    def filename(self, key: Any = diskcache.UNKNOWN, value: Any = diskcache.UNKNOWN) -> Any:
        try:
            kind, uri, identity, index = json.loads(key)
        except (TypeError, ValueError):
            return super().filename(key, value)
        if kind != "b":
            return super().filename(key, value)
        digest = hashlib.sha256(_tag(uri, identity).encode()).hexdigest()
        name = os.path.join(digest[:2], digest[2:24], f"{int(index)}-{os.urandom(4).hex()}.val")
        return name, os.path.join(self._directory, name)

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> Any:
        if type(value) is not bytes or len(value) < self.min_file_size:
            return super().store(value, read, key=key)
        filename, full_path = self.filename(key, value)
        for attempt in range(10):
            # Another process may remove an emptied directory between makedirs and open.
            try:
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                self._write_new(full_path, value)
                break
            except FileNotFoundError:
                if attempt == 9:
                    raise
        return len(value), diskcache.core.MODE_BINARY, filename, None

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if mode != diskcache.core.MODE_BINARY or read:
            return super().fetch(mode, filename, value, read)
        return self._read_file(os.path.join(self._directory, filename))

    def _buffer(self, size: int) -> mmap.mmap:
        """This thread's page-aligned scratch buffer, at least `size` bytes."""
        buffer: mmap.mmap | None = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < size:
            if buffer is not None:
                buffer.close()
            buffer = self._local.buffer = mmap.mmap(-1, max(size, 1 << 20))
        return buffer

    def _write_new(self, path: str, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = -1
        if self._direct:
            try:
                fd = os.open(path, flags | os.O_DIRECT, 0o644)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = False
        if fd < 0:
            fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(data)
            done = 0
            if self._direct:
                aligned = len(data) - len(data) % _DIRECT_ALIGN
                buffer = self._buffer(aligned)
                buffer[:aligned] = view[:aligned]
                scratch = memoryview(buffer)
                try:
                    while done < aligned:
                        done += os.pwrite(fd, scratch[done:aligned], done)
                finally:
                    scratch.release()
                if done < len(data):
                    # The unaligned tail (a product's last block) goes through the page cache.
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
            while done < len(data):
                done += os.pwrite(fd, view[done:], done)
        except BaseException:
            os.close(fd)
            fd = -1
            with suppress(OSError):
                os.unlink(path)
            raise
        finally:
            if fd >= 0:
                os.close(fd)

    def _read_file(self, path: str) -> bytes:
        if self._direct:
            try:
                data = self._read_direct(path)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = False
                data = None
            if data is not None:
                return data
        with open(path, "rb") as reader:
            return reader.read()

    def _read_direct(self, path: str) -> bytes | None:
        """The file's bytes through `O_DIRECT`, or None when a read came back odd."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            size = os.fstat(fd).st_size
            rounded = -(-size // _DIRECT_ALIGN) * _DIRECT_ALIGN
            scratch = memoryview(self._buffer(rounded))
            try:
                got = 0
                while got < size:
                    n = os.preadv(fd, [scratch[got:rounded]], got)
                    if n <= 0 or (got + n < size and n % _DIRECT_ALIGN):
                        return None
                    got += n
                return bytes(scratch[:size])
            finally:
                scratch.release()
        finally:
            os.close(fd)


class _Restart(Exception):
    """Internal: what we knew about the product changed; the read starts over."""


@dataclass(eq=False)
class _Flight:
    """One block being obtained; waiters share its outcome."""

    background: bool
    event: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    identity: str | None = None
    # None with the event set means "abandoned": the owner stopped, waiters try themselves.
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.event.is_set()


@dataclass
class _Stream:
    """A sequential reader of one product, as far as the offsets of its reads tell."""

    next_offset: int
    run: int = 0
    window: int = 0
    block: int = -1
    issued: int = 0


@dataclass(eq=False)
class _WholeStream:
    """A product being streamed whole, for a server that ignores `Range`."""

    next_block: int = 0
    done: trio.Event = field(default_factory=trio.Event)


class _MemoryTier:
    """LRU of recent blocks under a byte budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._blocks: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    def get(self, key: tuple[str, str, int]) -> bytes | None:
        data = self._blocks.get(key)
        if data is not None:
            self._blocks.move_to_end(key)
        return data

    def put(self, key: tuple[str, str, int], data: bytes) -> None:
        if len(data) > self.limit:
            return
        old = self._blocks.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._blocks[key] = data
        self.size += len(data)
        while self.size > self.limit:
            _, evicted = self._blocks.popitem(last=False)
            self.size -= len(evicted)

    def drop(self, uri: str) -> None:
        for key in [k for k in self._blocks if k[0] == uri]:
            self.size -= len(self._blocks.pop(key))


class BlockCache:
    """Product bytes by block: memory tier, shared disk cache, single-flight fetches, readahead.

    Use `open_cache` (an async context manager) to get one with a task group for readahead;
    a bare instance works too, without readahead.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        directory: Path,
        size_limit: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        *,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        readahead_max: int = DEFAULT_READAHEAD_MAX,
        request_max: int = DEFAULT_REQUEST_MAX,
        parallel: int = DEFAULT_PARALLEL,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        if block_size < 4 * KiB:
            raise ValueError(f"block_size {block_size} is below 4 KiB")
        self._fetcher = fetcher
        self.directory = Path(directory)
        self.block_size = block_size
        self.size_limit = size_limit
        self._readahead_blocks = max(0, readahead_max // block_size)
        self._request_blocks = max(1, request_max // block_size)
        # Readahead may hold at most half the memory budget in flight; the rest stays for
        # blocks readers are using.
        self._readahead_budget = memory_limit // 2
        self._on_change = on_change
        # Blocking (SQLite, file I/O): `open_cache` runs this constructor in a worker thread.
        self._disk = diskcache.Cache(
            str(self.directory),
            size_limit=size_limit,
            # Not "least-recently-used": it turns every get into an SQLite write, and parallel
            # readers then queue on the write lock (SQLite's busy handler sleeps in steps of
            # milliseconds): measured 15 ms per 1 MiB block instead of 0.1 ms. Eviction is by
            # store time; hot blocks live in the memory tier, and an evicted block costs one
            # refetch, after which it is young again.
            eviction_policy="least-recently-stored",
            tag_index=True,
            disk=_BlockDisk,
        )
        self._memory = _MemoryTier(memory_limit)
        self._flights: dict[tuple[str, int], _Flight] = {}
        self._meta: dict[str, RemoteInfo] = {}
        self._meta_checked: set[str] = set()
        self._validated: set[str] = set()
        self._validate_failed: dict[str, float] = {}
        self._validate_locks: dict[str, trio.Lock] = {}
        self._streams: dict[str, list[_Stream]] = {}
        self._ranges_ignored: set[str] = set()
        self._whole: dict[str, _WholeStream] = {}
        self._limiter = trio.CapacityLimiter(parallel)
        # Reads run in parallel (WAL readers take no lock). Writes go through one thread, in
        # order: SQLite has one write lock anyway (two writers measured no faster here), and
        # a block write queued before a content change's eviction can never land after it.
        self._disk_read_limiter = trio.CapacityLimiter(max(2, parallel))
        self._disk_write_limiter = trio.CapacityLimiter(1)
        self._tasks: trio.Nursery | None = None
        self._served = trio.Event()
        self._readahead_inflight = 0
        self._writes_pending = 0
        self._writes_done = trio.Event()
        self._write_budget = memory_limit // 4
        self._pending_tasks = 0
        self._idle = trio.Event()
        self._idle.set()
        self._disk_failed_logged = False
        self._closed = False
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "reads",
                "bytes_served",
                "hits",
                "memory_hits",
                "disk_hits",
                "misses",
                "requests",
                "bytes_fetched",
                "readahead_requests",
                "readahead_bytes",
                "whole_streams",
                "revalidations",
                "invalidations",
                "disk_errors",
            ),
            0,
        )

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
        """A cache whose background tasks live in `nursery` (or in one of its own)."""
        cache = await trio.to_thread.run_sync(
            lambda: cls(fetcher, directory, size_limit, **options)
        )
        try:
            if nursery is None:
                async with trio.open_nursery() as own:
                    await own.start(cache._serve)
                    try:
                        yield cache
                    finally:
                        await cache.aclose()
            else:
                await nursery.start(cache._serve)
                yield cache
        finally:
            await cache.aclose()

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # One task in the owner's nursery holds a nursery of ours, so `aclose` can cancel
        # exactly the cache's background work and nothing else.
        try:
            async with trio.open_nursery() as tasks:
                self._tasks = tasks
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._tasks = None
            self._served.set()

    async def aclose(self) -> None:
        """Stop background work and close the disk cache; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._tasks is not None:
            # Let blocks already fetched reach the disk (the write budget bounds the wait),
            # then cancel whatever readahead is still on the network.
            with trio.move_on_after(CLOSE_WRITE_GRACE):
                while self._writes_pending:
                    await self._writes_done.wait()
            self._tasks.cancel_scope.cancel()
            await self._served.wait()
        await trio.to_thread.run_sync(self._disk.close)

    async def wait_idle(self) -> None:
        """Wait until no readahead or whole-file stream is running (for tests and benchmarks)."""
        while not self._idle.is_set():
            await self._idle.wait()

    def stats(self) -> dict[str, int]:
        """Counters since this cache opened.

        `hits`: blocks foreground reads got without a request of their own (memory, disk, or
        another reader's request); `misses`: blocks fetched over HTTP, readahead included;
        `requests`: HTTP requests the cache made (range GETs, whole-file GETs, HEADs), not
        counting retries (`http_retries`); `bytes_fetched`: body bytes received.
        """
        out = dict(self._counters)
        out["memory_bytes"] = self._memory.size
        out["readahead_inflight_bytes"] = self._readahead_inflight
        for name, value in self._fetcher.counters.items():
            out[f"http_{name}"] = value
        return out

    # -- the public reads --------------------------------------------------------------------

    async def open(self, dataURI: str, size: int) -> None:
        """Revalidate a product with cached blocks, once per process (one HEAD).

        `NotAuthorized`/`NotFound` from the server propagate; an unreachable server does not:
        the cached blocks are served (offline remount).
        """
        await self._validate(dataURI)

    async def read(self, dataURI: str, size: int, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` (fewer at end of file); `size` is the catalogue size."""
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length: {offset}, {length}")
        self._counters["reads"] += 1
        if length == 0:
            return b""
        await self._validate(dataURI)
        bs = self.block_size
        for _ in range(MAX_ROUNDS):
            info = await self._load_meta(dataURI)
            file_size = info.size if info is not None else size
            end = min(offset + length, file_size)
            if offset >= end:
                return b""
            first, last = offset // bs, (end - 1) // bs
            try:
                got = await self._obtain(
                    dataURI, info, file_size, range(first, last + 1), background=False
                )
            except _Restart:
                continue
            current = self._meta.get(dataURI)
            identities = {identity for identity, _ in got.values()}
            if len(got) != last - first + 1 or len(identities) != 1:
                continue
            if current is not None and identities != {identity_of(current)}:
                continue
            result = self._assemble(got, first, last, offset, end)
            self._counters["bytes_served"] += len(result)
            self._note_access(dataURI, info or self._meta.get(dataURI), offset, end, file_size)
            return result
        raise TransientError(f"{dataURI}: contents kept changing while reading {offset}+{length}")

    def _assemble(
        self, got: dict[int, tuple[str, bytes]], first: int, last: int, offset: int, end: int
    ) -> bytes:
        bs = self.block_size
        if first == last:
            data = got[first][1]
            return data[offset - first * bs : end - first * bs]
        parts = []
        for index in range(first, last + 1):
            data = got[index][1]
            lo = max(offset - index * bs, 0)
            hi = min(end - index * bs, len(data))
            parts.append(data[lo:hi])
        return b"".join(parts)

    # -- obtaining blocks --------------------------------------------------------------------

    def _block_len(self, index: int, file_size: int) -> int:
        return min(self.block_size, file_size - index * self.block_size)

    async def _obtain(
        self,
        uri: str,
        info: RemoteInfo | None,
        file_size: int,
        indices: Sequence[int],
        *,
        background: bool,
    ) -> dict[int, tuple[str, bytes]]:
        """The blocks at `indices` that could be had: memory, then flights, disk, network.

        A block missing from the result was abandoned by another task; the caller retries.
        Background calls do not wait for other tasks' flights.
        """
        out: dict[int, tuple[str, bytes]] = {}
        identity = identity_of(info) if info is not None else None
        owned: list[tuple[int, _Flight]] = []
        waiting: list[tuple[int, _Flight]] = []
        for index in indices:
            if identity is not None:
                data = self._memory.get((uri, identity, index))
                if data is not None:
                    out[index] = (identity, data)
                    if not background:
                        self._counters["hits"] += 1
                        self._counters["memory_hits"] += 1
                    continue
            flight = self._flights.get((uri, index))
            if flight is None:
                flight = self._flights[(uri, index)] = _Flight(background)
                owned.append((index, flight))
            else:
                waiting.append((index, flight))
        if owned:
            try:
                await self._fill(uri, info, file_size, owned, background)
            except FetchError as exc:
                # Other readers of a foreground flight share its error; a background failure
                # only makes them try for themselves.
                for index, flight in owned:
                    self._settle(uri, index, flight, None if background else exc)
                raise
            finally:
                for index, flight in owned:
                    self._settle(uri, index, flight, None)
            for index, flight in owned:
                if flight.data is not None and flight.identity is not None:
                    out[index] = (flight.identity, flight.data)
                elif flight.error is not None and not background:
                    raise flight.error
        if background:
            return out
        for index, flight in waiting:
            await flight.event.wait()
            if flight.data is not None and flight.identity is not None:
                out[index] = (flight.identity, flight.data)
                self._counters["hits"] += 1
            elif flight.error is not None and not flight.background:
                raise flight.error
        return out

    def _resolve(self, uri: str, index: int, flight: _Flight, identity: str, data: bytes) -> None:
        self._memory.put((uri, identity, index), data)
        if flight.done:
            return
        flight.data, flight.identity = data, identity
        flight.event.set()
        if self._flights.get((uri, index)) is flight:
            del self._flights[(uri, index)]

    def _settle(self, uri: str, index: int, flight: _Flight, error: BaseException | None) -> None:
        """End a flight without data: failed (`error`) or abandoned (None)."""
        if flight.done:
            return
        flight.error = error
        flight.event.set()
        if self._flights.get((uri, index)) is flight:
            del self._flights[(uri, index)]

    async def _fill(
        self,
        uri: str,
        info: RemoteInfo | None,
        file_size: int,
        owned: list[tuple[int, _Flight]],
        background: bool,
    ) -> None:
        """Resolve our own flights from disk or the network."""
        if info is not None:
            identity = identity_of(info)
            keys = [_block_key(uri, identity, index) for index, _ in owned]
            found = await self._disk_read(self._disk_get_many, keys)
            rest: list[tuple[int, _Flight]] = []
            for (index, flight), data in zip(owned, found, strict=True):
                if data is not None and len(data) == self._block_len(index, info.size):
                    self._resolve(uri, index, flight, identity, data)
                    if not background:
                        self._counters["hits"] += 1
                        self._counters["disk_hits"] += 1
                elif not flight.done:
                    if data is not None:
                        log.warning("%s block %d: cached length %d is wrong", uri, index, len(data))
                    rest.append((index, flight))
        else:
            rest = owned
        if not rest:
            return
        if uri in self._ranges_ignored:
            if not background:  # readahead has nothing to add to a whole-file stream
                await self._fill_whole(uri, info, rest)
            return
        run: list[tuple[int, _Flight]] = []
        for item in rest:
            if run and (item[0] != run[-1][0] + 1 or len(run) >= self._request_blocks):
                await self._fetch_run(uri, info, file_size, run, background)
                run = []
            run.append(item)
        await self._fetch_run(uri, info, file_size, run, background)

    async def _fetch_run(
        self,
        uri: str,
        info: RemoteInfo | None,
        file_size: int,
        run: list[tuple[int, _Flight]],
        background: bool,
    ) -> None:
        """One range request for a run of consecutive blocks."""
        bs = self.block_size
        start = run[0][0] * bs
        end = min((run[-1][0] + 1) * bs, file_size)
        self._counters["requests"] += 1
        try:
            if background:
                async with self._limiter:
                    pieces, remote = await self._fetcher.get_range_split(
                        uri, start, end, bs, expected=info
                    )
            else:
                # Foreground reads never queue behind readahead.
                pieces, remote = await self._fetcher.get_range_split(
                    uri, start, end, bs, expected=info
                )
        except ContentChanged as exc:
            await self._learn(uri, exc.info)
            raise _Restart from exc
        except RangeIgnored as exc:
            if not self._ranges_ignored:
                log.warning("%s ignores Range requests: products will be streamed whole", uri)
            self._ranges_ignored.add(uri)
            await self._learn(uri, exc.info)
            raise _Restart from exc
        except RangeNotSatisfiable as exc:
            # The file may have shrunk under us; a HEAD tells.
            self._counters["requests"] += 1
            fresh = await self._fetcher.head(uri)
            if info is not None and info.same_content(fresh):
                raise
            await self._learn(uri, fresh)
            raise _Restart from exc
        self._counters["bytes_fetched"] += end - start
        self._counters["misses"] += len(run)
        if background:
            self._counters["readahead_requests"] += 1
            self._counters["readahead_bytes"] += end - start
        current = await self._learn(uri, remote)
        if current.size != file_size:
            # The block layout differs from what the range was computed for: keep nothing.
            raise _Restart
        identity = identity_of(current)
        blocks: list[tuple[int, bytes]] = []
        for (index, flight), piece in zip(run, pieces, strict=True):
            self._resolve(uri, index, flight, identity, piece)
            blocks.append((index, piece))
        await self._store(uri, identity, blocks)

    async def _store(self, uri: str, identity: str, blocks: list[tuple[int, bytes]]) -> None:
        """Write blocks to disk, in the background while the write budget allows.

        Disk writes here run at ~400 MB/s (2.5 ms per MiB), slower than loopback HTTP, so the
        reader that fetched a block does not wait for its write; past the budget it does, which
        is the backpressure that keeps unwritten blocks from piling up in memory.
        """
        nbytes = sum(len(data) for _, data in blocks)
        if self._tasks is None or self._writes_pending + nbytes > self._write_budget:
            await self._disk_write(self._disk_put_many, uri, identity, blocks)
            return
        self._writes_pending += nbytes
        self._task_started()
        self._tasks.start_soon(self._store_task, uri, identity, blocks, nbytes)

    async def _store_task(
        self, uri: str, identity: str, blocks: list[tuple[int, bytes]], nbytes: int
    ) -> None:
        try:
            await self._disk_write(self._disk_put_many, uri, identity, blocks)
        finally:
            self._writes_pending -= nbytes
            if not self._writes_pending:
                self._writes_done.set()
                self._writes_done = trio.Event()
            self._task_done()

    # -- servers that ignore Range -----------------------------------------------------------

    async def _fill_whole(
        self, uri: str, info: RemoteInfo | None, rest: list[tuple[int, _Flight]]
    ) -> None:
        stream = self._whole.get(uri)
        if stream is not None and min(index for index, _ in rest) < stream.next_block:
            # That stream has passed our blocks (and failed to store them): wait it out,
            # then the read starts over and looks at the disk again.
            await stream.done.wait()
            return
        if stream is None:
            stream = self._whole[uri] = _WholeStream()
            self._task_started()
            if self._tasks is not None:
                self._tasks.start_soon(self._run_whole, uri, info, stream)
            else:
                await self._run_whole(uri, info, stream)
        for _, flight in rest:
            await flight.event.wait()

    async def _run_whole(self, uri: str, info: RemoteInfo | None, stream: _WholeStream) -> None:
        bs = self.block_size
        buffer = bytearray()
        known: RemoteInfo | None = info

        async def sink(offset: int, chunk: bytes, remote: RemoteInfo) -> None:
            nonlocal known
            if known is None:
                known = await self._learn(uri, remote)
            buffer.extend(chunk)
            complete = offset + len(chunk) == remote.size
            while len(buffer) >= bs or (complete and buffer):
                piece = bytes(buffer[:bs])
                del buffer[:bs]
                await self._pass_block(uri, identity_of(known), stream.next_block, piece)
                stream.next_block += 1

        error: BaseException | None = None
        self._counters["requests"] += 1
        self._counters["whole_streams"] += 1
        before = self._fetcher.counters["bytes"]
        try:
            await self._fetcher.get_whole(uri, sink, expected=info)
        except ContentChanged as exc:
            await self._learn(uri, exc.info)
        except FetchError as exc:
            log.debug("streaming %s failed: %s", uri, exc)
            error = exc
        finally:
            self._counters["bytes_fetched"] += self._fetcher.counters["bytes"] - before
            if self._whole.get(uri) is stream:
                del self._whole[uri]
            for (flight_uri, index), flight in list(self._flights.items()):
                if flight_uri == uri:
                    self._settle(uri, index, flight, error)
            stream.done.set()
            self._task_done()

    async def _pass_block(self, uri: str, identity: str, index: int, data: bytes) -> None:
        flight = self._flights.get((uri, index))
        if flight is not None and not flight.done:
            self._counters["misses"] += 1
            self._resolve(uri, index, flight, identity, data)
        await self._disk_write(self._disk_put_many, uri, identity, [(index, data)])

    # -- what we know about a product ---------------------------------------------------------

    async def _load_meta(self, uri: str) -> RemoteInfo | None:
        info = self._meta.get(uri)
        if info is not None or uri in self._meta_checked:
            return info
        raw = await self._disk_read(self._disk_get_meta, uri)
        self._meta_checked.add(uri)
        if raw is not None and uri not in self._meta:
            self._meta[uri] = raw
        return self._meta.get(uri)

    async def _learn(self, uri: str, remote: RemoteInfo) -> RemoteInfo:
        """Record what a response said; drop the old blocks if the contents changed."""
        old = self._meta.get(uri)
        self._validated.add(uri)
        if old is not None and old.same_content(remote):
            return old
        self._meta[uri] = remote
        self._meta_checked.add(uri)
        if old is not None:
            log.info(
                "%s changed (size %d -> %d, ETag %s -> %s): dropping its cached blocks",
                uri,
                old.size,
                remote.size,
                old.etag,
                remote.etag,
            )
            self._counters["invalidations"] += 1
            self._memory.drop(uri)
            await self._disk_write(self._disk_evict, _tag(uri, identity_of(old)))
            if self._on_change is not None:
                self._on_change(uri)
        await self._disk_write(self._disk_put_meta, uri, remote)
        return remote

    async def _validate(self, uri: str) -> None:
        if uri in self._validated:
            return
        failed_at = self._validate_failed.get(uri)
        if failed_at is not None and trio.current_time() - failed_at < REVALIDATE_RETRY:
            return
        lock = self._validate_locks.setdefault(uri, trio.Lock())
        async with lock:
            if uri in self._validated:
                return
            recorded = await self._load_meta(uri)
            if recorded is None:
                self._validated.add(uri)
                return
            self._counters["revalidations"] += 1
            self._counters["requests"] += 1
            try:
                fresh = await self._fetcher.head(uri, retry=False)
            except (NotAuthorized, NotFound):
                raise
            except FetchError as exc:
                log.info("cannot revalidate %s (%s): serving its cached blocks", uri, exc)
                self._validate_failed[uri] = trio.current_time()
                return
            await self._learn(uri, fresh)
            self._validated.add(uri)
            self._validate_locks.pop(uri, None)

    # -- readahead -----------------------------------------------------------------------------

    def _note_access(
        self, uri: str, info: RemoteInfo | None, offset: int, end: int, file_size: int
    ) -> None:
        if self._tasks is None or self._readahead_blocks == 0 or uri in self._ranges_ignored:
            return
        bs = self.block_size
        streams = self._streams.get(uri)
        if streams is None:
            if len(self._streams) >= MAX_STREAM_PRODUCTS:
                del self._streams[next(iter(self._streams))]
            streams = self._streams[uri] = []
        for stream in streams:
            # Forgiving about order: the kernel may answer a stream's requests out of order.
            if stream.next_offset - bs <= offset <= stream.next_offset + bs:
                streams.remove(stream)
                streams.insert(0, stream)
                break
        else:
            streams.insert(0, _Stream(next_offset=end))
            del streams[MAX_STREAMS:]
            return
        stream.run += end - offset
        stream.next_offset = max(stream.next_offset, end)
        if stream.run < bs // 2 or info is None:
            return
        current = (end - 1) // bs
        if current > stream.block:
            stream.window = min(self._readahead_blocks, max(1, stream.window * 2))
            stream.block = current
        # Extend the window only once half of it has been consumed (as mountpoint-s3 does), so
        # a steady stream asks for half a window at a time in `request_max` ranges instead of
        # one block per block read.
        if stream.issued - (current + 1) > stream.window // 2:
            return
        blocks = -(-file_size // bs)
        target = min(current + 1 + stream.window, blocks)
        index = max(stream.issued, current + 1)
        while index < target:
            count = min(self._request_blocks, target - index)
            nbytes = count * bs
            if self._readahead_inflight + nbytes > self._readahead_budget:
                break
            self._readahead_inflight += nbytes
            self._task_started()
            self._tasks.start_soon(
                self._prefetch, uri, info, file_size, range(index, index + count), nbytes
            )
            index += count
        stream.issued = max(stream.issued, index)

    async def _prefetch(
        self, uri: str, info: RemoteInfo, file_size: int, indices: range, nbytes: int
    ) -> None:
        try:
            # Flights are claimed at once (a reader arriving later waits for this task); the
            # network part queues on the limiter, in the order the windows were issued.
            await self._obtain(uri, info, file_size, indices, background=True)
        except _Restart:
            pass
        except Exception as exc:
            # Readahead is a guess; the foreground read will fetch (and report) for itself.
            log.debug("readahead %s blocks %d-%d failed: %s", uri, indices[0], indices[-1], exc)
        finally:
            self._readahead_inflight -= nbytes
            self._task_done()

    def _task_started(self) -> None:
        self._pending_tasks += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def _task_done(self) -> None:
        self._pending_tasks -= 1
        if self._pending_tasks == 0:
            self._idle.set()

    # -- the disk (blocking; run in worker threads) ------------------------------------------

    async def _disk_read(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Every diskcache call goes to a thread. Measured here: the hop costs ~145 us, a 1 MiB
        # block get ~100 us, a set ~2-3 ms, a metadata get ~50 us. Only the metadata get would
        # be cheaper inline, but it runs once per product and any SQLite call can wait up to
        # the 60 s connection timeout on another process's lock: that must never stall the
        # trio loop. The hot path (memory-tier hits) never comes here.
        async with self._disk_read_limiter:
            return await trio.to_thread.run_sync(fn, *args)

    async def _disk_write(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._disk_write_limiter:
            return await trio.to_thread.run_sync(fn, *args)

    def _disk_failed(self, action: str, exc: Exception) -> None:
        self._counters["disk_errors"] += 1
        if not self._disk_failed_logged:
            self._disk_failed_logged = True
            log.warning(
                "block cache %s: cannot %s (%s); serving from memory", self.directory, action, exc
            )
        else:
            log.debug("block cache: cannot %s: %s", action, exc)

    def _disk_get_many(self, keys: list[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for key in keys:
            try:
                value = self._disk.get(key, default=None, retry=True)
            except Exception as exc:
                self._disk_failed("read", exc)
                value = None
            out.append(value if isinstance(value, bytes) else None)
        return out

    def _disk_put_many(self, uri: str, identity: str, blocks: list[tuple[int, bytes]]) -> None:
        current = self._meta.get(uri)
        if current is None or identity_of(current) != identity:
            return  # the contents changed while this write waited: the blocks are stale
        tag = _tag(uri, identity)
        for index, data in blocks:
            try:
                self._disk.set(_block_key(uri, identity, index), data, tag=tag, retry=True)
            except Exception as exc:
                self._disk_failed("write", exc)
                return

    def _disk_get_meta(self, uri: str) -> RemoteInfo | None:
        try:
            raw = self._disk.get(_meta_key(uri), default=None, retry=True)
        except Exception as exc:
            self._disk_failed("read", exc)
            return None
        if not isinstance(raw, str):
            return None
        try:
            size, etag, last_modified = json.loads(raw)
            return RemoteInfo(int(size), etag, last_modified)
        except (ValueError, TypeError):
            return None

    def _disk_put_meta(self, uri: str, info: RemoteInfo) -> None:
        raw = json.dumps([info.size, info.etag, info.last_modified])
        try:
            self._disk.set(_meta_key(uri), raw, retry=True)
        except Exception as exc:
            self._disk_failed("write", exc)

    def _disk_evict(self, tag: str) -> None:
        try:
            self._disk.evict(tag, retry=True)
        except Exception as exc:
            self._disk_failed("evict", exc)
