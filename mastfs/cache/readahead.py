"""The readahead policy: pure arithmetic on the offsets of a product's reads (no I/O).

As mountpoint-s3 and JuiceFS do: a read continuing one of a product's recent streams (up to
`MAX_STREAMS`, so interleaved readers keep theirs) is sequential. After half a block of
sequential reads the window starts at one block and doubles each time the reader enters a new
block, up to `readahead_max`; it is topped up once half of it has been consumed, so a steady
stream asks for half a window at a time in `request_max` ranges, aligned to `request_max` once
the window is that wide (whole runs on disk, no one-block tails). Random reads never grow a
window. Streams share the readahead budget: a stream's window is capped at its share of it.
`prefetch.Prefetcher` runs this policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Streams remembered per product: enough for a few interleaved readers of one file.
MAX_STREAMS = 4
# How many blocks behind a stream's front a read may land and still continue it: the kernel's
# readahead requests for one file can be answered out of order.
BACKWARD_SLACK = 4
# Products whose streams are remembered (the oldest product's are forgotten first).
MAX_STREAM_PRODUCTS = 1024


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


@dataclass(frozen=True)
class Policy:
    """Window sizes and request sizes, in blocks."""

    block_size: int
    readahead_blocks: int
    request_blocks: int

    @property
    def enabled(self) -> bool:
        return self.readahead_blocks > 0

    def window_cap(self, stream: Stream, streams_fetching: int, budget: int) -> int:
        """The largest window for `stream`: its share of the readahead `budget` (bytes) among
        the streams fetching, in blocks, never below one request."""
        streams = streams_fetching + (0 if stream.inflight else 1)
        share = budget // self.block_size // streams
        return min(self.readahead_blocks, max(self.request_blocks, share))

    def plan(self, stream: Stream, end: int, file_size: int, cap: int) -> Plan | None:
        """Grow the stream's window after a read ending at `end`; the runs to fetch next, or
        None while the stream has more than half a window ahead of it (or is too short)."""
        bs = self.block_size
        if stream.run < bs // 2:
            return None
        current = (end - 1) // bs
        if current > stream.block:
            stream.window = min(cap, max(1, stream.window * 2))
            stream.block = current
        if stream.issued - (current + 1) > stream.window // 2:
            return None
        blocks = -(-file_size // bs)
        whole = self.request_blocks
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

    def run_end(self, last: int, file_size: int, missing: Callable[[int], bool]) -> int:
        """Where a sequential miss at block `last` should stop fetching (exclusive): the end of
        its `request_max` run, or the first block there that is not `missing`.

        One request and one run file instead of one per block, and the reader's next reads
        find their blocks in memory.
        """
        whole = self.request_blocks
        end = min((last // whole + 1) * whole, -(-file_size // self.block_size))
        stop = last + 1
        while stop < end and missing(stop):
            stop += 1
        return stop
