"""The cache's background work: tasks in one nursery, counted so that someone can wait for
all of them to finish (`wait_idle`, for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio


class Background:
    """Spawns tasks into a nursery the cache owns; `pending` of them have not finished."""

    def __init__(self, nursery: trio.Nursery, stopped: trio.Event) -> None:
        self._nursery = nursery
        self._stopped = stopped
        self.pending = 0
        self._idle = trio.lowlevel.ParkingLot()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.pending += 1
        self._nursery.start_soon(self._run, fn, args)

    async def _run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self.pending -= 1
            if not self.pending:
                self._idle.unpark_all()

    async def wait_idle(self) -> None:
        while self.pending:
            await self._idle.park()

    async def stop(self) -> None:
        """Cancel whatever still runs, and wait until it has ended."""
        self._nursery.cancel_scope.cancel()
        await self._stopped.wait()


async def run_background(
    *, task_status: trio.TaskStatus[Background] = trio.TASK_STATUS_IGNORED
) -> None:
    """One task in its owner's nursery that holds the cache's own nursery, so that stopping
    the cache cancels exactly the cache's background work and nothing else."""
    stopped = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(Background(nursery, stopped))
            await trio.sleep_forever()
    finally:
        stopped.set()
