"""Selection on a live mount: extended attributes, `mastfs select`, and the mount's summary line.

Real mounts (`mastfs mount` daemons, tests/support/mounting.py) of the simulator's programs 2734 and
6543, used with real tools: `getfattr`, `find`, `os.getxattr`, the `mastfs` CLI. What the mount
should show is computed from the simulator's catalog, not from mastfs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mastfs.selection import Selection
from mastfs.sim.catalog import (
    AUTHORIZED_TOKEN,
    TOKENS,
    UNAUTHORIZED_TOKEN,
    default_catalog,
)
from mastfs.xattrs import (
    XATTR_CACHE,
    XATTR_PREFIX,
    XATTR_SELECTION,
    XATTR_STATUS,
    XATTR_SUMMARY,
)
from tests.support import reads
from tests.support.catalog import Row, catalog_rows
from tests.support.mounting import Mount, cleanup_stale_mounts, mounted, run_cli
from tests.support.sim import SimControl
from tests.support.views import check_manifest_structure, parse_manifest, read_csv

pytestmark = pytest.mark.mount

MRP = "Minimum Recommended Products"
SEG1 = "jw02734001001_02101_00001-seg001_nis"
# Neither recommended nor an X1DINTS product: it leaves the tree during the re-selections below.
OPEN_FILE = f"{SEG1}_rate.fits"
OPEN_URI = f"mast:JWST/product/{OPEN_FILE}"
VIRTUAL = {"manifest.html", "selection.csv"}


def guide_star(r: Row) -> bool:
    return str(r["productSubGroupDescription"]).startswith("GS-")


def expected_paths(proposal: str, keep: Callable[[Row], bool]) -> set[str]:
    return {
        f"{r['obs_collection']}/{r['obs_id']}/{r['productFilename']}"
        for r in catalog_rows(proposal)
        if keep(r)
    }


def tree_files(root: Path) -> set[str]:
    """Every product path under the mount, as `find -type f` sees it."""
    out = subprocess.run(
        ["find", str(root), "-type", "f"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")
    found = {Path(p).relative_to(root).as_posix() for p in out if p}
    walked = {
        (Path(d) / f).relative_to(root).as_posix()
        for d, _, files in reads.os_call("walk", root)
        for f in files
    }
    assert found == walked
    assert VIRTUAL <= found
    products = {p for p in found - VIRTUAL if not p.startswith("headers/")}
    # headers/ follows the selection: a text for each FITS product, and nothing else.
    fits = {p for p in products if p.endswith(".fits")}
    assert {p for p in found if p.startswith("headers/")} == {f"headers/{p}.txt" for p in fits}
    return products


def settled_gets(sim: SimControl, uri: str) -> int:
    """GETs of `uri` once the mount's readahead has stopped asking for more."""
    count = sim.gets(uri)
    for _ in range(50):
        time.sleep(0.1)
        now = sim.gets(uri)
        if now == count:
            return count
        count = now
    raise AssertionError(f"{uri} is still being fetched")


def getfattr_dump(path: Path) -> dict[str, str]:
    """`getfattr -d`: every `user.*` attribute with its value."""
    out = subprocess.run(
        ["getfattr", "-d", "--absolute-names", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    values = {}
    for line in out.splitlines():
        m = re.fullmatch(r'([\w.]+)="(.*)"', line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


def select_cli(m: Mount, *options: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["select", str(m.path), *options], timeout=60)


class Views:
    """The tree, selection.csv and manifest.html of a mount, read now, and checked to agree."""

    def __init__(self, m: Mount) -> None:
        self.files = tree_files(m.path)
        self.csv_bytes = reads.read_bytes(m.path / "selection.csv")
        self.manifest_bytes = reads.read_bytes(m.path / "manifest.html")
        first, self.csv = read_csv(self.csv_bytes)
        assert first.startswith("Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating")
        self.manifest = parse_manifest(self.manifest_bytes)
        self.summary = reads.getxattr(m.path, "user.mastfs.summary").decode()
        self.selection = Selection.from_json(reads.getxattr(m.path, "user.mastfs.selection"))

    def check_agree(self, user: str = "anonymous") -> None:
        check_manifest_structure(self.manifest, user)
        assert {r["Path"] for r in self.csv} == self.files
        assert {r.file for r in self.manifest.rows} == self.files
        assert {r["URI"] for r in self.csv} == {r.uri for r in self.manifest.rows}
        assert self.manifest.summary == self.summary
        n = len({r.uri for r in self.manifest.rows})
        assert self.summary.startswith(f"{n} of ")


# -- the shared mount of 2734 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def m2734(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> Iterator[Mount]:
    cleanup_stale_mounts()
    root = tmp_path_factory.mktemp("live2734")
    with mounted(root / "mnt", ["--program", "2734"], root / "cache", server=sim_url) as m:
        yield m


def test_mount_prints_the_summary(m2734: Mount) -> None:
    lines = m2734.result.stdout.splitlines()
    ready = [line for line in lines if line.startswith("mastfs: mounted ")]
    assert len(ready) == 1
    views = Views(m2734)
    assert ready[0] == (
        f"mastfs: mounted program 2734 at {m2734.path} (nested, anonymous): {views.summary}"
    )
    assert re.fullmatch(r"87 of 99 files selected \([\d.]+ GB of [\d.]+ GB\)", views.summary)
    assert "warning" not in m2734.result.stderr


def test_getfattr_shows_the_file_details(m2734: Mount) -> None:
    path = m2734.path / "JWST" / SEG1 / OPEN_FILE
    row = next(r for r in catalog_rows("2734") if r["dataURI"] == OPEN_URI)
    dumped = getfattr_dump(path)
    expected = {
        "uri": OPEN_URI,
        "dataset": SEG1,
        "product_level": "2a",
        "group": "RATE",
        "category": "SCIENCE",
        "access": "PUBLIC",
        "size": str(reads.stat(path).st_size),
        "description": row["description"],
        "prvversion": row["prvversion"],
        "proposal_id": "2734",
        "instrument": "NIRISS/SOSS",
        "filters": "CLEAR;GR700XD",
    }
    sim = default_catalog().file(OPEN_URI)
    assert sim is not None and int(expected["size"]) == row["size"] == sim.size
    assert "Countrate" in expected["description"] and expected["prvversion"]
    for key, value in expected.items():
        assert dumped[f"user.mast.{key}"] == value, key
        assert reads.getxattr(path, f"user.mast.{key}").decode() == value, key
    assert set(dumped) == {name for name in reads.os_call("listxattr", path)}
    assert dumped["user.mast.readable"] == "yes"
    # A shared file (the pool) is one inode: the same attributes under every folder.
    pools = [p for p in tree_files(m2734.path) if p.endswith("_pool.csv")]
    assert len(pools) == 12
    attrs = [getfattr_dump(m2734.path / p) for p in pools[:3]]
    assert attrs[0] == attrs[1] == attrs[2] and attrs[0][f"{XATTR_PREFIX}group"] == "POOL"
    # Directories and the virtual files have none; the root has the selection (and, for its
    # owner, the daemon's status).
    assert getfattr_dump(m2734.path / "JWST") == {}
    assert getfattr_dump(m2734.path / "selection.csv") == {}
    root = getfattr_dump(m2734.path)
    shown = (XATTR_SELECTION, XATTR_SUMMARY, XATTR_CACHE, XATTR_STATUS)
    assert set(root) == {n.decode() for n in shown}
    dumped_selection = root[XATTR_SELECTION.decode()]
    assert Selection.from_json(json.loads(f'"{dumped_selection}"')) == Selection()


def test_only_the_user_namespace_is_served(m2734: Mount) -> None:
    # `ls -l` probes every entry for security.selinux and POSIX ACLs. "Not supported" lets
    # coreutils stop asking for the rest of the device (a 10k-file `ls -lR` was 29,000 requests);
    # a missing `user.*` name is still "no such attribute".
    path = m2734.path / "JWST" / SEG1 / OPEN_FILE
    for target in (path, path.parent, m2734.path):
        for name in ("security.selinux", "system.posix_acl_access", "trusted.x"):
            with pytest.raises(OSError) as err:
                reads.getxattr(target, name)
            assert err.value.errno == errno.EOPNOTSUPP, (target, name)
        with pytest.raises(OSError) as err:
            reads.getxattr(target, "user.mast.no_such_key")
        assert err.value.errno == errno.ENODATA
    listing = subprocess.run(
        ["ls", "-l", str(path.parent)], capture_output=True, text=True, timeout=30, check=True
    )
    assert listing.stderr == ""
    modes = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert modes and all(m == "-r--r--r--" for m in modes), modes


def test_reselect_while_a_file_is_open(m2734: Mount, sim_control: SimControl) -> None:
    path = m2734.path / "JWST" / SEG1 / OPEN_FILE
    sim = default_catalog().file(OPEN_URI)
    assert sim is not None
    before = Views(m2734)
    before.check_agree()
    assert before.files == expected_paths("2734", lambda r: not guide_star(r))

    fd = os.open(path, os.O_RDONLY)
    # O_DIRECT reads bypass the kernel's page cache: they reach the mount every time, so they
    # show what the mount's own block cache holds.
    direct = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        inode = os.fstat(fd).st_ino
        # Read it all: every block is then in the mount's cache, and nothing more is fetched.
        whole = b"".join(os.pread(fd, 1 << 20, off) for off in range(0, sim.size, 1 << 20))
        assert whole == bytes(sim.read(0, sim.size))
        fetched = settled_gets(sim_control, OPEN_URI)
        assert fetched >= 1

        def still_readable() -> None:
            for off, size in ((0, 4096), (5_000_000, 300_000), (sim.size - 1000, 4096)):
                assert os.pread(fd, size, off) == bytes(sim.read(off, size))
                assert os.pread(direct, size, off) == bytes(sim.read(off, size))
            assert sim_control.gets(OPEN_URI) == fetched, "the re-selection dropped cached blocks"

        steps: list[tuple[list[str], Callable[[Row], bool], Selection]] = [
            (
                ["--recommended"],
                lambda r: r["productGroupDescription"] == MRP,
                Selection(quick="recommended"),
            ),
            (
                ["--group", "X1DINTS"],
                lambda r: r["productSubGroupDescription"] == "X1DINTS",
                Selection(groups=frozenset({"X1DINTS"})),
            ),
        ]
        previous = before
        for options, keep, selection in steps:
            done = select_cli(m2734, *options)
            assert done.returncode == 0, done.stderr
            views = Views(m2734)
            views.check_agree()
            assert views.selection == selection
            assert views.files == expected_paths("2734", keep)
            assert views.files != previous.files
            assert views.csv_bytes != previous.csv_bytes
            assert views.manifest_bytes != previous.manifest_bytes
            # `mastfs select` prints the new summary, the one the manifest shows.
            assert done.stdout.strip() == views.summary
            datasets = {p.split("/")[1] for p in views.files}
            assert set(reads.listdir(m2734.path / "JWST")) == datasets
            assert not reads.exists(path)
            still_readable()
            previous = views

        done = select_cli(m2734, "--all")
        assert done.returncode == 0, done.stderr
        after = Views(m2734)
        after.check_agree()
        assert after.csv_bytes == before.csv_bytes
        assert after.manifest_bytes == before.manifest_bytes
        assert after.files == before.files
        # The product is back under its path with its inode; the cache still has its bytes.
        assert reads.stat(path).st_ino == inode
        again = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            assert os.pread(again, sim.size, 0) == whole
        finally:
            os.close(again)
        still_readable()
    finally:
        os.close(direct)
        os.close(fd)


def test_select_without_options_prints_the_selection(m2734: Mount) -> None:
    done = select_cli(m2734, "--recommended", "--extension", "fits", "--regex", "/SEG00[12]/i")
    assert done.returncode == 0, done.stderr
    try:
        shown = select_cli(m2734)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == 2 and lines[0].startswith("selection: ")
        current = Selection.from_json(lines[0].removeprefix("selection: "))
        assert current == Selection.build(
            quick="recommended", extensions="fits", regex="/SEG00[12]/i"
        )
        views = Views(m2734)
        views.check_agree()
        assert lines[1] == views.summary
        assert views.files == expected_paths(
            "2734",
            lambda r: (
                r["productGroupDescription"] == MRP
                and r["productFilename"].endswith(".fits")
                and re.search("seg00[12]", r["productFilename"]) is not None
            ),
        )
        # Any tool can read it.
        getfattr = subprocess.run(
            ["getfattr", "--only-values", "-n", XATTR_SELECTION.decode(), str(m2734.path)],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        assert Selection.from_json(getfattr) == current
    finally:
        assert select_cli(m2734, "--all").returncode == 0


def test_bad_selection_changes_nothing(m2734: Mount) -> None:
    before = Views(m2734)
    done = select_cli(m2734, "--level", "9x")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mastfs: error: unknown level '9x'; valid levels: 1, 1b, 2, 2a")
    bad_regex = select_cli(m2734, "--regex", "/(unclosed/")
    assert bad_regex.returncode == 2 and len(bad_regex.stderr.splitlines()) == 1
    # Through the attribute itself, the mount refuses what is not a valid selection.
    for value in (b"not json", b'{"levels": ["9x"]}', b'{"colour": "blue"}', b"\xff"):
        with pytest.raises(OSError) as info:
            reads.os_call("setxattr", m2734.path, "user.mastfs.selection", value)
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        reads.os_call("setxattr", m2734.path / "selection.csv", "user.mastfs.selection", b"{}")
    assert info.value.errno == errno.EROFS
    after = Views(m2734)
    assert after.selection == before.selection
    assert after.files == before.files
    assert after.csv_bytes == before.csv_bytes
    assert after.manifest_bytes == before.manifest_bytes


def test_select_refuses_a_directory_that_is_no_mount(tmp_path: Path) -> None:
    done = run_cli(["select", str(tmp_path), "--recommended"], timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"mastfs: error: {tmp_path} is not a mastfs mount"


# -- the exclusive-access program 6543 ----------------------------------------------------------


def test_exclusive_access_program_mounts(tmp_path: Path, sim_url: str) -> None:
    cleanup_stale_mounts()
    ea_uris = {
        r["dataURI"]
        for r in catalog_rows("6543")
        if r["dataRights"] == "EXCLUSIVE_ACCESS" and not guide_star(r)
    }
    n = len(ea_uris)
    assert n > 0
    some = next(
        r
        for r in catalog_rows("6543")
        if r["dataRights"] == "EXCLUSIVE_ACCESS" and r["productFilename"].endswith("_cal.fits")
    )
    rel = f"JWST/{some['obs_id']}/{some['productFilename']}"

    with mounted(tmp_path / "anon", ["--program", "6543"], tmp_path / "c", server=sim_url) as m:
        ready = m.result.stdout.strip()
        assert ready.startswith(f"mastfs: mounted program 6543 at {m.path} (nested, anonymous): ")
        summary = reads.getxattr(m.path, "user.mastfs.summary").decode()
        assert ready.endswith(summary)
        assert re.fullmatch(
            rf"\d+ of \d+ files selected \(.+\); {n} exclusive-access files \(.+\) "
            r"are not readable without an authorized MAST token",
            summary,
        )
        assert (
            f"mastfs: warning: {n} selected exclusive-access files cannot be read "
            "without an authorized MAST token"
        ) in m.result.stderr.splitlines()
        assert reads.getxattr(m.path / rel, "user.mast.access") == b"EXCLUSIVE_ACCESS"
        assert reads.getxattr(m.path / rel, "user.mast.readable") == b"no"
        views = Views(m)
        views.check_agree()
        # --public-only leaves the readable files only, and the warning goes.
        assert select_cli(m, "--public-only").returncode == 0
        public = Views(m)
        public.check_agree()
        assert {r.access for r in public.manifest.rows} == {"PUBLIC"}
        assert "not readable" not in public.summary

    ada = TOKENS[AUTHORIZED_TOKEN].display_name
    env = {"MAST_API_TOKEN": AUTHORIZED_TOKEN}
    with mounted(
        tmp_path / "ada", ["--program", "6543"], tmp_path / "c", server=sim_url, env=env
    ) as m:
        ready = m.result.stdout.strip()
        assert ready.startswith(f"mastfs: mounted program 6543 at {m.path} (nested, {ada}): ")
        assert "not readable" not in ready and "warning" not in m.result.stderr
        assert reads.getxattr(m.path / rel, "user.mast.readable") == b"yes"
        Views(m).check_agree(user=ada)

    # Logged in, but not authorized for 6543: the summary names the user everywhere.
    una = TOKENS[UNAUTHORIZED_TOKEN].display_name
    env = {"MAST_API_TOKEN": UNAUTHORIZED_TOKEN}
    with mounted(
        tmp_path / "una", ["--program", "6543"], tmp_path / "c", server=sim_url, env=env
    ) as m:
        ready = m.result.stdout.strip()
        assert ready.startswith(f"mastfs: mounted program 6543 at {m.path} (nested, {una}): ")
        views = Views(m)
        views.check_agree(user=una)
        assert ready.endswith(views.summary)
        assert re.fullmatch(
            rf"\d+ of \d+ files selected \(.+\); {n} exclusive-access files \(.+\) "
            rf"are not readable by user {una}",
            views.summary,
        )
        assert f"mastfs: warning: {n} selected exclusive-access files cannot be read by {una}" in (
            m.result.stderr.splitlines()
        )
