"""An fstab line mounted by the real mount(8) through `mount.fuse.mastfs` (issue 15, part 4).

One mount: util-linux's `mount --fstab FILE MOUNTPOINT` reads a line of type `fuse.mastfs`
with systemd's options, runs the helper (installed for the test as `/sbin/mount.fuse.mastfs`,
where mount(8) looks, unless one is installed already), which runs `mastfs mount`; its
readiness goes to a real datagram socket as `$NOTIFY_SOCKET`, defaults come from a config file,
and the Prometheus endpoint answers on loopback. `umount` unmounts it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from mastfs import system
from mastfs.runtime import read_pid
from tests.support.mounting import is_mounted, run_cli

pytestmark = pytest.mark.mount

HELPER = Path("/sbin/mount.fuse.mastfs")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FstabMount:
    path: Path
    result: subprocess.CompletedProcess[str]
    notified: bytes
    metrics_port: int


@pytest.fixture(scope="module")
def helper() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mount(8) runs helpers for root only")
    if os.path.lexists(HELPER):
        pytest.skip(f"{HELPER} is installed already: not replaced by a test")
    HELPER.write_text(
        f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m mastfs.mounthelper "$@"\n'
    )
    HELPER.chmod(0o755)
    try:
        yield HELPER
    finally:
        HELPER.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def fstab_mount(
    helper: Path, tmp_path_factory: pytest.TempPathFactory, sim_url: str
) -> Iterator[FstabMount]:
    base = tmp_path_factory.mktemp("fstab")
    mountpoint, cache = base / "mnt", base / "cache"
    mountpoint.mkdir()
    (base / "config" / "mastfs").mkdir(parents=True)
    config = base / "config" / "mastfs" / "config.toml"
    config.write_text(f'server = "{sim_url}"\ncache_dir = "{cache}"\n[mount]\nlayout = "flat"\n')
    config.chmod(0o600)
    port = _free_port()
    fstab = base / "fstab"
    fstab.write_text(
        f"program=2734 {mountpoint} fuse.mastfs noauto,_netdev,x-systemd.automount,"
        f"x-systemd.mount-timeout=60,group=X1DINTS,regex=/02101_00001-seg001_nis/,"
        f"cache_size=3G,metrics={port} 0 0\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(base / "notify"))
        notify.settimeout(60)
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(base / "config"),
            "NOTIFY_SOCKET": str(base / "notify"),
        }
        result = subprocess.run(
            ["mount", "--fstab", str(fstab), str(mountpoint)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        pid = read_pid(mountpoint)
        try:
            assert result.returncode == 0, result.stderr
            yield FstabMount(mountpoint, result, notify.recv(4096), port)
        finally:
            if is_mounted(mountpoint):
                with suppress(subprocess.TimeoutExpired):
                    subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30)
                    if pid is not None:
                        system.wait_gone(pid, 15)
            system.force_unmount(mountpoint, pid)


def test_the_fstab_line_mounts_with_its_options_and_the_config(fstab_mount: FstabMount) -> None:
    m = fstab_mount
    assert is_mounted(m.path)
    assert "mounted program 2734" in m.result.stdout
    names = sorted(os.listdir(m.path))
    # flat (from the config file), one file (from the fstab line's selection) and its header
    assert names == sorted(
        [
            "headers",
            "manifest.html",
            "selection.csv",
            "jw02734001001_02101_00001-seg001_nis_x1dints.fits",
        ]
    )
    report = json.loads(run_cli(["status", "--json", str(m.path)]).stdout)
    assert report["cache_limit"] == 3 << 30 and report["query"] == "program 2734"


def test_systemd_hears_ready_with_the_mount_process(fstab_mount: FstabMount) -> None:
    fields = fstab_mount.notified.decode().split("\n")
    assert "READY=1" in fields
    assert f"MAINPID={read_pid(fstab_mount.path)}" in fields
    assert any(f.startswith("STATUS=mounted program 2734") for f in fields)


def test_metrics_answer_on_loopback_with_the_counters(fstab_mount: FstabMount) -> None:
    path = fstab_mount.path / "jw02734001001_02101_00001-seg001_nis_x1dints.fits"
    with open(path, "rb") as f:
        f.read(1 << 20)
    url = f"http://127.0.0.1:{fstab_mount.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["mastfs_selected_files"] == 1
    assert values["mastfs_bytes_fetched_total"] >= 1 << 20
    assert values["mastfs_cache_limit_bytes"] == 3 << 30
    assert "2734" not in text and "seg001" not in text
    # Loopback only: not on the machine's other addresses.
    others = [a for a in _addresses() if not a.startswith("127.")]
    for address in others:
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(5)
            s.connect((address, fstab_mount.metrics_port))


def test_umount_stops_the_mount_process(fstab_mount: FstabMount) -> None:
    pid = read_pid(fstab_mount.path)
    done = subprocess.run(["umount", str(fstab_mount.path)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert pid is not None and system.wait_gone(pid, 15)
    assert not is_mounted(fstab_mount.path)


def _addresses() -> list[str]:
    done = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    return done.stdout.split() if done.returncode == 0 else []


def test_a_metrics_port_in_use_fails_the_mount_in_one_line(tmp_path: Path, sim_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "mnt").mkdir()
        argv = ["mount", "--program", "2734", "--server", sim_url, "--metrics", str(port)]
        done = run_cli([*argv, "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "mnt")])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"mastfs: error: cannot serve metrics at 127.0.0.1:{port}: Address already in use"
    )
    assert not is_mounted(tmp_path / "mnt") and "Traceback" not in done.stderr


@pytest.mark.skipif(os.path.exists("/dev/log"), reason="a syslog socket listens here")
def test_syslog_without_a_syslog_socket_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    argv = [
        "demo",
        "--log",
        "syslog",
        "--cache-dir",
        str(tmp_path / "cache"),
        str(tmp_path / "mnt"),
    ]
    done = run_cli(argv)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "mastfs: error: cannot log to syslog at /dev/log: No such file or directory; use --log file"
    )
    assert not is_mounted(tmp_path / "mnt")
