"""`selection.csv` and `manifest.html` through the real pipeline, pinned by golden files.

Archive (astroquery over HTTP to the simulator) → the real exclusive-access probe
(`session.probe_readable_at`, one HEAD per proposal) → `MountState` → the bytes a mount serves. The
golden files under tests/golden/ are those bytes; regenerate them with
`MASTFS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/core/test_golden_views.py` and review the diff. They
hold no time and no server address, so they are the same on every run and machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from mastfs.archive import Archive, Query
from mastfs.model import Product, User
from mastfs.selection import CATEGORIES, Selection, format_bytes
from mastfs.session import probe_readable_at
from mastfs.sim.catalog import (
    AUTHORIZED_TOKEN,
    HOSTILE_FILENAME,
    HOSTILE_URI,
    TOKENS,
    UNAUTHORIZED_TOKEN,
    default_catalog,
)
from mastfs.state import MountState
from tests.support.views import (
    OUR_COLUMNS,
    PORTAL_HEADER,
    Manifest,
    check_golden,
    check_manifest_structure,
    parse_manifest,
    read_csv,
)

ADA = TOKENS[AUTHORIZED_TOKEN].display_name
UNA = TOKENS[UNAUTHORIZED_TOKEN].display_name
POOL_2734 = "jw02734_20220630t163421_pool.csv"

# variant -> (program, token)
VARIANTS: dict[str, tuple[str, str | None]] = {
    "2734-anonymous": ("2734", None),
    "2734-authorized": ("2734", AUTHORIZED_TOKEN),
    "6543-anonymous": ("6543", None),
    "6543-authorized": ("6543", AUTHORIZED_TOKEN),
    "6543-unauthorized": ("6543", UNAUTHORIZED_TOKEN),
    "10775-anonymous": ("10775", None),
}


@dataclass
class Views:
    program: str
    user: User | None
    readable: set[str]
    state: MountState
    csv: bytes
    manifest: bytes

    @property
    def selected(self) -> list[Product]:
        return self.state.snapshot.selected


def generate(sim_url: str, cache_dir: Path, program: str, token: str | None) -> Views:
    """What a nested mount of `program` with the default selection serves at its root."""
    archive = Archive(sim_url, cache_dir, token)
    user = archive.login()
    result = archive.products(Query(programs=(program,)), progress=lambda s: None)
    readable = trio.run(probe_readable_at, sim_url, token, result.products)
    state = MountState(result.products, Selection(), "nested", user, readable)
    return Views(program, user, readable, state, state.snapshot.csv, state.manifest())


@pytest.fixture(scope="module")
def views(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Views]:
    cache = tmp_path_factory.mktemp("golden-cache")
    return {name: generate(sim_url, cache, *spec) for name, spec in VARIANTS.items()}


def manifest_of(views: dict[str, Views], variant: str) -> Manifest:
    return parse_manifest(views[variant].manifest)


def rows_per_dataset(selected: Sequence[Product]) -> list[tuple[str, str]]:
    """(obs_id, dataURI) of the rows a manifest lists, in order: one per dataset and file."""
    seen: dict[tuple[str, str], None] = {}
    for p in selected:
        seen.setdefault((p.obs_id, p.dataURI), None)
    return list(seen)


# -- golden files -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_golden_files(variant: str, views: dict[str, Views], sim_url: str) -> None:
    v = views[variant]
    for data in (v.csv, v.manifest):
        # No server address or port, no time: the same bytes on every run.
        assert sim_url.encode() not in data and b"127.0.0.1" not in data
        assert b"Generated" not in data
    check_golden(f"{variant}-manifest.html", v.manifest)
    # The file list does not depend on who is logged in.
    check_golden(f"{v.program}-selection.csv", v.csv)


def test_views_are_deterministic(views: dict[str, Views], sim_url: str, tmp_path: Path) -> None:
    again = generate(sim_url, tmp_path, "6543", AUTHORIZED_TOKEN)
    assert again.csv == views["6543-authorized"].csv
    assert again.manifest == views["6543-authorized"].manifest
    # A re-selection to the same selection renders the same bytes.
    state = views["2734-anonymous"].state
    snap = state.reselect(Selection.build(quick="all"))
    assert snap.csv == views["2734-anonymous"].csv
    assert state.manifest(snap) == views["2734-anonymous"].manifest


def test_probe_learns_who_may_read_6543(views: dict[str, Views]) -> None:
    assert views["6543-anonymous"].readable == set()
    assert views["6543-authorized"].readable == {"6543"}
    assert views["6543-unauthorized"].readable == set()
    assert views["6543-anonymous"].user is None
    assert views["6543-authorized"].user == User(ADA)
    assert views["6543-unauthorized"].user == User(UNA)


# -- selection.csv ------------------------------------------------------------------------------


def test_csv_columns_and_rows(views: dict[str, Views]) -> None:
    v = views["2734-anonymous"]
    first, rows = read_csv(v.csv)
    # The overlay's export header, column for column, then the mount's own columns.
    assert first == PORTAL_HEADER + "," + ",".join(OUR_COLUMNS)
    assert v.csv.decode().count("\r\n") == len(rows) + 1
    by_row = {(p.obs_id, p.productFilename): p for p in v.selected}
    assert [(r["Dataset"], r["Filename"]) for r in rows] == sorted(by_row)
    tree = v.state.snapshot.tree
    for r in rows:
        p = by_row[(r["Dataset"], r["Filename"])]
        assert (r["URI"], int(r["Size"]), r["Access"]) == (p.dataURI, p.size, p.dataRights)
        assert r["Instrument"] == "NIRISS" and r["Filter / Grating"] == "CLEAR;GR700XD"
        assert r["Path"] == f"JWST/{p.obs_id}/{p.productFilename}"
        assert r["Category"] == p.productType and r["Category"] in CATEGORIES
        entry = tree.lookup_path(r["Path"])
        assert entry is not None and entry.product is not None
        assert entry.product.dataURI == p.dataURI
    # The overlay's preview example (seeds: Download Overlay, 6.1): level and suffix per file.
    seg = "jw02734001001_02101_00001-seg001_nis"
    example = {
        f"{seg}_cal.fits": ("2b", "_cal"),
        f"{seg}_rate.fits": ("2a", "_rate"),
        f"{seg}_rateints.fits": ("2a", "_rateints"),
        f"{seg}_uncal.fits": ("1b", "_uncal"),
        "jw02734-o002_t002_niriss_clear-gr700xd-substrip256_x1dints.fits": ("3", "_x1dints"),
        # A preview is at its product's level.
        f"{seg}_rate_thumb.png": ("2a", "_thumb"),
    }
    got = {r["Filename"]: (r["Product Level"], r["Suffix"]) for r in rows}
    assert {k: got[k] for k in example} == example


def test_csv_is_the_same_logged_in(views: dict[str, Views]) -> None:
    assert views["2734-authorized"].csv == views["2734-anonymous"].csv
    assert views["6543-authorized"].csv == views["6543-anonymous"].csv


def test_csv_hostile_name_round_trips(views: dict[str, Views]) -> None:
    v = views["10775-anonymous"]
    _, rows = read_csv(v.csv)
    hostile = [r for r in rows if r["URI"] == HOSTILE_URI]
    assert len(hostile) == 1
    row = hostile[0]
    assert row["Filename"] == HOSTILE_FILENAME
    assert row["Path"] == f"HST/{row['Dataset']}/{HOSTILE_FILENAME}"
    assert row["Instrument"] == "ACS" and row["Product Level"] == "3"
    # RFC 4180 quoting, as the csv module writes and reads it.
    assert b'"j9l9_notes,""v2""<b>&x.txt"' in v.csv


# -- manifest.html ------------------------------------------------------------------------------


def test_manifest_anonymous_with_duplicates(views: dict[str, Views]) -> None:
    v = views["2734-anonymous"]
    m = manifest_of(views, "2734-anonymous")
    check_manifest_structure(m, "anonymous")
    order = rows_per_dataset(v.selected)
    assert [(row.file.split("/")[1], row.uri) for row in m.rows] == order
    first_folder: dict[str, str] = {}
    duplicates = 0
    for row in m.rows:
        obs_id = row.file.split("/")[1]
        if row.uri not in first_folder:
            first_folder[row.uri] = obs_id
            assert row.status == "OK", row
        else:
            name = row.file.rsplit("/", 1)[1]
            assert row.status == f"Duplicate of file {name} in folder {first_folder[row.uri]}"
            duplicates += 1
    # The pool is listed under the two level-3 observations and the ten segments.
    pool_rows = [r for r in m.rows if r.file.endswith(POOL_2734)]
    assert len(pool_rows) == 12 and duplicates == 11
    # The summary counts distinct files; sizes from the simulator's own catalog.
    cat = default_catalog()
    everything = {str(r["dataURI"]) for o in cat.observations if o["proposal_id"] == "2734"
                  for r in cat.products_for(str(o["obsid"]))}  # fmt: skip
    shown = {u for u in everything if "_gs-" not in u}
    size = {u: cat.file(u).size for u in everything}  # type: ignore[union-attr]
    assert len(shown) == 87 and len(everything) == 99
    assert m.summary == (
        f"87 of 99 files selected ({format_bytes(sum(size[u] for u in shown))} of "
        f"{format_bytes(sum(size.values()))})"
    )
    assert "Logged in user: anonymous." in m.paragraphs[1]


def test_manifest_logged_in_follows_example_2(views: dict[str, Views]) -> None:
    m = manifest_of(views, "2734-authorized")
    check_manifest_structure(m, ADA)
    first: dict[str, str] = {}
    for row in m.rows:
        obs_id, name = row.file.split("/")[1:]
        done = f"{row.file} associated with {obs_id}"
        if row.uri not in first:
            first[row.uri] = obs_id
            assert row.status == f"{done} SUCCESS"
        else:
            assert row.status == f"{done} Duplicate of file {name} associated with {first[row.uri]}"
    anonymous = manifest_of(views, "2734-anonymous")
    assert [(r.uri, r.file) for r in m.rows] == [(r.uri, r.file) for r in anonymous.rows]
    assert m.summary == anonymous.summary


def _exclusive_uris(v: Views) -> set[str]:
    return {p.dataURI for p in v.selected if p.is_exclusive}


def test_manifest_exclusive_access_anonymous(views: dict[str, Views]) -> None:
    v = views["6543-anonymous"]
    m = manifest_of(views, "6543-anonymous")
    check_manifest_structure(m, "anonymous")
    locked = [r for r in m.rows if r.access == "EXCLUSIVE_ACCESS"]
    public = [r for r in m.rows if r.access == "PUBLIC"]
    assert locked and public
    for row in locked:
        assert row.status == (
            "Not authorized: exclusive-access data of program 6543; "
            "log in with an authorized MAST token"
        )
    assert {r.status.split(" of file")[0] for r in public} == {"OK", "Duplicate"}
    n = len(_exclusive_uris(v))
    assert n == v.state.snapshot.summary.unreadable_files == len({r.uri for r in locked})
    assert f"; {n} exclusive-access files (" in m.summary
    assert m.summary.endswith("are not readable without an authorized MAST token")


def test_manifest_exclusive_access_authorized(views: dict[str, Views]) -> None:
    m = manifest_of(views, "6543-authorized")
    check_manifest_structure(m, ADA)
    assert {r.access for r in m.rows} == {"PUBLIC", "EXCLUSIVE_ACCESS"}
    for row in m.rows:
        obs_id = row.file.split("/")[1]
        assert row.status.startswith(f"{row.file} associated with {obs_id} ")
        assert row.status.endswith(" SUCCESS") or " Duplicate of file " in row.status
    assert "not readable" not in m.summary
    assert views["6543-authorized"].state.snapshot.summary.unreadable_files == 0
    anonymous = manifest_of(views, "6543-anonymous")
    assert [(r.uri, r.file) for r in m.rows] == [(r.uri, r.file) for r in anonymous.rows]


def test_manifest_exclusive_access_unauthorized_user(views: dict[str, Views]) -> None:
    m = manifest_of(views, "6543-unauthorized")
    check_manifest_structure(m, UNA)
    for row in m.rows:
        if row.access == "EXCLUSIVE_ACCESS":
            assert row.status == (
                "Not authorized: exclusive-access data of program 6543; "
                f"user {UNA} is not authorized to read it"
            )
        else:
            assert row.status.endswith(" SUCCESS") or " Duplicate of file " in row.status
    assert m.summary.endswith(f"are not readable by user {UNA}")


def test_manifest_escapes_the_hostile_name(views: dict[str, Views]) -> None:
    data = views["10775-anonymous"].manifest
    # The archive's markup is text, never a tag.
    assert b"<b>" not in data
    assert b"j9l9_notes,&quot;v2&quot;&lt;b&gt;&amp;x.txt" in data
    m = parse_manifest(data)
    check_manifest_structure(m, "anonymous")
    assert "b" not in m.tags
    hostile = [r for r in m.rows if r.uri == HOSTILE_URI]
    assert len(hostile) == 1
    row = hostile[0]
    assert row.file.endswith("/" + HOSTILE_FILENAME) and row.status == "OK"
    # The link is percent-encoded and leads back to the file's path in the mount.
    assert row.href == row.file.replace(HOSTILE_FILENAME, "j9l9_notes%2C%22v2%22%3Cb%3E%26x.txt")
    tree = views["10775-anonymous"].state.snapshot.tree
    entry = tree.lookup_path(row.file)
    assert entry is not None and entry.product is not None
    assert entry.product.dataURI == HOSTILE_URI
