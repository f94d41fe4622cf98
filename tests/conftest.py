"""Shared fixtures: one archive simulator per test session, and astroquery pointed at it.

astroquery fixes its MAST URLs when it is imported, so the simulator's port is chosen and
written to astroquery's config file (`[mast] server = ...`) before anything imports astroquery.
That is the documented way to point an unmodified astroquery at another server.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SIM_PORT = _free_port()
SIM_URL = f"http://127.0.0.1:{SIM_PORT}"
_CONFIG_HOME = Path(tempfile.mkdtemp(prefix="mastfs-test-xdg-"))
(_CONFIG_HOME / "astropy").mkdir()
(_CONFIG_HOME / "astropy" / "astroquery.cfg").write_text(f"[mast]\nserver = {SIM_URL}\n")
os.environ["XDG_CONFIG_HOME"] = str(_CONFIG_HOME)
os.environ["XDG_CACHE_HOME"] = str(_CONFIG_HOME / "cache")
os.environ.pop("MAST_API_TOKEN", None)


@pytest.fixture(scope="session", autouse=True)
def _no_stale_test_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No dead mount of an earlier run gets in the way, and none of ours outlives this run."""
    from tests.mounting import cleanup_stale_mounts

    cleanup_stale_mounts()
    try:
        yield
    finally:
        cleanup_stale_mounts(own=tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def sim_server() -> Iterator[object]:
    """The archive simulator, serving in background threads for the whole session."""
    from mastfs.sim.server import SimServer

    server = SimServer(host="127.0.0.1", port=SIM_PORT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sim_url(sim_server: object) -> str:
    return SIM_URL


@pytest.fixture()
def sim(sim_server: Any) -> Iterator[Any]:
    """The simulator's control surface (stats, faults), clean before each test."""
    from tests.fetch_support import Sim

    control = Sim(sim_server)
    control.clear_faults()
    control.reset_stats()
    try:
        yield control
    finally:
        control.close()
