"""Page-aligned byte buffers for product bytes, reused once every view of one is released.

Range bodies are received into these (`fetch`), and run files are read into them after a
remount (`cache`). The blocks the cache keeps, hands to the kernel and writes to disk are views
of such a buffer; nothing copies them on the way.

Why not `bytearray(length)`: it writes zeros over the whole buffer before the body is written
over them, and it is not page-aligned, so every run would be copied for its `O_DIRECT` write and
every block read after a remount copied into `bytes`. Why not a fresh anonymous mapping each
time: every page of it faults in on first touch, which on this project's VMs costs more than
those copies. Figures and method: docs/performance.md, fourth round.

So mappings are kept. Each `take` wraps one in a ctypes array, which is the exporter of every
view of that buffer; when the last view is released, the array is finalized and the mapping goes
back on a free list (bounded by `keep_bytes`; one beyond the bound is unmapped with its last
reference). Mappings are never closed by hand: a view may outlive any bookkeeping here, and an
unmapped page under a view would crash the process instead of failing a read.
"""

from __future__ import annotations

import collections
import ctypes
import mmap
import threading
import weakref


class BufferPool:
    """Idle private anonymous mappings, newest last, up to `keep_bytes` of them."""

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self._idle: list[mmap.mmap] = []
        self._idle_bytes = 0
        self._lock = threading.Lock()
        # Released while the lock was held (by another thread, or by this one: a finalizer may
        # run inside `take`, where a garbage collection frees a view): filed by the next `take`.
        self._returned: collections.deque[mmap.mmap] = collections.deque()
        self.created = 0
        self.reused = 0

    def take(self, length: int) -> memoryview:
        """A writable, page-aligned buffer of `length` bytes; its contents are undefined."""
        if length <= 0:
            raise ValueError(f"buffer length {length} must be positive")
        size = -(-length // mmap.PAGESIZE) * mmap.PAGESIZE
        mapping = None
        with self._lock:
            while self._returned:
                self._file(self._returned.popleft())
            # The newest idle mapping of the same number of pages (a short list: a few runs).
            for i in range(len(self._idle) - 1, -1, -1):
                if len(self._idle[i]) == size:
                    mapping = self._idle.pop(i)
                    self._idle_bytes -= size
                    self.reused += 1
                    break
            else:
                self.created += 1
        if mapping is None:
            mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        # Typed by the mapping's size, not `length`: ctypes keeps an entry for every array type
        # it has made, and a product's last run has a length of its own.
        exporter = (ctypes.c_char * size).from_buffer(mapping)
        weakref.finalize(exporter, self._give_back, mapping)
        return memoryview(exporter).cast("B")[:length]

    def _give_back(self, mapping: mmap.mmap) -> None:
        # Runs in whichever thread released the last view, wherever it was: never waits.
        if self._lock.acquire(blocking=False):
            try:
                self._file(mapping)
            finally:
                self._lock.release()
        else:
            self._returned.append(mapping)

    def _file(self, mapping: mmap.mmap) -> None:
        # With the lock held. The oldest idle mappings make room: sizes in use now (a
        # sequential reader's runs) are the ones worth keeping.
        size = len(mapping)
        if size > self.keep_bytes:
            return
        self._idle.append(mapping)
        self._idle_bytes += size
        while self._idle_bytes > self.keep_bytes:
            self._idle_bytes -= len(self._idle.pop(0))


# One pool per process, for the network and the disk alike. What it keeps idle: enough for the
# next runs of readahead to find a buffer that the memory tier's evictions just freed.
POOL = BufferPool(keep_bytes=32 << 20)


def take(length: int) -> memoryview:
    """A buffer from the process's pool (see `BufferPool.take`)."""
    return POOL.take(length)


def is_page_aligned(view: memoryview) -> bool:
    """Whether a writable view starts on a page boundary (as `O_DIRECT` I/O needs)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % mmap.PAGESIZE == 0
