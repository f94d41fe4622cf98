"""Process-wide tuning for the cache's worker threads: the GIL switch interval and glibc's
malloc arenas (measurements in docs/performance.md, "Tuning notes")."""

from __future__ import annotations

import ctypes
import logging
import sys

import trio

log = logging.getLogger(__name__)

# Python hands the GIL to a waiting thread only after its holder has run this long (the default
# is 5 ms). The disk threads take and drop the GIL dozens of times per run (every syscall and
# SQLite statement), and with the trio thread busy each of those waited up to the full interval.
GIL_SWITCH_INTERVAL = 0.0005
# glibc malloc arenas (see `_limit_malloc_arenas`); `_M_ARENA_MAX` is mallopt's parameter.
MALLOC_ARENAS = 1
_M_ARENA_MAX = -8
# Worker threads trio runs at once (its default is 40): readahead on a long link keeps up to
# `blocks.DEFAULT_PARALLEL_MAX` range requests in threads, beside the disk's and the readers'.
WORKER_THREADS = 64


def tune_process() -> None:
    """Lower the GIL switch interval to `GIL_SWITCH_INTERVAL` (process-wide; "Tuning notes")
    and let trio run `WORKER_THREADS` worker threads (this trio run's default limiter)."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    limiter = trio.to_thread.current_default_thread_limiter()
    if limiter.total_tokens < WORKER_THREADS:
        limiter.total_tokens = WORKER_THREADS


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
