"""The query session (`open_session`) run from a synchronous test, its reports recorded."""

from __future__ import annotations

import functools
from pathlib import Path

import trio

from mastfs.archive import Query
from mastfs.archive_http import Limits
from mastfs.selection import Selection
from mastfs.session import Session, open_session


class Recorder:
    """A `Progress` that keeps what it is told."""

    def __init__(self) -> None:
        self.progress_lines: list[str] = []
        self.warnings: list[str] = []

    def progress(self, text: str) -> None:
        self.progress_lines.append(text)

    def warning(self, text: str) -> None:
        self.warnings.append(text)


def run_session(
    server: str,
    cache: Path,
    query: Query,
    *,
    token: str | None = None,
    selection: Selection | None = None,
    limits: Limits | None = None,
    resolver: str | None = None,
) -> tuple[Session, Recorder]:
    """`open_session` in the nested layout, in a trio run of its own."""
    reporter = Recorder()
    start = functools.partial(
        open_session,
        query,
        selection or Selection(),
        server=server,
        token=token,
        cache_dir=cache,
        layout="nested",
        reporter=reporter,
        limits=limits,
        **({"resolver": resolver} if resolver else {}),
    )
    return trio.run(start), reporter
