"""The simulated archive's catalog: observations, products, files, tokens, column metadata.

The programs are modelled on real ones (JWST 2734 NIRISS/SOSS, JWST 1558 MIRI imaging, HST
10775 ACS/WFC), plus an exclusive-access program (JWST 6543) and a large one for scale (JWST
1999, NIRSpec MOS). Names follow MAST's conventions (docs/simulator.md). Construction is
deterministic and cheap: product rows are built when asked for, file bytes when read.

A file shared between datasets (association, pool, MSA and guide-star files) is one `SimFile`
listed under several observations, so `Mast.Caom.Products` answers carry the same `dataURI`
under different `obs_id` and `parent_obsid`, as MAST's do. Querying a level-3 observation
returns its own products and those of its member exposures, with `parent_obsid` set to the
queried observation and `obsID`/`obs_id` to the exposure's.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mastfs.sim.content import (
    CardValue,
    Image,
    Recipe,
    SimFile,
    Table,
    hash_text,
    make_file,
)

log = logging.getLogger(__name__)

PUBLIC = "PUBLIC"
EXCLUSIVE_ACCESS = "EXCLUSIVE_ACCESS"
MRP = "Minimum Recommended Products"
GIB = 1 << 30

# (name, MAST JSON type), in the order MAST returns them (mast-api.md §3).
OBSERVATION_FIELDS: list[tuple[str, str]] = [
    ("intentType", "string"),
    ("obs_collection", "string"),
    ("provenance_name", "string"),
    ("instrument_name", "string"),
    ("project", "string"),
    ("filters", "string"),
    ("wavelength_region", "string"),
    ("target_name", "string"),
    ("target_classification", "string"),
    ("obs_id", "string"),
    ("s_ra", "float"),
    ("s_dec", "float"),
    ("dataproduct_type", "string"),
    ("proposal_pi", "string"),
    ("calib_level", "int"),
    ("t_min", "float"),
    ("t_max", "float"),
    ("t_exptime", "float"),
    ("em_min", "float"),
    ("em_max", "float"),
    ("obs_title", "string"),
    ("t_obs_release", "float"),
    ("proposal_id", "string"),
    ("proposal_type", "string"),
    ("sequence_number", "int"),
    ("s_region", "string"),
    ("jpegURL", "string"),
    ("dataURL", "string"),
    ("dataRights", "string"),
    ("mtFlag", "boolean"),
    ("srcDen", "float"),
    ("obsid", "string"),
    ("objID", "string"),
]

PRODUCT_FIELDS: list[tuple[str, str]] = [
    ("obsID", "string"),
    ("obs_collection", "string"),
    ("dataproduct_type", "string"),
    ("obs_id", "string"),
    ("description", "string"),
    ("type", "string"),
    ("dataURI", "string"),
    ("productType", "string"),
    ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"),
    ("productDocumentationURL", "string"),
    ("project", "string"),
    ("prvversion", "string"),
    ("proposal_id", "string"),
    ("productFilename", "string"),
    ("size", "int"),
    ("parent_obsid", "string"),
    ("dataRights", "string"),
    ("calib_level", "int"),
    ("filters", "string"),
]


@dataclass(frozen=True)
class Token:
    """A MAST API token the simulator knows, and the exclusive-access proposals it may read."""

    token: str
    display_name: str
    proposals: frozenset[str]


AUTHORIZED_TOKEN = "mastsim-authorized-6543"
UNAUTHORIZED_TOKEN = "mastsim-unauthorized"
TOKENS: dict[str, Token] = {
    AUTHORIZED_TOKEN: Token(AUTHORIZED_TOKEN, "Ada Authorized", frozenset({"6543"})),
    UNAUTHORIZED_TOKEN: Token(UNAUTHORIZED_TOKEN, "Una Unauthorized", frozenset()),
}


def _jw(name: str) -> str:
    return f"mast:JWST/product/{name}"


# Notable files (docs/simulator.md).
BIG_4G_URI = _jw("jw02734001001_02101_00001-seg001_nis_uncal.fits")
ONE_GIB_URI = _jw("jw02734001001_02101_00001-seg001_nis_rateints.fits")
PARALLEL_URIS: tuple[str, ...] = tuple(
    _jw(f"jw02734{v}_{a}_00001-seg{s:03d}_nis_rateints.fits")
    for v, a in (("001001", "02101"), ("002001", "03101"))
    for s in range(1, 5)
)
HOSTILE_FILENAME = 'j9l9_notes,"v2"<b>&x.txt'
HOSTILE_URI = f"mast:HST/product/{HOSTILE_FILENAME}"
SMALL_JSON_URI = _jw("jw02734-o002_20220630t163421_tso3_001_asn.json")
EA_PROPOSAL = "6543"

_MJD_UNIX = 40587.0


def mjd_to_posix(mjd: float) -> float:
    return (mjd - _MJD_UNIX) * 86400.0


# ----------------------------------------------------------------------------------------------
# Internal model


@dataclass(slots=True, eq=False)
class _Product:
    file: SimFile
    productType: str
    subgroup: str
    description: str
    calib_level: int
    mrp: bool
    type: str
    project: str
    prvversion: str


@dataclass(slots=True, eq=False)
class _Obs:
    row: dict[str, object]
    products: list[_Product] = field(default_factory=list)
    members: list[_Obs] = field(default_factory=list)

    @property
    def obsid(self) -> str:
        return str(self.row["obsid"])

    @property
    def obs_id(self) -> str:
        return str(self.row["obs_id"])


def _product_row(p: _Product, owner: _Obs, parent: _Obs) -> dict[str, object]:
    # MRP is relative to the requested observation: its own most calibrated products (and their
    # associations), not those of its members.
    row = owner.row
    return {
        "obsID": owner.obsid,
        "obs_collection": row["obs_collection"],
        "dataproduct_type": row["dataproduct_type"],
        "obs_id": owner.obs_id,
        "description": p.description,
        "type": p.type,
        "dataURI": p.file.uri,
        "productType": p.productType,
        "productGroupDescription": MRP if (p.mrp and owner is parent) else None,
        "productSubGroupDescription": p.subgroup,
        "productDocumentationURL": None,
        "project": p.project,
        "prvversion": p.prvversion,
        "proposal_id": row["proposal_id"],
        "productFilename": p.file.filename,
        "size": p.file.size,
        "parent_obsid": parent.obsid,
        "dataRights": p.file.dataRights,
        "calib_level": p.calib_level,
        "filters": row["filters"],
    }


# ----------------------------------------------------------------------------------------------
# Catalog


class Catalog:
    """Observations, their product lists and the files behind them."""

    def __init__(self) -> None:
        self._obs: list[_Obs] = []
        self._by_obsid: dict[str, _Obs] = {}
        self._files: dict[str, SimFile] = {}
        self._names: dict[str, tuple[float, float, str]] = {}
        for build in (_build_2734, _build_1558, _build_10775, _build_6543, _build_1999):
            build(self)
        self.observations: list[dict[str, object]] = [o.row for o in self._obs]
        log.debug("catalog: %d observations, %d files", len(self._obs), len(self._files))

    # -- public API --------------------------------------------------------------------------

    def observation(self, obsid: str) -> dict[str, object] | None:
        obs = self._by_obsid.get(str(obsid))
        return obs.row if obs else None

    def products_for(self, obsid: str) -> list[dict[str, object]]:
        """`Mast.Caom.Products` rows for one requested observation (its own and its members')."""
        parent = self._by_obsid.get(str(obsid).strip())
        if parent is None:
            return []
        rows = [_product_row(p, parent, parent) for p in parent.products]
        for member in parent.members:
            rows += [_product_row(p, member, parent) for p in member.products]
        return rows

    def file(self, uri: str) -> SimFile | None:
        return self._files.get(uri)

    def files(self) -> Iterable[SimFile]:
        return self._files.values()

    def columns_config(self, col_config_id: str) -> dict[str, dict[str, object]]:
        """A MAST-like columnsconfig answer; an empty dict for an unknown configuration."""
        if col_config_id in ("Mast.Caom.Cone", "Mast.Caom.Filtered", "Mast.Caom.Filtered.Position"):
            return _columns_config(OBSERVATION_FIELDS, _OBS_COLUMN_INFO)
        if col_config_id == "Mast.Caom.Products":
            return _columns_config(PRODUCT_FIELDS, _PRODUCT_COLUMN_INFO)
        return {}

    def resolve(self, name: str) -> tuple[float, float, str] | None:
        """Target name -> (ra, dec, canonical name), for the targets of the catalog."""
        return self._names.get(_name_key(name))

    # -- construction ------------------------------------------------------------------------

    def _add_obs(self, obs: _Obs) -> _Obs:
        if obs.obsid in self._by_obsid:
            raise AssertionError(f"duplicate obsid {obs.obsid}")
        self._obs.append(obs)
        self._by_obsid[obs.obsid] = obs
        return obs

    def _add_names(self, ra: float, dec: float, canonical: str, *aliases: str) -> None:
        for name in (canonical, *aliases):
            self._names[_name_key(name)] = (ra, dec, canonical)


def _name_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).upper()


@functools.cache
def default_catalog() -> Catalog:
    """The simulator's catalog, built once per process."""
    return Catalog()


# ----------------------------------------------------------------------------------------------
# Program builder


@dataclass
class _Program:
    cat: Catalog
    collection: str  # JWST | HST
    proposal_id: str
    obsid_base: int
    target: str
    target_class: str
    ra: float
    dec: float
    pi: str
    title: str
    proposal_type: str
    rights: str
    release_mjd: float
    prvversion: str
    _next: int = 0

    @property
    def project(self) -> str:
        return "CALJWST" if self.collection == "JWST" else "HST"

    @property
    def ptype(self) -> str:
        return "D" if self.collection == "JWST" else "S"

    def obs(
        self,
        obs_id: str,
        calib_level: int,
        instrument: str,
        filters: str,
        dataproduct_type: str,
        t_min: float,
        exptime: float,
        em: tuple[float, float],
        offset: tuple[float, float] = (0.0, 0.0),
        half_size: float = 0.02,
    ) -> _Obs:
        self._next += 1
        obsid = self.obsid_base + self._next
        ra = round(self.ra + offset[0], 7)
        dec = round(self.dec + offset[1], 7)
        dra = half_size / max(math.cos(math.radians(dec)), 0.05)
        corners = [
            (ra - dra, dec - half_size),
            (ra + dra, dec - half_size),
            (ra + dra, dec + half_size),
            (ra - dra, dec + half_size),
        ]
        region = "POLYGON ICRS " + " ".join(f"{a % 360:.6f} {d:.6f}" for a, d in corners)
        t_max = round(t_min + exptime / 86400.0, 6)
        row: dict[str, object] = {
            "intentType": "science",
            "obs_collection": self.collection,
            "provenance_name": "CALJWST" if self.collection == "JWST" else "CALACS",
            "instrument_name": instrument,
            "project": self.collection,
            "filters": filters,
            "wavelength_region": "INFRARED" if self.collection == "JWST" else "OPTICAL",
            "target_name": self.target,
            "target_classification": self.target_class,
            "obs_id": obs_id,
            "s_ra": ra,
            "s_dec": dec,
            "dataproduct_type": dataproduct_type,
            "proposal_pi": self.pi,
            "calib_level": calib_level,
            "t_min": round(t_min, 6),
            "t_max": t_max,
            "t_exptime": exptime,
            "em_min": em[0],
            "em_max": em[1],
            "obs_title": self.title,
            "t_obs_release": self.release_mjd if self.rights != PUBLIC else round(t_max + 0.5, 6),
            "proposal_id": self.proposal_id,
            "proposal_type": self.proposal_type,
            "sequence_number": None,
            "s_region": region,
            "jpegURL": None,
            "dataURL": None,
            "dataRights": self.rights,
            "mtFlag": False,
            "srcDen": None if self.collection == "JWST" else 5885.0,
            "obsid": str(obsid),
            "objID": str(obsid + 1_000_000_000),
        }
        return self.cat._add_obs(_Obs(row))

    def product(
        self,
        owner: _Obs,
        filename: str,
        recipe: Recipe,
        product_type: str,
        subgroup: str,
        description: str,
        calib_level: int,
        mrp: bool = False,
        rights: str | None = None,
    ) -> _Product:
        uri = f"mast:{self.collection}/product/{filename}"
        if uri in self.cat._files:
            raise AssertionError(f"duplicate file {uri}")
        t_max = float(owner.row["t_max"])  # type: ignore[arg-type]
        # Files appear some hours after the exposure ends, as the pipeline processes them.
        modified = round(mjd_to_posix(t_max) + 3600 * (2 + hash_text(filename) % 40), 0)
        sim = make_file(
            uri=uri,
            filename=filename,
            collection=self.collection,
            dataset=owner.obs_id,
            recipe=recipe,
            last_modified=modified,
            proposal_id=self.proposal_id,
            dataRights=rights or self.rights,
        )
        self.cat._files[uri] = sim
        prod = _Product(
            file=sim,
            productType=product_type,
            subgroup=subgroup,
            description=description,
            calib_level=calib_level,
            mrp=mrp,
            type=self.ptype,
            project=self.project,
            prvversion=self.prvversion if self.collection == "JWST" else _hst_version(subgroup),
        )
        owner.products.append(prod)
        return prod

    @staticmethod
    def share(prod: _Product, *owners: _Obs) -> None:
        """List an existing file under more observations (a shared product)."""
        for owner in owners:
            owner.products.append(prod)

    @staticmethod
    def share_all(prods: Iterable[_Product], owner: _Obs) -> None:
        owner.products.extend(prods)


def _hst_version(subgroup: str) -> str:
    if subgroup in ("DRZ", "DRC"):
        return "DrizzlePac 3.5.1"
    if subgroup in ("RAW", "FLT", "FLC", "TRL"):
        return "CALACS 10.3.5"
    return "OPUS 2019_4"


def _seed(filename: str) -> int:
    return hash_text(filename) & 0x7FFFFFFF


def _asdf(width: int) -> Table:
    return Table("ASDF", "asdf", 1, npix=width)


def _preview_size(width: int, height: int, filename: str) -> int:
    return width * height // 2 + 4096 + _seed(filename) % 4096


# ----------------------------------------------------------------------------------------------
# JWST helpers


@dataclass(frozen=True)
class _Exp:
    """Header values of one JWST exposure."""

    prog: _Program
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


def _jw_cards(
    e: _Exp, filename: str, datamodl: str, filetype: str
) -> tuple[tuple[str, CardValue], ...]:
    start = e.expstart
    date = _mjd_to_iso(start)
    cards: list[tuple[str, CardValue]] = [
        ("DATE", _mjd_to_iso(start + 0.2)),
        ("ORIGIN", "STSCI"),
        ("TELESCOP", "JWST"),
        ("FILENAME", filename),
        ("FILETYPE", filetype),
        ("DATAMODL", datamodl),
        ("CAL_VER", e.prog.prvversion),
        ("PROGRAM", f"{int(e.prog.proposal_id):05d}"),
        ("OBSERVTN", f"{e.observation:03d}"),
        ("VISIT", f"{e.visit:03d}"),
        ("EXPOSURE", f"{e.exposure:05d}"),
        ("OBS_ID", e.obs_id),
        ("TARGPROP", e.prog.target),
        ("TARGNAME", e.prog.target),
        ("TARG_RA", e.prog.ra),
        ("TARG_DEC", e.prog.dec),
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
    ]
    return tuple(cards)


def _mjd_to_iso(mjd: float) -> str:
    t = datetime.datetime(1858, 11, 17) + datetime.timedelta(days=mjd)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _img_set(
    names: Iterable[str], ncols: int, nrows: int, extra: tuple[int, ...] = (), bunit: str = ""
) -> list[Image | Table]:
    """SCI/ERR/DQ/VAR_* extensions of one shape."""
    out: list[Image | Table] = []
    for name in names:
        role = {"SCI": "sci", "DQ": "dq", "CON": "con", "WHT": "wht"}.get(name, "err")
        bitpix = 32 if name in ("DQ", "CON") else -32
        unit = bunit if name in ("SCI", "ERR") else ""
        out.append(Image(name, bitpix, (ncols, nrows, *extra), role=role, bunit=unit))
    return out


_CAL_EXTS = ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")


def _with_wcs(img: Image | Table, ra: float, dec: float, scale: float) -> Image | Table:
    if isinstance(img, Image) and img.extname == "SCI" and len(img.shape) == 2:
        return Image(img.extname, img.bitpix, img.shape, img.role, img.bunit, (ra, dec, scale))
    return img


def _jwst_fits(
    e: _Exp,
    filename: str,
    style: str,
    datamodl: str,
    hdus: list[Image | Table],
    size: int = 0,
    scale: float = 0.0,
) -> Recipe:
    filetype = "uncalibrated" if filename.endswith("_uncal.fits") else "calibrated"
    if scale:
        hdus = [_with_wcs(h, e.prog.ra, e.prog.dec, scale) for h in hdus]
    width = 0 if size else 2000 + _seed(filename) % 30000
    return Recipe(
        fmt="fits",
        style=style,
        seed=_seed(filename),
        cards=_jw_cards(e, filename, datamodl, filetype),
        hdus=(*hdus, _asdf(width)),
        size=size,
    )


def _jpeg(filename: str, style: str, width: int, height: int) -> Recipe:
    return Recipe(
        fmt="jpeg",
        style=style,
        seed=_seed(filename),
        shape=(width, height),
        size=_preview_size(width, height, filename),
    )


def _png(filename: str, style: str, width: int, height: int) -> Recipe:
    return Recipe(fmt="png", style=style, seed=_seed(filename), shape=(width, height))


def _asn(
    prog: _Program,
    filename: str,
    asn_type: str,
    asn_id: str,
    target: str,
    pool: str,
    product_name: str,
    members: Iterable[str],
) -> Recipe:
    version = filename.split("_")[1]
    level3 = asn_type.endswith("3")
    rule = {
        "tso3": "candidate_Asn_Lv3TSO",
        "image3": "candidate_Asn_Lv3Image",
        "spec3": "candidate_Asn_Lv3MultiObj",
        "image2": "candidate_Asn_Lv2Image",
        "spec2": "candidate_Asn_Lv2Spec",
        "tso-spec2": "candidate_Asn_Lv2SpecTSO",
    }
    cards: tuple[tuple[str, CardValue], ...] = (
        ("asn_type", asn_type),
        ("asn_rule", rule.get(asn_type, "candidate_Asn_Lv3Image" if level3 else "Asn_Lv2Image")),
        ("version_id", version),
        ("code_version", prog.prvversion),
        ("program", f"{int(prog.proposal_id):05d}"),
        (
            "constraints",
            f"DMSAttrConstraint({{'name': 'program', 'sources': ['program'], "
            f"'value': '{int(prog.proposal_id)}'}})",
        ),
        ("asn_id", asn_id),
        ("target", target),
        ("asn_pool", pool),
        ("product_name", product_name),
    )
    return Recipe(fmt="json", seed=_seed(filename), cards=cards, items=tuple(members))


_POOL_COLUMNS = (
    "PROGRAM|OBS_NUM|VISIT|VISIT_GRP|SEQ_ID|ACT_ID|EXPOSURE|EXP_TYPE|FILENAME|INSTRUME|"
    "DETECTOR|FILTER|PUPIL|TARGETID|TARGNAME|ASN_CANDIDATE"
)


def _pool(filename: str, rows: list[str]) -> Recipe:
    return Recipe(
        fmt="csv", seed=_seed(filename), cards=(("columns", _POOL_COLUMNS),), items=tuple(rows)
    )


def _pool_row(e: _Exp, uncal: str, cand: str) -> str:
    return (
        f"{int(e.prog.proposal_id):05d}|{e.observation:03d}|{e.visit:03d}|02|1|01|"
        f"{e.exposure:05d}|{e.exp_type}|{uncal}|{e.instrume}|{e.detector}|{e.filt}|{e.pupil}|"
        f"1|{e.prog.target}|[('o{e.observation:03d}', 'observation'), ({cand!r}, 'background')]"
    )


def _ecsv(filename: str, style: str, rows: int, ra: float, dec: float, start: float) -> Recipe:
    cards: tuple[tuple[str, CardValue], ...] = (
        ("rows", rows),
        ("ra", ra),
        ("dec", dec),
        ("start", start),
        ("filename", filename),
    )
    return Recipe(fmt="ecsv", style=style, seed=_seed(filename), cards=cards)


# Guide-star files of one visit: (kind, suffix, shape, level, minutes after visit start).
_GS_FILES = (
    ("gs-acq1", "cal", (128, 128, 1), 2, 2),
    ("gs-acq2", "cal", (32, 32, 1), 2, 4),
    ("gs-track", "cal", (32, 32, 40), 2, 6),
    ("gs-fg", "cal", (8, 8, 200), 2, 9),
    ("gs-fg", "cal", (8, 8, 200), 2, 47),
    ("gs-fg", "stream", (8, 8, 2000), 1, 47),
)


def _guide_stars(
    prog: _Program, e: _Exp, owner: _Obs, visit_id: str, which: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
) -> list[_Product]:
    """Guide-star files of one visit (indices into _GS_FILES), owned by its first exposure."""
    out = []
    for kind, suffix, shape, level, minutes in (_GS_FILES[i] for i in which):
        t = e.expstart - 0.05 + minutes / 1440.0
        stamp = _mjd_to_iso(t)
        doy = (int(t) - 59580) % 365 + 1  # day of year in 2022 (the catalog's epoch)
        year = 2022 + (int(t) - 59580) // 365
        ts = f"{year}{doy:03d}{stamp[11:13]}{stamp[14:16]}{stamp[17:19]}"
        name = f"{visit_id}_{kind}_{ts}_{suffix}.fits"
        ge = _Exp(
            prog=prog,
            obs_id=f"{visit_id}_{kind}_{ts}",
            instrume="GUIDER",
            detector="GUIDER1",
            exp_type=f"FGS_{kind[3:].upper()}",
            filt="N/A",
            pupil="N/A",
            subarray="SUBFGS",
            readpatt="FGS",
            nints=shape[2],
            ngroups=1,
            expstart=t,
            observation=e.observation,
            visit=e.visit,
            exposure=1,
        )
        if suffix == "stream":
            hdus: list[Image | Table] = [Image("SCI", 16, shape, role="raw", bunit="DN")]
        else:
            hdus = _img_set(("SCI", "ERR", "DQ"), shape[0], shape[1], shape[2:], "DN/s")
        recipe = _jwst_fits(ge, name, "guide", "GuiderCalModel", hdus)
        desc = {
            "cal": f"guide star (L2b): {kind.upper()} calibrated guider data",
            "stream": f"guide star (L1b): {kind.upper()} guider pixel stream",
        }[suffix]
        out.append(prog.product(owner, name, recipe, "AUXILIARY", kind.upper(), desc, level))
    return out


# ----------------------------------------------------------------------------------------------
# JWST 2734: NIRISS/SOSS time series of WASP-96


def _build_2734(cat: Catalog) -> None:
    prog = _Program(
        cat=cat,
        collection="JWST",
        proposal_id="2734",
        obsid_base=87_602_000,
        target="WASP-96",
        target_class="STAR; EXOPLANET HOST",
        ra=1.0464,
        dec=-47.3606,
        pi="Pontoppidan, Klaus",
        title="JWST Early Release Observations: exoplanet transmission spectrum",
        proposal_type="ERO",
        rights=PUBLIC,
        release_mjd=0.0,
        prvversion="1.8.2",
    )
    cat._add_names(1.0464, -47.3606, "WASP-96", "WASP 96", "WASP96b", "WASP-96 b")
    version = "20220630t163421"
    pool_name = f"jw02734_{version}_pool.csv"
    pool_rows: list[str] = []
    pool_owners: list[_Obs] = []
    em = (600.0, 2800.0)
    filters = "CLEAR;GR700XD"
    for o, (act, ngroups, t0) in enumerate(((2101, 52, 59760.53), (3101, 26, 59761.12)), 1):
        visit_id = f"jw02734{o:03d}001"
        l3_name = f"jw02734-o{o:03d}_t{o:03d}_niriss_clear-gr700xd-substrip256"
        nseg = 5
        ints = [85, 85, 85, 85, 40]
        total_ints = sum(ints)
        l3 = prog.obs(
            l3_name,
            3,
            "NIRISS/SOSS",
            filters,
            "timeseries",
            t0,
            total_ints * 0.0010 * 86400 * ngroups / 52,
            em,
        )
        pool_owners.append(l3)
        members: list[str] = []
        gs_products: list[_Product] = []
        exps: list[_Obs] = []
        for s in range(1, nseg + 1):
            nints = ints[s - 1]
            t_start = t0 + sum(ints[: s - 1]) * 0.0010
            base = f"{visit_id}_0{act}_00001-seg{s:03d}_nis"
            exp = prog.obs(base, 2, "NIRISS/SOSS", filters, "timeseries", t_start, nints * 86.4, em)
            exps.append(exp)
            e = _Exp(
                prog=prog,
                obs_id=base,
                instrume="NIRISS",
                detector="NIS",
                exp_type="NIS_SOSS",
                filt="CLEAR",
                pupil="GR700XD",
                subarray="SUBSTRIP256",
                readpatt="NISRAPID",
                nints=nints,
                ngroups=ngroups,
                expstart=t_start,
                observation=o,
                visit=1,
                exposure=1,
            )
            soss = "soss"
            it = Table("INT_TIMES", "int_times", nints)
            uncal = f"{base}_uncal.fits"
            prog.product(
                exp,
                uncal,
                _jwst_fits(
                    e,
                    uncal,
                    soss,
                    "Level1bModel",
                    [Image("SCI", 16, (2048, 256, ngroups, nints), role="raw", bunit="DN"), it],
                ),
                "SCIENCE",
                "UNCAL",
                "exposure (L1b): Uncalibrated 4D exposure data",
                1,
            )
            name = f"{base}_rate.fits"
            prog.product(
                exp,
                name,
                _jwst_fits(e, name, soss, "ImageModel", _img_set(_CAL_EXTS, 2048, 256, (), "DN/s")),
                "SCIENCE",
                "RATE",
                "exposure (L2a): Countrate image averaged over integrations",
                2,
            )
            name = f"{base}_rateints.fits"
            # Full segments are exactly 1 GiB (benchmarks); the ASDF extension absorbs the rest.
            prog.product(
                exp,
                name,
                _jwst_fits(
                    e,
                    name,
                    soss,
                    "CubeModel",
                    [*_img_set(_CAL_EXTS, 2048, 256, (nints,), "DN/s"), it],
                    size=GIB if nints == 85 else 0,
                ),
                "SCIENCE",
                "RATEINTS",
                "exposure (L2a): Countrate image per integration",
                2,
            )
            name = f"{base}_cal.fits"
            prog.product(
                exp,
                name,
                _jwst_fits(
                    e, name, soss, "ImageModel", _img_set(_CAL_EXTS, 2048, 256, (), "MJy/sr")
                ),
                "SCIENCE",
                "CAL",
                "exposure (L2b): Calibrated image",
                2,
                mrp=True,
            )
            name = f"{base}_x1dints.fits"
            prog.product(
                exp,
                name,
                _jwst_fits(
                    e,
                    name,
                    soss,
                    "MultiSpecModel",
                    [
                        Table("EXTRACT1D", "x1dints", nints, npix=2048),
                        Table("EXTRACT1D", "x1dints", nints, npix=1024, extver=2),
                        it,
                    ],
                ),
                "SCIENCE",
                "X1DINTS",
                "exposure (L2b): 1D extracted spectra per integration",
                2,
                mrp=True,
            )
            members.append(f"{base}_cal.fits")
            name = f"{base}_rate.jpg"
            prog.product(
                exp, name, _jpeg(name, soss, 1024, 128), "PREVIEW", "RATE", "Preview-Full", 2
            )
            name = f"{base}_rate_thumb.png"
            prog.product(
                exp, name, _png(name, soss, 128, 16), "PREVIEW", "RATE", "Preview-Thumb", 2
            )
            asn = f"jw02734-o{o:03d}_{version}_tso-spec2_{s:03d}_asn.json"
            prog.product(
                exp,
                asn,
                _asn(
                    prog,
                    asn,
                    "tso-spec2",
                    f"o{o:03d}",
                    f"t{o:03d}",
                    pool_name,
                    base,
                    [uncal.replace("uncal", "rateints")],
                ),
                "INFO",
                "ASN",
                "Association file",
                2,
                mrp=True,
            )
            pool_rows.append(_pool_row(e, uncal, f"c{1000 + o}"))
            if s == 1:
                gs_products = _guide_stars(prog, e, exp, visit_id)
            else:
                prog.share_all(gs_products, exp)
            pool_owners.append(exp)
        l3.members = exps
        name = f"{l3_name}_x1dints.fits"
        e3 = _Exp(
            prog=prog,
            obs_id=l3_name,
            instrume="NIRISS",
            detector="NIS",
            exp_type="NIS_SOSS",
            filt="CLEAR",
            pupil="GR700XD",
            subarray="SUBSTRIP256",
            readpatt="NISRAPID",
            nints=total_ints,
            ngroups=ngroups,
            expstart=t0,
            observation=o,
            visit=1,
            exposure=1,
        )
        prog.product(
            l3,
            name,
            _jwst_fits(
                e3,
                name,
                "soss",
                "MultiSpecModel",
                [
                    Table("EXTRACT1D", "x1dints", total_ints, npix=2048),
                    Table("EXTRACT1D", "x1dints", total_ints, npix=1024, extver=2),
                    Table("INT_TIMES", "int_times", total_ints),
                ],
            ),
            "SCIENCE",
            "X1DINTS",
            "exposure/target (L2b/L3): 1D extracted spectra per integration",
            3,
            mrp=True,
        )
        name = f"{l3_name}_whtlt.ecsv"
        prog.product(
            l3,
            name,
            _ecsv(name, "whtlt", total_ints, prog.ra, prog.dec, t0),
            "SCIENCE",
            "WHTLT",
            "target (L3): white-light photometry time series",
            3,
            mrp=True,
        )
        asn = f"jw02734-o{o:03d}_{version}_tso3_001_asn.json"
        prog.product(
            l3,
            asn,
            _asn(prog, asn, "tso3", f"o{o:03d}", f"t{o:03d}", pool_name, l3_name, members),
            "INFO",
            "ASN",
            "Association file",
            3,
            mrp=True,
        )
        l3.row["dataURL"] = f"mast:JWST/product/{l3_name}_x1dints.fits"
    # The pool is one file listed under every observation of the program.
    first = pool_owners[0]
    pool = prog.product(
        first,
        pool_name,
        _pool(pool_name, pool_rows),
        "INFO",
        "POOL",
        "Association pool",
        3,
        mrp=True,
    )
    prog.share(pool, *pool_owners[1:])


# ----------------------------------------------------------------------------------------------
# JWST 1558: MIRI imaging of NGC 6720 in nine filters


_MIRI_FILTERS = (
    ("F560W", 5000, 6500),
    ("F770W", 6500, 8800),
    ("F1000W", 9000, 11000),
    ("F1130W", 10900, 11700),
    ("F1280W", 11600, 14000),
    ("F1500W", 13500, 16600),
    ("F1800W", 16500, 19500),
    ("F2100W", 18700, 23100),
    ("F2550W", 23000, 28000),
)


def _build_1558(cat: Catalog) -> None:
    prog = _Program(
        cat=cat,
        collection="JWST",
        proposal_id="1558",
        obsid_base=87_704_000,
        target="NGC-6720",
        target_class="PLANETARY NEBULA",
        ra=283.39617,
        dec=33.02917,
        pi="Doe, Jane",
        title="Imaging the Ring Nebula with MIRI",
        proposal_type="GO",
        rights=PUBLIC,
        release_mjd=0.0,
        prvversion="1.8.5",
    )
    cat._add_names(
        283.39617,
        33.02917,
        "NGC 6720",
        "NGC6720",
        "M57",
        "M 57",
        "Ring Nebula",
        "NGC-6720",
        "Messier 57",
    )
    version = "20220820t205310"
    pool_name = f"jw01558_{version}_pool.csv"
    pool_rows: list[str] = []
    owners: list[_Obs] = []
    visit_id = "jw01558001001"
    gs: list[_Product] = []
    t0 = 59811.84
    for f, (filt, lo, hi) in enumerate(_MIRI_FILTERS, 1):
        low = filt.lower()
        l3_name = f"jw01558-o001_t001_miri_{low}"
        l3 = prog.obs(
            l3_name,
            3,
            "MIRI/IMAGE",
            filt,
            "image",
            t0 + f * 0.01,
            2 * 280.0,
            (float(lo), float(hi)),
            half_size=0.025,
        )
        owners.append(l3)
        exps = []
        members = []
        for d in (1, 2):
            base = f"{visit_id}_021{f:02d}_{d:05d}_mirimage"
            t_start = t0 + f * 0.01 + d * 0.004
            exp = prog.obs(
                base,
                2,
                "MIRI/IMAGE",
                filt,
                "image",
                t_start,
                280.0,
                (float(lo), float(hi)),
                offset=(d * 1e-4, -d * 1e-4),
                half_size=0.02,
            )
            exps.append(exp)
            owners.append(exp)
            e = _Exp(
                prog=prog,
                obs_id=base,
                instrume="MIRI",
                detector="MIRIMAGE",
                exp_type="MIR_IMAGE",
                filt=filt,
                pupil="N/A",
                subarray="FULL",
                readpatt="FASTR1",
                nints=1,
                ngroups=20,
                expstart=t_start,
                observation=1,
                visit=1,
                exposure=d,
            )
            uncal = f"{base}_uncal.fits"
            prog.product(
                exp,
                uncal,
                _jwst_fits(
                    e,
                    uncal,
                    "ring",
                    "Level1bModel",
                    [Image("SCI", 16, (1032, 1024, 20, 1), role="raw", bunit="DN")],
                ),
                "SCIENCE",
                "UNCAL",
                "exposure (L1b): Uncalibrated 4D exposure data",
                1,
            )
            name = f"{base}_rate.fits"
            prog.product(
                exp,
                name,
                _jwst_fits(
                    e,
                    name,
                    "ring",
                    "ImageModel",
                    _img_set(_CAL_EXTS, 1032, 1024, (), "DN/s"),
                    scale=0.11,
                ),
                "SCIENCE",
                "RATE",
                "exposure (L2a): Countrate image",
                2,
            )
            name = f"{base}_cal.fits"
            prog.product(
                exp,
                name,
                _jwst_fits(
                    e,
                    name,
                    "ring",
                    "ImageModel",
                    [
                        *_img_set(_CAL_EXTS, 1032, 1024, (), "MJy/sr"),
                        Image("AREA", -32, (1032, 1024), role="err"),
                    ],
                    scale=0.11,
                ),
                "SCIENCE",
                "CAL",
                "exposure (L2b): Calibrated image",
                2,
                mrp=True,
            )
            members.append(name)
            name = f"{base}_cal.jpg"
            prog.product(
                exp, name, _jpeg(name, "ring", 516, 512), "PREVIEW", "CAL", "Preview-Full", 2
            )
            name = f"{base}_cal_thumb.png"
            prog.product(
                exp, name, _png(name, "ring", 129, 128), "PREVIEW", "CAL", "Preview-Thumb", 2
            )
            asn = f"jw01558-o001_{version}_image2_{2 * f + d - 2:05d}_asn.json"
            prog.product(
                exp,
                asn,
                _asn(
                    prog,
                    asn,
                    "image2",
                    "o001",
                    "t001",
                    pool_name,
                    base,
                    [uncal.replace("uncal", "rate")],
                ),
                "INFO",
                "ASN",
                "Association file",
                2,
                mrp=True,
            )
            pool_rows.append(_pool_row(e, uncal, f"c{1000 + f}"))
            if not gs:
                gs = _guide_stars(prog, e, exp, visit_id)
            else:
                prog.share_all(gs, exp)
        l3.members = exps
        e3 = _Exp(
            prog=prog,
            obs_id=l3_name,
            instrume="MIRI",
            detector="MIRIMAGE",
            exp_type="MIR_IMAGE",
            filt=filt,
            pupil="N/A",
            subarray="FULL",
            readpatt="FASTR1",
            nints=1,
            ngroups=20,
            expstart=t0,
            observation=1,
            visit=1,
            exposure=1,
        )
        name = f"{l3_name}_i2d.fits"
        prog.product(
            l3,
            name,
            _jwst_fits(
                e3,
                name,
                "ring",
                "ImageModel",
                _img_set(
                    ("SCI", "ERR", "CON", "WHT", "VAR_POISSON", "VAR_RNOISE"),
                    1400,
                    1300,
                    (),
                    "MJy/sr",
                ),
                scale=0.11,
            ),
            "SCIENCE",
            "I2D",
            "exposure/target (L2b/L3): rectified 2D image",
            3,
            mrp=True,
        )
        name = f"{l3_name}_segm.fits"
        prog.product(
            l3,
            name,
            _jwst_fits(
                e3,
                name,
                "ring",
                "SegmentationMapModel",
                [Image("SCI", 32, (1400, 1300), role="segm")],
                scale=0.11,
            ),
            "SCIENCE",
            "SEGM",
            "target (L3): segmentation map",
            3,
        )
        name = f"{l3_name}_cat.ecsv"
        prog.product(
            l3,
            name,
            _ecsv(name, "cat", 40 + f * 7, prog.ra, prog.dec, t0),
            "CATALOG",
            "CAT",
            "target (L3): source catalog",
            3,
            mrp=True,
        )
        name = f"{l3_name}_i2d.jpg"
        prog.product(l3, name, _jpeg(name, "ring", 560, 520), "PREVIEW", "I2D", "Preview-Full", 3)
        l3.row["jpegURL"] = f"mast:JWST/product/{name}"
        l3.row["dataURL"] = f"mast:JWST/product/{l3_name}_i2d.fits"
        name = f"{l3_name}_i2d_thumb.png"
        prog.product(l3, name, _png(name, "ring", 140, 130), "PREVIEW", "I2D", "Preview-Thumb", 3)
        asn = f"jw01558-o001_{version}_image3_{f:05d}_asn.json"
        prog.product(
            l3,
            asn,
            _asn(prog, asn, "image3", "o001", "t001", pool_name, l3_name, members),
            "INFO",
            "ASN",
            "Association file",
            3,
            mrp=True,
        )
    pool = prog.product(
        owners[0],
        pool_name,
        _pool(pool_name, pool_rows),
        "INFO",
        "POOL",
        "Association pool",
        3,
        mrp=True,
    )
    prog.share(pool, *owners[1:])


# ----------------------------------------------------------------------------------------------
# JWST 6543: NIRCam imaging under exclusive access (asn and pool files are public)


def _build_6543(cat: Catalog) -> None:
    prog = _Program(
        cat=cat,
        collection="JWST",
        proposal_id=EA_PROPOSAL,
        obsid_base=88_006_000,
        target="ABELL-2744",
        target_class="GALAXY CLUSTER",
        ra=3.5864,
        dec=-30.3975,
        pi="Lovelace, Ada",
        title="A deep NIRCam look behind a lensing cluster",
        proposal_type="GO",
        rights=EXCLUSIVE_ACCESS,
        release_mjd=61_400.0,
        prvversion="1.14.0",
    )
    cat._add_names(3.5864, -30.3975, "Abell 2744", "ABELL-2744", "A2744", "Pandora's Cluster")
    version = "20251104t101010"
    pool_name = f"jw06543_{version}_pool.csv"
    pool_rows: list[str] = []
    owners: list[_Obs] = []
    visit_id = "jw06543001001"
    t0 = 60983.42
    gs: list[_Product] = []
    for f, (filt, channel, dets, lo, hi) in enumerate(
        (
            ("F150W", "short", ("nrca1", "nrcb1"), 1330, 1670),
            ("F444W", "long", ("nrcalong", "nrcblong"), 3880, 4990),
        ),
        1,
    ):
        l3_name = f"jw06543-o001_t001_nircam_clear-{filt.lower()}"
        l3 = prog.obs(
            l3_name,
            3,
            "NIRCAM/IMAGE",
            f"CLEAR;{filt}",
            "image",
            t0,
            4 * 1030.0,
            (float(lo), float(hi)),
            half_size=0.04,
        )
        owners.append(l3)
        exps = []
        members = []
        for d in (1, 2):
            for det in dets:
                base = f"{visit_id}_02101_{d:05d}_{det}"
                t_start = t0 + d * 0.013
                exp = prog.obs(
                    base,
                    2,
                    "NIRCAM/IMAGE",
                    f"CLEAR;{filt}",
                    "image",
                    t_start,
                    1030.0,
                    (float(lo), float(hi)),
                    offset=(0.01 if "b" in det[3:] else -0.01, d * 2e-4),
                )
                exps.append(exp)
                owners.append(exp)
                e = _Exp(
                    prog=prog,
                    obs_id=base,
                    instrume="NIRCAM",
                    detector=det.upper().replace("LONG", "LONG"),
                    exp_type="NRC_IMAGE",
                    filt=filt,
                    pupil="CLEAR",
                    subarray="FULL",
                    readpatt="MEDIUM8",
                    nints=1,
                    ngroups=8,
                    expstart=t_start,
                    observation=1,
                    visit=1,
                    exposure=d,
                )
                scale = 0.031 if channel == "short" else 0.063
                uncal = f"{base}_uncal.fits"
                prog.product(
                    exp,
                    uncal,
                    _jwst_fits(
                        e,
                        uncal,
                        "galaxies",
                        "Level1bModel",
                        [Image("SCI", 16, (2048, 2048, 8, 1), role="raw", bunit="DN")],
                    ),
                    "SCIENCE",
                    "UNCAL",
                    "exposure (L1b): Uncalibrated 4D exposure data",
                    1,
                )
                name = f"{base}_rate.fits"
                prog.product(
                    exp,
                    name,
                    _jwst_fits(
                        e,
                        name,
                        "galaxies",
                        "ImageModel",
                        _img_set(_CAL_EXTS, 2048, 2048, (), "DN/s"),
                        scale=scale,
                    ),
                    "SCIENCE",
                    "RATE",
                    "exposure (L2a): Countrate image",
                    2,
                )
                name = f"{base}_cal.fits"
                prog.product(
                    exp,
                    name,
                    _jwst_fits(
                        e,
                        name,
                        "galaxies",
                        "ImageModel",
                        _img_set(_CAL_EXTS, 2048, 2048, (), "MJy/sr"),
                        scale=scale,
                    ),
                    "SCIENCE",
                    "CAL",
                    "exposure (L2b): Calibrated image",
                    2,
                    mrp=True,
                )
                members.append(name)
                name = f"{base}_cal.jpg"
                prog.product(
                    exp,
                    name,
                    _jpeg(name, "galaxies", 512, 512),
                    "PREVIEW",
                    "CAL",
                    "Preview-Full",
                    2,
                )
                name = f"{base}_cal_thumb.png"
                prog.product(
                    exp,
                    name,
                    _png(name, "galaxies", 128, 128),
                    "PREVIEW",
                    "CAL",
                    "Preview-Thumb",
                    2,
                )
                asn = f"jw06543-o001_{version}_image2_{len(owners):05d}_asn.json"
                prog.product(
                    exp,
                    asn,
                    _asn(
                        prog,
                        asn,
                        "image2",
                        "o001",
                        "t001",
                        pool_name,
                        base,
                        [uncal.replace("uncal", "rate")],
                    ),
                    "INFO",
                    "ASN",
                    "Association file",
                    2,
                    mrp=True,
                    rights=PUBLIC,
                )
                pool_rows.append(_pool_row(e, uncal, "c1000"))
                if not gs:
                    gs = _guide_stars(prog, e, exp, visit_id, (0, 1, 2, 3))
                else:
                    prog.share_all(gs, exp)
        l3.members = exps
        e3 = _Exp(
            prog=prog,
            obs_id=l3_name,
            instrume="NIRCAM",
            detector="MULTIPLE",
            exp_type="NRC_IMAGE",
            filt=filt,
            pupil="CLEAR",
            subarray="FULL",
            readpatt="MEDIUM8",
            nints=1,
            ngroups=8,
            expstart=t0,
            observation=1,
            visit=1,
            exposure=1,
        )
        npx = 3000 if channel == "short" else 1500
        name = f"{l3_name}_i2d.fits"
        prog.product(
            l3,
            name,
            _jwst_fits(
                e3,
                name,
                "galaxies",
                "ImageModel",
                _img_set(("SCI", "ERR", "CON", "WHT"), npx, npx, (), "MJy/sr"),
                scale=0.03 if channel == "short" else 0.06,
            ),
            "SCIENCE",
            "I2D",
            "exposure/target (L2b/L3): rectified 2D image",
            3,
            mrp=True,
        )
        name = f"{l3_name}_segm.fits"
        prog.product(
            l3,
            name,
            _jwst_fits(
                e3,
                name,
                "galaxies",
                "SegmentationMapModel",
                [Image("SCI", 32, (npx, npx), role="segm")],
            ),
            "SCIENCE",
            "SEGM",
            "target (L3): segmentation map",
            3,
        )
        name = f"{l3_name}_cat.ecsv"
        prog.product(
            l3,
            name,
            _ecsv(name, "cat", 300, prog.ra, prog.dec, t0),
            "CATALOG",
            "CAT",
            "target (L3): source catalog",
            3,
            mrp=True,
        )
        name = f"{l3_name}_i2d.jpg"
        prog.product(
            l3, name, _jpeg(name, "galaxies", 600, 600), "PREVIEW", "I2D", "Preview-Full", 3
        )
        asn = f"jw06543-o001_{version}_image3_{f:05d}_asn.json"
        prog.product(
            l3,
            asn,
            _asn(prog, asn, "image3", "o001", "t001", pool_name, l3_name, members),
            "INFO",
            "ASN",
            "Association file",
            3,
            mrp=True,
            rights=PUBLIC,
        )
    pool = prog.product(
        owners[0],
        pool_name,
        _pool(pool_name, pool_rows),
        "INFO",
        "POOL",
        "Association pool",
        3,
        mrp=True,
        rights=PUBLIC,
    )
    prog.share(pool, *owners[1:])


# ----------------------------------------------------------------------------------------------
# HST 10775: ACS/WFC imaging of 47 Tuc (NGC 104)


def _hst_cards(
    prog: _Program,
    filename: str,
    rootname: str,
    asn_id: str,
    filt: str,
    expstart: float,
    exptime: float,
) -> tuple[tuple[str, CardValue], ...]:
    date = _mjd_to_iso(expstart)
    return (
        ("ORIGIN", "HSTIO/CFITSIO March 2010"),
        ("DATE", _mjd_to_iso(expstart + 1.0)[:10]),
        ("NEXTEND", 0),
        ("FILENAME", filename),
        ("FILETYPE", "SCI"),
        ("TELESCOP", "HST"),
        ("INSTRUME", "ACS"),
        ("DETECTOR", "WFC"),
        ("ROOTNAME", rootname),
        ("OBS_ID", rootname),
        ("ASN_ID", asn_id.upper()),
        ("PROPOSID", int(prog.proposal_id)),
        ("TARGNAME", prog.target),
        ("RA_TARG", prog.ra),
        ("DEC_TARG", prog.dec),
        ("OBSTYPE", "IMAGING"),
        ("OBSMODE", "ACCUM"),
        ("FILTER1", filt),
        ("FILTER2", "CLEAR2L"),
        ("DATE-OBS", date[:10]),
        ("TIME-OBS", date[11:19]),
        ("EXPSTART", expstart),
        ("EXPTIME", exptime),
    )


def _hst_fits(
    prog: _Program,
    filename: str,
    rootname: str,
    asn_id: str,
    filt: str,
    expstart: float,
    exptime: float,
    hdus: list[Image | Table],
    items: tuple[str, ...] = (),
) -> Recipe:
    cards = list(_hst_cards(prog, filename, rootname, asn_id, filt, expstart, exptime))
    cards[2] = ("NEXTEND", len(hdus))
    return Recipe(
        fmt="fits",
        style="cluster",
        seed=_seed(filename),
        cards=tuple(cards),
        hdus=tuple(hdus),
        items=items,
    )


def _chips(kind: str, wcs: tuple[float, float, float]) -> list[Image | Table]:
    out: list[Image | Table] = []
    for chip in (1, 2):
        if kind == "raw":
            out.append(Image("SCI", 16, (4096, 2048), role="raw", bunit="COUNTS", extver=chip))
            continue
        out.append(
            Image("SCI", -32, (4096, 2048), role="sci", bunit="ELECTRONS", wcs=wcs, extver=chip)
        )
        out.append(Image("ERR", -32, (4096, 2048), role="err", bunit="ELECTRONS", extver=chip))
        out.append(Image("DQ", 16, (4096, 2048), role="dq", extver=chip))
    return out


_HST_DESC = {
    "RAW": "DADS RAW file - Raw exposure ACS/WFC3/STIS/COS",
    "FLT": "DADS FLT file - Calibrated exposure ACS/WFC3/STIS/COS",
    "FLC": "DADS FLC file - CTE-corrected calibrated exposure ACS/WFC3",
    "DRZ": "DADS DRZ file - Calibrated combined image ACS/WFC3/WFPC2/STIS",
    "DRC": "DADS DRC file - CTE-corrected calibrated combined image ACS/WFC3",
    "SPT": "DADS SPT file - Engineering telemetry ACS/WFC3/NICMOS/STIS",
    "JIF": "DADS JIF file - Jitter image ACS/WFC3/NICMOS/STIS",
    "JIT": "DADS JIT file - Jitter table ACS/WFC3/NICMOS/STIS",
    "TRL": "DADS TRL file - Processing log",
    "ASN": "DADS ASN file - Association ACS/WFC3/NICMOS/STIS",
    "LOG": "DADS LOG file - Pipeline processing log",
    "NOTES": "Observer notes",
}


def _build_10775(cat: Catalog) -> None:
    prog = _Program(
        cat=cat,
        collection="HST",
        proposal_id="10775",
        obsid_base=24_010_000,
        target="NGC104",
        target_class="STAR CLUSTER; GLOBULAR",
        ra=6.02233,
        dec=-72.08144,
        pi="Sarajedini, Ata",
        title="An ACS Survey of Galactic Globular Clusters",
        proposal_type="GO",
        rights=PUBLIC,
        release_mjd=0.0,
        prvversion="CALACS 10.3.5",
    )
    cat._add_names(6.02233, -72.08144, "NGC 104", "NGC104", "47 Tuc", "47 Tucanae")
    wcs = (prog.ra, prog.dec, 0.05)
    assocs = (
        ("j9l960010", "F606W", ("j9l960a7q", "j9l960a9q", "j9l960abq", "j9l960adq"), 53907.18),
        ("j9l960020", "F814W", ("j9l960afq", "j9l960ahq", "j9l960ajq", "j9l960alq"), 53907.25),
    )
    em = {"F606W": (470.0, 720.0), "F814W": (690.0, 960.0)}
    for asn_id, filt, roots, t0 in assocs:
        texp = 4 * 340.0
        assoc = prog.obs(asn_id, 3, "ACS/WFC", filt, "image", t0, texp, em[filt], half_size=0.034)
        shared: list[_Product] = []
        name = f"{asn_id}_asn.fits"
        shared.append(
            prog.product(
                assoc,
                name,
                _hst_fits(
                    prog,
                    name,
                    asn_id,
                    asn_id,
                    filt,
                    t0,
                    texp,
                    [Table("ASN", "hst_asn", len(roots) + 1)],
                    items=roots,
                ),
                "INFO",
                "ASN",
                _HST_DESC["ASN"],
                1,
            )
        )
        name = f"{asn_id[:-1]}1_jif.fits"
        shared.append(
            prog.product(
                assoc,
                name,
                _hst_fits(
                    prog,
                    name,
                    asn_id,
                    asn_id,
                    filt,
                    t0,
                    texp,
                    [Image("JIT", -32, (64, 64), role="sci", extver=k) for k in range(1, 5)],
                ),
                "AUXILIARY",
                "JIF",
                _HST_DESC["JIF"],
                1,
            )
        )
        for suffix, mrp in (("drz", True), ("drc", True)):
            name = f"{asn_id}_{suffix}.fits"
            prog.product(
                assoc,
                name,
                _hst_fits(
                    prog,
                    name,
                    asn_id,
                    asn_id,
                    filt,
                    t0,
                    texp,
                    [
                        Image("SCI", -32, (4300, 4200), role="sci", bunit="ELECTRONS/S", wcs=wcs),
                        Image("WHT", -32, (4300, 4200), role="wht"),
                        Image("CTX", 32, (4300, 4200), role="con"),
                    ],
                ),
                "SCIENCE",
                suffix.upper(),
                _HST_DESC[suffix.upper()],
                3,
                mrp=mrp,
            )
        name = f"{asn_id}_drz.jpg"
        prog.product(
            assoc, name, _jpeg(name, "cluster", 512, 500), "PREVIEW", "DRZ", "Preview-Full", 3
        )
        assoc.row["jpegURL"] = f"mast:HST/product/{name}"
        assoc.row["dataURL"] = f"mast:HST/product/{asn_id}_drz.fits"
        name = f"{asn_id}_trl.fits"
        prog.product(
            assoc,
            name,
            _hst_fits(prog, name, asn_id, asn_id, filt, t0, texp, [Table("TRL", "trl", 180)]),
            "AUXILIARY",
            "TRL",
            _HST_DESC["TRL"],
            3,
        )
        name = f"{asn_id}_log.txt"
        prog.product(
            assoc,
            name,
            Recipe(fmt="text", seed=_seed(name), cards=(("FILENAME", name), ("lines", 120))),
            "AUXILIARY",
            "LOG",
            _HST_DESC["LOG"],
            3,
        )
        if asn_id.endswith("10"):
            notes = [
                "Observer notes for visit 60 (F606W).",
                'Contains "quotes", commas, <b>markup</b> & ampersands on purpose:',
                "the simulator uses this file to test how clients quote awkward names.",
            ]
            prog.product(
                assoc,
                HOSTILE_FILENAME,
                Recipe(fmt="text", seed=_seed(HOSTILE_FILENAME), items=tuple(notes)),
                "AUXILIARY",
                "NOTES",
                _HST_DESC["NOTES"],
                3,
            )
        exps = []
        for k, root in enumerate(roots):
            ts = t0 + k * 0.006
            exp = prog.obs(
                root,
                2,
                "ACS/WFC",
                filt,
                "image",
                ts,
                340.0,
                em[filt],
                offset=(k * 2e-5, k * 2e-5),
                half_size=0.034,
            )
            exps.append(exp)
            for suffix in ("raw", "flt", "flc"):
                name = f"{root}_{suffix}.fits"
                prog.product(
                    exp,
                    name,
                    _hst_fits(prog, name, root, asn_id, filt, ts, 340.0, _chips(suffix, wcs)),
                    "SCIENCE",
                    suffix.upper(),
                    _HST_DESC[suffix.upper()],
                    1 if suffix == "raw" else 2,
                    mrp=suffix != "raw",
                )
            name = f"{root}_spt.fits"
            prog.product(
                exp,
                name,
                _hst_fits(
                    prog,
                    name,
                    root,
                    asn_id,
                    filt,
                    ts,
                    340.0,
                    [Image("UDL", 16, (1600, 1), role="dq")],
                ),
                "AUXILIARY",
                "SPT",
                _HST_DESC["SPT"],
                1,
            )
            name = f"{root}_trl.fits"
            prog.product(
                exp,
                name,
                _hst_fits(prog, name, root, asn_id, filt, ts, 340.0, [Table("TRL", "trl", 60)]),
                "AUXILIARY",
                "TRL",
                _HST_DESC["TRL"],
                2,
            )
            name = f"{root}_flt.jpg"
            prog.product(
                exp, name, _jpeg(name, "cluster", 512, 512), "PREVIEW", "FLT", "Preview-Full", 2
            )
            prog.share_all(shared, exp)
        assoc.members = exps


# ----------------------------------------------------------------------------------------------
# JWST 1999: a large NIRSpec MOS survey (scale)

N_1999_OBSERVATIONS = 45
SOURCES_PER_OBSERVATION = 25


def _build_1999(cat: Catalog) -> None:
    prog = _Program(
        cat=cat,
        collection="JWST",
        proposal_id="1999",
        obsid_base=89_000_000,
        target="GOODS-S",
        target_class="GALAXY; HIGH REDSHIFT",
        ra=53.1625,
        dec=-27.7914,
        pi="Hopper, Grace",
        title="A NIRSpec MOS census of galaxies at cosmic noon",
        proposal_type="GO",
        rights=PUBLIC,
        release_mjd=0.0,
        prvversion="1.11.4",
    )
    cat._add_names(53.1625, -27.7914, "GOODS-S", "GOODS South", "CDFS", "Chandra Deep Field South")
    version = "20230104t012345"
    pool_name = f"jw01999_{version}_pool.csv"
    pool_rows: list[str] = []
    owners: list[_Obs] = []
    filters = "F290LP;G395M"
    em = (2870.0, 5100.0)
    source = 0
    pool_product: _Product | None = None
    for o in range(1, N_1999_OBSERVATIONS + 1):
        visit_id = f"jw01999{o:03d}001"
        t0 = 59948.0 + o * 0.37
        offset = ((o % 9 - 4) * 0.02, (o // 9 - 2) * 0.02)
        exps: dict[tuple[int, str], _Obs] = {}
        shared: list[_Product] = []
        for ex in range(1, 7):
            for det in ("nrs1", "nrs2"):
                base = f"{visit_id}_03101_{ex:05d}_{det}"
                ts = t0 + ex * 0.012
                exp = prog.obs(
                    base,
                    2,
                    "NIRSPEC/MSA",
                    filters,
                    "spectrum",
                    ts,
                    963.0,
                    em,
                    offset=offset,
                    half_size=0.025,
                )
                exps[(ex, det)] = exp
                owners.append(exp)
                e = _Exp(
                    prog=prog,
                    obs_id=base,
                    instrume="NIRSPEC",
                    detector=det.upper(),
                    exp_type="NRS_MSASPEC",
                    filt="F290LP",
                    pupil="G395M",
                    subarray="FULL",
                    readpatt="NRSIRS2RAPID",
                    nints=1,
                    ngroups=10,
                    expstart=ts,
                    observation=o,
                    visit=1,
                    exposure=ex,
                )
                uncal = f"{base}_uncal.fits"
                prog.product(
                    exp,
                    uncal,
                    _jwst_fits(
                        e,
                        uncal,
                        "mos",
                        "Level1bModel",
                        [Image("SCI", 16, (2048, 2048, 10, 1), role="raw", bunit="DN")],
                    ),
                    "SCIENCE",
                    "UNCAL",
                    "exposure (L1b): Uncalibrated 4D exposure data",
                    1,
                )
                name = f"{base}_rate.fits"
                prog.product(
                    exp,
                    name,
                    _jwst_fits(
                        e, name, "mos", "ImageModel", _img_set(_CAL_EXTS, 2048, 2048, (), "DN/s")
                    ),
                    "SCIENCE",
                    "RATE",
                    "exposure (L2a): Countrate image",
                    2,
                )
                name = f"{base}_cal.fits"
                prog.product(
                    exp,
                    name,
                    _jwst_fits(
                        e, name, "mos", "MultiSlitModel", [h for k in (1, 2, 3) for h in _slit(k)]
                    ),
                    "SCIENCE",
                    "CAL",
                    "exposure (L2b): Calibrated 2D spectra per slit",
                    2,
                )
                name = f"{base}_s2d.fits"
                prog.product(
                    exp,
                    name,
                    _jwst_fits(
                        e, name, "s2d", "MultiSlitModel", [h for k in (1, 2, 3) for h in _slit(k)]
                    ),
                    "SCIENCE",
                    "S2D",
                    "exposure (L2b): 2D resampled spectra",
                    2,
                    mrp=True,
                )
                name = f"{base}_x1d.fits"
                prog.product(
                    exp,
                    name,
                    _jwst_fits(
                        e,
                        name,
                        "s2d",
                        "MultiSpecModel",
                        [Table("EXTRACT1D", "x1d", 1300, extver=k) for k in (1, 2, 3)],
                    ),
                    "SCIENCE",
                    "X1D",
                    "exposure (L2b): 1D extracted spectra",
                    2,
                    mrp=True,
                )
                name = f"{base}_cal.jpg"
                prog.product(
                    exp, name, _jpeg(name, "mos", 256, 256), "PREVIEW", "CAL", "Preview-Full", 2
                )
                name = f"{base}_cal_thumb.png"
                prog.product(
                    exp, name, _png(name, "mos", 64, 64), "PREVIEW", "CAL", "Preview-Thumb", 2
                )
                asn = f"jw01999-o{o:03d}_{version}_spec2_{2 * ex - (det == 'nrs1'):05d}_asn.json"
                prog.product(
                    exp,
                    asn,
                    _asn(
                        prog,
                        asn,
                        "spec2",
                        f"o{o:03d}",
                        "s00000",
                        pool_name,
                        base,
                        [uncal.replace("uncal", "rate")],
                    ),
                    "INFO",
                    "ASN",
                    "Association file",
                    2,
                    mrp=True,
                )
                pool_rows.append(_pool_row(e, uncal, f"c{1000 + o}"))
                if not shared:
                    msa = f"{visit_id}_01_msa.fits"
                    me = dataclasses.replace(e, obs_id=f"{visit_id}_01_msa")
                    shared.append(
                        prog.product(
                            exp,
                            msa,
                            _jwst_fits(
                                me,
                                msa,
                                "mos",
                                "MSAModel",
                                [
                                    Table("SHUTTER_INFO", "msa", 3 * SOURCES_PER_OBSERVATION * 4),
                                    Table("SOURCE_INFO", "source_info", SOURCES_PER_OBSERVATION),
                                ],
                            ),
                            "AUXILIARY",
                            "MSA",
                            "MSA configuration file",
                            2,
                        )
                    )
                    shared += _guide_stars(prog, e, exp, visit_id, (0, 2, 3))
                    if pool_product is None:
                        pool_product = prog.product(
                            exp,
                            pool_name,
                            Recipe(fmt="csv"),
                            "INFO",
                            "POOL",
                            "Association pool",
                            3,
                            mrp=True,
                        )
                    else:
                        prog.share(pool_product, exp)
                else:
                    prog.share_all(shared, exp)
                    assert pool_product is not None
                    prog.share(pool_product, exp)
        for k in range(SOURCES_PER_OBSERVATION):
            source += 1
            det = "nrs1" if k % 2 == 0 else "nrs2"
            name3 = f"jw01999-o{o:03d}_s{source:05d}_nirspec_f290lp-g395m"
            src = prog.obs(
                name3,
                3,
                "NIRSPEC/MSA",
                filters,
                "spectrum",
                t0,
                3 * 963.0,
                em,
                offset=(offset[0] + (k % 5 - 2) * 0.003, offset[1] + (k // 5 - 2) * 0.003),
                half_size=0.0002,
            )
            owners.append(src)
            src.members = [exps[(ex, det)] for ex in (1, 2, 3)]
            e3 = _Exp(
                prog=prog,
                obs_id=name3,
                instrume="NIRSPEC",
                detector=det.upper(),
                exp_type="NRS_MSASPEC",
                filt="F290LP",
                pupil="G395M",
                subarray="FULL",
                readpatt="NRSIRS2RAPID",
                nints=1,
                ngroups=10,
                expstart=t0,
                observation=o,
                visit=1,
                exposure=1,
            )
            name = f"{name3}_x1d.fits"
            prog.product(
                src,
                name,
                _jwst_fits(e3, name, "s2d", "MultiSpecModel", [Table("EXTRACT1D", "x1d", 1300)]),
                "SCIENCE",
                "X1D",
                "exposure/target (L2b/L3): 1D extracted spectrum",
                3,
                mrp=True,
            )
            name = f"{name3}_s2d.fits"
            prog.product(
                src,
                name,
                _jwst_fits(e3, name, "s2d", "SlitModel", _slit(1)),
                "SCIENCE",
                "S2D",
                "exposure/target (L2b/L3): 2D resampled spectrum",
                3,
                mrp=True,
            )
            src.row["dataURL"] = f"mast:JWST/product/{name3}_x1d.fits"
            name = f"{name3}_s2d.jpg"
            prog.product(
                src, name, _jpeg(name, "s2d", 520, 40), "PREVIEW", "S2D", "Preview-Full", 3
            )
            name = f"{name3}_s2d_thumb.png"
            prog.product(
                src, name, _png(name, "s2d", 130, 10), "PREVIEW", "S2D", "Preview-Thumb", 3
            )
            asn = f"jw01999-o{o:03d}_{version}_spec3_{source:05d}_asn.json"
            prog.product(
                src,
                asn,
                _asn(
                    prog,
                    asn,
                    "spec3",
                    f"o{o:03d}",
                    f"s{source:05d}",
                    pool_name,
                    name3,
                    [f"{exps[(ex, det)].obs_id}_cal.fits" for ex in (1, 2, 3)],
                ),
                "INFO",
                "ASN",
                "Association file",
                3,
                mrp=True,
            )
            assert pool_product is not None
            prog.share(pool_product, src)
    # The pool's content is known only now; swap the placeholder recipe for the real one.
    assert pool_product is not None
    real = make_file(
        uri=pool_product.file.uri,
        filename=pool_name,
        collection="JWST",
        dataset=pool_product.file.dataset,
        recipe=_pool(pool_name, pool_rows),
        last_modified=pool_product.file.last_modified,
        proposal_id="1999",
        dataRights=PUBLIC,
    )
    pool_product.file = real
    cat._files[real.uri] = real


def _slit(k: int) -> list[Image | Table]:
    return [
        Image("SCI", -32, (1300, 27), role="sci", bunit="MJy", extver=k),
        Image("ERR", -32, (1300, 27), role="err", bunit="MJy", extver=k),
        Image("DQ", 32, (1300, 27), role="dq", extver=k),
        Image("WAVELENGTH", -32, (1300, 27), role="err", bunit="um", extver=k),
    ]


# ----------------------------------------------------------------------------------------------
# columnsconfig


def _info(text: str, desc: str, unit: str = "", vot: str = "") -> dict[str, object]:
    out: dict[str, object] = {"text": text, "vot.description": desc}
    if unit:
        out["vot.unit"] = unit
    if vot:
        out["vot.datatype"] = vot
    return out


_OBS_COLUMN_INFO: dict[str, dict[str, object]] = {
    "intentType": _info("Observation Type", "Whether observation is for science or calibration"),
    "obs_collection": {**_info("Mission", "Collection"), "separator": ";"},
    "provenance_name": _info("Provenance Name", "Provenance name, or source of data"),
    "instrument_name": {**_info("Instrument", "Instrument name"), "separator": ";"},
    "project": _info("Project", "Processing project"),
    "filters": {**_info("Filters", "Instrument filters"), "separator": ";"},
    "wavelength_region": {**_info("Waveband", "Energy band"), "separator": ";"},
    "target_name": _info("Target Name", "Target name designated by observer"),
    "target_classification": _info("Target Classification", "Type of target"),
    "obs_id": _info("Observation ID", "Observation identifier, given by mission"),
    "s_ra": _info("RA", "Observation Right Ascension", "deg"),
    "s_dec": _info("Dec", "Observation Declination", "deg"),
    "dataproduct_type": _info("Product Type", "Type of product"),
    "proposal_pi": _info("Principal Investigator", "Principal investigator's last name"),
    "calib_level": _info("Calib. Level", "Calibration level"),
    "t_min": _info("Start Time", "Observation start datetime", "MJD"),
    "t_max": _info("End Time", "Observation end datetime", "MJD"),
    "t_exptime": _info("Exposure Length", "Exposure time", "sec"),
    "em_min": _info("Min. Wavelength", "Minimum wavelength", "nm"),
    "em_max": _info("Max. Wavelength", "Maximum wavelength", "nm"),
    "obs_title": _info("Observation Title", "Observation description from proposal"),
    "t_obs_release": _info("Release Date", "Dataset release date", "MJD"),
    "proposal_id": _info("Proposal ID", "Proposal ID"),
    "proposal_type": _info("Proposal Type", "Type of telescope proposal"),
    "sequence_number": _info("Sequence Number", "Sequence number, e.g. Kepler quarter"),
    "s_region": _info("s_region", "STC/S Footprint"),
    "jpegURL": _info("jpegURL", "Preview Image URL"),
    "dataURL": _info("Data URL", "Data URL"),
    "dataRights": _info("Data Rights", "Data Rights"),
    "mtFlag": _info("Moving Target", "Moving Target Flag"),
    "srcDen": _info("Number of Catalog Objects", "Number of cataloged objects in footprint"),
    "obsid": _info("Product Group ID", "Product Group ID", vot="long"),
    "objID": _info("Object ID", "Plane ID of observation at given calibration level"),
}

_PRODUCT_COLUMN_INFO: dict[str, dict[str, object]] = {
    "obsID": _info("Product Group ID", "Product Group ID", vot="long"),
    "obs_collection": {**_info("Mission", "Collection"), "separator": ";"},
    "dataproduct_type": _info("Product Type", "Type of product"),
    "obs_id": _info("Observation ID", "Observation identifier, given by mission"),
    "description": _info("Description", "Product description"),
    "type": _info("Type", "S = simple product, D = derived product"),
    "dataURI": _info("Data URI", "Data URI"),
    "productType": {**_info("Product Category", "Product category"), "separator": ";"},
    "productGroupDescription": _info("Group", "Product group"),
    "productSubGroupDescription": _info("Subgroup", "Product subgroup"),
    "productDocumentationURL": _info("Doc URL", "Product documentation URL"),
    "project": _info("Project", "Processing project"),
    "prvversion": _info("Version", "Provenance version"),
    "proposal_id": _info("Proposal ID", "Proposal ID"),
    "productFilename": _info("Filename", "Product filename"),
    "size": _info("Size", "Product size", "bytes"),
    "parent_obsid": _info(
        "Parent Product Group ID", "Product group ID of the queried observation", vot="long"
    ),
    "dataRights": _info("Data Rights", "Data Rights"),
    "calib_level": _info("Calib. Level", "Calibration level"),
    "filters": {**_info("Filters", "Instrument filters"), "separator": ";"},
}

_VOT = {"string": "char", "float": "double", "int": "int", "boolean": "boolean"}


def _columns_config(
    fields: list[tuple[str, str]], info: dict[str, dict[str, object]]
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, mast_type in fields:
        entry: dict[str, object] = {"vot.datatype": _VOT[mast_type], **info[name]}
        entry.setdefault("vot.unit", "")
        if mast_type == "float":
            entry["treatNumeric"] = True
        out[name] = entry
    return out


def iter_rows(cat: Catalog) -> Iterator[dict[str, object]]:
    """Every product row of every observation (tests and tools)."""
    for row in cat.observations:
        yield from cat.products_for(str(row["obsid"]))
