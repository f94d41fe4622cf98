"""The query session every front end starts with: log in, query, probe access, build the state.

`mastfs mount` serves the result through FUSE and `mastfs ls` prints it; both get it from
`open_session`, which knows nothing of either. Blocking archive calls run in worker threads;
progress and warnings go to the caller's `Progress`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from mastfs import archive as archive_mod
from mastfs.archive_http import Limits
from mastfs.fetch import Fetcher, FetchError, NotAuthorized, RetryPolicy
from mastfs.model import Product, User
from mastfs.selection import Selection, unmatched_values
from mastfs.state import MountState

log = logging.getLogger(__name__)


class Progress(Protocol):
    def progress(self, text: str) -> None: ...
    def warning(self, text: str) -> None: ...


class SessionError(Exception):
    """A query that cannot be answered; the message is one line for the user."""


@dataclass(frozen=True)
class Session:
    """A query's products as one login sees them, and the selection state built from them.

    `readable` holds the proposals whose exclusive-access files this login may read (empty when
    the result came from the offline cache: nothing was probed). `state` starts with the
    session's selection; a front end may re-select it later.
    """

    archive: archive_mod.Archive
    query: archive_mod.Query
    user: User | None
    result: archive_mod.QueryResult
    readable: frozenset[str]
    state: MountState

    @property
    def unreadable_warning(self) -> str | None:
        """The warning about selected files this login cannot read, if there are any."""
        unreadable = self.state.snapshot.summary.unreadable_files
        if not unreadable:
            return None
        who = (
            "without an authorized MAST token"
            if self.user is None
            else f"by {self.user.display_name}"
        )
        return f"{unreadable} selected exclusive-access files cannot be read {who}"

    def unmatched_warnings(self) -> list[str]:
        """One warning per filter value that matches no product of the query.

        Groups and extensions are open vocabularies: a typo selects nothing, so say which.
        """
        selection = self.state.snapshot.selection
        return [
            f"{value} matches no file of {self.query.describe()}"
            for value in unmatched_values(self.result.products, selection)
        ]


async def open_session(
    query: archive_mod.Query,
    selection: Selection,
    *,
    server: str,
    token: str | None,
    cache_dir: Path,
    layout: str,
    reporter: Progress,
    fetcher: Fetcher | None = None,
    limits: Limits | None = None,
    resolver: str = archive_mod.DEFAULT_RESOLVER,
) -> Session:
    """Log in, query (falling back to the cached result offline), probe access, build state.

    `fetcher` (for `server` and `token`) is used for the access probe; without one, a
    short-lived fetcher is made and closed here. `limits` bound every archive request and
    answer (`archive_http.Limits`; the defaults without). `resolver`: where `--target` names are
    resolved first (`resolver.py`).
    """
    limits = limits or Limits()
    archive = archive_mod.Archive(server, cache_dir, token, limits, resolver)
    user: User | None = None
    unchecked: archive_mod.ArchiveUnreachable | None = None
    try:
        user = await trio.to_thread.run_sync(archive.login)
    except archive_mod.ArchiveUnreachable as exc:
        # Maybe offline: the cached query result may still serve; products() decides.
        unchecked = exc
    except archive_mod.ArchiveError as exc:
        raise SessionError(str(exc)) from exc
    try:
        result = await trio.to_thread.run_sync(archive.products, query, reporter.progress)
    except archive_mod.ArchiveError as exc:
        raise SessionError(str(exc)) from exc
    if unchecked is not None and token:
        reporter.warning(f"{unchecked}: the MAST token could not be checked")
    for note in result.notes:
        reporter.warning(note)

    readable: set[str] = set()
    if not result.from_cache:
        if fetcher is not None:
            readable = await probe_readable(fetcher, result.products)
        else:
            readable = await probe_readable_at(server, token, result.products, limits.timeout)
    # Selecting and building the tree takes a while for big programs: not on the trio thread.
    state = await trio.to_thread.run_sync(
        functools.partial(MountState, result.products, selection, layout, user, readable)
    )
    # Only now: writing the result to the cache would have slowed the building of the state.
    archive.keep_results()
    return Session(archive, query, user, result, frozenset(readable), state)


async def probe_readable(fetcher: Fetcher, products: Sequence[Product]) -> set[str]:
    """Proposals whose exclusive-access files this login may read: one HEAD per proposal."""
    readable: set[str] = set()
    for proposal, uri in archive_mod.proposals_with_exclusive(products).items():
        if not fetcher.has_token:
            continue
        try:
            # One attempt: this only sets the summary; reads learn the truth themselves.
            await fetcher.head(uri, retry=False)
        except NotAuthorized:
            continue
        except FetchError as exc:
            log.warning("could not check access to program %s: %s", proposal, exc)
            continue
        readable.add(proposal)
    return readable


async def probe_readable_at(
    server: str, token: str | None, products: Sequence[Product], timeout: float = 30.0
) -> set[str]:
    """`probe_readable` with a fetcher of its own (each request within `timeout` seconds),
    closed before returning."""
    fetcher = Fetcher(server, token, RetryPolicy(deadline=timeout), timeout=timeout)
    try:
        return await probe_readable(fetcher, products)
    finally:
        fetcher.close()
