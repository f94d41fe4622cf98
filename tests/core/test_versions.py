"""One version per open file, and revalidation on open (issue 13), against the simulator.

An open file is bound to the version it opened: when the archive replaces the product, that
file's reads fail (`VersionChanged`, EIO through FUSE) instead of returning bytes of two
versions; a new open sees the new version. `metadata_ttl` says how stale the knowledge of a
product may be before an open asks the archive again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastfs.core import Core
from mastfs.fetch import RemoteInfo, VersionChanged
from mastfs.selection import Selection
from mastfs.state import MountState
from tests.support.cache import cache_on
from tests.support.sim import MiB, Sim, product_of


@pytest.fixture()
def changing(sim: Sim) -> Iterator[Any]:
    f = sim.pick(min_size=6 * MiB, max_size=60 * MiB, index=5)
    try:
        yield f
    finally:
        sim.change(f.uri, generation=0)


def test_without_an_etag_last_modified_tells_versions_apart() -> None:
    a = RemoteInfo(2880, None, "Mon, 01 Dec 2026 10:00:00 GMT")
    b = RemoteInfo(2880, None, "Tue, 02 Dec 2026 10:00:00 GMT")
    assert not a.same_content(b)
    assert a.same_content(RemoteInfo(2880, None, a.last_modified))
    assert a.same_content(RemoteInfo(2880, None, None))  # nothing to compare but the size
    assert not a.same_content(RemoteInfo(5760, None, a.last_modified))
    # An ETag, where both have one, decides.
    assert RemoteInfo(2880, '"x"', "a").same_content(RemoteInfo(2880, '"x"', "b"))


async def test_an_open_file_never_mixes_two_versions(
    sim: Sim, tmp_path: Path, changing: Any, profile: str
) -> None:
    """Under both profiles: "mast" sends no ETag, so a same-size replacement is told apart by
    its Last-Modified alone."""
    f = changing
    product = product_of(f)
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        core = Core(MountState([product], Selection(), "flat", None), cache)
        opened = await core.open_product(product)
        first = await core.read_product(opened, 0, MiB)
        assert first == bytes(f.read(0, MiB)) and opened.version is not None
        sim.change(f.uri)
        new = sim.file(f.uri)
        # What this open already had stays its version's; what it has not is refused.
        assert await core.read_product(opened, 100, 1000) == bytes(f.read(100, 1000))
        with pytest.raises(VersionChanged):
            await core.read_product(opened, 4 * MiB, MiB)
        with pytest.raises(VersionChanged):
            await core.read_product(opened, 0, 1000)  # old blocks are gone now
        # The failure shows in the manifest until the product reads again.
        assert "changed" in core.state.manifest().decode()
        fresh = await core.open_product(product)
        assert await core.read_product(fresh, 0, MiB) == bytes(new.read(0, MiB))
        assert await core.read_product(fresh, 4 * MiB, MiB) == bytes(new.read(4 * MiB, MiB))
        assert "changed" not in core.state.manifest().decode()


async def test_a_file_opened_before_anything_was_known_binds_at_its_first_read(
    sim: Sim, tmp_path: Path, changing: Any
) -> None:
    f = changing
    product = product_of(f)
    async with cache_on(tmp_path, sim.url, readahead_max=0) as cache:
        core = Core(MountState([product], Selection(), "flat", None), cache)
        opened = await core.open_product(product)
        assert opened.version is None  # no round trip spent at open
        assert await core.read_product(opened, 0, 10) == bytes(f.read(0, 10))
        assert opened.version is not None and opened.version.info.etag == f.etag


@pytest.mark.parametrize("ttl", [0.0, 3600.0])
async def test_opens_revalidate_after_the_metadata_ttl(
    sim: Sim, tmp_path: Path, changing: Any, ttl: float
) -> None:
    f = changing
    async with cache_on(tmp_path, sim.url, readahead_max=0, metadata_ttl=ttl) as cache:
        assert await cache.read(f.uri, f.size, 0, MiB) == bytes(f.read(0, MiB))
        sim.change(f.uri)
        new = sim.file(f.uri)
        sim.reset_stats()
        version = await cache.open(f.uri, f.size)
        assert version is not None
        got = await cache.read(f.uri, f.size, 0, MiB, version)
        if ttl == 0:
            # Asked at open: the new version, from the network.
            assert sim.heads(f.uri) == 1
            assert version.info.etag == new.etag and got == bytes(new.read(0, MiB))
        else:
            # Confirmed a moment ago: no request, and the cached version, whole.
            assert sim.heads(f.uri) == 0 and sim.gets(f.uri) == 0
            assert version.info.etag == f.etag and got == bytes(f.read(0, MiB))
