"""Recipes of catalog files: FITS headers of JWST and HST, associations, pools, text, previews.

Each function maps the facts of one file (its name, its observation's header values) to the
`Recipe` that `content.py` turns into bytes. Seeds come from the filename, so a file's bytes do
not depend on where in the catalog it is built.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from mastfs.sim import crds
from mastfs.sim.content import (
    FITS_BLOCK,
    CardValue,
    Image,
    Recipe,
    Table,
    hash_text,
    primary_header_len,
)

Cards = tuple[tuple[str, CardValue], ...]

_MJD_UNIX = 40587.0


def mjd_to_posix(mjd: float) -> float:
    return (mjd - _MJD_UNIX) * 86400.0


def mjd_to_iso(mjd: float) -> str:
    t = datetime.datetime(1858, 11, 17) + datetime.timedelta(days=mjd)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def seed(filename: str) -> int:
    return hash_text(filename) & 0x7FFFFFFF


@dataclass(frozen=True)
class JwstContext:
    """The program-level values a JWST header carries."""

    prvversion: str
    program: str  # five digits
    target: str
    ra: float
    dec: float


@dataclass(frozen=True)
class JwstExposure:
    """Header values of one JWST exposure (or of a file that stands for one)."""

    obs_id: str
    instrume: str
    detector: str
    exp_type: str
    filt: str
    pupil: str
    subarray: str
    readpatt: str
    nints: int
    ngroups: int
    expstart: float
    observation: int
    visit: int
    exposure: int


def _jwst_cards(p: JwstContext, e: JwstExposure, filename: str, datamodl: str) -> Cards:
    start = e.expstart
    date = mjd_to_iso(start)
    filetype = "uncalibrated" if filename.endswith("_uncal.fits") else "calibrated"
    return (
        ("DATE", mjd_to_iso(start + 0.2)),
        ("ORIGIN", "STSCI"),
        ("TELESCOP", "JWST"),
        ("FILENAME", filename),
        ("FILETYPE", filetype),
        ("DATAMODL", datamodl),
        ("CAL_VER", p.prvversion),
        ("PROGRAM", p.program),
        ("OBSERVTN", f"{e.observation:03d}"),
        ("VISIT", f"{e.visit:03d}"),
        ("EXPOSURE", f"{e.exposure:05d}"),
        ("OBS_ID", e.obs_id),
        ("TARGPROP", p.target),
        ("TARGNAME", p.target),
        ("TARG_RA", p.ra),
        ("TARG_DEC", p.dec),
        ("INSTRUME", e.instrume),
        ("DETECTOR", e.detector),
        ("FILTER", e.filt),
        ("PUPIL" if e.instrume != "NIRSPEC" else "GRATING", e.pupil),
        ("EXP_TYPE", e.exp_type),
        ("SUBARRAY", e.subarray),
        ("READPATT", e.readpatt),
        ("NINTS", e.nints),
        ("NGROUPS", e.ngroups),
        ("EXPSTART", start),
        ("DATE-OBS", date[:10]),
        ("TIME-OBS", date[11:]),
        ("DATE-BEG", date),
    )


def jwst_fits(
    p: JwstContext,
    e: JwstExposure,
    filename: str,
    style: str,
    datamodl: str,
    hdus: Iterable[Image | Table],
    size: int = 0,
) -> Recipe:
    """A JWST FITS file; its ASDF extension has a name-dependent width, or absorbs `size`.

    A calibrated product's header also names its CRDS context and references (`crds.py`).
    """
    width = 0 if size else 2000 + seed(filename) % 30000
    cards = _jwst_cards(p, e, filename, datamodl)
    calibration = crds.calibration(dict(cards))
    comments: tuple[tuple[str, str], ...] = ()
    if calibration is not None:
        grown = primary_header_len(len(cards) + len(calibration.cards))
        # The ASDF extension gives up the header block the calibration cards take, where it
        # is wide enough: most sizes do not depend on how many references a file names.
        room = -(-width // FITS_BLOCK) * FITS_BLOCK - (grown - primary_header_len(len(cards)))
        if width and room >= 256:
            width = room
        cards += calibration.cards
        comments = calibration.comments
    return Recipe(
        fmt="fits",
        style=style,
        seed=seed(filename),
        cards=cards,
        hdus=(*hdus, Table("ASDF", "asdf", 1, npix=width)),
        size=size,
        comments=comments,
    )


@dataclass(frozen=True)
class HstExposure:
    """Header values of one HST dataset (an exposure or an association)."""

    proposal_id: str
    target: str
    ra: float
    dec: float
    rootname: str
    asn_id: str
    filt: str
    expstart: float
    exptime: float


def hst_fits(
    e: HstExposure, filename: str, hdus: tuple[Image | Table, ...], items: tuple[str, ...] = ()
) -> Recipe:
    date = mjd_to_iso(e.expstart)
    cards: Cards = (
        ("ORIGIN", "HSTIO/CFITSIO March 2010"),
        ("DATE", mjd_to_iso(e.expstart + 1.0)[:10]),
        ("NEXTEND", len(hdus)),
        ("FILENAME", filename),
        ("FILETYPE", "SCI"),
        ("TELESCOP", "HST"),
        ("INSTRUME", "ACS"),
        ("DETECTOR", "WFC"),
        ("ROOTNAME", e.rootname),
        ("OBS_ID", e.rootname),
        ("ASN_ID", e.asn_id.upper()),
        ("PROPOSID", int(e.proposal_id)),
        ("TARGNAME", e.target),
        ("RA_TARG", e.ra),
        ("DEC_TARG", e.dec),
        ("OBSTYPE", "IMAGING"),
        ("OBSMODE", "ACCUM"),
        ("FILTER1", e.filt),
        ("FILTER2", "CLEAR2L"),
        ("DATE-OBS", date[:10]),
        ("TIME-OBS", date[11:19]),
        ("EXPSTART", e.expstart),
        ("EXPTIME", e.exptime),
    )
    return Recipe(
        fmt="fits", style="cluster", seed=seed(filename), cards=cards, hdus=hdus, items=items
    )


def jpeg(filename: str, style: str, width: int, height: int) -> Recipe:
    size = width * height // 2 + 4096 + seed(filename) % 4096
    return Recipe(fmt="jpeg", style=style, seed=seed(filename), shape=(width, height), size=size)


def png(filename: str, style: str, width: int, height: int) -> Recipe:
    return Recipe(fmt="png", style=style, seed=seed(filename), shape=(width, height))


_ASN_RULES = {
    "tso3": "candidate_Asn_Lv3TSO",
    "image3": "candidate_Asn_Lv3Image",
    "spec3": "candidate_Asn_Lv3MultiObj",
    "image2": "candidate_Asn_Lv2Image",
    "spec2": "candidate_Asn_Lv2Spec",
    "tso-spec2": "candidate_Asn_Lv2SpecTSO",
}


def association(
    p: JwstContext,
    filename: str,
    asn_type: str,
    asn_id: str,
    target: str,
    pool: str,
    product_name: str,
    members: Iterable[str],
) -> Recipe:
    """A JWST association (`_asn.json`) naming its product and member files."""
    version = filename.split("_")[1]
    default_rule = "candidate_Asn_Lv3Image" if asn_type.endswith("3") else "Asn_Lv2Image"
    proposal = int(p.program)
    cards: Cards = (
        ("asn_type", asn_type),
        ("asn_rule", _ASN_RULES.get(asn_type, default_rule)),
        ("version_id", version),
        ("code_version", p.prvversion),
        ("program", p.program),
        (
            "constraints",
            f"DMSAttrConstraint({{'name': 'program', 'sources': ['program'], "
            f"'value': '{proposal}'}})",
        ),
        ("asn_id", asn_id),
        ("target", target),
        ("asn_pool", pool),
        ("product_name", product_name),
    )
    return Recipe(fmt="json", seed=seed(filename), cards=cards, items=tuple(members))


_POOL_COLUMNS = (
    "PROGRAM|OBS_NUM|VISIT|VISIT_GRP|SEQ_ID|ACT_ID|EXPOSURE|EXP_TYPE|FILENAME|INSTRUME|"
    "DETECTOR|FILTER|PUPIL|TARGETID|TARGNAME|ASN_CANDIDATE"
)


def pool(filename: str, rows: Iterable[str]) -> Recipe:
    return Recipe(
        fmt="csv", seed=seed(filename), cards=(("columns", _POOL_COLUMNS),), items=tuple(rows)
    )


def pool_row(p: JwstContext, e: JwstExposure, uncal: str, candidate: str) -> str:
    return (
        f"{p.program}|{e.observation:03d}|{e.visit:03d}|02|1|01|"
        f"{e.exposure:05d}|{e.exp_type}|{uncal}|{e.instrume}|{e.detector}|{e.filt}|{e.pupil}|"
        f"1|{p.target}|[('o{e.observation:03d}', 'observation'), ({candidate!r}, 'background')]"
    )


def ecsv(filename: str, style: str, rows: int, ra: float, dec: float, start: float) -> Recipe:
    cards: Cards = (
        ("rows", rows),
        ("ra", ra),
        ("dec", dec),
        ("start", start),
        ("filename", filename),
    )
    return Recipe(fmt="ecsv", style=style, seed=seed(filename), cards=cards)


def log(filename: str, lines: int) -> Recipe:
    return Recipe(fmt="text", seed=seed(filename), cards=(("FILENAME", filename), ("lines", lines)))


def text(filename: str, lines: tuple[str, ...]) -> Recipe:
    return Recipe(fmt="text", seed=seed(filename), items=lines)


def guide_stamp(t: float) -> str:
    """A guide-star file's time stamp: year, day of year, hour, minute, second."""
    stamp = mjd_to_iso(t)
    doy = (int(t) - 59580) % 365 + 1  # day of year in 2022 (the catalog's epoch)
    year = 2022 + (int(t) - 59580) // 365
    return f"{year}{doy:03d}{stamp[11:13]}{stamp[14:16]}{stamp[17:19]}"
