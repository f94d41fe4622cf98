"""`Batched`: calls that wait for a thread go together; none is lost, run twice, or left behind."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from mastfs.cache.batching import Batched


async def hold(limiter: trio.CapacityLimiter, until: trio.Event) -> None:
    """Keep the thread busy (the limiter's one token) until `until` is set."""
    async with limiter:
        await until.wait()


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        return [item * 10 for item in items]


async def test_calls_waiting_for_the_thread_run_together_and_each_gets_its_own_result() -> None:
    run = Recorder()
    limiter = trio.CapacityLimiter(1)
    batched = Batched(limiter, run)
    results: dict[int, int] = {}

    async def call(item: int) -> None:
        results[item] = await batched(item)

    busy = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, limiter, busy)  # the thread is busy: every call queues
        await trio.testing.wait_all_tasks_blocked()
        for item in range(5):
            nursery.start_soon(call, item)
        await trio.testing.wait_all_tasks_blocked()
        busy.set()
    assert results == {item: item * 10 for item in range(5)}
    assert sorted(item for batch in run.batches for item in batch) == [0, 1, 2, 3, 4]
    assert len(run.batches) == 1


async def test_a_call_alone_is_one_thread_call_of_one_item() -> None:
    run = Recorder()
    batched = Batched(trio.CapacityLimiter(2), run)
    assert await batched(7) == 70
    assert await batched(8) == 80
    assert run.batches == [[7], [8]]


async def test_a_call_cancelled_while_it_waits_is_never_run() -> None:
    run = Recorder()
    limiter = trio.CapacityLimiter(1)
    batched = Batched(limiter, run)
    busy = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, limiter, busy)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.05):
            await batched(1)
        busy.set()
    assert await batched(2) == 20
    assert run.batches == [[2]]


async def test_an_error_reaches_every_call_of_the_batch() -> None:
    def fail(items: Sequence[int]) -> list[int]:
        raise OSError(f"disk full writing {len(items)}")

    limiter = trio.CapacityLimiter(1)
    batched = Batched(limiter, fail)
    errors: list[str] = []

    async def call(item: int) -> None:
        with pytest.raises(OSError) as caught:
            await batched(item)
        errors.append(str(caught.value))

    busy = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, limiter, busy)
        await trio.testing.wait_all_tasks_blocked()
        for item in range(3):
            nursery.start_soon(call, item)
        await trio.testing.wait_all_tasks_blocked()
        busy.set()
    assert errors == ["disk full writing 3"] * 3
