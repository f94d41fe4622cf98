"""CRDS reference names from a primary header: what the basket's "References" lists."""

from __future__ import annotations

from mastfs.references import reference_name, references
from tests.support.fitsbytes import primary


def test_r_keywords_and_the_context() -> None:
    walk = primary(
        "CRDS_CTX= 'jwst_1241.pmap'     / CRDS context (.pmap) used to select ref files",
        "R_DARK  = 'crds://jwst_niriss_dark_0171.fits' / Dark reference file name",
        "R_FLAT  = 'N/A     '           / Flat reference file name",
        "R_GAIN  = 'crds://jwst_niriss_gain_0006.fits'",
        "R_LINEAR= 'crds://../../etc/passwd'",
        "R_MASK  = 'crds://JWST_NIRISS_MASK.FITS'",
        "TARGNAME= 'WASP-96 '",
    )
    refs = references(walk.hdus[0])
    assert refs.context == "jwst_1241.pmap"
    assert refs.files == {
        "R_DARK": "jwst_niriss_dark_0171.fits",
        "R_GAIN": "jwst_niriss_gain_0006.fits",
    }
    assert refs.rejected == ("R_LINEAR", "R_MASK")


def test_names_are_plain_crds_file_names() -> None:
    assert reference_name("crds://jwst_miri_flat_0796.fits") == "jwst_miri_flat_0796.fits"
    assert reference_name("jwst_nircam_photom_0150.asdf") == "jwst_nircam_photom_0150.asdf"
    for bad in ("N/A", "", "crds://", "crds://a/b.fits", "x.exe", "../x.fits", 42, None,
                "crds://" + "a" * 200 + ".fits", "jwst\u00e9.fits"):  # fmt: skip
        assert reference_name(bad) is None, bad
    assert references(primary().hdus[0]).files == {}
    assert references(primary().hdus[0]).context is None


def test_hst_cdbs_keywords() -> None:
    refs = references(
        primary(
            "DARKFILE= 'jref$25i1325lj_drk.fits' / superdark image file name",
            "IDCTAB  = 'jref$0461802dj_idc.fits' / image distortion correction table",
            "FLSHFILE= 'N/A     '           / post flash correction file name",
            "PFLTFILE= 'jref$../../etc/passwd'",
            "SHADFILE= 'N/A'",
            "ASNTAB  = 'jbeveo010_asn.fits'",
            "FILENAME= 'jbeveo010_flt.fits'",
        ).hdus[0]
    )
    assert refs.files == {"DARKFILE": "25i1325lj_drk.fits", "IDCTAB": "0461802dj_idc.fits"}
    assert refs.rejected == ("PFLTFILE",)
