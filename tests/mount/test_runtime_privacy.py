"""Pid files, daemon logs and cache directories against other local users (issue 12).

Shared places (a world-writable temporary directory, a cache directory someone else made) are
where another user plants symlinks or files; mastfs keeps its own files out of them and refuses
directories it cannot call its own, with one line naming the path and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mastfs import runtime
from mastfs.private import PrivacyError
from tests.support.mounting import mounted, run_cli


@pytest.fixture
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path


def test_without_a_runtime_dir_pid_files_stay_out_of_shared_temporary_space(
    private_env: Path,
) -> None:
    mountpoint = private_env / "mnt"
    path = runtime.pidfile_for(mountpoint)
    assert path.parent == private_env / "xdg-cache" / "mastfs" / "run"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not str(path).startswith("/tmp/mastfs-")


def test_a_planted_pid_symlink_is_replaced_not_followed(private_env: Path) -> None:
    mountpoint = private_env / "mnt"
    victim = private_env / "victim"
    victim.write_text("precious")
    target = runtime.pidfile_for(mountpoint)
    target.symlink_to(victim)
    written = runtime.write_pid(mountpoint)
    assert victim.read_text() == "precious"
    assert not written.is_symlink() and written.read_text() == str(os.getpid())
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert runtime.read_pid(mountpoint) == os.getpid()


def test_a_pid_file_others_could_write_is_not_believed(private_env: Path) -> None:
    mountpoint = private_env / "mnt"
    path = runtime.write_pid(mountpoint)
    os.chmod(path, 0o666)
    assert runtime.read_pid(mountpoint) is None


def test_a_runtime_dir_others_can_write_is_refused(
    private_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = private_env / "shared-run"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "mastfs").mkdir()
    os.chmod(shared / "mastfs", 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(PrivacyError, match="writable by others"):
        runtime.pidfile_for(private_env / "mnt")


def test_the_daemon_log_is_private_and_never_follows_a_symlink(private_env: Path) -> None:
    cache = private_env / "cache"
    log = runtime.log_path(cache, private_env / "mnt")
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    victim = private_env / "victim"
    victim.write_text("precious")
    log.symlink_to(victim)
    with pytest.raises(PrivacyError, match="not a regular file"):
        runtime.open_log(log)
    log.unlink()
    os.close(runtime.open_log(log))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert victim.read_text() == "precious"


@pytest.mark.mount
def test_mount_refuses_a_cache_directory_others_can_write(sim_url: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    for command in (
        [
            "mount",
            "--program",
            "2734",
            "--server",
            sim_url,
            "--cache-dir",
            str(cache),
            str(mountpoint),
        ],
        ["ls", "--program", "2734", "--server", sim_url, "--cache-dir", str(cache)],
    ):
        done = run_cli(command, timeout=120)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert str(cache) in lines[0] and "chmod go-w" in lines[0]
        assert "Traceback" not in done.stderr


@pytest.mark.mount
def test_a_mount_leaves_its_files_private(sim_url: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = os.umask(0o022)
    try:
        with mounted(tmp_path / "mnt", ["--program", "2734"], cache, server=sim_url) as m:
            product = next(p for p in m.path.rglob("*_x1dints.fits"))
            with open(product, "rb") as reader:
                reader.read(4096)
    finally:
        os.umask(old)
    offenders = [
        f"{p} {stat.S_IMODE(p.lstat().st_mode):o}"
        for p in [cache, *cache.rglob("*")]
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert offenders == []
