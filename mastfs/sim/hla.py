"""A small HLA program whose products live on another host: `mast:HLA/url/...` URIs.

MAST lists products of some collections (HLA, SPITZER, GALEX, IUE) under
`mast:<MISSION>/url/<path>` URIs that its `Download/file` resolves to other hosts
(astroquery's remote test reads `mast:HLA/url/cgi-bin/getdata.cgi?...`); they are generated
on demand, so they come without Content-Length. This module adds such a program to the default
catalog: HST proposal 9998, two Hubble Legacy Archive mosaics of the Crab Nebula (M1), each with
a drizzled image, its preview and its processing log, served through `getdata.cgi` URIs. The
bytes are those of the HST 10775 association products of the same filter (`drz.fits`,
`drz.jpg`, `log.txt`), under the HLA names.

Where these are served (directly by the archive, or by a redirect to the second host) is up to
the `url_redirect` knob (`hosts.py`); the "mast" profile redirects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from mastfs.sim.content import SimFile
from mastfs.sim.expand import ObsRecord, Product

PROPOSAL = "9998"
OBSID_BASE = 24_998_000
NAMES = ("M1", "M 1", "Crab Nebula", "NGC 1952", "Messier 1")
RA, DEC = 83.63308, 22.01450

# (dataset, filter, em range nm, the 10775 association whose bytes it borrows)
_MOSAICS = (
    ("hst_9998_01_acs_wfc_f606w", "F606W", (470.0, 720.0), "j9l960010"),
    ("hst_9998_01_acs_wfc_f814w", "F814W", (690.0, 960.0), "j9l960020"),
)


_CORNERS = ((-0.03, -0.03), (0.03, -0.03), (0.03, 0.03), (-0.03, 0.03))


def url_uri(dataset: str, filename: str) -> str:
    return f"mast:HLA/url/cgi-bin/getdata.cgi?dataset={dataset}&filename={filename}"


def program(files: Mapping[str, SimFile]) -> tuple[list[ObsRecord], dict[str, SimFile]]:
    """The HLA observations and their files, made from the catalog's HST files."""
    records: list[ObsRecord] = []
    made: dict[str, SimFile] = {}
    for n, (dataset, filt, em, borrowed) in enumerate(_MOSAICS, 1):
        t_min = 56_200.4 + n * 0.1
        row: dict[str, object] = {
            "intentType": "science",
            "obs_collection": "HLA",
            "provenance_name": "HLA",
            "instrument_name": "ACS/WFC",
            "project": "HLA",
            "filters": filt,
            "wavelength_region": "OPTICAL",
            "target_name": "M1",
            "target_classification": "SUPERNOVA REMNANT",
            "obs_id": dataset,
            "s_ra": RA,
            "s_dec": DEC,
            "dataproduct_type": "image",
            "proposal_pi": "Hester, Jeff",
            "calib_level": 3,
            "t_min": t_min,
            "t_max": round(t_min + 0.05, 6),
            "t_exptime": 2400.0,
            "em_min": em[0],
            "em_max": em[1],
            "obs_title": "Hubble Legacy Archive mosaics of the Crab Nebula",
            "t_obs_release": round(t_min + 0.6, 6),
            "proposal_id": PROPOSAL,
            "proposal_type": "GO",
            "sequence_number": None,
            "s_region": "POLYGON ICRS "
            + " ".join(f"{RA + a:.6f} {DEC + d:.6f}" for a, d in _CORNERS),
            "jpegURL": url_uri(dataset, f"{dataset}_drz.jpg"),
            "dataURL": url_uri(dataset, f"{dataset}_drz.fits"),
            "dataRights": "PUBLIC",
            "mtFlag": False,
            "srcDen": 1200.0,
            "obsid": str(OBSID_BASE + n),
            "objID": str(OBSID_BASE + n + 1_000_000_000),
        }
        record = ObsRecord(row)
        for suffix, source_suffix, kind, description in (
            ("drz.fits", "drz.fits", "SCIENCE", "HLA drizzled image"),
            ("drz.jpg", "drz.jpg", "PREVIEW", "HLA preview"),
            ("trl.txt", "log.txt", "AUXILIARY", "HLA processing log"),
        ):
            source = files[f"mast:HST/product/{borrowed}_{source_suffix}"]
            filename = f"{dataset}_{suffix}"
            f = dataclasses.replace(
                source,
                uri=url_uri(dataset, filename),
                filename=filename,
                collection="HLA",
                dataset=dataset,
                proposal_id=PROPOSAL,
                etag="",
            )
            made[f.uri] = f
            record.products.append(
                Product(
                    file=f,
                    productType=kind,
                    subgroup=suffix.split(".")[0].upper(),
                    description=description,
                    calib_level=3,
                    mrp=kind == "SCIENCE",
                    type="S",
                    project="HLA",
                    prvversion="DR10",
                )
            )
        records.append(record)
    return records, made
