"""The FUSE operations awaited in process, without the kernel (as s3ql's t3_fs_api.py does).

`make_ops` is the one place that builds a `MastOperations`: a `MountState` of a simulator
program's products (queried through the real archive adapter, astroquery over HTTP) and a real
`BlockCache` + `Fetcher` against the session simulator. A change to how the operations are
wired is a change to this fixture only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import pyfuse3
import pytest
import trio

from mastfs.archive import Archive, Query
from mastfs.core import Core
from mastfs.fs import MastOperations
from mastfs.headers import HeaderTexts
from mastfs.model import Product, User
from mastfs.selection import Selection
from mastfs.state import MountState
from tests.support import operations
from tests.support.cache import cache_on

Spawned = list[Callable[[], Awaitable[None]]]


class MakeOps(Protocol):
    def __call__(
        self,
        program: str = "2734",
        *,
        token: str | None = None,
        readable: set[str] | None = None,
        selection: Selection | None = None,
        layout: str = "nested",
        headers: bool = False,
        **cache_options: Any,
    ) -> AbstractAsyncContextManager[MastOperations]: ...


@pytest.fixture(autouse=True)
def _readdir_without_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pyfuse3.readdir_reply` fills a kernel buffer; here a `ReaddirToken` collects instead."""
    monkeypatch.setattr(pyfuse3, "readdir_reply", operations.readdir_reply)


@pytest.fixture(scope="session")
def program_products(
    sim_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str | None], tuple[list[Product], User | None]]:
    """(products, user) of a program as a mount queries them, one query per program and token."""
    cache_dir = tmp_path_factory.mktemp("ops-query-cache")
    found: dict[tuple[str, str | None], tuple[list[Product], User | None]] = {}

    def products(program: str, token: str | None) -> tuple[list[Product], User | None]:
        if (program, token) not in found:
            archive = Archive(sim_url, cache_dir, token)
            user = archive.login()
            result = archive.products(Query(programs=(program,)), progress=lambda _: None)
            found[program, token] = (list(result.products), user)
        return found[program, token]

    return products


@pytest.fixture
def spawned() -> Spawned:
    """The background jobs the operations asked for (kernel invalidations): recorded, not run."""
    return []


@pytest.fixture
def make_ops(
    sim_url: str,
    tmp_path: Path,
    program_products: Callable[[str, str | None], tuple[list[Product], User | None]],
    spawned: Spawned,
) -> MakeOps:
    """`async with make_ops("6543", token=..., readable={...}) as ops:` operations over a fresh
    cache directory. `readable` is the set of proposals the mount believes it may read (a mount
    learns it by probing); `headers` serves `headers/` (and starts background builds when a
    folder of it is listed); cache options (`readahead_max=0`, ...) go to the block cache."""
    count = 0

    @asynccontextmanager
    async def make(
        program: str = "2734",
        *,
        token: str | None = None,
        readable: set[str] | None = None,
        selection: Selection | None = None,
        layout: str = "nested",
        headers: bool = False,
        **cache_options: Any,
    ) -> AsyncIterator[MastOperations]:
        nonlocal count
        count += 1
        products, user = await trio.to_thread.run_sync(program_products, program, token)
        state = MountState(products, selection or Selection(), layout, user, readable)
        directory = tmp_path / f"cache-{count}"
        async with cache_on(directory, sim_url, token, **cache_options) as cache:
            if not headers:
                yield MastOperations(Core(state, cache), spawn=spawned.append)
                return
            # The texts of headers/, with their background builds in a nursery of the test's.
            async with trio.open_nursery() as nursery:
                core = Core(state, cache)
                texts = HeaderTexts(core, nursery)
                yield MastOperations(core, spawn=spawned.append, headers=texts)
                nursery.cancel_scope.cancel()

    return make


@pytest.fixture
async def ops(make_ops: MakeOps) -> AsyncIterator[MastOperations]:
    """Operations over program 2734 (public), anonymous, default selection, nested layout."""
    async with make_ops() as operations:
        yield operations
