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
  cost is a diskcache row per MiB; the bytes of one range response go to disk as one run file
  (`_BlockDisk`), so files and disk requests are per run, not per block.

Readahead follows mountpoint-s3 and JuiceFS: a read continuing one of a product's recent streams
(up to four, so interleaved readers keep theirs) is sequential. After half a block of sequential
reads the window starts at one block and doubles each time the reader enters a new block, up to
`readahead_max` (64 MiB); it is topped up once half of it has been consumed, so a steady stream
asks for 32 MiB at a time in 8 MiB ranges, aligned to 8 MiB once the window is that wide (whole
runs on disk, no one-block tails). Random reads never grow a window: a cold 64 KiB read
fetches one block, and a small read of a block on disk (not continuing a stream) reads just its
own pages of it. Readahead runs in the cache's task group; its network requests queue on a
`CapacityLimiter` (foreground reads never do), the bytes it has in flight are capped at half the
memory budget, and its failures are logged at debug level and never fail a read.

Blocks are keyed by (dataURI, content identity, block index): the identity is the ETag (or the
size and Last-Modified when the server sends no ETag), recorded per product in the same
diskcache. Any response describing other contents replaces the record and drops the old blocks;
`open()` re-checks a product with cached blocks once per process with one HEAD, and serves from
the cache when the server cannot be reached. Every block but a product's last is exactly
`block_size` bytes; lengths are checked on the way in and out, and a run file is written whole
before its rows are committed (in one transaction), so a crash never leaves a short block
behind. Blocks are written in the background by `DISK_WRITERS` threads with `O_DIRECT`, within
a byte budget past which readahead waits (disk writes are the slowest stage of a cold read on
this project's machines; "Tuning notes" in docs/performance.md has the measurements). The disk
cache evicts by store time (see `__init__`). A failing disk (full, read-only) is logged once and
reads are served from memory.

With `on_prefetched` (the mount passes `pyfuse3.notify_store`), each readahead batch but its
first block goes straight into the kernel's page cache from a worker thread: a streaming reader
then finds it there without a FUSE request, and returns only at the next batch's first block,
which is how the window learns it has moved on (`_hand_over`). A content change waits for
hand-overs in progress before it is reported, so old bytes never land after the kernel dropped
the file's pages.

A server that ignores `Range` (200 with the whole body) is remembered per product; the product is
then streamed once in the background, every block stored as it passes, and readers wait only for
their own blocks.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import io
import json
import logging
import mmap
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import diskcache
import trio

from mastfs import buffers
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
# A block's bytes: `bytes` from disk, or a view of the buffer a range response was received into.
Block = bytes | memoryview
DEFAULT_BLOCK_SIZE = 1 * MiB
# The memory tier mostly holds readahead until the kernel has read it (it keeps its own copy in
# the page cache); half of it may be in flight, half of it waiting for the disk. 96 MiB keeps the
# daemon under 300 MB while streaming (256 MiB peaked at 440-710 MB) at the same throughput.
DEFAULT_MEMORY_LIMIT = 96 * MiB
DEFAULT_READAHEAD_MAX = 64 * MiB
DEFAULT_REQUEST_MAX = 8 * MiB
DEFAULT_PARALLEL = 4
# Python hands the GIL to a waiting thread only after its holder has run this long (the default
# is 5 ms). The disk threads take and drop the GIL dozens of times per run (every syscall and
# SQLite statement), and with the trio thread busy each of those waited up to the full interval.
GIL_SWITCH_INTERVAL = 0.0005
# glibc malloc arenas (see `_limit_malloc_arenas`); `_M_ARENA_MAX` is mallopt's parameter.
MALLOC_ARENAS = 1
_M_ARENA_MAX = -8
# Threads handing readahead to `on_prefetched` (the kernel) at once.
GIVERS = 2
# Threads writing blocks to disk at once.
DISK_WRITERS = 3
# Streams remembered per product: enough for a few interleaved readers of one file.
MAX_STREAMS = 4
# How many blocks behind a stream's front a read may land and still continue it: the kernel's
# readahead requests for one file can be answered out of order.
BACKWARD_SLACK = 4
# Products whose streams are remembered (the oldest product's are forgotten first).
MAX_STREAM_PRODUCTS = 1024
# How long an unreachable server is left alone before `open()` tries to revalidate again.
REVALIDATE_RETRY = 30.0
# Rounds of a read before giving up on contents that change under it.
MAX_ROUNDS = 8
# Seconds `aclose` waits for fetched blocks to reach the disk.
CLOSE_WRITE_GRACE = 10.0


def tune_process() -> None:
    """Lower the GIL switch interval to `GIL_SWITCH_INTERVAL` (process-wide; "Tuning notes")."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def _limit_malloc_arenas() -> None:
    """Let glibc create at most `MALLOC_ARENAS` malloc arenas in this process.

    Blocks read from disk are allocated in the reading thread's arena, and glibc keeps what is
    freed there for that arena: a cold read of the 4 GiB product after a remount read of 1 GiB
    peaked at 382 MB with the default (eight arenas per core: the disk threads' arenas kept
    63 MiB the network path could not reuse), 288 MB with one. Done at import, before the mount
    starts worker threads (the archive queries already use some): the limit only applies to
    arenas created later. The few large allocations per MiB make contention on one arena moot.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_ARENA_MAX, MALLOC_ARENAS):
        log.debug("mallopt(M_ARENA_MAX, %d) failed", MALLOC_ARENAS)


_limit_malloc_arenas()


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
# Scratch buffers kept for O_DIRECT I/O: one per concurrent disk operation is enough.
MAX_SCRATCH_BUFFERS = 4
# What `_disk_get_part` answers for a block without a row.
_ABSENT = object()
# Separates a run file's name from a block's place in it, in diskcache's `filename` column.
_AT = "@"


@dataclass(frozen=True, slots=True)
class _Stored:
    """A block already written into a run file: the value `BlockCache` hands to diskcache.

    `filename` is `<run file>@<offset>+<length>`, relative to the cache directory.
    """

    filename: str
    size: int


class _BlockDisk(diskcache.Disk):
    """diskcache's value storage, changed for block runs (see "Tuning notes" in performance.md).

    diskcache stays the index: one row per block with its tag, store time and size, so eviction,
    tag invalidation, the size bound and sharing between processes work as before. What changes
    is where a block's bytes live. The stock `Disk` writes one file per value into a fresh
    random directory; measured per GiB here that was 2.5-4 s of CPU (1,276 `mkdir` for 1,024
    blocks, and buffered writes into page-cache pages the VM first has to fault in), and it
    throttled cold reads. Here a run of consecutive blocks (one range response, up to 8 MiB) is
    one file, written with one `O_DIRECT` write from a reused page-aligned buffer, in one
    directory per (product, identity); each block's row points into it.

    Removing any row of a run deletes the whole run file (`remove`). Its other rows then point to
    nothing: a read of one is a miss (diskcache treats a vanished file as a missing key), never
    wrong bytes, and those rows go at the next cull, being as old as the one removed. The bytes on
    disk therefore never exceed what diskcache counts. Run files have random names, so a row that
    replaces another never shares a file with it. Filesystems without `O_DIRECT` (tmpfs) get
    ordinary buffered I/O.
    """

    def __init__(self, directory: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self._direct = hasattr(os, "O_DIRECT")
        self._buffers: list[tuple[mmap.mmap, Any]] = []
        self._buffers_lock = threading.Lock()

    # -- diskcache's interface ----------------------------------------------------------------

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> Any:
        if isinstance(value, _Stored):
            return value.size, diskcache.core.MODE_BINARY, value.filename, None
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_BINARY and filename and _AT in filename:
            path, offset, length = self._locate(filename)
            if read:
                # `get(read=True)`: where the block is, so `read_many` can read a run at once.
                return _Stored(filename, length)
            return self._read(path, offset, [length])[0]
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        super().remove(file_path.rpartition(_AT)[0] if _AT in file_path else file_path)

    # -- run files ------------------------------------------------------------------------------

    def _locate(self, filename: str) -> tuple[str, int, int]:
        path, _, where = filename.rpartition(_AT)
        offset, _, length = where.partition("+")
        return os.path.join(self._directory, path), int(offset), int(length)

    def read_part(self, ref: _Stored, lo: int, hi: int) -> Block | None:
        """Bytes [lo, hi) of the block `ref` points to, reading only the pages they lie in."""
        path, offset, _ = self._locate(ref.filename)
        start = offset + lo - (offset + lo) % _DIRECT_ALIGN
        try:
            (data,) = self._read(path, start, [offset + hi - start])
        except OSError:
            return None
        return data[offset + lo - start :]

    def read_many(self, refs: Sequence[_Stored]) -> list[Block | None]:
        """The blocks `refs` point to, reading each stretch of one run file in one go.

        A block whose file vanished (its run was evicted) or came back short is None: a miss.
        """
        out: list[Block | None] = []
        group: list[tuple[str, int, int]] = []

        def flush() -> None:
            if not group:
                return
            path, start, _ = group[0]
            try:
                out.extend(self._read(path, start, [length for _, _, length in group]))
            except OSError:
                out.extend([None] * len(group))
            group.clear()

        for ref in refs:
            path, offset, length = self._locate(ref.filename)
            if group and not (group[-1][0] == path and group[-1][1] + group[-1][2] == offset):
                flush()
            group.append((path, offset, length))
        flush()
        return out

    def write_run(self, tag: str, first: int, blocks: Sequence[Block]) -> list[_Stored]:
        """Write consecutive blocks into a new run file; what to store for each of them."""
        digest = hashlib.sha256(tag.encode()).hexdigest()
        name = os.path.join(digest[:2], digest[2:24], f"{first}-{os.urandom(6).hex()}.val")
        path = os.path.join(self._directory, name)
        for attempt in range(10):
            # Another process may remove an emptied directory between makedirs and open.
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self._write_new(path, blocks)
                break
            except FileNotFoundError:
                if attempt == 9:
                    raise
        stored = []
        offset = 0
        for data in blocks:
            stored.append(_Stored(f"{name}{_AT}{offset}+{len(data)}", len(data)))
            offset += len(data)
        return stored

    @contextmanager
    def _buffer(self, size: int) -> Iterator[tuple[mmap.mmap, int]]:
        """A page-aligned scratch buffer of at least `size` bytes, and its address.

        Buffers are reused (a fresh mapping costs a page fault per page, dearer than the copy on
        this project's VMs) and shared by the worker threads: at most one per concurrent disk
        operation, not one per thread the thread cache ever started.
        """
        with self._buffers_lock:
            fitting = [held for held in self._buffers if len(held[0]) >= size]
            held = min(fitting, key=lambda h: len(h[0])) if fitting else None
            if held is not None:
                self._buffers.remove(held)
        if held is None:
            buffer = mmap.mmap(-1, max(size, 1 << 20))
            held = (buffer, ctypes.c_char.from_buffer(buffer))
        try:
            yield held[0], ctypes.addressof(held[1])
        finally:
            with self._buffers_lock:
                self._buffers.append(held)
                if len(self._buffers) > MAX_SCRATCH_BUFFERS:
                    self._buffers.remove(min(self._buffers, key=lambda h: len(h[0])))

    def _write_new(self, path: str, blocks: Sequence[Block]) -> None:
        total = sum(len(data) for data in blocks)
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
            views = _direct_views(blocks) if self._direct else None
            if views is not None:
                # The blocks are page-aligned views of the range response (fetch receives into
                # a `buffers` pool buffer): written as they are, no copy into a scratch buffer.
                _write_direct(fd, views)
            elif self._direct:
                with self._buffer(total) as (buffer, address):
                    offset = 0
                    for data in blocks:
                        _copy_to(address + offset, data)
                        offset += len(data)
                    with memoryview(buffer) as view:
                        _write_direct(fd, [view[:total]])
            else:
                offset = 0
                for data in blocks:
                    _write_all(fd, memoryview(data), offset)
                    offset += len(data)
        except BaseException:
            os.close(fd)
            fd = -1
            with suppress(OSError):
                os.unlink(path)
            raise
        finally:
            if fd >= 0:
                os.close(fd)

    def _read(self, path: str, offset: int, lengths: Sequence[int]) -> list[Block]:
        """Consecutive pieces of a run file from `offset`; OSError (a miss) if any is missing."""
        total = sum(lengths)
        data: Block | None = None
        if self._direct and offset % _DIRECT_ALIGN == 0:
            data = self._read_direct(path, offset, total)
        if data is None:
            with open(path, "rb") as reader:
                data = os.pread(reader.fileno(), total, offset)
            if len(data) != total:
                raise OSError(errno.EIO, f"{path}: {len(data)} of {total} bytes at {offset}")
        pieces = []
        start = 0
        for length in lengths:
            pieces.append(data[start : start + length])
            start += length
        return pieces

    def _read_direct(self, path: str, offset: int, total: int) -> memoryview | None:
        """`total` bytes at `offset` with `O_DIRECT`, as a read-only view of a pooled buffer (no
        copy out of a scratch buffer: 9.5 % of a read's CPU samples after a remount); None
        where `O_DIRECT` does not work or the file came back short."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False
            return None
        try:
            rounded = -(-total // _DIRECT_ALIGN) * _DIRECT_ALIGN
            view = buffers.take(rounded)
            got = 0
            while got < total:
                n = os.preadv(fd, [view[got:rounded]], offset + got)
                if n <= 0 or (got + n < total and n % _DIRECT_ALIGN):
                    return None
                got += n
            return view[:total].toreadonly()
        finally:
            os.close(fd)


def _copy_to(address: int, data: Block) -> None:
    """Copy a block to `address` with the GIL released (ctypes calls run without it), so the trio
    thread keeps serving while a disk thread copies."""
    if isinstance(data, memoryview):
        if data.readonly:
            data = data.tobytes()
        else:
            source = (ctypes.c_char * len(data)).from_buffer(data)
            ctypes.memmove(address, source, len(data))
            return
    ctypes.memmove(address, data, len(data))


def _direct_views(blocks: Sequence[Block]) -> list[memoryview] | None:
    """The blocks as views an `O_DIRECT` write can take as they are, or None.

    Each must start on a page boundary and, all but the last, be a whole number of pages long
    (the last one's unaligned tail is written separately). Blocks of one range response are
    views of one page-aligned buffer (`buffers.take`); anything else (bytes, a buffer `malloc`
    placed) goes through the scratch buffer.
    """
    views = []
    for i, data in enumerate(blocks):
        if not isinstance(data, memoryview) or data.readonly or not data.c_contiguous:
            return None
        if not len(data) or (i < len(blocks) - 1 and len(data) % _DIRECT_ALIGN):
            return None
        if not buffers.is_page_aligned(data):
            return None
        views.append(data.cast("B"))
    return views or None


def _write_direct(fd: int, views: list[memoryview]) -> None:
    """Write page-aligned views from offset 0 to an `O_DIRECT` file: all but the last are whole
    pages; the last one's unaligned tail (a product's last block) goes through the page cache."""
    last = views[-1]
    cut = len(last) - len(last) % _DIRECT_ALIGN
    head = [*views[:-1], last[:cut]] if cut else views[:-1]
    _writev_all(fd, head, 0)
    if cut < len(last):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        _write_all(fd, last[cut:], sum(len(view) for view in head))


def _writev_all(fd: int, views: list[memoryview], offset: int) -> None:
    """`pwritev` of all of `views` at `offset`, finishing a short write piece by piece."""
    written = os.pwritev(fd, views, offset) if views else 0
    for view in views:
        if written >= len(view):
            written -= len(view)
        else:
            _write_all(fd, view[written:], offset + written)
            written = 0
        offset += len(view)


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


class _Restart(Exception):
    """Internal: what we knew about the product changed; the read starts over."""


@dataclass(eq=False)
class _Flight:
    """One block being obtained; waiters share its outcome."""

    background: bool
    event: trio.Event = field(default_factory=trio.Event)
    data: Block | None = None
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
    # Readahead bytes requested for this stream and not yet obtained.
    inflight: int = 0


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
        self._blocks: OrderedDict[tuple[str, str, int], Block] = OrderedDict()

    def get(self, key: tuple[str, str, int]) -> Block | None:
        data = self._blocks.get(key)
        if data is not None:
            self._blocks.move_to_end(key)
        return data

    def __contains__(self, key: tuple[str, str, int]) -> bool:
        return key in self._blocks


    def put(self, key: tuple[str, str, int], data: Block) -> None:
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
        on_prefetched: Callable[[str, int, Block], None] | None = None,
    ) -> None:
        if block_size < 4 * KiB:
            raise ValueError(f"block_size {block_size} is below 4 KiB")
        self._fetcher = fetcher
        self.directory = Path(directory)
        self.block_size = block_size
        self.size_limit = size_limit
        self._readahead_blocks = max(0, readahead_max // block_size)
        self._request_blocks = max(1, request_max // block_size)
        # Readahead may hold half the memory budget in flight; the rest stays for blocks
        # readers are using. A stream with nothing in flight may go past that, up to the whole
        # budget: with one shared budget, eight parallel readers left most streams without
        # readahead, each kernel read became its own 1 MiB request (1,236 of 1,803) and the
        # aggregate fell to 0.07x eight curls (docs/performance.md).
        self._readahead_budget = memory_limit // 2
        self._readahead_ceiling = memory_limit
        self._on_change = on_change
        self._on_prefetched = on_prefetched
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
            # diskcache's automatic culling runs three more statements in every `set`; each
            # costs the disk thread a trip through the GIL. `_disk_put_many` culls once per run
            # instead (diskcache's documented alternative).
            cull_limit=0,
        )
        self._memory = _MemoryTier(memory_limit)
        self._flights: dict[tuple[str, int], _Flight] = {}
        self._meta: dict[str, RemoteInfo] = {}
        self._meta_checked: set[str] = set()
        # Products without a record on disk when this process first looked, and the blocks it
        # has stored of them since: other blocks of theirs cannot be on disk (save for another
        # process filling the same directory meanwhile, which costs a refetch, nothing worse),
        # so readahead does not ask the disk for them.
        self._new_here: dict[str, set[int]] = {}
        self._validated: set[str] = set()
        self._validate_failed: dict[str, float] = {}
        self._validate_locks: dict[str, trio.Lock] = {}
        self._streams: dict[str, list[_Stream]] = {}
        self._ranges_ignored: set[str] = set()
        self._whole: dict[str, _WholeStream] = {}
        self._limiter = trio.CapacityLimiter(parallel)
        # Reads run in parallel (WAL readers take no lock). Writes run in `DISK_WRITERS`
        # threads: a run's O_DIRECT write waits for the device, and with one writer cold reads
        # spent a third of their time waiting for it (iowait; docs/performance.md). A block write
        # that lands after its product's eviction is harmless: its rows carry the old identity,
        # which no read asks for (or, should the server go back to that ETag, the right bytes),
        # and they age out like any other.
        self._disk_read_limiter = trio.CapacityLimiter(max(2, parallel))
        self._disk_write_limiter = trio.CapacityLimiter(DISK_WRITERS)
        self._give_limiter = trio.CapacityLimiter(GIVERS)
        self._giving: dict[str, int] = {}
        self._rows_lock = threading.Lock()
        self._tasks: trio.Nursery | None = None
        self._served = trio.Event()
        self._readahead_inflight = 0
        self._streams_fetching = 0
        self._handing = 0
        self._writes_pending = 0
        self._writes_done = trio.Event()
        self._write_budget = memory_limit // 2
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
                "stalls",
                "stall_us",
                "disk_partial_reads",
                "handed_bytes",
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
        """A cache whose background tasks live in `nursery` (or in one of its own).

        Also tunes the process for the cache's threads (`tune_process`).
        """
        tune_process()
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
        log.debug("block cache %s: %s", self.directory, self.stats())
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
        counting retries (`http_retries`); `bytes_fetched`: body bytes received; `stalls`:
        reads not served from the memory tier alone, which waited `stall_us` microseconds in all
        (readahead that keeps up leaves few); `handed_bytes`: readahead given to `on_prefetched`.
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

    async def read(self, dataURI: str, size: int, offset: int, length: int) -> Block:
        """`length` bytes at `offset` (fewer at end of file); `size` is the catalogue size.

        A read within one block may be a read-only view of it rather than a copy: pyfuse3 copies
        whatever buffer it is given into the kernel, and the trio thread that would make the
        copy is the one every FUSE request waits for.
        """
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length: {offset}, {length}")
        self._counters["reads"] += 1
        if length == 0:
            return b""
        await self._validate(dataURI)
        bs = self.block_size
        started = trio.current_time()
        memory_hits = self._counters["memory_hits"]
        for _ in range(MAX_ROUNDS):
            info = await self._load_meta(dataURI)
            file_size = info.size if info is not None else size
            end = min(offset + length, file_size)
            if offset >= end:
                return b""
            first, last = offset // bs, (end - 1) // bs
            disk = True
            if self._small_random_read(dataURI, info, first, last, offset, end):
                assert info is not None
                part = await self._disk_read(
                    self._disk_get_part,
                    _block_key(dataURI, identity_of(info), first),
                    self._block_len(first, info.size),
                    offset - first * bs,
                    end - first * bs,
                )
                if isinstance(part, bytes | memoryview):
                    self._counters["hits"] += 1
                    self._counters["disk_hits"] += 1
                    self._counters["disk_partial_reads"] += 1
                    self._counters["bytes_served"] += len(part)
                    self._note_access(dataURI, info, offset, end, file_size)
                    return part
                # No row: the network it is, without asking the disk a second time.
                disk = part is not _ABSENT
            stop = self._sequential_stop(dataURI, info, file_size, first, last, offset)
            try:
                got = await self._obtain(
                    dataURI, info, file_size, range(first, stop), background=False, disk=disk
                )
            except _Restart:
                continue
            current = self._meta.get(dataURI)
            fetched = got
            if stop > last + 1:
                got = {index: got[index] for index in range(first, last + 1) if index in got}
            identities = {identity for identity, _ in got.values()}
            if len(got) != last - first + 1 or len(identities) != 1:
                continue
            if current is not None and identities != {identity_of(current)}:
                continue
            result = self._assemble(got, first, last, offset, end)
            self._counters["bytes_served"] += len(result)
            if self._counters["memory_hits"] - memory_hits < last - first + 1:
                self._counters["stalls"] += 1
                self._counters["stall_us"] += int((trio.current_time() - started) * 1e6)
            stream = self._note_access(
                dataURI, info or self._meta.get(dataURI), offset, end, file_size, fetched=stop
            )
            if stop > last + 1 and stream is not None and self._tasks is not None:
                # The rest of the run this read fetched goes to the kernel like readahead.
                self._task_started()
                self._tasks.start_soon(
                    self._hand_over_task, dataURI, range(last, stop), fetched, stream
                )
            return result
        raise TransientError(f"{dataURI}: contents kept changing while reading {offset}+{length}")

    def _small_random_read(
        self, uri: str, info: RemoteInfo | None, first: int, last: int, offset: int, end: int
    ) -> bool:
        """Whether a read is better served by reading just its bytes from disk.

        A small read that continues none of the product's streams, of a block not in memory or
        in flight: after a remount, a random 64 KiB read then costs a 64 KiB disk read instead of
        the whole block's (p50 1.9-2.7 ms -> 0.6-0.75 ms through FUSE). Sequential readers still
        load whole blocks from their second read on, readahead included.
        """
        if info is None or first != last or end - offset > self.block_size // 2:
            return False
        if uri in self._ranges_ignored or (uri, first) in self._flights:
            return False
        if self._memory.get((uri, identity_of(info), first)) is not None:
            return False
        return not self._continues_a_stream(uri, offset)

    def _continues_a_stream(self, uri: str, offset: int, min_run: int = 0) -> bool:
        """Whether a read at `offset` lands within a block of the front of one of the product's
        streams that has read at least `min_run` bytes in a row."""
        bs = self.block_size
        return any(
            stream.run >= min_run and stream.next_offset - bs <= offset <= stream.next_offset + bs
            for stream in self._streams.get(uri, ())
        )

    def _sequential_stop(
        self, uri: str, info: RemoteInfo | None, file_size: int, first: int, last: int, offset: int
    ) -> int:
        """Where a foreground read's fetch should stop (exclusive block index).

        A read that continues a sequential stream and misses (readahead fell behind, as with
        eight parallel readers sharing the budget) fetches on to the end of its `request_max`
        run, not just its own block: one request and one run file instead of eight, and the
        reader's next reads find their blocks in memory. Measured with eight parallel readers:
        foreground 1 MiB requests were 1,073 of 1,631, each also a run file and a SQLite
        transaction (7 + 8 ms under that load) that the writers queued on.
        """
        if info is None or self._tasks is None or self._readahead_blocks == 0:
            return last + 1
        if uri in self._ranges_ignored:
            return last + 1
        identity = identity_of(info)

        def missing(index: int) -> bool:
            return (uri, index) not in self._flights and (uri, identity, index) not in self._memory

        bs = self.block_size
        if not missing(last) or not self._continues_a_stream(uri, offset, min_run=bs // 2):
            return last + 1  # not a miss (or not one we would fetch), or not sequential
        whole = self._request_blocks
        end = min((last // whole + 1) * whole, -(-file_size // bs))
        stop = last + 1
        while stop < end and missing(stop):
            stop += 1
        return stop

    def _assemble(
        self, got: dict[int, tuple[str, Block]], first: int, last: int, offset: int, end: int
    ) -> Block:
        bs = self.block_size
        if first == last:
            part = got[first][1][offset - first * bs : end - first * bs]
            return part if isinstance(part, bytes) else part.toreadonly()
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
        disk: bool = True,
    ) -> dict[int, tuple[str, Block]]:
        """The blocks at `indices` that could be had: memory, then flights, disk, network.

        A block missing from the result was abandoned by another task; the caller retries.
        Background calls do not wait for other tasks' flights. `disk=False` skips the disk
        (the caller just found the blocks absent there).
        """
        out: dict[int, tuple[str, Block]] = {}
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
                await self._fill(uri, info, file_size, owned, background, disk=disk)
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

    def _resolve(self, uri: str, index: int, flight: _Flight, identity: str, data: Block) -> None:
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
        *,
        disk: bool = True,
    ) -> None:
        """Resolve our own flights from disk (unless `disk` is False) or the network."""
        written = self._new_here.get(uri)
        if written is not None and not any(index in written for index, _ in owned):
            disk = False
        if info is not None and disk:
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
        blocks: list[tuple[int, Block]] = []
        for (index, flight), piece in zip(run, pieces, strict=True):
            self._resolve(uri, index, flight, identity, piece)
            blocks.append((index, piece))
        await self._store(uri, identity, blocks)

    async def _store(self, uri: str, identity: str, blocks: list[tuple[int, Block]]) -> None:
        """Write blocks to disk, in the background while the write budget allows.

        Disk writes here run at ~400 MB/s (2.5 ms per MiB), slower than loopback HTTP, so the
        reader that fetched a block does not wait for its write; past the budget it does, which
        is the backpressure that keeps unwritten blocks from piling up in memory.
        """
        nbytes = sum(len(data) for _, data in blocks)
        self._mark_written(uri, blocks)
        if self._tasks is None or self._writes_pending + nbytes > self._write_budget:
            await self._disk_write(self._disk_put_many, uri, identity, blocks)
            return
        self._writes_pending += nbytes
        self._task_started()
        self._tasks.start_soon(self._store_task, uri, identity, blocks, nbytes)

    def _mark_written(self, uri: str, blocks: Sequence[tuple[int, Block]]) -> None:
        """Note blocks bound for the disk: `_fill` must look there for them (`_new_here`)."""
        written = self._new_here.get(uri)
        if written is not None:
            written.update(index for index, _ in blocks)

    async def _store_task(
        self, uri: str, identity: str, blocks: list[tuple[int, Block]], nbytes: int
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
        self._mark_written(uri, [(index, data)])
        await self._disk_write(self._disk_put_many, uri, identity, [(index, data)])

    # -- what we know about a product ---------------------------------------------------------

    async def _load_meta(self, uri: str) -> RemoteInfo | None:
        info = self._meta.get(uri)
        if info is not None or uri in self._meta_checked:
            return info
        raw = await self._disk_read(self._disk_get_meta, uri)
        if uri in self._meta_checked:
            return self._meta.get(uri)  # another task looked meanwhile
        self._meta_checked.add(uri)
        if raw is None:
            self._new_here[uri] = set()
        elif uri not in self._meta:
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
            while self._giving.get(uri):
                # A hand-over that began before the change may still be pushing old bytes.
                await trio.sleep(0.001)
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
        self,
        uri: str,
        info: RemoteInfo | None,
        offset: int,
        end: int,
        file_size: int,
        *,
        fetched: int = 0,
    ) -> _Stream | None:
        """Follow the product's streams; start readahead for the one this read continues.

        `fetched`: the block index the read fetched up to (a sequential miss fetches on to the
        end of its run): readahead starts there. Returns the stream the read continues.
        """
        if self._tasks is None or self._readahead_blocks == 0 or uri in self._ranges_ignored:
            return None
        bs = self.block_size
        streams = self._streams.get(uri)
        if streams is None:
            if len(self._streams) >= MAX_STREAM_PRODUCTS:
                del self._streams[next(iter(self._streams))]
            streams = self._streams[uri] = []
        for stream in streams:
            # Forgiving about order: the kernel may answer a stream's requests out of order.
            # A reader may also skip ahead through readahead it was handed (`on_prefetched`)
            # and come back only at the next block it was not.
            reach = max(stream.next_offset, stream.issued * bs)
            if stream.next_offset - BACKWARD_SLACK * bs <= offset <= reach + bs:
                streams.remove(stream)
                streams.insert(0, stream)
                break
        else:
            streams.insert(0, _Stream(next_offset=end))
            del streams[MAX_STREAMS:]
            return None
        stream.run += end - offset
        stream.next_offset = max(stream.next_offset, end)
        stream.issued = max(stream.issued, fetched)
        if stream.run < bs // 2 or info is None:
            return stream
        current = (end - 1) // bs
        if current > stream.block:
            stream.window = min(self._window_cap(stream), max(1, stream.window * 2))
            stream.block = current
        # Extend the window only once half of it has been consumed (as mountpoint-s3 does), so
        # a steady stream asks for half a window at a time in `request_max` ranges instead of
        # one block per block read.
        if stream.issued - (current + 1) > stream.window // 2:
            return stream
        blocks = -(-file_size // bs)
        whole = self._request_blocks
        target = min(current + 1 + stream.window, blocks)
        if stream.window >= whole:
            # Whole runs on `request_max` boundaries: each response becomes one full run file
            # on disk, and no top-up ends in a one-block request.
            target = min(-(-target // whole) * whole, blocks)
        index = max(stream.issued, current + 1)
        while index < target:
            count = min(whole - index % whole, target - index)
            nbytes = count * bs
            # Blocks waiting for their hand-over are readahead memory too.
            total = self._readahead_inflight + self._handing + nbytes
            if total > self._readahead_budget and (
                stream.inflight or total > self._readahead_ceiling
            ):
                break
            self._readahead_inflight += nbytes
            if not stream.inflight:
                self._streams_fetching += 1
            stream.inflight += nbytes
            self._task_started()
            self._tasks.start_soon(
                self._prefetch, uri, info, file_size, range(index, index + count), stream
            )
            index += count
        stream.issued = max(stream.issued, index)
        return stream

    async def _hand_over_task(
        self, uri: str, indices: range, got: dict[int, tuple[str, Block]], stream: _Stream
    ) -> None:
        try:
            await self._hand_over(uri, indices, got, stream)
        except Exception as exc:
            log.debug("hand-over %s blocks %d-%d failed: %s", uri, indices[0], indices[-1], exc)
        finally:
            self._task_done()

    def _window_cap(self, stream: _Stream) -> int:
        """The largest window for `stream`: its share of the readahead budget, in blocks.

        Streams share the memory tier, where readahead the reader has not reached yet lives
        (what was not handed to the kernel): eight readers cannot each hold a 64 MiB window in
        a 96 MiB tier. A share never falls below one request.
        """
        streams = self._streams_fetching + (0 if stream.inflight else 1)
        share = self._readahead_budget // self.block_size // streams
        return min(self._readahead_blocks, max(self._request_blocks, share))

    async def _prefetch(
        self, uri: str, info: RemoteInfo, file_size: int, indices: range, stream: _Stream
    ) -> None:
        nbytes = len(indices) * self.block_size
        try:
            try:
                # Flights are claimed at once (a reader arriving later waits for this task);
                # the network part queues on the limiter, in the order the windows were issued.
                got = await self._obtain(uri, info, file_size, indices, background=True)
            finally:
                # Fetched blocks count against the memory tier from here on, and those waiting
                # for their hand-over as `_handing` (which the budget includes).
                self._readahead_inflight -= nbytes
                stream.inflight -= nbytes
                if not stream.inflight:
                    self._streams_fetching -= 1
            await self._hand_over(uri, indices, got, stream)
        except _Restart:
            pass
        except Exception as exc:
            # Readahead is a guess; the foreground read will fetch (and report) for itself.
            log.debug("readahead %s blocks %d-%d failed: %s", uri, indices[0], indices[-1], exc)
        finally:
            self._task_done()

    async def _hand_over(
        self, uri: str, indices: range, got: dict[int, tuple[str, Block]], stream: _Stream
    ) -> None:
        """Give fetched blocks to `on_prefetched` (the kernel's page cache), but the first.

        The reader then finds them without asking, and comes back only at the first block of
        each batch: that read, served from the memory tier, is what tells `_note_access` how far
        the reader has got, so the window keeps moving (a reader that never came back would get
        no more readahead). One request per batch of up to `request_max` instead of one per
        kernel readahead (1 MiB).
        """
        current = self._meta.get(uri)
        if current is None or self._on_prefetched is None or len(indices) < 2:
            return
        identity = identity_of(current)
        bs = self.block_size
        # Hand-overs waiting for a thread hold their blocks: past the budget, the reader
        # takes them from the memory tier through FUSE reads instead.
        nbytes = (len(indices) - 1) * bs
        if self._handing + nbytes > self._readahead_budget:
            return
        blocks = [
            (index * bs, got[index][1])
            for index in indices[1:]
            if index in got and got[index][0] == identity
        ]
        if not blocks:
            return
        # `_learn` waits for this count to drop to zero before it reports a content change, so
        # no old bytes reach the kernel after it has dropped the file's pages.
        self._giving[uri] = self._giving.get(uri, 0) + 1
        self._handing += nbytes
        try:
            # Own threads: `notify_store` waits for page locks the kernel holds while one of
            # our FUSE reads is pending; the default thread pool, which those reads may need
            # (disk), must never be exhausted by threads waiting on them.
            handed = await trio.to_thread.run_sync(
                self._give, uri, identity, blocks, stream, limiter=self._give_limiter
            )
            self._counters["handed_bytes"] += sum(size for _, size in handed)
        finally:
            self._handing -= nbytes
            self._giving[uri] -= 1
            if not self._giving[uri]:
                del self._giving[uri]

    def _give(
        self, uri: str, identity: str, blocks: list[tuple[int, Block]], stream: _Stream
    ) -> list[tuple[int, int]]:
        """Hand `blocks` over in a worker thread; the offsets and sizes handed."""
        assert self._on_prefetched is not None
        handed: list[tuple[int, int]] = []
        # Farthest first: `notify_store` waits for pages the kernel has locked for a FUSE read it
        # sent, and those are the ones nearest the reader. Nearest first, the whole batch waited
        # behind them for the trio thread, and with eight readers 2.5 of 4.3 GB arrived after
        # their reader had passed (read through FUSE instead); farthest first, the blocks the
        # kernel has not reached yet land at once (eight readers 0.47-0.51 -> 0.51-0.60 GB/s).
        for offset, data in reversed(blocks):
            current = self._meta.get(uri)
            if current is None or identity_of(current) != identity:
                break  # the contents changed meanwhile: these bytes are stale
            # A block the reader has passed went to it through FUSE reads (this hand-over was
            # late): copying it into the kernel again would only cost time. (An int read from
            # the trio thread's stream: a stale value costs one needless copy, nothing worse.)
            if offset + len(data) <= stream.next_offset:
                continue
            self._on_prefetched(uri, offset, data)
            handed.append((offset, len(data)))
        return handed

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

    def _disk_get_many(self, keys: list[str]) -> list[Block | None]:
        found: list[Any] = []
        for key in keys:
            try:
                value = self._disk.get(key, default=None, read=True, retry=True)
                if isinstance(value, io.IOBase):
                    # A block file of the stock layout (an older cache directory).
                    with value:
                        value = value.read()
            except Exception as exc:
                self._disk_failed("read", exc)
                value = None
            found.append(value)
        # Blocks of one run file are read together: one request to the disk per stretch.
        refs = [value for value in found if isinstance(value, _Stored)]
        read = iter(cast(_BlockDisk, self._disk.disk).read_many(refs)) if refs else iter(())
        out: list[Block | None] = []
        for value in found:
            if isinstance(value, _Stored):
                value = next(read)
            out.append(value if isinstance(value, bytes | memoryview) else None)
        return out

    def _disk_get_part(self, key: str, length: int, lo: int, hi: int) -> Block | object | None:
        """Bytes [lo, hi) of a stored block of `length` bytes; `_ABSENT` without a row; None when
        the row is there but its bytes could not be read (the caller then tries the usual way).
        """
        try:
            value = self._disk.get(key, default=_ABSENT, read=True, retry=True)
            if value is _ABSENT:
                return _ABSENT
            if isinstance(value, _Stored):
                if value.size != length:
                    return None
                return cast(_BlockDisk, self._disk.disk).read_part(value, lo, hi)
            if isinstance(value, io.IOBase):
                with value:
                    value = value.read()
            if isinstance(value, bytes) and len(value) == length:
                return value[lo:hi]
        except Exception as exc:
            self._disk_failed("read", exc)
        return None

    def _disk_put_many(self, uri: str, identity: str, blocks: list[tuple[int, Block]]) -> None:
        current = self._meta.get(uri)
        if current is None or identity_of(current) != identity:
            return  # the contents changed while this write waited: the blocks are stale
        tag = _tag(uri, identity)
        disk = cast(_BlockDisk, self._disk.disk)
        runs: list[list[tuple[int, Block]]] = []
        for index, data in sorted(blocks, key=lambda item: item[0]):
            if runs and runs[-1][-1][0] + 1 == index:
                runs[-1].append((index, data))
            else:
                runs.append([(index, data)])
        for run in runs:
            try:
                stored = disk.write_run(tag, run[0][0], [data for _, data in run])
            except Exception as exc:
                self._disk_failed("write", exc)
                return
            try:
                # The lock queues this process's writers on a Python lock (SQLite's busy
                # handler would put the loser to sleep for milliseconds at a time), and orders
                # rows against `_disk_evict`: `_learn` records new contents before it evicts the
                # old, so rows either land before the eviction, which drops them, or see the
                # change here and stay out.
                with self._rows_lock:
                    current = self._meta.get(uri)
                    if current is None or identity_of(current) != identity:
                        disk.remove(stored[0].filename)
                        return
                    # One transaction: the run's rows appear together, for one commit.
                    with self._disk.transact(retry=True):
                        for (index, _), value in zip(run, stored, strict=True):
                            key = _block_key(uri, identity, index)
                            self._disk.set(key, value, tag=tag, retry=True)
                    if self._disk.volume() > self.size_limit:
                        self._disk.cull(retry=True)
            except Exception as exc:
                disk.remove(stored[0].filename)
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
            with self._rows_lock:
                self._disk.set(_meta_key(uri), raw, retry=True)
        except Exception as exc:
            self._disk_failed("write", exc)

    def _disk_evict(self, tag: str) -> None:
        try:
            with self._rows_lock:
                self._disk.evict(tag, retry=True)
        except Exception as exc:
            self._disk_failed("evict", exc)
