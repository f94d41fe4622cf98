"""A `BlockCache` over a real `Fetcher`, against a simulator URL, for the core tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mastfs.cache import BlockCache
from mastfs.fetch import Fetcher, RetryPolicy
from tests.support.sim import FAST_RETRY


@asynccontextmanager
async def cache_on(
    directory: Path,
    url: str,
    token: str | None = None,
    retry: RetryPolicy = FAST_RETRY,
    **options: Any,
) -> AsyncIterator[BlockCache]:
    """An open cache in `directory` (1 GiB unless `size_limit` says otherwise); on exit it
    waits for its readahead to finish, then closes the cache and the fetcher."""
    options.setdefault("size_limit", 1 << 30)
    fetcher = Fetcher(url, token, retry)
    try:
        async with BlockCache.open_cache(fetcher, directory, **options) as cache:
            yield cache
            await cache.wait_idle()
    finally:
        fetcher.close()
