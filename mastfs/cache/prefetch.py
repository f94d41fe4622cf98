"""The prefetcher: runs the readahead policy for each read and fetches its runs in the
background, within the memory budget, handing what it fetched to the kernel.

Readahead's network requests queue on a capacity limiter (foreground reads never do; see
`blockcache.BlockCache._fetch_run`) whose size, like the requests', follows the link the
fetcher measures (`readahead.shape_for`), and its failures are logged at debug level and
never fail a read: readahead is a guess, and the foreground read fetches (and reports) for
itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from mastfs.cache.blocks import Block
from mastfs.cache.budget import MemoryBudget, Reservation
from mastfs.cache.handover import HandOver
from mastfs.cache.readahead import Policy, Shape, Stream, Streams, shape_for
from mastfs.cache.tasks import Background
from mastfs.cache.versions import Version
from mastfs.link import Link

log = logging.getLogger(__name__)

# What the cache's fetch path answers: blocks by index as (identity, bytes), or None when the
# product changed under the fetch (the reader starts over).
Obtained = dict[int, tuple[str, Block]]
Obtain = Callable[[str, Version | None, int, Sequence[int]], Awaitable[Obtained | None]]


class Prefetcher:
    """Follows each product's streams and keeps their readahead windows fetched."""

    def __init__(
        self,
        policy: Policy,
        budget: MemoryBudget,
        background: Background,
        hand_over: HandOver,
        obtain: Obtain,
        current: Callable[[str], Version | None],
        link: Callable[[], Link | None],
        parallel: int,
        parallel_max: int,
    ) -> None:
        self.policy = policy
        self.streams = Streams(policy.block_size)
        self._budget = budget
        self._background = background
        self._hand_over = hand_over
        self._obtain = obtain
        self._current = current
        # Streams with readahead in flight: they share the budget (`Policy.window_cap`).
        self._streams_fetching = 0
        self._link = link
        self._parallel = parallel
        self._parallel_max = max(parallel, parallel_max)
        self._shape = Shape(policy.request_blocks, parallel)
        self._shaped_samples = 0
        # Readahead's requests on the network at once (`shape().parallel`).
        self.network = trio.CapacityLimiter(parallel)

    def shape(self) -> Shape:
        """The current shape of readahead requests, recomputed when the link estimate moved."""
        link = self._link()
        if link is None or link.samples == self._shaped_samples:
            return self._shape
        self._shaped_samples = link.samples
        shape = shape_for(
            link,
            block_size=self.policy.block_size,
            request_blocks=self.policy.request_blocks,
            parallel=self._parallel,
            parallel_max=self._parallel_max,
            inflight_max=self._budget.readahead_share,
        )
        old = self._shape
        self._shape = shape
        if (shape.request_blocks, shape.parallel, shape.refill) != (
            old.request_blocks,
            old.parallel,
            old.refill,
        ):
            self.network.total_tokens = shape.parallel
            log.debug(
                "link rtt %.1f ms, %.1f MB/s per connection: readahead %d x %d blocks",
                link.rtt * 1e3,
                link.rate / 1e6,
                shape.parallel,
                shape.request_blocks,
            )
        return shape

    def note_read(
        self, uri: str, version: Version | None, offset: int, end: int, file_size: int, fetched: int
    ) -> Stream | None:
        """Follow a read of [offset, end) and start readahead for the stream it continues.

        `fetched`: the block index the read fetched up to; readahead starts there. Returns the
        stream the read continues.
        """
        if not self.policy.enabled:
            return None
        stream = self.streams.follow(uri, offset, end, fetched)
        if stream is None or version is None:
            return stream
        shape = self.shape()
        share = self._budget.readahead_share
        cap = self.policy.window_cap(stream, self._streams_fetching, share, shape)
        plan = self.policy.plan(stream, end, file_size, cap, shape)
        if plan is None:
            return stream
        issued = plan.start
        for run in plan.runs:
            nbytes = len(run) * self.policy.block_size
            reservation = self._budget.admit_readahead(nbytes, stream_busy=bool(stream.inflight))
            if reservation is None:
                break
            if not stream.inflight:
                self._streams_fetching += 1
            stream.inflight += nbytes
            self._background.spawn(self._prefetch, version, file_size, run, stream, reservation)
            issued = run.stop
        stream.issued = max(stream.issued, issued)
        return stream

    def hand_over_later(self, uri: str, indices: range, got: Obtained, stream: Stream) -> None:
        """Give the rest of a run a foreground read fetched to the kernel, like readahead."""
        self._background.spawn(self._hand_over_quietly, uri, indices, got, stream)

    async def _hand_over_quietly(
        self, uri: str, indices: range, got: Obtained, stream: Stream
    ) -> None:
        try:
            await self._hand_over.hand(self._current(uri), indices, got, stream)
        except Exception as exc:
            log.debug("hand-over %s blocks %d-%d failed: %s", uri, indices[0], indices[-1], exc)

    async def _prefetch(
        self,
        version: Version,
        file_size: int,
        indices: range,
        stream: Stream,
        reservation: Reservation,
    ) -> None:
        uri = version.uri
        try:
            try:
                # Flights are claimed at once (a reader arriving later waits for this task);
                # the network part queues on the limiter, in the order windows were issued.
                got = await self._obtain(uri, version, file_size, indices)
            finally:
                # Fetched blocks count against the memory tier from here on, and those waiting
                # for their hand-over in the budget's `handing` account.
                reservation.release()
                stream.inflight -= reservation.nbytes
                if not stream.inflight:
                    self._streams_fetching -= 1
            if got is not None:
                await self._hand_over.hand(self._current(uri), indices, got, stream)
        except Exception as exc:
            log.debug("readahead %s blocks %d-%d failed: %s", uri, indices[0], indices[-1], exc)
