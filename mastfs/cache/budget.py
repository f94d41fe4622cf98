"""The one owner of the cache's memory budget.

One `memory_limit` bounds everything the cache holds in memory, in three accounts:

* the memory tier (`MemoryTier`), the whole limit: blocks readers are using, and readahead until
  the reader or the kernel has it;
* readahead: bytes requested and not yet received (`fetching`) plus blocks waiting for their
  hand-over to the kernel (`handing`), half the limit. A stream with nothing in flight may go
  past that, up to the whole limit: with eight parallel readers sharing one half, most streams
  got no readahead at all and each kernel read became a request of its own;
* disk writes: blocks received and not yet written, half the limit; past it the reader that
  fetched a block writes it itself, which is the backpressure that keeps unwritten blocks from
  piling up.

A `Reservation` is released exactly once, however the work that holds it ends.
"""

from __future__ import annotations

from types import TracebackType

import trio


class Reservation:
    """Bytes held in a `Pool` until `release` (idempotent; also a context manager)."""

    def __init__(self, pool: Pool, nbytes: int) -> None:
        self.pool = pool
        self.nbytes = nbytes
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self.pool._give_back(self.nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Pool:
    """Bytes one kind of work holds, under `limit` (a reservation is refused past it)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.used = 0
        self._emptied = trio.lowlevel.ParkingLot()

    def try_reserve(self, nbytes: int, *, limit: int | None = None) -> Reservation | None:
        """A reservation if `nbytes` more stay within `limit` (default: the pool's)."""
        if self.used + nbytes > (self.limit if limit is None else limit):
            return None
        return self.reserve_now(nbytes)

    def reserve_now(self, nbytes: int) -> Reservation:
        """A reservation whatever the limit (for bytes that are already in memory)."""
        self.used += nbytes
        return Reservation(self, nbytes)

    async def wait_empty(self) -> None:
        while self.used:
            await self._emptied.park()

    def _give_back(self, nbytes: int) -> None:
        self.used -= nbytes
        if not self.used:
            self._emptied.unpark_all()


class MemoryBudget:
    """The accounts of one `memory_limit` (see the module docstring)."""

    def __init__(self, memory_limit: int) -> None:
        self.limit = memory_limit
        self.tier = memory_limit
        self.fetching = Pool("readahead in flight", memory_limit // 2)
        self.handing = Pool("readahead awaiting hand-over", memory_limit // 2)
        self.writes = Pool("blocks awaiting the disk", memory_limit // 2)

    @property
    def readahead_share(self) -> int:
        """What readahead may hold when streams compete (half the limit)."""
        return self.fetching.limit

    def admit_readahead(self, nbytes: int, stream_busy: bool) -> Reservation | None:
        """Room for `nbytes` more readahead of a stream (`stream_busy`: it has some in flight).

        Blocks waiting for their hand-over count as readahead too.
        """
        total = self.fetching.used + self.handing.used + nbytes
        if total > self.readahead_share and (stream_busy or total > self.limit):
            return None
        return self.fetching.reserve_now(nbytes)

    def admit_hand_over(self, nbytes: int) -> Reservation | None:
        """Room for `nbytes` waiting for a hand-over thread; past it the reader takes them from
        the memory tier through FUSE reads instead."""
        return self.handing.try_reserve(nbytes)

    def admit_background_write(self, nbytes: int) -> Reservation | None:
        """Room to write `nbytes` in the background; None: the caller writes them itself."""
        return self.writes.try_reserve(nbytes)
