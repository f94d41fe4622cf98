"""Header texts of FITS products (`headers/`): read header by header, kept, fetched ahead.

A text is built by walking the product's headers (`fitsheaders.HeaderWalk`) with reads
through the core (`Core.open_product(..., headers=True)`): the access rule, the token, the
cache and the version rules of any product read apply, and every read of one build is of one
version of the product, so a text is never half of an old version and half of a new one (a
version change in the middle of a build starts it again, once). The reads go through the
header cache, whose blocks are small (`HEADER_BLOCK_SIZE`): a header costs one such block,
not a 1 MiB product block; a product of at most `WHOLE_MAX` bytes is read whole, in one
request through the product cache, where its headers would cost a round trip each. The bytes
read are not written to disk: the text is what is kept. Texts are kept in memory by (product,
version), those read within `TEXT_MEMORY` bytes, those built ahead of the readers within
`AHEAD_MEMORY` (`textmemory.py`), and on disk with the version
(`BlockCache.keep_derived`, compressed and checksummed): a remount serves them from there.

A folder of `headers/` that is listed (`listed`) and then read from (`reading`: a header text
beneath it is opened) queues the products beneath it, and up to `PARALLEL` builds run at once in
the background, so a `grep -r` finds most texts built when it opens them: walking a header needs
one round trip per block, and only many walks at once make a program's worth run at the link's
speed rather than its latency's. A listing alone (`ls -lR`, `find` over the whole mount) fetches
nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence

import trio

from mastfs.cache.flights import Flights
from mastfs.core import Core, OpenFile
from mastfs.fetch import BadResponse, FetchError, TransientError, VersionChanged
from mastfs.fitsheaders import FITS_BLOCK, HeaderError, HeaderWalk, render
from mastfs.model import Product
from mastfs.textmemory import TextMemory

log = logging.getLogger(__name__)

# Builds at once in the background. A build waits one round trip per header block; 64 at once
# keep a link of 80 ms round trips busy (docs/performance.md, "Headers").
PARALLEL = 64
# A product this small is read whole, in one request, through the product cache (its 1 MiB
# blocks then serve reads of the product too): at 80 ms a round trip and 25 MB/s a connection,
# 2 MiB cost what one more round trip does, and such products hold several HDUs whose headers
# would each cost one (a JWST `_cal.fits` of 1.75 MB: 14). Through the header cache it would
# be 28 blocks, each with the cache's per-block cost (docs/performance.md, "Headers").
WHOLE_MAX = 2 << 20
# Rendered texts kept in memory once read (their blocks are in the disk cache anyway), and
# texts built ahead of the readers (`textmemory.py`): the background builds wait when these
# fill their room, so a reader that stops reading holds at most this much.
TEXT_MEMORY = 32 << 20
AHEAD_MEMORY = 64 << 20
# Queued products, at most (a listing of a folder queues those beneath it).
MAX_QUEUED = 200_000
# Texts are kept on disk with their version's blocks under this name (`BlockCache.keep_derived`);
# a change to how texts are rendered changes the name, so older texts are not served.
TEXT_KIND = "header-text-1"


class HeaderTexts:
    """The header texts of one core's products.

    State: `_texts` (texts by dataURI with their version identity, `textmemory.TextMemory`),
    `_room` (background builds waiting for room ahead of the readers), `_flights` (builds in
    progress, shared by the readers that want the same text), `_queue`/`_queued` (products
    waiting for a background build), `_workers` (background builds running), all touched by
    the trio thread only.
    """

    def __init__(self, core: Core, nursery: trio.Nursery, parallel: int = PARALLEL) -> None:
        self.core = core
        self._nursery = nursery
        self._parallel = parallel
        self._texts = TextMemory(TEXT_MEMORY, AHEAD_MEMORY)
        self._room = trio.lowlevel.ParkingLot()
        self._flights: Flights[str, bytes] = Flights()
        self._queue: deque[Product] = deque()
        self._queued: set[str] = set()
        # Folders listed and not read from yet: inode -> (dataURIs beneath, products beneath).
        self._listed: dict[int, tuple[frozenset[str], Sequence[Product]]] = {}
        self._workers = 0
        # Fetches run in worker threads: as many as the builds, on top of the cache's own.
        limiter = trio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 40 + parallel)

    async def text(self, product: Product, *, background: bool = False) -> bytes:
        """The product's header text, of its current version (`NotAuthorized`, `NotFound`,
        `FetchError`, the last for a header that cannot be walked too)."""
        uri = product.dataURI
        while True:
            opened = await self._open(product)
            kept = self._texts.get(uri)
            if kept is not None and opened.version is not None:
                if kept[0] == opened.version.identity:
                    return self._had(uri, kept[1], background)
            flight, mine = self._flights.claim(uri, background)
            if not mine:
                value = await flight.wait()
                if value is not None:
                    return self._had(uri, value, background)
                continue  # abandoned, or a background failure: try for ourselves
            try:
                text = await self._build(opened, ahead=background)
            except BaseException as exc:
                self._flights.fail(uri, flight, exc)
                raise
            self._flights.resolve(uri, flight, text)
            return self._had(uri, text, background)

    def _had(self, uri: str, text: bytes, background: bool) -> bytes:
        """`text` goes to its caller; a reader's taking it makes room ahead."""
        if not background:
            self._texts.taken(uri)
            if not self._texts.ahead_full:
                self._room.unpark_all()
        return text

    async def _open(self, product: Product) -> OpenFile:
        return await self.core.open_product(product, headers=_by_header(product))

    async def _build(self, opened: OpenFile, *, ahead: bool) -> bytes:
        uri = opened.product.dataURI
        timeout = self.core.read_timeout
        if opened.version is not None:
            # Kept on disk by an earlier build of this version (this process or another).
            with trio.move_on_after(timeout):
                kept = await opened.cache.get_derived(opened.version, TEXT_KIND)
                if kept is not None:
                    self._texts.put(uri, opened.version.identity, kept, ahead=ahead)
                    return kept
        for attempt in (1, 2):
            try:
                with trio.move_on_after(timeout) as deadline:
                    text = await self._walk(opened)
                if deadline.cancelled_caught:
                    raise TransientError(f"{uri}: headers not read within {timeout:g} s")
            except VersionChanged:
                if attempt == 2:
                    raise
                log.info("%s changed while its headers were read: reading them again", uri)
                opened = await self._open(opened.product)
                continue
            except HeaderError as exc:
                log.warning("headers of %s cannot be read: %s", uri, exc)
                raise BadResponse(f"{uri}: {exc}") from None
            if opened.version is not None:  # bound by the first read
                self._texts.put(uri, opened.version.identity, text, ahead=ahead)
                opened.cache.keep_derived(opened.version, TEXT_KIND, text)
            return text
        raise AssertionError("unreachable")

    async def _walk(self, opened: OpenFile) -> bytes:
        size = opened.product.size
        walk = HeaderWalk(size)
        block = opened.cache.block_size
        whole = not _by_header(opened.product)
        while (at := walk.want()) is not None:
            if whole:
                length = size - at
            else:
                # The rest of the cache block holding `at`: it is fetched whole anyway.
                length = max(FITS_BLOCK, block - at % block)
            # The bytes are read for the text, once: the text is what is kept (`_build`), not
            # 1-2 MiB of a small product's data nor a run file per header block.
            walk.feed(at, await self.core.read_product(opened, at, length, keep=False))
        return render(walk.hdus)

    # -- ahead of the readers -----------------------------------------------------------------

    def listed(self, inode: int, beneath: Sequence[Product]) -> None:
        """A folder of `headers/` was listed: its products wait for a read among them."""
        if beneath and inode not in self._listed:
            self._listed[inode] = (frozenset(p.dataURI for p in beneath), beneath)

    def reading(self, product: Product) -> None:
        """A header text is opened: the listed folders holding it start their background
        builds, outermost (most products) first."""
        hit = [key for key, (uris, _) in self._listed.items() if product.dataURI in uris]
        for key in sorted(hit, key=lambda k: -len(self._listed[k][1])):
            self.prefetch(self._listed.pop(key)[1])

    def prefetch(self, products: Iterable[Product]) -> None:
        """Queue background builds of `products`' texts, in order (those not queued yet)."""
        for p in products:
            if len(self._queued) >= MAX_QUEUED:
                break
            if p.dataURI in self._queued or (p.is_exclusive and not self.core.can_read(p)):
                continue
            self._queued.add(p.dataURI)
            self._queue.append(p)
        while self._workers < min(self._parallel, len(self._queue)):
            self._workers += 1
            self._nursery.start_soon(self._work)

    async def _work(self) -> None:
        try:
            while self._queue:
                while self._texts.ahead_full:
                    await self._room.park()
                if not self._queue:
                    break
                product = self._queue.popleft()
                try:
                    await self.text(product, background=True)
                except FetchError as exc:
                    # A reader will meet (and report) the failure itself; a later listing
                    # may queue the product again.
                    log.debug("background headers of %s: %s", product.dataURI, exc)
                    self._queued.discard(product.dataURI)
                except Exception:
                    # Never let a background build take the mount down with it.
                    log.exception("background headers of %s", product.dataURI)
                    self._queued.discard(product.dataURI)
        finally:
            self._workers -= 1

    def stats(self) -> dict[str, int]:
        return {
            **self._texts.stats(),
            "queued": len(self._queue),
            "building": self._workers,
        }


def _by_header(product: Product) -> bool:
    """Whether a product's headers are read header by header, through the header cache; a
    small product is read whole, through the product cache (`WHOLE_MAX`)."""
    return product.size > WHOLE_MAX
