"""The benchmark's sections: each a name, an empty typed result, and the function that fills it.

`run_section` runs one and returns its JSON for bench.json: what it measured, "error" if it
failed (one failed section must not lose the others) and "section_seconds".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..common import SECTION_NAMES
from ..results import Result
from ..session import Session
from . import header, headers, memory, meta, mount_time, parallel, random_reads, scaleout, seq

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Result)


@dataclass(frozen=True)
class Section(Generic[R]):
    name: str
    result: Callable[[], R]  # the empty result
    measure: Callable[[Session, R], None]  # fills it in place, as it measures


SECTIONS: dict[str, Section[Any]] = {
    s.name: s
    for s in (
        Section("seq", seq.SeqResult, seq.measure),
        Section("header", header.HeaderResult, header.measure),
        Section("random", random_reads.RandomResult, random_reads.measure),
        Section("parallel", parallel.ParallelResult, parallel.measure),
        Section("memory", memory.MemoryResult, memory.measure),
        Section("meta", meta.MetaResult, meta.measure),
        Section("mount_time", mount_time.MountTimeResult, mount_time.measure),
        Section("headers", headers.HeadersResult, headers.measure),
        Section("scaleout", scaleout.ScaleoutResult, scaleout.measure),
    )
}
assert tuple(SECTIONS) == SECTION_NAMES, "common.SECTION_NAMES lists the sections for --list"


def run_section(session: Session, section: Section[Any]) -> dict[str, Any]:
    session.say(f"{section.name}: start")
    started = time.monotonic()
    result = section.result()
    error: str | None = None
    try:
        section.measure(session, result)
    except Exception as exc:  # one failed section must not lose the others
        log.debug("section %s failed", section.name, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
        session.say(f"{section.name}: FAILED: {exc}")
    out = result.to_json()
    if error is not None:
        out["error"] = error
    out["section_seconds"] = time.monotonic() - started
    return out
