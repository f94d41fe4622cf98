"""Real mounts of a hostile archive (tests/support/hostile.py in front of the simulator).

A bad row (a size of 1e20, a time of 1e300, a lone surrogate, NUL, ESC, a formula) never takes a
folder or the mount down: `ls -lR` and `find` work, the row is dropped or repaired, the folder
lists, and a remount from the query cache (archive gone) shows the same. A silent archive makes
`mastfs mount` fail within about `--timeout`, in one line.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from mastfs.archive import MAX_MTIME
from mastfs.sim.catalog import AUTHORIZED_TOKEN
from tests.support import reads
from tests.support.bad_rows import BAD_NAMES, BAD_SIZES, FORMULA_NAME, SEG1, bad_rows
from tests.support.hostile import hostile, path, stall
from tests.support.mounting import (
    Mount,
    cleanup_stale_mounts,
    force_unmount,
    is_mounted,
    mounted,
    run_cli,
)

pytestmark = pytest.mark.mount


def tools_work(m: Mount) -> list[str]:
    """`ls -lR` and `find` succeed on the whole mount; the paths `find` lists."""
    for argv in (["ls", "-lR", str(m.path)], ["find", str(m.path)]):
        done = reads.run_reader(argv, m.path)
        assert done.returncode == 0 and not done.stderr, (argv, done.stderr)
    listed = reads.run_reader(["find", str(m.path), "-print0"], m.path).stdout
    return [os.fsdecode(p) for p in listed.split(b"\0") if p]


def check_bad_rows_are_harmless(m: Mount) -> None:
    found = tools_work(m)
    folder = m.path / "JWST" / SEG1
    names = set(reads.listdir(folder))
    assert names, "the folder with the bad rows does not list"
    assert not names & set(BAD_SIZES)
    for end, (_, good) in BAD_NAMES.items():
        if end.startswith(SEG1):
            assert good in names
    assert all("\x1b" not in p and "\x00" not in p for p in found)
    # Directories show the newest product's time: the clamped one, not 1e300 or an error.
    assert reads.stat(m.path).st_mtime == MAX_MTIME
    assert reads.stat(folder).st_mtime == MAX_MTIME
    csv = reads.read_bytes(m.path / "selection.csv")
    assert f",'{FORMULA_NAME},".encode() in csv and f",{FORMULA_NAME},".encode() not in csv
    assert b"\x1b" not in csv and b"\x1b" not in reads.read_bytes(m.path / "manifest.html")


def test_bad_rows_in_a_real_mount(sim_url: str, tmp_path: Path) -> None:
    cleanup_stale_mounts()
    cache = tmp_path / "cache"
    with hostile(sim_url) as proxy:
        bad_rows(proxy)
        url = proxy.url
        with mounted(tmp_path / "live", ["--program", "2734"], cache, server=url) as m:
            out = m.result.stdout + m.result.stderr
            assert "invalid rows dropped" in out and "with an invalid size" in out, out
            assert "\x1b" not in out
            check_bad_rows_are_harmless(m)
            # A repaired name still reads its product's bytes.
            repaired = m.path / "JWST" / SEG1 / BAD_NAMES[f"{SEG1}_cal.fits"][1]
            assert reads.pread(repaired, 0, 80).startswith(b"SIMPLE  =")
    # The archive is gone: the remount serves the cached query, as valid as it was.
    with mounted(tmp_path / "offline", ["--program", "2734"], cache, server=url) as m:
        assert "cached" in m.result.stdout + m.result.stderr
        check_bad_rows_are_harmless(m)


@pytest.mark.parametrize("token", [None, AUTHORIZED_TOKEN])
def test_mount_against_a_silent_archive_fails_within_its_timeout(
    sim_url: str, tmp_path: Path, token: str | None
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    env = {"MAST_API_TOKEN": token} if token else None
    with hostile(sim_url) as proxy:
        proxy.on(path("/"), stall())
        argv = ["mount", "--program", "2734", "--timeout", "4", "--server", proxy.url]
        start = time.monotonic()
        try:
            done = run_cli(
                [*argv, "--cache-dir", str(tmp_path / "cache"), str(mountpoint)], 60, env
            )
            took = time.monotonic() - start
        finally:
            if is_mounted(mountpoint):
                force_unmount(mountpoint, None)
        assert proxy.seen, "the archive was never asked"
    assert done.returncode == 1, done
    assert not is_mounted(mountpoint)
    errors = [line for line in done.stderr.splitlines() if line.startswith("mastfs: error:")]
    assert len(errors) == 1 and "did not answer" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    # The timeout once (not once per request), and starting two Pythons with astropy.
    assert took < 4 + 16, took


def test_a_silent_access_probe_is_bounded_by_the_timeout(sim_url: str, tmp_path: Path) -> None:
    """The Portal answers, the exclusive-access probe (a HEAD of a download) does not."""
    cleanup_stale_mounts()
    env = {"MAST_API_TOKEN": AUTHORIZED_TOKEN}
    with hostile(sim_url) as proxy:
        proxy.on(path("/api/v0.1/Download/"), stall())
        start = time.monotonic()
        args = ["--program", "6543", "--timeout", "4"]
        with mounted(tmp_path / "mnt", args, tmp_path / "cache", proxy.url, env) as m:
            took = time.monotonic() - start
            assert reads.listdir(m.path)
        assert any(r.method == "HEAD" for r in proxy.seen)
    assert took < 4 + 16, took


def test_a_silent_archive_is_no_hang_for_a_reader_either(sim_url: str, tmp_path: Path) -> None:
    """Stalling after the mount: listings are from memory and never wait on the archive."""
    cleanup_stale_mounts()
    with hostile(sim_url) as proxy:
        with mounted(tmp_path / "mnt", ["--program", "2734"], tmp_path / "cache", proxy.url) as m:
            proxy.on(path("/"), stall())
            start = time.monotonic()
            tools_work(m)
            assert time.monotonic() - start < 30
            subprocess.run(["stat", str(m.path / "selection.csv")], check=True, timeout=30)
