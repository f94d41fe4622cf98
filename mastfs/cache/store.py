"""The on-disk store: a diskcache index of blocks and product records, over run files.

Every block read from disk is proven by its checksums (`checksums`) before anyone sees it; one
that fails is dropped, counted (`checksum_failures`), logged, and fetched again.

`BlockIndex` is the blocking side (SQLite and file I/O, called in worker threads with plain
values; it returns results and keeps its own lock). `DiskTier` is the trio side the cache talks
to: it queues calls on capacity limiters, counts and logs failures once, and remembers which
products cannot be on disk yet.

Rows are keyed by (dataURI, version identity, block index) and tagged by (dataURI, identity);
a product's record (its last known size, ETag, Last-Modified) is a JSON row of its own, and so
is what is derived from a version (its header text, `headers.py`): compressed, checksummed,
tagged like the version's blocks so it goes with them. Nothing here is pickled on the way in;
values are `Stored` references into run files, raw bytes (derived data, or blocks in the
stock layout of earlier versions) or JSON text. Eviction is by store time: diskcache's
"least-recently-used" turns every get into an SQLite write, and parallel readers then queued on
the write lock (15 ms per 1 MiB block instead of 0.1 ms, docs/performance.md).

A failing disk (full, read-only) is logged once and reads are served from memory.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import diskcache
import trio

from mastfs.cache import checksums
from mastfs.cache.batching import Batched
from mastfs.cache.blocks import Block
from mastfs.cache.runfiles import RunDisk, Stored, run_name
from mastfs.cache.stats import Counters
from mastfs.cache.tasks import Background
from mastfs.fetch import RemoteInfo
from mastfs.private import check_private_file, open_private, private_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

# Threads writing blocks to disk at once. A run's O_DIRECT write waits for the device, and with
# one writer cold reads spent a third of their time waiting for it (docs/performance.md).
DISK_WRITERS = 3
# Run files no row points to are removed at open once this old (seconds).
ORPHAN_AGE = 3600.0
# diskcache's database file in the cache directory.
DATABASE = diskcache.core.DBNAME
# What `get_part` answers for a block without a row.
ABSENT = object()
# Derived data is kept in its row, compressed, when it fits below diskcache's threshold for
# a file of its own (`disk_min_file_size`): never a file outside the run-file layout. Larger
# data is not kept (it is made again when wanted).
DERIVED_MAX_STORED = diskcache.DEFAULT_SETTINGS["disk_min_file_size"] - 1024
# What a derived row may expand to (a header text of 1,000 HDUs is ~2.5 MB).
DERIVED_MAX_BYTES = 16 << 20
# Derived data waiting to be written behind its maker, at most (more is dropped, not kept).
DERIVED_PENDING_MAX = 16 << 20


def block_key(uri: str, identity: str, index: int) -> str:
    return json.dumps(["b", uri, identity, index])


def meta_key(uri: str) -> str:
    return json.dumps(["m", uri])


def tag_of(uri: str, identity: str) -> str:
    return json.dumps([uri, identity])


def derived_key(uri: str, identity: str, kind: str) -> str:
    return json.dumps(["d", uri, identity, kind])


class BlockIndex:
    """diskcache over run files (blocking).

    `retire` orders row writes against eviction: a product's old version is retired (its tag
    recorded and its rows evicted) under the same lock that `put_many` holds while it commits,
    so rows of a retired version either land before the eviction, which drops them, or are
    refused. Failures are kept in `failures` for the trio side to count and log.
    """

    def __init__(self, directory: Path, size_limit: int | None) -> None:
        self.directory = private_dir(Path(directory))
        self.size_limit = size_limit
        # The database is created owner-only before SQLite opens it (its journal files take
        # the database's mode), and refused if someone else could have written it.
        database = self.directory / DATABASE
        for path in (database, *(database.with_name(DATABASE + s) for s in ("-wal", "-shm"))):
            check_private_file(path)
        os.close(open_private(database, os.O_RDWR | os.O_CREAT))
        # Without a size limit (`mastfs cache verify`), the one stored in the database holds.
        limit = {} if size_limit is None else {"size_limit": size_limit}
        self.db = diskcache.Cache(
            str(self.directory),
            **limit,
            eviction_policy="least-recently-stored",
            tag_index=True,
            disk=RunDisk,
            # Automatic culling runs three more statements in every `set`; `put_many` culls
            # once per run instead (diskcache's documented alternative).
            cull_limit=0,
        )
        self._lock = threading.Lock()
        self._retired: set[str] = set()
        self._failures: list[tuple[str, Exception]] = []
        # Blocks dropped because their checksums did not prove them: (key, why).
        self._rejected: list[tuple[str, str]] = []

    @property
    def runs(self) -> RunDisk:
        return cast(RunDisk, self.db.disk)

    def close(self) -> None:
        self.db.close()

    def take_failures(self) -> list[tuple[str, Exception]]:
        with self._lock:
            failures, self._failures = self._failures, []
        return failures

    def take_rejected(self) -> list[tuple[str, str]]:
        with self._lock:
            rejected, self._rejected = self._rejected, []
        return rejected

    def _failed(self, action: str, exc: Exception) -> None:
        with self._lock:
            self._failures.append((action, exc))

    def get_many(self, keys: Sequence[str]) -> list[Block | None]:
        """The blocks at `keys` (None where absent, unreadable or not proven by their
        checksums), one disk read per stretch of a run file."""
        found: list[Any] = []
        for key in keys:
            try:
                value = self.db.get(key, default=None, read=True, retry=True)
            except Exception as exc:
                self._failed("read", exc)
                value = None
            if value is not None and not isinstance(value, Stored):
                # A row without checksums (the stock layout of older versions): unprovable.
                if isinstance(value, io.IOBase):
                    value.close()
                self._drop(key, "has no checksum")
                value = None
            found.append(value)
        refs = [value for value in found if isinstance(value, Stored)]
        read = iter(self.runs.read_many(refs)) if refs else iter(())
        out: list[Block | None] = []
        for key, value in zip(keys, found, strict=True):
            data: Block | None = None
            if isinstance(value, Stored):
                data = next(read)
                if data is not None and not self._proven(key, value, data):
                    data = None
            out.append(data)
        return out

    def get_part(self, key: str, length: int, lo: int, hi: int) -> Block | object | None:
        """Bytes [lo, hi) of a stored block of `length` bytes, reading (and verifying) just
        the checksum chunks they lie in; `ABSENT` without a row; None when the row is there
        but its bytes could not be read or proven (the caller then tries the usual way)."""
        try:
            value = self.db.get(key, default=ABSENT, read=True, retry=True)
            if value is ABSENT:
                return ABSENT
            if isinstance(value, io.IOBase):
                value.close()
            if not isinstance(value, Stored) or value.size != length:
                return None
            first, start, end = checksums.chunk_span(lo, hi, length)
            data = self.runs.read_part(value, start, end)
            if data is None or not self._proven(key, value, data, first):
                return None
            return data[lo - start : hi - start]
        except Exception as exc:
            self._failed("read", exc)
        return None

    def _proven(self, key: str, ref: Stored, data: Block, first: int = 0) -> bool:
        """Whether `data` (from chunk `first` of the block at `key`) matches its checksums;
        a block that does not is dropped (its whole run file goes) and reported."""
        sums = ref.checksums
        if sums is not None and checksums.verify(key, ref.size, sums, data, first):
            return True
        self._drop(key, "failed its checksum" if sums is not None else "has no checksum")
        return False

    def _drop(self, key: str, why: str) -> None:
        with self._lock:
            self._rejected.append((key, why))
        try:
            self.db.delete(key, retry=True)
        except Exception as exc:
            self._failed("drop a block", exc)

    def get_derived(self, keys: Sequence[str]) -> list[bytes | None]:
        """Derived data at `keys`: None where absent, or not proven by its checksum (the row
        is then dropped and reported, as a block's)."""
        out: list[bytes | None] = []
        for key in keys:
            try:
                raw = self.db.get(key, default=None, retry=True)
            except Exception as exc:
                self._failed("read", exc)
                raw = None
            if isinstance(raw, io.IOBase):
                raw.close()  # a file: not something this process writes
                raw = b""
            out.append(None if raw is None else self._unpacked(key, raw))
        return out

    def _unpacked(self, key: str, raw: object) -> bytes | None:
        if isinstance(raw, bytes):
            sums, mark, packed = raw.partition(b"\n")
            if mark and checksums.verify(key, len(packed), sums.decode("latin-1"), packed):
                expand = zlib.decompressobj()
                try:
                    data = expand.decompress(packed, DERIVED_MAX_BYTES)
                    if expand.eof and not expand.unconsumed_tail:
                        return data
                except zlib.error:
                    pass
        self._drop(key, "failed its checksum")
        return None

    def put_derived(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        """Store derived data, (key, tag, data) each, in one transaction; data that does not
        fit a row compressed (`DERIVED_MAX_STORED`) is skipped."""
        rows = []
        for key, tag, data in items:
            packed = zlib.compress(data, 1)
            if len(packed) + 64 <= DERIVED_MAX_STORED:
                rows.append((key, tag, checksums.digest(key, packed).encode() + b"\n" + packed))
        if not rows:
            return
        try:
            with self._lock, self.db.transact(retry=True):
                for key, tag, value in rows:
                    if tag not in self._retired:
                        self.db.set(key, value, tag=tag, retry=True)
        except Exception as exc:
            self._failed("write", exc)

    def put_batch(
        self, writes: Sequence[tuple[str, str, Sequence[tuple[int, Block]]]]
    ) -> list[None]:
        """Store blocks, of one version per (uri, identity, blocks): each run of consecutive
        ones as one run file, then the rows of all of them in one transaction (a crash never
        leaves a short block behind; a failed commit stores none of them)."""
        staged: list[tuple[str, str, str, list[tuple[int, Block]], list[Stored]]] = []
        for uri, identity, blocks in writes:
            tag = tag_of(uri, identity)
            if tag in self._retired:
                continue  # the contents changed while this write waited: the blocks are stale
            for run in _runs(blocks):
                try:
                    stored = self.runs.write_run(tag, run[0][0], [data for _, data in run])
                except Exception as exc:
                    self._failed("write", exc)
                    break
                stored = [
                    ref.with_checksums(checksums.digest(block_key(uri, identity, index), data))
                    for (index, data), ref in zip(run, stored, strict=True)
                ]
                staged.append((uri, identity, tag, run, stored))
        done: list[None] = [None] * len(writes)
        if not staged:
            return done
        try:
            # The lock also queues this process's writers on a Python lock (SQLite's busy
            # handler would put the loser to sleep for milliseconds at a time).
            with self._lock:
                with self.db.transact(retry=True):
                    for uri, identity, tag, run, stored in staged:
                        if tag in self._retired:
                            self.runs.remove(stored[0].filename)
                            continue
                        for (index, _), value in zip(run, stored, strict=True):
                            self.db.set(block_key(uri, identity, index), value, tag=tag, retry=True)
                if self.size_limit is not None and self.db.volume() > self.size_limit:
                    self.db.cull(retry=True)
        except Exception as exc:
            for *_, stored in staged:
                self.runs.remove(stored[0].filename)
            self._failed("write", exc)
        return done

    def remove_orphans(self, min_age: float = ORPHAN_AGE) -> int:
        """Delete run files no row points to (left by a process killed between writing a run
        and committing its rows), once they are `min_age` seconds old: younger ones may be a
        run another process is about to commit. They are bytes the size bound does not count.
        Returns how many went."""
        try:
            referenced = {
                run_name(filename)
                for (filename,) in self.db._sql(
                    "SELECT filename FROM Cache WHERE filename IS NOT NULL"
                ).fetchall()
            }
        except Exception as exc:
            self._failed("list the cache's rows", exc)
            return 0
        now = time.time()
        removed = 0
        for path in self.directory.rglob("*.val"):
            relative = str(path.relative_to(self.directory))
            if relative in referenced:
                continue
            try:
                if now - path.lstat().st_mtime >= min_age:
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # gone meanwhile, or not ours to remove
        if removed:
            log.info("block cache %s: removed %d orphan run files", self.directory, removed)
        return removed

    def get_metas(self, uris: Sequence[str]) -> list[RemoteInfo | None]:
        return [self.get_meta(uri) for uri in uris]

    def get_meta(self, uri: str) -> RemoteInfo | None:
        try:
            raw = self.db.get(meta_key(uri), default=None, retry=True)
        except Exception as exc:
            self._failed("read", exc)
            return None
        if not isinstance(raw, str):
            return None
        try:
            size, etag, last_modified = json.loads(raw)
            return RemoteInfo(int(size), etag, last_modified)
        except (ValueError, TypeError):
            return None

    def put_metas(self, records: Sequence[tuple[str, RemoteInfo]]) -> None:
        """Record products' versions, in one transaction."""
        try:
            with self._lock, self.db.transact(retry=True):
                for uri, info in records:
                    raw = json.dumps([info.size, info.etag, info.last_modified])
                    self.db.set(meta_key(uri), raw, retry=True)
        except Exception as exc:
            self._failed("write", exc)

    def cached_indices(self, uri: str, identity: str) -> set[int]:
        """Indices of the blocks of one version that have a row (`mastfs warm`, status)."""
        try:
            rows = self.db._sql(
                "SELECT key FROM Cache WHERE tag = ?", (tag_of(uri, identity),)
            ).fetchall()
        except Exception as exc:
            self._failed("list a product's blocks", exc)
            return set()
        indices = set()
        for (key,) in rows:
            try:
                kind, _, _, index = json.loads(key)
            except (ValueError, TypeError):
                continue
            if kind == "b" and isinstance(index, int):
                indices.add(index)
        return indices

    def volume(self) -> int:
        """Bytes the cache holds on disk, as its size bound counts them."""
        try:
            return int(self.db.volume())
        except Exception as exc:
            self._failed("measure the cache", exc)
            return 0

    def retire(self, uri: str, old_identity: str, new_identity: str) -> None:
        """A product moved from one version to another: drop the old one's rows and refuse
        rows of it from now on (a product may also come back to a version it had)."""
        old = tag_of(uri, old_identity)
        try:
            with self._lock:
                self._retired.add(old)
                self._retired.discard(tag_of(uri, new_identity))
                self.db.evict(old, retry=True)
        except Exception as exc:
            self._failed("evict", exc)


def _runs(blocks: Sequence[tuple[int, Block]]) -> list[list[tuple[int, Block]]]:
    """`blocks` by index, cut into runs of consecutive indices."""
    runs: list[list[tuple[int, Block]]] = []
    for index, data in sorted(blocks, key=lambda item: item[0]):
        if runs and runs[-1][-1][0] + 1 == index:
            runs[-1].append((index, data))
        else:
            runs.append([(index, data)])
    return runs


class DiskTier:
    """The trio side of the store (see the module docstring).

    Every call goes to a worker thread: any SQLite call can wait up to the 60 s connection
    timeout on another process's lock, which must never stall the trio loop. The hot path
    (memory-tier hits) never comes here.
    """

    def __init__(
        self, index: BlockIndex, counters: Counters, readers: int, background: Background
    ) -> None:
        self.index = index
        self._background = background
        # Version records not written yet (`note_meta`), the latest per product.
        self._metas: dict[str, RemoteInfo] = {}
        # Derived data not written yet (`note_derived`): key -> (tag, data), and its bytes.
        self._derived: dict[str, tuple[str, bytes]] = {}
        self._derived_bytes = 0
        # Whether a task is writing those (`_write_pending`).
        self._writing_behind = False
        self._counters = counters
        self._read_limiter = trio.CapacityLimiter(readers)
        self._write_limiter = trio.CapacityLimiter(DISK_WRITERS)
        # Block writes and version lookups waiting for a thread go together (`batching.py`).
        self._put = Batched(self._write_limiter, self.index.put_batch)
        self._get_meta = Batched(self._read_limiter, self.index.get_metas)
        self._get_derived = Batched(self._read_limiter, self.index.get_derived)
        self._failure_logged = False
        # Products without a record on disk when this process first looked, and the blocks it
        # has stored of them since: other blocks of theirs cannot be on disk (save for another
        # process filling the same directory meanwhile, which costs a refetch, nothing worse).
        self._new_here: dict[str, set[int]] = {}

    @property
    def directory(self) -> Path:
        return self.index.directory

    # -- what may be on disk ------------------------------------------------------------------

    def mark_new(self, uri: str) -> None:
        """The product had no record on disk when this process first looked."""
        self._new_here.setdefault(uri, set())

    def note_written(self, uri: str, indices: Sequence[int]) -> None:
        written = self._new_here.get(uri)
        if written is not None:
            written.update(indices)

    def may_hold(self, uri: str, indices: Sequence[int]) -> bool:
        written = self._new_here.get(uri)
        return written is None or any(index in written for index in indices)

    # -- calls ----------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[Block | None]:
        return await self._read(self.index.get_many, list(keys))

    async def get_part(self, key: str, length: int, lo: int, hi: int) -> Block | object | None:
        return await self._read(self.index.get_part, key, length, lo, hi)

    async def get_meta(self, uri: str) -> RemoteInfo | None:
        """The product's version record; lookups waiting for a reader go together."""
        found = await self._get_meta(uri)
        self._count_failures()
        return found

    async def put_many(self, uri: str, identity: str, blocks: Sequence[tuple[int, Block]]) -> None:
        """Store blocks; returns once they are on disk (or failed, `take_failures`). Writes
        waiting for a writer go together, in one thread call and one transaction."""
        await self._put((uri, identity, list(blocks)))
        self._count_failures()

    def note_meta(self, uri: str, info: RemoteInfo) -> None:
        """Record a product's version on disk soon, behind the reader that learned it.

        The record only spares a later process one response (it binds an open to the version
        its blocks on disk are of, `Versions.load`); nobody waits for it. Records wait in
        `_metas`, the latest per product, and one task writes all that are waiting in one
        transaction: with 64 header builds learning a version a response, a record each
        written in the reader's path queued them behind the block writes (0.3 s a read,
        docs/performance.md "Headers").
        """
        self._metas[uri] = info
        self._write_behind()

    async def get_derived(self, key: str) -> bytes | None:
        """Derived data (`BlockIndex.get_derived`); lookups waiting for a reader go together."""
        found = await self._get_derived(key)
        self._count_failures()
        return found

    def note_derived(self, key: str, tag: str, data: bytes) -> None:
        """Keep derived data on disk soon, written behind its maker as version records are;
        dropped (made again when wanted) while `DERIVED_PENDING_MAX` bytes already wait."""
        if self._derived_bytes + len(data) > DERIVED_PENDING_MAX:
            return
        old = self._derived.pop(key, None)
        if old is not None:
            self._derived_bytes -= len(old[1])
        self._derived[key] = (tag, data)
        self._derived_bytes += len(data)
        self._write_behind()

    def _write_behind(self) -> None:
        if not self._writing_behind:
            self._writing_behind = True
            try:
                self._background.spawn(self._write_pending)
            except RuntimeError:  # the cache is closing: `flush_behind` writes them
                self._writing_behind = False

    @property
    def _pending(self) -> bool:
        return bool(self._metas or self._derived)

    async def _write_pending(self) -> None:
        try:
            # Shielded: what is taken from `_metas` and `_derived` is written, even by a
            # closing cache.
            with trio.CancelScope(shield=True):
                while self._pending:
                    async with self._write_limiter:
                        records, self._metas = list(self._metas.items()), {}
                        derived = [(key, *value) for key, value in self._derived.items()]
                        self._derived, self._derived_bytes = {}, 0
                        if records:
                            await trio.to_thread.run_sync(self.index.put_metas, records)
                        if derived:
                            await trio.to_thread.run_sync(self.index.put_derived, derived)
                    self._count_failures()
        finally:
            self._writing_behind = False

    async def flush_behind(self) -> None:
        """Write the records and derived data still waiting (a closing cache, after its
        background stopped)."""
        if self._pending and not self._writing_behind:
            self._writing_behind = True
            await self._write_pending()

    async def cached_indices(self, uri: str, identity: str) -> set[int]:
        return await self._read(self.index.cached_indices, uri, identity)

    async def volume(self) -> int:
        return await self._read(self.index.volume)

    async def retire(self, uri: str, old_identity: str, new_identity: str) -> None:
        await self._write(self.index.retire, uri, old_identity, new_identity)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.index.close)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._read_limiter:
            result = await trio.to_thread.run_sync(fn, *args)
        self._count_failures()
        return result

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._write_limiter:
            result = await trio.to_thread.run_sync(fn, *args)
        self._count_failures()
        return result

    def _count_failures(self) -> None:
        for key, why in self.index.take_rejected():
            self._counters.checksum_failures += 1
            log.warning("cached block %s %s: dropped, it will be fetched again", key, why)
        for action, exc in self.index.take_failures():
            self._counters.disk_errors += 1
            if not self._failure_logged:
                self._failure_logged = True
                log.warning(
                    "block cache %s: cannot %s (%s); serving from memory",
                    self.directory,
                    action,
                    exc,
                )
            else:
                log.debug("block cache: cannot %s: %s", action, exc)
