"""A real mount of JWST program 2734 from the simulator, used as a user does.

The mount is a `mastfs mount` daemon started through the CLI; reads go through the kernel with
real tools (`ls`, `find`, `grep`, `cp`, astropy). The simulator's `/__sim/stats` shows what
crossed the network.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mastfs import system
from mastfs.sim.catalog import BIG_4G_URI, ONE_GIB_URI, default_catalog
from tests.support import reads
from tests.support.catalog import catalog_rows
from tests.support.child import PythonChild
from tests.support.mounting import (
    Mount,
    cleanup_stale_mounts,
    is_mounted,
    mounted,
    process_gone,
    run_cli,
)
from tests.support.sim import Sim

pytestmark = pytest.mark.mount

MIB = 1 << 20
# The flags of open(path, "w").
WRITE_NEW = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def is_guide_star(row: dict) -> bool:
    return "_gs-" in row["productFilename"]


@pytest.fixture(scope="module")
def m2734(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> Iterator[Mount]:
    cleanup_stale_mounts()
    root = tmp_path_factory.mktemp("m2734")
    with mounted(root / "mnt", ["--program", "2734"], root / "cache", server=sim_url) as m:
        yield m


def product_path(m: Mount, uri: str) -> Path:
    rows = [r for r in catalog_rows("2734") if r["dataURI"] == uri]
    assert rows, uri
    row = rows[0]
    return m.path / row["obs_collection"] / row["obs_id"] / row["productFilename"]


def test_ls_lR_shows_the_tree(m2734: Mount) -> None:
    out = subprocess.run(
        ["ls", "-lR", str(m2734.path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "manifest.html" in out and "selection.csv" in out
    top = sorted(reads.listdir(m2734.path))
    assert top == ["JWST", "headers", "manifest.html", "selection.csv"]
    expected_datasets = {r["obs_id"] for r in catalog_rows("2734") if not is_guide_star(r)}
    assert set(reads.listdir(m2734.path / "JWST")) == expected_datasets


def test_find_cal_files_excludes_guide_stars(m2734: Mount) -> None:
    out = subprocess.run(
        ["find", str(m2734.path), "-name", "*_cal.fits"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    found = {Path(p).relative_to(m2734.path).as_posix() for p in out}
    expected = {
        f"{r['obs_collection']}/{r['obs_id']}/{r['productFilename']}"
        for r in catalog_rows("2734")
        if r["productFilename"].endswith("_cal.fits") and not is_guide_star(r)
    }
    assert found == expected
    assert expected, "program 2734 has _cal.fits products"


def test_sizes_and_mtimes_come_from_metadata(m2734: Mount) -> None:
    for row in catalog_rows("2734")[:20]:
        if is_guide_star(row):
            continue
        st_ = reads.stat(
            m2734.path / row["obs_collection"] / row["obs_id"] / row["productFilename"]
        )
        assert st_.st_size == int(row["size"])
        assert st_.st_mtime > 1.5e9  # from the observation's t_max, not the epoch


def test_grep_selection_csv(m2734: Mount) -> None:
    text = reads.read_text(m2734.path / "selection.csv")
    assert text.splitlines()[0].startswith(
        "Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating"
    )
    grep = subprocess.run(
        ["grep", "-c", "_x1dints.fits", str(m2734.path / "selection.csv")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert grep.returncode == 0 and int(grep.stdout) >= 1
    rows = list(csv.reader(io.StringIO(text)))
    listed = {r[1] for r in rows[1:]}
    expected = {r["productFilename"] for r in catalog_rows("2734") if not is_guide_star(r)}
    assert listed == expected


def test_cp_matches_simulator_sha256(m2734: Mount, tmp_path: Path, sim_url: str) -> None:
    rows = [
        r
        for r in catalog_rows("2734")
        if r["productFilename"].endswith("_x1dints.fits") and int(r["size"]) < 512 * MIB
    ]
    assert rows
    row = rows[0]
    src = m2734.path / row["obs_collection"] / row["obs_id"] / row["productFilename"]
    subprocess.run(["cp", str(src), str(tmp_path / "copy.fits")], check=True, timeout=120)
    digest = hashlib.sha256((tmp_path / "copy.fits").read_bytes()).hexdigest()
    assert digest == default_catalog().file(row["dataURI"]).sha256()


def test_sequential_read_is_handed_to_the_page_cache_intact(m2734: Mount, tmp_path: Path) -> None:
    """A streaming reader gets most readahead through the kernel's page cache (`notify_store`),
    without a FUSE read per MiB; every byte of it must be the archive's."""
    rows = [r for r in catalog_rows("2734") if 256 * MIB <= int(r["size"]) <= 600 * MIB]
    assert rows
    row = min(rows, key=lambda r: int(r["size"]))
    src = m2734.path / row["obs_collection"] / row["obs_id"] / row["productFilename"]
    before = json.loads(reads.getxattr(m2734.path, "user.mastfs.cache"))
    done = subprocess.run(
        ["dd", f"if={src}", "of=/dev/null", "bs=1M"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    after = json.loads(reads.getxattr(m2734.path, "user.mastfs.cache"))
    handed = after["handed_bytes"] - before["handed_bytes"]
    served = after["bytes_served"] - before["bytes_served"]
    assert handed > int(row["size"]) // 4, (handed, served)
    assert served < int(row["size"]), "every MiB went through a FUSE read"
    # The bytes readers now get from the page cache (a second pass) are the archive's.
    digest = reads.sha256(src)
    assert digest == default_catalog().file(row["dataURI"]).sha256()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_reads_match_the_archive(m2734: Mount, data: st.DataObject) -> None:
    sim_file = default_catalog().file(ONE_GIB_URI)
    path = product_path(m2734, ONE_GIB_URI)
    offset = data.draw(st.integers(0, sim_file.size - 1))
    size = data.draw(st.integers(1, 3 * MIB))
    got = reads.pread(path, offset, size)
    assert got == bytes(sim_file.read(offset, size))


def test_hard_links_for_shared_products(m2734: Mount) -> None:
    by_uri: dict[str, set[str]] = {}
    for r in catalog_rows("2734"):
        if not is_guide_star(r):
            by_uri.setdefault(r["dataURI"], set()).add(f"{r['obs_id']}/{r['productFilename']}")
    shared = {u: p for u, p in by_uri.items() if len(p) > 1}
    assert shared, "the simulator's 2734 has products shared between datasets"
    for paths in shared.values():
        stats_ = [reads.stat(m2734.path / "JWST" / p) for p in sorted(paths)]
        assert len({s.st_ino for s in stats_}) == 1
        assert all(s.st_nlink == len(paths) for s in stats_)


def test_read_only(m2734: Mount) -> None:
    some_dir = m2734.path / "JWST" / sorted(reads.listdir(m2734.path / "JWST"))[0]
    some_file = some_dir / sorted(reads.listdir(some_dir))[0]
    # Each call in a child process; the flags are those of open(..., "w") and open(..., "r+b").
    attempts = [
        lambda: reads.os_call("open", m2734.path / "new.txt", WRITE_NEW, 0o666),
        lambda: reads.os_call("open", some_file, os.O_RDWR),
        lambda: reads.os_call("mkdir", m2734.path / "newdir"),
        lambda: reads.os_call("unlink", some_file),
        lambda: reads.os_call("rename", some_file, some_dir / "renamed"),
        lambda: reads.os_call("chmod", some_file, 0o644),
        lambda: reads.os_call("truncate", some_file, 0),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS
    # The kernel answers access() itself (default_permissions): a file has no write bit, but
    # root passes any such check (CAP_DAC_OVERRIDE); its writes still fail with EROFS above.
    assert not reads.stat(some_file).st_mode & 0o222
    assert reads.os_call("access", some_file, os.W_OK) == (os.getuid() == 0)
    assert reads.os_call("access", some_file, os.R_OK)


def test_statfs_answers(m2734: Mount) -> None:
    st_ = reads.os_call("statvfs", m2734.path)
    assert st_.f_blocks > 0 and st_.f_files > 0
    df = subprocess.run(["df", "-h", str(m2734.path)], capture_output=True, text=True, timeout=30)
    assert df.returncode == 0 and "mastfs" in df.stdout


def test_getheader_of_4gib_product_moves_kilobytes(
    m2734: Mount, sim: Sim, python_child: PythonChild
) -> None:
    from astropy.io import fits

    path = product_path(m2734, BIG_4G_URI)
    assert reads.stat(path).st_size >= 4 << 30
    sim.reset_stats()
    header = python_child.call(fits.getheader, path)
    first = sim.sent(BIG_4G_URI)
    assert header["TELESCOP"] == "JWST"
    assert header["PROGRAM"].lstrip("0") == "2734"
    assert 0 < first <= 4 * MIB, f"getheader fetched {first} bytes"
    # A second read is served locally: nothing crosses the network.
    python_child.call(fits.getheader, path)
    python_child.call(primary_header, path)
    assert sim.sent(BIG_4G_URI) == first


def primary_header(path: Path) -> Any:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return hdul[0].header


def test_astropy_memmap_and_section(m2734: Mount, python_child: PythonChild) -> None:
    python_child.call(astropy_memmap_and_section, m2734)


def astropy_memmap_and_section(m2734: Mount) -> None:
    """In the child process: astropy reads a product's SCI data through the mount."""
    from astropy.io import fits

    rows = [r for r in catalog_rows("2734") if r["productFilename"].endswith("_cal.fits")]
    rows = [r for r in rows if not is_guide_star(r)]
    path = m2734.path / "JWST" / rows[0]["obs_id"] / rows[0]["productFilename"]
    sim_bytes = bytes(default_catalog().file(rows[0]["dataURI"]).read(0, int(rows[0]["size"])))
    with fits.open(io.BytesIO(sim_bytes)) as ref:
        expected = np.array(ref["SCI"].data)
    for memmap in (True, False):
        with fits.open(path, memmap=memmap) as hdul:
            data = hdul["SCI"].data
            assert np.array_equal(np.asarray(data), expected, equal_nan=True)
            cut = hdul["SCI"].section[..., 10:20, 30:50]
            assert np.array_equal(cut, expected[..., 10:20, 30:50], equal_nan=True)


def test_remount_reads_from_the_cache(
    tmp_path: Path, sim_url: str, sim: Sim, python_child: PythonChild
) -> None:
    cache = tmp_path / "cache"
    from astropy.io import fits

    with mounted(tmp_path / "a", ["--program", "2734"], cache, server=sim_url) as m:
        python_child.call(fits.getheader, product_path(m, BIG_4G_URI))
    assert not is_mounted(tmp_path / "a")
    sim.reset_stats()
    with mounted(tmp_path / "b", ["--program", "2734"], cache, server=sim_url) as m:
        header = python_child.call(fits.getheader, product_path(m, BIG_4G_URI))
        assert header["TELESCOP"] == "JWST"
        assert sim.gets(BIG_4G_URI) == 0
        assert sim.sent(BIG_4G_URI) == 0


def test_umount_leaves_no_process(tmp_path: Path, sim_url: str) -> None:
    mp = tmp_path / "mnt"
    with mounted(mp, ["--program", "1558"], tmp_path / "cache", server=sim_url) as m:
        pid = m.pid
        assert pid is not None
        done = run_cli(["umount", str(mp)])
        assert done.returncode == 0, done.stderr
        assert not is_mounted(mp)
        assert process_gone(pid), f"mount process {pid} still running after umount"


def test_flat_layout(tmp_path: Path, sim_url: str) -> None:
    with mounted(
        tmp_path / "mnt", ["--program", "2734", "--layout", "flat"], tmp_path / "c", server=sim_url
    ) as m:
        names = set(reads.listdir(m.path))
        uris = {r["dataURI"] for r in catalog_rows("2734") if not is_guide_star(r)}
        assert {"manifest.html", "selection.csv", "headers"} <= names
        assert len(names) == len(uris) + 3
        assert [n for n in names if reads.is_dir(m.path / n)] == ["headers"]


def test_shutil_copy_of_manifest(m2734: Mount, tmp_path: Path, python_child: PythonChild) -> None:
    python_child.call(shutil.copy, m2734.path / "manifest.html", tmp_path / "m.html")
    html = (tmp_path / "m.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "anonymous" in html


def test_content_change_drops_stale_blocks(tmp_path: Path, sim_url: str, sim: Sim) -> None:
    """A product reprocessed in place while open (issue 13): the open file's further reads fail
    with EIO instead of mixing two versions; a new open reads only the new version, the pages
    the kernel held of the old one dropped first."""
    rows = [r for r in catalog_rows("1558") if r["productFilename"].endswith("_i2d.fits")]
    row = max(rows, key=lambda r: int(r["size"]))
    uri, size = row["dataURI"], int(row["size"])
    assert size > 8 * MIB
    old = default_catalog().file(uri)
    new = old.with_generation(1)
    try:
        with mounted(
            tmp_path / "mnt",
            ["--program", "1558", "--metadata-ttl", "0"],
            tmp_path / "c",
            server=sim_url,
        ) as m:
            path = m.path / row["obs_collection"] / row["obs_id"] / row["productFilename"]
            fd = os.open(path, os.O_RDONLY)
            try:
                assert os.pread(fd, 4096, 0) == bytes(old.read(0, 4096))
                sim.change(uri, generation=1)
                # A block never read before comes with the new ETag: this open's version is
                # gone, and its read fails rather than return the new version's bytes.
                tail = size - 4096
                with pytest.raises(OSError) as failed:
                    os.pread(fd, 4096, tail)
                assert failed.value.errno == errno.EIO
                # Bytes it read before are still the old version's (the kernel's pages).
                assert os.pread(fd, 4096, 0) in (bytes(old.read(0, 4096)), b"")
            except OSError as exc:
                assert exc.errno == errno.EIO
            finally:
                os.close(fd)
            # A new open revalidates (--metadata-ttl 0) and reads the new version only.
            head = reads.pread(path, 0, 4096)
            assert head == bytes(new.read(0, 4096))
            assert head != bytes(old.read(0, 4096))
            assert reads.pread(path, size - 4096, 4096) == bytes(new.read(size - 4096, 4096))
    finally:
        sim.change(uri, generation=0)


def test_lazy_umount_with_a_reader_still_open_succeeds(tmp_path: Path, sim_url: str) -> None:
    """`mastfs umount --lazy` detaches at once and says the daemon lives on while a program
    still reads (issue 13); the daemon ends when that program closes its file."""
    with mounted(tmp_path / "mnt", ["--program", "2734"], tmp_path / "c", server=sim_url) as m:
        row = next(r for r in catalog_rows("2734") if r["productFilename"].endswith(".fits"))
        product = f"{row['obs_collection']}/{row['obs_id']}/{row['productFilename']}"
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; f = open(sys.argv[1], 'rb'); f.read(10); print('open', "
                "flush=True); time.sleep(120)",
                str(m.path / product),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
            done = run_cli(["umount", "--lazy", str(m.path)], timeout=60)
            assert done.returncode == 0, done.stderr
            assert "detached" in done.stderr and "Traceback" not in done.stderr
            assert not is_mounted(m.path)
            assert m.pid is not None and system.pid_alive(m.pid)
        finally:
            holder.kill()
            holder.wait()
        assert m.pid is not None and system.wait_gone(m.pid, 30)
