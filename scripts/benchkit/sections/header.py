"""Section header: header-only access to the 4 GiB product through a fresh mount.

`fits.getheader` and `fits.open` + `.section`: bytes fetched and time, against astroquery's
`Observations.download_file` of the whole product.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import peers
from ..common import PROGRAM, MiB
from ..mounts import mastfs
from ..procs import run_helper
from ..results import Result
from ..session import Session
from ..sim import rel_path


@dataclass
class HeaderRead(Result):
    """One astropy access through a fresh mount (helper's answer plus the simulator's count)."""

    cards: int | None = None  # getheader
    shape: list[int] | None = None  # section
    seconds: float | None = None
    fetched: int | None = None
    requests: int | None = None


@dataclass
class Download(Result):
    """astroquery's download_file of the whole product."""

    seconds: float | None = None
    status: list[str | None] | None = None
    bytes: int | None = None
    fetched: int | None = None


@dataclass
class HeaderResult(Result):
    size: int | None = None
    getheader: HeaderRead | None = None
    section: HeaderRead | None = None
    astroquery: Download | None = None


def measure(session: Session, r: HeaderResult) -> None:
    r.size = session.big_size
    rel = rel_path(session.big)
    for mode in ("getheader", "section"):
        cache = session.fresh("cache")
        session.cold()
        with mastfs(session, PROGRAM, cache) as m:
            session.sim.reset()
            got = HeaderRead(**run_helper(mode, str(m.path / rel), timeout=120))
            got.fetched = session.sim.file_bytes(session.big)
            got.requests = session.sim.file_requests(session.big)
            setattr(r, mode, got)
        shutil.rmtree(cache, ignore_errors=True)
        session.say(
            f"header: {mode}: {(got.seconds or 0) * 1000:.1f} ms, {got.requests} GETs, "
            f"{(got.fetched or 0) / MiB:.2f} MiB fetched"
        )
    r.astroquery = Download(**peers.astroquery_download(session, session.big, Path(rel).name))
    session.say(f"header: astroquery download_file {r.astroquery.seconds or 0:.1f} s")
