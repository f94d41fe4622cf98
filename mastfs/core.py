"""The core a front end drives: a query's products, selected and laid out, readable by range.

`Core` joins the mount state (selection -> tree and views, `state.MountState`) to the block
cache (`cache.BlockCache`, which reads through `fetch.Fetcher` with the token) and keeps the
rules between them in one place: who may open a product, which failures the manifest shows and
when it stops showing them, re-selection off the event loop. It does not know FUSE exists:
`fs.py` is one front end of it; anything else that reads products (an fsspec filesystem, a
warm-up command) drives the same object, with the same cache, versions, token and selection.

Front ends that keep their own copies of product bytes (the kernel's page cache) register as
`Listener`s to hear when a product's contents changed and to receive readahead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from mastfs.cache import (
    DEFAULT_METADATA_TTL,
    HEADER_BLOCK_SIZE,
    Block,
    BlockCache,
    Version,
)
from mastfs.fetch import Fetcher, FetchError, NotAuthorized, RemoteInfo, TransientError
from mastfs.model import Product
from mastfs.selection import Selection, format_summary
from mastfs.state import MountState, Snapshot

log = logging.getLogger(__name__)

# The header cache's memory tier: its blocks are small and read once per build.
HEADER_MEMORY_LIMIT = 16 << 20


class Listener(Protocol):
    """A front end that holds product bytes of its own (FUSE: the kernel's page cache)."""

    def content_changed(self, dataURI: str) -> None:
        """The archive changed a product's bytes: drop what is held of them."""

    def store_prefetched(self, dataURI: str, offset: int, data: Block) -> None:
        """Readahead bytes of a product (called in a worker thread)."""


@dataclass(eq=False)
class OpenFile:
    """A product opened for reading: every read is of `version` (learned by the first read when
    nothing was known at open) or fails with `VersionChanged`."""

    product: Product
    version: Version | None
    # The block cache it reads through: the products' (1 MiB blocks), or the headers' (small
    # blocks, `HEADER_BLOCK_SIZE`).
    cache: BlockCache


class Core:
    """One query's products and their bytes, for any front end."""

    def __init__(
        self,
        state: MountState,
        cache: BlockCache,
        read_timeout: float = math.inf,
        header_cache: BlockCache | None = None,
    ) -> None:
        self.state = state
        self.cache = cache
        # Reads of FITS headers, which want a few KiB here and there, not whole 1 MiB blocks.
        self.header_cache = header_cache or cache
        # Every read returns data or fails within this many seconds, stalls included.
        self.read_timeout = read_timeout
        self.listeners: list[Listener] = []

    @property
    def snapshot(self) -> Snapshot:
        return self.state.snapshot

    def can_read(self, product: Product) -> bool:
        return self.state.can_read(product)

    # -- product bytes ---------------------------------------------------------------------------

    async def open_product(self, product: Product, *, headers: bool = False) -> OpenFile:
        """Check that the product may be read, revalidate it when the archive last confirmed it
        more than `--metadata-ttl` ago, and bind the open file to its current version
        (`NotAuthorized`, `NotFound`). With `headers`, reads go through the header cache.

        Exclusive-access products of proposals this login cannot read are refused without
        asking the archive.
        """
        if product.is_exclusive and not self.state.can_read(product):
            self.state.record_error(product.dataURI, "not authorized")
            raise NotAuthorized(f"{product.dataURI}: not authorized", 401)
        cache = self.header_cache if headers else self.cache
        try:
            version = await cache.open(product.dataURI, product.size)
        except NotAuthorized:
            self.state.record_error(product.dataURI, "not authorized")
            raise
        return OpenFile(product, version, cache)

    async def product_at(self, dataURI: str) -> Product:
        """A product named by its MAST URI alone, outside the query (fsspec's `mast://` URLs):
        its size from the version the cache knows or from one HEAD (`BlockCache.probe`). Read
        like any other product; its access is what the archive answers."""
        version = await self.cache.probe(dataURI)
        mission, _, rest = dataURI.removeprefix("mast:").partition("/")
        return Product(
            dataURI=dataURI,
            productFilename=rest.rpartition("/")[2],
            obs_id="",
            obs_collection=mission,
            size=version.size,
        )

    async def read_product(
        self, opened: OpenFile, offset: int, length: int, *, keep: bool = True
    ) -> Block:
        """Up to `length` bytes at `offset` of the open file's version; a failure is shown in
        the manifest until the product reads again. `keep=False`: the bytes fetched go to this
        read only, neither to the memory tier nor to the disk cache (`BlockCache.read`)."""
        product = opened.product
        if offset >= product.size:
            return b""
        length = min(length, product.size - offset)
        try:
            with trio.move_on_after(self.read_timeout) as deadline:
                data = await opened.cache.read(
                    product.dataURI, product.size, offset, length, opened.version, keep=keep
                )
            if deadline.cancelled_caught:
                raise TransientError(
                    f"{product.dataURI}: no answer from the archive within "
                    f"{self.read_timeout:g} s (bytes {offset}-{offset + length - 1})"
                )
        except NotAuthorized:
            self.state.record_error(product.dataURI, "not authorized")
            raise
        except FetchError as exc:
            log.warning(
                "read failed: %s bytes %d-%d: %s", product.dataURI, offset, offset + length, exc
            )
            self.state.record_error(product.dataURI, str(exc) or type(exc).__name__)
            raise
        if opened.version is None:
            opened.version = opened.cache.current_version(product.dataURI)
        self.state.clear_error(product.dataURI)
        return data

    # -- what is shown ---------------------------------------------------------------------------

    async def render_views(self, snap: Snapshot) -> None:
        """Render a stale manifest in a worker thread (~50 ms for 10,000 products), never on
        the event loop every request waits for; `virtual_content` then finds it cached."""
        if not self.state.manifest_current(snap):
            await trio.to_thread.run_sync(self.state.manifest, snap)

    def virtual_content(self, name: str, snap: Snapshot) -> bytes:
        return self.state.virtual_content(name, snap)

    async def reselect(self, selection: Selection) -> tuple[Snapshot, Snapshot]:
        """Compute the new selection's snapshot in a worker thread and swap it in; (old, new)."""
        old = self.state.snapshot
        new = await trio.to_thread.run_sync(self.state.reselect, selection)
        return old, new

    def summary_text(self) -> str:
        return format_summary(self.state.snapshot.summary, self.state.user)

    def stats(self) -> dict[str, int]:
        """The block cache's counters, and the header cache's prefixed `headers.`."""
        stats = self.cache.stats()
        if self.header_cache is not self.cache:
            stats.update({f"headers.{k}": v for k, v in self.header_cache.stats().items()})
        return stats

    async def recorded_version(self, dataURI: str) -> RemoteInfo | None:
        """What this process or the disk cache knows of the URI's current version (no request)."""
        version = await self.cache.versions.load(dataURI)
        return version.info if version is not None else None

    async def cached_bytes(self, product: Product) -> int:
        """Bytes of the product's current version in the disk cache."""
        return await self.cache.cached_bytes(product.dataURI, product.size)

    # -- listeners (called by the cache) ---------------------------------------------------------

    def _content_changed(self, dataURI: str) -> None:
        for listener in self.listeners:
            listener.content_changed(dataURI)

    def _prefetched(self, dataURI: str, offset: int, data: Block) -> None:
        for listener in self.listeners:
            listener.store_prefetched(dataURI, offset, data)


@asynccontextmanager
async def open_core(
    state: MountState,
    fetcher: Fetcher,
    *,
    cache_dir: Path,
    cache_size: int,
    nursery: trio.Nursery | None = None,
    read_timeout: float = math.inf,
    limit_token: bool = True,
    header_cache: bool = True,
    **cache_options: Any,
) -> AsyncIterator[Core]:
    """A `Core` over `state` reading through `fetcher` (the caller's: it carries the server,
    the token and the retry policy) into a block cache closed on exit.

    From here on the fetcher sends the token only for the exclusive-access products of
    `state`: a public product, which anyone sharing the mount may read, is fetched without it.
    Without `limit_token` (a front end that reads products by URI, outside any query, in its
    user's own process), every request to the archive's origin carries it, as astroquery's do.
    Blocks live in `cache_dir/blocks`, shared by every process using the same directory;
    those read for FITS headers in `cache_dir/headers`, a cache of small blocks (a sixteenth of
    `cache_size`), unless `header_cache` is false.
    """
    if limit_token:
        fetcher.limit_token_to(p.dataURI for p in state.available if p.is_exclusive)
    holder: list[Core] = []

    def changed(uri: str) -> None:
        for core in holder:
            core._content_changed(uri)

    def prefetched(uri: str, offset: int, data: Block) -> None:
        for core in holder:
            core._prefetched(uri, offset, data)

    async with AsyncExitStack() as stack:
        cache = await stack.enter_async_context(
            BlockCache.open_cache(
                fetcher,
                cache_dir / "blocks",
                size_limit=cache_size,
                nursery=nursery,
                on_change=changed,
                on_prefetched=prefetched,
                **cache_options,
            )
        )
        headers = None
        if header_cache:
            headers = await stack.enter_async_context(
                BlockCache.open_cache(
                    fetcher,
                    cache_dir / "headers",
                    size_limit=max(cache_size // 16, 64 * HEADER_BLOCK_SIZE),
                    nursery=nursery,
                    block_size=HEADER_BLOCK_SIZE,
                    readahead_max=0,
                    memory_limit=HEADER_MEMORY_LIMIT,
                    metadata_ttl=cache_options.get("metadata_ttl", DEFAULT_METADATA_TTL),
                )
            )
        core = Core(state, cache, read_timeout, header_cache=headers)
        holder.append(core)
        yield core
