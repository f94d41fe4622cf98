"""The block cache against another local user and a tampered cache directory (issue 12).

The attacker here is real: a second user (`nobody`, through `setpriv`) trying to read what the
cache stored, and rows planted in the cache's SQLite index as whoever could write it would plant
them (a pickle that runs code, a file name that leads out of the cache).
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mastfs.cache import BlockCache
from mastfs.fetch import Fetcher
from mastfs.private import PrivacyError
from tests.support.sim import FAST_RETRY, MiB, Sim

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@asynccontextmanager
async def cache_on(directory: Path, url: str, **options: Any) -> AsyncIterator[BlockCache]:
    fetcher = Fetcher(url, None, FAST_RETRY)
    try:
        async with BlockCache.open_cache(
            fetcher, directory, size_limit=1 << 30, readahead_max=0, **options
        ) as cache:
            yield cache
            await cache.wait_idle()
    finally:
        fetcher.close()


def modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.lstat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


async def test_everything_the_cache_creates_is_owner_only(sim: Sim, tmp_path: Path) -> None:
    directory = tmp_path / "new" / "deeper" / "blocks"
    f = sim.pick(min_size=2 * MiB, max_size=20 * MiB)
    old_umask = os.umask(0o022)
    try:
        async with cache_on(directory, sim.url) as cache:
            assert await cache.read(f.uri, f.size, 0, MiB) == sim.expected(f.uri, 0, MiB)
    finally:
        os.umask(old_umask)
    found = modes(directory)
    assert any(name.endswith(".val") for name in found)
    for name, mode in found.items():
        path = directory / name
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{name}: {mode:o}"
    # Directories it had to create on the way are private too.
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


@needs_root
async def test_another_user_cannot_read_cached_blocks(sim: Sim, tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # the attacker may reach the cache directory itself
    directory = tmp_path / "blocks"
    f = sim.pick(min_size=2 * MiB, max_size=20 * MiB)
    async with cache_on(directory, sim.url) as cache:
        await cache.read(f.uri, f.size, 0, MiB)
    run_file = next(directory.rglob("*.val"))
    for target in (run_file, directory / "cache.db"):
        attempt = subprocess.run(
            [*NOBODY, "cat", str(target)], capture_output=True, text=True, timeout=30
        )
        assert attempt.returncode != 0
        assert "Permission denied" in attempt.stderr
        assert attempt.stdout == ""


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
async def test_a_cache_directory_others_can_write_is_refused(
    sim: Sim, tmp_path: Path, mode: int
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, mode)
    with pytest.raises(PrivacyError, match=r"writable by others.*chmod go-w .*shared"):
        async with cache_on(directory, sim.url):
            pass
    assert list(directory.iterdir()) == []  # nothing was created there


@needs_root
async def test_a_cache_directory_of_another_user_is_refused(sim: Sim, tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(PrivacyError, match=r"belongs to uid 65534"):
        async with cache_on(directory, sim.url):
            pass


async def test_a_planted_database_symlink_is_refused(sim: Sim, tmp_path: Path) -> None:
    directory = tmp_path / "blocks"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (directory / "cache.db").symlink_to(victim)
    with pytest.raises(PrivacyError, match="not a regular file"):
        async with cache_on(directory, sim.url):
            pass
    assert victim.read_bytes() == b"precious"


def plant(directory: Path, key: str, mode: int, filename: str | None, value: bytes | None) -> None:
    """Write a row into the cache's index, as someone who can write the file would."""
    with sqlite3.connect(directory / "cache.db") as db:
        db.execute(
            "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time,"
            " access_count, tag, size, mode, filename, value)"
            " VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, ?, ?)",
            (key, time.time(), time.time(), mode, filename, value),
        )


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


async def test_a_pickled_row_is_never_unpickled(sim: Sim, tmp_path: Path) -> None:
    directory = tmp_path / "blocks"
    f = sim.pick(min_size=2 * MiB, max_size=20 * MiB)
    async with cache_on(directory, sim.url) as cache:
        await cache.read(f.uri, f.size, 0, 10)
        version = cache.versions.current(f.uri)
        assert version is not None
        keys = [version.block_key(0), version.block_key(1)]
    marker = tmp_path / "pwned"
    for key in keys:
        plant(directory, key, 4, None, pickle.dumps(_Payload(str(marker))))  # MODE_PICKLE
    sim.reset_stats()
    async with cache_on(directory, sim.url) as cache:
        assert await cache.read(f.uri, f.size, 0, 2 * MiB) == sim.expected(f.uri, 0, 2 * MiB)
        assert await cache.read(f.uri, f.size, MiB + 5, 100) == sim.expected(f.uri, MiB + 5, 100)
    assert not marker.exists()
    assert sim.gets(f.uri) >= 1  # the planted rows were misses


@pytest.mark.parametrize(
    "filename", ["../../victim@0+8", "{absolute}@0+8", "a/../../../victim@0+8", "../victim"]
)
async def test_a_row_naming_a_file_outside_the_cache_is_never_read_or_deleted(
    sim: Sim, tmp_path: Path, filename: str
) -> None:
    root = tmp_path / "cache"
    directory = root / "blocks"
    victim = root / "victim"
    f = sim.pick(min_size=2 * MiB, max_size=20 * MiB)
    async with cache_on(directory, sim.url) as cache:
        await cache.read(f.uri, f.size, 0, 10)
        version = cache.versions.current(f.uri)
        assert version is not None
        key = version.block_key(0)
    victim.write_bytes(b"precious")
    filename = filename.format(absolute=victim)
    plant(directory, key, 2, filename, None)  # MODE_BINARY, pointing outside
    sim.reset_stats()
    async with cache_on(directory, sim.url) as cache:
        got = await cache.read(f.uri, f.size, 0, 8)
        assert got == sim.expected(f.uri, 0, 8) != b"precious"
        # Removing the row (eviction, a content change) must not remove what it names.
        cache.disk.index.db.delete(key)
    assert victim.read_bytes() == b"precious"
