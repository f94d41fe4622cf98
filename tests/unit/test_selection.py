"""The download overlay's filters, product levels, suffixes, the summary and JSON round-trips."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mastfs.model import EXCLUSIVE_ACCESS, Product, User
from mastfs.selection import (
    CATEGORIES,
    LEVELS,
    Selection,
    SelectionError,
    Summary,
    format_bytes,
    format_summary,
    is_guide_star,
    product_level,
    select,
    suffix,
    summarize,
    unique_products,
    unmatched_values,
)
from tests.support.sample_products import ROWS, names, products

ALL_KEYS = [k for k in ROWS if not k.startswith(("J11", "J12"))]
FITS = ["J1", "J2", "J3", "J4", "J5", "J6", "J7", "J13", "J16", "J17"]
FITS += ["H1", "H2", "H3", "H4", "H6"]

CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ALL_KEYS),
    ({"quick": "recommended"}, ["J6", "J7", "J9", "J10", "J13", "J14", "J15", "H4"]),
    (
        {"quick": "MRP", "guide_stars": True},
        ["J6", "J7", "J9", "J10", "J13", "J14", "J15", "H4", "J11", "J12"],
    ),
    ({"guide_stars": True}, [*ALL_KEYS, "J11", "J12"]),
    ({"levels": "1b"}, ["J1", "J17"]),
    ({"levels": "1"}, ["J1", "J17", "H1", "H2", "H6"]),
    ({"levels": "uncalibrated"}, ["J1", "J17", "H1", "H2", "H6"]),
    ({"levels": "2a"}, ["J2", "J3", "J4"]),
    ({"levels": "2b"}, ["J5", "J6", "J7", "J8", "J9", "J16"]),
    ({"levels": "2"}, ["J2", "J3", "J4", "J5", "J6", "J7", "J8", "J9", "J16", "H3"]),
    ({"levels": "3"}, ["J10", "J13", "J14", "J15", "H4", "H5"]),
    ({"levels": ["2a", "3"]}, ["J2", "J3", "J4", "J10", "J13", "J14", "J15", "H4", "H5"]),
    ({"levels": "L2b", "guide_stars": True}, ["J5", "J6", "J7", "J8", "J9", "J16", "J12"]),
    ({"levels": "4"}, []),
    ({"groups": "CAL"}, ["J5", "J8", "J16"]),
    ({"groups": "cal", "extensions": "fits"}, ["J5", "J16"]),
    ({"groups": "asn,pool"}, ["J9", "J10", "J15", "H1"]),
    ({"groups": ["_x1dints"]}, ["J7", "J13"]),
    ({"groups": "GS-FG"}, []),
    ({"groups": "gs-fg", "guide_stars": True}, ["J11", "J12"]),
    ({"categories": "info"}, ["J9", "J10", "J15"]),
    ({"categories": "Preview"}, ["J8", "H5"]),
    ({"categories": "AUXILIARY"}, ["J4", "H1", "H6"]),
    ({"categories": "AUXILIARY", "guide_stars": True}, ["J4", "H1", "H6", "J11", "J12"]),
    ({"extensions": "json"}, ["J9", "J15"]),
    ({"extensions": ".ecsv"}, ["J14"]),
    ({"extensions": "jpg, csv"}, ["J8", "H5", "J10"]),
    ({"extensions": "*.FITS"}, FITS),
    ({"extensions": "fits.gz"}, []),
    ({"regex": r"/_cal\.fits$/i"}, ["J5", "J16"]),
    ({"regex": r"/_cal\.fits$/i", "guide_stars": True}, ["J5", "J16", "J12"]),
    ({"regex": r"/_CAL\.FITS$/"}, []),
    ({"regex": ["^jw02734-", "drz"]}, ["J9", "J13", "J14", "J15", "H4", "H5"]),
    (
        {"exclude_regex": "seg001"},
        ["J9", "J10", "J13", "J14", "J15", "H1", "H2", "H3", "H4", "H5", "H6"],
    ),
    (
        {"regex": r"seg\d+_nis_", "exclude_regex": "/UNCAL|rate/i"},
        ["J4", "J5", "J6", "J7", "J8", "J16"],
    ),
    ({"public_only": True}, [k for k in ALL_KEYS if k not in ("J16", "J17")]),
    ({"quick": "recommended", "levels": "3"}, ["J10", "J13", "J14", "J15", "H4"]),
    ({"categories": "SCIENCE", "levels": "2b"}, ["J5", "J6", "J7", "J16"]),
    (
        {"extensions": "fits", "public_only": True, "levels": "2"},
        ["J2", "J3", "J4", "J5", "J6", "J7", "H3"],
    ),
]


@pytest.mark.parametrize(("options", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_filters_select_exactly(options: dict[str, Any], expected: list[str]) -> None:
    chosen = select(products(), Selection.build(**options))
    assert {p.productFilename for p in chosen} == names(*expected)


def test_select_keeps_input_order_and_duplicate_rows() -> None:
    rows = products()
    chosen = select(rows, Selection.build(groups="POOL"))
    assert chosen == [ROWS["J10"], ROWS["J10b"], ROWS["J10c"]]
    everything = select(rows, Selection.build(guide_stars=True))
    assert everything == rows


@pytest.mark.parametrize(
    ("key", "level"),
    [
        ("J1", "1b"),
        ("J2", "2a"),
        ("J3", "2a"),
        ("J4", "2a"),
        ("J5", "2b"),
        ("J7", "2b"),
        ("J8", "2b"),
        ("J9", "2b"),
        ("J10", "3"),
        ("J11", "1b"),
        ("J12", "2b"),
        ("J13", "3"),
        ("J15", "3"),
        ("H1", "1"),
        ("H3", "2"),
        ("H4", "3"),
        ("H5", "3"),
    ],
)
def test_product_level(key: str, level: str) -> None:
    assert product_level(ROWS[key]) == level


def test_product_level_edge_cases() -> None:
    j = ROWS["J1"]
    assert product_level(dataclasses.replace(j, calib_level=4)) == "4"
    assert product_level(dataclasses.replace(j, calib_level=0, productFilename="x.fits")) == "0"
    # Guide-star files take their level from calib_level alone, whatever the suffix says.
    gs = dataclasses.replace(ROWS["J11"], calib_level=2)
    assert product_level(gs) == "2b"
    # A rate preview is 2a like its FITS file.
    rate_jpg = dataclasses.replace(ROWS["J2"], productFilename="x-seg001_nis_rate.jpg")
    assert product_level(rate_jpg) == "2a"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jw02734001001_02101_00001-seg001_nis_cal.fits", "_cal"),
        ("jw02734-o002_t002_niriss_clear-gr700xd-substrip256_x1dints.fits", "_x1dints"),
        ("jw02734-o002_20220706t131401_spec2_00001_asn.json", "_asn"),
        ("jw02734_20220706t131401_pool.csv", "_pool"),
        ("jw00689-o001_t001_nircam_clear-f356w_i2d.jpg", "_i2d"),
        ("jw02420001001_gs-fg_2022192192555_cal.fits", "_cal"),
        ("hlsp_x_v1.0_spec.fits", "_spec"),
        ("jbeveo010_drz.fits.gz", "_drz"),
        ("README", ""),
    ],
)
def test_suffix(name: str, expected: str) -> None:
    assert suffix(dataclasses.replace(ROWS["J5"], productFilename=name)) == expected


def test_is_guide_star() -> None:
    assert is_guide_star(ROWS["J11"]) and is_guide_star(ROWS["J12"])
    assert not any(is_guide_star(ROWS[k]) for k in ALL_KEYS)
    by_group = dataclasses.replace(ROWS["J5"], productSubGroupDescription="GS-ACQ1")
    assert is_guide_star(by_group)
    by_name = dataclasses.replace(
        ROWS["J5"],
        productSubGroupDescription="",
        productFilename="jw02420001001_gs-track_2022192192555_uncal.fits",
    )
    assert is_guide_star(by_name)
    assert not is_guide_star(dataclasses.replace(ROWS["H2"], productFilename="x_gs-fg_raw.fits"))


def test_unknown_level_lists_valid_levels() -> None:
    with pytest.raises(SelectionError) as info:
        Selection.build(levels=["2b", "2c"])
    message = str(info.value)
    assert "'2c'" in message
    assert all(level in message for level in LEVELS)


def test_unknown_category_lists_valid_categories() -> None:
    with pytest.raises(SelectionError) as info:
        Selection.build(categories="SCIENCES")
    message = str(info.value)
    assert "'SCIENCES'" in message
    assert all(c in message for c in CATEGORIES)


def test_unknown_quick_selection() -> None:
    with pytest.raises(SelectionError, match=r"'some'.*all, recommended"):
        Selection.build(quick="some")


@pytest.mark.parametrize(
    "bad", ["(", "a**", "[z-a]", r"/\p{L}/u", "/x/q", "(?i)a", "((a{1000}){1000}){1000}"]
)
def test_invalid_regex_names_the_pattern(bad: str) -> None:
    with pytest.raises(SelectionError) as info:
        Selection.build(regex=bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(SelectionError) as info:
        Selection.build(exclude_regex=[bad])
    assert "exclude regex" in str(info.value)


def test_bare_strings_are_single_values() -> None:
    sel = Selection(levels="2b", regex="_cal", groups="cal")  # type: ignore[arg-type]
    assert sel == Selection.build(levels=["2b"], regex=["_cal"], groups=["CAL"])


def test_direct_construction_is_normalised_too() -> None:
    sel = Selection(
        levels=frozenset({"L2B", "Combined"}),
        groups=frozenset({"_cal", " "}),
        extensions=frozenset({".FITS"}),
        categories=frozenset({"science"}),
    )
    assert sel.levels == {"2b", "3"}
    assert sel.groups == {"CAL"}
    assert sel.extensions == {"fits"}
    assert sel.categories == {"SCIENCE"}
    assert sel == Selection.build(
        levels="2b,3", groups="CAL", extensions="fits", categories="SCIENCE"
    )


SELECTIONS = [
    Selection(),
    Selection.build(quick="recommended", guide_stars=True),
    Selection.build(
        levels="2a,2b",
        groups=["cal", "x1dints"],
        categories="science",
        extensions=["fits", "jpg"],
        regex=[r"/_cal\.fits$/i", "a,b"],
        exclude_regex="seg00[2-9]",
        public_only=True,
    ),
]


@pytest.mark.parametrize("sel", SELECTIONS)
def test_json_round_trip(sel: Selection) -> None:
    text = sel.to_json()
    assert Selection.from_json(text) == sel
    assert Selection.from_json(text.encode()) == sel
    assert Selection.from_json(text).to_json() == text
    # The compiled patterns come back too, so the copy selects the same files.
    assert select(products(), Selection.from_json(text)) == select(products(), sel)


def test_json_keeps_regex_commas_and_order() -> None:
    sel = Selection.build(regex=["b{1,2}", "a"])
    assert json.loads(sel.to_json())["regex"] == ["b{1,2}", "a"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", "object"),
        ("{", "JSON"),
        ('{"quick": "all", "colour": 1}', "colour"),
        ('{"levels": "2b"}', "levels"),
        ('{"guide_stars": "yes"}', "guide_stars"),
        ('{"groups": [1]}', "groups"),
        ('{"levels": ["9"]}', "'9'"),
    ],
)
def test_from_json_rejects_bad_input(text: str, fragment: str) -> None:
    with pytest.raises(SelectionError, match=fragment):
        Selection.from_json(text)


@given(
    quick=st.sampled_from(["all", "recommended"]),
    levels=st.lists(st.sampled_from(LEVELS)),
    groups=st.lists(st.text("ABCXYZ_-01", min_size=1, max_size=6)),
    categories=st.lists(st.sampled_from(CATEGORIES)),
    extensions=st.lists(st.text("abcfitsz.", min_size=1, max_size=8)),
    regex=st.lists(st.text("abc_.*", min_size=1, max_size=5).filter(lambda s: s[0] not in "*")),
    flags=st.booleans(),
)
def test_json_round_trip_property(
    quick: str,
    levels: list[str],
    groups: list[str],
    categories: list[str],
    extensions: list[str],
    regex: list[str],
    flags: bool,
) -> None:
    try:
        sel = Selection.build(
            quick=quick,
            levels=levels,
            groups=groups,
            categories=categories,
            extensions=extensions,
            regex=regex,
            guide_stars=flags,
            public_only=not flags,
        )
    except SelectionError:
        return  # e.g. "a**": rejected like JavaScript does
    assert Selection.from_json(sel.to_json()) == sel
    chosen = select(products(), sel)
    # Filters only remove rows; order is the input's.
    assert chosen == [p for p in products() if p in chosen]


def test_unmatched_values_reports_typos() -> None:
    sel = Selection.build(
        levels="4,3",
        groups="CALL,CAL",
        categories="THUMBNAIL",
        extensions="fitz,fits",
        regex=["nomatch", "_cal"],
        exclude_regex="zzz",
    )
    assert unmatched_values(products(), sel) == [
        "level '4'",
        "group 'CALL'",
        "category 'THUMBNAIL'",
        "extension 'fitz'",
        "regex 'nomatch'",
        "exclude regex 'zzz'",
    ]
    assert unmatched_values(products(), Selection.build(groups="cal")) == []
    assert unmatched_values(products()[:2], Selection.build(guide_stars=True)) == ["guide stars"]


def test_unique_products_first_row_wins() -> None:
    unique = unique_products(products())
    assert len(unique) == len({p.dataURI for p in products()})
    assert ROWS["J10"] in unique and ROWS["J10b"] not in unique


def test_summarize_counts_distinct_files() -> None:
    rows = products()
    readable = {ROWS["J16"].dataURI}
    summary = summarize(rows, select(rows, Selection()), lambda p: p.dataURI in readable)
    distinct_all = unique_products(rows)
    distinct_selected = [p for p in distinct_all if not is_guide_star(p)]
    assert summary == Summary(
        selected_files=len(distinct_selected),
        selected_bytes=sum(p.size for p in distinct_selected),
        available_files=len(distinct_all),
        available_bytes=sum(p.size for p in distinct_all),
        unreadable_files=1,
        unreadable_bytes=ROWS["J17"].size,
    )
    # The pool table is listed three times but counted once.
    pools = summarize(rows, select(rows, Selection.build(groups="POOL")), lambda p: True)
    assert (pools.selected_files, pools.selected_bytes) == (1, 300_000)
    # Public files are never "unreadable", even when can_read says no.
    assert summarize(rows, rows, lambda p: False).unreadable_files == 2


def test_format_summary() -> None:
    s = Summary(12, 1_200_000_000, 40, 9_800_000_000, 3, 210_000_000)
    assert format_summary(s) == (
        "12 of 40 files selected (1.2 GB of 9.8 GB); 3 exclusive-access files (210 MB) "
        "are not readable without an authorized MAST token"
    )
    assert format_summary(s, User("Ada")).endswith("are not readable by user Ada")
    assert format_summary(Summary(1, 512, 1, 512)) == "1 of 1 file selected (512 B of 512 B)"
    one = Summary(0, 0, 2, 2000, 1, 1500)
    assert "1 exclusive-access file (1.5 kB) is not readable" in format_summary(one)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_234_567, "1.2 MB"),
        (210_000_000, "210 MB"),
        (9_800_000_000, "9.8 GB"),
        (12_000_000_000_000, "12 TB"),
        (3 * 10**18, "3000 PB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_describe() -> None:
    sel = Selection.build(quick="recommended", levels="3,2b", regex="/x/i", public_only=True)
    assert sel.describe() == "recommended; levels 2b, 3; regex /x/i; public only"


def test_exclusive_rows_are_products_of_the_model() -> None:
    # Guards the sample data: the filters above rely on exactly two exclusive-access files.
    assert [k for k, p in ROWS.items() if p.dataRights == EXCLUSIVE_ACCESS] == ["J16", "J17"]
    assert all(isinstance(p, Product) for p in products())
