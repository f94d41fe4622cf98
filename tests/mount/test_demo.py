"""`mastfs demo`: the README's first command, run as a user runs it.

The demo mounts JWST program 2734 from an archive simulator embedded in the mount daemon, so it
needs no `--server` and no session simulator; `mastfs umount` must end the daemon, and with it
the embedded simulator.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from astropy.io import fits

from mastfs.runtime import pidfile_for
from mastfs.sim.catalog import default_catalog
from tests.support import reads
from tests.support.catalog import catalog_rows
from tests.support.child import PythonChild
from tests.support.mounting import force_unmount, is_mounted, process_gone, run_cli

log = logging.getLogger(__name__)

pytestmark = pytest.mark.mount


@dataclass
class Demo:
    path: Path
    cache_dir: Path
    pid: int | None
    result: subprocess.CompletedProcess[str]

    def embedded_sim_url(self) -> str:
        """The simulator's URL, as the daemon's log names it."""
        for log_file in (self.cache_dir / "logs").glob("mount-*.log"):
            found = re.search(r"embedded archive simulator at (http://\S+)", log_file.read_text())
            if found:
                return found.group(1)
        raise AssertionError("the demo's log names no embedded simulator")


def rows_2734() -> list[dict]:
    return [r for r in catalog_rows("2734") if "_gs-" not in r["productFilename"]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo")
    mountpoint = root / "mnt"
    mountpoint.mkdir()
    pid: int | None = None
    try:
        result = run_cli(["demo", str(mountpoint), "--cache-dir", str(root / "cache")])
        with suppress(OSError, ValueError):
            pid = int(pidfile_for(mountpoint).read_text().strip())
        yield Demo(mountpoint, root / "cache", pid, result)
    finally:
        if is_mounted(mountpoint):
            with suppress(subprocess.TimeoutExpired):
                run_cli(["umount", str(mountpoint)], timeout=30)
        force_unmount(mountpoint, pid)


def test_demo_returns_when_ready(demo: Demo) -> None:
    assert demo.result.returncode == 0, demo.result.stderr
    assert is_mounted(demo.path)
    assert demo.pid is not None and not process_gone(demo.pid)


def test_demo_shows_program_2734(demo: Demo) -> None:
    listing = subprocess.run(
        ["ls", "-lR", str(demo.path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    rows = rows_2734()
    assert sorted(reads.listdir(demo.path)) == ["JWST", "headers", "manifest.html", "selection.csv"]
    assert set(reads.listdir(demo.path / "JWST")) == {r["obs_id"] for r in rows}
    for row in rows:
        assert row["productFilename"] in listing
        path = demo.path / "JWST" / row["obs_id"] / row["productFilename"]
        assert reads.stat(path).st_size == int(row["size"])


def test_demo_product_opens_in_astropy(demo: Demo, python_child: PythonChild) -> None:
    row = next(r for r in rows_2734() if r["productFilename"].endswith("_x1dints.fits"))
    path = demo.path / "JWST" / row["obs_id"] / row["productFilename"]
    header = python_child.call(fits.getheader, path)
    sim_file = default_catalog().file(row["dataURI"])
    assert sim_file is not None
    expected = fits.Header.fromfile(io.BytesIO(bytes(sim_file.read(0, 64 * 2880))))
    assert header == expected
    assert header["TELESCOP"] == "JWST" and header["PROGRAM"].lstrip("0") == "2734"


def test_demo_has_manifest_and_selection(demo: Demo) -> None:
    html = reads.read_text(demo.path / "manifest.html")
    assert html.startswith("<!DOCTYPE html>") and "jw02734" in html
    text = reads.read_text(demo.path / "selection.csv")
    assert text.startswith("Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating")
    listed = list(csv.DictReader(io.StringIO(text)))
    assert {(r["Dataset"], r["Filename"]) for r in listed} == {
        (r["obs_id"], r["productFilename"]) for r in rows_2734()
    }
    for r in listed:
        assert reads.is_file(demo.path / r["Path"]), r["Path"]


def test_demo_umount_ends_the_daemon(demo: Demo) -> None:
    assert demo.pid is not None
    sim_url = demo.embedded_sim_url()
    assert httpx.get(f"{sim_url}/__sim/health", timeout=10).json()["status"] == "OK"
    done = run_cli(["umount", str(demo.path)], timeout=60)
    assert done.returncode == 0, done.stderr
    assert not is_mounted(demo.path)
    assert process_gone(demo.pid), f"demo process {demo.pid} still running after umount"
    # The embedded simulator went with the daemon.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim_url}/__sim/health", timeout=10)
