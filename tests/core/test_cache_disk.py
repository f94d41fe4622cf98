"""cache.py's disk layout: run files, O_DIRECT and its fallback, eviction of a run, old layouts.

Blocks of one range response share one run file (`RunDisk`); these tests check that a run
reads back byte-exact after a remount, that losing one of its rows never serves wrong bytes,
that a filesystem without O_DIRECT works the same, and that blocks stored by the stock
diskcache layout (cache directories of earlier versions) are still served.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import diskcache
import pytest

from mastfs.buffers import BufferPool
from mastfs.cache import BlockCache, identity_of
from mastfs.cache.runfiles import RunDisk
from mastfs.cache.store import block_key, meta_key, tag_of
from mastfs.fetch import Fetcher
from tests.support.cache import cache_on
from tests.support.sim import FAST_RETRY, MiB, Sim


def run_files(directory: Path) -> list[Path]:
    return list(directory.rglob("*.val"))


async def read_range(cache: BlockCache, f: Any, start: int, end: int, step: int = MiB) -> bytes:
    parts = []
    for offset in range(start, end, step):
        parts.append(await cache.read(f.uri, f.size, offset, min(step, end - offset)))
    return b"".join(parts)


async def test_runs_share_a_file_and_read_back_exactly_after_a_remount(
    sim: Sim, tmp_path: Path
) -> None:
    f = sim.pick(min_size=20 * MiB, max_size=60 * MiB, unaligned=True)
    async with cache_on(tmp_path, sim.url) as cache:
        assert await read_range(cache, f, 0, f.size) == sim.expected(f.uri, 0, f.size)
    blocks = -(-f.size // MiB)
    files = run_files(tmp_path)
    # Readahead fetched most of the file in multi-block ranges: fewer files than blocks.
    assert 0 < len(files) < blocks
    assert sum(p.stat().st_size for p in files) == f.size
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        # Backwards, so every read is a lookup of its own; the tail block is unaligned.
        for offset in reversed(range(0, f.size, MiB)):
            assert await cache.read(f.uri, f.size, offset, MiB) == sim.expected(f.uri, offset, MiB)
        assert cache.stats()["disk_hits"] == blocks
    assert sim.gets(f.uri) == 0


async def test_a_lost_row_makes_its_run_a_miss_never_wrong_bytes(sim: Sim, tmp_path: Path) -> None:
    f = sim.pick(min_size=20 * MiB, max_size=60 * MiB)
    async with cache_on(tmp_path, sim.url) as cache:
        await read_range(cache, f, 0, 16 * MiB)
        await cache.wait_idle()
        identity = identity_of(cache.versions.current(f.uri).info)

        def run_of(index: int) -> str:
            ref = cache.disk.index.db.get(block_key(f.uri, identity, index), read=True)
            return str(ref.filename).rpartition("@")[0]

        siblings = [index for index in range(16) if run_of(index) == run_of(9)]
        assert len(siblings) > 1
        # Eviction removes rows one by one; the first removal deletes the whole run file.
        assert cache.disk.index.db.delete(block_key(f.uri, identity, 9))
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        for index in range(16):
            got = await cache.read(f.uri, f.size, index * MiB, MiB)
            assert got == sim.expected(f.uri, index * MiB, MiB)
    # Every block of that run came from the server again, and only those.
    assert sim.gets(f.uri) == len(siblings)


async def test_without_o_direct_the_cache_works_the_same(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on tmpfs, or a platform without the flag: plain buffered files.
    monkeypatch.delattr(os, "O_DIRECT")
    f = sim.pick(min_size=10 * MiB, max_size=40 * MiB, unaligned=True)
    async with cache_on(tmp_path, sim.url) as cache:
        assert await read_range(cache, f, 0, f.size) == sim.expected(f.uri, 0, f.size)
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url) as cache:
        assert await read_range(cache, f, 0, f.size) == sim.expected(f.uri, 0, f.size)
    assert sim.gets(f.uri) == 0


async def test_blocks_without_checksums_are_fetched_again_not_served(
    sim: Sim, tmp_path: Path
) -> None:
    """Blocks of the stock diskcache layout (earlier versions) carry no checksum, so nothing
    proves their bytes (issue 13): they are dropped and fetched again, once."""
    f = sim.pick(min_size=4 * MiB, max_size=40 * MiB)
    info = await Fetcher(sim.url, None, FAST_RETRY).head(f.uri)
    identity = identity_of(info)
    # What an earlier version left: one diskcache value file per block, and the product record.
    with diskcache.Cache(str(tmp_path)) as disk:
        disk.set(meta_key(f.uri), json.dumps([info.size, info.etag, info.last_modified]))
        for index in (0, 1):
            data = sim.expected(f.uri, index * MiB, MiB)
            disk.set(
                block_key(f.uri, identity, index),
                io.BytesIO(data),
                read=True,
                tag=tag_of(f.uri, identity),
            )
    os.chmod(tmp_path, 0o700)
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        assert await cache.read(f.uri, f.size, MiB - 100, 200) == sim.expected(
            f.uri, MiB - 100, 200
        )
        assert cache.stats()["checksum_failures"] == 2
    assert sim.gets(f.uri) == 1
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        assert await cache.read(f.uri, f.size, MiB - 100, 200) == sim.expected(
            f.uri, MiB - 100, 200
        )
        assert cache.stats()["checksum_failures"] == 0
    assert sim.gets(f.uri) == 0


async def test_small_random_reads_after_a_remount_read_only_their_bytes(
    sim: Sim, tmp_path: Path
) -> None:
    f = sim.pick(min_size=10 * MiB, max_size=40 * MiB, unaligned=True)
    async with cache_on(tmp_path, sim.url) as cache:
        await read_range(cache, f, 0, f.size)
    tail, rest = f.size - f.size % MiB, f.size % MiB
    # Unaligned offsets, one across a page boundary, one ending at the (unaligned) end of file.
    cases = [(3 * MiB + 5000, 65536), (6 * MiB + 12288 - 100, 8000), (tail + rest // 2, rest)]
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url) as cache:
        for offset, length in cases:
            got = await cache.read(f.uri, f.size, offset, length)
            assert got == sim.expected(f.uri, offset, min(length, f.size - offset))
        stats = cache.stats()
        assert stats["disk_partial_reads"] == len(cases)
        # Only those bytes were read: the blocks did not enter the memory tier.
        assert stats["memory_bytes"] == 0
        # A read continuing one of those loads its whole block, as sequential readers need.
        offset = 3 * MiB + 5000 + 65536
        assert await cache.read(f.uri, f.size, offset, 4096) == sim.expected(f.uri, offset, 4096)
        assert cache.stats()["memory_bytes"] == MiB
    assert sim.gets(f.uri) == 0


async def test_a_small_random_read_of_an_uncached_block_fetches_it_once(
    sim: Sim, tmp_path: Path
) -> None:
    f = sim.pick(min_size=10 * MiB, max_size=40 * MiB)
    async with cache_on(tmp_path, sim.url) as cache:
        await cache.read(f.uri, f.size, 0, 4096)
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url) as cache:
        offset = 6 * MiB + 123
        assert await cache.read(f.uri, f.size, offset, 65536) == sim.expected(f.uri, offset, 65536)
        # The block is now in memory: the next small read there needs neither disk nor network.
        assert await cache.read(f.uri, f.size, offset + 9000, 100) == sim.expected(
            f.uri, offset + 9000, 100
        )
        stats = cache.stats()
        assert stats["disk_partial_reads"] == 0 and stats["memory_hits"] == 1
    assert sim.gets(f.uri) == 1 and sim.sent(f.uri) == MiB


def test_aligned_blocks_are_written_as_they_are_and_others_through_the_scratch_buffer(
    tmp_path: Path,
) -> None:
    pool = BufferPool(keep_bytes=0)
    body = pool.take(3 * MiB + 1234)  # a product's last run: its tail is not a whole page
    body[:] = os.urandom(len(body))
    blocks = [body[i : i + MiB] for i in range(0, len(body), MiB)]
    disk = RunDisk(str(tmp_path / "direct"))
    stored = disk.write_run("tag", 0, blocks)
    back = disk.read_many(stored)
    assert back == [bytes(b) for b in blocks]
    # Written straight from the range response's buffer, and read back into pooled buffers
    # whose views are the blocks: no scratch buffer, no copy, either way.
    assert disk._buffers == []
    assert all(isinstance(b, memoryview) and b.readonly for b in back)

    unaligned = [memoryview(bytearray(os.urandom(MiB))), os.urandom(MiB // 2)]
    other = RunDisk(str(tmp_path / "copied"))
    stored = other.write_run("tag", 0, unaligned)
    assert len(other._buffers) == 1
    assert other.read_many(stored) == [bytes(b) for b in unaligned]
