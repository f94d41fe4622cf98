"""Values from the archive checked at the boundary: sizes, times, strings, and what is printed.

`archive.product_from_values` is the one door a product row passes (live or from the query
cache); `safetext.clean` is what every string from the archive and every terminal line goes
through; `views.csv_cell` neutralises spreadsheet formulas in `selection.csv`.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mastfs.archive import (
    MAX_MTIME,
    MAX_SIZE,
    MAX_TEXT,
    InvalidRow,
    product_from_values,
    valid_level,
    valid_mtime,
    valid_size,
)
from mastfs.safetext import REPLACEMENT, clean
from mastfs.table import format_table
from mastfs.tree import build_tree
from mastfs.views import csv_cell, selection_csv

URI = "mast:JWST/product/jw02734001001_02101_00001-seg001_nis_cal.fits"


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dataURI": URI,
        "productFilename": "jw02734001001_02101_00001-seg001_nis_cal.fits",
        "obs_id": "jw02734001001_02101_00001-seg001_nis",
        "obs_collection": "JWST",
        "size": 2880,
        "calib_level": 2,
        "mtime": 1656633600.0,
        "dataRights": "PUBLIC",
    }
    return base | values


# -- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 0),  # unknown, as astroquery's mask: kept, size 0
        (0, 0),
        (2880, 2880),
        (2880.0, 2880),
        (MAX_SIZE, MAX_SIZE),
        (MAX_SIZE + 1, None),
        (10**20, None),
        (1e20, None),
        (-1, None),
        (-999, None),
        (1.5, None),
        (math.nan, None),
        (math.inf, None),
        (True, None),
        ("2880", None),
        ([2880], None),
    ],
)
def test_sizes_outside_0_to_2_50_are_not_sizes(raw: Any, expected: int | None) -> None:
    assert valid_size(raw) == expected


def test_a_row_with_an_invalid_size_is_refused() -> None:
    with pytest.raises(InvalidRow, match="an invalid size"):
        product_from_values(row(size=10**20))
    with pytest.raises(InvalidRow, match="no dataURI"):
        product_from_values(row(dataURI=None))
    assert product_from_values(row(size=None)).size == 0


# -- times and levels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1656633600.0, 1656633600.0),
        (1656633600.12345, 1656633600.123),
        (8.64e304, MAX_MTIME),  # t_max = 1e300 (MJD) in POSIX seconds
        (math.inf, MAX_MTIME),
        (10**400, MAX_MTIME),
        (-1e300, 0.0),
        (-(10**400), 0.0),
        (math.nan, 0.0),
        (None, 0.0),
        ("1656633600", 0.0),
        (True, 0.0),
    ],
)
def test_times_are_clamped(raw: Any, expected: float) -> None:
    assert valid_mtime(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [(3, 3), (3.0, 3), (100, 0), (-1, 0), ("3", 0)])
def test_levels(raw: Any, expected: int) -> None:
    assert valid_level(raw) == expected


# -- strings -------------------------------------------------------------------------------------


def test_strings_are_valid_unicode_without_controls() -> None:
    p = product_from_values(
        row(
            productFilename="a\x00b\x1b[31mc\ud800d.fits",
            description="line\none\ttab\x07bell\x9bcsi",
            obs_id=12345,
            filters=None,
        )
    )
    assert p.productFilename == f"a{REPLACEMENT}b{REPLACEMENT}[31mc{REPLACEMENT}d.fits"
    assert p.description == f"line one tab{REPLACEMENT}bell{REPLACEMENT}csi"
    assert p.obs_id == "12345" and p.filters == ""
    for value in (p.productFilename, p.description):
        value.encode("utf-8")  # no lone surrogate left
        assert "\x00" not in value


def test_long_strings_are_cut() -> None:
    p = product_from_values(row(description="x" * (MAX_TEXT * 3)))
    assert len(p.description) == MAX_TEXT


def test_clean_leaves_printable_text_alone() -> None:
    text = "jw02734-o001_t001_niriss_clear-gr700xd_x1dints.fits ÄÖ 東京 ✓"
    assert clean(text) is text


@given(st.text())
def test_clean_output_is_safe(text: str) -> None:
    out = clean(text)
    out.encode("utf-8")
    assert len(out) == len(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    kept = clean(text, keep_newlines=True)
    assert kept.count("\n") == text.count("\n")


# -- what reaches a terminal or a spreadsheet ---------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("jw02734-o001_t001_niriss", "jw02734-o001_t001_niriss"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_csv_cells_that_start_a_formula_are_neutralised(cell: str, expected: str) -> None:
    assert csv_cell(cell) == expected


def test_selection_csv_neutralises_archive_values() -> None:
    p = product_from_values(
        row(productFilename='=HYPERLINK("http://x")', obs_id="+evil", filters="@A1", size=5)
    )
    data = selection_csv([p], build_tree([p], "flat"))
    reader = csv.DictReader(io.StringIO(data.decode()))
    (out,) = list(reader)
    assert out["Filename"] == '\'=HYPERLINK("http://x")'
    assert out["Dataset"] == "'+evil" and out["Filter / Grating"] == "'@A1"
    assert out["Path"] == '\'=HYPERLINK("http:__x")'  # the name in the mount, as a cell
    assert out["Size"] == "5"


def test_the_terminal_table_has_no_control_characters() -> None:
    p = product_from_values(row(size=7))
    # A product made some other way than at the boundary: the table cleans on its own.
    hostile = type(p)(
        **{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "filters": "\x1b]0;owned\x07"}
    )
    text = format_table([hostile], lambda _: True)
    assert "\x1b" not in text and "\x07" not in text
    assert f"{REPLACEMENT}]0;owned{REPLACEMENT}" in text
