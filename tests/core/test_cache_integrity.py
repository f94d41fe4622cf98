"""Cached bytes are proven before they are served again (issue 13): bit rot, truncation and
rows swapped between blocks are caught by the blocks' checksums, dropped, counted and fetched
again; `mastfs cache verify` finds the same damage in a whole cache directory."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mastfs.cache import checksums
from tests.support.cache import cache_on
from tests.support.sim import MiB, Sim

ROOT = Path(__file__).resolve().parents[2]


def run_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.val"))


def flip(path: Path, offsets: list[int]) -> None:
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0x5A]))


async def fill(directory: Path, sim: Sim, uri: str, size: int) -> None:
    async with cache_on(directory, sim.url, readahead_max=0) as cache:
        for offset in range(0, size, MiB):
            await cache.read(uri, size, offset, MiB)


def test_checksums_bind_bytes_to_their_block() -> None:
    data = os.urandom(3 * checksums.CHUNK + 100)
    sums = checksums.digest("key-a", data)
    assert checksums.verify("key-a", len(data), sums, data)
    assert not checksums.verify("key-b", len(data), sums, data)  # another block's row
    flipped = bytearray(data)
    flipped[5] ^= 1
    assert not checksums.verify("key-a", len(data), sums, bytes(flipped))
    assert not checksums.verify("key-a", len(data), sums, data[:-1])  # truncated
    # A chunk-aligned part verifies against its own chunks only.
    part = data[checksums.CHUNK : 3 * checksums.CHUNK]
    assert checksums.verify("key-a", len(data), sums, part, first=1)
    assert not checksums.verify("key-a", len(data), sums, part, first=0)
    assert checksums.chunk_span(100, 70_000, len(data)) == (0, 0, 2 * checksums.CHUNK)
    tail = checksums.chunk_span(3 * checksums.CHUNK + 10, len(data), len(data))
    assert tail == (3, 3 * checksums.CHUNK, len(data))


async def test_flipped_bytes_on_disk_are_never_served(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = sim.pick(min_size=8 * MiB, max_size=40 * MiB, unaligned=True)
    await fill(tmp_path, sim, f.uri, f.size)
    files = run_files(tmp_path)
    assert files
    # 48 flipped bytes spread over every run file, as in the issue.
    for path in files:
        size = path.stat().st_size
        flip(path, [size * k // 49 for k in range(1, 49 // len(files) + 2)])
    sim.reset_stats()
    caplog.set_level(logging.WARNING, logger="mastfs.cache")
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        for offset in range(0, f.size, MiB):
            got = await cache.read(f.uri, f.size, offset, MiB)
            assert got == sim.expected(f.uri, offset, min(MiB, f.size - offset))
        assert cache.stats()["checksum_failures"] >= 1
    assert sim.gets(f.uri) >= 1
    assert any("failed its checksum" in r.getMessage() for r in caplog.records)


async def test_small_reads_after_a_remount_verify_the_chunks_they_read(
    sim: Sim, tmp_path: Path
) -> None:
    f = sim.pick(min_size=8 * MiB, max_size=40 * MiB)
    await fill(tmp_path, sim, f.uri, f.size)
    # Flip a byte inside block 3, in the chunk a small read at 3 MiB + 70,000 lands in.
    target = 3 * MiB + 70_000
    for path in run_files(tmp_path):
        # Run files hold consecutive blocks; find the one holding block 3 by its name (first
        # block index) and size.
        first = int(path.name.split("-")[0])
        if first * MiB <= target < first * MiB + path.stat().st_size:
            flip(path, [target - first * MiB])
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        got = await cache.read(f.uri, f.size, target - 10, 100)
        assert got == sim.expected(f.uri, target - 10, 100)
        stats = cache.stats()
        assert stats["checksum_failures"] == 1
        # An undamaged block elsewhere is still read from disk, partially.
        assert await cache.read(f.uri, f.size, 100, 100) == sim.expected(f.uri, 100, 100)
        assert cache.stats()["disk_partial_reads"] >= 1
    assert sim.gets(f.uri) >= 1


async def test_a_row_pointing_at_another_blocks_bytes_is_caught(sim: Sim, tmp_path: Path) -> None:
    f = sim.pick(min_size=8 * MiB, max_size=40 * MiB)
    await fill(tmp_path, sim, f.uri, f.size)
    # Point block 1's row at block 2's bytes, checksums and all (a swap inside the index).
    with sqlite3.connect(tmp_path / "cache.db") as db:
        rows = {
            json.loads(key)[3]: (key, filename)
            for key, filename in db.execute("SELECT key, filename FROM Cache")
            if key.startswith('["b"')
        }
        db.execute("UPDATE Cache SET filename = ? WHERE key = ?", (rows[2][1], rows[1][0]))
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        assert await cache.read(f.uri, f.size, MiB, MiB) == sim.expected(f.uri, MiB, MiB)
        assert cache.stats()["checksum_failures"] == 1
    assert sim.gets(f.uri) == 1


def verify(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastfs", "cache", "verify", "--cache-dir", str(directory), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_cache_verify_finds_and_repairs_damage(sim: Sim, tmp_path: Path) -> None:
    f = sim.pick(min_size=8 * MiB, max_size=40 * MiB, unaligned=True)
    blocks = tmp_path / "blocks"
    await fill(blocks, sim, f.uri, f.size)
    clean = verify(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 damaged" in clean.stdout
    files = run_files(blocks)
    flip(files[0], [10])
    (blocks / "zz-orphan.val").write_bytes(b"x" * 100)
    damaged = verify(tmp_path)
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert "1 damaged" in damaged.stdout and "1 orphan" in damaged.stdout
    assert "Traceback" not in damaged.stderr
    repaired = verify(tmp_path, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    again = verify(tmp_path)
    assert again.returncode == 0 and "0 damaged" in again.stdout and "0 orphan" in again.stdout
    sim.reset_stats()
    async with cache_on(blocks, sim.url, readahead_max=0) as cache:
        for offset in range(0, f.size, MiB):
            got = await cache.read(f.uri, f.size, offset, MiB)
            assert got == sim.expected(f.uri, offset, min(MiB, f.size - offset))
        assert cache.stats()["checksum_failures"] == 0


def test_cache_verify_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    done = verify(tmp_path / "nowhere")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "nowhere" in done.stderr


async def test_old_orphan_run_files_are_removed_at_open(sim: Sim, tmp_path: Path) -> None:
    """A daemon killed between writing a run file and committing its rows leaves bytes no row
    points to (the fault matrix's kill -9 cases): they go at the next open once they are old
    enough not to be another process's run about to be committed."""
    f = sim.pick(min_size=4 * MiB, max_size=40 * MiB)
    await fill(tmp_path, sim, f.uri, f.size)
    kept = run_files(tmp_path)
    old = tmp_path / "ab" / "cdef" / "0-old.val"
    young = tmp_path / "ab" / "cdef" / "0-young.val"
    old.parent.mkdir(parents=True)
    for path in (old, young):
        path.write_bytes(b"x" * 4096)
    os.utime(old, (1_000_000_000, 1_000_000_000))
    sim.reset_stats()
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        assert not old.exists() and young.exists()
        assert all(path.exists() for path in kept)
        assert await cache.read(f.uri, f.size, 0, MiB) == sim.expected(f.uri, 0, MiB)
    assert sim.gets(f.uri) == 0
