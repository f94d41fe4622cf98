"""Data derived from a product's version, kept with its blocks (`BlockCache.keep_derived`):
what `headers/` keeps of a product instead of its bytes.

Kept in the index's row (compressed, checksummed, never a file), tagged like the version's
blocks: a remount finds it, a changed product drops it, and a row someone altered is dropped
and counted, never served.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from pathlib import Path

from mastfs.cache import checksums
from mastfs.cache.store import DATABASE, DERIVED_MAX_STORED, BlockIndex, derived_key, tag_of
from mastfs.cache.versions import Version
from mastfs.fetch import RemoteInfo
from tests.support.cache import cache_on
from tests.support.sim import MiB, Sim

KIND = "header-text-test"


def version(uri: str, etag: str = '"a"') -> Version:
    return Version.of(uri, RemoteInfo(1000, etag, None))


async def test_kept_data_comes_back_after_a_remount_and_goes_with_its_version(
    sim: Sim, tmp_path: Path
) -> None:
    text = b"".join(f"KEY{i:<5d}= 'value {i}'".ljust(80).encode() + b"\n" for i in range(2000))
    old, new = version("mast:X/product/a.fits"), version("mast:X/product/a.fits", '"b"')
    async with cache_on(tmp_path, sim.url) as cache:
        assert await cache.get_derived(old, KIND) is None
        cache.keep_derived(old, KIND, text)
    async with cache_on(tmp_path, sim.url) as cache:
        assert await cache.get_derived(old, KIND) == text
        assert await cache.get_derived(new, KIND) is None
        assert await cache.get_derived(old, "another-kind") is None
        # The product changed: what was made of its old version goes with its blocks.
        await cache.disk.retire(old.uri, old.identity, new.identity)
        assert await cache.get_derived(old, KIND) is None
    # Never a file of its own: the cache directory holds the database only.
    assert not list(tmp_path.rglob("*.val"))


async def test_an_altered_row_is_dropped_and_counted_never_served(
    sim: Sim, tmp_path: Path
) -> None:
    v = version("mast:X/product/b.fits")
    async with cache_on(tmp_path, sim.url) as cache:
        cache.keep_derived(v, KIND, b"SIMPLE  =                    T" * 100)
    key = derived_key(v.uri, v.identity, KIND)
    with sqlite3.connect(tmp_path / DATABASE) as db:
        (value,) = db.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchone()
        # Another text, well formed, under the kept one's checksum line.
        sums = bytes(value).partition(b"\n")[0]
        altered = sums + b"\n" + zlib.compress(b"SIMPLE  =                    F" * 100)
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (altered, key))
    async with cache_on(tmp_path, sim.url) as cache:
        assert await cache.get_derived(v, KIND) is None
        assert cache.stats()["checksum_failures"] == 1
    with sqlite3.connect(tmp_path / DATABASE) as db:
        assert db.execute("SELECT count(*) FROM Cache WHERE key = ?", (key,)).fetchone() == (0,)


def test_rows_that_expand_past_the_bound_or_would_need_a_file_are_refused(
    tmp_path: Path,
) -> None:
    index = BlockIndex(tmp_path, 1 << 30)
    try:
        v = version("mast:X/product/c.fits")
        key, tag = derived_key(v.uri, v.identity, KIND), tag_of(v.uri, v.identity)
        # Incompressible data that would not fit a row is not kept.
        index.put_derived([(key, tag, os.urandom(DERIVED_MAX_STORED))])
        assert index.get_derived([key]) == [None]
        assert index.take_rejected() == []
        # A row that would expand past DERIVED_MAX_BYTES (a compression bomb written by
        # whoever could write the database) is dropped, not expanded.
        bomb = zlib.compress(bytes(20 * MiB), 9)
        index.db.set(key, checksums.digest(key, bomb).encode() + b"\n" + bomb, tag=tag)
        assert index.get_derived([key]) == [None]
        assert [why for _, why in index.take_rejected()] == ["failed its checksum"]
        kept = json.dumps(["small"]).encode()
        index.put_derived([(key, tag, kept)])
        assert index.get_derived([key]) == [kept]
    finally:
        index.close()
