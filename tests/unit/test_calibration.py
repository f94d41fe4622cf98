"""`references/` without I/O: CRDS servers and URIs, the reference set of a selection, the tree,
the views and the xattrs that show it, and hostile header values that must never become files."""

from __future__ import annotations

import csv
import io

import pytest

from mastfs import api, crds
from mastfs.calibration import CATEGORY, Calibration, reference_product
from mastfs.model import Product
from mastfs.references import References, references
from mastfs.selection import Selection
from mastfs.state import MountState
from mastfs.tree import FLAT, NESTED, REFERENCES, REFERENCES_INODE, ROOT_INODE, build_tree
from mastfs.xattrs import product_xattrs
from tests.support.fitsbytes import primary
from tests.support.sample_products import EXP, EXP2, jwst

JWST = crds.crds_servers()["JWST"]
DARK = "jwst_niriss_dark_0171.fits"
GAIN = "jwst_niriss_gain_0006.fits"
FLAT_REF = "jwst_niriss_flat_0275.fits"


def ref(name: str, *keywords: str, size: int = 3_000_000) -> Product:
    return reference_product(JWST, name, size, keywords or ("R_DARK",))


# -- CRDS servers and URIs ----------------------------------------------------------------------


def test_default_servers_per_mission_and_one_override_for_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(crds.CRDS_SERVER_ENV, raising=False)
    servers = crds.crds_servers()
    assert servers["JWST"] == crds.CrdsServer("JWST", "jwst", "https://jwst-crds.stsci.edu")
    assert servers["HST"] == crds.CrdsServer("HST", "hst", "https://hst-crds.stsci.edu")
    assert crds.server_for(servers, "jwst ") == servers["JWST"]
    assert crds.server_for(servers, "TESS") is None
    mine = crds.crds_servers("http://127.0.0.2:8080/")
    assert {s.url for s in mine.values()} == {"http://127.0.0.2:8080"}
    monkeypatch.setenv(crds.CRDS_SERVER_ENV, "https://crds.example.org")
    assert crds.crds_servers()["HST"].url == "https://crds.example.org"
    assert crds.crds_servers("http://a:1")["HST"].url == "http://a:1"


@pytest.mark.parametrize(
    "bad", ["ftp://crds", "crds.stsci.edu", "http://", "http://h/x?y=1", "http://a b", "file:///x"]
)
def test_a_bad_server_url_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid CRDS server URL") as caught:
        crds.crds_servers(bad)
    assert repr(bad) in str(caught.value)


def test_uris_and_urls() -> None:
    uri = crds.reference_uri("jwst", DARK)
    assert uri == f"crds:jwst/{DARK}"
    assert crds.split_uri(uri) == ("jwst", DARK)
    assert (
        crds.reference_url("http://127.0.0.2:9/", uri)
        == f"http://127.0.0.2:9/unchecked_get/references/jwst/{DARK}"
    )
    hst = crds.reference_uri("hst", "25i1325lj_drk.fits")
    assert crds.reference_url(crds.crds_servers()["HST"].url, hst) == (
        "https://hst-crds.stsci.edu/unchecked_get/references/hst/25i1325lj_drk.fits"
    )
    for bad in ("crds:jwst/../x.fits", "crds:jwst/a/b.fits", "crds:tess/x.fits",
                "mast:JWST/product/x.fits", "crds:jwst/", "crds:///etc/passwd"):  # fmt: skip
        with pytest.raises(ValueError):
            crds.split_uri(bad)


# -- hostile header values ----------------------------------------------------------------------


def test_hostile_r_values_never_become_files() -> None:
    refs = references(
        primary(
            "CRDS_CTX= '../../jwst_1241.pmap'",
            "R_DARK  = '../../x.fits'",
            "R_FLAT  = 'crds:///etc/passwd'",
            "R_GAIN  = 'crds://jwst_niriss_gain_0006.fits/../../x.fits'",
            "R_LINEAR= '/etc/passwd.fits'",
            "R_MASK  = 'crds://.hidden.fits'",
            f"R_PHOTOM= 'crds://{GAIN}'",
        ).hdus[0]
    )
    assert refs.files == {"R_PHOTOM": GAIN}
    assert refs.context is None
    assert set(refs.rejected) == {"R_DARK", "R_FLAT", "R_GAIN", "R_LINEAR", "R_MASK"}
    cal = Calibration(
        named={"mast:JWST/product/a_cal.fits": refs},
        observatories={"mast:JWST/product/a_cal.fits": "jwst"},
        files={crds.reference_uri("jwst", GAIN): ref(GAIN, "R_PHOTOM")},
    )
    product = jwst("a_cal.fits", EXP, 2, "CAL")
    tree = build_tree([product], NESTED, references=cal.for_selection([product]))
    assert [e.name for e in tree.children(REFERENCES_INODE)] == [GAIN]
    for bad in ("../../x.fits", "x.fits/../..", "/etc/passwd", ".hidden.fits"):
        with pytest.raises(ValueError):
            crds.reference_uri("jwst", bad)


# -- the set of a selection ---------------------------------------------------------------------


def calibration() -> tuple[list[Product], Calibration]:
    a = jwst("jw02734001001_02101_00001-seg001_nis_rateints.fits", EXP, 2, "RATEINTS")
    b = jwst("jw02734001001_02101_00001-seg001_nis_calints.fits", EXP, 2, "CALINTS")
    c = jwst("jw02734002001_04101_00001-seg001_nis_calints.fits", EXP2, 2, "CALINTS")
    u = jwst("jw02734001001_02101_00001-seg001_nis_uncal.fits", EXP, 1, "UNCAL")
    named = {
        a.dataURI: References("jwst_1241.pmap", {"R_DARK": DARK, "R_GAIN": GAIN}),
        b.dataURI: References("jwst_1241.pmap", {"R_DARK": DARK, "R_FLAT": FLAT_REF}),
        c.dataURI: References("jwst_1241.pmap", {"R_DARK": DARK, "R_FLAT": FLAT_REF}),
    }
    files = {
        crds.reference_uri("jwst", DARK): ref(DARK, "R_DARK"),
        crds.reference_uri("jwst", GAIN): ref(GAIN, "R_GAIN", size=700_000),
    }
    missing = {crds.reference_uri("jwst", FLAT_REF): "not on https://jwst-crds.stsci.edu"}
    cal = Calibration(named, {uri: "jwst" for uri in named}, files, missing)
    return [a, b, c, u], cal


def test_a_shared_reference_is_one_product() -> None:
    products, cal = calibration()
    shown = cal.for_selection(products)
    assert [r.productFilename for r in shown] == [DARK, GAIN]
    assert cal.for_selection(products[2:]) == [cal.files[crds.reference_uri("jwst", DARK)]]
    assert cal.for_selection(products[3:]) == []
    dark = shown[0]
    assert dark.productType == CATEGORY == "CALIBRATION"
    assert dark.dataRights == "PUBLIC" and dark.obs_collection == "JWST"
    assert dark.instrument_name == "NIRISS" and "DARK" in dark.description
    noise = reference_product(JWST, "jwst_niriss_readnoise_0120.fits", 1, ["R_READNO"])
    assert noise.productSubGroupDescription == "READNOISE"
    hst = reference_product(crds.crds_servers()["HST"], "n9n20182l_drk.fits", 1, ["DARKFILE"])
    assert hst.productSubGroupDescription == "DARKFILE" and hst.instrument_name == ""
    assert cal.notes() == [
        "1 reference file not in references/ (not on https://jwst-crds.stsci.edu): " + FLAT_REF
    ]


@pytest.mark.parametrize("layout", [NESTED, FLAT])
def test_tree_has_one_file_per_reference(layout: str) -> None:
    products, cal = calibration()
    refs = cal.for_selection(products)
    tree = build_tree(products, layout, references=refs)
    folder = tree.lookup(ROOT_INODE, REFERENCES)
    assert folder is not None and folder.inode == REFERENCES_INODE and folder.is_dir
    entries = tree.children(REFERENCES_INODE)
    assert [e.name for e in entries] == [DARK, GAIN]
    for r in refs:
        assert tree.paths(r.dataURI) == (f"references/{r.productFilename}",)
        assert tree.row_path(r) == f"references/{r.productFilename}"
        inode = tree.inode_of(r.dataURI)
        assert inode is not None and tree.nlink(inode) == 1
        assert tree.entry(inode).product == r  # type: ignore[union-attr]
    # Not mirrored in headers/, and the products' own tree is what it was.
    plain = build_tree(products, layout)
    assert tree.lookup_path("headers/references") is None
    assert sorted(tree.inodes()) == sorted([*plain.inodes(), REFERENCES_INODE,
                                            *(tree.inode_of(r.dataURI) for r in refs)])  # fmt: skip
    # Shown (empty) whenever references are: none found is not the same as none asked for.
    assert build_tree(products, layout, references=[]).children(REFERENCES_INODE) == ()
    assert build_tree(products, layout).lookup(ROOT_INODE, REFERENCES) is None


def test_a_product_named_references_steps_aside_only_when_references_are_shown() -> None:
    odd = jwst("references", EXP, 2, "CAL")
    assert build_tree([odd], FLAT).lookup(ROOT_INODE, "references").product == odd  # type: ignore[union-attr]
    tree = build_tree([odd], FLAT, references=[ref(DARK)])
    assert tree.lookup(ROOT_INODE, "references").is_dir  # type: ignore[union-attr]
    assert tree.paths(odd.dataURI) == ("references~2",)


def test_state_views_and_xattrs() -> None:
    products, cal = calibration()
    state = MountState(products, Selection(), NESTED, None)
    before = state.snapshot
    state.add_calibration(cal)
    snap = state.snapshot
    assert snap.generation == before.generation + 1
    assert [p.productFilename for p in snap.selected[len(products) :]] == [DARK, GAIN]
    assert snap.summary.selected_files == len(products) + 2
    rows = list(csv.DictReader(io.StringIO(snap.csv.decode())))
    refs = [r for r in rows if r["URI"].startswith("crds:")]
    assert [(r["Filename"], r["Path"], r["Dataset"]) for r in refs] == [
        (DARK, f"references/{DARK}", "references"),
        (GAIN, f"references/{GAIN}", "references"),
    ]
    assert [r["Path"] for r in rows if not r["URI"].startswith("crds:")] == [
        r["Path"] for r in csv.DictReader(io.StringIO(before.csv.decode()))
    ]
    manifest = state.manifest().decode()
    assert f'href="references/{DARK}"' in manifest
    assert f"not on https://jwst-crds.stsci.edu): {FLAT_REF}" in manifest
    # The references follow the selection.
    state.reselect(Selection.build(groups="UNCAL"))
    assert all(not p.dataURI.startswith("crds:") for p in state.snapshot.selected)
    state.reselect(Selection.build(groups="RATEINTS"))
    assert [p.productFilename for p in state.snapshot.selected[1:]] == [DARK, GAIN]

    a = products[0]
    values = product_xattrs(a, True, state.references_of(a.dataURI))
    assert values["user.mast.references"] == f"{DARK},{GAIN}"
    assert values["user.mast.crds_context"] == "jwst_1241.pmap"
    assert "user.mast.references" not in product_xattrs(products[3], True, None)
    assert "user.mast.references" not in product_xattrs(a, True)


def test_the_python_api_takes_the_options_and_checks_them() -> None:
    args = api.mount_args({"program": 2734, "references": True, "crds_server": "http://h:1"})
    assert args.references and args.crds_server == "http://h:1"
    assert api.to_argv({"references": True, "crds_server": "http://h:1"}) == [
        "--references",
        "--crds-server",
        "http://h:1",
    ]
    assert api.crds_settings({}) is None
    assert api.crds_settings({"references": True})["JWST"].observatory == "jwst"  # type: ignore[index]
    with pytest.raises(ValueError, match="invalid CRDS server URL 'ftp://h'"):
        api.mount_args({"program": 2734, "crds_server": "ftp://h"})


def test_a_reference_row_says_calibration_and_its_type_not_a_level_or_its_serial() -> None:
    from mastfs.views import CSV_COLUMNS, selection_rows

    products, cal = calibration()
    refs = cal.for_selection(products)
    tree = build_tree(products, NESTED, references=refs)
    rows = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in selection_rows(refs, tree)]
    dark = next(r for r in rows if r["Filename"] == DARK)
    assert (dark["Product Level"], dark["Suffix"], dark["Category"]) == ("", "_dark", "CALIBRATION")
    assert dark["Path"] == f"references/{DARK}" and dark["Instrument"] == "NIRISS"
