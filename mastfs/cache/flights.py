"""Single flight per key: concurrent wanters of one thing share one attempt to get it.

In the spirit of s3ql's `MultiLock`, but carrying the outcome: the first task to `claim` a key
owns its flight and must end it (`resolve`, `fail` or `abandon`); others `wait` for it. A flight
ended without a value tells its waiters why: failed (they raise the error) or abandoned (the
owner stopped for its own reasons; they try for themselves).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(eq=False)
class Flight(Generic[V]):
    """One attempt in progress; `background` attempts' failures are not shared."""

    background: bool
    event: trio.Event = field(default_factory=trio.Event)
    value: V | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> V | None:
        """The value, or None if the flight was abandoned; raises a shared failure."""
        await self.event.wait()
        if self.value is None and self.error is not None and not self.background:
            raise self.error
        return self.value


class Flights(Generic[K, V]):
    """The flights in progress, by key."""

    def __init__(self) -> None:
        self._flights: dict[K, Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: K) -> bool:
        return key in self._flights

    def get(self, key: K) -> Flight[V] | None:
        return self._flights.get(key)

    def claim(self, key: K, background: bool) -> tuple[Flight[V], bool]:
        """The key's flight and whether this caller owns it (it did not exist)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = Flight(background)
        return flight, True

    def resolve(self, key: K, flight: Flight[V], value: V) -> None:
        if flight.done:
            return
        flight.value = value
        self._end(key, flight)

    def fail(self, key: K, flight: Flight[V], error: BaseException) -> None:
        if flight.done:
            return
        flight.error = error
        self._end(key, flight)

    def abandon(self, key: K, flight: Flight[V]) -> None:
        if not flight.done:
            self._end(key, flight)

    def matching(self, predicate: Callable[[K], bool]) -> list[tuple[K, Flight[V]]]:
        """(key, flight) for every flight whose key `predicate` accepts."""
        return [(k, f) for k, f in self._flights.items() if predicate(k)]

    def _end(self, key: K, flight: Flight[V]) -> None:
        flight.event.set()
        if self._flights.get(key) is flight:
            del self._flights[key]
