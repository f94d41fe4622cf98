"""`headers/` through a real mount of program 2734, used with real tools.

What crosses the network is read from the simulator's `/__sim/stats`: looking at a header file
fetches nothing, reading one fetches at most one header-cache block (64 KiB) per HDU, and every
tool that reads a file to its end (cat, grep, less, wc, Python's `open().read()`) gets the same
text, equal to astropy's reading of the product (the golden files).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastfs.cache import HEADER_BLOCK_SIZE
from mastfs.headers import WHOLE_MAX
from mastfs.xattrs import XATTR_CACHED
from tests.support import reads
from tests.support.headers import GOLDEN_HEADERS, golden_name
from tests.support.mounting import Mount, cleanup_stale_mounts, mounted
from tests.support.sim import Sim

pytestmark = pytest.mark.mount

SEGMENT = "jw02734001001_02101_00001-seg002_nis"


@pytest.fixture(scope="module")
def m2734(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> Iterator[Mount]:
    cleanup_stale_mounts()
    root = tmp_path_factory.mktemp("headers2734")
    with mounted(root / "mnt", ["--program", "2734"], root / "cache", server=sim_url) as m:
        yield m


def fits_rows(m: Mount) -> list[dict[str, str]]:
    text = reads.read_text(m.path / "selection.csv")
    return [r for r in csv.DictReader(io.StringIO(text)) if r["Filename"].endswith(".fits")]


def header_path(m: Mount, row: dict[str, str]) -> Path:
    return m.path / "headers" / (row["Path"] + ".txt")


def run(argv: list[str], path: Path) -> bytes:
    done = reads.run_reader(argv, path)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


def test_looking_at_header_files_fetches_nothing(m2734: Mount, sim: Sim) -> None:
    rows = fits_rows(m2734)
    assert len(rows) == 52
    for row in rows:
        st = reads.stat(header_path(m2734, row))
        assert st.st_size == 0 and st.st_mode & 0o444
    assert sum(sim.gets(row["URI"]) for row in rows) == 0


def test_grep_reads_one_header_block_per_hdu_at_most(m2734: Mount, sim: Sim) -> None:
    rows = fits_rows(m2734)
    headers = m2734.path / "headers"
    found = run(["grep", "-rl", "TARGNAME", str(headers)], headers).decode().splitlines()
    assert sorted(found) == sorted(str(header_path(m2734, r)) for r in rows)
    dates = run(["grep", "-r", "DATE-OBS", str(headers)], headers).decode().splitlines()
    assert len(dates) == 52 and all("DATE-OBS= '2022-" in line for line in dates)
    for row in rows:
        hdus = (GOLDEN_HEADERS / golden_name(row["Filename"])).read_text().count("# HDU ")
        assert 0 < sim.gets(row["URI"]) <= hdus, row["Filename"]
        assert sim.sent(row["URI"]) <= hdus * HEADER_BLOCK_SIZE, row["Filename"]


def test_every_tool_reads_the_golden_text(m2734: Mount) -> None:
    rows = fits_rows(m2734)
    for row in rows:
        golden = (GOLDEN_HEADERS / golden_name(row["Filename"])).read_bytes()
        assert reads.read_bytes(header_path(m2734, row)) == golden, row["Filename"]
    # The biggest product's text (the 4 GiB uncal) and a small one, with each tool.
    for row in (max(rows, key=lambda r: int(r["Size"])), min(rows, key=lambda r: int(r["Size"]))):
        path = header_path(m2734, row)
        golden = (GOLDEN_HEADERS / golden_name(row["Filename"])).read_bytes()
        assert run(["less", "-F", str(path)], path) == golden
        counted = run(["wc", "-l", "-c", str(path)], path).split()
        assert counted[:2] == [str(golden.count(b"\n")).encode(), str(len(golden)).encode()]
        code = f"import sys; sys.stdout.buffer.write(open({str(path)!r}, 'rb').read())"
        assert run([sys.executable, "-c", code], path) == golden
        code = f"print(len(open({str(path)!r}).read()))"
        assert run([sys.executable, "-c", code], path).strip() == str(len(golden)).encode()


def test_listing_then_reading_fetches_a_folders_headers_ahead(
    tmp_path: Path, sim_url: str, sim: Sim
) -> None:
    with mounted(tmp_path / "mnt", ["--program", "2734"], tmp_path / "cache", server=sim_url) as m:
        rows = [r for r in fits_rows(m) if r["Dataset"] == SEGMENT]
        assert len(rows) == 5
        folder = header_path(m, rows[0]).parent
        listing = run(["ls", "-lR", str(m.path)], m.path).decode()
        assert all(golden_name(r["Filename"]) in listing for r in rows)
        assert sorted(reads.listdir(folder)) == sorted(golden_name(r["Filename"]) for r in rows)
        # Listings alone fetch nothing; reading one header has the folder's others fetched, in
        # the background (nothing here reads them).
        reads.stat(m.path / "selection.csv")
        assert sum(sim.gets(r["URI"]) for r in rows) == 0
        reads.read_bytes(header_path(m, rows[0]))
        done = subprocess.run(
            [sys.executable, "-c", WAIT_FOR_GETS, sim_url, *(r["URI"] for r in rows[1:])],
            timeout=120,
            check=False,
        )
        assert done.returncode == 0
        for row in rows:
            assert (
                reads.read_bytes(header_path(m, row))
                == (GOLDEN_HEADERS / golden_name(row["Filename"])).read_bytes()
            )


# Polls the simulator until every product named has been fetched (a deadline, not a timing).
WAIT_FOR_GETS = """
import sys, time
from tests.support.sim import SimControl
control = SimControl(sys.argv[1])
deadline = time.monotonic() + 100
while not all(control.gets(uri) for uri in sys.argv[2:]):
    if time.monotonic() > deadline:
        sys.exit("not fetched: " + " ".join(u for u in sys.argv[2:] if not control.gets(u)))
    time.sleep(0.1)
"""


def test_texts_are_kept_not_the_bytes_read_for_them_and_a_remount_reads_them_back(
    tmp_path: Path, sim_url: str, sim: Sim
) -> None:
    """Program 10775's FITS products, small (at most `WHOLE_MAX` bytes, read whole) and large
    (read header by header): the disk cache keeps their texts, not the bytes read for them,
    and a remount serves the texts from there without fetching a byte of the products."""
    cache = tmp_path / "cache"
    with mounted(tmp_path / "mnt", ["--program", "10775"], cache, server=sim_url) as m:
        rows = [r for r in fits_rows(m) if r["Access"] == "PUBLIC"]
        small = [r for r in rows if int(r["Size"]) <= WHOLE_MAX]
        assert len(small) >= 30 and len(rows) - len(small) >= 10
        texts = {r["URI"]: reads.read_bytes(header_path(m, r)) for r in rows}
        assert all(text.startswith(b"# HDU 0 PRIMARY") for text in texts.values())
        assert all(sim.gets(uri) >= 1 for uri in texts)
        for row in small:
            product = m.path / row["Path"]
            assert int(reads.getxattr(product, XATTR_CACHED.decode())) == 0, row["Filename"]
    sim.reset_stats()
    with mounted(tmp_path / "mnt", ["--program", "10775"], cache, server=sim_url) as m:
        for row in rows:
            assert reads.read_bytes(header_path(m, row)) == texts[row["URI"]], row["Filename"]
        assert sum(sim.gets(uri) for uri in texts) == 0
