"""The `mast://` fsspec filesystem against the simulator over HTTP, in processes with no mount.

The tree is the mount's (`selection.csv` is the golden file a mount serves), bytes are the
simulator's, errors are Python's, and pickled filesystems in other processes share one block
cache: a process reading after them fetches nothing. The processes that read products run with
the entry point (no import of mastfs first), pyfuse3 unimportable, and no capabilities at all.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest

from mastfs.fsspec_fs import MastFileSystem
from mastfs.sim.catalog import AUTHORIZED_TOKEN
from tests.support.views import read_csv

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MiB = 1 << 20
# A process without FUSE and without root's powers, as on a Kubernetes science platform: no
# capability (no CAP_SYS_ADMIN), no setuid (fusermount3 cannot help), pyfuse3 not importable.
# Root drops every capability for good; another user has none to drop.
POWERLESS = ["setpriv", "--no-new-privs"] + (
    [
        "--securebits",
        "+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
        "--bounding-set",
        "-all",
        "--inh-caps",
        "-all",
    ]
    if os.geteuid() == 0
    else []
)
NO_FUSE = "import sys; sys.modules['pyfuse3'] = None\n"


@pytest.fixture(scope="module")
def fs(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MastFileSystem]:
    """One query session for the module's tests (none of them counts the archive's bytes)."""
    cache = tmp_path_factory.mktemp("fsspec") / "cache"
    fs = MastFileSystem(program=2734, server=sim_url, cache_dir=cache)
    try:
        yield fs
    finally:
        fs.close()


def test_a_target_is_resolved_where_the_mount_resolves_it(sim: Any, tmp_path: Path) -> None:
    resolver = sim.urls()["resolver_url"] + "/Santa-war/query"
    sim.reset_stats()
    fs = MastFileSystem(
        target="M1", radius=0.05, server=sim.url, resolver=resolver, cache_dir=tmp_path / "c"
    )
    try:
        assert fs.ls("", detail=False)[0] == "HLA"
    finally:
        fs.close()
    assert sim.http.get("/__sim/stats").json()["endpoints"]["santa"] == 1
    with pytest.raises(ValueError, match="invalid resolver URL"):
        MastFileSystem(program=2734, server=sim.url, resolver="ftp://x", cache_dir=tmp_path)


def test_the_tree_is_the_mounts(fs: MastFileSystem, sim: Any) -> None:
    assert fs.ls("", detail=False) == ["JWST", "manifest.html", "selection.csv"]
    csv = fs.cat("selection.csv")
    assert csv == (GOLDEN / "2734-selection.csv").read_bytes()
    rows = read_csv(csv)[1]
    assert sorted(fs.find("JWST")) == sorted({row["Path"] for row in rows})
    x1d = [row for row in rows if row["Suffix"] == "_x1dints"]
    assert fs.glob("JWST/*/*_x1dints.fits") == sorted(row["Path"] for row in x1d)
    info = fs.info(x1d[0]["Path"])
    assert (info["type"], info["size"]) == ("file", int(x1d[0]["Size"]))
    assert info["user.mast.uri"] == x1d[0]["URI"]
    assert info["user.mast.access"] == "PUBLIC" and info["user.mast.readable"] == "yes"
    assert fs.info(info["name"].rpartition("/")[0])["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info("JWST/no-such-dataset")


def test_reads_are_the_archives_bytes(fs: MastFileSystem, sim: Any) -> None:
    rows = sorted(read_csv(fs.cat("selection.csv"))[1], key=lambda r: int(r["Size"]))
    small, big = rows[0], rows[-1]
    uri = big["URI"]
    size = int(big["Size"])
    with fs.open(big["Path"]) as f:
        for offset in (size - 1000, 5 * MiB + 3, 0):
            f.seek(offset)
            assert f.read(3000) == sim.expected(uri, offset, min(3000, size - offset))
    assert fs.cat_file(small["Path"]) == sim.expected(small["URI"], 0, int(small["Size"]))
    got = fs.cat_ranges(
        [big["Path"], big["Path"], small["Path"], "JWST/nothing"],
        [0, size - 10, -5, 0],
        [10, None, None, 1],
    )
    assert got[:3] == [
        sim.expected(uri, 0, 10),
        sim.expected(uri, size - 10, 10),
        sim.expected(small["URI"], int(small["Size"]) - 5, 5),
    ]
    assert isinstance(got[3], FileNotFoundError)
    with pytest.raises(OSError) as refused:
        fs.open(big["Path"], "wb")
    assert refused.value.errno == errno.EROFS


def test_an_exclusive_product_needs_the_token(sim: Any, sim_url: str, tmp_path: Path) -> None:
    anonymous = MastFileSystem(program=6543, server=sim_url, cache_dir=tmp_path / "cache")
    try:
        infos = anonymous.find("", detail=True).values()
        ea = [i["name"] for i in infos if i.get("user.mast.access") == "EXCLUSIVE_ACCESS"]
        assert ea and anonymous.info(ea[0])["user.mast.readable"] == "no"
        with pytest.raises(PermissionError):
            anonymous.cat_file(ea[0], 0, 10)
    finally:
        anonymous.close()


def test_options_are_checked_by_name(sim_url: str) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        MastFileSystem(program=2734, server=sim_url, cache_size="lots")
    with pytest.raises(ValueError, match="'token'"):
        MastFileSystem(program=2734, token="secret")
    with pytest.raises(ValueError, match="level '9'"):
        MastFileSystem(program=2734, level="9")


_READER = NO_FUSE + """
import json, fsspec, pickle
fs = pickle.loads(bytes.fromhex(sys.argv[1]))
out = {p: fs.cat_file(p).hex() for p in json.loads(sys.argv[2])}
print(json.dumps({"out": out, "fs": type(fs).__module__}))
"""


def _readers(blob: bytes, parts: list[list[str]]) -> dict[str, bytes]:
    """Each part read by a process of its own, all at once; the bytes by path."""
    children = [
        subprocess.Popen(
            [*POWERLESS, sys.executable, "-c", _READER, blob.hex(), json.dumps(paths)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for paths in parts
    ]
    out: dict[str, bytes] = {}
    try:
        for child in children:
            stdout, stderr = child.communicate(timeout=120)
            assert child.returncode == 0, stderr
            answer = json.loads(stdout)
            assert answer["fs"] == "mastfs.fsspec_fs"
            out.update({path: bytes.fromhex(data) for path, data in answer["out"].items()})
    finally:
        for child in children:
            child.kill()
            child.wait()
    return out


def test_pickled_filesystems_in_processes_share_one_cache(
    sim: Any, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The readers log in with the token of their own environment; it is not in the pickle.
    monkeypatch.setenv("MAST_API_TOKEN", AUTHORIZED_TOKEN)
    fs = MastFileSystem(program=2734, server=sim_url, cache_dir=tmp_path / "cache")
    blob = pickle.dumps(fs)
    assert AUTHORIZED_TOKEN.encode() not in blob
    rows = read_csv((GOLDEN / "2734-selection.csv").read_bytes())[1]
    rows = sorted(rows, key=lambda r: int(r["Size"]))[:12]
    halves = [[r["Path"] for r in rows[0::2]], [r["Path"] for r in rows[1::2]]]
    first = _readers(blob, halves)
    for row in rows:
        assert first[row["Path"]] == sim.expected(row["URI"], 0, int(row["Size"]))
    assert all(sim.gets(row["URI"]) for row in rows)
    # And this process, through the filesystem it pickled: all of it from the shared disk.
    sim.reset_stats()
    try:
        assert {row["Path"]: fs.cat_file(row["Path"]) for row in rows} == first
    finally:
        fs.close()
    assert sum(sim.gets(row["URI"]) + sim.sent(row["URI"]) for row in rows) == 0


def _cat_in_fork(fs: MastFileSystem, path: str) -> bytes:
    return fs.cat_file(path)


def test_a_forked_child_starts_its_own_loop(fs: MastFileSystem, sim: Any) -> None:
    rows = read_csv(fs.cat("selection.csv"))[1]
    small = min(rows, key=lambda r: int(r["Size"]))
    # The parent's loop thread does not exist in the child, nor may it be touched from there.
    with get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_cat_in_fork, (fs, small["Path"])).get(timeout=120)
    assert got == sim.expected(small["URI"], 0, int(small["Size"]))
    assert fs.cat_file(small["Path"]) == got  # and the parent's still serves


def test_products_by_uri(
    sim: Any, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    small = sim.pick(max_size=100_000)  # shorter than a block: its size comes from the GET
    ea = sim.pick(rights="EXCLUSIVE_ACCESS", proposal="6543")
    anonymous = MastFileSystem(server=sim_url, cache_dir=cache)
    monkeypatch.setenv("MAST_API_TOKEN", AUTHORIZED_TOKEN)
    authorized = MastFileSystem(server=sim_url, cache_dir=cache, skip_instance_cache=True)
    try:
        path = small.uri.removeprefix("mast:")
        assert anonymous.info("mast://" + path)["size"] == small.size
        assert anonymous.cat_file(path) == sim.expected(small.uri, 0, small.size)
        with pytest.raises(FileNotFoundError):
            anonymous.info("JWST/product/no-such-file.fits")
        with pytest.raises(FileNotFoundError, match="nothing can be listed"):
            anonymous.ls("JWST")
        with pytest.raises(PermissionError):
            anonymous.cat_file(ea.uri.removeprefix("mast:"), 0, 10)
        assert authorized.cat_file(ea.uri, 0, 100) == sim.expected(ea.uri, 0, 100)
    finally:
        anonymous.close()
        authorized.close()
