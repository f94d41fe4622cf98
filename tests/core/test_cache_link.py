"""Readahead shaped by the link (issue 14, part 3): a real `BlockCache` reading from the
simulator, with and without its modelled wide-area link (`latency_ms`, `bandwidth` per
connection). Shapes come from the cache's own stats; bytes are checked against the file."""

from __future__ import annotations

from pathlib import Path

from mastfs.cache.blocks import DEFAULT_PARALLEL, DEFAULT_REQUEST_MAX
from tests.support.cache import cache_on
from tests.support.sim import MiB, Sim

KiB = 1 << 10
READ = 40 * MiB


async def read_sequentially(sim: Sim, tmp_path: Path) -> dict[str, int]:
    f = sim.pick(min_size=64 * MiB, max_size=400 * MiB)
    async with cache_on(tmp_path, sim.url) as cache:
        got = bytearray()
        for offset in range(0, READ, 128 * KiB):
            got += await cache.read(f.uri, f.size, offset, 128 * KiB)
        assert bytes(got) == sim.expected(f.uri, 0, READ)
        return cache.stats()


async def test_a_long_link_gets_more_smaller_ranges_in_flight(sim: Sim, tmp_path: Path) -> None:
    sim.faults(latency_ms=80, bandwidth=25_000_000, error_downloads_only=True)
    stats = await read_sequentially(sim, tmp_path)
    assert stats["link_rtt_us"] >= 80_000
    assert stats["readahead_parallel"] > DEFAULT_PARALLEL
    assert stats["readahead_request_bytes"] < DEFAULT_REQUEST_MAX
    # Within the readahead half of the memory budget (96 MiB by default).
    assert stats["readahead_parallel"] * stats["readahead_request_bytes"] <= 48 * MiB


async def test_loopback_keeps_the_default_shape(sim: Sim, tmp_path: Path) -> None:
    stats = await read_sequentially(sim, tmp_path)
    assert stats["link_rtt_us"] < 80_000
    assert stats["readahead_parallel"] == DEFAULT_PARALLEL
    assert stats["readahead_request_bytes"] == DEFAULT_REQUEST_MAX
