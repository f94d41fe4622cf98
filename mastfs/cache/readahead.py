"""The readahead policy: pure arithmetic on the offsets of a product's reads (no I/O).

As mountpoint-s3 and JuiceFS do: a read continuing one of a product's recent streams (up to
`MAX_STREAMS`, so interleaved readers keep theirs) is sequential. After half a block of
sequential reads the window starts at one block and doubles each time the reader enters a new
block, up to `readahead_max`; it is topped up once half of it has been consumed, so a steady
stream asks for half a window at a time in `request_max` ranges, aligned to `request_max` once
the window is that wide (whole runs on disk, no one-block tails). Random reads never grow a
window. Streams share the readahead budget: a stream's window is capped at its share of it.
`prefetch.Prefetcher` runs this policy.

The request size and the number of requests in flight follow the measured link
(`shape_for`, as mountpoint-s3 sizes its parallel parts and rclone its chunk streams): where
the round trip is a small part of a request's time (loopback), `request_max` ranges, `parallel`
at a time, topped up by half a window; where it is not (a wide-area link), as many requests as
reach `TARGET_RATE` within the memory budget, each as small as that needs, topped up one
request at a time so that the link never idles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mastfs.link import Link

# Streams remembered per product: enough for a few interleaved readers of one file.
MAX_STREAMS = 4
# How many blocks behind a stream's front a read may land and still continue it: the kernel's
# readahead requests for one file can be answered out of order.
BACKWARD_SLACK = 4
# Products whose streams are remembered (the oldest product's are forgotten first).
MAX_STREAM_PRODUCTS = 1024
# The rate one reader should reach when the link allows it (bytes/s): about what one cold
# reader gets through FUSE on these machines (docs/performance.md); beyond it, more requests in
# flight only cost memory and connections.
TARGET_RATE = 1.0e9
# A smaller request must promise this much more (modelled) than a larger one to be chosen:
# requests and connections cost CPU on both sides, which the model does not see. Without a
# bandwidth cap at 80 ms, 6 x 8 MiB read 214 MB/s and 24 x 2 MiB 168 MB/s (modelled: 0.57
# and 0.62 GB/s); at 25 MB/s per connection, 24 x 2 MiB read 176 MB/s and 6 x 8 MiB 88.
SHAPE_SLACK = 1.5
# The link shapes readahead only where the round trip is at least this share of a full
# request's transfer: there, each connection idles that share of the time. Below it (a loaded
# loopback: 0.5 ms against 80 ms), a low rate per connection is the machine's (CPU, disk), and
# more connections would not raise it.
LATENCY_SHARE = 0.1


@dataclass
class Stream:
    """A sequential reader of one product, as far as the offsets of its reads tell."""

    next_offset: int
    # Bytes read in a row.
    run: int = 0
    # Readahead window, in blocks.
    window: int = 0
    # The block the window was last sized in.
    block: int = -1
    # Blocks before this index have been requested (or read).
    issued: int = 0
    # Readahead bytes requested for this stream and not yet obtained.
    inflight: int = 0


@dataclass(frozen=True)
class Plan:
    """Runs of blocks to prefetch for a stream, in order; `start` is where they begin."""

    start: int
    runs: list[range]


class Streams:
    """The recent streams of each product."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._streams: dict[str, list[Stream]] = {}

    def follow(self, uri: str, offset: int, end: int, fetched: int = 0) -> Stream | None:
        """Record a read of [offset, end); the stream it continues, or None if it starts one.

        `fetched`: the block index the read fetched up to (a sequential miss fetches on to the
        end of its run).
        """
        bs = self.block_size
        streams = self._streams.get(uri)
        if streams is None:
            if len(self._streams) >= MAX_STREAM_PRODUCTS:
                del self._streams[next(iter(self._streams))]
            streams = self._streams[uri] = []
        for stream in streams:
            # Forgiving about order: the kernel may answer a stream's requests out of order.
            # A reader may also skip ahead through readahead handed to the kernel and come back
            # only at the next block it was not given.
            reach = max(stream.next_offset, stream.issued * bs)
            if stream.next_offset - BACKWARD_SLACK * bs <= offset <= reach + bs:
                streams.remove(stream)
                streams.insert(0, stream)
                break
        else:
            streams.insert(0, Stream(next_offset=end))
            del streams[MAX_STREAMS:]
            return None
        stream.run += end - offset
        stream.next_offset = max(stream.next_offset, end)
        stream.issued = max(stream.issued, fetched)
        return stream

    def continues(self, uri: str, offset: int, min_run: int = 0) -> bool:
        """Whether a read at `offset` lands within a block of the front of one of the
        product's streams that has read at least `min_run` bytes in a row."""
        bs = self.block_size
        return any(
            stream.run >= min_run and stream.next_offset - bs <= offset <= stream.next_offset + bs
            for stream in self._streams.get(uri, ())
        )


@dataclass(frozen=True, slots=True)
class Shape:
    """How a stream's readahead goes on the network: requests of `request_blocks`, up to
    `parallel` at once; a window is topped up once `refill` of its blocks have been consumed
    (None: half the window). `rate` is the modelled rate, bytes/s (None: not modelled)."""

    request_blocks: int
    parallel: int
    refill: int | None = None
    rate: float | None = None

    @property
    def window(self) -> int | None:
        """Blocks a stream keeps requested ahead (None: the policy's `readahead_blocks`): the
        requests in flight and half as many again for blocks that arrived and wait for the
        reader (each request's first block does, until the reader's next FUSE read)."""
        if self.refill is None:
            return None
        return self.parallel * self.request_blocks * 3 // 2


def shape_for(
    link: Link | None,
    *,
    block_size: int,
    request_blocks: int,
    parallel: int,
    parallel_max: int,
    inflight_max: int,
    target: float = TARGET_RATE,
) -> Shape:
    """The shape that best reaches `target` bytes/s on `link`.

    A request of S bytes takes `link.rtt + S / link.rate`; N of them in flight bring
    N * S / (rtt + S / rate). Requests go from `request_blocks` down to one block, at least
    `parallel` and at most `parallel_max` at once, never more than `inflight_max` bytes in
    flight; going down in size, a smaller request replaces the best so far only if it promises
    `SHAPE_SLACK` times its modelled rate.
    Without an estimate, with a round trip under `LATENCY_SHARE` of a largest request's
    transfer, or when `parallel` requests of the largest size already reach the target, the
    defaults (`request_blocks`, `parallel`, half-window top-ups).
    """
    default = Shape(request_blocks, parallel)
    if link is None or link.rate <= 0:
        return default
    if link.rtt < LATENCY_SHARE * request_blocks * block_size / link.rate:
        return default
    best: Shape | None = None
    for blocks in range(request_blocks, 0, -1):
        size = blocks * block_size
        per_request = size / (link.rtt + size / link.rate)
        fits = min(parallel_max, inflight_max // size)
        if fits < 1:
            continue
        count = max(parallel, math.ceil(target / per_request))
        count = min(count, fits)
        rate = min(target, count * per_request)
        if blocks == request_blocks and count <= parallel and rate >= target:
            return Shape(request_blocks, count, None, rate)
        if best is None or rate > (best.rate or 0.0) * SHAPE_SLACK:
            best = Shape(blocks, count, blocks, rate)
    if best is None:
        return default
    if best.parallel <= parallel and best.request_blocks == request_blocks:
        return Shape(request_blocks, parallel, None, best.rate)
    return best


@dataclass(frozen=True)
class Policy:
    """Window sizes and request sizes, in blocks (`request_blocks`: the largest request)."""

    block_size: int
    readahead_blocks: int
    request_blocks: int

    @property
    def enabled(self) -> bool:
        return self.readahead_blocks > 0

    def window_cap(
        self, stream: Stream, streams_fetching: int, budget: int, shape: Shape | None = None
    ) -> int:
        """The largest window for `stream`: its share of the readahead `budget` (bytes) among
        the streams fetching, in blocks, never below one request, nor above `readahead_blocks`
        (over a long link: the `shape`'s window, and half a share more)."""
        streams = streams_fetching + (0 if stream.inflight else 1)
        share = budget // self.block_size // streams
        if shape is None or shape.window is None:
            return min(self.readahead_blocks, max(self.request_blocks, share))
        # The budget bounds the bytes in flight; the window also spans those that arrived.
        return min(shape.window, max(shape.request_blocks, share * 3 // 2))

    def plan(
        self, stream: Stream, end: int, file_size: int, cap: int, shape: Shape | None = None
    ) -> Plan | None:
        """Grow the stream's window after a read ending at `end`; the runs to fetch next, or
        None while the stream has more than half a window (or `shape.refill` blocks of it)
        ahead of it, or is too short. Runs are of `shape.request_blocks` (default: the
        policy's)."""
        bs = self.block_size
        whole = self.request_blocks if shape is None else shape.request_blocks
        if stream.run < bs // 2:
            return None
        current = (end - 1) // bs
        if current > stream.block:
            stream.window = min(cap, max(1, stream.window * 2))
            stream.block = current
        refill = None if shape is None else shape.refill
        keep = stream.window // 2 if refill is None else max(0, stream.window - refill)
        if stream.issued - (current + 1) > keep:
            return None
        blocks = -(-file_size // bs)
        target = min(current + 1 + stream.window, blocks)
        if stream.window >= whole:
            target = min(-(-target // whole) * whole, blocks)
        start = index = max(stream.issued, current + 1)
        runs = []
        while index < target:
            count = min(whole - index % whole, target - index)
            runs.append(range(index, index + count))
            index += count
        return Plan(start, runs)

    def run_end(
        self, last: int, file_size: int, missing: Callable[[int], bool], request_blocks: int = 0
    ) -> int:
        """Where a sequential miss at block `last` should stop fetching (exclusive): the end of
        its run of `request_blocks` (default: the policy's), or the first block there that is
        not `missing`.

        One request and one run file instead of one per block, and the reader's next reads
        find their blocks in memory.
        """
        whole = request_blocks or self.request_blocks
        end = min((last // whole + 1) * whole, -(-file_size // self.block_size))
        stop = last + 1
        while stop < end and missing(stop):
            stop += 1
        return stop
