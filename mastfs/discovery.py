"""Finding a selection's calibration references (`--references`): primary headers, then CRDS.

`discover` reads the primary header of every selected FITS product of a mission with a CRDS
(`crds.DEFAULT_SERVERS`) through the core, as any read is made (access rules, token, header
cache, versions): mostly one header-cache block per product, `HEADER_PARALLEL` products at
once. An exclusive-access product this login cannot read is skipped. `references.references`
takes the `R_*` names and the CRDS context from each header. Then every distinct reference is
asked for once with a HEAD on its CRDS server (`HEAD_PARALLEL` at once), for its size and
version; a reference CRDS does not have (404) is left out, and a CRDS server that fails once
(no connection, 5xx after the retries) is asked nothing more, so a CRDS that is down costs one
`--timeout`, not one per reference. Every wait is bounded by `timeout`. The result is a
`calibration.Calibration`; nothing here fails the mount: what is missing is said in one warning
(`add_references`), the details of each failure in the log.
"""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mastfs import crds
from mastfs.calibration import Calibration, reference_product
from mastfs.core import Core, open_core
from mastfs.fetch import Fetcher, FetchError, NotFound, RemoteInfo, RetryPolicy
from mastfs.fitsheaders import FITS_BLOCK, Hdu, HeaderError, HeaderWalk
from mastfs.model import Product
from mastfs.references import References, references
from mastfs.session import Progress
from mastfs.sources import Sources
from mastfs.state import MountState
from mastfs.tree import has_header

log = logging.getLogger(__name__)

# Primary headers read at once: each waits one round trip per header-cache block.
HEADER_PARALLEL = 32
# HEADs to a CRDS server at once.
HEAD_PARALLEL = 16
# Seconds between two progress lines.
PROGRESS_EVERY = 2.0
# The disk cache bound of a session that is not mounted (the mount's default).
DEFAULT_CACHE_SIZE = 50 << 30


def candidates(
    selected: Sequence[Product], servers: Mapping[str, crds.CrdsServer], core: Core
) -> list[Product]:
    """The distinct products whose primary header is read: FITS files of a mission with a
    CRDS that this login may read, in selection order."""
    found: dict[str, Product] = {}
    for p in selected:
        if p.dataURI in found or crds.is_crds_uri(p.dataURI) or not has_header(p):
            continue
        if crds.server_for(servers, p.obs_collection) is None:
            continue
        if p.is_exclusive and not core.can_read(p):
            continue
        found[p.dataURI] = p
    return list(found.values())


async def primary_header(core: Core, product: Product) -> Hdu:
    """The product's primary header, read through the core's header cache (`FetchError`,
    `HeaderError`)."""
    opened = await core.open_product(product, headers=True)
    walk = HeaderWalk(product.size)
    block = opened.cache.block_size
    try:
        while not walk.hdus and (at := walk.want()) is not None:
            length = max(FITS_BLOCK, block - at % block)
            walk.feed(at, await core.read_product(opened, at, length))
    except HeaderError:
        # The bytes fed after the primary header may start a bad extension: not ours to judge.
        if not walk.hdus:
            raise
    if not walk.hdus:
        raise HeaderError("no primary header")
    return walk.hdus[0]


@dataclass
class _Scan:
    """What the header reads found so far (trio thread only)."""

    total: int
    named: dict[str, References] = field(default_factory=dict)
    observatories: dict[str, str] = field(default_factory=dict)
    done: int = 0
    unread: int = 0
    shown_at: float = -math.inf


async def _read_headers(
    core: Core,
    products: Sequence[Product],
    servers: Mapping[str, crds.CrdsServer],
    reporter: Progress,
    timeout: float,
    parallel: int,
) -> _Scan:
    scan = _Scan(len(products))
    # Each read waits in a worker thread of the cache's fetcher: as many more as the reads.
    limiter = trio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(limiter.total_tokens, 40 + parallel)
    send, receive = trio.open_memory_channel[Product](math.inf)
    for p in products:
        send.send_nowait(p)
    send.close()

    def progress(final: bool = False) -> None:
        now = trio.current_time()
        if final or now - scan.shown_at >= PROGRESS_EVERY:
            scan.shown_at = now
            reporter.progress(f"references: {scan.done}/{scan.total} headers")

    async def worker() -> None:
        async for product in receive:
            uri = product.dataURI
            with trio.move_on_after(timeout) as deadline:
                try:
                    hdu = await primary_header(core, product)
                except (FetchError, HeaderError) as exc:
                    log.info("references: primary header of %s not read: %s", uri, exc)
                    scan.unread += 1
                else:
                    refs = references(hdu)
                    if refs.rejected:
                        log.info(
                            "references: %s names no plain reference file in %s",
                            uri,
                            ", ".join(refs.rejected),
                        )
                    if refs.files or refs.context:
                        server = crds.server_for(servers, product.obs_collection)
                        assert server is not None
                        scan.named[uri] = refs
                        scan.observatories[uri] = server.observatory
            if deadline.cancelled_caught:
                log.info("references: primary header of %s not read within %g s", uri, timeout)
                scan.unread += 1
            scan.done += 1
            progress()

    progress()
    async with trio.open_nursery() as nursery:
        for _ in range(min(parallel, len(products))):
            nursery.start_soon(worker)
    progress(final=True)
    return scan


def _mtime(info: RemoteInfo) -> float:
    if not info.last_modified:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(info.last_modified).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


# What the cache recorded of a URI's version (None: nothing), for a CRDS that does not answer.
Recorded = Callable[[str], Awaitable[RemoteInfo | None]]


async def _ask_crds(
    fetcher: Fetcher,
    wanted: Mapping[str, set[str]],
    servers: Mapping[str, crds.CrdsServer],
    timeout: float,
    parallel: int,
    recorded: Recorded,
) -> tuple[dict[str, Product], dict[str, str], set[str]]:
    """HEAD each reference URI of `wanted` (URI -> the keywords naming it) once: the products
    of those CRDS has, why the others are missing, and which were shown as the cache
    recorded them because their CRDS did not answer (an offline remount: their blocks are
    read from the cache as any product's are)."""
    by_observatory = {s.observatory: s for s in servers.values()}
    files: dict[str, Product] = {}
    missing: dict[str, str] = {}
    from_cache: set[str] = set()
    # Observatory -> why its server is asked nothing more; and the HEADs under way to it.
    down: dict[str, str] = {}
    asking: dict[str, set[trio.CancelScope]] = {}
    limiter = trio.CapacityLimiter(parallel)

    async def unanswered(uri: str, server: crds.CrdsServer, name: str, why: str) -> None:
        known = await recorded(uri)
        if known is None:
            missing[uri] = why
            return
        files[uri] = reference_product(server, name, known.size, wanted[uri], _mtime(known))
        from_cache.add(uri)

    async def ask(uri: str) -> None:
        observatory, name = crds.split_uri(uri)
        server = by_observatory[observatory]
        async with limiter:
            if observatory in down:
                await unanswered(uri, server, name, down[observatory])
                return
            scope = trio.CancelScope(deadline=trio.current_time() + timeout)
            asking.setdefault(observatory, set()).add(scope)
            try:
                with scope:
                    info = await fetcher.head(uri)
                    files[uri] = reference_product(
                        server, name, info.size, wanted[uri], _mtime(info)
                    )
                    return
            except NotFound:
                missing[uri] = f"not on {server.url}"
                return
            except FetchError as exc:
                log.info("references: %s: %s", server.url, exc)
                down.setdefault(observatory, f"{server.url} unavailable")
            finally:
                asking[observatory].discard(scope)
            if scope.cancelled_caught and observatory not in down:
                log.info("references: %s did not answer within %g s", server.url, timeout)
                down[observatory] = f"{server.url} did not answer within {timeout:g} s"
            for other in asking[observatory]:
                other.cancel()
            await unanswered(uri, server, name, down[observatory])

    async with trio.open_nursery() as nursery:
        for uri in sorted(wanted):
            nursery.start_soon(ask, uri)
    return files, missing, from_cache


async def discover(
    core: Core,
    fetcher: Fetcher,
    servers: Mapping[str, crds.CrdsServer],
    reporter: Progress,
    *,
    timeout: float,
    header_parallel: int = HEADER_PARALLEL,
    head_parallel: int = HEAD_PARALLEL,
) -> Calibration:
    """The references of the core's selected products (see the module docstring); `fetcher`
    asks CRDS (`sources.Sources` with its CRDS servers, or a `sources.CrdsFetcher`)."""
    products = candidates(core.snapshot.selected, servers, core)
    scan = await _read_headers(core, products, servers, reporter, timeout, header_parallel)
    wanted: dict[str, set[str]] = {}
    for uri, refs in scan.named.items():
        for keyword, name in refs.files.items():
            ref = crds.reference_uri(scan.observatories[uri], name)
            wanted.setdefault(ref, set()).add(keyword)
    files, missing, from_cache = await _ask_crds(
        fetcher, wanted, servers, timeout, head_parallel, core.recorded_version
    )
    return Calibration(
        scan.named, scan.observatories, files, missing, scan.unread, frozenset(from_cache)
    )


async def add_references(
    core: Core,
    fetcher: Fetcher,
    servers: Mapping[str, crds.CrdsServer],
    reporter: Progress,
    timeout: float,
) -> Calibration:
    """Find the selected products' references and show them (`MountState.add_calibration`):
    a progress line says what was found, one warning what is missing; nothing fails."""
    calibration = await discover(core, fetcher, servers, reporter, timeout=timeout)
    await trio.to_thread.run_sync(core.state.add_calibration, calibration)
    reporter.progress(summary(calibration))
    text = warning(calibration)
    if text:
        reporter.warning(text)
    return calibration


async def references_of_session(
    state: MountState,
    *,
    server: str,
    token: str | None,
    cache_dir: Path,
    servers: Mapping[str, crds.CrdsServer],
    reporter: Progress,
    timeout: float,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> Calibration:
    """`add_references` for a query session that is not mounted (`mastfs ls --references`),
    through a core and fetcher of its own, closed before returning."""
    fetcher = Sources(
        server, token, RetryPolicy(deadline=timeout), timeout=timeout, crds_servers=servers
    )
    try:
        async with open_core(
            state, fetcher, cache_dir=cache_dir, cache_size=cache_size, read_timeout=timeout
        ) as core:
            return await add_references(core, fetcher, servers, reporter, timeout)
    finally:
        fetcher.close()


def warning(calibration: Calibration) -> str | None:
    """The one warning line about what `references/` lacks, None when it lacks nothing."""
    notes = calibration.notes()
    return "; ".join(notes) if notes else None


def summary(calibration: Calibration) -> str:
    """`references: 31 reference files (412 MB) named by 40 products`."""
    from mastfs.selection import format_bytes

    n = len(calibration.files)
    size = sum(p.size for p in calibration.files.values())
    noun = "reference file" if n == 1 else "reference files"
    return (
        f"references: {n} {noun} ({format_bytes(size)}) named by {len(calibration.named)} products"
    )
