"""Expands a program spec into observation rows, product lists and files.

For each observation of a spec (`programs.py`) in its block's order: its row, then one product
per named kind (`kinds.py`), then the products it shares: the visit's guide-star and MSA files
(made by the visit's first exposure), its association's files (HST asn, jif), and last the
program's pool, one file listed under every observation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from mastfs.sim import recipes
from mastfs.sim.content import Image, Recipe, SimFile, Table, hash_text, make_file
from mastfs.sim.kinds import HST_DEFAULT_VERSION, HST_VERSIONS, KINDS, MISSIONS, Img, Kind, Tbl
from mastfs.sim.spec import PUBLIC, Block, Obs, Program

MRP = "Minimum Recommended Products"


@dataclass(slots=True, eq=False)
class Product:
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
class ObsRecord:
    row: dict[str, object]
    products: list[Product] = field(default_factory=list)
    members: list[ObsRecord] = field(default_factory=list)

    @property
    def obsid(self) -> str:
        return str(self.row["obsid"])

    @property
    def obs_id(self) -> str:
        return str(self.row["obs_id"])


def product_row(p: Product, owner: ObsRecord, parent: ObsRecord) -> dict[str, object]:
    """A `Mast.Caom.Products` row of `owner`'s product `p`, asked for under `parent`."""
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


@dataclass
class Expanded:
    """One program's observations and files, in the order they were made."""

    observations: list[ObsRecord]
    files: dict[str, SimFile]


def expand(program: Program) -> Expanded:
    return _Expander(program).run()


def _order(block: Block) -> Iterator[tuple[Obs, bool, bool]]:
    """(observation, make its row, make its products) in the block's order."""
    if block.order == "wrap":
        yield from ((o, True, False) for o in block.level3)
        yield from ((o, True, True) for o in block.exposures)
        yield from ((o, False, True) for o in block.level3)
    elif block.order == "level3-first":
        yield from ((o, True, True) for o in (*block.level3, *block.exposures))
    else:
        yield from ((o, True, True) for o in (*block.exposures, *block.level3))


class _Expander:
    """The state of one program's expansion: rows so far, files so far, visits, the pool."""

    def __init__(self, program: Program) -> None:
        self.prog = program
        self.mission = MISSIONS[program.collection]
        self.kinds = KINDS[program.collection]
        self.records: dict[str, ObsRecord] = {}  # by obs_id, in row order
        self.files: dict[str, SimFile] = {}
        self.visits: dict[str, list[Product]] = {}
        self.parents: dict[str, Obs] = {}  # exposure obs_id -> its first level-3 observation
        self.pool_rows: list[str] = []
        self.pool: Product | None = None
        self.jwst = recipes.JwstContext(
            program.prvversion, program.program, program.target, program.ra, program.dec
        )

    def run(self) -> Expanded:
        for block in self.prog.blocks:
            for l3 in block.level3:
                for m in l3.members:
                    self.parents.setdefault(m, l3)
            for obs, make_row, make_products in _order(block):
                if make_row:
                    self._row(obs)
                if make_products:
                    self._products(obs)
            for l3 in block.level3:
                self.records[l3.obs_id].members = [self.records[m] for m in l3.members]
        records = list(self.records.values())
        if self.prog.pool:
            self._finish_pool(records)
        return Expanded(records, self.files)

    # -- rows ----------------------------------------------------------------------------------

    def _row(self, o: Obs) -> None:
        p, m = self.prog, self.mission
        obsid = p.obsid_base + len(self.records) + 1
        ra = round(p.ra + o.offset[0], 7)
        dec = round(p.dec + o.offset[1], 7)
        half = o.half_size
        dra = half / max(math.cos(math.radians(dec)), 0.05)
        corners = [(ra - dra, dec - half), (ra + dra, dec - half), (ra + dra, dec + half),
                   (ra - dra, dec + half)]  # fmt: skip
        region = "POLYGON ICRS " + " ".join(f"{a % 360:.6f} {d:.6f}" for a, d in corners)
        t_max = round(o.t_min + o.exptime / 86400.0, 6)
        row: dict[str, object] = {
            "intentType": "science",
            "obs_collection": p.collection,
            "provenance_name": m.provenance,
            "instrument_name": o.instrument,
            "project": p.collection,
            "filters": o.filters,
            "wavelength_region": m.waveband,
            "target_name": p.target,
            "target_classification": p.target_class,
            "obs_id": o.obs_id,
            "s_ra": ra,
            "s_dec": dec,
            "dataproduct_type": o.dataproduct_type,
            "proposal_pi": p.pi,
            "calib_level": o.level,
            "t_min": round(o.t_min, 6),
            "t_max": t_max,
            "t_exptime": o.exptime,
            "em_min": o.em[0],
            "em_max": o.em[1],
            "obs_title": p.title,
            "t_obs_release": p.release_mjd if p.rights != PUBLIC else round(t_max + 0.5, 6),
            "proposal_id": p.proposal_id,
            "proposal_type": p.proposal_type,
            "sequence_number": None,
            "s_region": region,
            "jpegURL": self._uri(o, o.jpeg_kind) if o.jpeg_kind else None,
            "dataURL": self._uri(o, o.data_kind) if o.data_kind else None,
            "dataRights": p.rights,
            "mtFlag": False,
            "srcDen": m.src_den,
            "obsid": str(obsid),
            "objID": str(obsid + 1_000_000_000),
        }
        if o.obs_id in self.records:
            raise AssertionError(f"duplicate observation {o.obs_id}")
        self.records[o.obs_id] = ObsRecord(row)

    # -- products ------------------------------------------------------------------------------

    def _products(self, o: Obs) -> None:
        record = self.records[o.obs_id]
        for key in o.kinds:
            self._make(o, record, self.kinds[key], key)
        if o.visit and self.prog.visit_kinds:
            shared = self.visits.get(o.visit)
            if shared is None:
                shared = self.visits[o.visit] = []
                for key in self.prog.visit_kinds:
                    shared.append(self._make(o, record, self.kinds[key], key))
            else:
                record.products.extend(shared)
        parent = self.parents.get(o.obs_id)
        if parent is not None:
            uris = {self._uri(parent, k) for k in parent.kinds if self.kinds[k].to_members}
            if uris:
                owned = self.records[parent.obs_id].products
                record.products += [q for q in owned if q.file.uri in uris]
        if o.header is not None and o.level == 2 and self.prog.pool:
            uncal = f"{o.obs_id}_uncal.fits"
            row = recipes.pool_row(self.jwst, self._exposure(o), uncal, o.candidate)
            self.pool_rows.append(row)
        if self.prog.pool_early and self.pool is None and self.prog.pool:
            self.pool = self._reserve_pool(record)

    def _make(self, o: Obs, owner: ObsRecord, kind: Kind, key: str) -> Product:
        filename = self._filename(o, kind)
        recipe = self._recipe(o, kind, key, filename)
        return self._add(owner, filename, recipe, kind)

    def _add(self, owner: ObsRecord, filename: str, recipe: Recipe, kind: Kind) -> Product:
        p = self.prog
        uri = f"mast:{p.collection}/product/{filename}"
        if uri in self.files:
            raise AssertionError(f"duplicate file {uri}")
        t_max = float(owner.row["t_max"])  # type: ignore[arg-type]
        # Files appear some hours after the exposure ends, as the pipeline processes them.
        modified = round(recipes.mjd_to_posix(t_max) + 3600 * (2 + hash_text(filename) % 40), 0)
        sim = make_file(
            uri=uri,
            filename=filename,
            collection=p.collection,
            dataset=owner.obs_id,
            recipe=recipe,
            last_modified=modified,
            proposal_id=p.proposal_id,
            dataRights=kind.rights or p.rights,
        )
        self.files[uri] = sim
        if p.collection == "JWST":
            version = p.prvversion
        else:
            version = HST_VERSIONS.get(kind.subgroup, HST_DEFAULT_VERSION)
        prod = Product(
            file=sim,
            productType=kind.category,
            subgroup=kind.subgroup,
            description=kind.description,
            calib_level=kind.level,
            mrp=kind.recommended,
            type=self.mission.product_type,
            project=self.mission.project,
            prvversion=version,
        )
        owner.products.append(prod)
        return prod

    # -- the pool ------------------------------------------------------------------------------

    def _reserve_pool(self, owner: ObsRecord) -> Product:
        """The pool's product, listed first, with a placeholder recipe."""
        kind = self.kinds["pool"]
        name = kind.filename.format(program=self.prog.program, version=self.prog.version)
        return self._add(owner, name, Recipe(fmt="csv"), kind)

    def _finish_pool(self, records: list[ObsRecord]) -> None:
        kind = self.kinds["pool"]
        name = kind.filename.format(program=self.prog.program, version=self.prog.version)
        recipe = recipes.pool(name, self.pool_rows)
        pool = self.pool
        if pool is None:
            pool = self._add(records[0], name, recipe, kind)
        else:
            # Registered early with a placeholder: its rows are known only now.
            old = pool.file
            pool.file = make_file(
                uri=old.uri,
                filename=old.filename,
                collection=old.collection,
                dataset=old.dataset,
                recipe=recipe,
                last_modified=old.last_modified,
                proposal_id=old.proposal_id,
                dataRights=old.dataRights,
            )
            self.files[old.uri] = pool.file
        for record in records[1:]:
            record.products.append(pool)

    # -- names and recipes ---------------------------------------------------------------------

    def _filename(self, o: Obs, kind: Kind) -> str:
        stamp = recipes.guide_stamp(self._guide_time(o, kind)) if kind.fmt == "guide" else ""
        observation = o.header.observation if o.header is not None else 0
        return kind.filename.format(
            obs_id=o.obs_id,
            visit=o.visit,
            program=self.prog.program,
            version=self.prog.version,
            observation=observation,
            seq=o.seq,
            stamp=stamp,
        )

    def _uri(self, o: Obs, key: str) -> str:
        return f"mast:{self.prog.collection}/product/{self._filename(o, self.kinds[key])}"

    def _guide_time(self, o: Obs, kind: Kind) -> float:
        return self._exposure(o).expstart - 0.05 + kind.minutes / 1440.0

    def _dims(self, o: Obs) -> dict[str, int]:
        dims = {"ncols": o.shape[0], "nrows": o.shape[1], "asn_rows": len(o.members) + 1}
        if o.header is not None:
            dims.update(nints=o.header.nints, ngroups=o.header.ngroups)
        dims.update(o.dims)
        return dims

    def _hdus(self, o: Obs, kind: Kind, key: str) -> list[Image | Table]:
        dims = self._dims(o)
        scale = 0.0 if key in o.no_wcs else o.scale
        wcs = (self.prog.ra, self.prog.dec, scale) if scale else None

        def dim(d: int | str) -> int:
            return d if isinstance(d, int) else dims[d]

        out: list[Image | Table] = []
        for h in kind.hdus:
            if isinstance(h, Img):
                shape = tuple(dim(d) for d in h.shape)
                given = wcs if h.wcs else None
                out.append(Image(h.extname, h.bitpix, shape, h.role, h.bunit, given, h.extver))
            else:
                assert isinstance(h, Tbl)
                out.append(Table(h.extname, h.kind, dim(h.nrows), dim(h.npix), h.extver))
        return out

    def _recipe(self, o: Obs, kind: Kind, key: str, filename: str) -> Recipe:
        style = kind.style or o.style
        dims = self._dims(o)
        fmt = kind.fmt
        if fmt in ("jpeg", "png"):
            width, height = o.preview if kind.frame == "preview" else o.thumb
            make = recipes.jpeg if fmt == "jpeg" else recipes.png
            return make(filename, style, width, height)
        if fmt == "asn":
            members = [o.obs_id] if o.level == 2 else list(o.members)
            assert o.header is not None
            return recipes.association(
                self.jwst,
                filename,
                kind.asn_type,
                f"o{o.header.observation:03d}",
                kind.asn_target.format(observation=o.header.observation, seq=o.seq),
                self._filename(o, self.kinds["pool"]),
                o.obs_id,
                [f"{m}_{kind.asn_members}" for m in members],
            )
        if fmt == "ecsv":
            assert o.header is not None
            rows = kind.rows if isinstance(kind.rows, int) else dims[kind.rows]
            start = self._exposure(o).expstart
            return recipes.ecsv(filename, style, rows, self.prog.ra, self.prog.dec, start)
        if fmt == "log":
            assert isinstance(kind.rows, int)
            return recipes.log(filename, kind.rows)
        if fmt == "text":
            return recipes.text(filename, kind.lines)
        hdus = self._hdus(o, kind, key)
        if self.prog.collection == "HST":
            items = tuple(o.members) if kind.asn_members else ()
            return recipes.hst_fits(self._hst(o), filename, tuple(hdus), items)
        e = self._exposure(o)
        if fmt == "guide":
            e = self._guide_exposure(o, kind, e)
        elif not filename.startswith(o.obs_id + "_"):
            # A file that stands for itself (an MSA configuration) carries its own name.
            e = dataclasses.replace(e, obs_id=filename.rsplit(".", 1)[0])
        size = kind.size if isinstance(kind.size, int) else dims[kind.size]
        return recipes.jwst_fits(self.jwst, e, filename, style, kind.model, hdus, size)

    def _exposure(self, o: Obs) -> recipes.JwstExposure:
        h = o.header
        assert h is not None
        return recipes.JwstExposure(
            obs_id=o.obs_id,
            instrume=h.instrume,
            detector=h.detector,
            exp_type=h.exp_type,
            filt=h.filt,
            pupil=h.pupil,
            subarray=h.subarray,
            readpatt=h.readpatt,
            nints=h.nints,
            ngroups=h.ngroups,
            expstart=o.t_min if h.expstart is None else h.expstart,
            observation=h.observation,
            visit=h.visit,
            exposure=h.exposure,
        )

    def _guide_exposure(self, o: Obs, kind: Kind, e: recipes.JwstExposure) -> recipes.JwstExposure:
        t = self._guide_time(o, kind)
        first = kind.hdus[0]
        assert isinstance(first, Img) and isinstance(first.shape[-1], int)
        return recipes.JwstExposure(
            obs_id=f"{o.visit}_{kind.subgroup.lower()}_{recipes.guide_stamp(t)}",
            instrume="GUIDER",
            detector="GUIDER1",
            exp_type=f"FGS_{kind.subgroup[3:]}",
            filt="N/A",
            pupil="N/A",
            subarray="SUBFGS",
            readpatt="FGS",
            nints=first.shape[-1],  # the last axis counts the guider's integrations
            ngroups=1,
            expstart=t,
            observation=e.observation,
            visit=e.visit,
            exposure=1,
        )

    def _hst(self, o: Obs) -> recipes.HstExposure:
        parent = self.parents.get(o.obs_id)
        p = self.prog
        return recipes.HstExposure(
            proposal_id=p.proposal_id,
            target=p.target,
            ra=p.ra,
            dec=p.dec,
            rootname=o.obs_id,
            asn_id=parent.obs_id if parent is not None else o.obs_id,
            filt=o.filters,
            expstart=o.t_min,
            exptime=o.exptime,
        )
