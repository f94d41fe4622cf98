"""The hand-over of readahead to the kernel's page cache (`pyfuse3.notify_store`).

Each readahead batch but its first block goes straight into the kernel's page cache from a
worker thread: a streaming reader then finds it there without a FUSE request, and comes back
only at the next batch's first block, which is how the readahead window learns it has moved on.
One FUSE request per batch of up to `request_max` instead of one per kernel readahead.

A content change marks the product's hand-overs in progress stale (they stop before their next
block) and waits until they are over (`drained`), so old bytes never land after the kernel
dropped the file's pages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from mastfs.cache.blocks import Block
from mastfs.cache.budget import MemoryBudget
from mastfs.cache.readahead import Stream
from mastfs.cache.stats import Counters
from mastfs.cache.versions import Version

log = logging.getLogger(__name__)

# Threads handing readahead to the kernel at once.
GIVERS = 2
# Gives bytes at an offset of a product to the kernel (thread-safe; called in worker threads).
Give = Callable[[str, int, Block], None]


@dataclass(eq=False)
class _Ticket:
    """One hand-over in progress; `stale` is set (from the trio thread) when its product
    changed, and read by the worker thread before each block."""

    stale: threading.Event = field(default_factory=threading.Event)


class HandOver:
    """Hands fetched readahead blocks to `give`, within the budget's `handing` account."""

    def __init__(
        self, give: Give | None, budget: MemoryBudget, counters: Counters, block_size: int
    ) -> None:
        self._give = give
        self._budget = budget
        self._counters = counters
        self._block_size = block_size
        # Own threads: `notify_store` waits for page locks the kernel holds while one of our
        # FUSE reads is pending; the default thread pool, which those reads may need (disk),
        # must never be exhausted by threads waiting on them.
        self._limiter = trio.CapacityLimiter(GIVERS)
        self._tickets: dict[str, set[_Ticket]] = {}
        self._drained = trio.lowlevel.ParkingLot()

    async def hand(
        self,
        version: Version | None,
        indices: range,
        got: dict[int, tuple[str, Block]],
        stream: Stream,
    ) -> None:
        """Give the blocks at `indices[1:]` of the current `version` (others are stale)."""
        if version is None or self._give is None or len(indices) < 2:
            return
        bs = self._block_size
        reservation = self._budget.admit_hand_over((len(indices) - 1) * bs)
        if reservation is None:
            return
        with reservation:
            blocks = [
                (index * bs, got[index][1])
                for index in indices[1:]
                if index in got and got[index][0] == version.identity
            ]
            if not blocks:
                return
            ticket = _Ticket()
            self._tickets.setdefault(version.uri, set()).add(ticket)
            try:
                handed = await trio.to_thread.run_sync(
                    self._give_blocks, version.uri, blocks, stream, ticket, limiter=self._limiter
                )
                self._counters.handed_bytes += sum(size for _, size in handed)
            finally:
                tickets = self._tickets[version.uri]
                tickets.discard(ticket)
                if not tickets:
                    del self._tickets[version.uri]
                    self._drained.unpark_all()

    def stop(self, uri: str) -> None:
        """The product changed: hand-overs in progress stop before their next block."""
        for ticket in self._tickets.get(uri, ()):
            ticket.stale.set()

    async def drained(self, uri: str) -> None:
        """Wait until no hand-over of the product is in progress."""
        while uri in self._tickets:
            await self._drained.park()

    def _give_blocks(
        self, uri: str, blocks: Sequence[tuple[int, Block]], stream: Stream, ticket: _Ticket
    ) -> list[tuple[int, int]]:
        """Hand `blocks` over (in a worker thread); the offsets and sizes handed."""
        assert self._give is not None
        handed: list[tuple[int, int]] = []
        # Farthest first: `notify_store` waits for pages the kernel has locked for a FUSE read
        # it sent, and those are the ones nearest the reader; farthest first, the blocks the
        # kernel has not reached yet land at once (docs/performance.md, note 19).
        for offset, data in reversed(blocks):
            if ticket.stale.is_set():
                break  # the contents changed meanwhile: these bytes are stale
            # A block the reader has passed went to it through FUSE reads (this hand-over was
            # late): copying it into the kernel again would only cost time. (An int read from
            # the trio thread's stream: a stale value costs one needless copy, nothing worse.)
            if offset + len(data) <= stream.next_offset:
                continue
            self._give(uri, offset, data)
            handed.append((offset, len(data)))
        return handed
