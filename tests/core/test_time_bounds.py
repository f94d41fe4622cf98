"""`--timeout` bounds every read, stalls included (issue 13): a read returns data or fails
within its deadline, and readers waiting on the same stalled block are released with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from mastfs.core import Core
from mastfs.fetch import RetryPolicy, TransientError
from mastfs.selection import Selection
from mastfs.state import MountState
from tests.support.cache import cache_on
from tests.support.sim import MiB, Sim, product_of

# A hang detector, not a performance threshold: far above the deadlines under test.
HANG = 60


@pytest.fixture()
def stalled(sim: Sim) -> Any:
    f = sim.pick(min_size=4 * MiB, max_size=40 * MiB, index=7)
    sim.faults(stall_after=0, stall_seconds=40, scope=f.uri)
    try:
        yield f
    finally:
        sim.clear_faults()


async def test_a_stalled_read_fails_at_its_deadline_and_shares_the_failure(
    sim: Sim, tmp_path: Path, stalled: Any
) -> None:
    f = stalled
    product = product_of(f)
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=2.0)
    async with cache_on(tmp_path, sim.url, retry=policy, readahead_max=0) as cache:
        core = Core(MountState([product], Selection(), "flat", None), cache, read_timeout=2.0)
        opened = await core.open_product(product)
        errors: dict[str, str] = {}

        async def reader(name: str, delay: float) -> None:
            await trio.sleep(delay)
            try:
                await core.read_product(opened, 0, 4096)
            except TransientError as exc:
                errors[name] = str(exc)

        with trio.fail_after(HANG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader, "first", 0)
                nursery.start_soon(reader, "waiter", 0.5)
        assert "no answer from the archive within 2 s" in errors["first"]
        # The second reader waited on the first one's block and was released with it.
        assert "no answer in time for the read these blocks waited on" in errors["waiter"]
        assert "no answer" in core.state.manifest().decode()
        # The fault clears: the same mount reads again, and the manifest forgets the error.
        sim.clear_faults()
        with trio.fail_after(HANG):
            assert await core.read_product(opened, 0, 4096) == bytes(f.read(0, 4096))
        assert "no answer" not in core.state.manifest().decode()
