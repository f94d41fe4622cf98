"""Calls to a worker thread that go together when they have to wait for one.

`Batched` runs a function that takes a list of items in a worker thread, under a
`trio.CapacityLimiter`. A call that waits for the limiter leaves its item in a queue; the first
call to get the limiter takes every item queued by then into one thread call, and the others
only wait for its result. Under load, N calls cost one thread hand-off and one SQLite
transaction instead of N: with 64 header builds at once, a thread call each for the product's
version record and for its blocks kept the builds waiting on the disk for most of their time,
each call costing tens of milliseconds of GIL hand-offs (docs/performance.md, "Headers").
When nothing waits, a call is one thread call of one item, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio

In = TypeVar("In")
Out = TypeVar("Out")


class _Call(Generic[In, Out]):
    __slots__ = ("done", "error", "item", "result", "taken")

    def __init__(self, item: In) -> None:
        self.item = item
        self.taken = False
        self.done = trio.Event()
        self.result: Out | None = None
        self.error: BaseException | None = None


class Batched(Generic[In, Out]):
    """`await batched(item)`: `run([..., item, ...])`'s result for `item`, `run` returning one
    result per item, in order. An exception from `run` is raised to every call of the batch."""

    def __init__(
        self, limiter: trio.CapacityLimiter, run: Callable[[Sequence[In]], Sequence[Out]]
    ) -> None:
        self._limiter = limiter
        self._run = run
        self._queue: list[_Call[In, Out]] = []

    async def __call__(self, item: In) -> Out:
        call: _Call[In, Out] = _Call(item)
        self._queue.append(call)
        try:
            async with self._limiter:
                if not call.taken:
                    await self._run_queued()
        except BaseException:
            if not call.taken:  # cancelled while it waited: nobody else will run it
                self._queue.remove(call)
            raise
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    async def _run_queued(self) -> None:
        batch, self._queue = self._queue, []
        for call in batch:
            call.taken = True
        try:
            results = await trio.to_thread.run_sync(self._run, [call.item for call in batch])
            for call, result in zip(batch, results, strict=True):
                call.result = result
        except BaseException as exc:
            for call in batch:
                call.error = exc
            raise
        finally:
            for call in batch:
                call.done.set()
