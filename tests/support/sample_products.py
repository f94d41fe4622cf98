"""Hand-built product rows for the pure-layer tests: JWST program 2734 (NIRISS/SOSS, as in the
Portal documentation's overlay example) and one HST ACS association.

Rows are listed as MAST lists them, parent by parent, so shared files (the pool table, the
guide-star files) appear more than once. Short keys (`J5`, `H4`) name the rows in tests.
"""

from __future__ import annotations

from mastfs.model import EXCLUSIVE_ACCESS, PUBLIC, Product

MRP = "Minimum Recommended Products"
EXP = "jw02734001001_02101_00001"
EXP2 = "jw02734002001_04101_00001"
L3 = "jw02734-o002_t002_niriss"
GS = "jw02734002001_gs-fg_2022187130002"
HST = "jbeveo010"
POOL = "jw02734_20220706t131401_pool.csv"


def jwst(
    name: str,
    obs_id: str,
    level: int,
    subgroup: str,
    ptype: str = "SCIENCE",
    mrp: bool = False,
    size: int = 1_000_000,
    rights: str = PUBLIC,
    parent: str = "",
) -> Product:
    return Product(
        dataURI=f"mast:JWST/product/{name}",
        productFilename=name,
        obs_id=obs_id,
        obs_collection="JWST",
        size=size,
        parent_obsid=parent or obs_id,
        dataRights=rights,
        calib_level=level,
        productType=ptype,
        productGroupDescription=MRP if mrp else "",
        productSubGroupDescription=subgroup,
        project="CALJWST",
        proposal_id="2734",
        filters="CLEAR;GR700XD",
        instrument_name="NIRISS/SOSS",
        mtime=1657100000.0,
    )


def hst(name: str, level: int, subgroup: str, ptype: str = "SCIENCE", mrp: bool = False) -> Product:
    return Product(
        dataURI=f"mast:HST/product/{name}",
        productFilename=name,
        obs_id=HST,
        obs_collection="HST",
        size=2_000_000,
        calib_level=level,
        productType=ptype,
        productGroupDescription=MRP if mrp else "",
        productSubGroupDescription=subgroup,
        project="HST",
        proposal_id="10775",
        filters="F606W",
        instrument_name="ACS/WFC",
    )


ROWS: dict[str, Product] = {
    "J1": jwst(f"{EXP}-seg001_nis_uncal.fits", EXP, 1, "UNCAL", size=100_000_000),
    "J2": jwst(f"{EXP}-seg001_nis_rate.fits", EXP, 2, "RATE", size=20_000_000),
    "J3": jwst(f"{EXP}-seg001_nis_rateints.fits", EXP, 2, "RATEINTS", size=60_000_000),
    "J4": jwst(f"{EXP}-seg001_nis_trapsfilled.fits", EXP, 2, "TRAPSFILLED", "AUXILIARY"),
    "J5": jwst(f"{EXP}-seg001_nis_cal.fits", EXP, 2, "CAL", size=30_000_000),
    "J6": jwst(f"{EXP}-seg001_nis_calints.fits", EXP, 2, "CALINTS", mrp=True, size=80_000_000),
    "J7": jwst(f"{EXP}-seg001_nis_x1dints.fits", EXP, 2, "X1DINTS", mrp=True),
    "J8": jwst(f"{EXP}-seg001_nis_cal.jpg", EXP, 2, "", "PREVIEW", size=50_000),
    "J9": jwst("jw02734-o002_20220706t131401_spec2_00001_asn.json", EXP, 2, "ASN", "INFO", True),
    "J10": jwst(POOL, EXP, 3, "POOL", "INFO", mrp=True, size=300_000),
    "J11": jwst(f"{GS}_uncal.fits", GS, 1, "GS-FG", "AUXILIARY", parent=EXP),
    "J12": jwst(f"{GS}_cal.fits", GS, 2, "GS-FG", "AUXILIARY", parent=EXP),
    "J13": jwst(f"{L3}_clear-gr700xd-substrip256_x1dints.fits", L3, 3, "X1DINTS", mrp=True),
    "J14": jwst(f"{L3}_clear-gr700xd-substrip256_whtlt.ecsv", L3, 3, "WHTLT", "CATALOG", True),
    "J15": jwst("jw02734-o002_20220706t131401_tso3_00001_asn.json", L3, 3, "ASN", "INFO", True),
    "J10b": jwst(POOL, L3, 3, "POOL", "INFO", mrp=True, size=300_000),
    "J16": jwst(f"{EXP2}-seg001_nis_cal.fits", EXP2, 2, "CAL", rights=EXCLUSIVE_ACCESS),
    "J17": jwst(f"{EXP2}-seg001_nis_uncal.fits", EXP2, 1, "UNCAL", rights=EXCLUSIVE_ACCESS),
    "J10c": jwst(POOL, EXP2, 3, "POOL", "INFO", mrp=True, size=300_000),
    "J11b": jwst(f"{GS}_uncal.fits", GS, 1, "GS-FG", "AUXILIARY", parent=EXP2),
    "J12b": jwst(f"{GS}_cal.fits", GS, 2, "GS-FG", "AUXILIARY", parent=EXP2),
    "H1": hst("jbeveo010_asn.fits", 1, "ASN", "AUXILIARY"),
    "H2": hst("jbeveo01q_raw.fits", 1, "RAW"),
    "H3": hst("jbeveo01q_flt.fits", 2, "FLT"),
    "H4": hst("jbeveo010_drz.fits", 3, "DRZ", mrp=True),
    "H5": hst("jbeveo010_drz.jpg", 3, "DRZ", "PREVIEW"),
    "H6": hst("jbeveo01q_spt.fits", 1, "SPT", "AUXILIARY"),
}


def products() -> list[Product]:
    """Every row, in the order above (MAST's order: parent by parent)."""
    return list(ROWS.values())


def names(*keys: str) -> set[str]:
    return {ROWS[k].productFilename for k in keys}
