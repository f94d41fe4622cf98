"""A running mount's status report: gathered by its daemon, shown by `mastfs status`.

The daemon answers the report as JSON in the root's `user.mastfs.status` attribute, to the
mount's owner and root only (`fs.py`): it names the query and the files that failed, which may
be private. The same numbers feed the opt-in Prometheus endpoint (`metrics.py`). `gather` is
the daemon's side; `format_status`, `hit_rate` and `counters` are pure.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mastfs.safetext import clean
from mastfs.selection import format_bytes

if TYPE_CHECKING:
    from mastfs.core import Core

# The last fetch errors the report lists (the manifest lists them all).
RECENT_ERRORS = 20
# Values of `Core.stats()` that go up and down (the rest only grow): gauges for Prometheus.
GAUGES = frozenset(
    {"memory_bytes", "readahead_inflight_bytes", "blocks_in_flight", "http_in_flight"}
)


@dataclass(frozen=True)
class MountInfo:
    """What the daemon knows of itself that the core does not."""

    mountpoint: str
    query: str
    server: str
    cache_dir: str
    pid: int
    started: float


def hit_rate(stats: Mapping[str, int]) -> float | None:
    """Share of the blocks foreground reads needed that came without a request of their own."""
    hits, misses = int(stats.get("hits", 0)), int(stats.get("misses", 0))
    return hits / (hits + misses) if hits + misses else None


async def gather(core: Core, info: MountInfo) -> dict[str, Any]:
    """The report, as JSON-ready values."""
    stats = core.stats()
    used, limit = await core.cache.disk_usage()
    snap = core.snapshot
    summary = snap.summary
    errors = core.state.errors()
    return {
        **asdict(info),
        "uptime": max(0, round(time.time() - info.started)),
        "selection": snap.selection.describe(),
        "summary": core.summary_text(),
        "selected_files": summary.selected_files,
        "selected_bytes": summary.selected_bytes,
        "available_files": summary.available_files,
        "available_bytes": summary.available_bytes,
        "cache_bytes": used,
        "cache_limit": limit,
        "hit_rate": hit_rate(stats),
        "counters": stats,
        "errors": [{"uri": uri, "error": why} for uri, why in errors[-RECENT_ERRORS:]],
        "error_count": len(errors),
    }


def reused(
    make: Callable[[], Awaitable[dict[str, Any]]], seconds: float = 1.0
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """`make`, answering the same report for `seconds`: a reader of an attribute asks for its
    size, then for its value, and the two must agree (else `ERANGE`)."""
    last: list[tuple[float, dict[str, Any]]] = []

    async def report() -> dict[str, Any]:
        now = time.monotonic()
        if last and now - last[0][0] < seconds:
            return last[0][1]
        value = await make()
        last[:] = [(now, value)]
        return value

    return report


def _number(report: Mapping[str, Any], key: str) -> int:
    value = report.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def format_status(report: Mapping[str, Any]) -> str:
    """The report for a terminal; every value is cleaned (it came through a filesystem)."""
    raw = report.get("counters")
    pairs = raw.items() if isinstance(raw, Mapping) else ()
    stats: dict[str, int] = {str(k): v for k, v in pairs if isinstance(v, int)}
    rate = report.get("hit_rate")
    hits, misses = stats.get("hits", 0), stats.get("misses", 0)
    limit = report.get("cache_limit")
    uptime = report.get("uptime")
    lines = [
        f"mount:     {report.get('mountpoint', '?')} (pid {report.get('pid', '?')}, "
        f"up {_duration(uptime if isinstance(uptime, int | float) else 0)})",
        f"query:     {report.get('query', '?')} at {report.get('server', '?')}",
        f"selection: {report.get('selection', '?')}",
        f"           {report.get('summary', '')}",
        f"cache:     {format_bytes(_number(report, 'cache_bytes'))} of "
        + (format_bytes(limit) if isinstance(limit, int) else "no bound")
        + f" in {report.get('cache_dir', '?')}",
        "hit rate:  "
        + (f"{rate:.0%} ({hits} of {hits + misses} blocks)" if isinstance(rate, float) else "-"),
        f"fetched:   {format_bytes(stats.get('bytes_fetched', 0))} in "
        f"{stats.get('requests', 0)} requests ({stats.get('http_retries', 0)} retries); "
        f"served {format_bytes(stats.get('bytes_served', 0))}",
        f"in flight: {stats.get('http_in_flight', 0)} requests, "
        f"{stats.get('blocks_in_flight', 0)} blocks",
    ]
    errors = report.get("errors")
    errors = errors if isinstance(errors, list) else []
    count = _number(report, "error_count")
    if not count:
        lines.append("errors:    none")
    else:
        lines.append(f"errors:    {count} (the latest {len(errors)}; manifest.html lists them all)")
        for item in errors:
            if isinstance(item, Mapping):
                lines.append(f"  {item.get('uri', '?')}: {item.get('error', '?')}")
    return "\n".join(clean(line) for line in lines)
