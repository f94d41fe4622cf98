"""Shared fixtures: one archive simulator per test session, and astroquery pointed at it.

Tests are in folders by layer: `unit/` (pure), `core/` (fetch, cache, archive and CLI against
the simulator over HTTP), `ops/` (the FUSE operations awaited in process, no kernel), `mount/`
(real mounts in daemon processes) and `clients/` (astropy, Pillow, DS9 reading a mount); their
helpers are in `support/`. Every test that mounts (in `mount/` or `clients/`, or marked `mount`)
is skipped, with the reason, where this machine cannot mount FUSE.

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


_MOUNTING_FOLDERS = ("mount", "clients")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.support.mounting import fuse_unavailable

    here = Path(__file__).parent
    reason = fuse_unavailable()
    for item in items:
        folder = item.path.relative_to(here).parts[0] if item.path.is_relative_to(here) else ""
        if folder in _MOUNTING_FOLDERS and item.get_closest_marker("mount") is None:
            item.add_marker(pytest.mark.mount)
        if reason is not None and item.get_closest_marker("mount") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _no_stale_test_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No dead mount of an earlier run gets in the way, and none of ours outlives this run."""
    from tests.support.mounting import cleanup_stale_mounts

    cleanup_stale_mounts()
    try:
        yield
    finally:
        from tests.support.child import close_shared_child

        close_shared_child()
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
    from tests.support.sim import Sim

    control = Sim(sim_server)
    control.clear_faults()
    control.reset_stats()
    try:
        yield control
    finally:
        control.close()


@pytest.fixture(params=("fast", "mast"))
def profile(request: pytest.FixtureRequest, sim: Any) -> str:
    """The session simulator under each profile in turn ("mast" at the tests' time scale,
    `tests/support/sim.py`); cleared after the test with the other faults."""
    name = str(request.param)
    sim.profile(name)
    return name


@pytest.fixture(scope="session")
def sim_control(sim_url: str) -> Iterator[Any]:
    """The simulator's HTTP control endpoints as they are (no reset, no clearing): for module
    fixtures, and for tests whose own variables already use the name `sim`."""
    from tests.support.sim import SimControl

    control = SimControl(sim_url)
    try:
        yield control
    finally:
        control.close()


@pytest.fixture(scope="session")
def python_child() -> Any:
    """The child Python for client code that reads a mount (tests/support/child.py)."""
    from tests.support.child import shared_child

    return shared_child()
