"""The product kinds of each mission, as a table: filename, category, subgroup, level, layout.

A `Kind` is one kind of file MAST lists for an observation (`_cal.fits`, `_i2d.jpg`, an
association...). Programs (`programs.py`) name kinds; `expand.py` turns each named kind into a
product row and a `Recipe`. Shapes in an HDU layout are numbers or names of an observation's
dimensions (`ncols`, `nrows`, `nints`, `ngroups`, and whatever the program adds), so one kind
serves detectors of every size.
"""

from __future__ import annotations

from dataclasses import dataclass

# MAST's values of productType.
SCIENCE = "SCIENCE"
AUXILIARY = "AUXILIARY"
INFO = "INFO"
PREVIEW = "PREVIEW"
CATALOG = "CATALOG"

Dim = int | str  # a number, or the name of an observation dimension


@dataclass(frozen=True)
class Mission:
    """Values shared by every observation and product row of one collection."""

    collection: str
    project: str  # the product rows' `project`
    provenance: str
    waveband: str
    product_type: str  # the product rows' `type`: D(erived) or S(imple)
    src_den: float | None


JWST = Mission("JWST", "CALJWST", "CALJWST", "INFRARED", "D", None)
HST = Mission("HST", "HST", "CALACS", "OPTICAL", "S", 5885.0)


@dataclass(frozen=True)
class Img:
    """An image extension; `wcs` gives a 2D SCI image the observation's celestial WCS."""

    extname: str
    bitpix: int
    shape: tuple[Dim, ...]
    role: str = "sci"
    bunit: str = ""
    extver: int = 1
    wcs: bool = False


@dataclass(frozen=True)
class Tbl:
    """A binary table extension (`kind` picks its columns in content.py)."""

    extname: str
    kind: str
    nrows: Dim
    npix: Dim = 0
    extver: int = 1


Hdu = Img | Tbl


@dataclass(frozen=True)
class Kind:
    """One kind of product.

    filename: a template over the observation (`{obs_id}`, `{visit}`, `{program}` = the
    five-digit proposal, `{version}` = the association stamp, `{observation}`, `{seq}`, and
    for guide stars `{stamp}`, the time they were taken).
    fmt: fits | jpeg | png | asn | pool | ecsv | log | text, or guide (a guide-star FITS file).
    """

    filename: str
    category: str
    subgroup: str
    level: int
    description: str
    fmt: str = "fits"
    hdus: tuple[Hdu, ...] = ()
    recommended: bool = False
    model: str = ""  # JWST DATAMODL
    style: str = ""  # picture style; "" = the observation's
    size: Dim = 0  # a requested total size (FITS: the ASDF extension absorbs the rest)
    rows: Dim = 0  # ecsv and log lengths
    frame: str = ""  # previews: "preview" or "thumb", sized by the observation
    rights: str = ""  # "" = the program's
    asn_type: str = ""
    asn_members: str = ""  # the suffix of the files an association lists
    asn_target: str = ""
    to_members: bool = False  # also listed under the observation's member exposures
    minutes: int = 0  # guide stars: minutes after the visit started
    lines: tuple[str, ...] = ()  # fixed text content


def cal_exts(
    bunit: str,
    shape: tuple[Dim, ...] = ("ncols", "nrows"),
    names: tuple[str, ...] = ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"),
) -> tuple[Hdu, ...]:
    """SCI/ERR/DQ/VAR_* images of one shape (a 2D SCI image gets the observation's WCS)."""
    out: list[Hdu] = []
    for name in names:
        role = {"SCI": "sci", "DQ": "dq", "CON": "con", "WHT": "wht"}.get(name, "err")
        bitpix = 32 if name in ("DQ", "CON") else -32
        unit = bunit if name in ("SCI", "ERR") else ""
        wcs = name == "SCI" and len(shape) == 2
        out.append(Img(name, bitpix, shape, role=role, bunit=unit, wcs=wcs))
    return tuple(out)


def _slit(k: int) -> tuple[Hdu, ...]:
    return (
        Img("SCI", -32, (1300, 27), role="sci", bunit="MJy", extver=k),
        Img("ERR", -32, (1300, 27), role="err", bunit="MJy", extver=k),
        Img("DQ", 32, (1300, 27), role="dq", extver=k),
        Img("WAVELENGTH", -32, (1300, 27), role="err", bunit="um", extver=k),
    )


def _previews(shown: str, level: int) -> dict[str, Kind]:
    """The full-size JPEG and the PNG thumbnail of product `shown`."""
    sub = shown.upper()
    return {
        f"{shown}.jpg": Kind(f"{{obs_id}}_{shown}.jpg", PREVIEW, sub, level, "Preview-Full",
                             "jpeg", frame="preview"),
        f"{shown}_thumb.png": Kind(f"{{obs_id}}_{shown}_thumb.png", PREVIEW, sub, level,
                                   "Preview-Thumb", "png", frame="thumb"),
    }  # fmt: skip


def _asn(asn_type: str, seq: str, members: str, target: str) -> Kind:
    level = 3 if asn_type.endswith("3") else 2
    return Kind(
        f"jw{{program}}-o{{observation:03d}}_{{version}}_{asn_type}_{{seq:{seq}}}_asn.json",
        INFO,
        "ASN",
        level,
        "Association file",
        "asn",
        recommended=True,
        rights="PUBLIC",  # association and pool files are public even for exclusive-access data
        asn_type=asn_type,
        asn_members=members,
        asn_target=target,
    )


def _guide(kind: str, level: int, minutes: int, shape: tuple[int, int, int]) -> Kind:
    """A guide-star file of a visit: calibrated (L2b) or the guider's pixel stream (L1b)."""
    name = kind.upper()
    hdus: tuple[Hdu, ...]
    if level == 1:
        suffix, what = "stream", f"guide star (L1b): {name} guider pixel stream"
        hdus = (Img("SCI", 16, shape, role="raw", bunit="DN"),)
    else:
        suffix, what = "cal", f"guide star (L2b): {name} calibrated guider data"
        hdus = cal_exts("DN/s", shape, names=("SCI", "ERR", "DQ"))
    filename = f"{{visit}}_{kind}_{{stamp}}_{suffix}.fits"
    return Kind(filename, AUXILIARY, name, level, what, "guide", hdus, model="GuiderCalModel",
                style="guide", minutes=minutes)  # fmt: skip


_RAW4D = Img("SCI", 16, ("ncols", "nrows", "ngroups", "nints"), role="raw", bunit="DN")
_INT_TIMES = Tbl("INT_TIMES", "int_times", "nints")
_SOSS_SPECTRA = (
    Tbl("EXTRACT1D", "x1dints", "nints", npix=2048),
    Tbl("EXTRACT1D", "x1dints", "nints", npix=1024, extver=2),
    _INT_TIMES,
)
_SLITS = (*_slit(1), *_slit(2), *_slit(3))
_L1B = "exposure (L1b): Uncalibrated 4D exposure data"
_RATE = "exposure (L2a): Countrate image"
_CAL = "exposure (L2b): Calibrated image"
_I2D = "exposure/target (L2b/L3): rectified 2D image"

JWST_KINDS: dict[str, Kind] = {
    # Exposures (level 2 observations)
    "uncal": Kind("{obs_id}_uncal.fits", SCIENCE, "UNCAL", 1, _L1B, model="Level1bModel",
                  hdus=(_RAW4D,)),
    "uncal-tso": Kind("{obs_id}_uncal.fits", SCIENCE, "UNCAL", 1, _L1B, model="Level1bModel",
                      hdus=(_RAW4D, _INT_TIMES)),
    "rate": Kind("{obs_id}_rate.fits", SCIENCE, "RATE", 2, _RATE, model="ImageModel",
                 hdus=cal_exts("DN/s")),
    "rate-tso": Kind("{obs_id}_rate.fits", SCIENCE, "RATE", 2,
                     _RATE + " averaged over integrations", model="ImageModel",
                     hdus=cal_exts("DN/s")),
    "rateints": Kind("{obs_id}_rateints.fits", SCIENCE, "RATEINTS", 2,
                     "exposure (L2a): Countrate image per integration", model="CubeModel",
                     hdus=(*cal_exts("DN/s", ("ncols", "nrows", "nints")), _INT_TIMES),
                     size="rateints_size"),
    "cal": Kind("{obs_id}_cal.fits", SCIENCE, "CAL", 2, _CAL, model="ImageModel",
                hdus=cal_exts("MJy/sr"), recommended=True),
    "cal-area": Kind("{obs_id}_cal.fits", SCIENCE, "CAL", 2, _CAL, model="ImageModel",
                     hdus=(*cal_exts("MJy/sr"), Img("AREA", -32, ("ncols", "nrows"), "err")),
                     recommended=True),
    "cal-slits": Kind("{obs_id}_cal.fits", SCIENCE, "CAL", 2,
                      "exposure (L2b): Calibrated 2D spectra per slit", model="MultiSlitModel",
                      hdus=_SLITS),
    "x1dints": Kind("{obs_id}_x1dints.fits", SCIENCE, "X1DINTS", 2,
                    "exposure (L2b): 1D extracted spectra per integration",
                    model="MultiSpecModel", hdus=_SOSS_SPECTRA, recommended=True),
    "s2d": Kind("{obs_id}_s2d.fits", SCIENCE, "S2D", 2, "exposure (L2b): 2D resampled spectra",
                model="MultiSlitModel", style="s2d", hdus=_SLITS, recommended=True),
    "x1d": Kind("{obs_id}_x1d.fits", SCIENCE, "X1D", 2, "exposure (L2b): 1D extracted spectra",
                model="MultiSpecModel", style="s2d", recommended=True,
                hdus=tuple(Tbl("EXTRACT1D", "x1d", 1300, extver=k) for k in (1, 2, 3))),
    **_previews("rate", 2),
    **_previews("cal", 2),
    "tso-spec2": _asn("tso-spec2", "03d", "rateints.fits", "t{observation:03d}"),
    "image2": _asn("image2", "05d", "rate.fits", "t{observation:03d}"),
    "spec2": _asn("spec2", "05d", "rate.fits", "s00000"),
    # Shared by the exposures of one visit
    "msa": Kind("{visit}_01_msa.fits", AUXILIARY, "MSA", 2, "MSA configuration file",
                model="MSAModel", hdus=(Tbl("SHUTTER_INFO", "msa", "shutters"),
                                        Tbl("SOURCE_INFO", "source_info", "sources"))),
    "gs-acq1": _guide("gs-acq1", 2, 2, (128, 128, 1)),
    "gs-acq2": _guide("gs-acq2", 2, 4, (32, 32, 1)),
    "gs-track": _guide("gs-track", 2, 6, (32, 32, 40)),
    "gs-fg": _guide("gs-fg", 2, 9, (8, 8, 200)),
    "gs-fg-late": _guide("gs-fg", 2, 47, (8, 8, 200)),
    "gs-fg-stream": _guide("gs-fg", 1, 47, (8, 8, 2000)),
    # Level 3 observations
    "x1dints-l3": Kind("{obs_id}_x1dints.fits", SCIENCE, "X1DINTS", 3,
                       "exposure/target (L2b/L3): 1D extracted spectra per integration",
                       model="MultiSpecModel", hdus=_SOSS_SPECTRA, recommended=True),
    "whtlt": Kind("{obs_id}_whtlt.ecsv", SCIENCE, "WHTLT", 3,
                  "target (L3): white-light photometry time series", "ecsv", style="whtlt",
                  rows="nints", recommended=True),
    "i2d": Kind("{obs_id}_i2d.fits", SCIENCE, "I2D", 3, _I2D, model="ImageModel",
                hdus=cal_exts("MJy/sr", names=("SCI", "ERR", "CON", "WHT")), recommended=True),
    "i2d-var": Kind("{obs_id}_i2d.fits", SCIENCE, "I2D", 3, _I2D, model="ImageModel",
                    hdus=cal_exts("MJy/sr", names=("SCI", "ERR", "CON", "WHT", "VAR_POISSON",
                                                   "VAR_RNOISE")), recommended=True),
    "segm": Kind("{obs_id}_segm.fits", SCIENCE, "SEGM", 3, "target (L3): segmentation map",
                 model="SegmentationMapModel",
                 hdus=(Img("SCI", 32, ("ncols", "nrows"), role="segm", wcs=True),)),
    "cat": Kind("{obs_id}_cat.ecsv", CATALOG, "CAT", 3, "target (L3): source catalog", "ecsv",
                style="cat", rows="sources", recommended=True),
    "x1d-l3": Kind("{obs_id}_x1d.fits", SCIENCE, "X1D", 3,
                   "exposure/target (L2b/L3): 1D extracted spectrum", model="MultiSpecModel",
                   style="s2d", hdus=(Tbl("EXTRACT1D", "x1d", 1300),), recommended=True),
    "s2d-l3": Kind("{obs_id}_s2d.fits", SCIENCE, "S2D", 3,
                   "exposure/target (L2b/L3): 2D resampled spectrum", model="SlitModel",
                   style="s2d", hdus=_slit(1), recommended=True),
    **_previews("i2d", 3),
    **_previews("s2d", 3),
    "tso3": _asn("tso3", "03d", "cal.fits", "t{observation:03d}"),
    "image3": _asn("image3", "05d", "cal.fits", "t{observation:03d}"),
    "spec3": _asn("spec3", "05d", "cal.fits", "s{seq:05d}"),
    # One per program, listed under every observation
    "pool": Kind("jw{program}_{version}_pool.csv", INFO, "POOL", 3, "Association pool", "pool",
                 recommended=True, rights="PUBLIC"),
}  # fmt: skip

_HST_ACS_VERSION = "CALACS 10.3.5"
_HST_DRIZZLE_VERSION = "DrizzlePac 3.5.1"
# HST rows carry the version of the software that made the file (by subgroup), else OPUS's.
HST_VERSIONS: dict[str, str] = {
    "DRZ": _HST_DRIZZLE_VERSION,
    "DRC": _HST_DRIZZLE_VERSION,
    "RAW": _HST_ACS_VERSION,
    "FLT": _HST_ACS_VERSION,
    "FLC": _HST_ACS_VERSION,
    "TRL": _HST_ACS_VERSION,
}
HST_DEFAULT_VERSION = "OPUS 2019_4"


def _chips(calibrated: bool) -> tuple[Hdu, ...]:
    out: list[Hdu] = []
    for chip in (1, 2):
        if not calibrated:
            out.append(Img("SCI", 16, (4096, 2048), role="raw", bunit="COUNTS", extver=chip))
            continue
        out.append(Img("SCI", -32, (4096, 2048), "sci", "ELECTRONS", extver=chip, wcs=True))
        out.append(Img("ERR", -32, (4096, 2048), role="err", bunit="ELECTRONS", extver=chip))
        out.append(Img("DQ", 16, (4096, 2048), role="dq", extver=chip))
    return tuple(out)


_DRIZZLED = (
    Img("SCI", -32, (4300, 4200), role="sci", bunit="ELECTRONS/S", wcs=True),
    Img("WHT", -32, (4300, 4200), role="wht"),
    Img("CTX", 32, (4300, 4200), role="con"),
)


def _dads(suffix: str, what: str) -> str:
    return f"DADS {suffix.upper()} file - {what}"


HST_KINDS: dict[str, Kind] = {
    # Associations (level 3 observations); asn and jif are listed under the exposures too
    "asn": Kind("{obs_id}_asn.fits", INFO, "ASN", 1,
                _dads("asn", "Association ACS/WFC3/NICMOS/STIS"),
                hdus=(Tbl("ASN", "hst_asn", "asn_rows"),), asn_members="rootnames",
                to_members=True),
    # The jitter file is named after the association's product (rootname ending in 1).
    "jif": Kind("{obs_id:.8}1_jif.fits", AUXILIARY, "JIF", 1,
                _dads("jif", "Jitter image ACS/WFC3/NICMOS/STIS"),
                hdus=tuple(Img("JIT", -32, (64, 64), role="sci", extver=k) for k in range(1, 5)),
                to_members=True),
    "drz": Kind("{obs_id}_drz.fits", SCIENCE, "DRZ", 3,
                _dads("drz", "Calibrated combined image ACS/WFC3/WFPC2/STIS"), hdus=_DRIZZLED,
                recommended=True),
    "drc": Kind("{obs_id}_drc.fits", SCIENCE, "DRC", 3,
                _dads("drc", "CTE-corrected calibrated combined image ACS/WFC3"),
                hdus=_DRIZZLED, recommended=True),
    "drz.jpg": Kind("{obs_id}_drz.jpg", PREVIEW, "DRZ", 3, "Preview-Full", "jpeg",
                    frame="preview"),
    "trl-asn": Kind("{obs_id}_trl.fits", AUXILIARY, "TRL", 3, _dads("trl", "Processing log"),
                    hdus=(Tbl("TRL", "trl", 180),)),
    "log": Kind("{obs_id}_log.txt", AUXILIARY, "LOG", 3,
                _dads("log", "Pipeline processing log"), "log", rows=120),
    # Exposures (level 2 observations)
    "raw": Kind("{obs_id}_raw.fits", SCIENCE, "RAW", 1,
                _dads("raw", "Raw exposure ACS/WFC3/STIS/COS"), hdus=_chips(False)),
    "flt": Kind("{obs_id}_flt.fits", SCIENCE, "FLT", 2,
                _dads("flt", "Calibrated exposure ACS/WFC3/STIS/COS"), hdus=_chips(True),
                recommended=True),
    "flc": Kind("{obs_id}_flc.fits", SCIENCE, "FLC", 2,
                _dads("flc", "CTE-corrected calibrated exposure ACS/WFC3"), hdus=_chips(True),
                recommended=True),
    "spt": Kind("{obs_id}_spt.fits", AUXILIARY, "SPT", 1,
                _dads("spt", "Engineering telemetry ACS/WFC3/NICMOS/STIS"),
                hdus=(Img("UDL", 16, (1600, 1), role="dq"),)),
    "trl": Kind("{obs_id}_trl.fits", AUXILIARY, "TRL", 2, _dads("trl", "Processing log"),
                hdus=(Tbl("TRL", "trl", 60),)),
    "flt.jpg": Kind("{obs_id}_flt.jpg", PREVIEW, "FLT", 2, "Preview-Full", "jpeg",
                    frame="preview"),
    # A text file with a name clients must quote, escape and percent-encode.
    "notes": Kind('j9l9_notes,"v2"<b>&x.txt', AUXILIARY, "NOTES", 3, "Observer notes", "text",
                  lines=("Observer notes for visit 60 (F606W).",
                         'Contains "quotes", commas, <b>markup</b> & ampersands on purpose:',
                         "the simulator uses this file to test how clients quote awkward names.")),
}  # fmt: skip

KINDS: dict[str, dict[str, Kind]] = {"JWST": JWST_KINDS, "HST": HST_KINDS}
MISSIONS: dict[str, Mission] = {"JWST": JWST, "HST": HST}
