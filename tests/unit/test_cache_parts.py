"""The block cache's concurrency tools on their own: single flight, the memory budget, the
background tasks, the memory tier (trio, no I/O)."""

from __future__ import annotations

import pytest
import trio

from mastfs.cache.budget import MemoryBudget, Pool
from mastfs.cache.flights import Flights
from mastfs.cache.memory import MemoryTier
from mastfs.cache.tasks import run_background


async def test_one_owner_per_key_and_waiters_share_the_value() -> None:
    flights: Flights[str, int] = Flights()
    flight, mine = flights.claim("k", background=False)
    again, second = flights.claim("k", background=False)
    assert mine and not second and again is flight
    got: list[int | None] = []

    async def waiter() -> None:
        got.append(await again.wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        flights.resolve("k", flight, 42)
    assert got == [42, 42]
    assert "k" not in flights
    # Ending it again changes nothing.
    flights.fail("k", flight, RuntimeError("late"))
    assert flight.value == 42 and flight.error is None


async def test_a_failed_flight_raises_in_waiters_and_an_abandoned_one_does_not() -> None:
    flights: Flights[str, int] = Flights()
    flight, _ = flights.claim("a", background=False)
    flights.fail("a", flight, OSError("boom"))
    with pytest.raises(OSError, match="boom"):
        await flight.wait()
    background, _ = flights.claim("b", background=True)
    flights.fail("b", background, OSError("readahead failed"))
    assert await background.wait() is None  # a background failure is not shared
    abandoned, _ = flights.claim("c", background=False)
    flights.abandon("c", abandoned)
    assert await abandoned.wait() is None
    assert flights.matching(lambda key: True) == []


async def test_reservations_release_once_and_wake_whoever_waits_for_empty() -> None:
    pool = Pool("test", 100)
    first = pool.try_reserve(60)
    assert first is not None and pool.used == 60
    assert pool.try_reserve(50) is None
    assert pool.try_reserve(50, limit=200) is not None
    woke = trio.Event()

    async def wait_empty() -> None:
        await pool.wait_empty()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_empty)
        await trio.testing.wait_all_tasks_blocked()
        first.release()
        first.release()  # idempotent
        assert pool.used == 50 and not woke.is_set()
        pool._give_back(50)
    assert woke.is_set() and pool.used == 0


def test_readahead_admission_follows_the_budget() -> None:
    budget = MemoryBudget(96)
    # Half the budget for competing streams...
    held = budget.admit_readahead(40, stream_busy=True)
    assert held is not None
    assert budget.admit_readahead(10, stream_busy=True) is None
    # ...a stream with nothing in flight may go up to the whole of it.
    extra = budget.admit_readahead(40, stream_busy=False)
    assert extra is not None
    assert budget.admit_readahead(20, stream_busy=False) is None
    # Blocks awaiting their hand-over count as readahead.
    held.release()
    extra.release()
    handing = budget.admit_hand_over(40)
    assert handing is not None
    assert budget.admit_hand_over(10) is None
    assert budget.admit_readahead(10, stream_busy=True) is None
    handing.release()
    assert budget.admit_background_write(48) is not None
    assert budget.admit_background_write(1) is None


async def test_background_tasks_are_counted_and_stopped() -> None:
    async with trio.open_nursery() as nursery:
        background = await nursery.start(run_background)
        done = []

        async def short() -> None:
            await trio.sleep(0.01)
            done.append(1)

        async def forever() -> None:
            await trio.sleep_forever()

        background.spawn(short)
        background.spawn(short)
        assert background.pending == 2
        await background.wait_idle()
        assert done == [1, 1] and background.pending == 0
        background.spawn(forever)
        await background.stop()
        assert background.pending == 0


def test_the_memory_tier_evicts_the_least_recently_used() -> None:
    tier = MemoryTier(10)
    tier.put(("u", "v", 0), b"aaaa")
    tier.put(("u", "v", 1), b"bbbb")
    assert tier.get(("u", "v", 0)) == b"aaaa"  # now the most recent
    tier.put(("w", "v", 0), b"cccc")
    assert ("u", "v", 1) not in tier and ("u", "v", 0) in tier and tier.size == 8
    tier.put(("x", "v", 0), b"x" * 11)  # larger than the tier: not kept
    assert ("x", "v", 0) not in tier
    tier.drop("u")
    assert tier.size == 4 and ("w", "v", 0) in tier
