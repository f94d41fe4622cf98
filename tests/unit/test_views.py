"""selection.csv (the overlay's "Export Selected File List") and manifest.html."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mastfs.model import Product, User
from mastfs.selection import Selection, format_summary, select, summarize
from mastfs.tree import build_tree
from mastfs.views import CSV_COLUMNS, manifest_html, selection_csv
from tests.support.sample_products import EXP, EXP2, L3, POOL, ROWS, jwst, products
from tests.support.views import Manifest, parse_manifest, read_csv

HEADER = (
    "Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating,URI,Size,Access,Path,"
    "Category"
)
ADA = User("Ada")


def everyone(p: Product) -> bool:
    return True


def no_one(p: Product) -> bool:
    return False


def render(
    rows: list[Product],
    layout: str = "nested",
    user: User | None = None,
    can_read: Callable[[Product], bool] = everyone,
    errors: dict[str, str] | None = None,
) -> Manifest:
    tree = build_tree(rows, layout)
    summary = summarize(rows, rows, can_read)
    return parse_manifest(manifest_html(rows, tree, summary, user, can_read, errors or {}))


# -- selection.csv ----------------------------------------------------------------------------


def test_csv_header_is_the_portals_then_ours() -> None:
    data = selection_csv(products(), build_tree(products(), "nested"))
    assert data.split(b"\r\n", 1)[0] == HEADER.encode()
    assert ",".join(CSV_COLUMNS) == HEADER


def test_csv_rows_match_the_portal_example() -> None:
    sel = select(products(), Selection.build(regex=f"^{EXP}|x1dints", levels="1b,2a,2b,3"))
    rows = [
        r
        for r in read_csv(selection_csv(sel, build_tree(sel, "nested")))[1]
        if ".fits" in r["Filename"]
        and r["Suffix"] in ("_cal", "_rate", "_rateints", "_uncal", "_x1dints")
    ]
    got = [
        (r["Dataset"], r["Filename"], r["Product Level"], r["Suffix"], r["Instrument"])
        for r in rows
    ]
    x1d = f"{L3}_clear-gr700xd-substrip256_x1dints.fits"
    assert got == [
        (L3, x1d, "3", "_x1dints", "NIRISS"),
        (EXP, f"{EXP}-seg001_nis_cal.fits", "2b", "_cal", "NIRISS"),
        (EXP, f"{EXP}-seg001_nis_rate.fits", "2a", "_rate", "NIRISS"),
        (EXP, f"{EXP}-seg001_nis_rateints.fits", "2a", "_rateints", "NIRISS"),
        (EXP, f"{EXP}-seg001_nis_uncal.fits", "1b", "_uncal", "NIRISS"),
        (EXP, f"{EXP}-seg001_nis_x1dints.fits", "2b", "_x1dints", "NIRISS"),
    ]
    assert rows[0]["Filter / Grating"] == "CLEAR;GR700XD"


def test_csv_extra_columns_and_grouping() -> None:
    rows = products()
    tree = build_tree(rows, "nested")
    parsed = read_csv(selection_csv(rows, tree))[1]
    keys = [(r["Dataset"], r["Filename"]) for r in parsed]
    assert keys == sorted(keys)
    # One row per (dataset, file): the pool table once in each of its three datasets, the
    # guide-star files (listed under two parents, one dataset) once.
    assert [r["Dataset"] for r in parsed if r["Filename"] == POOL] == sorted([EXP, EXP2, L3])
    assert len(parsed) == len({(p.obs_id, p.dataURI) for p in rows})
    by_name = {(r["Dataset"], r["Filename"]): r for r in parsed}
    cal = by_name[(EXP2, ROWS["J16"].productFilename)]
    assert cal["URI"] == ROWS["J16"].dataURI
    assert cal["Size"] == str(ROWS["J16"].size)
    assert cal["Access"] == "EXCLUSIVE_ACCESS"
    assert cal["Path"] == f"JWST/{EXP2}/{ROWS['J16'].productFilename}"
    assert by_name[("jbeveo010", "jbeveo010_drz.fits")]["Instrument"] == "ACS"
    assert by_name[("jbeveo010", "jbeveo010_drz.fits")]["Product Level"] == "3"
    for r in parsed:
        assert tree.lookup_path(r["Path"]) is not None
    flat = read_csv(selection_csv(rows, build_tree(rows, "flat")))[1]
    assert {r["Path"] for r in flat if r["Filename"] == POOL} == {POOL}


def test_csv_survives_commas_quotes_and_newlines() -> None:
    odd = ["a,b_cal.fits", 'say "hi"_cal.fits', "line\nbreak_cal.fits", "semi;colon_x.fits"]
    rows = [jwst(n, EXP, 2, "CAL") for n in odd]
    rows = [dataclasses.replace(p, filters='F1,F2 "wide"') for p in rows]
    data = selection_csv(rows, build_tree(rows, "nested"))
    assert data.startswith(HEADER.encode() + b"\r\n") and data.endswith(b"\r\n")
    parsed = read_csv(data)[1]
    assert sorted(r["Filename"] for r in parsed) == sorted(odd)
    assert {r["Filter / Grating"] for r in parsed} == {'F1,F2 "wide"'}
    assert all(len(r) == len(CSV_COLUMNS) for r in parsed)
    line = next(x for x in data.decode().split("\r\n") if "say" in x)
    assert '"say ""hi""_cal.fits"' in line  # RFC 4180 quote doubling


def test_csv_is_deterministic_and_order_independent() -> None:
    rows = products()
    a = selection_csv(rows, build_tree(rows, "nested"))
    assert a == selection_csv(rows, build_tree(rows, "nested"))
    empty = selection_csv([], build_tree([], "nested"))
    assert empty == HEADER.encode() + b"\r\n"


# -- manifest.html ----------------------------------------------------------------------------


def test_manifest_is_a_valid_page_with_the_portals_columns() -> None:
    page = render(products())
    assert page.doctype.lower() == "doctype html"
    assert page.charset == "utf-8"
    assert page.title
    assert {"html", "head", "body", "table", "thead", "tbody"} <= set(page.tags)
    assert page.header == ["URI", "File", "Access", "Status", "Logged In User"]
    assert len(page.cells) == len({(p.obs_id, p.dataURI) for p in products()})
    assert all(len(r) == 5 for r in page.cells)


def test_manifest_summary_at_the_top() -> None:
    rows = products()
    summary = summarize(rows, rows[:3], no_one)
    data = manifest_html(rows[:3], build_tree(rows[:3], "nested"), summary, None, no_one, {})
    page = parse_manifest(data)
    assert format_summary(summary) in "".join(page.text)
    assert data.index(format_summary(summary).encode()) < data.index(b"<table>")


def test_anonymous_statuses_and_duplicates() -> None:
    page = render(products())
    status = {(r[0], r[1]): r[3] for r in page.cells}
    assert {r[4] for r in page.cells} == {"anonymous"}
    pool = ROWS["J10"].dataURI
    assert status[(pool, f"JWST/{EXP}/{POOL}")] == "OK"
    assert status[(pool, f"JWST/{L3}/{POOL}")] == f"Duplicate of file {POOL} in folder {EXP}"
    assert status[(pool, f"JWST/{EXP2}/{POOL}")] == f"Duplicate of file {POOL} in folder {EXP}"
    assert [r[2] for r in page.cells if r[0] == pool] == ["PUBLIC"] * 3
    # Duplicates come after the first occurrence.
    order = [r[1] for r in page.cells if r[0] == pool]
    assert order[0] == f"JWST/{EXP}/{POOL}"


def test_logged_in_statuses_follow_example_2() -> None:
    page = render(products(), user=ADA)
    status = {(r[0], r[1]): r[3] for r in page.cells}
    assert {r[4] for r in page.cells} == {"Ada"}
    cal = ROWS["J16"]
    cal_path = f"JWST/{EXP2}/{cal.productFilename}"
    assert status[(cal.dataURI, cal_path)] == f"{cal_path} associated with {EXP2} SUCCESS"
    pool = ROWS["J10"].dataURI
    first = f"JWST/{EXP}/{POOL}"
    assert status[(pool, first)] == f"{first} associated with {EXP} SUCCESS"
    dup = f"JWST/{L3}/{POOL}"
    assert status[(pool, dup)] == (
        f"{dup} associated with {L3} Duplicate of file {POOL} associated with {EXP}"
    )


def test_unauthorized_exclusive_access() -> None:
    anonymous = render(products(), can_read=no_one)
    status = {r[1]: r[3] for r in anonymous.cells}
    ea_path = f"JWST/{EXP2}/{ROWS['J16'].productFilename}"
    assert status[ea_path] == (
        "Not authorized: exclusive-access data of program 2734; "
        "log in with an authorized MAST token"
    )
    # Public files are unaffected by can_read.
    assert status[f"JWST/{EXP}/{POOL}"] == "OK"
    assert "2 exclusive-access files" in "".join(anonymous.text)
    logged_in = render(products(), user=ADA, can_read=no_one)
    status = {r[1]: r[3] for r in logged_in.cells}
    assert status[ea_path] == (
        "Not authorized: exclusive-access data of program 2734; "
        "user Ada is not authorized to read it"
    )
    ea_rows = [r for r in logged_in.cells if r[2] == "EXCLUSIVE_ACCESS"]
    assert len(ea_rows) == 2


def test_fetch_errors_are_shown() -> None:
    uri = ROWS["J10"].dataURI
    page = render(products(), errors={uri: "HTTP 500 after 5 attempts"})
    statuses = [r[3] for r in page.cells if r[0] == uri]
    assert statuses == ["Error: HTTP 500 after 5 attempts"] * 3
    assert all(r[3] in ("OK",) or r[3].startswith("Duplicate") for r in page.cells if r[0] != uri)


def test_flat_layout_paths() -> None:
    page = render(products(), layout="flat")
    assert {r[1] for r in page.cells if r[0] == ROWS["J10"].dataURI} == {POOL}
    assert "FLAT" in "".join(page.text)


def test_hostile_names_are_escaped() -> None:
    hostile = "x<script>alert(1)</script>&\"'.fits"
    evil = jwst(hostile, '<b onmouseover="x">', 2, "CAL")
    evil = dataclasses.replace(evil, dataURI=f"mast:JWST/product/{hostile}")
    page = render([evil], user=User('<img src=x onerror="alert(1)">'))
    assert "script" not in page.tags and "img" not in page.tags and "b" not in page.tags
    assert set(page.tags) <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "a",
    }
    (row,) = page.cells
    assert row[0] == f"mast:JWST/product/{hostile}"
    safe = "x<script>alert(1)<_script>&\"'.fits"
    assert row[1] == f'JWST/<b onmouseover="x">/{safe}'
    assert row[4] == '<img src=x onerror="alert(1)">'
    # The link points inside the mount: percent-encoded, relative, no scheme.
    (link,) = page.links
    assert link.startswith("JWST/") and "<" not in link and '"' not in link


def test_manifest_is_deterministic() -> None:
    rows = products()
    tree = build_tree(rows, "nested")
    summary = summarize(rows, rows, everyone)
    a = manifest_html(rows, tree, summary, None, everyone, {})
    assert a == manifest_html(rows, tree, summary, None, everyone, {})
    stamped = manifest_html(rows, tree, summary, None, everyone, {}, generated="2026-01-01 UTC")
    assert b"2026-01-01 UTC" in stamped and b"2026-01-01" not in a
