"""Remounting the same query when the archive is down: the cached query and bytes still serve.

The archive is a simulator subprocess so the test can stop it between the two mounts while the
server URL (part of the query-cache key) stays the same.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastfs.sim.catalog import BIG_4G_URI, default_catalog
from tests.support import reads
from tests.support.catalog import catalog_rows, nested_path
from tests.support.child import stop_process
from tests.support.mounting import cleanup_stale_mounts, mounted

pytestmark = pytest.mark.mount


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mastfs.sim", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield proc, url
    finally:
        stop_process(proc)


def big_path(root: Path) -> Path:
    for p in catalog_rows("2734"):
        if p["dataURI"] == BIG_4G_URI:
            return nested_path(root, p)
    raise AssertionError("BIG_4G_URI not in program 2734")


def test_offline_remount_serves_what_is_cached(
    sim_process: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    cleanup_stale_mounts()
    proc, url = sim_process
    cache = tmp_path / "cache"
    first = default_catalog().file(BIG_4G_URI).read(0, 64 * 1024)
    with mounted(tmp_path / "a", ["--program", "2734"], cache, server=url) as m:
        assert reads.pread(big_path(m.path), 0, 64 * 1024) == bytes(first)
    proc.terminate()
    proc.wait(timeout=10)

    with mounted(tmp_path / "b", ["--program", "2734", "--timeout", "2"], cache, server=url) as m:
        out = m.result.stdout + m.result.stderr
        assert "cannot reach" in out and "cached" in out, out
        path = big_path(m.path)
        assert reads.pread(path, 0, 64 * 1024) == bytes(first)
        # Bytes never fetched cannot come from anywhere: a clean EIO, not a hang or a crash.
        with pytest.raises(OSError) as info:
            reads.pread(path, 3 << 30, 4096)
        assert info.value.errno == errno.EIO
        assert "manifest.html" in reads.listdir(m.path)
