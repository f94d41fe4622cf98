"""Run files: where the bytes of cached blocks live on disk.

diskcache stays the index (one row per block, `store.BlockIndex`); a run of consecutive blocks
(one range response) is one file, written with one `O_DIRECT` write from the page-aligned buffer
it was received into, and read back into a pooled page-aligned buffer. Blocking; runs in worker
threads.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from mastfs import buffers
from mastfs.cache.blocks import Block
from mastfs.private import DIR_MODE, confined, open_private, private_dir

# O_DIRECT wants the buffer, offset and length aligned to the device's logical block size;
# a page is a multiple of every size Linux uses.
_DIRECT_ALIGN = mmap.PAGESIZE
# Scratch buffers kept for O_DIRECT I/O: one per concurrent disk operation is enough.
MAX_SCRATCH_BUFFERS = 4
# Separates a run file's name from a block's place in it, and that from the block's checksums,
# in diskcache's `filename` column.
_AT = "@"
_SUMS = "#"


@dataclass(frozen=True, slots=True)
class Stored:
    """A block already written into a run file: the value `BlockIndex` hands to diskcache.

    `filename` is `<run file>@<offset>+<length>#<checksums>`, relative to the cache directory
    (`checksums.digest`; rows written before checksums have none).
    """

    filename: str
    size: int

    @property
    def checksums(self) -> str | None:
        _, mark, sums = self.filename.partition(_SUMS)
        return sums if mark else None

    @classmethod
    def from_filename(cls, filename: str) -> Stored:
        """The reference a row's `filename` column holds; ValueError if it is not a block of a
        run file."""
        if _AT not in filename:
            raise ValueError(f"not a block of a run file: {filename!r}")
        where = filename.partition(_SUMS)[0].rpartition(_AT)[2]
        offset, plus, length = where.partition("+")
        if not (plus and offset.isdigit() and length.isdigit()):
            raise ValueError(f"not a block of a run file: {filename!r}")
        return cls(filename, int(length))

    def with_checksums(self, sums: str) -> Stored:
        return Stored(f"{self.filename.partition(_SUMS)[0]}{_SUMS}{sums}", self.size)


class RunDisk(diskcache.Disk):
    """diskcache's value storage, changed for block runs (docs/performance.md, "Tuning notes").

    diskcache stays the index: one row per block with its tag, store time and size, so eviction,
    tag invalidation, the size bound and sharing between processes work as before. What changes
    is where a block's bytes live. The stock `Disk` writes one file per value into a fresh
    random directory, a `mkdir` and a buffered write per block, which throttled cold reads
    (docs/performance.md, "Tuning notes"). Here a run of consecutive blocks (one range
    response, up to 8 MiB) is one file, written with one `O_DIRECT` write from a reused
    page-aligned buffer, in one directory per (product, identity); each block's row points
    into it. Directories are created 0700 and files 0600 (`mastfs.private`).

    Removing any row of a run deletes the whole run file (`remove`). Its other rows then point to
    nothing: a read of one is a miss (diskcache treats a vanished file as a missing key), never
    wrong bytes, and those rows go at the next cull, being as old as the one removed. The bytes on
    disk therefore never exceed what diskcache counts. Run files have random names, so a row that
    replaces another never shares a file with it. Filesystems without `O_DIRECT` (tmpfs) get
    ordinary buffered I/O.
    """

    def __init__(self, directory: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        private_dir(Path(directory), check=False)  # BlockIndex has checked it
        self._direct = hasattr(os, "O_DIRECT")
        self._buffers: list[tuple[mmap.mmap, Any]] = []
        self._buffers_lock = threading.Lock()

    # -- diskcache's interface ----------------------------------------------------------------

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> Any:
        if isinstance(value, Stored):
            return value.size, diskcache.core.MODE_BINARY, value.filename, None
        return super().store(value, read, key=key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise UntrustedRow("refusing a pickled key")
        return super().get(key, raw)

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        # The index may have been written by anyone who could write the cache directory
        # before we checked it, or by a bug: nothing in it is unpickled, and no file name in
        # it leads out of the cache.
        if mode == diskcache.core.MODE_PICKLE:
            raise UntrustedRow("refusing a pickled value")
        if filename:
            confined(self._directory, run_name(filename))
        if mode == diskcache.core.MODE_BINARY and filename and _AT in filename:
            path, offset, length = self._locate(filename)
            if read:
                # `get(read=True)`: where the block is, so `read_many` can read a run at once.
                return Stored(filename, length)
            return self._read(path, offset, [length])[0]
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        relative = run_name(file_path)
        try:
            confined(self._directory, relative)
        except ValueError:
            return  # a row that names a file outside the cache: never delete that file
        super().remove(relative)

    # -- run files ------------------------------------------------------------------------------

    def _locate(self, filename: str) -> tuple[str, int, int]:
        path, _, where = filename.partition(_SUMS)[0].rpartition(_AT)
        offset, _, length = where.partition("+")
        return confined(self._directory, path), int(offset), int(length)

    def read_part(self, ref: Stored, lo: int, hi: int) -> Block | None:
        """Bytes [lo, hi) of the block `ref` points to, reading only the pages they lie in."""
        path, offset, _ = self._locate(ref.filename)
        start = offset + lo - (offset + lo) % _DIRECT_ALIGN
        try:
            (data,) = self._read(path, start, [offset + hi - start])
        except OSError:
            return None
        return data[offset + lo - start :]

    def read_many(self, refs: Sequence[Stored]) -> list[Block | None]:
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

    def write_run(self, tag: str, first: int, blocks: Sequence[Block]) -> list[Stored]:
        """Write consecutive blocks into a new run file; what to store for each of them."""
        digest = hashlib.sha256(tag.encode()).hexdigest()
        name = os.path.join(digest[:2], digest[2:24], f"{first}-{os.urandom(6).hex()}.val")
        path = os.path.join(self._directory, name)
        for attempt in range(10):
            # Another process may remove an emptied directory between makedirs and open.
            try:
                _make_dirs(self._directory, os.path.dirname(name))
                self._write_new(path, blocks)
                break
            except FileNotFoundError:
                if attempt == 9:
                    raise
        stored = []
        offset = 0
        for data in blocks:
            stored.append(Stored(f"{name}{_AT}{offset}+{len(data)}", len(data)))
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
                fd = open_private(path, flags | os.O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = False
        if fd < 0:
            fd = open_private(path, flags)
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
            with os.fdopen(open_private(path, os.O_RDONLY), "rb") as reader:
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
        copy out of a scratch buffer, the costliest step of a read after a remount); None
        where `O_DIRECT` does not work or the file came back short."""
        try:
            fd = open_private(path, os.O_RDONLY | os.O_DIRECT)
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


def run_name(filename: str) -> str:
    """The file a row's `filename` names: the run file of a block, or a stock-layout file."""
    return filename.partition(_SUMS)[0].rpartition(_AT)[0] if _AT in filename else filename


class UntrustedRow(ValueError):
    """A row of the index that mastfs never wrote: a pickle, or a file outside the cache."""


def _make_dirs(root: str, relative: str) -> None:
    """Create the directories of `relative` under `root`, owner-only (not `os.makedirs`,
    whose mode applies to the last component only)."""
    path = root
    for part in relative.split(os.sep):
        path = os.path.join(path, part)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass


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
