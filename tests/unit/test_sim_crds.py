"""The simulator's CRDS references, pure: names, the types each product used, header cards."""

from __future__ import annotations

import re

import pytest

from mastfs.fitsheaders import HeaderWalk
from mastfs.references import references
from mastfs.sim import crds
from mastfs.sim.content import Image, Recipe, SimFile, make_file
from mastfs.sim.crds_files import CrdsFiles, context_text, reference_recipe

NAME = re.compile(r"jwst_(nircam|niriss|nirspec|miri|fgs)_[a-z0-9]+_\d{4}\.fits")
SOSS = {
    "INSTRUME": "NIRISS",
    "DETECTOR": "NIS",
    "EXP_TYPE": "NIS_SOSS",
    "FILTER": "CLEAR",
    "PUPIL": "GR700XD",
    "SUBARRAY": "SUBSTRIP256",
    "READPATT": "NISRAPID",
}
SEG = "jw02734001001_02101_00001-seg001_nis"


def soss(suffix: str, **values: str) -> crds.Calibration | None:
    return crds.calibration({**SOSS, "FILENAME": f"{SEG}_{suffix}.fits", **values})


def keywords(c: crds.Calibration | None) -> dict[str, str]:
    assert c is not None
    return {k: str(v) for k, v in c.cards}


def test_uncalibrated_products_name_no_references() -> None:
    assert soss("uncal") is None
    assert crds.calibration({**SOSS, "FILENAME": "jw01999001001_01_msa.fits"}) is None
    guider = {"INSTRUME": "GUIDER", "EXP_TYPE": "FGS_FG", "DETECTOR": "GUIDER1"}
    assert crds.calibration({**guider, "FILENAME": "v_gs-fg_2022_stream.fits"}) is None
    assert crds.calibration({**SOSS, "FILENAME": f"{SEG}_rate.jpg"}) is None
    assert crds.calibration({**SOSS, "EXP_TYPE": "NRS_IFU", "FILENAME": f"{SEG}_cal.fits"}) is None


def test_detector1_then_stage2_types() -> None:
    rate = keywords(soss("rate"))
    assert rate["CRDS_VER"] == "11.17.19" and rate["CRDS_CTX"] == "jwst_1241.pmap"
    detector1 = {"R_DARK", "R_GAIN", "R_LINEAR", "R_MASK", "R_READNO", "R_SATURA", "R_SUPERB",
                 "R_IPC", "R_REFPIX"}  # fmt: skip
    unused = {"R_PERSAT", "R_TRPDEN", "R_TRPPAR"}
    assert set(rate) == {"CRDS_VER", "CRDS_CTX"} | detector1 | unused
    assert all(rate[k] == "N/A" for k in unused)
    assert all(NAME.fullmatch(rate[k].removeprefix("crds://")) for k in detector1)
    assert keywords(soss("rateints")) == rate
    cal = keywords(soss("cal"))
    assert set(cal) - set(rate) == {"R_SPECWC", "R_FLAT"}
    x1dints = keywords(soss("x1dints"))
    assert {"R_EXTRAC", "R_SPTRCE", "R_SPPROF", "R_WAVMAP", "R_PHOTOM"} <= set(x1dints)
    # Level 3: its own stage's references only.
    level3 = crds.calibration({**SOSS, "FILENAME": "jw02734-o001_t001_niriss_x1dints.fits"})
    assert set(keywords(level3)) == {"CRDS_VER", "CRDS_CTX", "R_EXTRAC", "R_SPTRCE",
                                     "R_SPPROF", "R_WAVMAP", "R_PASTAS", "R_PHOTOM"}  # fmt: skip


def test_modes_and_keywords_are_real_fits_keywords() -> None:
    for mode in crds.MODES.values():
        stages = [mode.detector1, mode.unused, *(mode.stage2 or {}).values()]
        for types in [*stages, *(mode.stage3 or {}).values()]:
            assert set(types) <= set(crds.REFTYPES)
    for t in crds.REFTYPES.values():
        assert re.fullmatch(r"R_[A-Z0-9]{1,6}", t.keyword) and set(t.selectors) <= set(
            crds.SELECTORS
        )
    assert len({t.keyword for t in crds.REFTYPES.values()}) == len(crds.REFTYPES)


def test_products_share_references_by_selecting_values() -> None:
    one = keywords(soss("rate"))
    other = keywords(soss("rate", FILENAME="jw02734002001_03101_00004-seg004_nis_rate.fits"))
    assert one == other
    full = keywords(soss("rate", SUBARRAY="FULL"))
    # The dark depends on the subarray, the gain does not.
    assert full["R_DARK"] != one["R_DARK"] and full["R_GAIN"] == one["R_GAIN"]
    nirspec = {**SOSS, "INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "EXP_TYPE": "NRS_MSASPEC",
               "FILTER": "F290LP", "GRATING": "G395M", "FILENAME": "jw01999001001_x_nrs1_s2d.fits"}
    del nirspec["PUPIL"]
    spec = keywords(crds.calibration(nirspec))
    assert spec["R_DRIZPA"].startswith("crds://jwst_nirspec_drizpars_")
    ref = crds.reference("NIRSPEC", "disperser", {"PUPIL": "G395M"})
    assert spec["R_DISPER"] == f"crds://{ref.name}"


def test_guide_stars_use_the_older_context() -> None:
    guider = {"INSTRUME": "GUIDER", "EXP_TYPE": "FGS_ACQ1", "DETECTOR": "GUIDER1",
              "FILENAME": "jw02734001001_gs-acq1_2022181113512_cal.fits"}  # fmt: skip
    cal = keywords(crds.calibration(guider))
    assert cal["CRDS_CTX"] == "jwst_1225.pmap" and cal["CRDS_VER"] == "11.17.14"
    assert cal["R_FLAT"].startswith("crds://jwst_fgs_flat_")


def test_cards_look_like_astropys_and_parse_as_references() -> None:
    c = soss("x1dints")
    assert c is not None
    recipe = Recipe(
        fmt="fits",
        cards=(("FILENAME", f"{SEG}_x1dints.fits"), *c.cards),
        comments=c.comments,
    )
    f = make_file("mast:X/product/x.fits", "x.fits", "X", "x", recipe, 0.0, "1", "PUBLIC")
    text = bytes(f.read(0, f.size)).decode("ascii")
    cards = [text[i : i + 80] for i in range(0, len(text), 80)]
    assert "CRDS_CTX= 'jwst_1241.pmap'     / CRDS context (.pmap) used to select ref files  " in (
        cards
    )
    dark = next(x for x in cards if x.startswith("R_DARK  = "))
    assert re.fullmatch(r"R_DARK  = 'crds://jwst_niriss_dark_\d{4}\.fits' / Dark reference "
                        r"file name *", dark)  # fmt: skip
    walk = HeaderWalk(f.size)
    walk.feed(0, bytes(f.read(0, f.size)))
    refs = references(walk.hdus[0])
    assert refs.context == "jwst_1241.pmap" and refs.rejected == ()
    named = {k: f"crds://{v}" for k, v in refs.files.items()}
    assert named == {k: str(v) for k, v in c.cards if k.startswith("R_") and v != "N/A"}


def test_reference_files_are_deterministic_and_sized_by_type() -> None:
    dark = crds.reference("NIRCAM", "dark", {"DETECTOR": "NRCA1", "SUBARRAY": "FULL",
                                             "READPATT": "MEDIUM8"})  # fmt: skip
    assert dark == crds.reference("NIRCAM", "dark", {"DETECTOR": "NRCA1", "SUBARRAY": "FULL",
                                                     "READPATT": "MEDIUM8", "FILTER": "F150W"})
    recipe = reference_recipe(dark)
    assert recipe == reference_recipe(dark)
    assert [h.extname for h in recipe.hdus] == ["SCI", "DQ"]
    assert isinstance(recipe.hdus[0], Image) and recipe.hdus[0].shape == (2048, 2048)
    values = dict(recipe.cards)
    assert values["FILENAME"] == dark.name and values["REFTYPE"] == "DARK"
    assert values["DETECTOR"] == "NRCA1" and values["INSTRUME"] == "NIRCAM"
    ipc = reference_recipe(crds.reference("NIRCAM", "ipc", {"DETECTOR": "NRCA1"}))
    assert [h.extname for h in ipc.hdus] == ["SCI"]
    pmap = "\n".join(context_text(crds.CONTEXT))
    assert "'name' : 'jwst_1241.pmap'" in pmap and "'NIRISS' : 'jwst_niriss_0287.imap'" in pmap


def _product(filename: str, values: dict[str, str]) -> SimFile:
    cards = (("FILENAME", filename), *values.items())
    recipe = Recipe(fmt="fits", cards=cards)
    return make_file(f"mast:JWST/product/{filename}", filename, "JWST", "d", recipe, 0.0, "1",
                     "PUBLIC")  # fmt: skip


def test_crds_files_serve_exactly_the_names_products_mention() -> None:
    products = [_product(f"{SEG}_rate.fits", SOSS), _product(f"{SEG}_uncal.fits", SOSS),
                _product(f"{SEG}_x1dints.fits", SOSS)]  # fmt: skip
    files = CrdsFiles(products)
    mentioned = set()
    for p in products:
        c = crds.calibration(dict(p.recipe.cards))
        mentioned |= {r.name for _, r in (c.references if c else ()) if r is not None}
    assert files.names("jwst") == sorted(mentioned)
    assert files.names("hst") == [] and files.reference("hst", sorted(mentioned)[0]) is None
    first = files.reference("jwst", sorted(mentioned)[0])
    assert first is not None and first.uri == f"crds:jwst/{first.filename}"
    assert first.read(0, 6) == b"SIMPLE" and type(first.read(0, first.size)) is bytes
    assert files.reference("jwst", "../" + first.filename) is None
    assert files.mapping_names("jwst") == ["jwst_1241.pmap"]
    pmap = files.mapping("jwst", "jwst_1241.pmap")
    assert pmap is not None and b"selector = {" in bytes(pmap.read(0, pmap.size))


@pytest.mark.parametrize("value", [True, False])
def test_crds_unavailable_knob_is_a_strict_boolean(value: bool) -> None:
    from mastfs.sim.faults import FaultConfigError, Faults

    faults = Faults()
    faults.update({"crds_unavailable": value})
    assert faults.settings.crds_unavailable is value
    for wrong in (1, 2, "yes"):
        with pytest.raises(FaultConfigError):
            faults.update({"crds_unavailable": wrong})
