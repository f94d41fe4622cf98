"""Bad input gets one clear line and a non-zero exit, never a traceback; and access rules.

Each case runs the real `mastfs` command against the simulator.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastfs.sim.catalog import AUTHORIZED_TOKEN, UNAUTHORIZED_TOKEN
from tests.support import reads
from tests.support.mounting import Mount, cleanup_stale_mounts, is_mounted, mounted, run_cli

pytestmark = pytest.mark.mount


def assert_clean_failure(done: object, needle: str, code: int | None = None) -> None:
    out = done.stderr  # type: ignore[attr-defined]
    assert done.returncode != 0, out  # type: ignore[attr-defined]
    if code is not None:
        assert done.returncode == code, out  # type: ignore[attr-defined]
    assert "Traceback" not in out, out
    assert needle.lower() in out.lower(), out
    assert "mastfs: error:" in out


@pytest.fixture
def mp(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def mount_args(sim_url: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["mount", "--server", sim_url, "--cache-dir", str(tmp_path / "cache"), *extra]


def test_missing_mount_point(sim_url: str, tmp_path: Path) -> None:
    done = run_cli([*mount_args(sim_url, tmp_path, "--program", "2734"), str(tmp_path / "nope")])
    assert_clean_failure(done, "does not exist", 1)


def test_non_empty_mount_point(sim_url: str, tmp_path: Path, mp: Path) -> None:
    (mp / "file").write_text("x")
    done = run_cli([*mount_args(sim_url, tmp_path, "--program", "2734"), str(mp)])
    assert_clean_failure(done, "not empty", 1)


def test_unknown_program(sim_url: str, tmp_path: Path, mp: Path) -> None:
    done = run_cli([*mount_args(sim_url, tmp_path, "--program", "99999"), str(mp)])
    assert_clean_failure(done, "no observations match program 99999", 1)
    assert not is_mounted(mp)


def test_invalid_regex(sim_url: str, tmp_path: Path, mp: Path) -> None:
    done = run_cli([*mount_args(sim_url, tmp_path, "--program", "2734", "--regex", "(a"), str(mp)])
    assert_clean_failure(done, "(a", 2)


def test_unknown_level_lists_valid_values(sim_url: str, tmp_path: Path, mp: Path) -> None:
    done = run_cli([*mount_args(sim_url, tmp_path, "--program", "2734", "--level", "7z"), str(mp)])
    assert_clean_failure(done, "7z", 2)
    assert "2b" in done.stderr


def test_unreachable_server(tmp_path: Path, mp: Path) -> None:
    done = run_cli(
        [
            "mount",
            "--server",
            "http://127.0.0.1:9",
            "--cache-dir",
            str(tmp_path / "c"),
            "--program",
            "2734",
            str(mp),
        ]
    )
    assert_clean_failure(done, "cannot reach", 1)


def test_cache_dir_not_writable(sim_url: str, tmp_path: Path, mp: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run_cli(
        [
            "mount",
            "--server",
            sim_url,
            "--cache-dir",
            str(blocker / "cache"),
            "--program",
            "2734",
            str(mp),
        ]
    )
    assert_clean_failure(done, "cannot be written", 1)


def test_invalid_token(sim_url: str, tmp_path: Path, mp: Path) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-real-token\n")
    done = run_cli(
        [*mount_args(sim_url, tmp_path, "--program", "6543", "--token-file", str(token)), str(mp)]
    )
    assert_clean_failure(done, "token", 1)
    assert "not-a-real-token" not in done.stderr + done.stdout


def test_no_query(tmp_path: Path, mp: Path) -> None:
    done = run_cli(["mount", str(mp)])
    assert_clean_failure(done, "no query given", 2)


def test_bad_size_and_radius(mp: Path) -> None:
    done = run_cli(["mount", "--program", "1", "--cache-size", "lots", str(mp)])
    assert done.returncode == 2 and "invalid size 'lots'" in done.stderr
    done = run_cli(["mount", "--target", "M57", "--radius", "wide", str(mp)])
    assert done.returncode == 2 and "invalid radius 'wide'" in done.stderr


def test_help_explains() -> None:
    done = run_cli(["mount", "--help"])
    assert done.returncode == 0
    for flag in ("--program", "--recommended", "--layout", "--cache-size", "--token-file"):
        assert flag in done.stdout


# -- exclusive access and mounted-state errors ----------------------------------------------------


@pytest.fixture(scope="module")
def ea_anonymous(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> Iterator[Mount]:
    cleanup_stale_mounts()
    root = tmp_path_factory.mktemp("ea")
    with mounted(root / "mnt", ["--program", "6543"], root / "cache", server=sim_url) as m:
        yield m


def exclusive_file(m: Mount) -> Path:
    for dirpath, _, files in reads.os_call("walk", m.path):
        for name in files:
            path = Path(dirpath) / name
            if name.endswith(".fits") and reads.getxattr(path, "user.mast.access") == (
                b"EXCLUSIVE_ACCESS"
            ):
                return path
    raise AssertionError("no exclusive-access file in the mount")


def test_exclusive_access_listed_but_eacces(ea_anonymous: Mount) -> None:
    path = exclusive_file(ea_anonymous)
    assert reads.stat(path).st_size > 0
    with pytest.raises(PermissionError) as info:
        reads.read_bytes(path)
    assert info.value.errno == errno.EACCES
    assert "warning" in ea_anonymous.result.stderr.lower()


def test_already_mounted(ea_anonymous: Mount, sim_url: str, tmp_path: Path) -> None:
    done = run_cli([*mount_args(sim_url, tmp_path, "--program", "6543"), str(ea_anonymous.path)])
    assert_clean_failure(done, "already a mount point", 1)


def test_unauthorized_token_gets_eacces(sim_url: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(UNAUTHORIZED_TOKEN)
    with mounted(
        tmp_path / "mnt",
        ["--program", "6543", "--token-file", str(token)],
        tmp_path / "c",
        server=sim_url,
    ) as m:
        with pytest.raises(PermissionError):
            reads.read_bytes(exclusive_file(m))


def test_authorized_token_reads(sim_url: str, tmp_path: Path) -> None:
    from mastfs.sim.catalog import default_catalog

    with mounted(
        tmp_path / "mnt",
        ["--program", "6543"],
        tmp_path / "c",
        server=sim_url,
        env={"MAST_API_TOKEN": AUTHORIZED_TOKEN},
    ) as m:
        path = exclusive_file(m)
        uri = reads.getxattr(path, "user.mast.uri").decode()
        head = reads.pread(path, 0, 64 * 1024)
        assert head == bytes(default_catalog().file(uri).read(0, 64 * 1024))
        manifest = reads.read_text(m.path / "manifest.html")
        assert "Ada Authorized" in manifest
        assert AUTHORIZED_TOKEN not in manifest
    # The token never reaches the cache directory or the logs.
    for dirpath, _, files in os.walk(tmp_path / "c"):
        for name in files:
            assert AUTHORIZED_TOKEN.encode() not in (Path(dirpath) / name).read_bytes()
