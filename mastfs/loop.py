"""A trio event loop in a thread of its own, holding one resource open for synchronous callers.

The core runs on trio; fsspec and notebooks call synchronously, from any thread. `LoopThread`
starts `trio.run` in a daemon thread, enters an async context manager there (the query session
and the core, for the fsspec filesystem) and keeps it open until `close`; callers run
coroutines on it with `call`, each bounded by a timeout. The thread belongs to the process that
started it: after a fork the child must start its own (`alive` is False there), and the
parent's is never touched from the child. At interpreter exit the resource is closed (the block
cache lets its pending writes reach the disk), within `CLOSE_TIMEOUT`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Seconds `close` waits for the resource to close (the block cache's own grace is 10 s).
CLOSE_TIMEOUT = 15.0


class LoopClosed(RuntimeError):
    """The loop thread has ended (closed, or in another process)."""


class _Shared:
    """What the thread and the finaliser share; no reference back to the `LoopThread`."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.ready = threading.Event()
        self.token: trio.lowlevel.TrioToken | None = None
        self.stop: trio.Event | None = None
        self.scope: trio.CancelScope | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None


def _shutdown(shared: _Shared, timeout: float) -> None:
    """Ask the loop to close its resource and wait for the thread; idempotent, and a no-op in a
    forked child (the parent's loop lives in the parent)."""
    if os.getpid() != shared.pid or shared.token is None or shared.thread is None:
        return
    try:
        if shared.stop is not None:
            trio.from_thread.run_sync(shared.stop.set, trio_token=shared.token)
        elif shared.scope is not None:
            trio.from_thread.run_sync(shared.scope.cancel, trio_token=shared.token)
    except trio.RunFinishedError:
        pass
    shared.thread.join(timeout)
    if shared.thread.is_alive():
        log.warning("the mastfs loop thread did not stop within %g s", timeout)


class LoopThread(Generic[T]):
    """A trio loop in a daemon thread holding `opener()`'s value open until `close`."""

    def __init__(
        self,
        opener: Callable[[], AbstractAsyncContextManager[T]],
        *,
        name: str,
        start_timeout: float,
    ) -> None:
        """Start the thread and wait until the resource is open (`start_timeout` seconds at
        most: then `TimeoutError`). Whatever opening it raised is raised here."""
        self._opener = opener
        self._shared = shared = _Shared()
        self._value: T | None = None
        shared.thread = threading.Thread(target=self._run, name=name, daemon=True)
        shared.thread.start()
        if not shared.ready.wait(start_timeout):
            _shutdown(shared, CLOSE_TIMEOUT)
            raise TimeoutError(f"{name}: not ready within {start_timeout:g} s")
        if shared.error is not None:
            shared.thread.join(CLOSE_TIMEOUT)
            raise shared.error
        self._finalizer = weakref.finalize(self, _shutdown, shared, CLOSE_TIMEOUT)

    def _run(self) -> None:
        shared = self._shared
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the starting thread, not lost in this one
            if not shared.ready.is_set():
                shared.error = exc
            else:
                log.exception("the mastfs loop thread failed")
        finally:
            shared.ready.set()

    async def _main(self) -> None:
        shared = self._shared
        shared.token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            shared.scope = scope
            async with self._opener() as value:
                self._value = value
                stop = trio.Event()
                shared.stop = stop
                shared.ready.set()
                await stop.wait()

    @property
    def alive(self) -> bool:
        """Whether calls can run: this process started the loop and it has not ended."""
        shared = self._shared
        return (
            os.getpid() == shared.pid
            and shared.thread is not None
            and shared.thread.is_alive()
            and shared.stop is not None
            and not shared.stop.is_set()
        )

    @property
    def value(self) -> T:
        if self._value is None:
            raise LoopClosed("the loop has not opened its resource")
        return self._value

    def call(
        self, fn: Callable[..., Awaitable[R]], *args: Any, timeout: float = 60.0
    ) -> R:
        """`await fn(*args)` on the loop, from any other thread; `TimeoutError` after `timeout`
        seconds (the coroutine is cancelled), `LoopClosed` once the loop has ended."""
        if not self.alive:
            raise LoopClosed("the mastfs loop thread has ended")

        async def bounded() -> R:
            with trio.fail_after(timeout):
                return await fn(*args)

        try:
            return trio.from_thread.run(bounded, trio_token=self._shared.token)
        except trio.TooSlowError:
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except trio.RunFinishedError:
            raise LoopClosed("the mastfs loop thread has ended") from None

    def close(self) -> None:
        """Close the resource and end the thread (idempotent)."""
        self._finalizer()
