"""Products as `/url/` and generated files come, through the block cache: no `Content-Length`,
servers that ignore `Range`, no ETag (issue 14, part 4), under the simulator's knobs and its
"mast" profile; the byte counts come from its stats. The fetcher's side of the same answers is
in test_fetch_bodies.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.core.test_fetch_bodies import UNFRAMED
from tests.support.cache import cache_on
from tests.support.sim import AUTHORIZED_TOKEN, MiB, Sim


@pytest.mark.parametrize("knobs", UNFRAMED)
async def test_the_cache_reads_a_generated_file_and_serves_it_again_offline_of_gets(
    sim: Sim, tmp_path: Path, knobs: dict[str, Any]
) -> None:
    f = sim.pick(min_size=3 * MiB, max_size=8 * MiB, unaligned=True)
    sim.faults(scope=f.uri, ignore_range=True, **knobs)
    async with cache_on(tmp_path, sim.url) as cache:
        middle = f.size // 2
        assert await cache.read(f.uri, f.size, middle, 300_000) == sim.expected(
            f.uri, middle, 300_000
        )
        assert await cache.read(f.uri, f.size, 0, f.size) == sim.expected(f.uri, 0, f.size)
    gets = sim.gets(f.uri)
    # A new process revalidates with a HEAD that has no length either, and reads from disk.
    async with cache_on(tmp_path, sim.url) as cache:
        assert await cache.read(f.uri, f.size, 0, f.size) == sim.expected(f.uri, 0, f.size)
    assert sim.gets(f.uri) == gets and sim.heads(f.uri) == 1


# -- under the simulator's "mast" profile: no ETag, /url/ products on another host ----------------


def url_products(sim: Sim) -> list[Any]:
    """The HLA program's `/url/` products (generated files on the second host), smallest first."""
    return sorted((f for f in sim.server.catalog.files() if "/url/" in f.uri), key=lambda f: f.size)


async def test_url_products_read_through_the_redirect_and_never_get_the_token(
    sim: Sim, tmp_path: Path
) -> None:
    sim.profile("mast")
    # The processing logs (the previews and mosaics are rendered from 217 MB images, which
    # takes the simulator seconds; multi-block whole streams are tested above).
    files = [f for f in url_products(sim) if f.filename.endswith(".txt")]
    assert len(files) == 2
    async with cache_on(tmp_path, sim.url, token=AUTHORIZED_TOKEN) as cache:
        for f in files:
            middle = f.size // 2
            assert await cache.read(f.uri, f.size, middle, 5000) == sim.expected(
                f.uri, middle, 5000
            )
            assert await cache.read(f.uri, f.size, 0, f.size) == sim.expected(f.uri, 0, f.size)
    for f in files:
        stats = sim.file_stats(f.uri)
        assert stats["hosts"]["files"] >= 1 and stats["tokens_elsewhere"] == 0
    gets = [sim.gets(f.uri) for f in files]
    # A new process revalidates each with one HEAD (redirected, no length either) and reads
    # the blocks it stored.
    async with cache_on(tmp_path, sim.url, token=AUTHORIZED_TOKEN) as cache:
        for f in files:
            assert await cache.read(f.uri, f.size, 0, f.size) == sim.expected(f.uri, 0, f.size)
    assert [sim.gets(f.uri) for f in files] == gets
    assert all(sim.heads(f.uri) >= 1 and sim.file_stats(f.uri)["tokens_elsewhere"] == 0
               for f in files)  # fmt: skip


async def test_a_product_without_an_etag_is_known_by_its_size_and_date(
    sim: Sim, tmp_path: Path
) -> None:
    sim.profile("mast")
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB, unaligned=True)
    async with cache_on(tmp_path, sim.url) as cache:
        assert await cache.read(f.uri, f.size, 0, f.size) == sim.expected(f.uri, 0, f.size)
        version = cache.current_version(f.uri)
        assert version is not None and version.info.etag is None
        assert version.info.last_modified and version.size == f.size
    gets = sim.gets(f.uri)
    async with cache_on(tmp_path, sim.url) as cache:
        assert await cache.read(f.uri, f.size, 0, f.size) == sim.expected(f.uri, 0, f.size)
    assert sim.gets(f.uri) == gets and sim.heads(f.uri) == 1
