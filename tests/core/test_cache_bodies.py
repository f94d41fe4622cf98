"""The block cache over a lying archive: nothing of a lying answer is served or kept.

Each test reads through a `BlockCache` while the simulator lies (docs/simulator.md, "Faults"),
then opens a new cache over the same directory against the honest simulator and reads the
whole product: every byte must be the simulator's, so no block of the lie was stored under an
identity the honest archive also answers with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mastfs.fetch import BadResponse, FetchError, RetryPolicy, TransientError
from tests.support.cache import cache_on
from tests.support.sim import MiB, Sim

RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01, deadline=20.0)
KiB = 1 << 10


async def read_all(cache: Any, uri: str, size: int, step: int = 256 * KiB) -> bytes:
    return b"".join([await cache.read(uri, size, offset, step) for offset in range(0, size, step)])


LIES = [
    pytest.param({"short_body": 1000}, TransientError, id="short range bodies"),
    pytest.param({"long_body": 1000, "framing": "chunked"}, TransientError, id="long, chunked"),
    pytest.param({"content_encoding": "gzip", "framing": "chunked"}, BadResponse, id="gzip"),
    pytest.param({"wrong_length": -1000}, BadResponse, id="wrong Content-Length"),
    pytest.param(
        {"ignore_range": True, "short_body": 1000}, TransientError, id="short whole bodies"
    ),
    pytest.param(
        {"ignore_range": True, "wrong_length": 1000}, TransientError, id="whole, length above"
    ),
    pytest.param({"ignore_range": True, "content_encoding": "gzip"}, BadResponse, id="whole, gzip"),
    pytest.param(
        {"ignore_range": True, "content_encoding": "gzip", "encoded_length": False},
        BadResponse,
        id="whole, gzip under the identity length",
    ),
]


@pytest.mark.parametrize(("knobs", "error"), LIES)
async def test_a_lying_archive_leaves_nothing_an_honest_one_would_serve(
    sim: Sim, tmp_path: Path, knobs: dict[str, Any], error: type[FetchError]
) -> None:
    # Larger than a block: a whole-file stream would deliver blocks before the body ends.
    f = sim.pick(min_size=3 * MiB, max_size=12 * MiB, unaligned=True)
    sim.faults(scope=f.uri, **knobs)
    async with cache_on(tmp_path, sim.url, retry=RETRY, block_size=MiB) as cache:
        # The end of the file needs the end of a body, which never comes true.
        with pytest.raises(error):
            await cache.read(f.uri, f.size, f.size - 100_000, 100_000)
        # A whole-file stream may have delivered earlier blocks before its body went wrong:
        # only ever the archive's true bytes.
        try:
            head = await cache.read(f.uri, f.size, 0, 2 * MiB)
        except FetchError as exc:
            assert isinstance(exc, error)
        else:
            assert "ignore_range" in knobs and head == sim.expected(f.uri, 0, 2 * MiB)
        lied = sim.gets(f.uri)
    if error is TransientError:
        assert lied >= RETRY.attempts, "a body of the wrong length is retried"
    sim.clear_faults()
    async with cache_on(tmp_path, sim.url, retry=RETRY, block_size=MiB) as cache:
        assert await read_all(cache, f.uri, f.size) == sim.expected(f.uri, 0, f.size)
        fetched = cache.stats()["bytes_fetched"]
    if knobs != {"ignore_range": True, "short_body": 1000}:
        # Every byte came from the honest archive again: nothing of the lie was kept. (Counted
        # by the cache: the simulator's byte count can still move when a lying answer's write
        # fails after the reset.)
        assert fetched >= f.size
    # A whole body cut short delivered whole blocks of true bytes before the cut; those may
    # be kept (a truncation is no lie about the bytes that came), never the cut block itself.
