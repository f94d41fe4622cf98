"""`mastfs status` and `mastfs warm` on one real mount of the simulator (issue 15, part 3).

Root mounts two small products of program 2734 with `--allow-other` and a cache bound that
holds one of them but not both, in a folder `nobody` may traverse; `nobody` then asks for the
status report through the raw attribute, as any program could.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastfs.xattrs import XATTR_CACHED, XATTR_STATUS
from tests.support import reads
from tests.support.mounting import MASTFS, Mount, mounted, run_cli, traversable_dir

pytestmark = pytest.mark.mount

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
CACHE_SIZE = 12 << 20  # one 7.4 MB product fits, both do not
TIMEOUT = 3  # how long a failing read takes to fail
SELECTION = ["--group", "X1DINTS", "--regex", "/02101_00001-seg00[12]_nis/"]


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    with traversable_dir("mastfs-warm-") as path:
        yield path


@pytest.fixture(scope="module")
def mount(
    shared_dir: Path, tmp_path_factory: pytest.TempPathFactory, sim_url: str
) -> Iterator[Mount]:
    cache = tmp_path_factory.mktemp("cache-warm")
    args = ["--program", "2734", *SELECTION, "--allow-other", "--cache-size", str(CACHE_SIZE)]
    args += ["--timeout", str(TIMEOUT)]
    with mounted(shared_dir / "mnt", args, cache, server=sim_url) as m:
        yield m


def products(m: Mount) -> list[Path]:
    found = sorted(p for p in (m.path / "JWST").rglob("*.fits"))
    assert len(found) == 2, found
    return found


def cached(path: Path) -> int:
    return int(reads.getxattr(path, XATTR_CACHED.decode()))


def uri_of(path: Path) -> str:
    return reads.getxattr(path, "user.mast.uri").decode()


def test_status_shows_the_query_selection_and_cache(mount: Mount) -> None:
    done = run_cli(["status", "--json", str(mount.path)])
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["query"] == "program 2734"
    assert report["pid"] == mount.pid
    assert report["selected_files"] == 2
    assert report["cache_limit"] == CACHE_SIZE
    assert "X1DINTS" in report["selection"]
    assert {
        "hits",
        "misses",
        "bytes_fetched",
        "requests",
        "blocks_in_flight",
        "http_in_flight",
    } <= set(report["counters"])
    text = run_cli(["status", str(mount.path)])
    assert text.returncode == 0, text.stderr
    assert f"pid {mount.pid}" in text.stdout
    assert "2 of " in text.stdout and "errors:    none" in text.stdout


def test_another_user_cannot_read_the_status(mount: Mount) -> None:
    argv = ["getfattr", "--only-values", "-n", XATTR_STATUS.decode(), str(mount.path)]
    done = reads.run_reader([*NOBODY, *argv], mount.path)
    assert done.returncode != 0
    assert b"Permission denied" in done.stderr
    assert b"2734" not in done.stdout
    listed = reads.run_reader([*NOBODY, "getfattr", "-d", str(mount.path)], mount.path)
    assert listed.returncode == 0, listed.stderr
    assert XATTR_STATUS not in listed.stdout and b"user.mastfs.summary" in listed.stdout
    # The owner reads it.
    assert b"2734" in reads.getxattr(mount.path, XATTR_STATUS.decode())


def test_warm_refuses_more_than_the_cache_holds(mount: Mount, sim: Any) -> None:
    done = run_cli(["warm", str(mount.path)])
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "more than the cache's bound" in lines[0], done.stderr
    assert "--cache-size" in lines[0] and "Traceback" not in done.stderr
    assert all(sim.gets(uri_of(p)) == 0 for p in products(mount))


def test_warm_selects_with_the_overlay_options(mount: Mount) -> None:
    done = run_cli(["warm", str(mount.path), "--regex", "/seg002/", "--dry-run"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 files"), done.stdout


def settled_cached(path: Path) -> int:
    """`user.mastfs.cached` once blocks still on their way to the disk have landed."""
    last, deadline = -1, time.monotonic() + 30
    while time.monotonic() < deadline:
        now = cached(path)
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    return last


def test_an_interrupted_warm_resumes_without_fetching_again(mount: Mount, sim: Any) -> None:
    path = products(mount)[0]
    size, uri = path.stat().st_size, uri_of(path)
    # A slow archive, and Ctrl-C once part of the file has arrived.
    sim.faults(bandwidth=1 << 20, scope=uri.rpartition("/")[2])
    warm = subprocess.Popen(
        [*MASTFS, "warm", str(mount.path), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while sim.sent(uri) < 2 << 20 and time.monotonic() < deadline and warm.poll() is None:
            time.sleep(0.1)
        warm.send_signal(signal.SIGINT)
        out, err = warm.communicate(timeout=60)
    finally:
        if warm.poll() is None:
            warm.kill()
            warm.wait()
    sim.clear_faults()
    assert warm.returncode == 130, (out, err)
    assert "interrupted" in err and "run it again to resume" in err and "Traceback" not in err
    before = settled_cached(path)
    assert 0 < before < size
    sim.reset_stats()
    done = run_cli(["warm", str(mount.path), str(path)])
    assert done.returncode == 0, done.stderr
    assert f"warmed {path.relative_to(mount.path)}" in done.stdout
    assert "warmed 1 of 1 files" in done.stdout
    # Nothing that was cached crossed the network again.
    assert 0 < sim.sent(uri) <= size - before
    assert settled_cached(path) == size
    sim.reset_stats()
    again = run_cli(["warm", str(mount.path), str(path)])
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout and "1 files cached already" in again.stdout
    assert sim.gets(uri) == 0
    status = json.loads(run_cli(["status", "--json", str(mount.path)]).stdout)
    assert status["cache_bytes"] >= size


def test_status_of_something_else_is_one_line(tmp_path: Path) -> None:
    done = run_cli(["status", str(tmp_path)])
    assert done.returncode == 1
    assert done.stderr.strip() == f"mastfs: error: {tmp_path} is not a mastfs mount"


def test_status_and_warm_report_a_failing_file(mount: Mount, sim: Any) -> None:
    path = products(mount)[1]
    uri = uri_of(path)
    # Every download of it fails (503) until the mount's --timeout gives up on the read.
    sim.faults(error_rate=1.0, error_downloads_only=True, scope=uri.rpartition("/")[2])
    try:
        done = run_cli(["warm", str(mount.path), str(path)])
    finally:
        sim.clear_faults()
    assert done.returncode == 1, done.stdout
    assert f"failed {path.relative_to(mount.path)}: " in done.stdout
    assert "1 failed (manifest.html says why)" in done.stdout
    report = json.loads(run_cli(["status", "--json", str(mount.path)]).stdout)
    assert report["error_count"] == 1 and report["errors"][0]["uri"] == uri
    text = run_cli(["status", str(mount.path)]).stdout
    assert f"errors:    1 (the latest 1; manifest.html lists them all)\n  {uri}: " in text
