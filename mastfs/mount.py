"""Wiring of one mount: query session, HTTP client, block cache, FUSE session, teardown.

Everything is entered into one `AsyncExitStack`, so teardown runs in reverse order whatever
fails. Progress and the final outcome go to a `Reporter`: the foreground process prints them; a
background daemon writes them to the pipe its parent waits on (see `daemon.py`).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyfuse3
import trio

from mastfs import archive as archive_mod
from mastfs import crds, discovery, notify, runtime, status, system
from mastfs.cache import DEFAULT_METADATA_TTL
from mastfs.core import open_core
from mastfs.datacache import DataCacheSpec
from mastfs.fetch import RetryPolicy
from mastfs.fs import MastOperations
from mastfs.headers import HeaderTexts
from mastfs.mountpoint import MountError
from mastfs.ownership import Ownership
from mastfs.selection import Selection, SelectionError, format_summary
from mastfs.session import Progress, SessionError, open_session
from mastfs.sources import Sources

log = logging.getLogger(__name__)

DEFAULT_READAHEAD_KB = 1024


class Reporter(Progress, Protocol):
    def ready(self, text: str) -> None: ...


@dataclass
class MountOptions:
    mountpoint: Path
    query: archive_mod.Query
    selection: Selection
    server: str
    layout: str = "nested"
    cache_dir: Path = Path()
    cache_size: int = 50 << 30
    # Not in repr: an options object may be logged or shown in a traceback.
    token: str | None = field(default=None, repr=False)
    readahead_kb: int = DEFAULT_READAHEAD_KB
    metadata_ttl: float = DEFAULT_METADATA_TTL
    allow_other: bool = False
    # Owner and modes of the entries (`--uid/--gid/--umask/...`); None: the mounting user's.
    ownership: Ownership | None = None
    # Bounds on the archive's requests and answers; `limits.timeout` also bounds every read.
    limits: archive_mod.Limits = field(default_factory=archive_mod.Limits)
    # The name resolver `--target` asks first (`resolver.py`).
    resolver: str = archive_mod.DEFAULT_RESOLVER
    debug: bool = False
    # Set by `mastfs demo`: starts a server inside the daemon and returns its URL, which
    # replaces `server`.
    start_server: Callable[[AsyncExitStack], str] | None = None
    # `--metrics`: (host, port) of the Prometheus endpoint, off when None.
    metrics: tuple[str, int] | None = None
    # Where public products' bytes come from besides the archive (`sources.Sources`).
    data_cache: DataCacheSpec | None = None
    cloud_url: str | None = None
    # `--references`: the CRDS servers of the missions, by mission; None: no `references/`.
    crds_servers: dict[str, crds.CrdsServer] | None = None


# -- the mount itself --------------------------------------------------------------------------


async def serve(opts: MountOptions, reporter: Reporter) -> None:
    """Query, mount, serve until unmounted or signalled; MountError for the user's mistakes."""
    async with AsyncExitStack() as stack:
        if opts.start_server is not None:
            opts.server = opts.start_server(stack)
        timeout = opts.limits.timeout
        fetcher = Sources(
            opts.server,
            opts.token,
            RetryPolicy(deadline=timeout),
            timeout=timeout,
            data_cache=opts.data_cache,
            cloud_url=opts.cloud_url,
            crds_servers=opts.crds_servers,
        )
        stack.callback(fetcher.close)
        try:
            session = await open_session(
                opts.query,
                opts.selection,
                server=opts.server,
                token=opts.token,
                cache_dir=opts.cache_dir,
                layout=opts.layout,
                reporter=reporter,
                fetcher=fetcher,
                limits=opts.limits,
                resolver=opts.resolver,
            )
        except (SessionError, SelectionError) as exc:
            raise MountError(str(exc)) from exc
        state, user, result = session.state, session.user, session.result
        if session.unreadable_warning:
            reporter.warning(session.unreadable_warning)

        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        core = await stack.enter_async_context(
            open_core(
                state,
                fetcher,
                cache_dir=opts.cache_dir,
                cache_size=opts.cache_size,
                nursery=nursery,
                read_timeout=opts.limits.timeout,
                metadata_ttl=opts.metadata_ttl,
            )
        )
        if opts.crds_servers is not None:
            await discovery.add_references(core, fetcher, opts.crds_servers, reporter, timeout)
        # Rendered now, so the first listing of the root does not wait for it (~50 ms for
        # 10,000 products).
        await trio.to_thread.run_sync(state.manifest)
        summary = state.snapshot.summary

        def spawn(fn: Callable[[], Awaitable[None]]) -> None:
            nursery.start_soon(fn)

        # The FUSE front end: it drops the kernel's pages of a product whose content changed
        # and takes readahead into them.
        ownership = opts.ownership or Ownership.build(
            os.getuid(), os.getgid(), private_views=bool(opts.token)
        )
        info = status.MountInfo(
            str(opts.mountpoint),
            opts.query.describe(),
            opts.server,
            str(opts.cache_dir),
            os.getpid(),
            time.time(),
        )
        report = status.reused(functools.partial(status.gather, core, info))
        headers = HeaderTexts(core, nursery)
        ops = MastOperations(
            core, spawn=spawn, ownership=ownership, status=report, headers=headers
        )
        if opts.metrics is not None:
            from mastfs import metrics  # prometheus_client: only when asked for

            try:
                stack.enter_context(metrics.serving(core, opts.metrics))
            except OSError as exc:
                host, port = opts.metrics
                raise MountError(
                    f"cannot serve metrics at {host}:{port}: {exc.strerror or exc}"
                ) from exc
        core.listeners.append(ops)
        options = set(pyfuse3.default_options)
        # Not `ro`: the kernel refuses setxattr on a read-only mount before asking us, and
        # `mastfs select` works by setting `user.mastfs.selection` on the root. Every
        # operation that would write answers EROFS in fs.py instead.
        options |= {"fsname=mastfs", "subtype=mastfs", "noatime"}
        # The kernel enforces the entries' owners and modes (`ownership.py`): with
        # `allow_other`, another user must not read the owner's exclusive-access files.
        options.add("default_permissions")
        if opts.allow_other:
            options.add("allow_other")
        if opts.debug and os.environ.get("MASTFS_FUSE_DEBUG"):
            options.add("debug")
        try:
            pyfuse3.init(ops, str(opts.mountpoint), options)
        except RuntimeError as exc:
            raise MountError(f"cannot mount {opts.mountpoint}: {exc}") from exc
        # Unmounted on the way out only when the main loop ended normally (unmounted or
        # signalled); after a crash the mount point is left for `mastfs umount`, as s3ql does.
        clean_exit = False

        def close() -> None:
            pyfuse3.close(unmount=clean_exit)

        stack.callback(close)
        nursery.start_soon(tune_readahead, opts.mountpoint, opts.readahead_kb)
        nursery.start_soon(_terminate_on_signals)
        pid = runtime.write_pid(opts.mountpoint)
        stack.callback(lambda: pid.unlink(missing_ok=True))
        who = user.display_name if user else "anonymous"
        mounted = (
            f"mounted {opts.query.describe()} at {opts.mountpoint} ({opts.layout}, {who}): "
            f"{format_summary(summary, user)}"
            + (" [offline: query result from cache]" if result.from_cache else "")
        )
        reporter.ready(mounted)
        # Run by systemd in the foreground (a background daemon's parent tells it instead).
        notify.ready(mounted)
        stack.callback(notify.stopping)
        await pyfuse3.main()
        clean_exit = True
        log.info("unmounted %s", opts.mountpoint)


async def _terminate_on_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            pyfuse3.terminate()
            return


async def tune_readahead(mountpoint: Path, readahead_kb: int) -> None:
    """Raise the FUSE connection's readahead above the kernel's 128 KiB default.

    Buffered reads reach a FUSE filesystem in requests of at most `read_ahead_kb`; pyfuse3's
    per-request overhead dominates at 128 KiB (docs/performance.md). The kernel sets the value
    when it processes the reply to FUSE INIT, which happens after `pyfuse3.main()` starts, so the
    value is written until it reads back. Needs root; without it the kernel default stays and
    `--debug` says so.
    """
    if readahead_kb <= 0:
        return
    if system.device_of(mountpoint) is None:
        log.debug("readahead: %s not found in mountinfo", mountpoint)
        return
    for _ in range(100):
        await trio.sleep(0.02)
        try:
            if system.set_readahead_kb(mountpoint, readahead_kb):
                log.debug("readahead: %s = %d KiB", mountpoint, readahead_kb)
                break
        except (OSError, ValueError) as exc:
            reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else exc
            log.debug(
                "readahead: cannot raise it for %s (%s); kernel default applies", mountpoint, reason
            )
            return
    else:
        log.debug("readahead: %s did not keep %d KiB", mountpoint, readahead_kb)
    system.tune_fuse_connection(mountpoint)
