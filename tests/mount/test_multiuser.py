"""A shared mount attacked by another local user (`nobody`, through `setpriv`).

Root mounts the simulator's program 6543 (exclusive-access products, except the associations
and the pool) with `--allow-other` and an authorized token; `nobody` then tries to read the
owner's exclusive-access bytes and views, to change the selection, and to freeze the daemon
with a catastrophic regex. The simulator runs in this process, so each download request's
`Authorization` header is recorded where the simulator checks access (`access_denied`).

Mount points live in a folder `nobody` may traverse (pytest's own temporary folders are 0700).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mastfs import system
from mastfs.selection import Selection
from mastfs.sim import api_downloads
from mastfs.sim.catalog import AUTHORIZED_TOKEN, TOKENS, default_catalog
from mastfs.xattrs import XATTR_SELECTION
from tests.support import reads
from tests.support.mounting import Mount, mounted, run_cli, traversable_dir

pytestmark = pytest.mark.mount

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOGROUP = 65534
CATASTROPHIC = r"/^(\w|\w)*$/"
PROGRAM = "6543"


def _files() -> tuple[Any, Any, Any]:
    """Two exclusive-access files and one public file of program 6543."""
    files = [f for f in default_catalog().files() if str(f.proposal_id) == PROGRAM]
    exclusive = sorted(
        (f for f in files if f.dataRights == "EXCLUSIVE_ACCESS" and f.size < 8 << 20),
        key=lambda f: f.uri,
    )
    public = sorted((f for f in files if f.dataRights == "PUBLIC"), key=lambda f: f.uri)
    return exclusive[0], exclusive[1], public[0]


EXCLUSIVE, EXCLUSIVE_2, PUBLIC = _files()


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    with traversable_dir("mastfs-multiuser-") as path:
        yield path


@pytest.fixture(scope="module")
def authorization_seen() -> Iterator[list[tuple[str, str | None]]]:
    """(data URI, Authorization header) of every download request the simulator answers."""
    seen: list[tuple[str, str | None]] = []
    original = api_downloads.access_denied

    def recording(h: Any, f: Any) -> Any:
        seen.append((f.uri, h.headers.get("Authorization")))
        return original(h, f)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_downloads, "access_denied", recording)
        yield seen


@contextmanager
def shared_mount(
    shared_dir: Path,
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    sim_url: str,
    *options: str,
) -> Iterator[Mount]:
    cache = tmp_path_factory.mktemp(f"cache-{name}")
    token_file = cache.parent / f"token-{name}"
    token_file.write_text(AUTHORIZED_TOKEN)
    token_file.chmod(0o600)
    args = ["--program", PROGRAM, "--allow-other", "--token-file", str(token_file), *options]
    mountpoint = shared_dir / name
    with mounted(mountpoint, args, cache, server=sim_url) as m:
        yield m


@pytest.fixture(scope="module")
def shared(
    shared_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    sim_url: str,
    sim_server: Any,
    authorization_seen: list[tuple[str, str | None]],
) -> Iterator[Mount]:
    """Root's mount, default modes."""
    with shared_mount(shared_dir, "shared", tmp_path_factory, sim_url) as m:
        yield m


def path_of(m: Mount, f: Any) -> Path:
    return m.path / "JWST" / f.dataset / f.filename


def as_nobody(argv: list[str], path: Path) -> subprocess.CompletedProcess[bytes]:
    return reads.run_reader([*NOBODY, *argv], path)


def nobody_reads(path: Path) -> bytes:
    """`cat` as nobody; the OSError its failure means, as `reads.read_bytes` raises it."""
    return reads._check(as_nobody(["cat", "--", str(path)], path), path)


def nobody_sets_selection(m: Mount, selection: Selection) -> None:
    done = as_nobody(
        ["setfattr", "-n", XATTR_SELECTION.decode(), "-v", selection.to_json(), str(m.path)],
        m.path,
    )
    reads._check(done, m.path)


def selection_of(m: Mount) -> Selection:
    return Selection.from_json(reads.getxattr(m.path, XATTR_SELECTION.decode()))


# -- reading --------------------------------------------------------------------------------


def test_other_user_cannot_read_exclusive_access_files(shared: Mount) -> None:
    path = path_of(shared, EXCLUSIVE)
    assert stat.S_IMODE(reads.stat(path).st_mode) == 0o400
    with pytest.raises(PermissionError):
        nobody_reads(path)
    # The owner can.
    assert reads.read_bytes(path) == EXCLUSIVE.read(0, EXCLUSIVE.size)


def test_other_user_reads_public_files_without_the_owners_token(
    shared: Mount, authorization_seen: list[tuple[str, str | None]]
) -> None:
    assert nobody_reads(path_of(shared, PUBLIC)) == PUBLIC.read(0, PUBLIC.size)
    # The owner reads an exclusive-access file: that request alone carries the token.
    reads.read_bytes(path_of(shared, EXCLUSIVE_2))
    public = {auth for uri, auth in authorization_seen if uri == PUBLIC.uri}
    exclusive = {auth for uri, auth in authorization_seen if uri == EXCLUSIVE_2.uri}
    assert public == {None}
    assert exclusive == {f"token {AUTHORIZED_TOKEN}"}


def test_other_user_cannot_read_the_views_naming_the_login(shared: Mount) -> None:
    for name in ("manifest.html", "selection.csv"):
        with pytest.raises(PermissionError):
            nobody_reads(shared.path / name)
    assert TOKENS[AUTHORIZED_TOKEN].display_name in reads.read_text(shared.path / "manifest.html")


# -- the selection --------------------------------------------------------------------------


def test_other_user_cannot_change_the_selection(shared: Mount) -> None:
    before = selection_of(shared)
    # The root folder is 0755: the kernel refuses nobody's setxattr before the daemon sees it.
    assert stat.S_IMODE(reads.stat(shared.path).st_mode) == 0o755
    for selection in (Selection.build(public_only=True), Selection.build(regex=CATASTROPHIC)):
        with pytest.raises(PermissionError):
            nobody_sets_selection(shared, selection)
    assert selection_of(shared) == before


def test_catastrophic_regex_through_select_is_refused(shared: Mount) -> None:
    before = selection_of(shared)
    done = run_cli(["select", str(shared.path), "--regex", CATASTROPHIC], timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mastfs: error: ")
    assert "simplify" in lines[0]
    # Still answering, selection unchanged, and still selectable.
    assert selection_of(shared) == before
    assert reads.listdir(shared.path)
    done = run_cli(["select", str(shared.path), "--regex", "/nrca1/"], timeout=60)
    assert done.returncode == 0, done.stderr
    assert run_cli(["select", str(shared.path), "--all"], timeout=60).returncode == 0


def test_catastrophic_regex_through_the_xattr_is_refused(shared: Mount) -> None:
    before = selection_of(shared)
    value = Selection.build(regex=CATASTROPHIC).to_json()
    with pytest.raises(OSError) as info:
        reads.os_call("setxattr", str(shared.path), XATTR_SELECTION.decode(), value.encode())
    assert info.value.errno == errno.EINVAL
    assert selection_of(shared) == before


def test_mount_and_ls_refuse_a_catastrophic_regex(
    shared_dir: Path, tmp_path: Path, sim_url: str
) -> None:
    for command in (["mount"], ["ls"]):
        argv = [*command, "--program", PROGRAM, "--regex", CATASTROPHIC, "--server", sim_url]
        argv += ["--cache-dir", str(tmp_path / "cache")]
        if command == ["mount"]:
            (tmp_path / "mnt").mkdir(exist_ok=True)
            argv.append(str(tmp_path / "mnt"))
        done = run_cli(argv, timeout=120)
        assert done.returncode == 1, done.stdout
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "takes too long to match" in errors[0], done.stderr
        assert "Traceback" not in done.stderr


# -- modes and groups ------------------------------------------------------------------------


def test_owner_group_and_umask_show_in_stat_and_the_group_opt_in(
    shared_dir: Path, tmp_path_factory: pytest.TempPathFactory, sim_url: str, sim_server: Any
) -> None:
    # 026: others may traverse folders (x) but not list them; files are 0440.
    options = ["--uid", "1234", "--gid", "4321", "--umask", "026", "--exclusive-group", "nogroup"]
    with shared_mount(shared_dir, "modes", tmp_path_factory, sim_url, *options) as m:

        def show(path: Path) -> tuple[int, int, int]:
            st = reads.stat(path)
            return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

        assert show(m.path) == (0o751, 1234, 4321)
        assert show(m.path / "JWST") == (0o551, 1234, 4321)
        assert show(path_of(m, PUBLIC)) == (0o440, 1234, 4321)
        # Opted in: the group reads exclusive-access files and the views.
        assert show(path_of(m, EXCLUSIVE)) == (0o440, 1234, NOGROUP)
        assert show(m.path / "manifest.html") == (0o440, 1234, NOGROUP)
        # nobody's group is nogroup: it reads the exclusive file, but not the public one
        # (0440, group 4321) and cannot list folders (0551).
        assert nobody_reads(path_of(m, EXCLUSIVE)) == EXCLUSIVE.read(0, EXCLUSIVE.size)
        with pytest.raises(PermissionError):
            nobody_reads(path_of(m, PUBLIC))
        with pytest.raises(PermissionError):
            reads._check(as_nobody(["ls", str(m.path / "JWST")], m.path), m.path)


def test_daemon_refuses_other_users_even_when_modes_let_them_through(
    shared_dir: Path, tmp_path_factory: pytest.TempPathFactory, sim_url: str, sim_server: Any
) -> None:
    options = ["--file-mode", "0444", "--dir-mode", "0777"]
    with shared_mount(shared_dir, "open", tmp_path_factory, sim_url, *options) as m:
        assert stat.S_IMODE(reads.stat(m.path / "JWST").st_mode) == 0o777
        assert stat.S_IMODE(reads.stat(path_of(m, PUBLIC)).st_mode) == 0o444
        assert stat.S_IMODE(reads.stat(path_of(m, EXCLUSIVE)).st_mode) == 0o400
        before = selection_of(m)
        # The kernel lets nobody write to the root folder now; the daemon says no (EPERM).
        with pytest.raises(PermissionError) as info:
            nobody_sets_selection(m, Selection.build(regex=CATASTROPHIC))
        assert info.value.errno == errno.EPERM
        assert selection_of(m) == before


def test_sigterm_unmounts_a_mount_under_attack(
    shared_dir: Path, tmp_path_factory: pytest.TempPathFactory, sim_url: str, sim_server: Any
) -> None:
    with shared_mount(shared_dir, "attacked", tmp_path_factory, sim_url) as m:
        assert m.pid is not None
        value = json.dumps({"regex": [CATASTROPHIC]})
        attackers = [
            subprocess.Popen(
                ["setfattr", "-n", XATTR_SELECTION.decode(), "-v", value, str(m.path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(4)
        ]
        try:
            # Under attack the mount still answers, and SIGTERM still unmounts it.
            assert reads.listdir(m.path)
            os.kill(m.pid, signal.SIGTERM)
            assert system.wait_gone(m.pid, 60), "the daemon did not exit on SIGTERM"
            assert str(m.path) not in system.mounted_paths()
        finally:
            for attacker in attackers:
                try:
                    attacker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    attacker.kill()
                    attacker.wait()
