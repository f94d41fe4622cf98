"""The overlay's and basket's filters over the simulator's catalog, checked three ways.

Products come through the real pipeline (`Archive.products`: unmodified astroquery over HTTP to
the in-process simulator). For every case the test computes the expected rows itself, from the
raw `Mast.Caom.Products` rows of astroquery's own table and the Portal's documented rules (the
expected functions below share no code with `mastfs.selection`), and, where astroquery has the
same filter, also asks `Observations.filter_products(...)` for the rows and compares. Rows are
compared as multisets of (dataURI, obs_id, parent_obsid): MAST lists a shared file once per
dataset and per queried observation, and a selection keeps every such row.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mastfs.archive import Archive, Query
from mastfs.model import Product
from mastfs.selection import Selection, select, unique_products

MRP = "Minimum Recommended Products"
# The JWST guide-star subgroups of the catalog (docs/simulator.md); astroquery negations of them
# express the overlay's "All" (every file except guide-star files).
GUIDE_STAR_GROUPS = ("GS-ACQ1", "GS-ACQ2", "GS-TRACK", "GS-FG")
NOT_GUIDE_STARS = [f"!{g}" for g in GUIDE_STAR_GROUPS]

Row = dict[str, Any]
Key = tuple[str, str, str]


def row_key(row: Row) -> Key:
    return (str(row["dataURI"]), str(row["obs_id"]), str(row["parent_obsid"]))


def product_key(p: Product) -> Key:
    return (p.dataURI, p.obs_id, p.parent_obsid)


# -- the Portal's rules, written from its documentation over raw rows ----------------------------


def guide_star(r: Row) -> bool:
    return r["productSubGroupDescription"] in GUIDE_STAR_GROUPS


def mrp(r: Row) -> bool:
    return r["productGroupDescription"] == MRP


# The overlay's example (seeds, "6.1 The Preview"): _uncal 1b, _rate/_rateints 2a, _cal 2b,
# level-3 _x1dints 3. A preview is at the level of the product it shows (its subgroup).
JWST_STAGE = {"UNCAL": "1b", "RATE": "2a", "RATEINTS": "2a"}


def level(r: Row) -> str:
    calib = int(r["calib_level"])
    if r["obs_collection"] != "JWST" or calib >= 3:
        return str(calib)
    if guide_star(r):
        return "1b" if calib == 1 else "2b"
    return JWST_STAGE.get(r["productSubGroupDescription"], "1b" if calib == 1 else "2b")


def shown(r: Row) -> bool:
    """Quick selection "All": every file except guide-star files."""
    return not guide_star(r)


def name(r: Row) -> str:
    return str(r["productFilename"])


def levels_in(*wanted: str) -> Callable[[Row], bool]:
    """Quick selection "All" and any of the levels (a coarse `2` takes JWST's 2a and 2b)."""
    return lambda r: shown(r) and (level(r) in wanted or level(r).rstrip("ab") in wanted)


def ends(*exts: str) -> Callable[[Row], bool]:
    return lambda r: name(r).lower().endswith(exts)


def searched(pattern: str, flags: int = 0) -> Callable[[Row], bool]:
    return lambda r: re.search(pattern, name(r), flags) is not None


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    programs: tuple[str, ...]
    selection: dict[str, Any]
    expected: Callable[[Row], bool]
    # astroquery `filter_products` keyword sets whose results are OR-ed; None: no equivalent.
    astroquery: tuple[dict[str, Any], ...] | None = None
    # Distinct files, counted by hand from docs/simulator.md; None: not pinned.
    files: int | None = None


J, M, H, EA = ("2734",), ("1558",), ("10775",), ("6543",)

CASES = [
    # Quick selections.
    Case("all", J, {}, shown, ({"productSubGroupDescription": NOT_GUIDE_STARS},), files=87),
    Case("recommended", J, {"quick": "recommended"}, mrp, ({"mrp_only": True},), files=37),
    Case("recommended-HST", H, {"quick": "recommended"}, mrp, ({"mrp_only": True},), files=20),
    Case("all+guide-stars", J, {"guide_stars": True}, lambda r: True, ({},), files=99),
    Case(
        "recommended+guide-stars",
        M,
        {"quick": "mrp", "guide_stars": True},
        lambda r: mrp(r) or guide_star(r),
        ({"mrp_only": True}, {"productSubGroupDescription": list(GUIDE_STAR_GROUPS)}),
    ),
    # Data processing levels.
    Case(
        "level-1b",
        J,
        {"levels": "1b"},
        lambda r: shown(r) and level(r) == "1b",
        ({"calib_level": 1, "productSubGroupDescription": NOT_GUIDE_STARS},),
        files=10,
    ),
    Case(
        "level-2a",
        J,
        {"levels": "2a"},
        lambda r: shown(r) and level(r) == "2a",
        ({"calib_level": 2, "productSubGroupDescription": ["RATE", "RATEINTS"]},),
        files=40,  # rate, rateints, rate.jpg, rate_thumb.png of 10 segments
    ),
    Case(
        "level-2b",
        J,
        {"levels": "L2b"},
        lambda r: shown(r) and level(r) == "2b",
        (
            {
                "calib_level": 2,
                "productSubGroupDescription": ["!RATE", "!RATEINTS", *NOT_GUIDE_STARS],
            },
        ),
        files=30,  # cal, x1dints, tso-spec2 asn of 10 segments
    ),
    Case(
        "level-2-coarse",
        J,
        {"levels": "2"},
        lambda r: shown(r) and level(r).startswith("2"),
        ({"calib_level": 2, "productSubGroupDescription": NOT_GUIDE_STARS},),
        files=70,
    ),
    Case(
        "level-3",
        M,
        {"levels": "combined"},
        lambda r: shown(r) and level(r) == "3",
        ({"calib_level": 3},),
        files=9 * 6 + 1,  # per filter i2d, segm, cat, i2d.jpg, thumb, image3 asn; one pool
    ),
    Case(
        "levels-1b-or-3",
        J,
        {"levels": ["1b", "3"]},
        levels_in("1b", "3"),
        ({"calib_level": [1, 3], "productSubGroupDescription": NOT_GUIDE_STARS},),
        files=10 + 7,
    ),
    Case(
        "levels-1b-guide-stars",
        J,
        {"levels": "1b", "guide_stars": True},
        lambda r: level(r) == "1b",
        ({"calib_level": 1},),
        files=10 + 2,  # uncal segments; each visit's gs-fg stream
    ),
    Case("HST-level-1", H, {"levels": "uncalibrated"}, levels_in("1"), ({"calib_level": 1},)),
    Case(
        "HST-levels-2-3",
        H,
        {"levels": "2,3"},
        levels_in("2", "3"),
        ({"calib_level": [2, 3]},),
    ),
    # Product groups (the basket's Data Product Group; the overlay's suffixes).
    Case(
        "groups",
        J,
        {"groups": "x1dints, _cal"},
        lambda r: r["productSubGroupDescription"] in ("X1DINTS", "CAL"),
        ({"productSubGroupDescription": ["X1DINTS", "CAL"]},),
        files=10 + 2 + 10,
    ),
    Case(
        "group-gs-fg-needs-guide-stars",
        J,
        {"groups": "GS-FG"},
        lambda r: False,
        None,
        files=0,
    ),
    Case(
        "group-gs-fg",
        M,
        {"groups": "gs-fg", "guide_stars": True},
        lambda r: r["productSubGroupDescription"] == "GS-FG",
        ({"productSubGroupDescription": "GS-FG"},),
        files=3,
    ),
    Case(
        "HST-groups",
        H,
        {"groups": "FLT,DRZ"},
        lambda r: r["productSubGroupDescription"] in ("FLT", "DRZ"),
        ({"productSubGroupDescription": ["FLT", "DRZ"]},),
        files=(4 + 4) * 2 + 2 * 2,  # flt.fits + flt.jpg per exposure; drz.fits + drz.jpg
    ),
    # Data product categories.
    Case(
        "categories",
        M,
        {"categories": "info, Catalog"},
        lambda r: r["productType"] in ("INFO", "CATALOG"),
        ({"productType": ["INFO", "CATALOG"]},),
        files=18 + 9 + 1 + 9,  # image2 and image3 associations, pool, catalogs
    ),
    Case(
        "category-auxiliary-HST",
        H,
        {"categories": "AUXILIARY"},
        lambda r: r["productType"] == "AUXILIARY",
        ({"productType": "AUXILIARY"},),
    ),
    Case(
        "category-auxiliary-guide-stars",
        M,
        {"categories": "AUXILIARY", "guide_stars": True},
        lambda r: r["productType"] == "AUXILIARY",
        ({"productType": "AUXILIARY"},),
        files=6,  # one visit's guide-star files, shared by every exposure
    ),
    Case(
        "category-preview",
        EA,
        {"categories": "preview"},
        lambda r: r["productType"] == "PREVIEW",
        ({"productType": "PREVIEW"},),
    ),
    # File extensions.
    Case(
        "extension-fits",
        M,
        {"extensions": "fits"},
        lambda r: shown(r) and ends(".fits")(r),
        ({"extension": ".fits", "productSubGroupDescription": NOT_GUIDE_STARS},),
    ),
    Case(
        "extensions-previews",
        J,
        {"extensions": ".jpg,*.PNG"},
        ends(".jpg", ".png"),
        ({"extension": [".jpg", ".png"]},),
        files=20,
    ),
    Case(
        "extensions-text",
        J,
        {"extensions": ["ecsv", "json", "csv"]},
        ends(".ecsv", ".json", ".csv"),
        ({"extension": [".ecsv", ".json", ".csv"]},),
        files=2 + 10 + 2 + 1,
    ),
    Case(
        "extension-none",
        J,
        {"extensions": "fits.gz"},
        lambda r: False,
        ({"extension": ".gz"},),
        files=0,
    ),
    # Regex matching, JavaScript syntax, plain or /pattern/flags, searched in the file name.
    Case(
        "regex-i",
        J,
        {"regex": "/SEG00[12]_NIS_(CAL|X1DINTS)/i"},
        searched(r"seg00[12]_nis_(cal|x1dints)\."),
        None,
        files=8,
    ),
    Case("regex-case-sensitive", J, {"regex": "SEG00[12]"}, lambda r: False, None, files=0),
    Case(
        "regex-any-of",
        H,
        {"regex": [r"/\.JPG$/i", r"_drc\.fits$"]},
        lambda r: name(r).endswith((".jpg", "_drc.fits")),
        ({"extension": ".jpg"}, {"productSubGroupDescription": "DRC", "extension": ".fits"}),
    ),
    Case(
        "exclude-regex",
        J,
        {"exclude_regex": r"/_(uncal|rateints)\.fits$/i"},
        lambda r: shown(r) and not searched(r"_(uncal|rateints)\.fits$")(r),
        ({"productSubGroupDescription": ["!UNCAL", "!RATEINTS", *NOT_GUIDE_STARS]},),
        files=87 - 20,
    ),
    Case(
        "regex-and-exclude",
        J,
        {"regex": r"seg\d{3}", "exclude_regex": ["/\\.(jpg|png)$/", "seg00[345]"]},
        lambda r: searched(r"seg\d{3}")(r) and not searched(r"\.(jpg|png)$|seg00[345]")(r),
        None,
        files=2 * 2 * 5,  # two visits, two segments: uncal, rate, rateints, cal, x1dints
    ),
    Case(
        "regex-hostile-name",
        H,
        {"regex": '/NOTES,"V2"<B>&/i'},
        lambda r: name(r) == 'j9l9_notes,"v2"<b>&x.txt',
        ({"productSubGroupDescription": "NOTES"},),
        files=1,
    ),
    # Public only.
    Case(
        "public-only",
        EA,
        {"public_only": True},
        lambda r: shown(r) and r["dataRights"] == "PUBLIC",
        ({"dataRights": "PUBLIC", "productSubGroupDescription": NOT_GUIDE_STARS},),
        files=8 + 2 + 1,  # image2 and image3 associations, the pool
    ),
    Case(
        "public-only-guide-stars",
        EA,
        {"public_only": True, "guide_stars": True},
        lambda r: r["dataRights"] == "PUBLIC",
        ({"dataRights": "PUBLIC"},),
        files=11,
    ),
    Case(
        "exclusive-program-all",
        EA,
        {},
        shown,
        ({"productSubGroupDescription": NOT_GUIDE_STARS},),
    ),
    # AND across kinds, OR within a kind.
    Case(
        "recommended-level3-fits",
        M,
        {"quick": "recommended", "levels": "3", "extensions": "fits"},
        lambda r: mrp(r) and level(r) == "3" and ends(".fits")(r),
        ({"mrp_only": True, "calib_level": 3, "extension": ".fits"},),
        files=9,
    ),
    Case(
        "science-2b-groups",
        J,
        {"categories": "SCIENCE", "levels": "2b", "groups": "CAL,X1DINTS,RATE"},
        lambda r: (
            r["productType"] == "SCIENCE"
            and level(r) == "2b"
            and r["productSubGroupDescription"] in ("CAL", "X1DINTS", "RATE")
        ),
        (
            {
                "productType": "SCIENCE",
                "calib_level": 2,
                "productSubGroupDescription": ["CAL", "X1DINTS"],
            },
        ),
        files=20,
    ),
    Case(
        "categories-or-extensions-and",
        EA,
        {"categories": "SCIENCE,INFO", "extensions": "json,csv", "public_only": True},
        lambda r: (
            r["productType"] in ("SCIENCE", "INFO")
            and ends(".json", ".csv")(r)
            and r["dataRights"] == "PUBLIC"
        ),
        (
            {
                "productType": ["SCIENCE", "INFO"],
                "extension": [".json", ".csv"],
                "dataRights": "PUBLIC",
            },
        ),
        files=11,
    ),
    Case(
        "everything-at-once",
        J,
        {
            "quick": "recommended",
            "levels": "2b,3",
            "groups": "X1DINTS,CAL,ASN",
            "categories": "SCIENCE",
            "extensions": "fits",
            "regex": "/O001|001001/i",
            "exclude_regex": "seg00[1-3]",
            "public_only": True,
        },
        lambda r: (
            mrp(r)
            and level(r) in ("2b", "3")
            and r["productSubGroupDescription"] in ("X1DINTS", "CAL")
            and name(r).endswith(".fits")
            and searched("o001|001001", re.IGNORECASE)(r)
            and not searched("seg00[1-3]")(r)
        ),
        None,
        files=1 + 2 * 2,  # o001's level-3 x1dints; seg004/5 of visit 1: cal and x1dints
    ),
    # Several programs in one query: JWST coarse level 2 and HST level 2 together.
    Case(
        "two-missions-level-2-fits",
        ("2734", "10775"),
        {"levels": "2", "extensions": "fits"},
        lambda r: shown(r) and level(r).startswith("2") and ends(".fits")(r),
        ({"calib_level": 2, "extension": ".fits", "productSubGroupDescription": NOT_GUIDE_STARS},),
        files=10 * 4 + 8 * 2 + 8,  # JWST rate/rateints/cal/x1dints; HST flt/flc, exposure trl
    ),
]


# -- fixtures -----------------------------------------------------------------------------------


@dataclass
class Program:
    products: list[Product]  # through mastfs.archive
    table: Any  # astroquery's product table for the same observations
    rows: list[Row]  # its rows as dicts, masked cells as None


def table_rows(table: Any) -> list[Row]:
    out = []
    for record in table:
        row: Row = {}
        for col in table.colnames:
            value = record[col]
            if np.ma.is_masked(value):
                value = None
            elif isinstance(value, np.generic):
                value = value.item()
            row[col] = value
        out.append(row)
    return out


@pytest.fixture(scope="module")
def observations(sim_url: str) -> Iterator[Any]:
    from astroquery.mast import Observations

    # conftest.py wrote astroquery's config before anything imported it.
    assert Observations._portal_api_connection.MAST_REQUEST_URL.startswith(sim_url)
    yield Observations


@pytest.fixture(scope="module")
def programs(
    sim_url: str, observations: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, ...], Program]:
    archive = Archive(sim_url, Path(tmp_path_factory.mktemp("catalog-cache")))
    out: dict[tuple[str, ...], Program] = {}
    for programs in sorted({c.programs for c in CASES}):
        result = archive.products(Query(programs=programs), progress=lambda s: None)
        obs = observations.query_criteria(proposal_id=list(programs))
        table = observations.get_product_list(obs)
        out[programs] = Program(result.products, table, table_rows(table))
    return out


# -- tests --------------------------------------------------------------------------------------


def test_archive_rows_are_astroquerys_rows(programs: dict[tuple[str, ...], Program]) -> None:
    for key, prog in programs.items():
        assert Counter(map(product_key, prog.products)) == Counter(map(row_key, prog.rows)), key
        by_key = {row_key(r): r for r in prog.rows}
        for p in prog.products:
            r = by_key[product_key(p)]
            assert (p.productFilename, p.productSubGroupDescription, p.productType) == (
                r["productFilename"],
                r["productSubGroupDescription"],
                r["productType"],
            )
            assert p.calib_level == r["calib_level"] and p.size == r["size"]
            assert p.productGroupDescription == (r["productGroupDescription"] or "")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_selection_over_the_catalog(
    case: Case, programs: dict[tuple[str, ...], Program], observations: Any
) -> None:
    prog = programs[case.programs]
    sel = Selection.build(**case.selection)
    chosen = select(prog.products, sel)
    got = Counter(map(product_key, chosen))

    expected = Counter(row_key(r) for r in prog.rows if case.expected(r))
    assert got == expected

    files = {p.dataURI for p in unique_products(chosen)}
    if case.files is not None:
        assert len(files) == case.files
    else:
        assert files, "a case without a pinned count must select something"
    # The rows are a selection of the program, not all of it (except where that is the point).
    assert len(files) < len({p.dataURI for p in prog.products}) or case.id == "all+guide-stars"

    if case.astroquery is not None:
        from_astroquery: Counter[Key] = Counter()
        for kwargs in case.astroquery:
            filtered = observations.filter_products(prog.table, **kwargs)
            from_astroquery |= Counter(row_key(r) for r in table_rows(filtered))
        assert got == from_astroquery
        assert sorted(files) == sorted({k[0] for k in from_astroquery})

    # The selection a mount stores (JSON on its root) selects the same rows.
    again = Selection.from_json(sel.to_json())
    assert again == sel
    assert select(prog.products, again) == chosen
