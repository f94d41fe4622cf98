"""Products as `/url/` and generated files come: no `Content-Length`, servers that ignore `Range`,
streams cut half-way (issue 14, part 4). Against the simulator's knobs; the byte counts come
from its stats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastfs.fetch import Fetcher, RemoteInfo, RetryPolicy, TransientError
from tests.support.cache import cache_on
from tests.support.sim import AUTHORIZED_TOKEN, MiB, Sim

RETRY = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, deadline=20.0)
UNFRAMED = [
    pytest.param({"framing": "chunked"}, id="chunked"),
    pytest.param({"framing": "close"}, id="until close"),
]


class Sink:
    """What `get_whole` delivers, checked to arrive in order."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def __call__(self, offset: int, chunk: bytes, info: RemoteInfo) -> None:
        assert offset == len(self.data)
        self.data += chunk


@pytest.fixture()
def fetcher(sim: Sim) -> Iterator[Fetcher]:
    made = Fetcher(sim.url, None, RETRY, timeout=10.0)
    try:
        yield made
    finally:
        made.close()


def small_file(sim: Sim) -> Any:
    return sim.pick(min_size=MiB, max_size=4 * MiB, unaligned=True)


@pytest.mark.parametrize("knobs", UNFRAMED)
async def test_a_whole_body_without_a_length_brings_the_catalogue_size(
    sim: Sim, fetcher: Fetcher, knobs: dict[str, Any]
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, ignore_range=True, **knobs)
    sink = Sink()
    info = await fetcher.get_whole(f.uri, sink, size=f.size)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    assert info.size == f.size and info.etag == f.etag


@pytest.mark.parametrize("knobs", UNFRAMED)
async def test_a_body_shorter_than_the_catalogue_says_is_never_taken_whole(
    sim: Sim, fetcher: Fetcher, knobs: dict[str, Any]
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, ignore_range=True, **knobs)
    sink = Sink()
    # The catalogue is 10 bytes ahead of the file: every attempt ends short, none is whole.
    with pytest.raises(TransientError, match="body stopped"):
        await fetcher.get_whole(f.uri, sink, size=f.size + 10)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    assert sim.gets(f.uri) == RETRY.attempts


async def test_a_head_without_a_length_takes_the_known_size(sim: Sim, fetcher: Fetcher) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, framing="chunked")
    info = await fetcher.head(f.uri, size=f.size)
    assert info.size == f.size and info.etag == f.etag


async def test_a_cut_whole_stream_resumes_where_it_stopped(sim: Sim, fetcher: Fetcher) -> None:
    f = sim.pick(min_size=8 * MiB, max_size=32 * MiB)
    sim.faults(scope=f.uri, reset_fraction=0.5, max_faults=1)
    sink = Sink()
    await fetcher.get_whole(f.uri, sink)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    # The second request asked for the rest only, and got it as a 206 (starting over would
    # have cost half the file again; the server's socket buffers may hold a little more).
    stats = sim.file_stats(f.uri)
    assert stats["status"] == {"200": 1, "206": 1}
    assert stats["bytes"] < f.size * 1.2


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
