"""Whole-file streams, for servers that ignore `Range` (a 200 with the whole body).

Such a server is remembered per product; the product is then streamed once in the background,
every block delivered (to its waiting readers, the memory tier and the disk) as it passes, and
readers wait only for their own blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mastfs.cache.blocks import Block
from mastfs.cache.flights import Flight, Flights
from mastfs.cache.stats import Counters
from mastfs.cache.tasks import Background
from mastfs.cache.versions import Version, Versions
from mastfs.fetch import ContentChanged, Fetcher, FetchError, RemoteInfo

log = logging.getLogger(__name__)

BlockFlight = Flight[tuple[str, Block]]
# Hands one streamed block on: (version, block index, bytes).
Deliver = Callable[[Version, int, bytes], Awaitable[None]]


@dataclass(eq=False)
class _Stream:
    """A product being streamed whole."""

    next_block: int = 0
    done: trio.Event = field(default_factory=trio.Event)


class WholeStreams:
    """The products whose server ignores `Range`, and their streams in progress."""

    def __init__(
        self,
        fetcher: Fetcher,
        flights: Flights[tuple[str, int], tuple[str, Block]],
        versions: Versions,
        counters: Counters,
        background: Background,
        block_size: int,
        deliver: Deliver,
    ) -> None:
        self._fetcher = fetcher
        self._flights = flights
        self._versions = versions
        self._counters = counters
        self._background = background
        self._block_size = block_size
        self._deliver = deliver
        self._ignored: set[str] = set()
        self._streams: dict[str, _Stream] = {}

    def ignores_ranges(self, uri: str) -> bool:
        return uri in self._ignored

    def note_ignored(self, uri: str) -> None:
        if not self._ignored:
            log.warning("%s ignores Range requests: products will be streamed whole", uri)
        self._ignored.add(uri)

    async def fill(
        self,
        uri: str,
        version: Version | None,
        file_size: int,
        owned: list[tuple[int, BlockFlight]],
    ) -> None:
        """Wait for the flights `owned` to be resolved by the product's stream (started if
        none runs); the caller starts over if they are not. `file_size`: the size the stream
        must bring when its answer does not say (a generated file)."""
        stream = self._streams.get(uri)
        if stream is not None and min(index for index, _ in owned) < stream.next_block:
            # That stream has passed our blocks (and failed to store them): wait it out,
            # then the read starts over and looks at the disk again.
            await stream.done.wait()
            return
        if stream is None:
            stream = self._streams[uri] = _Stream()
            self._background.spawn(self._run, uri, version, file_size, stream)
        for _, flight in owned:
            await flight.event.wait()

    async def _run(
        self, uri: str, version: Version | None, file_size: int, stream: _Stream
    ) -> None:
        bs = self._block_size
        buffer = bytearray()
        known = version

        async def sink(offset: int, chunk: bytes, remote: RemoteInfo) -> None:
            nonlocal known
            if known is None:
                known = await self._versions.learn(uri, remote)
            buffer.extend(chunk)
            complete = offset + len(chunk) == remote.size
            while len(buffer) >= bs or (complete and buffer):
                piece = bytes(buffer[:bs])
                del buffer[:bs]
                await self._deliver(known, stream.next_block, piece)
                stream.next_block += 1

        error: BaseException | None = None
        self._counters.requests += 1
        self._counters.whole_streams += 1
        before = self._fetcher.counters["bytes"]
        try:
            expected = version.info if version else None
            await self._fetcher.get_whole(uri, sink, expected=expected, size=file_size)
        except ContentChanged as exc:
            await self._versions.learn(uri, exc.info)
        except FetchError as exc:
            log.debug("streaming %s failed: %s", uri, exc)
            error = exc
        finally:
            self._counters.bytes_fetched += self._fetcher.counters["bytes"] - before
            if self._streams.get(uri) is stream:
                del self._streams[uri]
            for key, flight in self._flights.matching(lambda key: key[0] == uri):
                if error is None:
                    self._flights.abandon(key, flight)
                else:
                    self._flights.fail(key, flight, error)
            stream.done.set()
