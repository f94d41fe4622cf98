"""Pure: the site cache tier (`--data-cache`), parsed, and which of its caches to use now.

The syntax and the behaviour are CVMFS's `CVMFS_HTTP_PROXY`: `URL|URL;URL;DIRECT` is a list of
groups separated by `;`; within a group (`|`) each node picks one cache at random and keeps it
(load balancing across the nodes of a cluster), moving to another of the group when its pick
fails; when a whole group has failed, the next group is used; `DIRECT` (only last) lets the
bytes come from the archive itself when every cache has failed. After `reset_after` seconds
on a fail-over, the failures are forgotten and the first choice is tried again
(`CVMFS_PROXY_RESET_AFTER`).

A cache here is a reverse proxy in front of the archive (docs/scale-out.md): mastfs asks it
`URL/api/v0.1/Download/file?uri=...` exactly as it would ask the archive. Nothing here does
I/O; the clock is passed in, so the fail-over is unit-tested without waiting.
"""

from __future__ import annotations

import random
import urllib.parse
from dataclasses import dataclass, field

DIRECT = "DIRECT"
# Seconds after a fail-over before the first choice is tried again (CVMFS's default is 300).
DEFAULT_RESET_AFTER = 300.0


class DataCacheError(ValueError):
    """A `--data-cache` value that cannot be used; the message names the offending part."""


@dataclass(frozen=True, slots=True)
class DataCacheSpec:
    """Groups of cache base URLs, in order of preference, and whether DIRECT is the last resort."""

    groups: tuple[tuple[str, ...], ...]
    direct: bool

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(url for group in self.groups for url in group)


def _cache_url(text: str) -> str:
    """One cache's base URL, normalised (no trailing `/`); `DataCacheError` names a bad one."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise DataCacheError(f"--data-cache: {text!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise DataCacheError(f"--data-cache: {text!r} has a user name or password in it")
    if parts.query or parts.fragment:
        raise DataCacheError(f"--data-cache: {text!r} has a query or fragment")
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError as exc:
        raise DataCacheError(f"--data-cache: {text!r} has a bad port") from exc
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", "")
    )


def parse_data_cache(text: str) -> DataCacheSpec:
    """`URL[|URL...][;URL[|URL...]...][;DIRECT]` as a spec; `DataCacheError` for a bad one."""
    if not text.strip():
        raise DataCacheError("--data-cache: no cache URL in ''")
    groups: list[tuple[str, ...]] = []
    direct = False
    raw_groups = text.strip().split(";")
    for position, raw in enumerate(raw_groups):
        members = [m.strip() for m in raw.split("|")]
        if any(not m for m in members):
            raise DataCacheError(f"--data-cache: empty cache URL in {text!r}")
        if any(m.upper() == DIRECT for m in members):
            if members != [DIRECT] and [m.upper() for m in members] != [DIRECT]:
                raise DataCacheError(f"--data-cache: DIRECT must be a group of its own: {raw!r}")
            if position != len(raw_groups) - 1:
                raise DataCacheError(f"--data-cache: DIRECT must come last in {text!r}")
            direct = True
            continue
        groups.append(tuple(_cache_url(m) for m in members))
    if not groups:
        raise DataCacheError(f"--data-cache: no cache URL in {text!r}")
    urls = [url for group in groups for url in group]
    if len(set(urls)) != len(urls):
        raise DataCacheError(f"--data-cache: a cache is listed twice in {text!r}")
    return DataCacheSpec(tuple(groups), direct)


@dataclass
class TierChoice:
    """Which caches to try, in order, for the next request (not thread-safe: one owner).

    State: `picks`, each group's members in this node's order (its random first choice, then
    the others); `failed_at`, when each failed cache failed; `since`, when the first of those
    failures happened (the reset clock runs from it).
    """

    spec: DataCacheSpec
    reset_after: float = DEFAULT_RESET_AFTER
    rng: random.Random = field(default_factory=random.Random)
    picks: list[tuple[str, ...]] = field(init=False)
    failed_at: dict[str, float] = field(init=False, default_factory=dict)
    since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.picks = []
        for group in self.spec.groups:
            start = self.rng.randrange(len(group))
            self.picks.append(group[start:] + group[:start])

    def order(self, now: float) -> list[str]:
        """The caches to try, best first, then `DIRECT` when allowed.

        Failed caches are left out until the reset; when every cache has failed and DIRECT is
        not allowed, all of them are tried again rather than none.
        """
        if self.since is not None and now - self.since >= self.reset_after:
            self.failed_at.clear()
            self.since = None
        healthy = [url for group in self.picks for url in group if url not in self.failed_at]
        if not healthy and not self.spec.direct:
            healthy = [url for group in self.picks for url in group]
        return healthy + ([DIRECT] if self.spec.direct else [])

    def failed(self, url: str, now: float) -> None:
        """`url` did not answer properly: later requests go to the next choice."""
        if url == DIRECT or url in self.failed_at:
            return
        self.failed_at[url] = now
        if self.since is None:
            self.since = now

    def first_choice(self) -> str:
        return self.picks[0][0]
