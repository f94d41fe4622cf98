"""Golden header texts of program 2734: astropy's reading of the simulator's files, HDU by HDU.

Each golden file (`tests/golden/headers-2734/<file>.txt`) is what `headers/` must serve for a
FITS product: astropy's `fits.info` line and `repr(header)` per HDU (tests/support/headers.py).
This checks that the golden files are still astropy's reading of the simulator's files and that
the header walker (`mastfs.fitsheaders`) renders exactly them from the same bytes; the mount
tests (tests/mount/test_headers.py) compare what a real mount serves with them. After a change to
the simulator's FITS headers: `MASTFS_UPDATE_GOLDEN=1` and review the diff.
"""

from __future__ import annotations

from typing import Any

import pytest

from mastfs.fitsheaders import HeaderWalk, render
from mastfs.sim.catalog import default_catalog
from tests.support.headers import GOLDEN_HEADERS, UPDATE, astropy_text, golden_name


def fits_files_2734() -> list[Any]:
    return sorted(
        (f for f in default_catalog().files() if f.proposal_id == "2734"
         and f.filename.endswith(".fits")),
        key=lambda f: f.filename,
    )  # fmt: skip


def walked_text(simfile: Any, chunk: int) -> bytes:
    walk = HeaderWalk(simfile.size)
    while (at := walk.want()) is not None:
        walk.feed(at, simfile.read(at, max(2880, chunk - at % chunk)))
    return render(walk.hdus)


def test_golden_headers_are_astropys_reading_of_the_simulator() -> None:
    files = fits_files_2734()
    assert len(files) == 64
    if UPDATE:
        for old in GOLDEN_HEADERS.glob("*.txt"):
            old.unlink()
        for f in files:
            (GOLDEN_HEADERS / golden_name(f.filename)).write_text(astropy_text(f))
    assert sorted(p.name for p in GOLDEN_HEADERS.glob("*.txt")) == [
        golden_name(f.filename) for f in files
    ]
    for f in files:
        assert (GOLDEN_HEADERS / golden_name(f.filename)).read_text() == astropy_text(f), f.filename


@pytest.mark.parametrize("chunk", [2880, 65536, 1 << 20])
def test_walker_renders_the_golden_headers(chunk: int) -> None:
    """HDU by HDU, from reads of any size (one FITS block, a header block, a product block)."""
    for f in fits_files_2734():
        golden = (GOLDEN_HEADERS / golden_name(f.filename)).read_bytes()
        mine = walked_text(f, chunk)
        assert mine.split(b"\n# HDU ") == golden.split(b"\n# HDU "), f.filename
