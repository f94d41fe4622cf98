"""Which CRDS reference files a simulated JWST product was calibrated with, and their names.

The JWST pipeline writes, in a product's primary header, the CRDS software version
(`CRDS_VER`), the context it selected references from (`CRDS_CTX = 'jwst_1241.pmap'`) and, per
reference type a step used, `R_<TYPE> = 'crds://jwst_<instrument>_<reftype>_<NNNN>.fits'`
(`'N/A'` where the step ran without one). Here that is data: a table of reference types (their
keyword, comment and the header values CRDS selects them by) and a table of which types each
mode's products used, by pipeline stage. A reference's serial is a hash of its instrument, type
and selecting values, so every product with the same detector (filter, subarray...) names the
same file, as real products do. Pure: the CRDS host (`crds_files.py`) rebuilds the same
`Reference` from a product's header values to serve it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mastfs.sim.content import CardValue, hash_text

OBSERVATORY = "jwst"
# The context of most products, and an older one (guide-star products, processed apart).
CONTEXT = "jwst_1241.pmap"
CRDS_VERSION = "11.17.19"
OLD_CONTEXT = "jwst_1225.pmap"
OLD_CRDS_VERSION = "11.17.14"
CONTEXTS = {CONTEXT: CRDS_VERSION, OLD_CONTEXT: OLD_CRDS_VERSION}
NOT_APPLICABLE = "N/A"

# The header values CRDS selects by; NIRSpec's PUPIL is its GRATING.
SELECTORS = ("DETECTOR", "SUBARRAY", "READPATT", "FILTER", "PUPIL", "EXP_TYPE")


@dataclass(frozen=True)
class RefType:
    """One reference type: its header keyword and comment, what selects it, how big it is.

    `frame`: an image of the detector (its subarray, if SUBARRAY selects it), else a small one;
    `dq`: with a DQ extension beside SCI.
    """

    keyword: str
    comment: str
    selectors: tuple[str, ...]
    frame: bool = False
    dq: bool = False


_DET = ("DETECTOR",)
REFTYPES: dict[str, RefType] = {
    # detector1
    "dark": RefType("R_DARK", "Dark reference file name",
                    ("DETECTOR", "SUBARRAY", "READPATT"), frame=True, dq=True),
    "gain": RefType("R_GAIN", "Gain reference file name", _DET, frame=True),
    "linearity": RefType("R_LINEAR", "Linearity reference file name", _DET, frame=True, dq=True),
    "mask": RefType("R_MASK", "Mask reference file name", ("DETECTOR", "SUBARRAY"), frame=True,
                    dq=True),
    "readnoise": RefType("R_READNO", "Read noise reference file name", ("DETECTOR", "READPATT"),
                         frame=True),
    "saturation": RefType("R_SATURA", "Saturation reference file name", _DET, frame=True,
                          dq=True),
    "superbias": RefType("R_SUPERB", "Superbias reference file name", ("DETECTOR", "SUBARRAY"),
                         frame=True, dq=True),
    "ipc": RefType("R_IPC", "IPC reference file name", _DET),
    "refpix": RefType("R_REFPIX", "Reference pixel reference file name", _DET),
    "persat": RefType("R_PERSAT", "Persistence saturation reference file name", _DET),
    "trapdensity": RefType("R_TRPDEN", "Trap density reference file name", _DET),
    "trappars": RefType("R_TRPPAR", "Trap parameters reference file name", _DET),
    "reset": RefType("R_RESET", "Reset reference file name", ("DETECTOR", "READPATT"),
                     frame=True, dq=True),
    "rscd": RefType("R_RSCD", "RSCD reference file name", ("DETECTOR", "READPATT")),
    # image2
    "area": RefType("R_AREA", "Pixel area reference file name", ("DETECTOR", "FILTER", "PUPIL"),
                    frame=True),
    "distortion": RefType("R_DISTOR", "Distortion reference file name", ("DETECTOR", "EXP_TYPE")),
    "filteroffset": RefType("R_FILOFF", "Filter offset reference file name", _DET),
    "flat": RefType("R_FLAT", "Flat reference file name", ("DETECTOR", "FILTER", "PUPIL"),
                    frame=True, dq=True),
    "photom": RefType("R_PHOTOM", "Photometric reference file name", ("DETECTOR", "EXP_TYPE")),
    # spec2, NIRISS SOSS
    "specwcs": RefType("R_SPECWC", "Spectral WCS reference file name",
                       ("DETECTOR", "PUPIL", "EXP_TYPE")),
    "spectrace": RefType("R_SPTRCE", "Spectral trace reference file name", ("PUPIL", "SUBARRAY"),
                         frame=True),
    "specprofile": RefType("R_SPPROF", "Spectral profile reference file name",
                           ("PUPIL", "SUBARRAY"), frame=True),
    "wavemap": RefType("R_WAVMAP", "Wavelength map reference file name", ("PUPIL", "SUBARRAY"),
                       frame=True),
    "pastasoss": RefType("R_PASTAS", "PASTASOSS reference file name", ("PUPIL",)),
    "extract1d": RefType("R_EXTRAC", "Extract1d reference file name", ("EXP_TYPE",)),
    "apcorr": RefType("R_APCORR", "Aperture correction reference file name", ("EXP_TYPE",)),
    # spec2, NIRSpec MOS
    "msa": RefType("R_MSA", "MSA reference file name", ()),
    "fpa": RefType("R_FPA", "FPA reference file name", ()),
    "ote": RefType("R_OTE", "OTE reference file name", ()),
    "camera": RefType("R_CAMERA", "Camera reference file name", ()),
    "collimator": RefType("R_COLLIM", "Collimator reference file name", ()),
    "disperser": RefType("R_DISPER", "Disperser reference file name", ("PUPIL",)),
    "fore": RefType("R_FORE", "Fore reference file name", ("FILTER",)),
    "wavelengthrange": RefType("R_WAVRAN", "Wavelength range reference file name", ("EXP_TYPE",)),
    "sflat": RefType("R_SFLAT", "Spectrograph flat reference file name",
                     ("DETECTOR", "FILTER", "PUPIL"), frame=True, dq=True),
    "fflat": RefType("R_FFLAT", "Fore optics flat reference file name", ("FILTER", "EXP_TYPE")),
    "dflat": RefType("R_DFLAT", "Detector flat reference file name", _DET, frame=True, dq=True),
    "barshadow": RefType("R_BARSHA", "Bar shadow reference file name", ()),
    "pathloss": RefType("R_PATHLO", "Path loss reference file name", ("EXP_TYPE",)),
    # level 3
    "drizpars": RefType("R_DRIZPA", "Drizzle parameters reference file name", ("EXP_TYPE",)),
    "abvegaoffset": RefType("R_ABVEGA", "AB/Vega offset reference file name", ("EXP_TYPE",)),
}  # fmt: skip


@dataclass(frozen=True)
class Mode:
    """The reference types one observing mode's products used, by pipeline stage.

    `detector1`: every level-2 product's (rate and after); `unused`: detector1 types written as
    'N/A'; `stage2` and `stage3`: the types a level-2 (level-3) product of that file suffix adds.
    """

    detector1: tuple[str, ...]
    unused: tuple[str, ...] = ()
    stage2: Mapping[str, tuple[str, ...]] | None = None
    stage3: Mapping[str, tuple[str, ...]] | None = None


_NEAR_IR = ("dark", "gain", "linearity", "mask", "readnoise", "saturation", "superbias", "ipc",
            "refpix")  # fmt: skip
_PERSISTENCE = ("persat", "trapdensity", "trappars")
_IMAGE2 = ("area", "distortion", "filteroffset", "flat", "photom")
_IMAGE3 = {"i2d": ("drizpars",), "segm": ("drizpars", "apcorr", "abvegaoffset")}
_SOSS_CAL = ("specwcs", "flat")
_SOSS_X1D = ("extract1d", "spectrace", "specprofile", "wavemap", "pastasoss", "photom")
_MOS_CAL = ("msa", "fpa", "ote", "camera", "collimator", "disperser", "fore", "wavelengthrange",
            "sflat", "fflat", "dflat", "barshadow", "pathloss", "photom", "area")  # fmt: skip

MODES: dict[str, Mode] = {
    "NIS_SOSS": Mode(_NEAR_IR, _PERSISTENCE,
                     {"cal": _SOSS_CAL, "x1dints": (*_SOSS_CAL, *_SOSS_X1D)},
                     {"x1dints": _SOSS_X1D}),
    "NRC_IMAGE": Mode(_NEAR_IR, _PERSISTENCE, {"cal": _IMAGE2}, _IMAGE3),
    "MIR_IMAGE": Mode(("dark", "gain", "linearity", "mask", "readnoise", "saturation", "reset",
                       "rscd"), (), {"cal": _IMAGE2}, _IMAGE3),
    "NRS_MSASPEC": Mode(_NEAR_IR, _PERSISTENCE,
                        {"cal": _MOS_CAL, "s2d": (*_MOS_CAL, "drizpars"),
                         "x1d": (*_MOS_CAL, "extract1d", "apcorr")},
                        {"x1d": ("extract1d", "apcorr"), "s2d": ("drizpars",)}),
    # Guide-star products: calwebb_guider's dq_init, guider_cds and flat_field.
    "FGS": Mode((), (), {"cal": ("mask", "gain", "readnoise", "flat")}),
}  # fmt: skip

# CRDS's instrument names, where the header's differ.
_INSTRUMENTS = {"GUIDER": "fgs"}
_LEVEL3 = re.compile(r"jw\d{5}-")


@dataclass(frozen=True)
class Reference:
    """One reference file: what it is for, and the header values that selected it."""

    instrument: str  # CRDS's, lower case: nircam, niriss, nirspec, miri, fgs
    reftype: str  # lower case: dark, flat, ...
    selection: tuple[tuple[str, str], ...]  # (SELECTOR, value) in SELECTORS order

    @functools.cached_property
    def name(self) -> str:
        values = "|".join(f"{k}={v}" for k, v in self.selection)
        serial = 1 + hash_text(f"{self.instrument}|{self.reftype}|{values}") % 999
        return f"{OBSERVATORY}_{self.instrument}_{self.reftype}_{serial:04d}.fits"

    def value(self, selector: str) -> str | None:
        return dict(self.selection).get(selector)


@dataclass(frozen=True)
class Calibration:
    """What one product's header says of its calibration: context and references by keyword.

    `references` maps `R_<TYPE>` to a `Reference`, or to None for a type written as 'N/A'.
    """

    context: str
    references: tuple[tuple[str, Reference | None], ...]

    @functools.cached_property
    def cards(self) -> tuple[tuple[str, CardValue], ...]:
        """The header cards, in order: CRDS_VER, CRDS_CTX, then the R_* keywords."""
        out: list[tuple[str, CardValue]] = [
            ("CRDS_VER", CONTEXTS[self.context]),
            ("CRDS_CTX", self.context),
        ]
        for keyword, ref in self.references:
            out.append((keyword, NOT_APPLICABLE if ref is None else f"crds://{ref.name}"))
        return tuple(out)

    @functools.cached_property
    def comments(self) -> tuple[tuple[str, str], ...]:
        """The cards' comments, by keyword."""
        return tuple((k, COMMENTS[k]) for k, _ in self.cards)


# Card comments, as the pipeline writes them.
COMMENTS: dict[str, str] = {
    "CRDS_VER": "Version of CRDS file selection software used",
    "CRDS_CTX": "CRDS context (.pmap) used to select ref files",
    **{t.keyword: t.comment for t in REFTYPES.values()},
}


def stage_types(filename: str, exp_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(types used, types written as 'N/A') for the product `filename` of mode `exp_type`."""
    if not filename.endswith(".fits"):
        return (), ()
    suffix = filename.removesuffix(".fits").rsplit("_", 1)[-1]
    return _stage_types(bool(_LEVEL3.match(filename)), suffix, exp_type)


def _stage_types(
    level3: bool, suffix: str, exp_type: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    mode = MODES.get("FGS" if exp_type.startswith("FGS_") else exp_type)
    if mode is None:
        return (), ()
    if level3:
        return tuple((mode.stage3 or {}).get(suffix, ())), ()
    if suffix in ("rate", "rateints"):
        return mode.detector1, mode.unused
    added = (mode.stage2 or {}).get(suffix)
    if added is None:
        return (), ()  # uncal, guider streams, MSA configurations: no calibration
    return (*mode.detector1, *added), mode.unused


def reference(instrume: str, reftype: str, header: Mapping[str, str]) -> Reference:
    """The reference of type `reftype` CRDS selects for a product with these header values."""
    kind = REFTYPES[reftype]
    instrument = _INSTRUMENTS.get(instrume.upper(), instrume.lower())
    selection = tuple((k, str(header.get(k, ""))) for k in SELECTORS if k in kind.selectors)
    return Reference(instrument, reftype, selection)


def calibration(header: Mapping[str, CardValue]) -> Calibration | None:
    """The calibration cards of a JWST product with these primary header values (FILENAME,
    INSTRUME, EXP_TYPE and the selectors; NIRSpec's GRATING stands for PUPIL); None for a
    product no pipeline stage with references made."""
    filename = str(header.get("FILENAME", ""))
    if not filename.endswith(".fits"):
        return None
    values = {k: str(header[k]) for k in SELECTORS if k in header}
    if "PUPIL" not in values and "GRATING" in header:
        values["PUPIL"] = str(header["GRATING"])
    return _calibration(
        bool(_LEVEL3.match(filename)),
        filename.removesuffix(".fits").rsplit("_", 1)[-1],
        str(header.get("INSTRUME", "")),
        tuple(sorted(values.items())),
    )


# Products of one mode, stage and selection share their calibration (thousands in a program).
@functools.lru_cache(maxsize=4096)
def _calibration(
    level3: bool, suffix: str, instrume: str, selection: tuple[tuple[str, str], ...]
) -> Calibration | None:
    values = dict(selection)
    exp_type = values.get("EXP_TYPE", "")
    used, unused = _stage_types(level3, suffix, exp_type)
    if not used:
        return None
    refs: dict[str, Reference | None] = {}
    for reftype in used:
        refs[REFTYPES[reftype].keyword] = reference(instrume, reftype, values)
    for reftype in unused:
        refs[REFTYPES[reftype].keyword] = None
    context = OLD_CONTEXT if exp_type.startswith("FGS_") else CONTEXT
    return Calibration(context, tuple(sorted(refs.items())))
